/*
 * provider.h: what differs between token providers, as data and two functions each: how to
 * build the token request and where the answer is. The cache (auth.c) is the same for all.
 */
#ifndef AP_PROVIDER_H
#define AP_PROVIDER_H

#include "ap_base.h"
#include "conf.h"
#include "fetch.h"

/* A token request being built. Every buffer may hold secrets: ap_treq_free wipes them. */
typedef struct ap_treq_s {
    const char *method;
    ap_buf_t url;
    char *headers[16]; /* "Name: value", owned */
    size_t nheaders;
    ap_buf_t body;
    char *basic_user; /* already form-encoded (RFC 6749 2.3.1) */
    char *basic_pass;
} ap_treq_t;

void ap_treq_header(ap_treq_t *r, const char *name, const char *value);
void ap_treq_free(ap_treq_t *r);

/* What a response yielded. */
typedef struct ap_tres_s {
    char *token;         /* owned, secret */
    char *token_type;    /* owned or NULL */
    char *refresh_token; /* owned, secret, or NULL */
    bool has_lifetime;   /* relative seconds given */
    int64_t lifetime_ms;
    bool has_abs; /* absolute expiry given */
    int64_t abs_wall_ms;
    char detail[256]; /* on failure: what was wrong, no secrets */
} ap_tres_t;

void ap_tres_free(ap_tres_t *t);

typedef struct ap_provider_s {
    const char *name;
    /* refresh: a refresh token to renew with, or NULL for the primary grant. */
    void (*build)(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *out);
    ap_rc_t (*parse)(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out);
    bool uses_refresh; /* renews with a refresh token when one was issued */
} ap_provider_t;

/* NULL for unknown names and for "static" (no token endpoint). */
const ap_provider_t *ap_provider_find(const char *name);

#endif
