/*
 * h1up.c: the upstream fast path, HTTP/1.1 keep-alive connections of our own.
 *
 * libcurl's multi interface stays the general upstream engine (DNS, HTTP/2, outbound proxies,
 * streamed request bodies, token endpoints). Requests whose body is already in memory (none, or
 * a kept body) go over connections owned here when the origin's address is known: from the
 * start when connect_to maps it to an IP address (or the host is one), otherwise once curl has
 * completed a transfer to it over HTTP/1.1 (its address is then used for LEARN_TTL_MS). The
 * connections: nonblocking TCP, OpenSSL with the same trust and checks as curl (tls.ca_file,
 * peer and host name), ALPN offering h2 and http/1.1, keep-alive with an idle pool per origin.
 * That skips curl's per-transfer setup, which is most of the CPU a forwarded request costs
 * (bench/callgrind.md). An origin that picks h2, or that curl finds speaking HTTP/2, is left to
 * curl (it multiplexes).
 *
 * Failure before any response byte hands the request to curl once when that is safe (nothing
 * was written: a refused connect, a failed handshake, h2; or a reused connection the upstream
 * had closed, for an idempotent method), so error codes and messages stay curl's; otherwise
 * 502 (RFC 9112 9.3.1). After a failed new connection the origin goes through curl again
 * before it is tried here. A connect timeout answers 504 at once.
 *
 * Ownership: the engine (ap_h1up_t, one per server) owns every connection: on its origin's idle
 * list, on the busy list while a request is attached (r->h1 and k->req point at each other), or
 * on the dead list until the reaper event frees it. Closing only moves a connection to the dead
 * list, so it is safe from any callback, including the connection's own.
 */
#include "h1up.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* How long an address learned from curl is used for new connections. curl's own DNS cache
 * keeps entries 60 s; after that the next new connection goes through curl again (and
 * re-resolves, and notices if the origin started speaking HTTP/2). */
#define LEARN_TTL_MS 60000
/* Idle pooled connections: closed after this long, at most this many per origin. */
#define IDLE_TIMEOUT_MS 60000
#define MAX_IDLE_PER_ORIGIN 256
/* Origins remembered at once (forward mode can meet many hosts); unused ones make room. */
#define MAX_ORIGINS 256
/* Response heads: curl's limit (CURL_MAX_HTTP_HEADER). */
#define MAX_RESP_HEAD (100 * 1024)
#define READ_CHUNK 16384

typedef struct origin_s {
    ap_list_t link; /* on u->origins */
    char *key;      /* "https://host:port", host lowercase: for logs */
    char *host;     /* lowercase, without brackets */
    size_t host_len;
    int port;
    char *tls_name; /* SNI and certificate name: host without a trailing dot, as curl does */
    char *host_hdr; /* Host header value: host[:port], port omitted when the default */
    bool tls;
    struct sockaddr_storage addr; /* where curl connected (connect_to and DNS applied) */
    socklen_t addrlen;
    uint64_t learned_ms;     /* 0: not usable for new connections */
    bool fixed;              /* address known without DNS (connect_to to an IP, an IP literal) */
    uint64_t fixed_retry_ms; /* after a failed new connection: curl's until then */
    uint64_t h2_until;       /* the origin speaks HTTP/2 (curl's) until then */
    ap_list_t idle;          /* ap_h1conn_t, most recently used last */
    size_t nidle;
    size_t nconns;     /* live connections pointing here (idle or busy) */
    SSL_SESSION *sess; /* owned: the latest session ticket, for resumption on new connections */
} origin_t;

typedef enum { K_CONNECTING, K_HANDSHAKE, K_BUSY, K_IDLE, K_DEAD } kstate_t;

struct ap_h1conn_s {
    ap_list_t link; /* on o->idle, u->busy or u->dead */
    ap_h1up_t *u;
    origin_t *o; /* borrowed; NULL once the origin table was reset (not pooled again) */
    int fd;
    SSL *ssl; /* NULL for http:// */
    struct event *rev, *wev, *timer;
    kstate_t state;
    unsigned uses;      /* responses completed on this connection */
    ap_req_t *req;      /* borrowed: the attached request, r->h1 == this */
    ap_buf_t out;       /* request bytes (may hold the token: wiped) */
    size_t out_off;     /* bytes of out already written */
    ap_buf_t in;        /* response head bytes until the head is complete */
    bool got_bytes;     /* any response byte arrived for the attached request */
    bool wrote;         /* any byte of the attached request was written */
    bool write_failed;  /* the request could not be written whole: never reused */
    bool head_done;     /* final head parsed and handed on */
    bool paused;        /* client output above the high-water mark: not reading */
    bool read_on_write; /* TLS needs the socket writable before it can read on */
    ap_http1_resp_t resp;
    uint64_t left; /* AP_RESP_LENGTH: body bytes still due */
    ap_chunked_t chunked;
};

struct ap_h1up_s {
    struct event_base *base; /* borrowed */
    SSL_CTX *ctx;            /* owned; rebuilt on every configure (the CA file may change) */
    bool enabled;
    int64_t connect_timeout_ms;
    ap_list_t origins;
    size_t norigins;
    ap_list_t busy;
    ap_list_t dead;
    struct event *reaper; /* owned */
    unsigned gen;         /* configure generation: what curl learned before a reload is stale */
    ap_conf_t *conf;      /* owned ref: connect_to for addresses known without DNS */
    ap_h1up_stats_t st;
};

