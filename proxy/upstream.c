/*
 * upstream.c: the forwarded request as a curl easy handle on the shared multi handle.
 *
 * Response: curl's header callback assembles the client's response head (hop-by-hop removed,
 * Via added, framing re-decided for the client); the write callback streams the body into the
 * client's bufferevent and pauses the transfer (CURL_WRITEFUNC_PAUSE) above AP_HIGH_WATER; the
 * client's drain callback unpauses it. Request body: the read callback pulls from the kept body
 * or straight from the client's input buffer, pausing (CURL_READFUNC_PAUSE) when it is empty.
 * Redirects are never followed; they go back to the client like any response.
 */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h1up.h"
#include "log.h"

void ap_conn_replay(ap_req_t *r);

static void
arm_ms(struct event *ev, int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

/* --- Request body ----------------------------------------------------------------------------- */

long
ap_req_read_body(ap_req_t *r, char *dst, size_t max)
{
    struct evbuffer *in = bufferevent_get_input(r->conn->bev);
    if (r->body_done || max == 0)
        return 0;
    if (r->body_kind == AP_BODY_LENGTH) {
        size_t avail = evbuffer_get_length(in);
        size_t n = avail < max ? avail : max;
        if (n > r->body_left)
            n = (size_t)r->body_left;
        int got = n ? evbuffer_remove(in, dst, n) : 0;
        if (got < 0)
            return -1;
        r->body_left -= (uint64_t)got;
        r->bytes_in += (uint64_t)got;
        if (r->body_left == 0)
            r->body_done = true;
        return got;
    }
    /* Chunked: decode from the contiguous segments of the input, never more data than fits. */
    size_t produced = 0;
    while (produced < max && !r->body_done) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
            break;
        size_t room = max - produced;
        size_t feed = v.iov_len;
        size_t consumed = 0, data_len = 0;
        /* Feeding at most `room` bytes guarantees a data run fits in dst. */
        if (feed > room)
            feed = room;
        ap_rc_t rc = ap_chunked_next(&r->chunked, v.iov_base, feed, &consumed, &data_len);
        if (rc == AP_ERR)
            return -1;
        if (data_len > 0) {
            memcpy(dst + produced, (char *)v.iov_base + consumed - data_len, data_len);
            produced += data_len;
        }
        evbuffer_drain(in, consumed);
        if (rc == AP_OK) {
            r->body_done = true;
            break;
        }
        if (consumed == 0)
            break;
    }
    r->bytes_in += produced;
    return (long)produced;
}

static size_t
read_cb(char *dst, size_t size, size_t nitems, void *ud)
{
    ap_req_t *r = ud;
    size_t max = size * nitems;
    if (r->conn->closing)
        return CURL_READFUNC_ABORT;
    if (r->keep_body) {
        size_t left = r->body.len - r->body_off;
        size_t n = left < max ? left : max;
        if (n)
            memcpy(dst, r->body.data + r->body_off, n);
        r->body_off += n;
        if (n == 0 && !r->headers_sent)
            arm_ms(r->timer, r->conn->conf->limits.response_timeout_ms);
        return n;
    }
    long n = ap_req_read_body(r, dst, max);
    if (n < 0) {
        r->error = "bad_chunked_body";
        return CURL_READFUNC_ABORT;
    }
    if (n == 0) {
        if (r->body_done) {
            /* Whole body sent: from here the upstream owes us an answer. */
            if (!r->headers_sent)
                arm_ms(r->timer, r->conn->conf->limits.response_timeout_ms);
            return 0;
        }
        r->paused_send = true;
        return CURL_READFUNC_PAUSE;
    }
    arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
    return (size_t)n;
}

static void
unpause(ap_req_t *r)
{
    int mask = (r->paused_recv ? CURLPAUSE_RECV : 0) | (r->paused_send ? CURLPAUSE_SEND : 0);
    /* Re-entrant: curl may call the write callback before this returns. */
    curl_easy_pause(r->xfer.easy, mask);
}

