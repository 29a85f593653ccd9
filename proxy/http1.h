/*
 * http1.h: a strict, incremental HTTP/1.1 request-head parser (RFC 9110/9112). Pure functions
 * over bytes: no I/O, no allocation, no libevent. Unit-tested and fuzzed (tests/fuzz).
 *
 * Strictness (DESIGN.md section 7): anything ambiguous is an error, decided here before a byte is
 * sent upstream: Content-Length together with Transfer-Encoding, duplicate (even identical) or
 * invalid Content-Length, Transfer-Encoding other than exactly "chunked" (case-insensitive),
 * Transfer-Encoding in HTTP/1.0, obs-fold, bare CR, bare LF, NUL or other control characters
 * (but HTAB in values) anywhere in the head, spaces or bytes >= 0x7f in the target, invalid
 * token characters in method or header names, whitespace before a colon, HTTP versions other
 * than 1.0/1.1 (-> 505), zero or several Host headers in HTTP/1.1 or an invalid Host value,
 * a body declared on CONNECT, a head larger than max_head (-> 431), more headers than
 * AP_HTTP1_MAX_HEADERS (-> 431).
 *
 * Transfer-Encoding: a lone "chunked" (any case, OWS trimmed) is AP_BODY_CHUNKED. A malformed
 * list (empty value or element, parameters, non-token), chunked twice, several TE lines, TE with
 * Content-Length or in HTTP/1.0 is 400 "bad_transfer_encoding". Any other well-formed coding
 * list ("gzip", "gzip, chunked", "chunked, gzip") is 501 "unsupported_transfer_encoding": we
 * decode no other coding (RFC 9112 6.1; 6.3 would also allow 400 when chunked is not final).
 *
 * Error codes (err->code, stable, for the JSON error body): "bad_request" (bytes invalid
 * anywhere in a head, CONNECT with a body), "bad_request_line", "bad_header" (field syntax,
 * obs-fold, Host), "bad_content_length", "bad_transfer_encoding" (also CL together with TE),
 * "unsupported_transfer_encoding" (501), "version_not_supported" (505), "head_too_large" and
 * "too_many_headers" (431).
 */
#ifndef AP_HTTP1_H
#define AP_HTTP1_H

#include "ap_base.h"

/* Enough for real clients (curl sends ~5, browsers ~20); more is abuse. */
#define AP_HTTP1_MAX_HEADERS 100

typedef struct ap_header_s {
    const char *name;
    size_t name_len;
    const char *value; /* leading/trailing OWS trimmed */
    size_t value_len;
} ap_header_t;

typedef enum {
    AP_BODY_NONE = 0,
    AP_BODY_LENGTH, /* content_length bytes follow */
    AP_BODY_CHUNKED
} ap_body_kind_t;

typedef struct ap_http1_req_s {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int minor_version; /* 0 or 1 */
    ap_header_t headers[AP_HTTP1_MAX_HEADERS];
    size_t nheaders;

    /* Derived while parsing. */
    ap_body_kind_t body;
    uint64_t content_length;
    bool keep_alive;      /* per version default and Connection: close/keep-alive */
    bool expect_continue; /* Expect: 100-continue in HTTP/1.1 (ignored in 1.0, RFC 9110 10.1.1) */
    bool expect_other;    /* an Expect value other than 100-continue: the caller may answer 417 */
    bool is_connect;      /* method is exactly "CONNECT"; the target form is not checked here */
    size_t head_len;      /* bytes of the head including the final CRLFCRLF */
} ap_http1_req_t;

typedef struct ap_http1_err_s {
    int status;         /* 400, 431, 501 (unsupported Transfer-Encoding), 505 */
    const char *code;   /* stable: "bad_request", "head_too_large", ... */
    const char *detail; /* static human text */
} ap_http1_err_t;

/*
 * Parses a request head from buf[0..len). prev_len is how many bytes were examined by the
 * previous call on the same (grown) buffer, so a slowly arriving head is not rescanned from
 * the start for the end-of-head search; pass 0 the first time. It is only an optimisation: the
 * result is the same as with prev_len 0, provided the previous call returned AP_AGAIN.
 * Returns AP_OK (r filled, r->head_len set), AP_AGAIN (need more bytes: len is below max_head
 * and no end of head was found yet), or AP_ERR (err filled; r unspecified). Bytes that are
 * invalid anywhere in a head (see above) fail as soon as they arrive, without waiting for the
 * end of the head. Only buf[0..max_head) is examined: bytes beyond belong to the caller.
 * Up to 16 leading empty lines (CRLF) before the request line are skipped (RFC 9112 2.2).
 * Pointers in r (method, target, header names and values, also when empty) point into buf.
 */
