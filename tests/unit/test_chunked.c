/*
 * test_chunked.c: the chunked decoder (proxy/chunked.c): valid bodies, every malformed size,
 * extension, data and trailer case, and that any split of the input decodes identically.
 */
#include "chunked.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define LIT(s) s, sizeof(s) - 1
#define OUT_MAX 65536

typedef struct {
    ap_rc_t rc;
    size_t used; /* input bytes consumed in total */
    char out[OUT_MAX];
    size_t out_len;
    uint64_t total;
} result_t;

/*
 * Decodes in[0..len), making `step` more bytes available each time the decoder stalls (step 0:
 * everything at once). Stops at AP_OK, AP_ERR, or when the input is exhausted (AP_AGAIN).
 * Checks the per-call contract on the way.
 */
static void
decode(const char *in, size_t len, size_t step, result_t *res)
{
    ap_chunked_t c;
    ap_chunked_init(&c);
    size_t avail = step == 0 || step > len ? len : step;
    res->used = 0;
    res->out_len = 0;
    for (;;) {
        size_t consumed = 99, data_len = 99;
        ap_rc_t rc = ap_chunked_next(&c, in + res->used, avail - res->used, &consumed, &data_len);
        assert_true(consumed <= avail - res->used);
        assert_true(data_len <= consumed);
        if (data_len > 0) {
            assert_int_equal(rc, AP_AGAIN);
            assert_true(res->out_len + data_len <= OUT_MAX);
            memcpy(res->out + res->out_len, in + res->used + consumed - data_len, data_len);
            res->out_len += data_len;
        }
        res->used += consumed;
        assert_true(c.total == res->out_len);
        if (rc != AP_AGAIN || (consumed == 0 && avail == len)) {
            res->rc = rc;
            break;
        }
        if (consumed == 0)
            avail = avail + step < len ? avail + step : len;
    }
    res->total = c.total;

    /* Terminal states are sticky. */
    size_t consumed, data_len;
    if (res->rc == AP_ERR) {
        assert_int_equal(ap_chunked_next(&c, "0\r\n\r\n", 5, &consumed, &data_len), AP_ERR);
    } else if (res->rc == AP_OK) {
        assert_int_equal(ap_chunked_next(&c, "0\r\n\r\n", 5, &consumed, &data_len), AP_OK);
        assert_int_equal(consumed, 0);
        assert_int_equal(data_len, 0);
    }
}

/* One shot, byte by byte and a few odd steps must all agree; returns the one-shot result. */
static result_t *
decode_all_ways(const char *in, size_t len)
{
    static result_t one, other;
    static const size_t steps[] = {1, 2, 3, 5, 7, 64};
    decode(in, len, 0, &one);
    for (size_t i = 0; i < AP_ARRAY_LEN(steps); i++) {
        decode(in, len, steps[i], &other);
        assert_int_equal(one.rc, other.rc);
        assert_int_equal(one.used, other.used);
        assert_int_equal(one.out_len, other.out_len);
        assert_memory_equal(one.out, other.out, one.out_len);
        assert_true(one.total == other.total);
    }
    return &one;
}

static void
expect_body(const char *in, size_t len, const char *body, size_t body_len, size_t used)
{
    result_t *r = decode_all_ways(in, len);
    if (r->rc != AP_OK)
        fail_msg("\"%.*s\": rc %d at %zu", (int)len, in, r->rc, r->used);
    assert_int_equal(r->used, used);
    assert_int_equal(r->out_len, body_len);
    assert_memory_equal(r->out, body, body_len);
}

static void
expect_error(const char *name, const char *in, size_t len)
{
    result_t *r = decode_all_ways(in, len);
    if (r->rc != AP_ERR)
        fail_msg("%s: rc %d, want AP_ERR", name, r->rc);
}

/* --- Valid bodies ------------------------------------------------------------------------ */