void
ap_upstream_on_client_readable(ap_req_t *r)
{
    if (!r->paused_send || r->xfer.easy == NULL)
        return;
    r->paused_send = false;
    arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
    unpause(r);
}

void
ap_upstream_on_client_drained(ap_req_t *r)
{
    if (!r->paused_recv)
        return;
    if (r->h1 == NULL && r->xfer.easy == NULL)
        return;
    r->paused_recv = false;
    /* The client caught up: the upstream is on the clock again. */
    arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
    if (r->h1 != NULL)
        ap_h1up_resume(r);
    else
        unpause(r);
}

/* --- Response head ---------------------------------------------------------------------------- */

/* Header lines from curl, kept until the blank line decides the framing. */
static bool
header_named(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && ap_memieq(line, n, name, n);
}

/* Connection: tokens name more headers to drop (RFC 9110 7.6.1). */
static bool
named_in_connection(const ap_buf_t *lines, const char *name, size_t nlen)
{
    const char *p = lines->data, *end = lines->data + lines->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        size_t len = (size_t)(eol - p);
        if (header_named(p, len, "connection")) {
            const char *v = memchr(p, ':', len) + 1;
            while (v < eol) {
                while (v < eol && (*v == ' ' || *v == '\t' || *v == ','))
                    v++;
                const char *tok = v;
                while (v < eol && *v != ',' && *v != ' ' && *v != '\t' && *v != '\r')
                    v++;
                if (v > tok && ap_memieq(tok, (size_t)(v - tok), name, nlen))
                    return true;
            }
        }
        p = eol + 1;
    }
    return false;
}

static void
send_response_head(ap_req_t *r)
{
    ap_conn_t *c = r->conn;
    ap_server_t *s = c->srv;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    ap_buf_t *lines = &r->resp_head;
    bool has_cl = false;
    ap_buf_t head = {0};
    ap_buf_append(&head, "HTTP/1.1 ", 9);
    ap_buf_append_dec(&head, (uint64_t)r->status);
    ap_buf_cat(&head, " ", ap_http1_reason(r->status), "\r\n", NULL);
    const char *via = NULL;
    size_t via_len = 0;
    const char *p = lines->data ? lines->data : "", *end = p + lines->len;
    /* Most responses name nothing in Connection: skip the per-header scan then. With
     * Transfer-Encoding, Content-Length is not the framing and must not reach the client
     * (RFC 9112 6.3): we re-frame (chunked or close) instead. */
    bool has_connection = false, has_te = false;
    for (const char *q = p; q < end;) {
        const char *eol = memchr(q, '\n', (size_t)(end - q));
        if (eol == NULL)
            eol = end;
        if (header_named(q, (size_t)(eol - q), "connection"))
            has_connection = true;
        else if (header_named(q, (size_t)(eol - q), "transfer-encoding"))
            has_te = true;
        q = eol + 1;
    }
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        size_t len = (size_t)(eol - p);
        const char *colon = memchr(p, ':', len);
        if (colon != NULL && colon > p) {
            size_t nlen = (size_t)(colon - p);
            if (ap_http1_is_hop_by_hop(p, nlen) ||
                (has_connection && named_in_connection(lines, p, nlen))) {
                /* dropped */
            } else if (ap_memieq(p, nlen, "via", 3)) {
                via = colon + 1;
                via_len = len - nlen - 1;
            } else if (has_te && ap_memieq(p, nlen, "content-length", 14)) {
                /* dropped: not the framing of this body */
            } else {
                if (ap_memieq(p, nlen, "content-length", 14))
                    has_cl = true;
                ap_buf_append(&head, p, len);
                ap_buf_append(&head, "\r\n", 2);
            }
        }
        p = eol + 1;
    }
    if (via != NULL) {
        while (via_len && (*via == ' ' || *via == '\t')) {
            via++;
            via_len--;
        }
        while (via_len && (via[via_len - 1] == ' ' || via[via_len - 1] == '\r'))
            via_len--;
        ap_buf_append(&head, "Via: ", 5);
        ap_buf_append(&head, via, via_len);
        ap_buf_cat(&head, ", 1.1 ", s->via_id, "\r\n", NULL);
    } else {
        ap_buf_cat(&head, "Via: 1.1 ", s->via_id, "\r\n", NULL);
    }
    r->no_body = r->head_method || r->status == 204 || r->status == 304 ||
                 (r->status >= 100 && r->status < 200);
    if (!r->no_body && !has_cl) {
        if (r->h.minor_version >= 1) {
            r->chunked_out = true;
            ap_buf_append(&head, "Transfer-Encoding: chunked\r\n", 28);
        } else {
            r->close_after = true; /* HTTP/1.0: the body ends when we close */
        }
    }
    if (!r->h.keep_alive || c->srv->draining)
        r->close_after = true;
    if (r->close_after)
        ap_buf_append(&head, "Connection: close\r\n", 19);
    else if (r->h.minor_version == 0)
        ap_buf_append(&head, "Connection: keep-alive\r\n", 24);
    ap_buf_append(&head, "\r\n", 2);
    evbuffer_add(out, head.data, head.len);
    ap_buf_free(&head, false);
    ap_buf_free(lines, false);
    r->headers_sent = true;
}

