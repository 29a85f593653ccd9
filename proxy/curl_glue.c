#include "curl_glue.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* --- The multi handle on the loop (hiperfifo shape, production-grade) ----------------------- */

/* Idle easy handles kept for reuse: creating one per request (a large zeroed allocation plus
 * buffers) was a measurable share of the per-request cost (bench/callgrind.md). */
#define AP_CURL_POOL_MAX 128

struct ap_curl_s {
    struct event_base *base; /* borrowed */
    CURLM *multi;            /* owned */
    struct event *timer;     /* owned: curl's single timeout */
    uint64_t active;
    CURL *pool[AP_CURL_POOL_MAX]; /* owned: idle handles, reset, in no multi */
    size_t npool;
    const ap_curl_opts_t *fetch_opts; /* borrowed: for token fetches */
    struct sock_s **socks;            /* owned: by fd, the sockets curl has asked us to watch */
    size_t nsocks;
};

/*
 * One per curl socket, from the first time curl asks us to watch it until curl closes it
 * (CURLOPT_CLOSESOCKETFUNCTION). When a transfer ends on a kept-alive connection curl says
 * CURL_POLL_REMOVE, and the next transfer on it asks for CURL_POLL_IN again: rather than an
 * epoll_ctl DEL and ADD per request, a socket watched for reading is "parked" (left registered).
 * If a parked socket becomes readable (the server closed the idle connection) the event is
 * dropped then; curl checks a connection before reusing it anyway.
 */
typedef struct sock_s {
    curl_socket_t fd;
    struct event *ev;
    ap_curl_t *g;
    short kind; /* EV_READ/EV_WRITE currently registered; 0 = none */
    bool parked;
} sock_t;

static sock_t *
sock_get(ap_curl_t *g, curl_socket_t s)
{
    return s >= 0 && (size_t)s < g->nsocks ? g->socks[s] : NULL;
}

static void
sock_set(ap_curl_t *g, curl_socket_t s, sock_t *sk)
{
    if ((size_t)s >= g->nsocks) {
        size_t n = g->nsocks ? g->nsocks : 64;
        while (n <= (size_t)s)
            n *= 2;
        g->socks = ap_xrealloc(g->socks, n * sizeof(*g->socks));
        memset(g->socks + g->nsocks, 0, (n - g->nsocks) * sizeof(*g->socks));
        g->nsocks = n;
    }
    g->socks[s] = sk;
}

static void
sock_free(ap_curl_t *g, sock_t *sk)
{
    sock_set(g, sk->fd, NULL);
    event_free(sk->ev);
    free(sk);
}

/* curl closes a socket: forget it first, so a new socket with the same number starts clean. */
static int
close_cb(void *clientp, curl_socket_t s)
{
    ap_curl_t *g = clientp;
    sock_t *sk = sock_get(g, s);
    if (sk != NULL)
        sock_free(g, sk);
    return close(s);
}

static void
check_multi_info(ap_curl_t *g)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(g->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        ap_xfer_t *x = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
        /* msg is invalid after removal: everything needed was copied above. */
        curl_multi_remove_handle(g->multi, easy);
        if (x == NULL)
            continue;
        x->active = false;
        g->active--;
        x->on_done(x, rc);
    }
}

static void
on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    sock_t *sk = arg;
    ap_curl_t *g = sk->g;
    if (sk->parked) {
        /* An idle kept-alive connection stirred (closed by the server, most likely): stop
         * watching; curl finds out when it next considers reusing the connection. */
        event_del(sk->ev);
        sk->kind = 0;
        return;
    }
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    int running;
    CURLMcode mc = curl_multi_socket_action(g->multi, fd, action, &running);
    if (mc != CURLM_OK)
        ap_log_error("curl_multi_socket_action: %s", curl_multi_strerror(mc));
    check_multi_info(g);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
    ap_curl_t *g = arg;
    int running;
    CURLMcode mc = curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    if (mc != CURLM_OK)
        ap_log_error("curl_multi_socket_action(timeout): %s", curl_multi_strerror(mc));
    check_multi_info(g);
}

/* Never drives curl from here (CURLMOPT_TIMERFUNCTION: recursion risk): only arms the timer. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    ap_curl_t *g = userp;
    if (timeout_ms < 0) {
        evtimer_del(g->timer);
        return 0;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(g->timer, &tv);
    return 0;
}

static int
sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy, (void)socketp;
    ap_curl_t *g = userp;
    sock_t *sk = sock_get(g, s);
    if (what == CURL_POLL_REMOVE) {
        if (sk == NULL)
            return 0;
        sk->parked = true;
        if (sk->kind & EV_WRITE) { /* a writable socket would fire without end */
            event_del(sk->ev);
            sk->kind = 0;
        }
        return 0;
    }
    short kind =
        (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0));
    if (sk == NULL) {
        sk = ap_xcalloc(1, sizeof(*sk));
        sk->fd = s;
        sk->g = g;
        sk->ev = event_new(g->base, s, (short)(kind | EV_PERSIST), on_sock_event, sk);
        if (sk->ev == NULL) {
            free(sk);
            return -1;
        }
        sock_set(g, s, sk);
    } else if (sk->kind == kind) {
        sk->parked = false;
        return 0; /* already registered as wanted: no syscall */
    } else {
        if (sk->kind != 0)
            event_del(sk->ev);
        event_assign(sk->ev, g->base, s, (short)(kind | EV_PERSIST), on_sock_event, sk);
    }
    sk->parked = false;
    sk->kind = kind;
    event_add(sk->ev, NULL);
    return 0;
}