static void
test_valid(void **state)
{
    (void)state;
    expect_body(LIT("5\r\nhello\r\n0\r\n\r\n"), LIT("hello"), 15);
    expect_body(LIT("0\r\n\r\n"), LIT(""), 5);
    expect_body(LIT("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), LIT("hello world"), 26);
    expect_body(LIT("A\r\n0123456789\r\n0\r\n\r\n"), LIT("0123456789"), 20);
    expect_body(LIT("a\r\n0123456789\r\n0\r\n\r\n"), LIT("0123456789"), 20);
    expect_body(LIT("0005\r\nhello\r\n000\r\n\r\n"), LIT("hello"), 20);
    expect_body(LIT("0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n"), LIT("hello"), 45);
    /* CRLF inside data is data. */
    expect_body(LIT("4\r\n\r\n\r\n\r\n0\r\n\r\n"), LIT("\r\n\r\n"), 14);
    /* Binary data, NUL included. */
    expect_body(LIT("3\r\n\0\xff\n\r\n0\r\n\r\n"), LIT("\0\xff\n"), 13);
}

static void
test_trailing_bytes_not_consumed(void **state)
{
    (void)state;
    static const char in[] = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    result_t *r = decode_all_ways(LIT(in));
    assert_int_equal(r->rc, AP_OK);
    assert_int_equal(r->used, 13);
    assert_memory_equal(in + r->used, "GET", 3);
}

static void
test_extensions(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "5;a\r\nhello\r\n0\r\n\r\n",
        "5;a=b\r\nhello\r\n0\r\n\r\n",
        "5;a=b;c=d;e\r\nhello\r\n0\r\n\r\n",
        "5 ;a\r\nhello\r\n0\r\n\r\n",
        "5\t; a = b ;c\r\nhello\r\n0\r\n\r\n",
        "5;a=\"quoted ; value\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"esc \\\" \\\\ q\";b\r\nhello\r\n0\r\n\r\n",
        "5;a=\"\"\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\" ;b\r\nhello\r\n0\r\n\r\n",
        "5;a=\"obs-text \xe9\"\r\nhello\r\n0\r\n\r\n",
        "5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~\r\nhello\r\n0\r\n\r\n",
        "5;a\r\nhello\r\n0;last=1\r\n\r\n",
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(ok); i++) {
        result_t *r = decode_all_ways(ok[i], strlen(ok[i]));
        if (r->rc != AP_OK || r->out_len != 5 || memcmp(r->out, "hello", 5) != 0)
            fail_msg("\"%s\": rc %d", ok[i], r->rc);
    }
}

static void
test_extension_limit(void **state)
{
    (void)state;
    static char buf[AP_CHUNKED_MAX_EXT + 64];
    /* ";" + name: the chunk line after the size, CR included, may hold AP_CHUNKED_MAX_EXT. */
    size_t n = 0;
    buf[n++] = '1';
    buf[n++] = ';';
    while (n < 1 + AP_CHUNKED_MAX_EXT - 1)
        buf[n++] = 'x';
    memcpy(buf + n, "\r\nZ\r\n0\r\n\r\n", 10);
    result_t *r = decode_all_ways(buf, n + 10);
    assert_int_equal(r->rc, AP_OK);
    assert_int_equal(r->out_len, 1);

    buf[n++] = 'x';
    memcpy(buf + n, "\r\nZ\r\n0\r\n\r\n", 10);
    expect_error("extension over the limit", buf, n + 10);
}

/* --- Malformed --------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    const char *in;
    size_t len;
} bad_t;

#define BAD(name, s)                                                                               \
    {                                                                                              \
        name, s, sizeof(s) - 1                                                                     \
    }

static const bad_t bad_cases[] = {
    BAD("0x prefix", "0x10\r\n"),
    BAD("negative", "-1\r\n"),
    BAD("plus", "+1\r\n"),
    BAD("leading SP", " 5\r\nhello\r\n0\r\n\r\n"),
    BAD("leading HTAB", "\t5\r\nhello\r\n0\r\n\r\n"),
    BAD("trailing SP", "5 \r\nhello\r\n0\r\n\r\n"),
    BAD("trailing HTAB", "5\t\r\nhello\r\n0\r\n\r\n"),
    BAD("empty size", "\r\nhello\r\n0\r\n\r\n"),
    BAD("only extension", ";a\r\n"),
    BAD("non-hex digit", "5g\r\n"),
    BAD("17 hex digits", "10000000000000000\r\n"),
    BAD("17 digits with leading zeros", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
    BAD("20 hex digits", "FFFFFFFFFFFFFFFFFFFF\r\n"),
    BAD("LF after size", "5\nhello\r\n0\r\n\r\n"),
    BAD("CR CR after size", "5\r\rhello\r\n0\r\n\r\n"),
    BAD("missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n"),
    BAD("data too long", "5\r\nhello!\r\n0\r\n\r\n"),
    BAD("LF-only after data", "5\r\nhello\n0\r\n\r\n"),
    BAD("CR without LF after data", "5\r\nhello\r0\r\n\r\n"),
    BAD("LF-only everywhere", "5\nhello\n0\n\n"),
    BAD("empty extension name", "5;\r\nhello\r\n"),
    BAD("empty extension value", "5;a=\r\nhello\r\n"),
    BAD("extension value without name", "5;=b\r\nhello\r\n"),
    BAD("space inside extension", "5;a b\r\nhello\r\n"),
    BAD("whitespace ends extension", "5;a \r\nhello\r\n"),
    BAD("whitespace ends extension value", "5;a=b \r\nhello\r\n"),
    BAD("unterminated quote", "5;a=\"x\r\nhello\r\n"),
    BAD("junk after quote", "5;a=\"x\"y\r\nhello\r\n"),
    BAD("CTL in quote", "5;a=\"\x01\"\r\nhello\r\n"),
    BAD("DEL in quote", "5;a=\"\x7f\"\r\nhello\r\n"),
    BAD("non-token extension", "5;a@b\r\nhello\r\n"),
    BAD("LF in extension", "5;a\nhello\r\n"),
    BAD("trailer obs-fold", "0\r\nX: 1\r\n 2\r\n\r\n"),
    BAD("trailer without colon", "0\r\nX 1\r\n\r\n"),
    BAD("trailer SP before colon", "0\r\nX : 1\r\n\r\n"),
    BAD("trailer empty name", "0\r\n: 1\r\n\r\n"),
    BAD("trailer CTL", "0\r\nX: \x01\r\n\r\n"),
    BAD("trailer NUL", "0\r\nX: \0\r\n\r\n"),
    BAD("trailer bare LF", "0\r\nX: 1\n\r\n"),
    BAD("trailer bare CR", "0\r\nX: 1\r2\r\n\r\n"),
    BAD("final LF only", "0\r\n\n"),
    BAD("final CR CR", "0\r\n\r\r"),
};

static void
test_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < AP_ARRAY_LEN(bad_cases); i++)
        expect_error(bad_cases[i].name, bad_cases[i].in, bad_cases[i].len);
}

/* The error offset points at the offending byte. */
static void
test_error_offset(void **state)
{
    (void)state;
    result_t *r = decode_all_ways(LIT("5\r\nhelloX\r\n"));
    assert_int_equal(r->rc, AP_ERR);
    assert_int_equal(r->used, 8);
    assert_int_equal(r->out_len, 5);
}

static void
test_trailers(void **state)
{
    (void)state;
    static const char with_trailers[] = "3\r\nabc\r\n0\r\nX-Sum: 1\r\nY:\r\nZ: a\tb \xe9\r\n\r\n";
    expect_body(LIT(with_trailers), LIT("abc"), sizeof(with_trailers) - 1);

    /* The whole trailer section is bounded. */
    static char buf[AP_CHUNKED_MAX_TRAILER + 64];
    size_t n = 0;
    memcpy(buf, "0\r\n", 3);
    n = 3;
    while (n + 8 < 3 + AP_CHUNKED_MAX_TRAILER) {
        memcpy(buf + n, "X: 123\r\n", 8);
        n += 8;
    }
    memcpy(buf + n, "\r\n", 2);
    result_t *r = decode_all_ways(buf, n + 2);
    assert_int_equal(r->rc, AP_OK);

    while (n < 3 + AP_CHUNKED_MAX_TRAILER) {
        memcpy(buf + n, "X: 123\r\n", 8);
        n += 8;
    }
    memcpy(buf + n, "\r\n", 2);
    expect_error("trailer section over the limit", buf, n + 2);
}

/* --- Contract details -------------------------------------------------------------------- */

static void
test_one_data_run_per_call(void **state)
{
    (void)state;
    static const char in[] = "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n";
    ap_chunked_t c;
    size_t consumed, data_len;
    ap_chunked_init(&c);

    assert_int_equal(ap_chunked_next(&c, LIT(in), &consumed, &data_len), AP_AGAIN);
    assert_int_equal(consumed, 8);
    assert_int_equal(data_len, 5);
    assert_memory_equal(in + consumed - data_len, "hello", 5);

    assert_int_equal(ap_chunked_next(&c, in + 8, sizeof(in) - 1 - 8, &consumed, &data_len),
                     AP_AGAIN);
    assert_int_equal(consumed, 8);
    assert_int_equal(data_len, 3);
    assert_memory_equal(in + 8 + consumed - data_len, "abc", 3);

    assert_int_equal(ap_chunked_next(&c, in + 16, sizeof(in) - 1 - 16, &consumed, &data_len),
                     AP_OK);
    assert_int_equal(consumed, 7);
    assert_int_equal(data_len, 0);
    assert_true(c.total == 8);

    /* No input: nothing happens. */
    assert_int_equal(ap_chunked_next(&c, in, 0, &consumed, &data_len), AP_OK);
    assert_int_equal(consumed, 0);
}

static void
test_partial_data(void **state)
{
    (void)state;
    ap_chunked_t c;
    size_t consumed, data_len;
    ap_chunked_init(&c);
    assert_int_equal(ap_chunked_next(&c, LIT("a\r\n0123"), &consumed, &data_len), AP_AGAIN);
    assert_int_equal(consumed, 7);
    assert_int_equal(data_len, 4);
    assert_int_equal(ap_chunked_next(&c, LIT("456789\r"), &consumed, &data_len), AP_AGAIN);
    assert_int_equal(consumed, 6);
    assert_int_equal(data_len, 6);
    assert_int_equal(ap_chunked_next(&c, LIT("\r"), &consumed, &data_len), AP_AGAIN);
    assert_int_equal(consumed, 1);
    assert_int_equal(data_len, 0);
    assert_int_equal(ap_chunked_next(&c, LIT("\n0\r\n\r"), &consumed, &data_len), AP_AGAIN);
    assert_int_equal(consumed, 5);
    assert_int_equal(ap_chunked_next(&c, LIT("\n"), &consumed, &data_len), AP_OK);
    assert_int_equal(consumed, 1);
    assert_true(c.total == 10);
}

static void
test_huge_chunk_size(void **state)
{
    (void)state;
    ap_chunked_t c;
    size_t consumed, data_len;
    ap_chunked_init(&c);
    /* 2^64 - 1 is representable: data follows, never an overflow. */
    assert_int_equal(ap_chunked_next(&c, LIT("FFFFFFFFFFFFFFFF\r\nabc"), &consumed, &data_len),
                     AP_AGAIN);
    assert_int_equal(data_len, 3);
    assert_true(c.remaining == UINT64_MAX - 3);
    assert_int_equal(ap_chunked_next(&c, LIT("de"), &consumed, &data_len), AP_AGAIN);
    assert_true(c.total == 5);
}

static void
test_incomplete(void **state)
{
    (void)state;
    static const char *const partial[] = {
        "",
        "5",
        "5\r",
        "5\r\nhel",
        "5\r\nhello",
        "5\r\nhello\r",
        "5\r\nhello\r\n0",
        "5;a=\"x",
        "0\r\n",
        "0\r\nX: 1",
        "0\r\nX: 1\r\n",
        "0\r\n\r",
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(partial); i++) {
        result_t *r = decode_all_ways(partial[i], strlen(partial[i]));
        if (r->rc != AP_AGAIN || r->used != strlen(partial[i]))
            fail_msg("\"%s\": rc %d used %zu", partial[i], r->rc, r->used);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),        cmocka_unit_test(test_trailing_bytes_not_consumed),
        cmocka_unit_test(test_extensions),   cmocka_unit_test(test_extension_limit),
        cmocka_unit_test(test_malformed),    cmocka_unit_test(test_error_offset),
        cmocka_unit_test(test_trailers),     cmocka_unit_test(test_one_data_run_per_call),
        cmocka_unit_test(test_partial_data), cmocka_unit_test(test_huge_chunk_size),
        cmocka_unit_test(test_incomplete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
