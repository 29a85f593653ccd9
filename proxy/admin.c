/*
 * admin.c: the admin listener (evhttp; loopback by default) and the metrics it exposes.
 *   GET  /healthz                  process alive
 *   GET  /readyz                   config loaded and every prefetch credential holds a token
 *   GET  /metrics                  Prometheus text format 0.0.4
 *   GET  /tokens                   per credential state (never a token or secret)
 *   POST /tokens/<name>/refresh    start a token refresh now
 */
#include "core.h"
#include "h1up.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* --- Metrics -----------------------------------------------------------------------------------
 */

/* Latency buckets in seconds: loopback proxying is sub-millisecond; APIs take up to seconds. */
static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                 0.25,  0.5,    1,     2.5,  5,     10};
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

typedef struct counter_s {
    struct counter_s *next;
    char *route;
    int status;
    uint64_t n;
} counter_t;

typedef struct hist_s {
    struct hist_s *next;
    char *route;
    uint64_t b[NBUCKETS];
    uint64_t count;
    double sum;
} hist_t;

typedef struct errc_s {
    struct errc_s *next;
    const char *code; /* static */
    uint64_t n;
} errc_t;

struct ap_metrics_s {
    counter_t *counters;
    hist_t *hists;
    errc_t *errors;
};

ap_metrics_t *
ap_metrics_new(void)
{
    return ap_xcalloc(1, sizeof(ap_metrics_t));
}

void
ap_metrics_free(ap_metrics_t *m)
{
    if (m == NULL)
        return;
    for (counter_t *c = m->counters, *n; c; c = n) {
        n = c->next;
        free(c->route);
        free(c);
    }
    for (hist_t *h = m->hists, *n; h; h = n) {
        n = h->next;
        free(h->route);
        free(h);
    }
    for (errc_t *e = m->errors, *n; e; e = n) {
        n = e->next;
        free(e);
    }
    free(m);
}

void
ap_metrics_request(ap_metrics_t *m, const char *route, int status, double seconds)
{
    counter_t *c;
    for (c = m->counters; c; c = c->next)
        if (c->status == status && strcmp(c->route, route) == 0)
            break;
    if (c == NULL) {
        c = ap_xcalloc(1, sizeof(*c));
        c->route = ap_xstrdup(route);
        c->status = status;
        c->next = m->counters;
        m->counters = c;
    }
    c->n++;
    hist_t *h;
    for (h = m->hists; h; h = h->next)
        if (strcmp(h->route, route) == 0)
            break;
    if (h == NULL) {
        h = ap_xcalloc(1, sizeof(*h));
        h->route = ap_xstrdup(route);
        h->next = m->hists;
        m->hists = h;
    }
    for (size_t i = 0; i < NBUCKETS; i++)
        if (seconds <= buckets[i])
            h->b[i]++;
    h->count++;
    h->sum += seconds;
}

void
ap_metrics_upstream_error(ap_metrics_t *m, const char *code)
{
    errc_t *e;
    for (e = m->errors; e; e = e->next)
        if (strcmp(e->code, code) == 0)
            break;
    if (e == NULL) {
        e = ap_xcalloc(1, sizeof(*e));
        e->code = code;
        e->next = m->errors;
        m->errors = e;
    }
    e->n++;
}

/* Prometheus label values escape \, " and newline. */
static void
label(struct evbuffer *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            evbuffer_add_printf(b, "\\%c", *v);
        else if (*v == '\n')
            evbuffer_add(b, "\\n", 2);
        else
            evbuffer_add(b, v, 1);
    }
}

