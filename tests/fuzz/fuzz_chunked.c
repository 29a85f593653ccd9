/*
 * fuzz_chunked.c: libFuzzer target for the chunked decoder (proxy/chunked.c). Decodes each
 * input in one shot, byte by byte and in input-derived steps, and requires the same verdict,
 * the same consumed length and the same decoded bytes; checks the per-call contract
 * (consumed <= len, data inside what was consumed, total == bytes handed out) and that
 * terminal states are sticky.
 */
#include "chunked.h"
#include "fuzz_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Byte-by-byte decoding costs a call per byte; fine up to this size. */
#define BYTEWISE_MAX 65536

typedef struct {
    ap_rc_t rc;
    size_t used;
    uint8_t *out; /* decoded body, at most the input size */
    size_t out_len;
    uint64_t total;
} result_t;

/*
 * Feeds in[0..len), growing the visible input by the next step whenever the decoder stalls
 * (steps == NULL and nsteps == 0: all at once; nsteps == 0 with steps != NULL: one byte).
 */
static void
decode(const uint8_t *in, size_t len, const uint8_t *steps, size_t nsteps, result_t *res)
{
    ap_chunked_t c;
    ap_chunked_init(&c);
    size_t k = 0;
    size_t avail = steps == NULL ? len : 0;
    res->used = 0;
    res->out_len = 0;
    for (;;) {
        size_t consumed = (size_t)-1, data_len = (size_t)-1;
        size_t give = avail - res->used;
        ap_rc_t rc = ap_chunked_next(&c, (const char *)in + res->used, give, &consumed, &data_len);
        CHECK(rc == AP_OK || rc == AP_AGAIN || rc == AP_ERR);
        CHECK(consumed <= give);
        CHECK(data_len <= consumed);
        if (data_len > 0) {
            CHECK(rc == AP_AGAIN);
            CHECK(res->out_len + data_len <= len);
            memcpy(res->out + res->out_len, in + res->used + consumed - data_len, data_len);
            res->out_len += data_len;
        }
        res->used += consumed;
        CHECK(c.total == res->out_len);
        CHECK(res->used <= len);
        if (rc != AP_AGAIN) {
            res->rc = rc;
            break;
        }
        if (consumed == 0) {
            /* Stalled: a decoder that wants more must have used everything it was given. */
            CHECK(give == 0);
            if (avail == len) {
                res->rc = rc;
                break;
            }
            size_t step = nsteps ? (size_t)(steps[k++ % nsteps] % 32) + 1 : 1;
            avail = avail + step < len ? avail + step : len;
        }
    }
    res->total = c.total;

    size_t consumed, data_len;
    ap_rc_t again = ap_chunked_next(&c, "0\r\n\r\n", 5, &consumed, &data_len);
    if (res->rc == AP_ERR)
        CHECK(again == AP_ERR);
    if (res->rc == AP_OK)
        CHECK(again == AP_OK && consumed == 0 && data_len == 0);
}

static void
check_same(const result_t *a, const result_t *b)
{
    CHECK(a->rc == b->rc);
    CHECK(a->used == b->used);
    CHECK(a->out_len == b->out_len);
    CHECK(a->total == b->total);
    CHECK(a->out_len == 0 || memcmp(a->out, b->out, a->out_len) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    result_t one, other;
    one.out = malloc(size ? size : 1);
    other.out = malloc(size ? size : 1);
    CHECK(one.out != NULL && other.out != NULL);

    decode(data, size, NULL, 0, &one);
    if (one.rc == AP_OK)
        CHECK(one.used >= 5 && memcmp(data + one.used - 2, "\r\n", 2) == 0);
    if (one.rc == AP_AGAIN)
        CHECK(one.used == size);

    if (size <= BYTEWISE_MAX) {
        decode(data, size, data, 0, &other);
        check_same(&one, &other);
    }
    decode(data, size, data, size < 64 ? size : 64, &other);
    check_same(&one, &other);

    free(one.out);
    free(other.out);
    return 0;
}
