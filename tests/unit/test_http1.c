/*
 * test_http1.c: the request-head parser (proxy/http1.c): every rejection the parser promises,
 * the happy paths, incremental arrival, targets, reason phrases and hop-by-hop names.
 */
#include "http1.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_HEAD 8192

/* A literal and its length, embedded NULs included. */
#define LIT(s) s, sizeof(s) - 1

static ap_rc_t
parse(const char *buf, size_t len, ap_http1_req_t *r, ap_http1_err_t *err)
{
    return ap_http1_parse_request(buf, len, 0, MAX_HEAD, r, err);
}

static bool
span_eq(const char *p, size_t len, const char *s)
{
    return p != NULL && len == strlen(s) && memcmp(p, s, len) == 0;
}

static void
assert_span(const char *p, size_t len, const char *s)
{
    if (!span_eq(p, len, s))
        fail_msg("expected \"%s\", got \"%.*s\"", s, (int)len, p ? p : "(null)");
}

/* --- Rejections -------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
    int status;
    const char *code;
} bad_case_t;

#define H11 " HTTP/1.1\r\nHost: a\r\n"
#define BAD(name, s, st, code)                                                                     \
    {                                                                                              \
        name, s, sizeof(s) - 1, st, code                                                           \
    }

static const bad_case_t bad_cases[] = {
    /* request line */
    BAD("double SP after method", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("double SP before version", "GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("non-token method", "G(T /" H11 "\r\n", 400, "bad_request_line"),
    BAD("method with 0x80", "G\x80T /" H11 "\r\n", 400, "bad_request_line"),
    BAD("missing target", "GET HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("missing version", "GET /\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("SP in target", "GET http://a.example/a b" H11 "\r\n", 400, "bad_request_line"),
    BAD("HTAB in target", "GET /a\tb" H11 "\r\n", 400, "bad_request_line"),
    BAD("HTAB as separator", "GET\t/" H11 "\r\n", 400, "bad_request_line"),
    BAD("CTL in target",
        "GET /a\x01"
        "b" H11 "\r\n",
        400, "bad_request"),
    BAD("DEL in target", "GET /a\x7f" H11 "\r\n", 400, "bad_request"),
    BAD("0x80 in target", "GET /a\x80" H11 "\r\n", 400, "bad_request_line"),
    BAD("0xff in target", "GET /\xff" H11 "\r\n", 400, "bad_request_line"),
    BAD("NUL in target", "GET /\0" H11 "\r\n", 400, "bad_request"),
    BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("version with trailing SP", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("version two-digit major", "GET / HTTP/11.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("version without minor", "GET / HTTP/1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("version garbage", "GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("version letters", "GET / HTTP/a.b\r\nHost: a\r\n\r\n", 400, "bad_request_line"),
    BAD("HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505, "version_not_supported"),
    BAD("HTTP/3.0", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505, "version_not_supported"),
    BAD("HTTP/1.2", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 505, "version_not_supported"),
    BAD("HTTP/0.9", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505, "version_not_supported"),
    BAD("bare LF after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bad_request"),
    BAD("bare CR after request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", 400, "bad_request"),
    BAD("LF-only head", "GET / HTTP/1.1\nHost: a\n\n", 400, "bad_request"),
    BAD("leading bare LF", "\nGET /" H11 "\r\n", 400, "bad_request"),
    BAD("17 leading empty lines",
        "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET /" H11 "\r\n", 400,
        "bad_request_line"),
    BAD("TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, "bad_request"),

    /* header fields */
    BAD("SP before colon", "GET /" H11 "X-A : 1\r\n\r\n", 400, "bad_header"),
    BAD("HTAB before colon", "GET /" H11 "X-A\t: 1\r\n\r\n", 400, "bad_header"),
    BAD("SP before colon in Host", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "bad_header"),
    BAD("empty name", "GET /" H11 ": 1\r\n\r\n", 400, "bad_header"),
    BAD("no colon", "GET /" H11 "X-A 1\r\n\r\n", 400, "bad_header"),
    BAD("SP inside name", "GET /" H11 "Bad Name: x\r\n\r\n", 400, "bad_header"),
    BAD("name without colon", "GET /" H11 "X-A\r\n\r\n", 400, "bad_header"),
    BAD("non-token name", "GET /" H11 "X(A): 1\r\n\r\n", 400, "bad_header"),
    BAD("name with 0x80", "GET /" H11 "X\x80: 1\r\n\r\n", 400, "bad_header"),
    BAD("name with slash", "GET /" H11 "X/A: 1\r\n\r\n", 400, "bad_header"),
    BAD("obs-fold SP", "GET /" H11 "X-A: 1\r\n 2\r\n\r\n", 400, "bad_header"),
    BAD("obs-fold HTAB", "GET /" H11 "X-A: 1\r\n\t2\r\n\r\n", 400, "bad_header"),
    BAD("first field line folded", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400, "bad_header"),
    BAD("CTL in value",
        "GET /" H11 "X-A: 1\x01"
        "2\r\n\r\n",
        400, "bad_request"),
    BAD("ESC in value", "GET /" H11 "X-A: \x1b[0m\r\n\r\n", 400, "bad_request"),
    BAD("NUL in value",
        "GET /" H11 "X-A: 1\0"
        "2\r\n\r\n",
        400, "bad_request"),
    BAD("DEL in value", "GET /" H11 "X-A: 1\x7f\r\n\r\n", 400, "bad_request"),
    BAD("bare CR in value", "GET /" H11 "X-A: 1\r2\r\n\r\n", 400, "bad_request"),
    BAD("bare LF in value", "GET /" H11 "X-A: 1\n2\r\n\r\n", 400, "bad_request"),
    BAD("bare LF ends last line", "GET /" H11 "X-A: 1\n\r\n", 400, "bad_request"),
    BAD("CR CR LF", "GET /" H11 "X-A: 1\r\r\n\r\n", 400, "bad_request"),

    /* Content-Length */
    BAD("CL letters", "POST /" H11 "Content-Length: abc\r\n\r\n", 400, "bad_content_length"),
    BAD("CL negative", "POST /" H11 "Content-Length: -5\r\n\r\n", 400, "bad_content_length"),
    BAD("CL plus sign", "POST /" H11 "Content-Length: +5\r\n\r\n", 400, "bad_content_length"),
    BAD("CL inner SP", "POST /" H11 "Content-Length: 5 5\r\n\r\n", 400, "bad_content_length"),
    BAD("CL list", "POST /" H11 "Content-Length: 5, 5\r\n\r\n", 400, "bad_content_length"),
    BAD("CL list no SP", "POST /" H11 "Content-Length: 5,5\r\n\r\n", 400, "bad_content_length"),
    BAD("CL empty", "POST /" H11 "Content-Length:\r\n\r\n", 400, "bad_content_length"),
    BAD("CL hex", "POST /" H11 "Content-Length: 0x10\r\n\r\n", 400, "bad_content_length"),
    BAD("CL exponent", "POST /" H11 "Content-Length: 1e3\r\n\r\n", 400, "bad_content_length"),
    BAD("CL 2^63", "POST /" H11 "Content-Length: 9223372036854775808\r\n\r\n", 400,
        "bad_content_length"),
    BAD("CL 2^64", "POST /" H11 "Content-Length: 18446744073709551616\r\n\r\n", 400,
        "bad_content_length"),
    BAD("CL 20 nines", "POST /" H11 "Content-Length: 99999999999999999999\r\n\r\n", 400,
        "bad_content_length"),
    BAD("CL duplicate identical", "POST /" H11 "Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
        400, "bad_content_length"),
    BAD("CL duplicate different", "POST /" H11 "Content-Length: 5\r\ncontent-length: 6\r\n\r\n",
        400, "bad_content_length"),

    /* Transfer-Encoding */
    BAD("CL with TE", "POST /" H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE with CL", "POST /" H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE gzip", "POST /" H11 "Transfer-Encoding: gzip\r\n\r\n", 501,
        "unsupported_transfer_encoding"),
    BAD("TE identity", "POST /" H11 "Transfer-Encoding: identity\r\n\r\n", 501,
        "unsupported_transfer_encoding"),
    BAD("TE chunked then gzip", "POST /" H11 "Transfer-Encoding: chunked, gzip\r\n\r\n", 501,
        "unsupported_transfer_encoding"),
    BAD("TE chunked twice", "POST /" H11 "Transfer-Encoding: chunked, chunked\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE parameter", "POST /" H11 "Transfer-Encoding: chunked;q=1\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE trailing comma", "POST /" H11 "Transfer-Encoding: chunked,\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE empty element", "POST /" H11 "Transfer-Encoding: gzip,,chunked\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE empty", "POST /" H11 "Transfer-Encoding:\r\n\r\n", 400, "bad_transfer_encoding"),
    BAD("TE chunk", "POST /" H11 "Transfer-Encoding: chunk\r\n\r\n", 501,
        "unsupported_transfer_encoding"),
    BAD("TE quoted", "POST /" H11 "Transfer-Encoding: \"chunked\"\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE two lines",
        "POST /" H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        "bad_transfer_encoding"),
    BAD("TE uppercase chunked then gzip", "POST /" H11 "Transfer-Encoding: CHUNKED, gzip\r\n\r\n",
        501, "unsupported_transfer_encoding"),
    BAD("TE gzip then chunked", "POST /" H11 "Transfer-Encoding: gzip, chunked\r\n\r\n", 501,
        "unsupported_transfer_encoding"),
    BAD("TE deflate then chunked", "POST /" H11 "Transfer-Encoding: deflate,chunked\r\n\r\n", 501,
        "unsupported_transfer_encoding"),

    /* Host */
    BAD("HTTP/1.1 without Host", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, "bad_header"),
    BAD("two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, "bad_header"),
    BAD("two Host in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 400, "bad_header"),
    BAD("Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, "bad_header"),
    BAD("Host with SP", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad_header"),
    BAD("Host with bad port", "GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n", 400, "bad_header"),
    BAD("Host with percent", "GET / HTTP/1.1\r\nHost: a%2e\r\n\r\n", 400, "bad_header"),
    BAD("Host with path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, "bad_header"),
    BAD("Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", 400, "bad_header"),

    /* CONNECT */
    BAD("CONNECT with CL", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nContent-Length: 5\r\n\r\n",
        400, "bad_request"),
    BAD("CONNECT with TE",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
        "bad_request"),
};

static void
test_rejections(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < AP_ARRAY_LEN(bad_cases); i++) {
        const bad_case_t *c = &bad_cases[i];
        ap_http1_req_t r;
        ap_http1_err_t err = {0};
        ap_rc_t rc = parse(c->in, c->len, &r, &err);
        if (rc != AP_ERR || err.status != c->status || err.code == NULL ||
            strcmp(err.code, c->code) != 0 || err.detail == NULL) {
            print_error("%s: rc %d status %d code %s (want %d %s)\n", c->name, rc, err.status,
                        err.code ? err.code : "-", c->status, c->code);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* Bytes that can never appear in a head are refused as they arrive, not after max_head. */
static void
test_early_rejection(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t len;
    } early[] = {
        {LIT("\x16\x03\x01")},
        {LIT("GET /\0")},
        {LIT("GET / HTTP/1.1\n")},
        {LIT("GET / HTTP/1.1\rX")},
        {LIT("GET / HTTP/1.1\r\nX: \x01")},
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(early); i++) {
        ap_http1_req_t r;
        ap_http1_err_t err = {0};
        assert_int_equal(parse(early[i].in, early[i].len, &r, &err), AP_ERR);
        assert_int_equal(err.status, 400);
    }
    /* A CR at the end is judged once its successor arrives. */
    ap_http1_req_t r;
    ap_http1_err_t err;
    assert_int_equal(parse(LIT("GET / HTTP/1.1\r"), &r, &err), AP_AGAIN);
}

static void
test_too_many_headers(void **state)
{
    (void)state;
    static char buf[MAX_HEAD];
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    size_t n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\n");
    /* Host plus 99 more: exactly the limit. */
    for (int i = 1; i < AP_HTTP1_MAX_HEADERS; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-%d: %d\r\n", i, i);
    size_t body = n;
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
    assert_int_equal(parse(buf, n, &r, &err), AP_OK);
    assert_int_equal(r.nheaders, AP_HTTP1_MAX_HEADERS);

    n = body + (size_t)snprintf(buf + body, sizeof(buf) - body, "X-Last: 1\r\n\r\n");
    assert_int_equal(parse(buf, n, &r, &err), AP_ERR);
    assert_int_equal(err.status, 431);
    assert_string_equal(err.code, "too_many_headers");
}

static void
test_head_too_large(void **state)
{
    (void)state;
    const char *head = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: 0123456789\r\n\r\n";
    size_t len = strlen(head);
    ap_http1_req_t r;
    ap_http1_err_t err = {0};

    /* A head of exactly max_head bytes fits. */
    assert_int_equal(ap_http1_parse_request(head, len, 0, len, &r, &err), AP_OK);
    assert_int_equal(r.head_len, len);
    /* One byte less and the terminator is out of reach. */
    assert_int_equal(ap_http1_parse_request(head, len, 0, len - 1, &r, &err), AP_ERR);
    assert_int_equal(err.status, 431);
    assert_string_equal(err.code, "head_too_large");
    /* Below max_head without a terminator: wait. */
    assert_int_equal(ap_http1_parse_request(head, len - 1, 0, len, &r, &err), AP_AGAIN);
    /* At max_head without a terminator: refuse, whatever lies beyond. */
    assert_int_equal(ap_http1_parse_request(head, len, 0, 20, &r, &err), AP_ERR);
    assert_int_equal(err.status, 431);
    /* Garbage beyond max_head is not looked at. */
    char buf[128];
    memcpy(buf, head, len);
    memcpy(buf + len, "\0\n\x01", 3);
    assert_int_equal(ap_http1_parse_request(buf, len + 3, 0, len, &r, &err), AP_OK);
}

/* --- Happy paths ------------------------------------------------------------------------- */

static void
assert_inside(const ap_http1_req_t *r, const char *buf)
{
    assert_true(r->method >= buf && r->method + r->method_len <= buf + r->head_len);
    assert_true(r->target >= buf && r->target + r->target_len <= buf + r->head_len);
    for (size_t i = 0; i < r->nheaders; i++) {
        const ap_header_t *h = &r->headers[i];
        assert_true(h->name >= buf && h->name + h->name_len <= buf + r->head_len);
        assert_true(h->value >= buf && h->value + h->value_len <= buf + r->head_len);
    }
}

static void
test_simple_get(void **state)
{
    (void)state;
    static const char req[] = "GET /index.html?q=1 HTTP/1.1\r\n"
                              "Host: example.com:8080\r\n"
                              "User-Agent:curl/8.0\r\n"
                              "X-Trim: \t  padded value \t \r\n"
                              "X-Empty:\r\n"
                              "X-Empty-Ows:   \r\n"
                              "X-Tab: a\tb\r\n"
                              "X-Obs-Text: caf\xc3\xa9\r\n"
                              "\r\n";
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(parse(req, sizeof(req) - 1, &r, &err), AP_OK);
    assert_span(r.method, r.method_len, "GET");
    assert_span(r.target, r.target_len, "/index.html?q=1");
    assert_int_equal(r.minor_version, 1);
    assert_int_equal(r.nheaders, 7);
    assert_span(r.headers[0].name, r.headers[0].name_len, "Host");
    assert_span(r.headers[0].value, r.headers[0].value_len, "example.com:8080");
    assert_span(r.headers[1].value, r.headers[1].value_len, "curl/8.0");
    assert_span(r.headers[2].value, r.headers[2].value_len, "padded value");
    assert_span(r.headers[3].value, r.headers[3].value_len, "");
    assert_span(r.headers[4].value, r.headers[4].value_len, "");
    assert_span(r.headers[5].value, r.headers[5].value_len, "a\tb");
    assert_span(r.headers[6].value, r.headers[6].value_len, "caf\xc3\xa9");
    assert_int_equal(r.body, AP_BODY_NONE);
    assert_true(r.keep_alive);
    assert_false(r.expect_continue);
    assert_false(r.expect_other);
    assert_false(r.is_connect);
    assert_int_equal(r.head_len, sizeof(req) - 1);
    assert_inside(&r, req);
}

static void
test_bodies(void **state)
{
    (void)state;
    ap_http1_req_t r;
    ap_http1_err_t err = {0};

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n"), &r, &err), AP_OK);
    assert_int_equal(r.body, AP_BODY_LENGTH);
    assert_int_equal(r.content_length, 42);

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\ncontent-length:   7  \r\n\r\n"), &r, &err), AP_OK);
    assert_int_equal(r.content_length, 7);

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"), &r, &err), AP_OK);
    assert_int_equal(r.body, AP_BODY_NONE);
    assert_int_equal(r.content_length, 0);

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n"), &r, &err), AP_OK);
    assert_int_equal(r.content_length, 7);

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n"), &r,
              &err),
        AP_OK);
    assert_true(r.content_length == UINT64_C(9223372036854775807));

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), &r, &err),
        AP_OK);
    assert_int_equal(r.body, AP_BODY_CHUNKED);

    assert_int_equal(
        parse(LIT("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  CHUNKED \r\n\r\n"), &r, &err),
        AP_OK);
    assert_int_equal(r.body, AP_BODY_CHUNKED);

    /* A 1.0 request may carry Content-Length. */
    assert_int_equal(parse(LIT("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n"), &r, &err), AP_OK);
    assert_int_equal(r.body, AP_BODY_LENGTH);
    assert_int_equal(r.minor_version, 0);
}

static void
test_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *req;
        bool keep_alive;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, Close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Connection: close\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: te, keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n", false},
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(cases); i++) {
        ap_http1_req_t r;
        ap_http1_err_t err = {0};
        assert_int_equal(parse(cases[i].req, strlen(cases[i].req), &r, &err), AP_OK);
        if (r.keep_alive != cases[i].keep_alive)
            fail_msg("case %zu: keep_alive %d", i, r.keep_alive);
    }
}

static void
test_expect(void **state)
{
    (void)state;
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(parse(LIT("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                               "Expect: 100-Continue\r\n\r\n"),
                           &r, &err),
                     AP_OK);
    assert_true(r.expect_continue);
    assert_false(r.expect_other);

    /* RFC 9110 10.1.1: ignored in HTTP/1.0. */
    assert_int_equal(parse(LIT("PUT / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), &r, &err), AP_OK);
    assert_false(r.expect_continue);

    assert_int_equal(parse(LIT("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n"), &r, &err),
                     AP_OK);
    assert_false(r.expect_continue);
    assert_true(r.expect_other);
}

static void
test_connect(void **state)
{
    (void)state;
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(parse(LIT("CONNECT api.example.com:443 HTTP/1.1\r\n"
                               "Host: api.example.com:443\r\nContent-Length: 0\r\n\r\n"),
                           &r, &err),
                     AP_OK);
    assert_true(r.is_connect);
    assert_int_equal(r.body, AP_BODY_NONE);
    assert_span(r.target, r.target_len, "api.example.com:443");

    /* Methods are case-sensitive. */
    assert_int_equal(parse(LIT("connect a:443 HTTP/1.1\r\nHost: a\r\n\r\n"), &r, &err), AP_OK);
    assert_false(r.is_connect);
}

static void
test_host(void **state)
{
    (void)state;
    static const char *const good[] = {
        "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: my_host-1.local\r\n\r\n",
        "GET / HTTP/1.1\r\nHost:\r\n\r\n",
        "GET / HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(good); i++) {
        ap_http1_req_t r;
        ap_http1_err_t err = {0};
        if (parse(good[i], strlen(good[i]), &r, &err) != AP_OK)
            fail_msg("%s: %s", good[i], err.detail);
    }
}

static void
test_methods_and_targets(void **state)
{
    (void)state;
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(parse(LIT("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"), &r, &err), AP_OK);
    assert_span(r.method, r.method_len, "M-SEARCH");
    assert_span(r.target, r.target_len, "*");
    assert_int_equal(
        parse(LIT("GET http://a.example/x?y=%20 HTTP/1.1\r\nHost: a.example\r\n\r\n"), &r, &err),
        AP_OK);
    assert_span(r.target, r.target_len, "http://a.example/x?y=%20");
    assert_int_equal(parse(LIT("!#$%&'*+-.^_`|~09azAZ /~!$&'()*+,;=:@?[]{}\"<>\\^` HTTP/1.1\r\n"
                               "Host: a\r\n\r\n"),
                           &r, &err),
                     AP_OK);
}

static void
test_leading_empty_lines(void **state)
{
    (void)state;
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(parse(LIT("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &r, &err), AP_OK);
    assert_span(r.method, r.method_len, "GET");
    assert_int_equal(r.head_len, 29);

    static const char sixteen[] = "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
                                  "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_int_equal(parse(sixteen, sizeof(sixteen) - 1, &r, &err), AP_OK);
    assert_int_equal(r.head_len, sizeof(sixteen) - 1);

    /* Empty lines alone: keep waiting (a keep-alive client's stray CRLF after a body). */
    assert_int_equal(parse(LIT("\r\n\r\n"), &r, &err), AP_AGAIN);
    assert_int_equal(parse(LIT("\r\n\r\n\r\n"), &r, &err), AP_AGAIN);
}

static void
test_pipelined(void **state)
{
    (void)state;
    static const char two[] = "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
                              "GET /b HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(parse(two, sizeof(two) - 1, &r, &err), AP_OK);
    assert_span(r.target, r.target_len, "/a");
    assert_int_equal(r.head_len,
                     strlen("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"));
    assert_memory_equal(two + r.head_len, "GET /b", 6);
    assert_inside(&r, two);

    const char *second = two + r.head_len;
    size_t rest = sizeof(two) - 1 - r.head_len;
    assert_int_equal(parse(second, rest, &r, &err), AP_OK);
    assert_span(r.target, r.target_len, "/b");
    assert_false(r.keep_alive);
    assert_int_equal(r.head_len, rest);

    /* A partial second request after a complete first one does not matter. */
    assert_int_equal(parse(two, sizeof(two) - 10, &r, &err), AP_OK);
    assert_span(r.target, r.target_len, "/a");
}

static void
test_find(void **state)
{
    (void)state;
    ap_http1_req_t r;
    ap_http1_err_t err = {0};
    assert_int_equal(
        parse(LIT("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\nAccept: */*\r\n\r\n"), &r,
              &err),
        AP_OK);
    const ap_header_t *h = ap_http1_find(&r, "X-DUP");
    assert_non_null(h);
    assert_ptr_equal(h, &r.headers[1]);
    assert_ptr_equal(ap_http1_find(&r, "accept"), &r.headers[3]);
    assert_null(ap_http1_find(&r, "Accept-Encoding"));
    assert_null(ap_http1_find(&r, "X-Du"));
}

/* --- Incremental arrival ----------------------------------------------------------------- */

static void
assert_same_result(ap_rc_t rc1, const ap_http1_req_t *a, const ap_http1_err_t *ea, ap_rc_t rc2,
                   const ap_http1_req_t *b, const ap_http1_err_t *eb)
{
    assert_int_equal(rc1, rc2);
    if (rc1 == AP_ERR) {
        assert_int_equal(ea->status, eb->status);
        assert_string_equal(ea->code, eb->code);
        assert_string_equal(ea->detail, eb->detail);
        return;
    }
    if (rc1 != AP_OK)
        return;
    assert_int_equal(a->head_len, b->head_len);
    assert_ptr_equal(a->method, b->method);
    assert_int_equal(a->method_len, b->method_len);
    assert_ptr_equal(a->target, b->target);
    assert_int_equal(a->target_len, b->target_len);
    assert_int_equal(a->minor_version, b->minor_version);
    assert_int_equal(a->nheaders, b->nheaders);
    assert_memory_equal(a->headers, b->headers, a->nheaders * sizeof(a->headers[0]));
    assert_int_equal(a->body, b->body);
    assert_true(a->content_length == b->content_length);
    assert_int_equal(a->keep_alive, b->keep_alive);
    assert_int_equal(a->expect_continue, b->expect_continue);
    assert_int_equal(a->expect_other, b->expect_other);
    assert_int_equal(a->is_connect, b->is_connect);
}

/* Feeds buf in `step`-byte increments with prev_len, as conn.c does; returns the first result
 * that is not AP_AGAIN, or AP_AGAIN after the whole buffer. */
static ap_rc_t
parse_in_steps(const char *buf, size_t len, size_t step, size_t max_head, ap_http1_req_t *r,
               ap_http1_err_t *err)
{
    size_t prev = 0;
    for (size_t have = step < len ? step : len;; have = have + step < len ? have + step : len) {
        size_t n = have < max_head ? have : max_head;
        ap_rc_t rc = ap_http1_parse_request(buf, n, prev, max_head, r, err);
        if (rc != AP_AGAIN || have == len)
            return rc;
        prev = n;
    }
}

static void
check_incremental(const char *buf, size_t len, size_t max_head)
{
    static ap_http1_req_t a, b;
    ap_http1_err_t ea = {0}, eb = {0};
    size_t n = len < max_head ? len : max_head;
    ap_rc_t rc1 = ap_http1_parse_request(buf, n, 0, max_head, &a, &ea);
    for (size_t step = 1; step <= 7; step++) {
        memset(&eb, 0, sizeof(eb));
        ap_rc_t rc2 = parse_in_steps(buf, len, step, max_head, &b, &eb);
        assert_same_result(rc1, &a, &ea, rc2, &b, &eb);
    }
}

static void
test_incremental_identical(void **state)
{
    (void)state;
    static const char *const heads[] = {
        "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
        "\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\nX-A:  \t v \t\r\n\r\nGET / HTTP/1.1\r\n",
        "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        "GET / HTTP/2.0\r\nHost: a\r\nX: \x01\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX-Long: "
        "01234567890123456789012345678901234567890123456789\r\n",
        "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nGET / "
        "HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r",
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(heads); i++) {
        size_t len = strlen(heads[i]);
        check_incremental(heads[i], len, MAX_HEAD);
        check_incremental(heads[i], len, 40);
        check_incremental(heads[i], len, len);
    }
    for (size_t i = 0; i < AP_ARRAY_LEN(bad_cases); i++)
        check_incremental(bad_cases[i].in, bad_cases[i].len, MAX_HEAD);
}

/* prev_len from any earlier AP_AGAIN call gives the same answer as a full scan. */
static void
test_prev_len_any_split(void **state)
{
    (void)state;
    static const char req[] = "\r\nGET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nGET /next";
    size_t len = sizeof(req) - 1;
    ap_http1_req_t a, b;
    ap_http1_err_t ea = {0}, eb = {0};
    ap_rc_t rc1 = parse(req, len, &a, &ea);
    assert_int_equal(rc1, AP_OK);
    for (size_t k = 0; k < len; k++) {
        if (parse(req, k, &b, &eb) != AP_AGAIN)
            continue;
        ap_rc_t rc2 = ap_http1_parse_request(req, len, k, MAX_HEAD, &b, &eb);
        assert_same_result(rc1, &a, &ea, rc2, &b, &eb);
    }
}

/* --- Targets ----------------------------------------------------------------------------- */

typedef struct {
    const char *in;
    bool is_connect;
    ap_rc_t rc;
    int form;
    bool https;
    const char *host; /* NULL: none */
    int port;
    const char *path; /* NULL: none */
    bool needs_slash;
} target_case_t;

#define T_OK(in, conn, form, https, host, port, path, slash)                                       \
    {                                                                                              \
        in, conn, AP_OK, form, https, host, port, path, slash                                      \
    }
#define T_ERR(in, conn)                                                                            \
    {                                                                                              \
        in, conn, AP_ERR, 0, false, NULL, 0, NULL, false                                           \
    }

static const target_case_t target_cases[] = {
    T_OK("/", false, AP_TARGET_ORIGIN, false, NULL, 0, "/", false),
    T_OK("/a/b?c=d&e", false, AP_TARGET_ORIGIN, false, NULL, 0, "/a/b?c=d&e", false),
    T_OK("//evil.example/x", false, AP_TARGET_ORIGIN, false, NULL, 0, "//evil.example/x", false),
    T_OK("*", false, AP_TARGET_ASTERISK, false, NULL, 0, NULL, false),
    T_OK("http://example.com", false, AP_TARGET_ABSOLUTE, false, "example.com", 80, "/", false),
    T_OK("http://example.com/", false, AP_TARGET_ABSOLUTE, false, "example.com", 80, "/", false),
    T_OK("HTTP://Example.COM:8080/x?y", false, AP_TARGET_ABSOLUTE, false, "Example.COM", 8080,
         "/x?y", false),
    T_OK("https://api.example.com/v1", false, AP_TARGET_ABSOLUTE, true, "api.example.com", 443,
         "/v1", false),
    T_OK("HttpS://h:8443", false, AP_TARGET_ABSOLUTE, true, "h", 8443, "/", false),
    T_OK("http://h?q=1", false, AP_TARGET_ABSOLUTE, false, "h", 80, "?q=1", true),
    T_OK("http://h:81?q", false, AP_TARGET_ABSOLUTE, false, "h", 81, "?q", true),
    T_OK("http://[::1]:8080/p", false, AP_TARGET_ABSOLUTE, false, "::1", 8080, "/p", false),
    T_OK("http://[2001:db8::7]", false, AP_TARGET_ABSOLUTE, false, "2001:db8::7", 80, "/", false),
    T_OK("http://[::ffff:1.2.3.4]/", false, AP_TARGET_ABSOLUTE, false, "::ffff:1.2.3.4", 80, "/",
         false),
    T_OK("http://127.0.0.1:65535/", false, AP_TARGET_ABSOLUTE, false, "127.0.0.1", 65535, "/",
         false),
    T_OK("http://h:1/", false, AP_TARGET_ABSOLUTE, false, "h", 1, "/", false),
    T_OK("http://h:080/", false, AP_TARGET_ABSOLUTE, false, "h", 80, "/", false),
    T_OK("http://my_host-1.x/@a", false, AP_TARGET_ABSOLUTE, false, "my_host-1.x", 80, "/@a",
         false),
    T_OK("a.example:443", true, AP_TARGET_AUTHORITY, false, "a.example", 443, NULL, false),
    T_OK("[::1]:8443", true, AP_TARGET_AUTHORITY, false, "::1", 8443, NULL, false),
    T_OK("10.0.0.1:22", true, AP_TARGET_AUTHORITY, false, "10.0.0.1", 22, NULL, false),

    T_ERR("", false),
    T_ERR("", true),
    T_ERR("a", false),
    T_ERR("**", false),
    T_ERR("ftp://h/", false),
    T_ERR("ws://h/", false),
    T_ERR("http:/h/", false),
    T_ERR("http:h", false),
    T_ERR("http://", false),
    T_ERR("http:///", false),
    T_ERR("http://?q", false),
    T_ERR("http://:80/", false),
    T_ERR("http://u@h/", false),
    T_ERR("http://u:p@h/", false),
    T_ERR("http://@h/", false),
    T_ERR("http://h:0/", false),
    T_ERR("http://h:65536/", false),
    T_ERR("http://h:/", false),
    T_ERR("http://h:-1/", false),
    T_ERR("http://h:+80/", false),
    T_ERR("http://h:123456/", false),
    T_ERR("http://h:99999999999999999999/", false),
    T_ERR("http://h:80:80/", false),
    T_ERR("http://h%41/", false),
    T_ERR("http://h!/", false),
    T_ERR("http://h/#frag", false),
    T_ERR("http://h#frag", false),
    T_ERR("/a#b", false),
    T_ERR("/a b", false),
    T_ERR("/a\x01", false),
    T_ERR("/a\x80", false),
    T_ERR("http://[::1/", false),
    T_ERR("http://[::1]x/", false),
    T_ERR("http://[::1]:/", false),
    T_ERR("http://[]/", false),
    T_ERR("http://[fe80::1%25eth0]/", false),
    T_ERR("http://[v1.fe]/", false),
    T_ERR("http://[1.2.3.4]/", false),
    T_ERR("http://[example.com]/", false),
    T_ERR("http://::1/", false),
    T_ERR("a.example:443", false),
    T_ERR("a.example", true),
    T_ERR("a.example:", true),
    T_ERR("a.example:0", true),
    T_ERR(":443", true),
    T_ERR("[::1]", true),
    T_ERR("http://a.example:443", true),
    T_ERR("/x", true),
    T_ERR("*", true),
    T_ERR("a.example:443/x", true),
    T_ERR("u@a.example:443", true),
};

static void
test_targets(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < AP_ARRAY_LEN(target_cases); i++) {
        const target_case_t *c = &target_cases[i];
        ap_target_t t;
        ap_rc_t rc = ap_http1_parse_target(c->in, strlen(c->in), c->is_connect, &t);
        bool ok = rc == c->rc;
        if (ok && rc == AP_OK) {
            ok = (int)t.form == c->form && t.https == c->https && t.port == c->port &&
                 t.path_needs_slash == c->needs_slash &&
                 (c->host ? span_eq(t.host, t.host_len, c->host) : t.host == NULL) &&
                 (c->path ? span_eq(t.path, t.path_len, c->path) : t.path == NULL);
        }
        if (!ok) {
            print_error("target \"%s\" (connect %d): rc %d form %d host %.*s port %d path %.*s\n",
                        c->in, c->is_connect, rc, (int)t.form, (int)t.host_len,
                        t.host ? t.host : "", t.port, (int)t.path_len, t.path ? t.path : "");
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

/* The path forwarded upstream: always starts with "/", query kept. */
static void
test_target_path(void **state)
{
    (void)state;
    static const struct {
        const char *in, *want;
        bool connect;
    } cases[] = {{"http://a.example?q=1", "/?q=1", false},
                 {"http://a.example", "/", false},
                 {"http://a.example/x?y", "/x?y", false},
                 {"/p/q", "/p/q", false},
                 {"a.example:443", "/", true}};
    for (size_t i = 0; i < AP_ARRAY_LEN(cases); i++) {
        ap_target_t t;
        assert_int_equal(
            ap_http1_parse_target(cases[i].in, strlen(cases[i].in), cases[i].connect, &t), AP_OK);
        char *p = ap_http1_target_path(&t);
        assert_string_equal(p, cases[i].want);
        free(p);
    }
}

static void
test_target_host_length(void **state)
{
    (void)state;
    char buf[300];
    ap_target_t t;
    memcpy(buf, "http://", 7);
    memset(buf + 7, 'a', 255);
    assert_int_equal(ap_http1_parse_target(buf, 7 + 255, false, &t), AP_OK);
    assert_int_equal(t.host_len, 255);
    memset(buf + 7, 'a', 256);
    assert_int_equal(ap_http1_parse_target(buf, 7 + 256, false, &t), AP_ERR);
}

/* --- Tables ------------------------------------------------------------------------------ */

static void
test_reason(void **state)
{
    (void)state;
    assert_string_equal(ap_http1_reason(200), "OK");
    assert_string_equal(ap_http1_reason(100), "Continue");
    assert_string_equal(ap_http1_reason(404), "Not Found");
    assert_string_equal(ap_http1_reason(407), "Proxy Authentication Required");
    assert_string_equal(ap_http1_reason(413), "Content Too Large");
    assert_string_equal(ap_http1_reason(417), "Expectation Failed");
    assert_string_equal(ap_http1_reason(431), "Request Header Fields Too Large");
    assert_string_equal(ap_http1_reason(501), "Not Implemented");
    assert_string_equal(ap_http1_reason(502), "Bad Gateway");
    assert_string_equal(ap_http1_reason(503), "Service Unavailable");
    assert_string_equal(ap_http1_reason(504), "Gateway Timeout");
    assert_string_equal(ap_http1_reason(505), "HTTP Version Not Supported");
    assert_string_equal(ap_http1_reason(999), "Unknown");
    assert_string_equal(ap_http1_reason(0), "Unknown");
    assert_string_equal(ap_http1_reason(-1), "Unknown");
}

static void
test_hop_by_hop(void **state)
{
    (void)state;
    static const char *const hop[] = {
        "Connection",
        "connection",
        "KEEP-ALIVE",
        "Proxy-Connection",
        "TE",
        "te",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "proxy-authenticate",
        "Proxy-Anything",
        "proxy-",
    };
    static const char *const end_to_end[] = {
        "Host",    "Content-Length", "Trailers",      "Tex",       "T",    "Proxy",
        "Proxy_X", "Connect",        "Authorization", "X-Proxy-A", "Keep", "",
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(hop); i++)
        if (!ap_http1_is_hop_by_hop(hop[i], strlen(hop[i])))
            fail_msg("%s should be hop-by-hop", hop[i]);
    for (size_t i = 0; i < AP_ARRAY_LEN(end_to_end); i++)
        if (ap_http1_is_hop_by_hop(end_to_end[i], strlen(end_to_end[i])))
            fail_msg("%s should be end-to-end", end_to_end[i]);
    /* Length-delimited: a longer buffer does not matter. */
    assert_true(ap_http1_is_hop_by_hop("TE: trailers", 2));
}

/* --- Response heads ---------------------------------------------------------------------- */

typedef struct {
    char lines[1024];
    size_t len;
    int n;
} hdr_acc_t;

static void
acc_header(void *ud, const ap_header_t *h)
{
    hdr_acc_t *a = ud;
    a->len += (size_t)snprintf(a->lines + a->len, sizeof(a->lines) - a->len, "%.*s=%.*s|",
                               (int)h->name_len, h->name, (int)h->value_len, h->value);
    a->n++;
}

static ap_rc_t
parse_resp(const char *buf, size_t len, ap_http1_resp_t *r, hdr_acc_t *a)
{
    memset(a, 0, sizeof(*a));
    return ap_http1_parse_response(buf, len, 1024, r, acc_header, a);
}

static void
test_response_framing(void **state)
{
    (void)state;
    ap_http1_resp_t r;
    hdr_acc_t a;
    static const char cl[] =
        "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length:  12 \r\n\r\nbody";
    assert_int_equal(parse_resp(LIT(cl), &r, &a), AP_OK);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.minor_version, 1);
    assert_int_equal(r.body, AP_RESP_LENGTH);
    assert_int_equal(r.content_length, 12);
    assert_true(r.keep_alive);
    assert_int_equal(r.head_len, sizeof(cl) - 1 - 4);
    assert_string_equal(a.lines, "Content-Type=a/b|Content-Length=12|");

    static const char ch[] = "HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n";
    assert_int_equal(parse_resp(LIT(ch), &r, &a), AP_OK);
    assert_int_equal(r.body, AP_RESP_CHUNKED);
    assert_true(r.keep_alive);

    /* TE overrides CL, and such a connection is not reused (RFC 9112 6.3). */
    static const char both[] =
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_int_equal(parse_resp(LIT(both), &r, &a), AP_OK);
    assert_int_equal(r.body, AP_RESP_CHUNKED);
    assert_false(r.keep_alive);

    /* A final coding other than chunked, or no framing at all: until close. */
    static const char gz[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n";
    assert_int_equal(parse_resp(LIT(gz), &r, &a), AP_OK);
    assert_int_equal(r.body, AP_RESP_CLOSE);
    assert_false(r.keep_alive);
    static const char none[] = "HTTP/1.1 200 OK\nServer: x\n\n";
    assert_int_equal(parse_resp(LIT(none), &r, &a), AP_OK);
    assert_int_equal(r.body, AP_RESP_CLOSE);
    assert_false(r.keep_alive);
    assert_string_equal(a.lines, "Server=x|");

    static const char close[] =
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse_resp(LIT(close), &r, &a), AP_OK);
    assert_false(r.keep_alive);
    static const char v10[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse_resp(LIT(v10), &r, &a), AP_OK);
    assert_int_equal(r.minor_version, 0);
    assert_false(r.keep_alive);
    static const char v10ka[] =
        "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(parse_resp(LIT(v10ka), &r, &a), AP_OK);
    assert_true(r.keep_alive);
    /* No framing (as for a 304): not reusable after a body, persistent by its headers. */
    static const char bare[] = "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n";
    assert_int_equal(parse_resp(LIT(bare), &r, &a), AP_OK);
    assert_false(r.keep_alive);
    assert_true(r.persistent);

    static const char noreason[] = "HTTP/1.1 599\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    assert_int_equal(parse_resp(LIT(noreason), &r, &a), AP_OK);
    assert_int_equal(r.status, 599);
    assert_int_equal(r.content_length, 1);
    static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n";
    assert_int_equal(parse_resp(LIT(interim), &r, &a), AP_OK);
    assert_int_equal(r.status, 100);
    assert_int_equal(r.head_len, 25);
}

static void
test_response_incomplete_and_rejected(void **state)
{
    (void)state;
    ap_http1_resp_t r;
    hdr_acc_t a;
    static const char full[] = "HTTP/1.1 200 OK\r\nA: b\r\n\r\n";
    for (size_t k = 0; k < sizeof(full) - 1; k++) {
        assert_int_equal(parse_resp(full, k, &r, &a), AP_AGAIN);
        assert_int_equal(a.n, 0); /* nothing is reported before the head is complete */
    }
    static const struct {
        const char *in;
        size_t len;
    } bad[] = {
        {LIT("HTTP/1.1 20 OK\r\n\r\n")},
        {LIT("HTTP/1.1 099 X\r\n\r\n")},
        {LIT("HTTP/2 200 OK\r\n\r\n")},
        {LIT("HTTP/1.1 200OK\r\n\r\n")},
        {LIT("ICY 200 OK\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nA b: c\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nA : c\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nno colon\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n")},
        {LIT("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n")},
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(bad); i++)
        if (parse_resp(bad[i].in, bad[i].len, &r, &a) != AP_ERR)
            fail_msg("accepted: %.*s", (int)bad[i].len, bad[i].in);
    /* No end of head within max_head. */
    char big[1100];
    memset(big, 'x', sizeof(big));
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(parse_resp(big, sizeof(big), &r, &a), AP_ERR);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_early_rejection),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_head_too_large),
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_methods_and_targets),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_incremental_identical),
        cmocka_unit_test(test_prev_len_any_split),
        cmocka_unit_test(test_targets),
        cmocka_unit_test(test_target_path),
        cmocka_unit_test(test_target_host_length),
        cmocka_unit_test(test_reason),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_incomplete_and_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
