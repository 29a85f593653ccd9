/*
 * conn.c: the client connection state machine.
 *
 *   READ_HEAD --parse--> route/authorize --> [token wait] --> [read small body] --> UPSTREAM
 *        ^                                                                            |
 *        +------------------------- keep-alive (response complete) <-----------------+
 *   CONNECT: route/authorize --> TUNNEL (tunnel.c) --> close
 *
 * One request at a time per connection: pipelined requests stay in the input buffer until the
 * current response is complete, so responses go out in order. Every phase has a timer: head,
 * idle keep-alive, body, token wait, upstream response (upstream.c), tunnel idle (tunnel.c).
 * Freeing happens only in the reaper (ap_conn_reap), never inside a callback.
 */
#include "core.h"
#include "h1up.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "log.h"

static void on_read(struct bufferevent *bev, void *arg);
static void on_write(struct bufferevent *bev, void *arg);
static void on_output_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);
static void on_flush(evutil_socket_t fd, short what, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);
static void process_head(ap_conn_t *c);
static void acquire_token(ap_req_t *r);
static void log_access(ap_req_t *r);

/* --- Timers ------------------------------------------------------------------------------- */

static void
arm_ms(struct event *ev, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

static void
on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    ap_conn_t *c = arg;
    if (c->lingering) {
        ap_conn_close(c, "lingering close done");
        return;
    }
    if (c->req != NULL && c->req->state == AP_REQ_DONE) {
        ap_conn_close(c, "client did not read the rest of its response");
        return;
    }
    if (c->req != NULL)
        return;
    if (c->reading_head) {
        /* A slowloris head: answer once, then close. */
        ap_conn_send_error(c, 408, "head_timeout", "the request head did not arrive in time", 0);
        return;
    }
    ap_conn_close(c, "idle timeout");
}

static void
on_req_timer(evutil_socket_t fd, short what, void *arg)
{
    ap_req_t *r = arg;
    ap_conn_t *c = r->conn;
    switch (r->state) {
    case AP_REQ_WAIT_TOKEN:
        ap_cred_cancel(&r->waiter);
        ap_conn_send_error(c, 503, "token_unavailable",
                           "timed out waiting for the credential's token", 1);
        return;
    case AP_REQ_READ_BODY:
        ap_conn_send_error(c, 408, "body_timeout", "the request body did not arrive in time", 0);
        return;
    case AP_REQ_UPSTREAM:
        if (r->paused_recv) {
            /* The client stopped reading its response. */
            ap_conn_close(c, "client stalled reading the response");
            return;
        }
        ap_upstream_abort(r);
        if (!r->body_done) {
            ap_conn_send_error(c, 408, "body_timeout", "the request body did not arrive in time",
                               0);
        } else if (!r->headers_sent) {
            ap_metrics_upstream_error(c->srv->metrics, "upstream_timeout");
            ap_conn_send_error(c, 504, "upstream_timeout", "the upstream did not answer in time",
                               0);
        } else {
            /* The body stopped coming: the client sees a truncated response. */
            r->error = "upstream_timeout";
            ap_metrics_upstream_error(c->srv->metrics, "upstream_timeout");
            ap_conn_close(c, "upstream stalled mid-body");
        }
        return;
    default:
        return;
    }
}

/* --- Lifecycle ------------------------------------------------------------------------------ */

