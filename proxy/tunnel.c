/*
 * tunnel.c: CONNECT relay (plain bytes; no injection is possible inside TLS, by design).
 *
 * The upstream socket is connected with bufferevent_socket_connect_hostname on the server's
 * evdns base (never a blocking resolve), after applying connect_to. Bytes the client sent
 * behind the CONNECT head are forwarded first. Each direction stops reading when the other
 * side's output is above AP_HIGH_WATER and resumes below AP_LOW_WATER; EOF on one side flushes
 * the other before the connection closes; an idle timer bounds silent tunnels.
 */
#include "core.h"

#include <event2/dns.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct ap_tunnel_s {
    ap_req_t *r;            /* borrowed: the owner */
    struct bufferevent *up; /* owned */
    struct event *idle;     /* owned */
    bool established;
    bool flushing; /* one side closed; finishing the other's output */
    bool closing;
};

static void
touch(ap_tunnel_t *t)
{
    int64_t ms = t->r->conn->conf->limits.tunnel_idle_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(t->idle, &tv);
}

static void
relay(struct bufferevent *from, struct bufferevent *to)
{
    struct evbuffer *out = bufferevent_get_output(to);
    evbuffer_add_buffer(out, bufferevent_get_input(from));
    if (evbuffer_get_length(out) >= AP_HIGH_WATER) {
        /* Backpressure: stop reading until `to` drains below the low mark. */
        bufferevent_disable(from, EV_READ);
        bufferevent_setwatermark(to, EV_WRITE, AP_LOW_WATER, 0);
    }
}

static void
finish(ap_tunnel_t *t, const char *why)
{
    if (t->closing)
        return;
    t->closing = true;
    ap_conn_close(t->r->conn, why);
}

/* One side closed: flush what the other still owes, then close the whole connection. */
static void
half_closed(ap_tunnel_t *t, struct bufferevent *other)
{
    if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
        finish(t, "tunnel closed");
        return;
    }
    t->flushing = true;
    bufferevent_disable(t->up, EV_READ);
    bufferevent_disable(t->r->conn->bev, EV_READ);
    bufferevent_setwatermark(other, EV_WRITE, 0, 0);
}

static void
on_client_read(struct bufferevent *bev, void *arg)
{
    ap_tunnel_t *t = arg;
    t->r->bytes_in += evbuffer_get_length(bufferevent_get_input(bev));
    relay(bev, t->up);
    touch(t);
}

static void
on_up_read(struct bufferevent *bev, void *arg)
{
    ap_tunnel_t *t = arg;
    t->r->bytes_out += evbuffer_get_length(bufferevent_get_input(bev));
    relay(bev, t->r->conn->bev);
    touch(t);
}

/* `bev` drained (below its write low mark): resume reading `from`, or finish a flush. */
static void
drained(ap_tunnel_t *t, struct bufferevent *bev, struct bufferevent *from)
{
    if (t->flushing) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            finish(t, "tunnel closed");
        return;
    }
    if (!(bufferevent_get_enabled(from) & EV_READ)) {
        bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
        bufferevent_enable(from, EV_READ);
    }
}

static void
on_client_write(struct bufferevent *bev, void *arg)
{
    ap_tunnel_t *t = arg;
    drained(t, bev, t->up);
}

static void
on_up_write(struct bufferevent *bev, void *arg)
{
    ap_tunnel_t *t = arg;
    drained(t, bev, t->r->conn->bev);
}

static void
on_client_event(struct bufferevent *bev, short what, void *arg)
{
    ap_tunnel_t *t = arg;
    if (what & BEV_EVENT_ERROR) {
        finish(t, "client error");
        return;
    }
    if (what & BEV_EVENT_EOF) {
        relay(bev, t->up);
        half_closed(t, t->up);
    }
}