ap_rc_t ap_http1_parse_request(const char *buf, size_t len, size_t prev_len, size_t max_head,
                               ap_http1_req_t *r, ap_http1_err_t *err);

/* Finds a header (case-insensitive name); NULL if absent. */
const ap_header_t *ap_http1_find(const ap_http1_req_t *r, const char *name);

/* A request target, split. Pointers point into the target. */
typedef struct ap_target_s {
    enum { AP_TARGET_ORIGIN, AP_TARGET_ABSOLUTE, AP_TARGET_AUTHORITY, AP_TARGET_ASTERISK } form;
    bool https;       /* absolute-form with https scheme */
    const char *host; /* without brackets for IPv6 literals */
    size_t host_len;
    int port;         /* explicit port, or the scheme default (80/443), 0 if none */
    const char *path; /* "/..." including the query; "/" (static) when absent in absolute-form */
    size_t path_len;
    /* Absolute-form with a query but no path ("http://h?q"): path is "?q", pointing into the
     * target, and the caller must prepend "/" (equivalently: path[0] != '/'). */
    bool path_needs_slash;
} ap_target_t;

/* Splits and validates the target for the method. With is_connect only authority-form
 * "host:port" (port required) is accepted. Otherwise: origin-form "/...", absolute-form
 * "http[s]://authority[/path][?query]" (scheme case-insensitive) and "*" (AP_TARGET_ASTERISK:
 * the caller checks that the method is OPTIONS). AP_ERR for: other schemes, userinfo, an empty
 * host, host characters other than letters, digits, '-', '.', '_' (so no percent-encoding),
 * hosts over 255 bytes, bracketed literals that are not IPv6 addresses (inet_pton; no zone
 * IDs), ports not 1..65535 or empty, a '#' anywhere, and any byte <= 0x20 or >= 0x7f. Hosts are
 * not lowercased. Asterisk and authority forms leave path NULL. */
ap_rc_t ap_http1_parse_target(const char *target, size_t len, bool is_connect, ap_target_t *t);

/* The path to forward for a parsed target, as a fresh string: "/" when there is none, a "/"
 * prepended when path_needs_slash. */
char *ap_http1_target_path(const ap_target_t *t);

/* The standard reason phrase for a status code ("OK", "Not Found", ...; "Unknown" otherwise). */
const char *ap_http1_reason(int status);

/* A hop-by-hop header as RFC 9110 7.6.1 lists them, plus Proxy-* (never forwarded). */
bool ap_http1_is_hop_by_hop(const char *name, size_t len);

/* --- Response heads (what an upstream answers) ---------------------------------------------- */

typedef enum {
    AP_RESP_LENGTH,  /* content_length bytes follow */
    AP_RESP_CHUNKED, /* chunked transfer coding */
    AP_RESP_CLOSE    /* the body ends when the upstream closes */
} ap_resp_body_t;

typedef struct ap_http1_resp_s {
    int minor_version; /* 0 or 1 */
    int status;        /* 100..999 */
    ap_resp_body_t body;
    uint64_t content_length;
    bool keep_alive; /* the connection may carry another request after this response */
    bool persistent; /* by version and Connection alone: what decides when there is no body */
    size_t head_len; /* bytes of the head including the empty line */
} ap_http1_resp_t;

typedef void (*ap_http1_header_cb)(void *ud, const ap_header_t *h);

/*
 * Parses a response head from buf[0..len) (RFC 9112 section 4 and 6.3). AP_AGAIN until the
 * empty line that ends the head has arrived (within max_head bytes); AP_OK with r filled and
 * cb called once per header line in order (values OWS-trimmed, pointers into buf); AP_ERR for
 * anything a proxy must not pass on: a malformed status line, control characters (bare CR,
 * NUL) anywhere, obs-fold, a header name that is not a token, an invalid or conflicting
 * Content-Length, or no end of head within max_head. Lines may end in CRLF or LF. The framing
 * is decided here, except that the caller knows when there is no body at all (HEAD, 1xx, 204,
 * 304). Transfer-Encoding overrides Content-Length, and a final coding other than chunked means
 * the body runs until the connection closes; either makes the connection not reusable.
 */
ap_rc_t ap_http1_parse_response(const char *buf, size_t len, size_t max_head, ap_http1_resp_t *r,
                                ap_http1_header_cb cb, void *ud);

/* One response header line without its line ending, checked as ap_http1_parse_response does
 * (token name, colon, no control characters, not a fold) and split into h (value trimmed).
 * For heads parsed elsewhere (libcurl's header callback), so both upstream engines accept the
 * same responses. */
bool ap_http1_response_field(const char *line, size_t len, ap_header_t *h);

#endif