void
ap_conn_accept(ap_server_t *s, evutil_socket_t fd, struct sockaddr *sa, int salen)
{
    ap_conf_t *conf = s->conf;
    if (s->draining || s->nconns >= conf->limits.max_conns) {
        /* Over the cap: refuse cheaply rather than queue; the client sees a reset/close. */
        ap_log_warn("connection refused: %s", s->draining ? "draining" : "connection cap reached");
        evutil_closesocket(fd);
        return;
    }
    ap_conn_t *c = ap_xcalloc(1, sizeof(*c));
    c->srv = s;
    c->conf = ap_conf_ref(conf);
    c->id = ++s->next_conn_id;
    if ((size_t)salen <= sizeof(c->peer_addr))
        memcpy(&c->peer_addr, sa, (size_t)salen);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
    }
    snprintf(c->peer, sizeof(c->peer), "%s:%d", ip, port);
    ap_list_init(&c->reap_link);
    evutil_make_socket_nonblocking(fd);
    c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(s->base, on_conn_timer, c);
    c->flush = event_new(s->base, -1, 0, on_flush, c);
    if (c->bev == NULL || c->timer == NULL || c->flush == NULL) {
        if (c->bev == NULL)
            evutil_closesocket(fd);
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->timer)
            event_free(c->timer);
        if (c->flush)
            event_free(c->flush);
        ap_conf_unref(c->conf);
        free(c);
        return;
    }
    ap_list_insert_tail(&s->conns, &c->link);
    s->nconns++;
    bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, AP_HIGH_WATER);
    /* Writing is write-through (on_flush); EV_WRITE is enabled only while a backlog remains. */
    evbuffer_add_cb(bufferevent_get_output(c->bev), on_output_added, c);
    bufferevent_disable(c->bev, EV_WRITE); /* libevent enables it on creation */
    bufferevent_enable(c->bev, EV_READ);
    c->reading_head = true;
    arm_ms(c->timer, conf->limits.head_timeout_ms);
}

void
ap_req_free(ap_req_t *r)
{
    if (r == NULL)
        return;
    ap_cred_cancel(&r->waiter);
    ap_h1up_detach(r);
    if (r->xfer.easy) {
        ap_curl_remove(r->conn->srv->curl, &r->xfer);
        /* A handle removed while paused may keep pause state and held data: not reused. */
        if (r->paused_recv || r->paused_send)
            curl_easy_cleanup(r->xfer.easy);
        else
            ap_curl_easy_put(r->conn->srv->curl, r->xfer.easy);
    }
    for (struct curl_slist *l = r->up_headers; l; l = l->next)
        ap_wipe(l->data, strlen(l->data));
    curl_slist_free_all(r->up_headers);
    ap_tunnel_free(r->tunnel);
    ap_token_unref(r->token);
    if (r->cred)
        ap_cred_unref(r->cred);
    if (r->timer)
        event_free(r->timer);
    ap_buf_free(&r->head, false);
    ap_buf_free(&r->body, true);
    ap_buf_free(&r->resp_head, false);
    free(r->host);
    free(r->path);
    free(r->url);
    free(r);
}

void
ap_conn_close(ap_conn_t *c, const char *reason)
{
    if (c->closing)
        return;
    c->closing = true;
    ap_log_debug("conn %llu closing: %s", (unsigned long long)c->id, reason);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    evtimer_del(c->timer);
    event_del(c->flush);
    if (c->req != NULL && c->req->state != AP_REQ_DONE && c->req->method[0]) {
        /* The client left (or we gave up) before the response completed: 499, as nginx logs. */
        if (c->req->status == 0 || !c->req->headers_sent)
            c->req->status = 499;
        if (c->req->error == NULL)
            c->req->error = "client_closed";
        log_access(c->req);
        c->req->state = AP_REQ_DONE;
    }
    if (c->req != NULL) {
        /* Stop everything that could call back into this connection. */
        ap_cred_cancel(&c->req->waiter);
        if (c->req->timer)
            evtimer_del(c->req->timer);
        ap_h1up_detach(c->req);
        if (c->req->xfer.easy)
            ap_curl_remove(c->srv->curl, &c->req->xfer);
        ap_tunnel_stop(c->req->tunnel);
    }
    ap_list_insert_tail(&c->srv->reap, &c->reap_link);
    event_active(c->srv->reaper, EV_TIMEOUT, 0);
}

void
ap_conn_reap(ap_server_t *s)
{
    while (!ap_list_empty(&s->reap)) {
        ap_conn_t *c = ap_container_of(s->reap.next, ap_conn_t, reap_link);
        ap_list_remove(&c->reap_link);
        ap_list_remove(&c->link);
        ap_req_free(c->req);
        bufferevent_free(c->bev);
        event_free(c->timer);
        event_free(c->flush);
        ap_conf_unref(c->conf);
        s->nconns--;
        free(c);
    }
}

/* --- Access log and completion -------------------------------------------------------------- */