static bool
replayable(const ap_req_t *r)
{
    return r->cred != NULL && r->token != NULL && !r->replayed && r->keep_body;
}

bool
ap_upstream_head_ready(ap_req_t *r)
{
    evtimer_del(r->timer);
    if (r->status == 401 && replayable(r)) {
        r->retry_401 = true;
        return false;
    }
    send_response_head(r);
    /* From here the body must keep coming: an upstream that stalls mid-body is cut off after
     * body_timeout_ms without a byte (re-armed as bytes arrive). */
    if (!r->no_body)
        arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
    return true;
}

void
ap_upstream_replay(ap_req_t *r)
{
    /* The API refused a token we believed valid: drop it, fetch anew, send again once. */
    r->retry_401 = false;
    r->replayed = true;
    r->status = 0;
    ap_buf_reset(&r->resp_head);
    ap_log_info("credential \"%s\": upstream answered 401, refreshing the token and replaying",
                ap_cred_name(r->cred));
    ap_cred_invalidate(r->cred, r->token);
    ap_conn_replay(r);
}

static size_t
header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
    ap_req_t *r = ud;
    size_t len = size * nitems;
    if (r->conn->closing)
        return 0;
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        /* Status line of a (possibly interim) response: "HTTP/1.1 200 OK", "HTTP/2 200". */
        const char *sp = memchr(buf, ' ', len);
        int code = 0;
        if (sp != NULL && (size_t)(sp - buf) + 4 <= len) {
            for (int i = 1; i <= 3; i++) {
                char ch = sp[i];
                if (ch < '0' || ch > '9') {
                    code = 0;
                    break;
                }
                code = code * 10 + (ch - '0');
            }
        }
        if (code < 100 || code > 999)
            return 0;
        r->status = code;
        ap_buf_reset(&r->resp_head);
        return len;
    }
    if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (r->status >= 100 && r->status < 200) {
            /* Interim response: ours (100 Continue) was already sent when needed. */
            ap_buf_reset(&r->resp_head);
            return len;
        }
        if (!ap_upstream_head_ready(r))
            return 0; /* abort this attempt; on_done replays with a new token */
        return len;
    }
    /* Strip CRLF; store LF-separated. */
    size_t n = len;
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    ap_header_t h;
    if (!ap_http1_response_field(buf, n, &h)) {
        /* obs-fold, a bad name, control characters: a proxy must not pass them on (RFC 9112
         * 5.2, 5.1); rejected exactly as the fast path's parser rejects them. */
        r->bad_response = "malformed response head";
        return 0;
    }
    if (ap_buf_append(&r->resp_head, buf, n) != AP_OK ||
        ap_buf_append(&r->resp_head, "\n", 1) != AP_OK)
        return 0;
    return len;
}

