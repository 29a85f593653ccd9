/*
 * server.c: the process: one event_base, one curl multi handle, one token cache, the current
 * config snapshot; signals as loop events (SIGTERM/SIGINT drain, SIGHUP reload).
 */
#include "core.h"
#include "h1up.h"

#include <event2/dns.h>
#include <event2/http.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void
on_reap(evutil_socket_t fd, short what, void *arg)
{
    ap_server_t *s = arg;
    ap_conn_reap(s);
    if (s->draining && s->nconns == 0)
        event_base_loopexit(s->base, NULL);
}

/* connect_to as curl wants it: "host:port:addr:port". */
static struct curl_slist *
build_connect_to(const ap_conf_t *c)
{
    struct curl_slist *l = NULL;
    for (size_t i = 0; i < c->nconnect_to; i++) {
        char *line = ap_xasprintf("%s:%s", c->connect_to[i].from, c->connect_to[i].to);
        l = curl_slist_append(l, line);
        free(line);
    }
    return l;
}

static void
apply_conf(ap_server_t *s)
{
    const ap_conf_t *c = s->conf;
    if (s->connect_to) {
        /* Live handles may still point at the old list (curl does not copy it). */
        struct curl_slist *old = s->connect_to;
        struct curl_slist *tail = old;
        while (tail->next)
            tail = tail->next;
        tail->next = s->old_connect_to;
        s->old_connect_to = old;
    }
    s->connect_to = build_connect_to(c);
    s->curl_opts.ca_file = c->ca_file;
    s->curl_opts.connect_to = s->connect_to;
    s->curl_opts.outbound_proxy = c->outbound_proxy;
    s->curl_opts.connect_timeout_ms = (long)c->limits.connect_timeout_ms;
    ap_h1up_configure(s->h1up, s->conf); /* takes its own reference */
    ap_log_level_t lvl;
    if (c->log_level && ap_log_parse_level(c->log_level, &lvl) == AP_OK)
        ap_log_set_level(lvl);
    ap_log_set_json(c->log_json);
}

const ap_curl_opts_t *
ap_server_curl_opts(ap_server_t *s)
{
    return &s->curl_opts;
}

/* --- Signals ---------------------------------------------------------------------------------- */

static void
on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    ap_server_t *s = arg;
    ap_log_warn("drain deadline reached with %llu connection(s) open; exiting",
                (unsigned long long)s->nconns);
    event_base_loopexit(s->base, NULL);
}