static void
log_access(ap_req_t *r)
{
    ap_conn_t *c = r->conn;
    char path[512];
    const char *p = r->path ? r->path : "";
    size_t n = strcspn(p, "?"); /* query strings may carry API keys */
    if (n >= sizeof(path))
        n = sizeof(path) - 1;
    memcpy(path, p, n);
    path[n] = '\0';
    double ms = (double)(ap_now_mono_ms() - r->started_ms);
    ap_access_t a = {
        .conn_id = c->id,
        .client = c->peer,
        .method = r->method[0] ? r->method : NULL,
        .host = r->host,
        .path = path[0] ? path : NULL,
        .route = r->route ? r->route->label : NULL,
        .credential = r->cred ? ap_cred_name(r->cred) : NULL,
        .status = r->status,
        .bytes_in = r->bytes_in,
        .bytes_out = r->bytes_out,
        .duration_ms = ms,
        .error = r->error,
    };
    ap_log_access(&a);
    ap_metrics_request(c->srv->metrics, r->route ? r->route->label : (r->host ? "unmatched" : "-"),
                       r->status, ms / 1000.0);
}

/* Lingering close (nginx's lingering_close): after an early error the client may still be
 * sending; closing with unread input makes the kernel send RST, which can destroy our error
 * response in flight. So: shut down our side, discard input for a short while, then close. */
#define AP_LINGER_MS 2000

static void
on_linger_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void
on_linger_event(struct bufferevent *bev, short what, void *arg)
{
    ap_conn_close(arg, "client closed after error");
}

static void
linger_or_close(ap_conn_t *c)
{
    ap_req_t *r = c->req;
    if (r == NULL || r->body_done || c->lingering) {
        ap_conn_close(c, "response complete, closing");
        return;
    }
    c->lingering = true;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_setcb(c->bev, on_linger_read, NULL, on_linger_event, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    on_linger_read(c->bev, c);
    evtimer_del(c->timer);
    arm_ms(c->timer, AP_LINGER_MS);
}

static void
flush_then_close(ap_conn_t *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0) {
        linger_or_close(c);
        return;
    }
    /* on_write fires once the output is empty; a client that stops reading is cut off. */
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    evtimer_del(c->timer);
    arm_ms(c->timer, c->conf->limits.body_timeout_ms);
}

void
ap_conn_request_done(ap_conn_t *c)
{
    ap_req_t *r = c->req;
    if (r == NULL)
        return;
    log_access(r);
    bool close_after = r->close_after || !r->h.keep_alive || !r->body_done || c->srv->draining;
    r->state = AP_REQ_DONE;
    if (close_after) {
        flush_then_close(c);
        return;
    }
    c->req = NULL;
    ap_req_free(r);
    c->nrequests++;
    c->reading_head = false;
    c->scanned = 0;
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_READ);
    arm_ms(c->timer, c->conf->limits.idle_timeout_ms);
    if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0)
        process_head(c);
}

void
ap_conn_send_error(ap_conn_t *c, int status, const char *code, const char *detail,
                   uint32_t retry_after_s)
{
    if (c->closing)
        return;
    ap_req_t *r = c->req;
    if (r != NULL && r->headers_sent) {
        /* Too late for a status: the only honest signal left is closing mid-body. */
        r->error = code;
        ap_conn_close(c, code);
        return;
    }
    ap_buf_t body = {0};
    ap_buf_append(&body, "{\"error\":\"", 10);
    ap_json_escape(&body, code, strlen(code));
    ap_buf_append(&body, "\",\"detail\":\"", 12);
    ap_json_escape(&body, detail, strlen(detail));
    ap_buf_append(&body, "\"}\n", 3);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                        "Content-Length: %zu\r\nCache-Control: no-store\r\n",
                        status, ap_http1_reason(status), body.len);
    if (status == 407)
        evbuffer_add_printf(out, "Proxy-Authenticate: Basic realm=\"authproxy\"\r\n");
    if (retry_after_s > 0)
        evbuffer_add_printf(out, "Retry-After: %u\r\n", retry_after_s);
    /* Errors end the connection unless the request was fully read and is keep-alive. */
    bool keep = r != NULL && r->body_done && r->h.keep_alive && status != 400 && status != 408 &&
                status != 431 && status != 505;
    if (!keep)
        evbuffer_add_printf(out, "Connection: close\r\n");
    evbuffer_add(out, "\r\n", 2);
    bool head = r != NULL && r->head_method;
    size_t sent = head ? 0 : body.len;
    if (!head)
        evbuffer_add(out, body.data, body.len);
    ap_buf_free(&body, false);
    if (r == NULL) {
        /* A head that never parsed: log it as a request of its own. */
        r = ap_xcalloc(1, sizeof(*r));
        r->conn = c;
        r->started_ms = ap_now_mono_ms();
        c->req = r;
    }
    if (r->timer)
        evtimer_del(r->timer);
    r->status = status;
    r->error = code;
    r->bytes_out += sent; /* the access log counts the error body like any response body */
    r->headers_sent = true;
    r->close_after = !keep;
    ap_conn_request_done(c);
}