static void on_io(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);

/* --- Connections: life and death ----------------------------------------------------------- */

static void
k_free(ap_h1conn_t *k)
{
    if (k->rev)
        event_free(k->rev);
    if (k->wev)
        event_free(k->wev);
    if (k->timer)
        event_free(k->timer);
    if (k->ssl) {
        /* No close_notify is sent, but the session stays resumable: OpenSSL would otherwise
         * mark it bad on SSL_free (the origin keeps it for the next connection). */
        if (SSL_is_init_finished(k->ssl))
            SSL_set_shutdown(k->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(k->ssl);
    }
    if (k->fd >= 0)
        close(k->fd);
    ap_buf_free(&k->out, true);
    ap_buf_free(&k->in, false);
    free(k);
}

/* Stops every event now; frees from the reaper. Safe inside the connection's own callbacks. */
static void
k_kill(ap_h1conn_t *k)
{
    if (k->state == K_DEAD)
        return;
    if (k->o != NULL) {
        if (k->state == K_IDLE)
            k->o->nidle--;
        k->o->nconns--;
        k->o = NULL;
    }
    k->state = K_DEAD;
    if (k->req != NULL) {
        k->req->h1 = NULL;
        k->req = NULL;
    }
    event_del(k->rev);
    event_del(k->wev);
    evtimer_del(k->timer);
    ap_list_remove(&k->link);
    ap_list_insert_tail(&k->u->dead, &k->link);
    event_active(k->u->reaper, EV_TIMEOUT, 0);
}

static void
on_reap(evutil_socket_t fd, short what, void *arg)
{
    ap_h1up_t *u = arg;
    (void)fd;
    (void)what;
    while (!ap_list_empty(&u->dead)) {
        ap_h1conn_t *k = ap_container_of(u->dead.next, ap_h1conn_t, link);
        ap_list_remove(&k->link);
        k_free(k);
    }
}

static void
arm(struct event *ev, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

static ap_h1conn_t *
k_connect(ap_h1up_t *u, origin_t *o)
{
    ap_h1conn_t *k = ap_xcalloc(1, sizeof(*k));
    k->u = u;
    k->o = o;
    k->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    k->out.secret = true; /* it carries the token line */
    k->in.max = MAX_RESP_HEAD + READ_CHUNK;
    ap_list_init(&k->link);
    if (k->fd < 0)
        goto fail;
    int one = 1;
    setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(k->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    k->rev = event_new(u->base, k->fd, EV_READ | EV_PERSIST, on_io, k);
    k->wev = event_new(u->base, k->fd, EV_WRITE | EV_PERSIST, on_io, k);
    k->timer = evtimer_new(u->base, on_timer, k);
    if (k->rev == NULL || k->wev == NULL || k->timer == NULL)
        goto fail;
    if (o->tls) {
        k->ssl = SSL_new(u->ctx);
        if (k->ssl == NULL || SSL_set_fd(k->ssl, k->fd) != 1)
            goto fail;
        unsigned char tmp[16];
        bool literal =
            inet_pton(AF_INET, o->tls_name, tmp) == 1 || inet_pton(AF_INET6, o->tls_name, tmp) == 1;
        if (literal) {
            if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(k->ssl), o->tls_name) != 1)
                goto fail;
        } else {
            /* SNI, and the name the certificate must carry (curl's VERIFYHOST=2 rules). */
            SSL_set_hostflags(k->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            if (SSL_set_tlsext_host_name(k->ssl, o->tls_name) != 1 ||
                SSL_set1_host(k->ssl, o->tls_name) != 1)
                goto fail;
        }
        SSL_set_app_data(k->ssl, k);
        if (o->sess != NULL)
            SSL_set_session(k->ssl, o->sess); /* abbreviated handshake, as curl's cache does */
        SSL_set_connect_state(k->ssl);
    }
    if (connect(k->fd, (struct sockaddr *)&o->addr, o->addrlen) != 0 && errno != EINPROGRESS)
        goto fail;
    k->state = K_CONNECTING;
    o->nconns++;
    u->st.connections++;
    ap_list_insert_tail(&u->busy, &k->link);
    event_add(k->rev, NULL);
    event_add(k->wev, NULL);
    arm(k->timer, u->connect_timeout_ms > 0 ? u->connect_timeout_ms : 10000);
    return k;
fail:
    ap_log_debug("upstream fast path: cannot open a connection to %s: %s", o->key, strerror(errno));
    k_free(k);
    return NULL;
}

/* --- Byte I/O over TCP or TLS -------------------------------------------------------------- */

typedef enum { IO_DONE, IO_WANT_READ, IO_WANT_WRITE, IO_EOF, IO_ERR } io_t;

static io_t
ssl_status(ap_h1conn_t *k, int rc)
{
    switch (SSL_get_error(k->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        return IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return IO_EOF;
    default:
        return IO_ERR;
    }
}

static io_t
k_read(ap_h1conn_t *k, char *buf, size_t len, size_t *got)
{
    *got = 0;
    if (k->ssl != NULL) {
        ERR_clear_error();
        int rc = SSL_read(k->ssl, buf, (int)len);
        if (rc > 0) {
            *got = (size_t)rc;
            return IO_DONE;
        }
        return ssl_status(k, rc);
    }
    ssize_t n = recv(k->fd, buf, len, 0);
    if (n > 0) {
        *got = (size_t)n;
        return IO_DONE;
    }
    if (n == 0)
        return IO_EOF;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? IO_WANT_READ : IO_ERR;
}

static io_t
k_write(ap_h1conn_t *k, const char *buf, size_t len, size_t *put)
{
    *put = 0;
    if (k->ssl != NULL) {
        ERR_clear_error();
        int rc = SSL_write(k->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
        if (rc > 0) {
            *put = (size_t)rc;
            return IO_DONE;
        }
        return ssl_status(k, rc);
    }
    ssize_t n = send(k->fd, buf, len, MSG_NOSIGNAL);
    if (n >= 0) {
        *put = (size_t)n;
        return IO_DONE;
    }
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? IO_WANT_WRITE : IO_ERR;
}

/* The request is written: its bytes (the token among them) are wiped, the buffer kept for the
 * next request on this connection. */
static void
out_wipe(ap_h1conn_t *k)
{
    if (k->out.data != NULL)
        ap_wipe(k->out.data, k->out.len);
    ap_buf_reset(&k->out);
    k->out_off = 0;
}

/* --- Request outcome ------------------------------------------------------------------------ */

/* Detaches the request and closes the connection (it cannot carry another request). */
static ap_req_t *
k_drop(ap_h1conn_t *k)
{
    ap_req_t *r = k->req;
    k_kill(k);
    return r;
}

/* A new connection to o failed: curl's (which reports the error) until curl succeeds or for
 * one learning period. */
static void
origin_failed(origin_t *o)
{
    if (o == NULL)
        return;
    o->learned_ms = 0;
    o->fixed_retry_ms = ap_now_mono_ms() + LEARN_TTL_MS;
}

/* No response byte came: hand the request to curl, once. */
static void
k_fallback(ap_h1conn_t *k, const char *why)
{
    if (k->uses == 0)
        origin_failed(k->o);
    ap_log_debug("upstream fast path: %s on %s connection to %s; retrying through curl", why,
                 k->uses ? "a reused" : "a new", k->o ? k->o->key : "-");
    k->u->st.fallbacks++;
    ap_req_t *r = k_drop(k);
    if (r != NULL)
        ap_upstream_fallback(r);
}

/* Something failed after response bytes arrived. */
static void
k_broken(ap_h1conn_t *k, const char *why)
{
    ap_req_t *r = k_drop(k);
    if (r == NULL)
        return;
    if (r->headers_sent)
        ap_upstream_fail(r, 0, "upstream_truncated", why);
    else
        ap_upstream_fail(r, 502, "upstream_error", why);
}

static bool
idempotent(const char *m)
{
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < AP_ARRAY_LEN(safe); i++)
        if (strcmp(m, safe[i]) == 0)
            return true;
    return false;
}

/* The connection failed before any response byte. Send the request again (through curl, on a
 * fresh connection) only when that is safe: nothing of it was written, or the connection was
 * a reused one (the upstream may have closed it as idle) and the method is idempotent. Anything
 * else answers 502: a proxy must not retry a non-idempotent request (RFC 9112 9.3.1). */
static void
k_no_response(ap_h1conn_t *k, const char *why)
{
    if (!k->wrote || (k->uses > 0 && k->req != NULL && idempotent(k->req->method))) {
        k_fallback(k, why);
        return;
    }
    ap_req_t *r = k_drop(k);
    if (r != NULL)
        ap_upstream_fail(r, 502, "upstream_error",
                         "the upstream closed the connection without answering (a request "
                         "that may have been processed is not sent again)");
}

/* Unread response bytes (in OpenSSL's buffer or the socket) or EOF on a pooled connection: it
 * must not carry another request, or those bytes would pass for its response. A TLS 1.3
 * session ticket that arrived late is consumed here and leaves the connection clean. */
static bool
k_clean(ap_h1conn_t *k)
{
    if (k->ssl != NULL && SSL_has_pending(k->ssl))
        return false;
    char b;
    ssize_t n = recv(k->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK;
    if (n == 0 || k->ssl == NULL)
        return false;
    char buf[512];
    size_t got = 0;
    return k_read(k, buf, sizeof(buf), &got) == IO_WANT_READ && !SSL_has_pending(k->ssl);
}

/* The response is complete: pool the connection if it can carry another request. */
static void
k_complete(ap_h1conn_t *k, bool extra_bytes)
{
    ap_req_t *r = k->req;
    origin_t *o = k->o;
    bool reuse = k->resp.keep_alive && !extra_bytes && !k->write_failed &&
                 k->out_off == k->out.len && o != NULL && o->nidle < MAX_IDLE_PER_ORIGIN &&
                 !r->conn->srv->draining && !(k->ssl != NULL && SSL_has_pending(k->ssl));
    k->uses++;
    k->u->st.requests++;
    if (reuse) {
        k->req = NULL;
        r->h1 = NULL;
        k->state = K_IDLE;
        k->paused = false;
        k->read_on_write = false;
        out_wipe(k);
        ap_buf_reset(&k->in);
        event_del(k->wev);
        event_add(k->rev, NULL);
        arm(k->timer, IDLE_TIMEOUT_MS);
        ap_list_remove(&k->link);
        ap_list_insert_tail(&o->idle, &k->link);
        o->nidle++;
    } else {
        k_drop(k);
    }
    ap_upstream_finish(r);
}

/* --- Response parsing ------------------------------------------------------------------------ */

static void
on_header(void *ud, const ap_header_t *h)
{
    ap_req_t *r = ud;
    ap_buf_append(&r->resp_head, h->name, h->name_len);
    ap_buf_append(&r->resp_head, ": ", 2);
    ap_buf_append(&r->resp_head, h->value, h->value_len);
    ap_buf_append(&r->resp_head, "\n", 1);
}

/* Body bytes of the attached request's response. Returns false when the connection is done
 * with (completed, failed, or the request went away). */
static bool
k_body(ap_h1conn_t *k, const char *p, size_t n)
{
    ap_req_t *r = k->req;
    switch (k->resp.body) {
    case AP_RESP_LENGTH: {
        size_t take = n < k->left ? n : (size_t)k->left;
        ap_upstream_emit(r, p, take);
        k->left -= take;
        if (k->left == 0) {
            k_complete(k, n > take);
            return false;
        }
        return true;
    }
    case AP_RESP_CHUNKED:
        while (n > 0) {
            size_t consumed = 0, data_len = 0;
            ap_rc_t rc = ap_chunked_next(&k->chunked, p, n, &consumed, &data_len);
            if (rc == AP_ERR) {
                k_broken(k, "malformed chunked response body");
                return false;
            }
            if (data_len > 0)
                ap_upstream_emit(r, p + consumed - data_len, data_len);
            p += consumed;
            n -= consumed;
            if (rc == AP_OK) {
                k_complete(k, n > 0);
                return false;
            }
            if (consumed == 0)
                break;
        }
        return true;
    case AP_RESP_CLOSE:
        ap_upstream_emit(r, p, n);
        return true;
    }
    return true;
}

/* Response bytes. Returns false when the connection is done with. */
static bool
k_consume(ap_h1conn_t *k, const char *p, size_t n)
{
    ap_req_t *r = k->req;
    if (k->head_done)
        return k_body(k, p, n);
    if (ap_buf_append(&k->in, p, n) != AP_OK) {
        k_broken(k, "response head too large");
        return false;
    }
    for (;;) {
        ap_buf_reset(&r->resp_head);
        ap_rc_t rc =
            ap_http1_parse_response(k->in.data, k->in.len, MAX_RESP_HEAD, &k->resp, on_header, r);
        if (rc == AP_AGAIN)
            return true;
        if (rc == AP_ERR) {
            k_broken(k, "malformed response head");
            return false;
        }
        size_t rest = k->in.len - k->resp.head_len;
        r->status = k->resp.status;
        if (r->status >= 100 && r->status < 200) {
            if (r->status == 101) {
                k_broken(k, "unexpected protocol switch");
                return false;
            }
            /* Interim response (100 Continue, 103 Early Hints): dropped, as curl's path does. */
            memmove(k->in.data, k->in.data + k->resp.head_len, rest);
            k->in.len = rest;
            continue;
        }
        break;
    }
    k->head_done = true;
    bool no_body = r->head_method || r->status == 204 || r->status == 304;
    if (no_body) {
        /* No body whatever the framing headers say: reuse depends on the connection alone. */
        k->resp.body = AP_RESP_LENGTH;
        k->left = 0;
        k->resp.keep_alive = k->resp.persistent;
    } else if (k->resp.body == AP_RESP_LENGTH) {
        k->left = k->resp.content_length;
    } else if (k->resp.body == AP_RESP_CHUNKED) {
        ap_chunked_init(&k->chunked);
    }
    if (!ap_upstream_head_ready(r)) {
        /* A 401 to replay with a new token: this connection's body is not wanted. */
        k_drop(k);
        ap_upstream_replay(r);
        return false;
    }
    /* Body bytes that came with the head. k->in stays valid meanwhile: a next request that
     * takes this connection (pipelining, inside k_complete) only resets it, and a killed
     * connection is freed by the reaper, later. */
    size_t rest = k->in.len - k->resp.head_len;
    if (k->resp.body == AP_RESP_LENGTH && k->left == 0) {
        k_complete(k, rest > 0);
        return false;
    }
    return rest == 0 || k_body(k, k->in.data + k->resp.head_len, rest);
}

/* --- The event callback --------------------------------------------------------------------- */

/* Writes what is left of the request. Returns false when the connection is done with. */
static bool
k_flush(ap_h1conn_t *k)
{
    while (k->out_off < k->out.len) {
        size_t put = 0;
        io_t st = k_write(k, k->out.data + k->out_off, k->out.len - k->out_off, &put);
        if (st == IO_DONE) {
            k->out_off += put;
            k->wrote = true;
            continue;
        }
        if (st == IO_WANT_READ) {
            /* TLS wants input first: the read event brings us back. */
            if (!k->read_on_write)
                event_del(k->wev);
            return true;
        }
        if (st == IO_WANT_WRITE) {
            event_add(k->wev, NULL);
            return true;
        }
        if (!k->got_bytes) {
            k_no_response(k, "write failed");
            return false;
        }
        /* The upstream may have answered early and closed its reading side: read on, but
         * this connection carries nothing more. */
        k->write_failed = true;
        k->out_off = k->out.len;
    }
    if (!k->read_on_write)
        event_del(k->wev);
    out_wipe(k);
    return true;
}

static void
k_on_eof(ap_h1conn_t *k, io_t st)
{
    if (!k->got_bytes) {
        k_no_response(k, st == IO_EOF ? "connection closed" : "read failed");
        return;
    }
    if (k->head_done && k->resp.body == AP_RESP_CLOSE && st == IO_EOF) {
        k_complete(k, false);
        return;
    }
    k_broken(k, "upstream closed the connection mid-response");
}

static void
k_read_loop(ap_h1conn_t *k)
{
    char buf[READ_CHUNK];
    while (k->state == K_BUSY && !k->paused) {
        size_t got = 0;
        io_t st = k_read(k, buf, sizeof(buf), &got);
        if (st == IO_DONE) {
            k->got_bytes = true;
            if (!k_consume(k, buf, got))
                return;
            continue;
        }
        if (st == IO_WANT_READ)
            return;
        if (st == IO_WANT_WRITE) {
            k->read_on_write = true;
            event_add(k->wev, NULL);
            return;
        }
        k_on_eof(k, st);
        return;
    }
}

/* Connected (and TLS done): the request's own timers take over from the connect timer. */
static void
k_ready(ap_h1conn_t *k)
{
    k->state = K_BUSY;
    event_del(k->wev);
    evtimer_del(k->timer);
}

static void
k_handshake(ap_h1conn_t *k)
{
    ERR_clear_error();
    int rc = SSL_connect(k->ssl);
    if (rc == 1) {
        const unsigned char *proto = NULL;
        unsigned plen = 0;
        SSL_get0_alpn_selected(k->ssl, &proto, &plen);
        if (plen == 2 && memcmp(proto, "h2", 2) == 0) {
            /* The origin prefers HTTP/2: curl's job (it multiplexes); nothing was sent here. */
            if (k->o != NULL)
                k->o->h2_until = ap_now_mono_ms() + LEARN_TTL_MS;
            k_fallback(k, "the upstream chose HTTP/2");
            return;
        }
        k_ready(k);
        return;
    }
    io_t st = ssl_status(k, rc);
    if (st == IO_WANT_READ) {
        event_del(k->wev);
        return;
    }
    if (st == IO_WANT_WRITE) {
        event_add(k->wev, NULL);
        return;
    }
    unsigned long e = ERR_peek_last_error();
    char msg[256];
    ERR_error_string_n(e, msg, sizeof(msg));
    ap_log_debug("upstream fast path: TLS handshake with %s failed: %s", k->o ? k->o->key : "-",
                 e ? msg : "connection closed");
    k_fallback(k, "TLS handshake failed");
}

static void
on_io(evutil_socket_t fd, short what, void *arg)
{
    ap_h1conn_t *k = arg;
    (void)fd;
    if (k->state == K_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == EINPROGRESS || err == EALREADY)
            return;
        if (err != 0) {
            k_fallback(k, "connect failed");
            return;
        }
        if (k->ssl != NULL) {
            event_del(k->wev);
            k->state = K_HANDSHAKE;
        } else {
            k_ready(k);
        }
    }
    if (k->state == K_HANDSHAKE) {
        k_handshake(k);
        if (k->state != K_BUSY)
            return;
    }
    if (k->state == K_IDLE) {
        /* Readable while idle: the upstream closed it (or sent something unasked). A TLS 1.3
         * session ticket is consumed by SSL_read and leaves the connection usable. */
        char buf[256];
        size_t got = 0;
        io_t st = k_read(k, buf, sizeof(buf), &got);
        if (st == IO_WANT_READ)
            return;
        k_kill(k); /* data, EOF, an error, or TLS wanting to write while idle: not reusable */
        return;
    }
    if (k->state != K_BUSY)
        return;
    if (k->req == NULL) {
        k_kill(k); /* the request went away while connecting */
        return;
    }
    if (k->out_off < k->out.len && !k_flush(k))
        return;
    /* Only when readable: right after writing a request there is nothing to read yet. */
    if ((what & EV_READ) || ((what & EV_WRITE) && k->read_on_write)) {
        if (k->read_on_write) {
            k->read_on_write = false;
            if (k->out.len == 0)
                event_del(k->wev);
        }
        k_read_loop(k);
    }
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    ap_h1conn_t *k = arg;
    (void)fd;
    (void)what;
    if (k->state == K_IDLE) {
        k_kill(k);
        return;
    }
    if (k->state == K_CONNECTING || k->state == K_HANDSHAKE) {
        origin_failed(k->o);
        ap_req_t *r = k_drop(k);
        if (r != NULL)
            ap_upstream_fail(r, 504, "upstream_timeout", "connecting to the upstream timed out");
    }
}

/* --- Origins --------------------------------------------------------------------------------- */

/* Splits an upstream URL we built ("http[s]://host[:port]/path..."). false if it is not one
 * the fast path takes (userinfo, unknown scheme). */
typedef struct url_parts_s {
    bool tls;
    const char *host; /* without brackets */
    size_t host_len;
    int port;
    const char *target; /* "/..." */
} url_parts_t;

static bool
split_url(const char *url, url_parts_t *u)
{
    const char *p;
    if (strncmp(url, "https://", 8) == 0) {
        u->tls = true;
        p = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        u->tls = false;
        p = url + 7;
    } else {
        return false;
    }
    const char *end = p + strcspn(p, "/?#");
    if (memchr(p, '@', (size_t)(end - p)) != NULL || end == p)
        return false;
    const char *colon;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL)
            return false;
        u->host = p + 1;
        u->host_len = (size_t)(rb - p - 1);
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        u->host = p;
        u->host_len = (size_t)((colon ? colon : end) - p);
    }
    u->port = u->tls ? 443 : 80;
    if (colon != NULL) {
        long v = 0;
        for (const char *q = colon + 1; q < end; q++) {
            if (*q < '0' || *q > '9' || v > 65535)
                return false;
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535)
            return false;
        u->port = (int)v;
    }
    if (*end != '/')
        return false; /* the router always builds a path; anything else goes to curl */
    u->target = end;
    return u->host_len > 0 && u->host_len <= 255;
}

/* Per request: compared field by field, no key string built. */
static origin_t *
find_origin(ap_h1up_t *u, const url_parts_t *p)
{
    for (ap_list_t *n = u->origins.next; n != &u->origins; n = n->next) {
        origin_t *o = ap_container_of(n, origin_t, link);
        if (o->tls == p->tls && o->port == p->port &&
            ap_memieq(o->host, o->host_len, p->host, p->host_len))
            return o;
    }
    return NULL;
}

static void
origin_free(origin_t *o)
{
    while (!ap_list_empty(&o->idle)) {
        ap_h1conn_t *k = ap_container_of(o->idle.next, ap_h1conn_t, link);
        k_kill(k);
    }
    free(o->key);
    free(o->host);
    free(o->host_hdr);
    free(o->tls_name);
    if (o->sess != NULL)
        SSL_SESSION_free(o->sess);
    free(o);
}

static void
reset_origins(ap_h1up_t *u)
{
    for (ap_list_t *n = u->busy.next; n != &u->busy; n = n->next)
        ap_container_of(n, ap_h1conn_t, link)->o = NULL;
    while (!ap_list_empty(&u->origins)) {
        origin_t *o = ap_container_of(u->origins.next, origin_t, link);
        ap_list_remove(&o->link);
        origin_free(o);
    }
    u->norigins = 0;
}

/* Makes room for one more origin: forgets those with no connection and an expired address.
 * false when every slot is still in use. */
static bool
origin_room(ap_h1up_t *u)
{
    uint64_t now = ap_now_mono_ms();
    ap_list_t *n = u->origins.next;
    while (n != &u->origins && u->norigins >= MAX_ORIGINS) {
        origin_t *o = ap_container_of(n, origin_t, link);
        n = n->next;
        if (o->nconns == 0 && (o->learned_ms == 0 || now - o->learned_ms > LEARN_TTL_MS) &&
            o->h2_until <= now && o->fixed_retry_ms <= now) {
            ap_list_remove(&o->link);
            origin_free(o);
            u->norigins--;
        }
    }
    return u->norigins < MAX_ORIGINS;
}

unsigned
ap_h1up_generation(const ap_h1up_t *u)
{
    return u->gen;
}

/* "addr" or "[v6addr]" and a port into a socket address; false unless addr is an IP literal. */
static bool
ip_sockaddr(const char *addr, size_t len, long port, struct sockaddr_storage *ss, socklen_t *sl)
{
    char ip[INET6_ADDRSTRLEN + 1];
    if (len >= 2 && addr[0] == '[' && addr[len - 1] == ']') {
        addr++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(ip) || port <= 0 || port > 65535)
        return false;
    memcpy(ip, addr, len);
    ip[len] = '\0';
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sl = sizeof(*s4);
        return true;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sl = sizeof(*s6);
        return true;
    }
    return false;
}