static void
render_metrics(ap_server_t *s, struct evbuffer *b)
{
    ap_metrics_t *m = s->metrics;
    evbuffer_add_printf(b,
                        "# HELP authproxy_build_info Build information.\n"
                        "# TYPE authproxy_build_info gauge\n"
                        "authproxy_build_info{version=\"%s\"} 1\n",
                        AP_VERSION);
    evbuffer_add_printf(b, "# HELP authproxy_requests_total Requests by route and status.\n"
                           "# TYPE authproxy_requests_total counter\n");
    for (counter_t *c = m->counters; c; c = c->next) {
        evbuffer_add_printf(b, "authproxy_requests_total{route=\"");
        label(b, c->route);
        evbuffer_add_printf(b, "\",status=\"%d\"} %llu\n", c->status, (unsigned long long)c->n);
    }
    evbuffer_add_printf(b, "# HELP authproxy_request_duration_seconds Request latency.\n"
                           "# TYPE authproxy_request_duration_seconds histogram\n");
    for (hist_t *h = m->hists; h; h = h->next) {
        for (size_t i = 0; i < NBUCKETS; i++) {
            evbuffer_add_printf(b, "authproxy_request_duration_seconds_bucket{route=\"");
            label(b, h->route);
            evbuffer_add_printf(b, "\",le=\"%g\"} %llu\n", buckets[i], (unsigned long long)h->b[i]);
        }
        evbuffer_add_printf(b, "authproxy_request_duration_seconds_bucket{route=\"");
        label(b, h->route);
        evbuffer_add_printf(b, "\",le=\"+Inf\"} %llu\n", (unsigned long long)h->count);
        evbuffer_add_printf(b, "authproxy_request_duration_seconds_sum{route=\"");
        label(b, h->route);
        evbuffer_add_printf(b, "\"} %.6f\n", h->sum);
        evbuffer_add_printf(b, "authproxy_request_duration_seconds_count{route=\"");
        label(b, h->route);
        evbuffer_add_printf(b, "\"} %llu\n", (unsigned long long)h->count);
    }
    evbuffer_add_printf(b, "# HELP authproxy_upstream_errors_total Upstream failures by kind.\n"
                           "# TYPE authproxy_upstream_errors_total counter\n");
    for (errc_t *e = m->errors; e; e = e->next)
        evbuffer_add_printf(b, "authproxy_upstream_errors_total{code=\"%s\"} %llu\n", e->code,
                            (unsigned long long)e->n);
    evbuffer_add_printf(b,
                        "# HELP authproxy_active_connections Open client connections.\n"
                        "# TYPE authproxy_active_connections gauge\n"
                        "authproxy_active_connections %llu\n"
                        "# HELP authproxy_upstream_transfers Transfers in flight on the curl "
                        "multi handle (upstream and token endpoint).\n"
                        "# TYPE authproxy_upstream_transfers gauge\n"
                        "authproxy_upstream_transfers %llu\n",
                        (unsigned long long)s->nconns, (unsigned long long)ap_curl_active(s->curl));
    ap_h1up_stats_t hs;
    ap_h1up_stats(s->h1up, &hs);
    evbuffer_add_printf(
        b,
        "# HELP authproxy_upstream_direct_requests_total Responses received over the HTTP/1.1 "
        "fast path's own connections (the rest go through curl).\n"
        "# TYPE authproxy_upstream_direct_requests_total counter\n"
        "authproxy_upstream_direct_requests_total %llu\n"
        "# HELP authproxy_upstream_direct_connections_total Upstream connections the fast path "
        "opened.\n"
        "# TYPE authproxy_upstream_direct_connections_total counter\n"
        "authproxy_upstream_direct_connections_total %llu\n"
        "# HELP authproxy_upstream_direct_fallbacks_total Fast-path requests retried through curl "
        "after a failure before any response byte.\n"
        "# TYPE authproxy_upstream_direct_fallbacks_total counter\n"
        "authproxy_upstream_direct_fallbacks_total %llu\n"
        "# HELP authproxy_upstream_direct_idle_connections Idle pooled fast-path connections.\n"
        "# TYPE authproxy_upstream_direct_idle_connections gauge\n"
        "authproxy_upstream_direct_idle_connections %llu\n",
        (unsigned long long)hs.requests, (unsigned long long)hs.connections,
        (unsigned long long)hs.fallbacks, (unsigned long long)hs.idle);

    static const struct {
        const char *name, *type, *help;
    } tm[] = {
        {"authproxy_token_fetches_total", "counter", "Token requests sent to the endpoint."},
        {"authproxy_token_fetch_failures_total", "counter", "Token requests that failed."},
        {"authproxy_token_refreshes_total", "counter", "Background refreshes ahead of expiry."},
        {"authproxy_token_valid", "gauge", "1 when the credential holds a valid token."},
        {"authproxy_token_expiry_seconds", "gauge", "Seconds until the current token expires."},
        {"authproxy_token_waiters", "gauge", "Requests waiting for a token."},
    };
    size_t n = ap_auth_count(s->auth);
    for (size_t k = 0; k < AP_ARRAY_LEN(tm); k++) {
        evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", tm[k].name, tm[k].help, tm[k].name,
                            tm[k].type);
        for (size_t i = 0; i < n; i++) {
            ap_cred_t *c = ap_auth_at(s->auth, i);
            ap_cred_stats_t st;
            memset(&st, 0, sizeof(st));
            ap_cred_stats(c, &st);
            evbuffer_add_printf(b, "%s{credential=\"", tm[k].name);
            label(b, ap_cred_name(c));
            evbuffer_add(b, "\"} ", 3);
            switch (k) {
            case 0:
                evbuffer_add_printf(b, "%llu\n", (unsigned long long)st.fetches);
                break;
            case 1:
                evbuffer_add_printf(b, "%llu\n", (unsigned long long)st.failures);
                break;
            case 2:
                evbuffer_add_printf(b, "%llu\n", (unsigned long long)st.refreshes);
                break;
            case 3:
                evbuffer_add_printf(b, "%d\n", st.has_token && st.expires_in_ms > 0 ? 1 : 0);
                break;
            case 4:
                if (st.expires_in_ms == INT64_MAX)
                    evbuffer_add_printf(b, "+Inf\n");
                else
                    evbuffer_add_printf(b, "%.3f\n",
                                        st.has_token ? (double)st.expires_in_ms / 1000.0 : 0.0);
                break;
            default:
                evbuffer_add_printf(b, "%llu\n", (unsigned long long)st.waiters);
                break;
            }
        }
    }
}