/* --- Request head ---------------------------------------------------------------------------- */

static bool
check_proxy_auth(ap_conn_t *c, const ap_http1_req_t *h)
{
    const ap_conf_t *conf = c->conf;
    if (conf->nusers == 0)
        return true;
    const ap_header_t *pa = ap_http1_find(h, "Proxy-Authorization");
    if (pa == NULL || pa->value_len < 7 || !ap_memieq(pa->value, 6, "basic ", 6))
        return false;
    const char *b64 = pa->value + 6;
    size_t blen = pa->value_len - 6;
    while (blen > 0 && *b64 == ' ') {
        b64++;
        blen--;
    }
    if (blen == 0 || blen > 1024)
        return false;
    unsigned char dec[800];
    int n = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)blen);
    if (n < 0)
        return false;
    /* EVP_DecodeBlock counts padding bytes as output: trim them. */
    while (n > 0 && blen > 0 && b64[blen - 1] == '=') {
        n--;
        blen--;
    }
    unsigned char *colon = memchr(dec, ':', (size_t)n);
    bool ok = false;
    if (colon != NULL) {
        size_t ulen = (size_t)(colon - dec);
        size_t plen = (size_t)n - ulen - 1;
        for (size_t i = 0; i < conf->nusers && !ok; i++) {
            const ap_user_t *u = &conf->users[i];
            size_t ul = strlen(u->name), pl = strlen(u->password);
            /* Constant-time on the password; the user name is not secret. */
            if (ul == ulen && memcmp(u->name, dec, ulen) == 0 && pl == plen &&
                CRYPTO_memcmp(u->password, colon + 1, plen) == 0)
                ok = true;
        }
    }
    ap_wipe(dec, sizeof(dec));
    return ok;
}

/* Copies the head out of the input buffer so header pointers stay valid while the buffer
 * moves on (body streaming, pipelining). */
static void
rebase(ap_req_t *r, const char *old)
{
    const char *base = r->head.data;
#define REBASE(p) ((p) = (p) ? base + ((p)-old) : NULL)
    REBASE(r->h.method);
    REBASE(r->h.target);
    for (size_t i = 0; i < r->h.nheaders; i++) {
        REBASE(r->h.headers[i].name);
        REBASE(r->h.headers[i].value);
    }
#undef REBASE
}

static void
start_upstream(ap_req_t *r)
{
    r->state = AP_REQ_UPSTREAM;
    if (ap_upstream_start(r) != AP_OK) {
        r->state = AP_REQ_NONE;
        ap_conn_send_error(r->conn, 502, "upstream_error", "could not start the upstream request",
                           0);
    }
}

static void
read_small_body(ap_req_t *r)
{
    struct evbuffer *in = bufferevent_get_input(r->conn->bev);
    size_t avail = evbuffer_get_length(in);
    size_t n = avail < r->body_left ? avail : (size_t)r->body_left;
    if (n > 0) {
        char tmp[16384];
        while (n > 0) {
            size_t k = n < sizeof(tmp) ? n : sizeof(tmp);
            int got = evbuffer_remove(in, tmp, k);
            if (got <= 0)
                break;
            ap_buf_append(&r->body, tmp, (size_t)got);
            r->body_left -= (uint64_t)got;
            r->bytes_in += (uint64_t)got;
            n -= (size_t)got;
        }
        arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
    }
    if (r->body_left == 0) {
        r->body_done = true;
        evtimer_del(r->timer);
        start_upstream(r);
    }
}