static size_t
write_cb(char *p, size_t size, size_t nitems, void *ud)
{
    ap_req_t *r = ud;
    size_t len = size * nitems;
    if (r->conn->closing)
        return CURL_WRITEFUNC_ERROR;
    if (!r->headers_sent)
        return len; /* body of a 401 being replayed: discarded */
    if (r->no_body || len == 0)
        return len;
    struct evbuffer *out = bufferevent_get_output(r->conn->bev);
    if (evbuffer_get_length(out) >= AP_HIGH_WATER) {
        /* curl keeps this data and hands it over again after unpausing. */
        r->paused_recv = true;
        bufferevent_setwatermark(r->conn->bev, EV_WRITE, AP_LOW_WATER, 0);
        arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
        return CURL_WRITEFUNC_PAUSE;
    }
    ap_upstream_emit(r, p, len);
    return len;
}

void
ap_upstream_emit(ap_req_t *r, const char *p, size_t len)
{
    if (r->no_body || len == 0)
        return;
    struct evbuffer *out = bufferevent_get_output(r->conn->bev);
    if (r->chunked_out) {
        char line[24];
        int n = snprintf(line, sizeof(line), "%zx\r\n", len);
        evbuffer_add(out, line, (size_t)n);
        evbuffer_add(out, p, len);
        evbuffer_add(out, "\r\n", 2);
    } else {
        evbuffer_add(out, p, len);
    }
    r->bytes_out += len;
    if (!r->paused_recv)
        arm_ms(r->timer, r->conn->conf->limits.body_timeout_ms);
    if (r->h1 != NULL && evbuffer_get_length(out) >= AP_HIGH_WATER) {
        /* The fast path stops reading the upstream until the client drains. */
        r->paused_recv = true; /* the timer armed above now times the client */
        bufferevent_setwatermark(r->conn->bev, EV_WRITE, AP_LOW_WATER, 0);
        ap_h1up_pause(r);
    }
}

/* --- Completion ------------------------------------------------------------------------------- */

static void
map_error(CURLcode rc, int *status, const char **code)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
        *status = 504;
        *code = "upstream_timeout";
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
        *status = 502;
        *code = "upstream_unresolvable";
        break;
    case CURLE_COULDNT_CONNECT:
        *status = 502;
        *code = "upstream_connect_failed";
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        *status = 502;
        *code = "upstream_tls_failed";
        break;
    default:
        *status = 502;
        *code = "upstream_error";
        break;
    }
}

void
ap_upstream_finish(ap_req_t *r)
{
    if (r->chunked_out)
        evbuffer_add(bufferevent_get_output(r->conn->bev), "0\r\n\r\n", 5);
    ap_conn_request_done(r->conn);
}

void
ap_upstream_fail(ap_req_t *r, int status, const char *code, const char *why)
{
    ap_conn_t *c = r->conn;
    if (c->closing)
        return;
    if (r->headers_sent) {
        /* Too late for a status: the client gets what arrived, then the connection closes
         * without the rest of the framing, which is how HTTP/1.1 says "truncated". */
        ap_log_warn("conn %llu: upstream failed mid-response: %s", (unsigned long long)c->id, why);
        ap_metrics_upstream_error(c->srv->metrics, "upstream_truncated");
        r->error = "upstream_truncated";
        r->close_after = true;
        ap_conn_request_done(c);
        return;
    }
    ap_log_warn("conn %llu: upstream %s failed: %s", (unsigned long long)c->id,
                r->route ? r->route->label : (r->host ? r->host : "-"), why);
    ap_metrics_upstream_error(c->srv->metrics, code);
    char detail[320];
    snprintf(detail, sizeof(detail), "upstream request failed: %s", why);
    ap_conn_send_error(c, status, code, detail, 0);
}

