/*
 * listener.c: the client listeners. On EMFILE/ENFILE the listeners are disabled and re-enabled
 * from a timer instead of spinning (nginx's ngx_disable_accept_events); the connection cap is
 * enforced in ap_conn_accept.
 */
#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
    ap_conn_accept(arg, fd, sa, salen);
}

static void
on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    ap_server_t *s = arg;
    for (size_t i = 0; i < s->nlisteners; i++)
        evconnlistener_enable(s->listeners[i]);
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    ap_server_t *s = arg;
    int err = EVUTIL_SOCKET_ERROR();
    ap_log_error("accept: %s", evutil_socket_error_to_string(err));
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        for (size_t i = 0; i < s->nlisteners; i++)
            evconnlistener_disable(s->listeners[i]);
        struct timeval tv = {1, 0};
        evtimer_add(s->accept_retry, &tv);
    }
}

bool
ap_sockaddr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* Formats the bound address of fd as "host:port" ("[v6]:port"). */
static void
bound_name(evutil_socket_t fd, char *out, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
            port = ntohs(in6->sin6_port);
            snprintf(out, n, "[%s]:%d", ip, port);
            return;
        }
    }
    snprintf(out, n, "%s:%d", ip, port);
}

void ap_listener_bound_name(evutil_socket_t fd, char *out, size_t n);
void
ap_listener_bound_name(evutil_socket_t fd, char *out, size_t n)
{
    bound_name(fd, out, n);
}

ap_rc_t
ap_listener_start(ap_server_t *s)
{
    const ap_conf_t *conf = s->conf;
    bool protected = conf->nusers > 0 || conf->nallow > 0 || conf->allow_public_without_auth;
    s->accept_retry = evtimer_new(s->base, on_accept_retry, s);
    for (size_t i = 0; i < conf->nlisten; i++) {
        struct addrinfo hints = {0}, *res = NULL;
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        int gai = getaddrinfo(conf->listen[i].host, conf->listen[i].port, &hints, &res);
        if (gai != 0) {
            ap_log_error("listen %s:%s: %s", conf->listen[i].host, conf->listen[i].port,
                         gai_strerror(gai));
            return AP_ERR;
        }
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            if (!ap_sockaddr_is_loopback(ai->ai_addr) && !protected) {
                ap_log_error("refusing to listen on non-loopback %s:%s without client_auth "
                             "(users or allow); set client_auth.insecure_allow_unauthenticated "
                             "to override",
                             conf->listen[i].host, conf->listen[i].port);
                freeaddrinfo(res);
                return AP_ERR;
            }
            struct evconnlistener *l = evconnlistener_new_bind(
                s->base, on_accept, s,
                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 1024,
                ai->ai_addr, (int)ai->ai_addrlen);
            if (l == NULL) {
                ap_log_error("listen %s:%s: %s", conf->listen[i].host, conf->listen[i].port,
                             evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
                freeaddrinfo(res);
                return AP_ERR;
            }
            evconnlistener_set_error_cb(l, on_accept_error);
            s->listeners = ap_xrealloc(s->listeners, (s->nlisteners + 1) * sizeof(*s->listeners));
            s->listeners[s->nlisteners++] = l;
            char name[80];
            bound_name(evconnlistener_get_fd(l), name, sizeof(name));
            ap_log_info("listening on %s (proxy)", name);
        }
        freeaddrinfo(res);
    }
    return AP_OK;
}

void
ap_listener_stop(ap_server_t *s)
{
    for (size_t i = 0; i < s->nlisteners; i++)
        evconnlistener_free(s->listeners[i]);
    free(s->listeners);
    s->listeners = NULL;
    s->nlisteners = 0;
    if (s->accept_retry) {
        event_free(s->accept_retry);
        s->accept_retry = NULL;
    }
}