static void
after_token(ap_req_t *r)
{
    ap_conn_t *c = r->conn;
    if (r->body_kind != AP_BODY_NONE && r->h.expect_continue && !r->sent_continue &&
        !r->body_done) {
        /* We are the one deciding whether the body is wanted (RFC 9110 10.1.1). */
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
        r->sent_continue = true;
    }
    if (r->keep_body && !r->body_done) {
        r->state = AP_REQ_READ_BODY;
        arm_ms(r->timer, c->conf->limits.body_timeout_ms);
        read_small_body(r);
        return;
    }
    start_upstream(r);
}

static void
on_token(ap_token_waiter_t *w, ap_token_t *tok)
{
    ap_req_t *r = ap_container_of(w, ap_req_t, waiter);
    evtimer_del(r->timer);
    if (tok == NULL) {
        bool fetch_failed = w->reason == ap_err_token_fetch_failed;
        ap_conn_send_error(r->conn, fetch_failed ? 502 : 503,
                           w->reason ? w->reason : "token_unavailable", w->detail,
                           fetch_failed ? 0 : (w->retry_after_s ? w->retry_after_s : 1));
        return;
    }
    r->token = tok;
    after_token(r);
}

static void
acquire_token(ap_req_t *r)
{
    if (r->cred == NULL) {
        after_token(r);
        return;
    }
    r->waiter.cb = on_token;
    ap_token_t *tok = NULL;
    ap_rc_t rc = ap_cred_acquire(r->cred, &r->waiter, &tok);
    if (rc == AP_OK) {
        r->token = tok;
        after_token(r);
    } else if (rc == AP_AGAIN) {
        r->state = AP_REQ_WAIT_TOKEN;
        arm_ms(r->timer, r->conn->conf->limits.token_wait_ms);
    } else {
        ap_conn_send_error(r->conn, 503, r->waiter.reason ? r->waiter.reason : "token_unavailable",
                           r->waiter.detail[0] ? r->waiter.detail : "no valid token",
                           r->waiter.retry_after_s ? r->waiter.retry_after_s : 1);
    }
}

/* Called by upstream.c after a 401 from the API: the token was dropped; get a new one and send
 * the (kept) request again. */
void ap_conn_replay(ap_req_t *r);
void
ap_conn_replay(ap_req_t *r)
{
    ap_token_unref(r->token);
    r->token = NULL;
    r->body_off = 0;
    acquire_token(r);
}