/* The origin's address when it needs no DNS: connect_to maps it to an IP literal (as curl
 * would connect), or the host is one. false otherwise: curl goes first and the address is
 * learned from it. */
static bool
static_addr(const ap_h1up_t *u, const url_parts_t *p, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[260], to[260];
    int port;
    snprintf(host, sizeof(host), "%.*s", (int)p->host_len, p->host);
    ap_ascii_lower(host);
    ap_conf_connect_to(u->conf, host, p->port, to, sizeof(to), &port);
    return ip_sockaddr(to, strlen(to), port, ss, sl);
}

static origin_t *
origin_new(ap_h1up_t *u, const url_parts_t *p)
{
    if (!origin_room(u))
        return NULL;
    origin_t *o = ap_xcalloc(1, sizeof(*o));
    o->host = ap_xstrndup(p->host, p->host_len);
    o->host_len = p->host_len;
    o->port = p->port;
    ap_ascii_lower(o->host);
    o->key = ap_xasprintf("%s://%s:%d", p->tls ? "https" : "http", o->host, p->port);
    bool v6 = memchr(p->host, ':', p->host_len) != NULL;
    bool default_port = p->port == (p->tls ? 443 : 80);
    o->host_hdr = default_port
                      ? ap_xasprintf("%s%s%s", v6 ? "[" : "", o->host, v6 ? "]" : "")
                      : ap_xasprintf("%s%s%s:%d", v6 ? "[" : "", o->host, v6 ? "]" : "", p->port);
    o->tls = p->tls;
    o->tls_name = ap_xstrdup(o->host);
    size_t tl = strlen(o->tls_name);
    if (tl > 1 && o->tls_name[tl - 1] == '.')
        o->tls_name[tl - 1] = '\0';
    o->fixed = static_addr(u, p, &o->addr, &o->addrlen);
    ap_list_init(&o->idle);
    ap_list_insert_tail(&u->origins, &o->link);
    u->norigins++;
    return o;
}

