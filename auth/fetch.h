/*
 * fetch.h: what auth/ needs from the outside world, as an interface auth/ defines and proxy/
 * implements (over the shared curl multi handle and libevent timers). Tests implement it with a
 * fake: scripted responses, a manual clock and manual timers.
 *
 * Contract: nothing here may call back synchronously from inside the call that started it
 * (start() never calls `done` before returning; timer_arm never fires inline).
 */
#ifndef AP_FETCH_H
#define AP_FETCH_H

#include "ap_base.h"

typedef struct ap_fetch_req_s {
    const char *method;         /* "GET" / "POST" */
    const char *url;            /* full URL, query string included */
    const char *const *headers; /* NULL-terminated "Name: value" lines; may hold secrets */
    const char *body;           /* may be NULL; may hold secrets */
    size_t body_len;
    const char *basic_user; /* HTTP Basic auth when non-NULL (already RFC 6749 2.3.1 encoded) */
    const char *basic_pass;
    int64_t timeout_ms; /* whole-transfer timeout */
} ap_fetch_req_t;

typedef struct ap_fetch_res_s {
    int status;        /* HTTP status, 0 when the transfer failed */
    const char *error; /* transport error text (no secrets) when status == 0 */
    const char *body;  /* response body, NUL-terminated, capped at AP_MAX_TOKEN_BODY */
    size_t body_len;
    bool truncated;           /* body exceeded the cap */
    const char *content_type; /* or NULL */
} ap_fetch_res_t;

/* Cap on token endpoint bodies: a token response is a few KiB; anything larger is an error page
 * or an attack. */
#define AP_MAX_TOKEN_BODY (256 * 1024)

/* Called exactly once per started fetch unless cancelled. `res` is valid only during the call. */
typedef void (*ap_fetch_done_cb)(void *ud, const ap_fetch_res_t *res);
typedef void (*ap_timer_cb)(void *ud);

typedef struct ap_auth_io_s {
    void *ctx;
    /* Start a request. The request and its strings may be freed once start returns. Returns an
     * opaque handle for cancel, or NULL on immediate failure (then `done` is never called). */
    void *(*fetch_start)(void *ctx, const ap_fetch_req_t *req, ap_fetch_done_cb done, void *ud);
    /* Cancel a started fetch; `done` will not be called. */
    void (*fetch_cancel)(void *ctx, void *handle);

    /* One-shot timers. */
    void *(*timer_new)(void *ctx, ap_timer_cb cb, void *ud);
    void (*timer_arm)(void *ctx, void *timer, uint64_t after_ms); /* re-arming replaces */
    void (*timer_disarm)(void *ctx, void *timer);
    void (*timer_free)(void *ctx, void *timer);

    uint64_t (*now_mono_ms)(void *ctx); /* monotonic: all expiry arithmetic */
    int64_t (*now_wall_ms)(void *ctx);  /* wall clock: only to convert absolute expiry times */
    uint32_t (*random_u32)(void *ctx);  /* jitter */
} ap_auth_io_t;

#endif