ap_curl_t *
ap_curl_new(struct event_base *base)
{
    ap_curl_t *g = ap_xcalloc(1, sizeof(*g));
    g->base = base;
    g->multi = curl_multi_init();
    if (g->multi == NULL)
        goto err;
    g->timer = evtimer_new(base, on_timer, g);
    if (g->timer == NULL)
        goto err;
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g);
    curl_multi_setopt(g->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* Keep enough idle upstream connections for a busy sidecar; curl's default is 4 x handles. */
    curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, 256L);
    return g;
err:
    if (g->multi)
        curl_multi_cleanup(g->multi);
    free(g);
    return NULL;
}

void
ap_curl_free(ap_curl_t *g)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < g->npool; i++)
        curl_easy_cleanup(g->pool[i]);
    /* Order matters: cleanup closes pooled connections through sock_cb and close_cb, which
     * need the base. */
    curl_multi_cleanup(g->multi);
    for (size_t i = 0; i < g->nsocks; i++)
        if (g->socks[i] != NULL)
            sock_free(g, g->socks[i]);
    free(g->socks);
    event_free(g->timer);
    free(g);
}

ap_rc_t
ap_curl_add(ap_curl_t *g, ap_xfer_t *x)
{
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETFUNCTION, close_cb);
    curl_easy_setopt(x->easy, CURLOPT_CLOSESOCKETDATA, g);
    CURLMcode mc = curl_multi_add_handle(g->multi, x->easy);
    if (mc != CURLM_OK) {
        ap_log_error("curl_multi_add_handle: %s", curl_multi_strerror(mc));
        return AP_ERR;
    }
    x->active = true;
    g->active++;
    return AP_OK;
}

void
ap_curl_remove(ap_curl_t *g, ap_xfer_t *x)
{
    if (!x->active)
        return;
    curl_multi_remove_handle(g->multi, x->easy);
    x->active = false;
    g->active--;
}

CURL *
ap_curl_easy_get(ap_curl_t *g)
{
    if (g->npool > 0)
        return g->pool[--g->npool];
    return curl_easy_init();
}

void
ap_curl_easy_put(ap_curl_t *g, CURL *easy)
{
    if (easy == NULL)
        return;
    if (g->npool == AP_CURL_POOL_MAX) {
        curl_easy_cleanup(easy);
        return;
    }
    /* Back to defaults: nothing of the last request (URL, headers, callbacks) survives. */
    curl_easy_reset(easy);
    g->pool[g->npool++] = easy;
}

uint64_t
ap_curl_active(const ap_curl_t *g)
{
    return g->active;
}

void
ap_curl_apply_common(CURL *easy, const ap_curl_opts_t *o)
{
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (o->ca_file)
        curl_easy_setopt(easy, CURLOPT_CAINFO, o->ca_file);
    /* Verification is always on; there is deliberately no switch. */
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->connect_to)
        curl_easy_setopt(easy, CURLOPT_CONNECT_TO, o->connect_to);
    /* "" disables proxies, including HTTP_PROXY/HTTPS_PROXY from our own environment: a sidecar
     * shares the application's environment, and pointing at ourselves would loop. */
    curl_easy_setopt(easy, CURLOPT_PROXY, o->outbound_proxy ? o->outbound_proxy : "");
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    if (o->connect_timeout_ms > 0)
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
}

/* --- auth/'s fetcher over the same multi handle ------------------------------------------- */

typedef struct fetch_s {
    ap_xfer_t x;
    ap_curl_t *g;
    ap_fetch_done_cb done;
    void *ud;
    struct curl_slist *headers; /* owned; may hold secrets */
    char *body;                 /* owned; may hold secrets */
    size_t body_len;
    ap_buf_t resp;
    bool truncated;
    char *content_type;
    char errbuf[CURL_ERROR_SIZE];
} fetch_t;

static void
fetch_free(fetch_t *f)
{
    if (f->x.easy)
        curl_easy_cleanup(f->x.easy);
    for (struct curl_slist *l = f->headers; l; l = l->next)
        ap_wipe(l->data, strlen(l->data));
    curl_slist_free_all(f->headers);
    if (f->body) {
        ap_wipe(f->body, f->body_len);
        free(f->body);
    }
    ap_buf_free(&f->resp, true);
    free(f->content_type);
    free(f);
}