void
ap_h1up_learn(ap_h1up_t *u, unsigned gen, const char *url, CURL *easy)
{
    url_parts_t p;
    if (u == NULL || !u->enabled || gen != u->gen || !split_url(url, &p))
        return;
    origin_t *o = find_origin(u, &p);
    long version = 0;
    char *ip = NULL;
    long port = 0;
    struct sockaddr_storage ss;
    socklen_t sl;
    if (curl_easy_getinfo(easy, CURLINFO_HTTP_VERSION, &version) != CURLE_OK ||
        curl_easy_getinfo(easy, CURLINFO_PRIMARY_IP, &ip) != CURLE_OK ||
        curl_easy_getinfo(easy, CURLINFO_PRIMARY_PORT, &port) != CURLE_OK || ip == NULL ||
        !ip_sockaddr(ip, strlen(ip), port, &ss, &sl))
        return;
    if (o == NULL && (o = origin_new(u, &p)) == NULL)
        return;
    if (version == CURL_HTTP_VERSION_2_0) {
        o->h2_until = ap_now_mono_ms() + LEARN_TTL_MS; /* curl multiplexes it */
        return;
    }
    if (version != CURL_HTTP_VERSION_1_1)
        return; /* HTTP/1.0: curl's to serve */
    /* h2_until is left to expire: an origin that picked h2 on our connection is not probed
     * again before then, whatever curl's own (older) connections speak. */
    if (!o->fixed) {
        o->addr = ss;
        o->addrlen = sl;
    }
    o->learned_ms = ap_now_mono_ms();
    o->fixed_retry_ms = 0; /* curl just succeeded: the fast path may try again */
}