static void
handle_request(ap_req_t *r)
{
    ap_conn_t *c = r->conn;
    const ap_conf_t *conf = c->conf;
    ap_server_t *s = c->srv;
    ap_http1_req_t *h = &r->h;

    if (h->method_len >= sizeof(r->method)) {
        ap_conn_send_error(c, 501, "method_not_supported", "method name too long", 0);
        return;
    }
    memcpy(r->method, h->method, h->method_len);
    r->method[h->method_len] = '\0';
    r->head_method = strcmp(r->method, "HEAD") == 0;
    r->body_kind = h->body;
    r->body_left = h->body == AP_BODY_LENGTH ? h->content_length : 0;
    r->body_done = h->body == AP_BODY_NONE || (h->body == AP_BODY_LENGTH && r->body_left == 0);
    ap_chunked_init(&r->chunked);

    if (ap_http1_parse_target(h->target, h->target_len, h->is_connect, &r->target) != AP_OK) {
        ap_conn_send_error(c, 400, "bad_target", "the request target is not valid", 0);
        return;
    }
    ap_target_t *t = &r->target;
    if (t->host != NULL) {
        r->host = ap_xstrndup(t->host, t->host_len);
        ap_ascii_lower(r->host);
    }
    r->port = t->port;
    r->path = ap_http1_target_path(t);

    if (!ap_router_client_allowed(conf, (struct sockaddr *)&c->peer_addr)) {
        ap_conn_send_error(c, 403, "client_not_allowed",
                           "this client address is not in the proxy's allowlist", 0);
        return;
    }
    if (!check_proxy_auth(c, h)) {
        ap_conn_send_error(c, 407, "proxy_auth_required",
                           "this proxy requires Proxy-Authorization: Basic", 0);
        return;
    }
    if (ap_headers_has_loop(h, s->via_id)) {
        ap_conn_send_error(c, 508, "loop_detected", "the request came back to this proxy (Via)", 0);
        return;
    }
    if (conf->limits.max_body > 0 && h->body == AP_BODY_LENGTH &&
        h->content_length > conf->limits.max_body) {
        ap_conn_send_error(c, 413, "body_too_large", "the request body exceeds limits.max_body", 0);
        return;
    }

    if (h->is_connect) {
        if (!conf->allow_connect) {
            ap_conn_send_error(c, 405, "connect_disabled", "CONNECT is disabled", 0);
            return;
        }
        r->route = ap_router_match(conf, r->host, r->port, NULL, 0);
        if (r->route == NULL && !conf->unmatched_forward) {
            ap_conn_send_error(c, 403, "host_not_allowed", "no route allows a tunnel to this host",
                               0);
            return;
        }
        r->state = AP_REQ_TUNNEL;
        ap_tunnel_start(r, r->host, r->port);
        return;
    }

    if (t->form == AP_TARGET_ASTERISK) {
        ap_conn_send_error(c, 400, "bad_target", "asterisk-form is not proxied", 0);
        return;
    }
    if (t->form == AP_TARGET_ABSOLUTE) {
        if (t->https) {
            ap_conn_send_error(c, 400, "https_needs_connect",
                               "send https:// requests with CONNECT, or use http:// and let the "
                               "proxy upgrade the route to https",
                               0);
            return;
        }
        r->absolute = true;
        r->route = ap_router_match(conf, r->host, r->port, r->path, strlen(r->path));
    } else {
        r->route = ap_router_match(conf, NULL, 0, r->path, strlen(r->path));
        if (r->route == NULL) {
            ap_conn_send_error(c, 400, "no_route",
                               "origin-form request matches no base-URL route; send "
                               "absolute-form requests to use this as a proxy",
                               0);
            return;
        }
    }
    if (r->route == NULL) {
        if (!conf->unmatched_forward) {
            ap_conn_send_error(c, 403, "host_not_allowed", "no route for this host", 0);
            return;
        }
        bool v6 = strchr(r->host, ':') != NULL;
        r->url = ap_xasprintf("http://%s%s%s:%d%s", v6 ? "[" : "", r->host, v6 ? "]" : "",
                              r->port ? r->port : 80, r->path);
    } else {
        r->url = ap_router_upstream_url(r->route, r->path, strlen(r->path));
        if (r->route->credential != NULL) {
            ap_cred_t *cred = ap_auth_find(s->auth, r->route->credential);
            if (cred == NULL) {
                ap_conn_send_error(c, 503, "token_unavailable", "credential not loaded", 1);
                return;
            }
            r->cred = ap_cred_ref(cred);
        }
    }
    /* Bodies small enough are kept so the request can be replayed once after a 401. */
    r->keep_body = h->body == AP_BODY_NONE ||
                   (h->body == AP_BODY_LENGTH && h->content_length <= conf->limits.replay_body);
    acquire_token(r);
}