static size_t
fetch_write(char *p, size_t size, size_t n, void *ud)
{
    fetch_t *f = ud;
    size_t len = size * n;
    if (f->resp.len + len > AP_MAX_TOKEN_BODY) {
        f->truncated = true;
        return 0; /* abort: the answer is not a token response */
    }
    ap_buf_append(&f->resp, p, len);
    return len;
}

static void
fetch_done(ap_xfer_t *x, CURLcode rc)
{
    fetch_t *f = ap_container_of(x, fetch_t, x);
    ap_fetch_res_t res = {0};
    long status = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    char *ct = NULL;
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
    res.content_type = ct;
    res.truncated = f->truncated;
    res.body = f->resp.data ? f->resp.data : "";
    res.body_len = f->resp.len;
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && f->truncated)) {
        res.status = (int)status;
    } else {
        res.status = 0;
        res.error = f->errbuf[0] ? f->errbuf : curl_easy_strerror(rc);
    }
    f->done(f->ud, &res);
    fetch_free(f);
}

static void *
io_fetch_start(void *ctx, const ap_fetch_req_t *req, ap_fetch_done_cb done, void *ud)
{
    ap_curl_t *g = ctx;
    fetch_t *f = ap_xcalloc(1, sizeof(*f));
    f->g = g;
    f->done = done;
    f->ud = ud;
    f->resp.max = AP_MAX_TOKEN_BODY + 1;
    f->x.on_done = fetch_done;
    f->x.easy = curl_easy_init();
    if (f->x.easy == NULL)
        goto err;
    CURL *e = f->x.easy;
    if (g->fetch_opts)
        ap_curl_apply_common(e, g->fetch_opts);
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, f->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fetch_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (req->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)req->timeout_ms);
    /* Token endpoints must not redirect us with our secrets in tow. */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    f->headers = curl_slist_append(f->headers, "Expect:");
    for (const char *const *h = req->headers; h && *h; h++)
        f->headers = curl_slist_append(f->headers, *h);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, f->headers);
    if (req->basic_user) {
        curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(e, CURLOPT_USERNAME, req->basic_user);
        curl_easy_setopt(e, CURLOPT_PASSWORD, req->basic_pass ? req->basic_pass : "");
    }
    if (strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
        f->body_len = req->body_len;
        f->body = ap_xmalloc(req->body_len + 1);
        if (req->body_len)
            memcpy(f->body, req->body, req->body_len);
        f->body[req->body_len] = '\0';
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)f->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, f->body);
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req->method);
    }
    if (ap_curl_add(g, &f->x) != AP_OK)
        goto err;
    return f;
err:
    fetch_free(f);
    return NULL;
}

static void
io_fetch_cancel(void *ctx, void *handle)
{
    ap_curl_t *g = ctx;
    fetch_t *f = handle;
    ap_curl_remove(g, &f->x);
    fetch_free(f);
}

typedef struct io_timer_s {
    struct event *ev;
    ap_timer_cb cb;
    void *ud;
} io_timer_t;

static void
on_io_timer(evutil_socket_t fd, short what, void *arg)
{
    io_timer_t *t = arg;
    t->cb(t->ud);
}

static void *
io_timer_new(void *ctx, ap_timer_cb cb, void *ud)
{
    ap_curl_t *g = ctx;
    io_timer_t *t = ap_xcalloc(1, sizeof(*t));
    t->cb = cb;
    t->ud = ud;
    t->ev = evtimer_new(g->base, on_io_timer, t);
    return t;
}

static void
io_timer_arm(void *ctx, void *timer, uint64_t after_ms)
{
    io_timer_t *t = timer;
    struct timeval tv = {(time_t)(after_ms / 1000), (suseconds_t)((after_ms % 1000) * 1000)};
    evtimer_add(t->ev, &tv);
}

static void
io_timer_disarm(void *ctx, void *timer)
{
    io_timer_t *t = timer;
    evtimer_del(t->ev);
}

static void
io_timer_free(void *ctx, void *timer)
{
    io_timer_t *t = timer;
    if (t == NULL)
        return;
    event_free(t->ev);
    free(t);
}

static uint64_t
io_now_mono(void *ctx)
{
    return ap_now_mono_ms();
}

static int64_t
io_now_wall(void *ctx)
{
    return ap_now_wall_ms();
}

static uint32_t
io_random(void *ctx)
{
    uint32_t r;
    evutil_secure_rng_get_bytes(&r, sizeof(r));
    return r;
}

void
ap_curl_auth_io(ap_curl_t *g, ap_auth_io_t *io)
{
    memset(io, 0, sizeof(*io));
    io->ctx = g;
    io->fetch_start = io_fetch_start;
    io->fetch_cancel = io_fetch_cancel;
    io->timer_new = io_timer_new;
    io->timer_arm = io_timer_arm;
    io->timer_disarm = io_timer_disarm;
    io->timer_free = io_timer_free;
    io->now_mono_ms = io_now_mono;
    io->now_wall_ms = io_now_wall;
    io->random_u32 = io_random;
}

void
ap_curl_set_fetch_opts(ap_curl_t *g, const ap_curl_opts_t *opts)
{
    g->fetch_opts = opts;
}