/* --- Requests -------------------------------------------------------------------------------- */

static void
out_line(void *ud, const char *line, size_t len)
{
    ap_buf_t *b = ud;
    ap_buf_append(b, line, len);
    ap_buf_append(b, "\r\n", 2);
}

ap_rc_t
ap_h1up_start(ap_h1up_t *u, ap_req_t *r)
{
    url_parts_t p;
    if (u == NULL || !u->enabled || !r->keep_body || r->h1_refused)
        return AP_AGAIN;
    if (r->body_kind != AP_BODY_NONE && r->body_kind != AP_BODY_LENGTH)
        return AP_AGAIN;
    if (!split_url(r->url, &p))
        return AP_AGAIN;
    origin_t *o = find_origin(u, &p);
    if (o == NULL && (o = origin_new(u, &p)) == NULL)
        return AP_AGAIN;
    uint64_t now = ap_now_mono_ms();
    if (o->h2_until > now)
        return AP_AGAIN;
    ap_h1conn_t *k = NULL;
    while (k == NULL && !ap_list_empty(&o->idle)) {
        k = ap_container_of(o->idle.prev, ap_h1conn_t, link); /* the warmest */
        if (!k_clean(k)) {
            k_kill(k);
            k = NULL;
            continue;
        }
        ap_list_remove(&k->link);
        ap_list_insert_tail(&u->busy, &k->link);
        o->nidle--;
        evtimer_del(k->timer);
        k->state = K_BUSY;
    }
    if (k == NULL) {
        bool fixed_ok = o->fixed && now >= o->fixed_retry_ms;
        bool learned_ok = o->learned_ms != 0 && now - o->learned_ms <= LEARN_TTL_MS;
        if (!fixed_ok && !learned_ok)
            return AP_AGAIN;
        k = k_connect(u, o);
        if (k == NULL)
            return AP_AGAIN;
    }
    k->req = r;
    r->h1 = k;
    k->got_bytes = false;
    k->wrote = false;
    k->write_failed = false;
    k->head_done = false;
    k->paused = false;
    ap_buf_reset(&k->in);
    /* The request, as curl would send it for the same easy-handle settings. */
    ap_buf_t *b = &k->out;
    ap_buf_cat(b, r->method, " ", p.target, " HTTP/1.1\r\nHost: ", o->host_hdr, "\r\n", NULL);
    ap_headers_each(r, r->conn->srv->via_id, r->token,
                    r->cred ? ap_cred_extra_headers(r->cred) : NULL, out_line, b);
    if (r->body_kind == AP_BODY_LENGTH) {
        ap_buf_append(b, "Content-Length: ", 16);
        ap_buf_append_dec(b, r->body.len);
        ap_buf_append(b, "\r\n", 2);
    }
    ap_buf_append(b, "\r\n", 2);
    if (r->body.len > 0)
        ap_buf_append(b, r->body.data, r->body.len);
    k->out_off = 0;
    if (k->state == K_BUSY)
        event_active(k->wev, EV_WRITE, 0); /* write from the loop, not inside the caller */
    return AP_OK;
}