/* --- HTTP handlers ------------------------------------------------------------------------------
 */

static void
reply_json(struct evhttp_request *req, int code, struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Cache-Control", "no-store");
    evhttp_send_reply(req, code, ap_http1_reason(code), body);
}

static void
reply_error(struct evhttp_request *req, int code, const char *err, const char *detail)
{
    struct evbuffer *b = evbuffer_new();
    ap_buf_t d = {0};
    ap_json_escape(&d, detail, strlen(detail));
    evbuffer_add_printf(b, "{\"error\":\"%s\",\"detail\":\"%s\"}\n", err, d.data ? d.data : "");
    ap_buf_free(&d, false);
    reply_json(req, code, b);
    evbuffer_free(b);
}

static void
json_str(struct evbuffer *b, const char *s)
{
    ap_buf_t d = {0};
    ap_json_escape(&d, s, strlen(s));
    evbuffer_add_printf(b, "\"%s\"", d.data ? d.data : "");
    ap_buf_free(&d, false);
}

static void
iso_time(int64_t wall_ms, char *out, size_t n)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
render_tokens(ap_server_t *s, struct evbuffer *b)
{
    evbuffer_add_printf(b, "{\"credentials\":[");
    size_t n = ap_auth_count(s->auth);
    for (size_t i = 0; i < n; i++) {
        ap_cred_t *c = ap_auth_at(s->auth, i);
        ap_cred_stats_t st;
        memset(&st, 0, sizeof(st));
        ap_cred_stats(c, &st);
        const ap_cred_conf_t *cc = ap_conf_find_cred(s->conf, ap_cred_name(c));
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        json_str(b, ap_cred_name(c));
        evbuffer_add_printf(b, ",\"provider\":");
        json_str(b, cc ? cc->provider : "?");
        evbuffer_add_printf(b, ",\"state\":");
        json_str(b, st.state ? st.state : "unknown");
        evbuffer_add_printf(b, ",\"valid\":%s",
                            st.has_token && st.expires_in_ms > 0 ? "true" : "false");
        if (st.has_token && st.expires_in_ms == INT64_MAX)
            evbuffer_add_printf(b, ",\"expires_in\":null,\"expires_at\":null");
        else if (st.has_token)
            evbuffer_add_printf(b, ",\"expires_in\":%.3f", (double)st.expires_in_ms / 1000.0);
        if (st.expires_at_wall_ms > 0) {
            char ts[40];
            iso_time(st.expires_at_wall_ms, ts, sizeof(ts));
            evbuffer_add_printf(b, ",\"expires_at\":\"%s\"", ts);
        }
        if (st.last_refresh_wall_ms > 0) {
            char ts[40];
            iso_time(st.last_refresh_wall_ms, ts, sizeof(ts));
            evbuffer_add_printf(b, ",\"last_refresh\":\"%s\"", ts);
        }
        evbuffer_add_printf(b,
                            ",\"fetches\":%llu,\"failures\":%llu,\"consecutive_failures\":%u,"
                            "\"refreshes\":%llu,\"waiters\":%llu",
                            (unsigned long long)st.fetches, (unsigned long long)st.failures,
                            st.consecutive_failures, (unsigned long long)st.refreshes,
                            (unsigned long long)st.waiters);
        if (st.last_error) {
            evbuffer_add_printf(b, ",\"last_error\":");
            json_str(b, st.last_error);
            evbuffer_add_printf(b, ",\"last_error_detail\":");
            json_str(b, st.last_error_detail);
        }
        evbuffer_add_printf(b, "}");
    }
    evbuffer_add_printf(b, "]}\n");
}

static bool
from_loopback(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    const struct sockaddr *sa = conn ? evhttp_connection_get_addr(conn) : NULL;
    return sa != NULL && ap_sockaddr_is_loopback(sa);
}

