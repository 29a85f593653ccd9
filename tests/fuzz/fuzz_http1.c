/*
 * fuzz_http1.c: libFuzzer target for the request-head parser, the response-head parser and
 * the target splitter (proxy/http1.c). Beyond "no crash", it checks the contract: on AP_OK every
 * pointer lies in the head, the framing decision agrees with the headers, the head alone parses the
 * same, and any incremental arrival (with prev_len) gives the same answer as one call.
 */
#include "http1.h"
#include "fuzz_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Small enough that the fuzzer reaches the 431 path with default input sizes. */
#define FUZZ_MAX_HEAD 2048
/* Byte-by-byte replay is quadratic; only for inputs up to this size. */
#define BYTEWISE_MAX 1024

static bool
in_span(const char *p, size_t len, const char *base, size_t base_len)
{
    return p >= base && p <= base + base_len && len <= (size_t)(base + base_len - p);
}

static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static void
check_target(const char *target, size_t len, bool is_connect)
{
    ap_target_t t;
    if (ap_http1_parse_target(target, len, is_connect, &t) != AP_OK)
        return;
    CHECK(len > 0);
    if (is_connect)
        CHECK(t.form == AP_TARGET_AUTHORITY);
    else
        CHECK(t.form != AP_TARGET_AUTHORITY);
    if (t.form == AP_TARGET_ABSOLUTE || t.form == AP_TARGET_AUTHORITY) {
        CHECK(t.host != NULL && t.host_len > 0 && in_span(t.host, t.host_len, target, len));
        CHECK(t.port >= 1 && t.port <= 65535);
        CHECK(memchr(t.host, '@', t.host_len) == NULL);
        CHECK(memchr(t.host, '%', t.host_len) == NULL);
    } else {
        CHECK(t.host == NULL && t.port == 0);
    }
    if (t.form == AP_TARGET_ORIGIN)
        CHECK(t.path == target && t.path_len == len && target[0] == '/');
    if (t.form == AP_TARGET_ABSOLUTE) {
        CHECK(t.path != NULL && t.path_len > 0);
        CHECK((t.path_len == 1 && t.path[0] == '/') || in_span(t.path, t.path_len, target, len));
        CHECK(t.path_needs_slash == (t.path[0] == '?'));
        CHECK(t.path[0] == '/' || t.path[0] == '?');
    }
    if (t.form == AP_TARGET_ASTERISK)
        CHECK(len == 1 && target[0] == '*');
    if (t.form == AP_TARGET_AUTHORITY || t.form == AP_TARGET_ASTERISK)
        CHECK(t.path == NULL);
    for (size_t i = 0; i < len; i++)
        CHECK((unsigned char)target[i] > 0x20 && (unsigned char)target[i] < 0x7f &&
              target[i] != '#');
}