static void
on_done(ap_xfer_t *x, CURLcode rc)
{
    ap_req_t *r = ap_container_of(x, ap_req_t, xfer);
    ap_conn_t *c = r->conn;
    evtimer_del(r->timer);
    if (c->closing)
        return;
    if (r->retry_401) {
        ap_curl_easy_put(c->srv->curl, r->xfer.easy);
        r->xfer.easy = NULL;
        for (struct curl_slist *l = r->up_headers; l; l = l->next)
            ap_wipe(l->data, strlen(l->data));
        curl_slist_free_all(r->up_headers);
        r->up_headers = NULL;
        ap_upstream_replay(r);
        return;
    }
    if (!r->headers_sent && rc == CURLE_ABORTED_BY_CALLBACK && r->error != NULL) {
        ap_conn_send_error(c, 400, r->error, "malformed chunked request body", 0);
        return;
    }
    if (r->bad_response != NULL && !r->headers_sent) {
        ap_upstream_fail(r, 502, "upstream_error", r->bad_response);
        return;
    }
    if (rc != CURLE_OK || !r->headers_sent) {
        int status;
        const char *code;
        map_error(rc, &status, &code);
        ap_upstream_fail(r, status, code, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
        return;
    }
    ap_h1up_learn(c->srv->h1up, r->up_gen, r->url, x->easy);
    ap_upstream_finish(r);
}

/* --- Start / abort ---------------------------------------------------------------------------- */

static ap_rc_t start_curl(ap_req_t *r);

ap_rc_t
ap_upstream_start(ap_req_t *r)
{
    ap_conn_t *c = r->conn;
    if (ap_h1up_start(c->srv->h1up, r) == AP_OK) {
        arm_ms(r->timer, c->conf->limits.response_timeout_ms);
        return AP_OK;
    }
    return start_curl(r);
}

void
ap_upstream_fallback(ap_req_t *r)
{
    r->h1_refused = true;
    r->status = 0;
    r->body_off = 0;
    ap_buf_reset(&r->resp_head);
    if (start_curl(r) != AP_OK)
        ap_upstream_fail(r, 502, "upstream_error", "could not start the upstream request");
}

static ap_rc_t
start_curl(ap_req_t *r)
{
    ap_conn_t *c = r->conn;
    ap_server_t *s = c->srv;
    r->up_gen = ap_h1up_generation(s->h1up);
    CURL *e = ap_curl_easy_get(s->curl);
    if (e == NULL)
        return AP_ERR;
    r->xfer.easy = e;
    r->xfer.on_done = on_done;
    r->errbuf[0] = '\0';
    ap_curl_apply_common(e, ap_server_curl_opts(s));
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    /* Content-Encoding passes through untouched: the client asked for it, not us. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 64L * 1024);
    if (r->head_method) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (r->body_kind != AP_BODY_NONE) {
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(e, CURLOPT_READDATA, r);
        if (r->body_kind == AP_BODY_LENGTH)
            curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->h.content_length);
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    } else if (strcmp(r->method, "GET") != 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    }
    r->up_headers = ap_headers_upstream(r, s->via_id, r->token,
                                        r->cred ? ap_cred_extra_headers(r->cred) : NULL);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->up_headers);
    if (ap_curl_add(s->curl, &r->xfer) != AP_OK)
        return AP_ERR;
    if (r->body_done || r->keep_body)
        arm_ms(r->timer, c->conf->limits.response_timeout_ms);
    else
        arm_ms(r->timer, c->conf->limits.body_timeout_ms);
    return AP_OK;
}

void
ap_upstream_abort(ap_req_t *r)
{
    ap_h1up_detach(r);
    if (r->xfer.easy != NULL)
        ap_curl_remove(r->conn->srv->curl, &r->xfer);
}
