/*
 * auth.h: credentials, tokens and the token cache (DESIGN.md section 4).
 *
 * ap_auth_t holds one ap_cred_t per configured credential. A request that needs a token calls
 * ap_cred_acquire with a waiter embedded in itself:
 *   - AP_OK: a valid token is returned at once, with a reference the caller must drop;
 *   - AP_AGAIN: a fetch is (now) in flight; waiter->cb will be called exactly once, later, unless
 *     ap_cred_cancel(waiter) is called first (do that when the client goes away);
 *   - AP_ERR: no valid token and the credential is backing off; waiter->reason and
 *     waiter->retry_after_s say why and when to come back (-> 503 with Retry-After).
 * Single flight: however many waiters, one fetch per credential at a time. Refresh ahead of
 * expiry runs in the background while acquire keeps returning the current token. auth/ never
 * blocks and never owns the loop: it works through ap_auth_io_t (fetch.h).
 */
#ifndef AP_AUTH_H
#define AP_AUTH_H

#include "ap_base.h"
#include "conf.h"
#include "fetch.h"

typedef struct ap_auth_s ap_auth_t;
typedef struct ap_cred_s ap_cred_t;
typedef struct ap_token_s ap_token_t;

/* --- Tokens: immutable, refcounted, wiped on free ------------------------------------------ */

/* The pre-rendered injected header, e.g. name "Authorization", value "Bearer abc". */
const char *ap_token_header_name(const ap_token_t *t);
const char *ap_token_header_value(const ap_token_t *t);
/* "Name: value", ready for a curl_slist. */
const char *ap_token_header_line(const ap_token_t *t);
ap_token_t *ap_token_ref(ap_token_t *t);
void ap_token_unref(ap_token_t *t); /* NULL-safe */

/* --- Waiters ------------------------------------------------------------------------------- */

typedef struct ap_token_waiter_s ap_token_waiter_t;
/* tok: a new reference the callee owns, or NULL on failure (then reason/retry_after_s set). */
typedef void (*ap_token_cb)(ap_token_waiter_t *w, ap_token_t *tok);

struct ap_token_waiter_s {
    ap_list_t link;         /* private: on the credential's waiter list while pending */
    ap_token_cb cb;         /* set by the caller before acquire */
    const char *reason;     /* out, on failure: static stable code, e.g. "token_fetch_failed" */
    char detail[256];       /* out, on failure: human text naming the credential, no secrets */
    uint32_t retry_after_s; /* out, on failure */
};

/* Stable failure codes (compare by pointer or strcmp). */
extern const char ap_err_token_fetch_failed[]; /* the fetch this waiter waited on failed: 502 */
extern const char ap_err_token_unavailable[];  /* backing off, no valid token: 503 */

/* --- The set of credentials ---------------------------------------------------------------- */

/* Builds every credential of conf. The io must outlive the returned object. Static credentials
 * are ready at once; prefetch credentials start fetching immediately. NULL + err on a config
 * auth/ cannot use (conf/ validated already, so this is for internal consistency). */
ap_auth_t *ap_auth_new(const ap_conf_t *conf, const ap_auth_io_t *io, char *err, size_t errlen);

/* Builds the set for a new config, moving over every credential of `old` whose name and digest
 * are unchanged (tokens, in-flight fetch and waiters kept). `old` keeps the others until freed;
 * both objects stay valid. */
ap_auth_t *ap_auth_reload(ap_auth_t *old, const ap_conf_t *conf, char *err, size_t errlen);

/* Frees the set; pending waiters of credentials no one else references are called with
 * failure first. NULL-safe. */
void ap_auth_free(ap_auth_t *a);

/* NULL when no such credential. The pointer is borrowed from `a`; take ap_cred_ref to keep it
 * across a reload. */
ap_cred_t *ap_auth_find(ap_auth_t *a, const char *name);
size_t ap_auth_count(const ap_auth_t *a);
ap_cred_t *ap_auth_at(ap_auth_t *a, size_t i);

/* Every credential with prefetch holds a valid token. */
bool ap_auth_ready(const ap_auth_t *a);

ap_cred_t *ap_cred_ref(ap_cred_t *c);
void ap_cred_unref(ap_cred_t *c);
const char *ap_cred_name(const ap_cred_t *c);
/* Extra fixed headers for API calls ("Name: value" lines), NULL-terminated; may be empty. */
const char *const *ap_cred_extra_headers(const ap_cred_t *c);

ap_rc_t ap_cred_acquire(ap_cred_t *c, ap_token_waiter_t *w, ap_token_t **out);
/* Removes a pending waiter; no-op if it is not pending. Its callback will not run. */
void ap_cred_cancel(ap_token_waiter_t *w);

/* The API answered 401 to `t`: drop it if it is still the current token, so the next acquire
 * fetches a new one (single flight as usual). */
void ap_cred_invalidate(ap_cred_t *c, const ap_token_t *t);

/* Start a refresh now (admin endpoint). AP_OK if started or already in flight. */
ap_rc_t ap_cred_refresh(ap_cred_t *c);

/* --- Observability (no secrets) ------------------------------------------------------------ */

typedef struct ap_cred_stats_s {
    const char *state; /* "empty", "fetching", "valid", "refreshing", "backoff" */
    bool has_token;
    int64_t expires_in_ms; /* of the current token; <0 if expired or none; INT64_MAX if never */
    int64_t expires_at_wall_ms;   /* 0 if none or never */
    int64_t last_refresh_wall_ms; /* 0 if never */
    const char *last_error;       /* static code or NULL */
    char last_error_detail[256];
    uint64_t fetches;   /* token requests sent */
    uint64_t failures;  /* failed fetches */
    uint64_t refreshes; /* background refreshes ahead of expiry */
    uint32_t consecutive_failures;
    uint64_t waiters; /* currently waiting requests */
} ap_cred_stats_t;

void ap_cred_stats(const ap_cred_t *c, ap_cred_stats_t *st);

#endif