static void
check_ok(const char *buf, size_t len, size_t max_head, const ap_http1_req_t *r)
{
    CHECK(r->head_len >= 4 && r->head_len <= len && r->head_len <= max_head);
    CHECK(memcmp(buf + r->head_len - 4, "\r\n\r\n", 4) == 0);
    CHECK(r->method_len > 0 && in_span(r->method, r->method_len, buf, r->head_len));
    for (size_t i = 0; i < r->method_len; i++)
        CHECK(is_tchar((unsigned char)r->method[i]));
    CHECK(r->target_len > 0 && in_span(r->target, r->target_len, buf, r->head_len));
    for (size_t i = 0; i < r->target_len; i++)
        CHECK((unsigned char)r->target[i] > 0x20 && (unsigned char)r->target[i] < 0x7f);
    CHECK(r->minor_version == 0 || r->minor_version == 1);
    CHECK(r->nheaders <= AP_HTTP1_MAX_HEADERS);

    size_t ncl = 0, nte = 0, nhost = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        const ap_header_t *h = &r->headers[i];
        CHECK(h->name_len > 0 && in_span(h->name, h->name_len, buf, r->head_len));
        CHECK(in_span(h->value, h->value_len, buf, r->head_len));
        CHECK(h->name[h->name_len] == ':' && h->value > h->name + h->name_len);
        for (size_t j = 0; j < h->name_len; j++)
            CHECK(is_tchar((unsigned char)h->name[j]));
        for (size_t j = 0; j < h->value_len; j++) {
            unsigned char c = (unsigned char)h->value[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len > 0) {
            CHECK(h->value[0] != ' ' && h->value[0] != '\t');
            CHECK(h->value[h->value_len - 1] != ' ' && h->value[h->value_len - 1] != '\t');
        }
        ncl += ap_memieq(h->name, h->name_len, "content-length", 14);
        nte += ap_memieq(h->name, h->name_len, "transfer-encoding", 17);
        nhost += ap_memieq(h->name, h->name_len, "host", 4);
        /* find returns the first header of that name */
        char name[64];
        if (h->name_len < sizeof(name)) {
            memcpy(name, h->name, h->name_len);
            name[h->name_len] = '\0';
            const ap_header_t *f = ap_http1_find(r, name);
            CHECK(f != NULL && f <= h && ap_memieq(f->name, f->name_len, h->name, h->name_len));
        }
        (void)ap_http1_is_hop_by_hop(h->name, h->name_len);
    }
    CHECK(ncl <= 1 && nte <= 1 && nhost <= 1);
    CHECK(!(ncl && nte));
    if (r->minor_version == 1)
        CHECK(nhost == 1);
    switch (r->body) {
    case AP_BODY_CHUNKED:
        CHECK(nte == 1 && r->minor_version == 1 && r->content_length == 0);
        break;
    case AP_BODY_LENGTH:
        CHECK(ncl == 1 && r->content_length > 0 && r->content_length <= INT64_MAX);
        break;
    case AP_BODY_NONE:
        CHECK(nte == 0 && r->content_length == 0);
        break;
    default:
        CHECK(!"body kind");
    }
    if (r->is_connect)
        CHECK(r->body == AP_BODY_NONE && r->method_len == 7 &&
              memcmp(r->method, "CONNECT", 7) == 0);
    if (r->expect_continue)
        CHECK(r->minor_version == 1);
    check_target(r->target, r->target_len, r->is_connect);
}

static void
check_err(const ap_http1_err_t *err)
{
    CHECK(err->code != NULL && err->detail != NULL);
    CHECK(err->status == 400 || err->status == 431 || err->status == 501 || err->status == 505);
    if (err->status == 431)
        CHECK(strcmp(err->code, "head_too_large") == 0 ||
              strcmp(err->code, "too_many_headers") == 0);
}

static void
check_same(ap_rc_t rc1, const ap_http1_req_t *a, const ap_http1_err_t *ea, ap_rc_t rc2,
           const ap_http1_req_t *b, const ap_http1_err_t *eb)
{
    CHECK(rc1 == rc2);
    if (rc1 == AP_ERR) {
        CHECK(ea->status == eb->status && ea->code == eb->code && ea->detail == eb->detail);
    } else if (rc1 == AP_OK) {
        CHECK(a->head_len == b->head_len && a->method == b->method &&
              a->method_len == b->method_len && a->target == b->target &&
              a->target_len == b->target_len && a->minor_version == b->minor_version &&
              a->nheaders == b->nheaders && a->body == b->body &&
              a->content_length == b->content_length && a->keep_alive == b->keep_alive &&
              a->expect_continue == b->expect_continue && a->expect_other == b->expect_other &&
              a->is_connect == b->is_connect);
        CHECK(memcmp(a->headers, b->headers, a->nheaders * sizeof(a->headers[0])) == 0);
    }
}

/* Feeds buf[0..len) growing by steps from `steps` (cycled), passing prev_len like conn.c. */
static ap_rc_t
parse_in_steps(const char *buf, size_t len, size_t max_head, const uint8_t *steps, size_t nsteps,
               ap_http1_req_t *r, ap_http1_err_t *err)
{
    size_t have = 0, prev = 0;
    for (size_t k = 0;; k++) {
        size_t step = nsteps ? (size_t)(steps[k % nsteps] % 16) + 1 : 1;
        have = have + step < len ? have + step : len;
        size_t n = have < max_head ? have : max_head;
        ap_rc_t rc = ap_http1_parse_request(buf, n, prev, max_head, r, err);
        if (rc != AP_AGAIN || have == len)
            return rc;
        prev = n;
    }
}

/* Response heads (what an upstream sends the fast path). */
typedef struct {
    const char *buf;
    size_t len;
    int n;
} resp_acc_t;

static void
on_resp_header(void *ud, const ap_header_t *h)
{
    resp_acc_t *a = ud;
    CHECK(h->name_len > 0 && in_span(h->name, h->name_len, a->buf, a->len));
    CHECK(in_span(h->value, h->value_len, a->buf, a->len));
    for (size_t i = 0; i < h->name_len; i++)
        CHECK(is_tchar((unsigned char)h->name[i]));
    for (size_t i = 0; i < h->value_len; i++)
        CHECK(h->value[i] != '\r' && h->value[i] != '\n' && h->value[i] != '\0');
    a->n++;
}