void
ap_h1up_detach(ap_req_t *r)
{
    if (r->h1 != NULL)
        k_kill(r->h1);
}

void
ap_h1up_resume(ap_req_t *r)
{
    ap_h1conn_t *k = r->h1;
    if (k == NULL || !k->paused)
        return;
    k->paused = false;
    event_add(k->rev, NULL);
    /* OpenSSL may hold decrypted bytes the socket will not signal again. */
    event_active(k->rev, EV_READ, 0);
}

void
ap_h1up_pause(ap_req_t *r)
{
    ap_h1conn_t *k = r->h1;
    if (k == NULL || k->paused)
        return;
    k->paused = true;
    event_del(k->rev);
}

void
ap_h1up_stats(const ap_h1up_t *u, ap_h1up_stats_t *st)
{
    *st = u->st;
    st->idle = 0;
    for (const ap_list_t *n = u->origins.next; n != &u->origins; n = n->next)
        st->idle += ap_container_of(n, origin_t, link)->nidle;
}

/* OpenSSL hands over each new session (TLS 1.3: a ticket after the handshake). */
static int
on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    ap_h1conn_t *k = SSL_get_app_data(ssl);
    if (k == NULL || k->o == NULL || !SSL_SESSION_is_resumable(sess))
        return 0; /* not kept: OpenSSL frees it */
    if (k->o->sess != NULL)
        SSL_SESSION_free(k->o->sess);
    k->o->sess = sess;
    return 1;
}