static void
process_head(ap_conn_t *c)
{
    const ap_conf_t *conf = c->conf;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return;
    if (c->conf != c->srv->conf) {
        /* A reload happened: the next request on this connection uses the new snapshot. */
        ap_conf_unref(c->conf);
        c->conf = ap_conf_ref(c->srv->conf);
        conf = c->conf;
    }
    if (!c->reading_head) {
        /* First byte of a new request: the idle timer becomes the head timer. */
        c->reading_head = true;
        arm_ms(c->timer, conf->limits.head_timeout_ms);
    }
    size_t n = len < conf->limits.max_head ? len : conf->limits.max_head;
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
    ap_http1_req_t h;
    ap_http1_err_t err = {0};
    ap_rc_t rc = ap_http1_parse_request(p, n, c->scanned, conf->limits.max_head, &h, &err);
    if (rc == AP_AGAIN) {
        c->scanned = n;
        return;
    }
    if (rc != AP_OK) {
        ap_conn_send_error(c, err.status ? err.status : 400, err.code ? err.code : "bad_request",
                           err.detail ? err.detail : "malformed request", 0);
        return;
    }
    if (h.nheaders > conf->limits.max_headers) {
        ap_conn_send_error(c, 431, "too_many_headers",
                           "more header fields than limits.max_headers allows", 0);
        return;
    }
    evtimer_del(c->timer);
    c->reading_head = false;
    c->scanned = 0;
    ap_req_t *r = ap_xcalloc(1, sizeof(*r));
    r->body.secret = true; /* a kept body may carry credentials (form posts) */
    r->conn = c;
    r->started_ms = ap_now_mono_ms();
    r->timer = evtimer_new(c->srv->base, on_req_timer, r);
    ap_list_init(&r->waiter.link);
    r->h = h;
    ap_buf_append(&r->head, p, h.head_len);
    rebase(r, p);
    evbuffer_drain(in, h.head_len);
    c->req = r;
    handle_request(r);
}

/* --- bufferevent callbacks -------------------------------------------------------------------- */

static void
on_read(struct bufferevent *bev, void *arg)
{
    ap_conn_t *c = arg;
    if (c->closing)
        return;
    ap_req_t *r = c->req;
    if (r == NULL) {
        process_head(c);
        return;
    }
    switch (r->state) {
    case AP_REQ_READ_BODY:
        read_small_body(r);
        break;
    case AP_REQ_UPSTREAM:
        ap_upstream_on_client_readable(r);
        break;
    default:
        /* Token wait / response flushing: the bytes wait in the input buffer, bounded by the
         * read watermark (pipelined requests are read once this response is done). */
        break;
    }
}

/*
 * Write-through. A bufferevent with EV_WRITE enabled adds the write event as soon as output is
 * queued, then removes it once drained: two epoll_ctl and a loop turn per response. Instead,
 * output queued anywhere (response heads, bodies from curl, errors) schedules on_flush for later
 * in the same loop turn, which writes straight to the socket; only what the socket cannot take
 * now is left to the bufferevent, with EV_WRITE enabled until on_write sees the backlog gone.
 */
static void
on_output_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    ap_conn_t *c = arg;
    if (info->n_added == 0 || c->flush_pending || c->closing)
        return;
    if (bufferevent_get_enabled(c->bev) & EV_WRITE)
        return; /* a backlog: the bufferevent is writing */
    c->flush_pending = true;
    event_active(c->flush, EV_WRITE, 0);
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    ap_conn_t *c = arg;
    c->flush_pending = false;
    if (c->closing)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0 || (bufferevent_get_enabled(c->bev) & EV_WRITE))
        return;
    /* The bufferevent keeps its output's start frozen except while it writes; so do we. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(c->bev));
    int err = errno;
    evbuffer_freeze(out, 1);
    if (n < 0 && err != EAGAIN && err != EWOULDBLOCK && err != EINTR) {
        /* Let the bufferevent meet the error and report it through on_event. */
        bufferevent_enable(c->bev, EV_WRITE);
        return;
    }
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(c->bev, EV_WRITE);
        return;
    }
    /* Drained at once: what the bufferevent's write callback would have been told. */
    bufferevent_data_cb wcb = NULL;
    void *cbarg = NULL;
    bufferevent_getcb(c->bev, NULL, &wcb, NULL, &cbarg);
    if (wcb != NULL)
        wcb(c->bev, cbarg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
    ap_conn_t *c = arg;
    if (c->closing)
        return;
    /* Backlog gone: back to write-through, so the next response costs no epoll_ctl. */
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    ap_req_t *r = c->req;
    if (r == NULL)
        return;
    if (r->state == AP_REQ_DONE) {
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
            linger_or_close(c);
        return;
    }
    if (r->state == AP_REQ_UPSTREAM)
        ap_upstream_on_client_drained(r);
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
    ap_conn_t *c = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (c->req != NULL && c->req->state == AP_REQ_UPSTREAM && c->req->status == 0)
            c->req->error = "client_closed";
        ap_conn_close(c, (what & BEV_EVENT_EOF) ? "client closed" : "client socket error");
    }
}