static void
check_response(const char *buf, size_t size)
{
    ap_http1_resp_t r, r2;
    resp_acc_t a = {buf, size, 0}, b = {buf, size, 0};
    ap_rc_t rc = ap_http1_parse_response(buf, size, FUZZ_MAX_HEAD, &r, on_resp_header, &a);
    CHECK(rc == AP_OK || rc == AP_AGAIN || rc == AP_ERR);
    if (rc == AP_AGAIN)
        CHECK(a.n == 0 && size < FUZZ_MAX_HEAD);
    if (rc != AP_OK)
        return;
    CHECK(r.head_len <= size && r.head_len <= FUZZ_MAX_HEAD);
    CHECK(r.status >= 100 && r.status <= 999);
    CHECK(r.minor_version == 0 || r.minor_version == 1);
    CHECK(r.body == AP_RESP_LENGTH || r.body == AP_RESP_CHUNKED || r.body == AP_RESP_CLOSE);
    if (r.body == AP_RESP_CLOSE || !r.persistent)
        CHECK(!r.keep_alive);
    /* The head alone parses the same, and no prefix of it is complete. */
    CHECK(ap_http1_parse_response(buf, r.head_len, FUZZ_MAX_HEAD, &r2, on_resp_header, &b) ==
          AP_OK);
    CHECK(r2.head_len == r.head_len && r2.status == r.status && r2.body == r.body &&
          r2.keep_alive == r.keep_alive && r2.persistent == r.persistent &&
          r2.content_length == r.content_length && b.n == a.n);
    if (r.head_len > 0)
        CHECK(ap_http1_parse_response(buf, r.head_len - 1, FUZZ_MAX_HEAD, &r2, NULL, NULL) ==
              AP_AGAIN);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Static: the request struct is 3 KiB, and zeroed pointers make stale reads visible. */
    static ap_http1_req_t a, b;
    ap_http1_err_t ea, eb;
    const char *buf = (const char *)data;
    const size_t max_head = FUZZ_MAX_HEAD;
    size_t n = size < max_head ? size : max_head;

    memset(&ea, 0, sizeof(ea));
    ap_rc_t rc = ap_http1_parse_request(buf, n, 0, max_head, &a, &ea);
    CHECK(rc == AP_OK || rc == AP_AGAIN || rc == AP_ERR);
    if (rc == AP_OK)
        check_ok(buf, n, max_head, &a);
    else if (rc == AP_ERR)
        check_err(&ea);
    else
        CHECK(size < max_head);

    /* The buffer beyond max_head must not matter. */
    if (size > max_head) {
        memset(&eb, 0, sizeof(eb));
        ap_rc_t rc2 = ap_http1_parse_request(buf, size, 0, max_head, &b, &eb);
        check_same(rc, &a, &ea, rc2, &b, &eb);
    }

    /* The head alone parses the same as the head with what follows. */
    if (rc == AP_OK) {
        memset(&eb, 0, sizeof(eb));
        ap_rc_t rc2 = ap_http1_parse_request(buf, a.head_len, 0, max_head, &b, &eb);
        check_same(rc, &a, &ea, rc2, &b, &eb);
    }

    /* Incremental arrival: byte by byte, and in steps taken from the input itself. */
    if (size <= BYTEWISE_MAX) {
        memset(&eb, 0, sizeof(eb));
        ap_rc_t rc2 = parse_in_steps(buf, size, max_head, NULL, 0, &b, &eb);
        check_same(rc, &a, &ea, rc2, &b, &eb);
    }
    memset(&eb, 0, sizeof(eb));
    ap_rc_t rc3 = parse_in_steps(buf, size, max_head, data, size < 64 ? size : 64, &b, &eb);
    check_same(rc, &a, &ea, rc3, &b, &eb);

    check_response(buf, size);

    /* The target splitter and the tables take arbitrary bytes too (main.c --explain). */
    check_target(buf, size, false);
    check_target(buf, size, true);
    (void)ap_http1_is_hop_by_hop(buf, size);
    if (size >= 2)
        CHECK(ap_http1_reason((int)(data[0] << 8 | data[1])) != NULL);
    return 0;
}
