/*
 * http1.h: a strict, incremental HTTP/1.1 request-head parser (RFC 9110/9112). Pure functions
 * over bytes: no I/O, no allocation, no libevent. Unit-tested and fuzzed (tests/fuzz).
 *
 * Strictness (DESIGN.md section 7): anything ambiguous is an error, decided here before a byte is
 * sent upstream: Content-Length together with Transfer-Encoding, duplicate or invalid
 * Content-Length, Transfer-Encoding other than exactly "chunked" (case-insensitive) as the
 * final coding, obs-fold, bare CR, bare LF in the head, control characters or spaces in the
 * target, invalid token characters in method or header names, whitespace before a colon,
 * HTTP versions other than 1.0/1.1, a head larger than max_head (-> 431), more headers than
 * AP_HTTP1_MAX_HEADERS (-> 431).
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
    bool expect_continue; /* Expect: 100-continue */
    bool is_connect;
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
 * the start for the end-of-head search; pass 0 the first time.
 * Returns AP_OK (r filled, r->head_len set), AP_AGAIN (need more bytes: also returned when len
 * is below max_head and no end of head was found yet), or AP_ERR (err filled).
 * Leading empty lines (CRLF) before the request line are skipped, as RFC 9112 2.2 allows.
 * Pointers in r point into buf.
 */
ap_rc_t ap_http1_parse_request(const char *buf, size_t len, size_t prev_len, size_t max_head,
                               ap_http1_req_t *r, ap_http1_err_t *err);

/* Finds a header (case-insensitive name); NULL if absent. */
const ap_header_t *ap_http1_find(const ap_http1_req_t *r, const char *name);

/* A request target, split. Pointers point into the target. */
typedef struct ap_target_s {
    enum { AP_TARGET_ORIGIN, AP_TARGET_ABSOLUTE, AP_TARGET_AUTHORITY, AP_TARGET_ASTERISK } form;
    bool https;          /* absolute-form with https scheme */
    const char *host;    /* without brackets for IPv6 literals */
    size_t host_len;
    int port;            /* explicit port, or the scheme default (80/443), 0 if none */
    const char *path;    /* "/..." including the query; "/" when absent in absolute-form */
    size_t path_len;
} ap_target_t;

/* Splits and validates the target for the method (authority-form only with CONNECT, asterisk
 * only with OPTIONS). Schemes other than http/https, userinfo, bad ports (not 1..65535) and
 * bad host characters are AP_ERR. */
ap_rc_t ap_http1_parse_target(const char *target, size_t len, bool is_connect, ap_target_t *t);

/* The standard reason phrase for a status code ("OK", "Not Found", ...; "Unknown" otherwise). */
const char *ap_http1_reason(int status);

/* A hop-by-hop header as RFC 9110 7.6.1 lists them, plus Proxy-* (never forwarded). */
bool ap_http1_is_hop_by_hop(const char *name, size_t len);

#endif