/* --- Engine ---------------------------------------------------------------------------------- */

ap_h1up_t *
ap_h1up_new(struct event_base *base)
{
    ap_h1up_t *u = ap_xcalloc(1, sizeof(*u));
    u->base = base;
    ap_list_init(&u->origins);
    ap_list_init(&u->busy);
    ap_list_init(&u->dead);
    u->reaper = event_new(base, -1, 0, on_reap, u);
    if (u->reaper == NULL) {
        free(u);
        return NULL;
    }
    return u;
}

void
ap_h1up_configure(ap_h1up_t *u, ap_conf_t *c)
{
    reset_origins(u);
    u->gen++;
    ap_conf_unref(u->conf);
    u->conf = ap_conf_ref(c);
    if (u->ctx != NULL)
        SSL_CTX_free(u->ctx); /* connections still open keep their own reference */
    u->ctx = NULL;
    u->enabled = false;
    u->connect_timeout_ms = c->limits.connect_timeout_ms;
    if (c->outbound_proxy != NULL || !c->fast_path)
        return; /* every upstream request through curl (and the configured proxy) */
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        return;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    /* Trust exactly what curl trusts: tls.ca_file (or curl's built-in bundle) plus curl's CA
     * directory, not OpenSSL's defaults (which SSL_CERT_FILE in a shared environment could
     * widen), and accept a chain that ends at a trusted intermediate (curl's PARTIAL_CHAIN). */
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    const char *cafile = c->ca_file ? c->ca_file : cv->cainfo;
    const char *capath = cv->capath;
    int ok = cafile || capath ? SSL_CTX_load_verify_locations(ctx, cafile, capath)
                              : SSL_CTX_set_default_verify_paths(ctx);
    X509_STORE_set_flags(SSL_CTX_get_cert_store(ctx), X509_V_FLAG_PARTIAL_CHAIN);
    /* h2 is offered (when curl can speak it) so that an HTTP/2 origin says so at once and goes
     * to curl, which multiplexes. */
    static const unsigned char alpn_h2[] = "\x02h2\x08http/1.1", alpn_h1[] = "\x08http/1.1";
    bool h2 = (cv->features & CURL_VERSION_HTTP2) != 0;
    const unsigned char *alpn = h2 ? alpn_h2 : alpn_h1;
    unsigned alpn_len = h2 ? sizeof(alpn_h2) - 1 : sizeof(alpn_h1) - 1;
    if (ok != 1 || SSL_CTX_set_alpn_protos(ctx, alpn, alpn_len) != 0) {
        ap_log_warn("upstream fast path off: cannot load the CA bundle%s%s", c->ca_file ? " " : "",
                    c->ca_file ? c->ca_file : "");
        SSL_CTX_free(ctx);
        return;
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Whole records per read(2) instead of header-then-body: our read loop drains OpenSSL's
     * buffer itself, so nothing waits on a socket event that will not come. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Servers that close without close_notify end close-delimited bodies that way. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Sessions are kept per origin (on_new_session), not in OpenSSL's internal cache. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    u->ctx = ctx;
    u->enabled = true;
}

void
ap_h1up_free(ap_h1up_t *u)
{
    if (u == NULL)
        return;
    reset_origins(u);
    while (!ap_list_empty(&u->busy))
        k_kill(ap_container_of(u->busy.next, ap_h1conn_t, link));
    on_reap(-1, 0, u);
    event_free(u->reaper);
    ap_conf_unref(u->conf);
    if (u->ctx != NULL)
        SSL_CTX_free(u->ctx);
    free(u);
}