static void
on_admin(struct evhttp_request *req, void *arg)
{
    ap_server_t *s = arg;
    const char *uri = evhttp_request_get_uri(req);
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    char path[256];
    size_t n = strcspn(uri, "?");
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, uri, n);
    path[n] = '\0';
    bool get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
    struct evbuffer *b = evbuffer_new();

    if (strcmp(path, "/healthz") == 0 && get) {
        evbuffer_add_printf(b, "{\"status\":\"ok\"}\n");
        reply_json(req, 200, b);
    } else if (strcmp(path, "/readyz") == 0 && get) {
        bool ready = !s->draining && ap_auth_ready(s->auth);
        evbuffer_add_printf(b, "{\"ready\":%s%s}\n", ready ? "true" : "false",
                            s->draining ? ",\"detail\":\"draining\"" : "");
        reply_json(req, ready ? 200 : 503, b);
    } else if (strcmp(path, "/metrics") == 0 && get) {
        render_metrics(s, b);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", b);
    } else if (strcmp(path, "/tokens") == 0 && get) {
        render_tokens(s, b);
        reply_json(req, 200, b);
    } else if (strncmp(path, "/tokens/", 8) == 0 && n > 16 &&
               strcmp(path + n - 8, "/refresh") == 0) {
        char name[200];
        size_t nl = n - 16;
        if (nl >= sizeof(name))
            nl = sizeof(name) - 1;
        memcpy(name, path + 8, nl);
        name[nl] = '\0';
        char *dec = evhttp_uridecode(name, 0, NULL);
        ap_cred_t *c = dec ? ap_auth_find(s->auth, dec) : NULL;
        if (cmd != EVHTTP_REQ_POST) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
            reply_error(req, 405, "method_not_allowed", "use POST");
        } else if (!from_loopback(req)) {
            /* The admin listener may face a pod network (probes); actions stay local. */
            reply_error(req, 403, "loopback_only", "POST endpoints answer loopback clients only");
        } else if (c == NULL) {
            reply_error(req, 404, "unknown_credential", "no credential of that name");
        } else {
            ap_cred_refresh(c);
            ap_log_info("admin: refresh of credential \"%s\" requested", ap_cred_name(c));
            evbuffer_add_printf(b, "{\"refreshing\":");
            json_str(b, ap_cred_name(c));
            evbuffer_add_printf(b, "}\n");
            reply_json(req, 202, b);
        }
        free(dec);
    } else if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
               strcmp(path, "/metrics") == 0 || strcmp(path, "/tokens") == 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
        reply_error(req, 405, "method_not_allowed", "use GET");
    } else {
        reply_error(req, 404, "not_found", "admin endpoints: /healthz /readyz /metrics /tokens");
    }
    evbuffer_free(b);
}

void ap_listener_bound_name(evutil_socket_t fd, char *out, size_t n);

ap_rc_t
ap_admin_start(ap_server_t *s)
{
    const ap_conf_t *conf = s->conf;
    if (conf->nadmin == 0)
        return AP_OK;
    s->admin = evhttp_new(s->base);
    if (s->admin == NULL)
        return AP_ERR;
    evhttp_set_allowed_methods(s->admin, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
    evhttp_set_max_headers_size(s->admin, 16384);
    evhttp_set_max_body_size(s->admin, 4096);
    evhttp_set_timeout(s->admin, 10);
    evhttp_set_gencb(s->admin, on_admin, s);
    for (size_t i = 0; i < conf->nadmin; i++) {
        char *port_end = NULL;
        long port = strtol(conf->admin[i].port, &port_end, 10);
        struct evhttp_bound_socket *bs =
            evhttp_bind_socket_with_handle(s->admin, conf->admin[i].host, (ev_uint16_t)port);
        if (bs == NULL) {
            ap_log_error("admin listen %s:%s: %s", conf->admin[i].host, conf->admin[i].port,
                         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
            return AP_ERR;
        }
        char name[80];
        ap_listener_bound_name(evhttp_bound_socket_get_fd(bs), name, sizeof(name));
        ap_log_info("listening on %s (admin)", name);
    }
    return AP_OK;
}

void
ap_admin_stop(ap_server_t *s)
{
    if (s->admin) {
        evhttp_free(s->admin);
        s->admin = NULL;
    }
}

/* --- Health-check client (for container HEALTHCHECK: no curl binary needed) ----------------------
 */

static size_t
discard(char *p, size_t size, size_t n, void *ud)
{
    return size * n;
}

int
ap_admin_healthcheck(const char *url)
{
    CURL *e = curl_easy_init();
    if (e == NULL)
        return 1;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode rc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    if (rc != CURLE_OK) {
        fprintf(stderr, "healthcheck %s: %s\n", url, curl_easy_strerror(rc));
        return 1;
    }
    if (status != 200) {
        fprintf(stderr, "healthcheck %s: HTTP %ld\n", url, status);
        return 1;
    }
    return 0;
}
