/*
 * chunked.h: a pure, overflow-safe decoder for the chunked transfer coding (RFC 9112 7.1).
 * No I/O, no allocation.
 *
 * Strict: chunk sizes are 1-16 hex digits (either case) without sign, "0x", leading whitespace
 * or overflow; chunk extensions must follow the RFC grammar (";" name ["=" token or
 * quoted-string], BWS around ";" and "=") and are skipped, at most AP_CHUNKED_MAX_EXT bytes per
 * chunk line; whitespace after the size is only accepted before a ";"; each chunk's data must
 * be followed by exactly CRLF; bare LF or CR is an error; trailer fields are syntax-checked
 * (token name, ":", no CTL but HTAB, no obs-fold) and dropped; the total trailer section is
 * bounded by AP_CHUNKED_MAX_TRAILER. Any split of the input decodes identically.
 */
#ifndef AP_CHUNKED_H
#define AP_CHUNKED_H

#include "ap_base.h"

#define AP_CHUNKED_MAX_TRAILER (16 * 1024)
#define AP_CHUNKED_MAX_EXT 4096 /* bytes of chunk extensions per chunk line */

typedef struct ap_chunked_s {
    int state;          /* private */
    uint64_t remaining; /* private: data bytes left in the current chunk */
    size_t count;       /* private: digits / extension / trailer bytes seen */
    uint64_t total;     /* decoded body bytes so far */
} ap_chunked_t;

void ap_chunked_init(ap_chunked_t *c);

/*
 * Feeds in[0..len). Consumes framing bytes and at most one contiguous run of body data, then
 * returns. On return *consumed bytes of `in` were used; if *data_len > 0, the body data is
 * in[*consumed - *data_len .. *consumed). Call again with the rest.
 * Returns AP_OK when the message is complete (last chunk and trailers consumed; bytes after
 * *consumed belong to the next request), AP_AGAIN when more input is needed (or more data runs
 * follow: call again while *consumed > 0), AP_ERR on malformed input (*consumed is then the
 * offset of the offending byte). After AP_ERR every call returns AP_ERR; after AP_OK every call
 * returns AP_OK and consumes nothing.
 */
ap_rc_t ap_chunked_next(ap_chunked_t *c, const char *in, size_t len, size_t *consumed,
                        size_t *data_len);

#endif