static void
on_up_event(struct bufferevent *bev, short what, void *arg)
{
    ap_tunnel_t *t = arg;
    ap_req_t *r = t->r;
    ap_conn_t *c = r->conn;
    if (what & BEV_EVENT_CONNECTED) {
        t->established = true;
        r->status = 200;
        r->headers_sent = true;
        evbuffer_add_printf(bufferevent_get_output(c->bev),
                            "HTTP/1.1 200 Connection Established\r\nVia: 1.1 %s\r\n\r\n",
                            c->srv->via_id);
        bufferevent_setcb(c->bev, on_client_read, on_client_write, on_client_event, t);
        bufferevent_setwatermark(c->bev, EV_READ, 0, AP_HIGH_WATER);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        bufferevent_enable(t->up, EV_READ | EV_WRITE);
        /* Bytes the client pipelined behind the CONNECT head (a TLS ClientHello) go first. */
        if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
            on_client_read(c->bev, t);
        touch(t);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        if (!t->established) {
            int dnserr = bufferevent_socket_get_dns_error(bev);
            char detail[200];
            snprintf(detail, sizeof(detail), "tunnel to %s:%d failed: %s", r->host, r->port,
                     dnserr ? evutil_gai_strerror(dnserr) : "connection refused or reset");
            ap_metrics_upstream_error(c->srv->metrics, "tunnel_connect_failed");
            /* ap_conn_send_error frees nothing now; the tunnel is torn down with the request. */
            ap_conn_send_error(c, 502, "tunnel_connect_failed", detail, 0);
            return;
        }
        if (what & BEV_EVENT_ERROR) {
            finish(t, "upstream error");
            return;
        }
        relay(bev, c->bev);
        half_closed(t, c->bev);
    }
}

static void
on_idle(evutil_socket_t fd, short what, void *arg)
{
    finish(arg, "tunnel idle timeout");
}

void
ap_tunnel_start(ap_req_t *r, const char *host, int port)
{
    ap_conn_t *c = r->conn;
    ap_server_t *s = c->srv;
    ap_tunnel_t *t = ap_xcalloc(1, sizeof(*t));
    t->r = r;
    r->tunnel = t;
    r->body_done = true;
    t->idle = evtimer_new(s->base, on_idle, t);
    t->up = bufferevent_socket_new(s->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (t->up == NULL || t->idle == NULL) {
        ap_conn_send_error(c, 502, "tunnel_connect_failed", "out of resources", 0);
        return;
    }
    bufferevent_setcb(t->up, on_up_read, on_up_write, on_up_event, t);
    bufferevent_setwatermark(t->up, EV_READ, 0, AP_HIGH_WATER);
    /* Hold the client's bytes until the tunnel is up. */
    bufferevent_disable(c->bev, EV_READ);
    char h[256];
    int p;
    ap_conf_connect_to(c->conf, host, port, h, sizeof(h), &p); /* as curl does */
    int64_t ms = c->conf->limits.connect_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    bufferevent_set_timeouts(t->up, NULL, NULL);
    evtimer_add(t->idle, &tv);
    if (bufferevent_socket_connect_hostname(t->up, s->dns, AF_UNSPEC, h, p) != 0) {
        /* Failure may already have been reported through on_up_event. */
        if (!c->closing && !r->headers_sent)
            ap_conn_send_error(c, 502, "tunnel_connect_failed", "could not connect", 0);
    }
}

void
ap_tunnel_stop(ap_tunnel_t *t)
{
    if (t == NULL)
        return;
    t->closing = true;
    if (t->up) {
        bufferevent_disable(t->up, EV_READ | EV_WRITE);
        bufferevent_setcb(t->up, NULL, NULL, NULL, NULL);
    }
    if (t->idle)
        evtimer_del(t->idle);
}

void
ap_tunnel_free(ap_tunnel_t *t)
{
    if (t == NULL)
        return;
    if (t->up)
        bufferevent_free(t->up);
    if (t->idle)
        event_free(t->idle);
    free(t);
}