static void
start_drain(ap_server_t *s)
{
    if (s->draining)
        return;
    s->draining = true;
    ap_log_info("draining: no new connections, finishing %llu open", (unsigned long long)s->nconns);
    ap_listener_stop(s);
    /* Idle keep-alive connections have nothing to finish. */
    ap_list_t *n = s->conns.next;
    while (n != &s->conns) {
        ap_conn_t *c = ap_container_of(n, ap_conn_t, link);
        n = n->next;
        if (c->req == NULL && !c->reading_head)
            ap_conn_close(c, "draining");
        else if (c->req == NULL && evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)
            ap_conn_close(c, "draining");
    }
    int64_t ms = s->conf->limits.drain_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    s->drain_timer = evtimer_new(s->base, on_drain_deadline, s);
    evtimer_add(s->drain_timer, &tv);
    if (s->nconns == 0)
        event_base_loopexit(s->base, NULL);
    else
        event_active(s->reaper, EV_TIMEOUT, 0);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    ap_server_t *s = arg;
    if (sig == SIGHUP) {
        ap_server_reload(s);
        return;
    }
    ap_log_info("received %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    start_drain(s);
}

/* --- Lifecycle ----------------------------------------------------------------------------------
 */

ap_server_t *
ap_server_new(ap_conf_t *conf, const char *conf_path, bool env_only)
{
    char err[4096];
    ap_server_t *s = ap_xcalloc(1, sizeof(*s));
    ap_list_init(&s->conns);
    ap_list_init(&s->reap);
    s->conf = conf; /* takes the caller's reference */
    s->conf_path = conf_path ? ap_xstrdup(conf_path) : NULL;
    s->env_only = env_only;
    uint32_t rnd;
    evutil_secure_rng_get_bytes(&rnd, sizeof(rnd));
    snprintf(s->via_id, sizeof(s->via_id), "authproxy-%08x", rnd);

    s->base = event_base_new();
    if (s->base == NULL)
        goto err;
    s->dns = evdns_base_new(s->base,
                            EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (s->dns == NULL) {
        /* No resolv.conf (minimal containers): still resolve /etc/hosts and IP literals. */
        s->dns = evdns_base_new(s->base, 0);
        if (s->dns == NULL)
            goto err;
        evdns_base_load_hosts(s->dns, NULL);
    }
    s->curl = ap_curl_new(s->base);
    s->h1up = ap_h1up_new(s->base);
    if (s->curl == NULL || s->h1up == NULL)
        goto err;
    apply_conf(s);
    ap_curl_auth_io(s->curl, &s->auth_io);
    ap_curl_set_fetch_opts(s->curl, &s->curl_opts);
    s->auth = ap_auth_new(conf, &s->auth_io, err, sizeof(err));
    if (s->auth == NULL) {
        ap_log_error("credentials: %s", err);
        goto err;
    }
    s->metrics = ap_metrics_new();
    s->reaper = event_new(s->base, -1, 0, on_reap, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, on_signal, s);
    if (!s->reaper || !s->sig_term || !s->sig_int || !s->sig_hup)
        goto err;
    evsignal_add(s->sig_term, NULL);
    evsignal_add(s->sig_int, NULL);
    evsignal_add(s->sig_hup, NULL);
    if (ap_listener_start(s) != AP_OK)
        goto err;
    if (ap_admin_start(s) != AP_OK)
        goto err;
    return s;
err:
    ap_server_free(s);
    return NULL;
}

int
ap_server_run(ap_server_t *s)
{
    event_base_dispatch(s->base);
    return s->exit_code;
}

void
ap_server_free(ap_server_t *s)
{
    if (s == NULL)
        return;
    ap_listener_stop(s);
    ap_admin_stop(s);
    /* Close every connection, then free them (no callbacks run after this point). */
    while (!ap_list_empty(&s->conns)) {
        ap_conn_t *c = ap_container_of(s->conns.next, ap_conn_t, link);
        ap_conn_close(c, "shutdown");
        ap_conn_reap(s);
    }
    ap_auth_free(s->auth);
    /* curl_multi_cleanup before the base: it may still call the socket callback. */
    ap_curl_free(s->curl);
    ap_h1up_free(s->h1up);
    curl_slist_free_all(s->connect_to);
    curl_slist_free_all(s->old_connect_to);
    ap_metrics_free(s->metrics);
    if (s->reaper)
        event_free(s->reaper);
    if (s->sig_term)
        event_free(s->sig_term);
    if (s->sig_int)
        event_free(s->sig_int);
    if (s->sig_hup)
        event_free(s->sig_hup);
    if (s->drain_timer)
        event_free(s->drain_timer);
    if (s->dns)
        evdns_base_free(s->dns, 0);
    if (s->base)
        event_base_free(s->base);
    ap_conf_unref(s->conf);
    free(s->conf_path);
    free(s);
}

static bool
same_addrs(const ap_addr_conf_t *a, size_t na, const ap_addr_conf_t *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i].host, b[i].host) != 0 || strcmp(a[i].port, b[i].port) != 0)
            return false;
    return true;
}

ap_rc_t
ap_server_reload(ap_server_t *s)
{
    char err[8192];
    ap_conf_t *conf;
    if (s->env_only) {
        bool used = false;
        conf = ap_conf_load_env(&used, err, sizeof(err));
    } else {
        conf = ap_conf_load_file(s->conf_path, err, sizeof(err));
    }
    if (conf == NULL) {
        ap_log_error("reload rejected, keeping the running configuration: %s", err);
        return AP_ERR;
    }
    ap_auth_t *auth = ap_auth_reload(s->auth, conf, err, sizeof(err));
    if (auth == NULL) {
        ap_log_error("reload rejected, keeping the running configuration: %s", err);
        ap_conf_unref(conf);
        return AP_ERR;
    }
    if (!same_addrs(conf->listen, conf->nlisten, s->conf->listen, s->conf->nlisten) ||
        !same_addrs(conf->admin, conf->nadmin, s->conf->admin, s->conf->nadmin))
        ap_log_warn("reload: listen/admin addresses changed; they apply after a restart");
    ap_auth_free(s->auth);
    s->auth = auth;
    ap_conf_unref(s->conf);
    s->conf = conf;
    apply_conf(s);
    ap_log_info("configuration reloaded: %zu route(s), %zu credential(s)", conf->nroutes,
                conf->ncreds);
    return AP_OK;
}
