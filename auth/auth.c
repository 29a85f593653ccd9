/*
 * auth.c: the token cache (DESIGN.md section 4), one state machine per credential.
 *
 *   acquire: valid token -> AP_OK at once; fetch in flight -> wait (AP_AGAIN); backing off with
 *            no valid token -> AP_ERR + Retry-After; otherwise start a fetch and wait.
 *   fetch done: success replaces the token, arms the refresh-ahead timer at
 *            expiry - margin (margin = lifetime / 5, at most 60 s) and wakes every waiter;
 *            failure backs off exponentially (1 s doubling to 60 s, +-20 % jitter), keeps a
 *            still-valid token, and fails the waiters of that fetch.
 *   refresh tokens (telmai, oauth2): renew with the refresh token first; when the endpoint
 *            refuses it, fall back to the primary grant in the same cycle; a rotated refresh
 *            token replaces the old one.
 * Lifetime, in order: relative (expires_in/expires) -> absolute (ISO-8601 or epoch s/ms,
 * converted once through the wall clock) -> JWT exp -> default_ttl -> AP_FALLBACK_TTL_MS. All
 * deadlines live on the monotonic clock.
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "provider.h"
#include "token_json.h"

const char ap_err_token_fetch_failed[] = "token_fetch_failed";
const char ap_err_token_unavailable[] = "token_unavailable";

/* When a provider states no lifetime and the token is no JWT: refetch every 5 minutes rather
 * than trust it forever (the upstream's 401 also triggers a refetch). */
#define AP_FALLBACK_TTL_MS (300 * 1000)
#define AP_BACKOFF_MIN_MS 1000
#define AP_BACKOFF_MAX_MS 60000
#define AP_REFRESH_MARGIN_MAX_MS 60000

/* --- Tokens ---------------------------------------------------------------------------------- */

struct ap_token_s {
    int refcnt;
    char *value; /* secret */
    char *hname;
    char *hvalue; /* secret */
    char *line;   /* secret */
};

const char *
ap_token_header_name(const ap_token_t *t)
{
    return t->hname;
}

const char *
ap_token_header_value(const ap_token_t *t)
{
    return t->hvalue;
}

const char *
ap_token_header_line(const ap_token_t *t)
{
    return t->line;
}

ap_token_t *
ap_token_ref(ap_token_t *t)
{
    t->refcnt++;
    return t;
}

void
ap_token_unref(ap_token_t *t)
{
    if (t == NULL || --t->refcnt > 0)
        return;
    ap_free_secret(t->value);
    free(t->hname);
    ap_free_secret(t->hvalue);
    ap_free_secret(t->line);
    free(t);
}

/* Renders the injected header once per token: {token}, and {token_type} as "Bearer" when the
 * provider gave none or any casing of "bearer" (RFC 6750's scheme; many APIs reject "bearer"). */
static ap_token_t *
token_new(const ap_cred_conf_t *cc, const char *value, const char *type)
{
    ap_token_t *t = ap_xcalloc(1, sizeof(*t));
    t->refcnt = 1;
    t->value = ap_xstrdup(value);
    t->hname = ap_xstrdup(cc->inject_header ? cc->inject_header : "Authorization");
    const char *tmpl = cc->inject_value ? cc->inject_value : "{token_type} {token}";
    const char *tt = (type == NULL || strcasecmp(type, "bearer") == 0) ? "Bearer" : type;
    ap_buf_t b = {0};
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{token}", 7) == 0) {
            ap_buf_append(&b, value, strlen(value));
            p += 7;
        } else if (strncmp(p, "{token_type}", 12) == 0) {
            ap_buf_append(&b, tt, strlen(tt));
            p += 12;
        } else {
            ap_buf_append(&b, p, 1);
            p++;
        }
    }
    t->hvalue = b.data;
    t->line = ap_xasprintf("%s: %s", t->hname, t->hvalue);
    return t;
}

/* --- Credentials ---------------------------------------------------------------------------------
 */

struct ap_cred_s {
    int refcnt;
    const ap_auth_io_t *io;    /* borrowed: outlives every credential */
    ap_conf_t *conf;           /* owned ref: keeps cc alive */
    const ap_cred_conf_t *cc;  /* borrowed from conf */
    const ap_provider_t *prov; /* NULL for static */
    char **extra;              /* owned, NULL-terminated "Name: value" */

    ap_token_t *token;    /* owned ref or NULL */
    uint64_t deadline;    /* monotonic ms; UINT64_MAX = never */
    int64_t expires_wall; /* for display */
    char *refresh_token;  /* owned, secret */

    void *fetch; /* in-flight fetch handle */
    bool fetch_with_refresh;
    bool fetch_background;
    ap_list_t waiters;
    uint64_t nwaiters;
    void *timer; /* refresh-ahead or retry after backoff */

    uint64_t backoff_until;
    uint32_t consecutive_failures;
    uint64_t fetches, failures, refreshes;
    int64_t last_refresh_wall;
    const char *last_error;
    char last_error_detail[256];
};

struct ap_auth_s {
    const ap_auth_io_t *io;
    ap_cred_t **creds; /* owned refs */
    size_t n;
};

static void start_fetch(ap_cred_t *c, bool background);

static uint64_t
now(const ap_cred_t *c)
{
    return c->io->now_mono_ms(c->io->ctx);
}

static bool
valid(const ap_cred_t *c, uint64_t t)
{
    return c->token != NULL && t < c->deadline;
}

static void
drop_token(ap_cred_t *c)
{
    ap_token_unref(c->token);
    c->token = NULL;
    c->deadline = 0;
    c->expires_wall = 0;
}

static void
arm(ap_cred_t *c, uint64_t at)
{
    uint64_t t = now(c);
    c->io->timer_arm(c->io->ctx, c->timer, at > t ? at - t : 0);
}

static void
wake(ap_cred_t *c, ap_token_t *tok, const char *reason, const char *detail, uint32_t retry)
{
    ap_list_t list;
    /* Detach first: a callback may cancel other waiters or acquire again. */
    ap_list_take(&list, &c->waiters);
    c->nwaiters = 0;
    while (!ap_list_empty(&list)) {
        ap_token_waiter_t *w = ap_container_of(list.next, ap_token_waiter_t, link);
        ap_list_remove(&w->link);
        if (tok != NULL) {
            w->cb(w, ap_token_ref(tok));
        } else {
            w->reason = reason;
            snprintf(w->detail, sizeof(w->detail), "%s", detail);
            w->retry_after_s = retry;
            w->cb(w, NULL);
        }
    }
}

static void
on_timer(void *ud)
{
    ap_cred_t *c = ud;
    if (c->fetch == NULL && c->prov != NULL)
        start_fetch(c, true);
}

static uint64_t
lifetime_of(ap_cred_t *c, const ap_tres_t *r, int64_t *wall_exp)
{
    int64_t wall = c->io->now_wall_ms(c->io->ctx);
    int64_t life;
    int64_t jwt;
    if (r->has_lifetime)
        life = r->lifetime_ms;
    else if (r->has_abs)
        life = r->abs_wall_ms - wall;
    else if (ap_jwt_exp_ms(r->token, &jwt) == AP_OK)
        life = jwt - wall;
    else if (c->cc->default_ttl_s > 0)
        life = c->cc->default_ttl_s * 1000;
    else
        life = AP_FALLBACK_TTL_MS;
    *wall_exp = wall + life;
    return life > 0 ? (uint64_t)life : 0;
}

static void
fail(ap_cred_t *c, const char *detail)
{
    uint64_t t = now(c);
    c->failures++;
    c->consecutive_failures++;
    uint64_t b = AP_BACKOFF_MIN_MS;
    for (uint32_t i = 1; i < c->consecutive_failures && b < AP_BACKOFF_MAX_MS; i++)
        b *= 2;
    if (b > AP_BACKOFF_MAX_MS)
        b = AP_BACKOFF_MAX_MS;
    /* +-20 % jitter so a fleet of proxies does not retry in lockstep. */
    uint32_t r = c->io->random_u32(c->io->ctx);
    int64_t jitter = (int64_t)(r % (uint32_t)(b * 2 / 5 + 1)) - (int64_t)(b / 5);
    b = (uint64_t)((int64_t)b + jitter);
    c->backoff_until = t + b;
    c->last_error = ap_err_token_fetch_failed;
    snprintf(c->last_error_detail, sizeof(c->last_error_detail), "%s", detail);
    ap_log_warn("%s (attempt %u; retrying in %llu ms%s)", detail, c->consecutive_failures,
                (unsigned long long)b, valid(c, t) ? "; the current token stays in use" : "");
    if (!valid(c, t))
        drop_token(c);
    /* Keep trying in the background while a token is still valid (refresh) or when the
     * credential must be ready (prefetch); otherwise the next request triggers the retry. */
    if (valid(c, t) || c->cc->prefetch)
        arm(c, c->backoff_until);
    uint32_t retry = (uint32_t)((b + 999) / 1000);
    wake(c, NULL, ap_err_token_fetch_failed, detail, retry ? retry : 1);
}

static void
on_fetch_done(void *ud, const ap_fetch_res_t *res)
{
    ap_cred_t *c = ud;
    bool with_refresh = c->fetch_with_refresh;
    c->fetch = NULL;
    ap_tres_t r;
    memset(&r, 0, sizeof(r));
    if (c->prov->parse(c->cc, res, &r) != AP_OK) {
        if (with_refresh && res->status >= 400 && res->status < 500) {
            /* The refresh token was refused: forget it and use the primary grant now. */
            ap_log_info("credential \"%s\": refresh token refused (HTTP %d); using the primary "
                        "grant",
                        c->cc->name, res->status);
            ap_free_secret(c->refresh_token);
            c->refresh_token = NULL;
            ap_tres_free(&r);
            start_fetch(c, c->fetch_background);
            if (c->fetch != NULL)
                return;
            fail(c, "token endpoint could not be reached");
            return;
        }
        fail(c, r.detail);
        ap_tres_free(&r);
        return;
    }
    int64_t wall_exp;
    uint64_t life = lifetime_of(c, &r, &wall_exp);
    if (life == 0) {
        char d[256];
        snprintf(d, sizeof(d),
                 "credential \"%s\": the token endpoint issued a token that has "
                 "already expired",
                 c->cc->name);
        ap_tres_free(&r);
        fail(c, d);
        return;
    }
    uint64_t t = now(c);
    drop_token(c);
    c->token = token_new(c->cc, r.token, r.token_type);
    c->deadline = t + life;
    c->expires_wall = wall_exp;
    if (r.refresh_token != NULL) {
        ap_free_secret(c->refresh_token);
        c->refresh_token = r.refresh_token;
        r.refresh_token = NULL;
    }
    ap_tres_free(&r);
    c->consecutive_failures = 0;
    c->backoff_until = 0;
    c->last_error = NULL;
    c->last_error_detail[0] = '\0';
    c->last_refresh_wall = c->io->now_wall_ms(c->io->ctx);
    uint64_t margin = life / 5;
    if (margin > AP_REFRESH_MARGIN_MAX_MS)
        margin = AP_REFRESH_MARGIN_MAX_MS;
    arm(c, c->deadline - margin);
    ap_log_info("credential \"%s\": token obtained, valid for %llu s", c->cc->name,
                (unsigned long long)(life / 1000));
    ap_token_t *tok = ap_token_ref(c->token);
    wake(c, tok, NULL, NULL, 0);
    ap_token_unref(tok);
}

static void
start_fetch(ap_cred_t *c, bool background)
{
    if (c->fetch != NULL || c->prov == NULL)
        return;
    ap_treq_t q;
    memset(&q, 0, sizeof(q));
    c->fetch_with_refresh = c->prov->uses_refresh && c->refresh_token != NULL;
    c->fetch_background = background;
    c->prov->build(c->cc, c->fetch_with_refresh ? c->refresh_token : NULL, &q);
    const char *hdrs[AP_ARRAY_LEN(q.headers) + 1];
    for (size_t i = 0; i < q.nheaders; i++)
        hdrs[i] = q.headers[i];
    hdrs[q.nheaders] = NULL;
    ap_fetch_req_t req = {
        .method = q.method,
        .url = q.url.data,
        .headers = hdrs,
        .body = q.body.data,
        .body_len = q.body.len,
        .basic_user = q.basic_user,
        .basic_pass = q.basic_pass,
        .timeout_ms = c->cc->timeout_ms > 0 ? c->cc->timeout_ms : 10000,
    };
    c->fetches++;
    if (background && valid(c, now(c)))
        c->refreshes++;
    ap_log_debug("credential \"%s\": requesting a token (%s%s)", c->cc->name,
                 c->fetch_with_refresh ? "refresh grant" : "primary grant",
                 background ? ", background" : "");
    c->io->timer_disarm(c->io->ctx, c->timer);
    c->fetch = c->io->fetch_start(c->io->ctx, &req, on_fetch_done, c);
    ap_treq_free(&q);
}

ap_rc_t
ap_cred_acquire(ap_cred_t *c, ap_token_waiter_t *w, ap_token_t **out)
{
    uint64_t t = now(c);
    if (valid(c, t)) {
        *out = ap_token_ref(c->token);
        return AP_OK;
    }
    if (c->token != NULL)
        drop_token(c); /* expired: never injected */
    if (c->prov == NULL) {
        w->reason = ap_err_token_unavailable;
        snprintf(w->detail, sizeof(w->detail), "credential \"%s\" has no token", c->cc->name);
        w->retry_after_s = 60;
        return AP_ERR;
    }
    if (c->fetch == NULL) {
        if (t < c->backoff_until) {
            uint64_t left = c->backoff_until - t;
            w->reason = ap_err_token_unavailable;
            snprintf(w->detail, sizeof(w->detail), "%s",
                     c->last_error_detail[0] ? c->last_error_detail : "token endpoint failing");
            w->retry_after_s = (uint32_t)((left + 999) / 1000);
            return AP_ERR;
        }
        start_fetch(c, false);
        if (c->fetch == NULL) {
            char d[256];
            snprintf(d, sizeof(d), "credential \"%s\": could not start the token request",
                     c->cc->name);
            fail(c, d);
            w->reason = ap_err_token_unavailable;
            snprintf(w->detail, sizeof(w->detail), "%s", d);
            w->retry_after_s = 1;
            return AP_ERR;
        }
    }
    ap_list_insert_tail(&c->waiters, &w->link);
    c->nwaiters++;
    return AP_AGAIN;
}

void
ap_cred_cancel(ap_token_waiter_t *w)
{
    /* The count is advisory (metrics); the list is the truth. */
    if (w->link.next != NULL && ap_list_is_linked(&w->link))
        ap_list_remove(&w->link);
}

void
ap_cred_invalidate(ap_cred_t *c, const ap_token_t *t)
{
    if (c->token != NULL && c->token == t && c->prov != NULL) {
        ap_log_info("credential \"%s\": token rejected by the API; dropping it", c->cc->name);
        drop_token(c);
        c->io->timer_disarm(c->io->ctx, c->timer);
    }
}

ap_rc_t
ap_cred_refresh(ap_cred_t *c)
{
    if (c->prov == NULL)
        return AP_OK;
    c->backoff_until = 0;
    start_fetch(c, true);
    return c->fetch != NULL ? AP_OK : AP_ERR;
}

const char *
ap_cred_name(const ap_cred_t *c)
{
    return c->cc->name;
}

const char *const *
ap_cred_extra_headers(const ap_cred_t *c)
{
    return (const char *const *)c->extra;
}

ap_cred_t *
ap_cred_ref(ap_cred_t *c)
{
    c->refcnt++;
    return c;
}

static void
cred_free(ap_cred_t *c)
{
    if (c->fetch != NULL)
        c->io->fetch_cancel(c->io->ctx, c->fetch);
    c->fetch = NULL;
    char d[128];
    snprintf(d, sizeof(d), "credential \"%s\" was removed", c->cc->name);
    wake(c, NULL, ap_err_token_unavailable, d, 1);
    c->io->timer_free(c->io->ctx, c->timer);
    drop_token(c);
    ap_free_secret(c->refresh_token);
    for (char **e = c->extra; e && *e; e++)
        ap_free_secret(*e);
    free(c->extra);
    ap_conf_unref(c->conf);
    free(c);
}

void
ap_cred_unref(ap_cred_t *c)
{
    if (c != NULL && --c->refcnt == 0)
        cred_free(c);
}

void
ap_cred_stats(const ap_cred_t *c, ap_cred_stats_t *st)
{
    uint64_t t = now(c);
    bool v = valid(c, t);
    memset(st, 0, sizeof(*st));
    if (c->fetch != NULL)
        st->state = v ? "refreshing" : "fetching";
    else if (v)
        st->state = "valid";
    else if (t < c->backoff_until)
        st->state = "backoff";
    else
        st->state = "empty";
    st->has_token = v;
    if (!v)
        st->expires_in_ms = -1;
    else if (c->deadline == UINT64_MAX)
        st->expires_in_ms = INT64_MAX;
    else
        st->expires_in_ms = (int64_t)(c->deadline - t);
    st->expires_at_wall_ms = v && c->deadline != UINT64_MAX ? c->expires_wall : 0;
    st->last_refresh_wall_ms = c->last_refresh_wall;
    st->last_error = c->last_error;
    snprintf(st->last_error_detail, sizeof(st->last_error_detail), "%s", c->last_error_detail);
    st->fetches = c->fetches;
    st->failures = c->failures;
    st->refreshes = c->refreshes;
    st->consecutive_failures = c->consecutive_failures;
    uint64_t n = 0;
    for (const ap_list_t *l = c->waiters.next; l != &c->waiters; l = l->next)
        n++;
    st->waiters = n;
}

static ap_cred_t *
cred_new(const ap_auth_io_t *io, ap_conf_t *conf, const ap_cred_conf_t *cc, char *err,
         size_t errlen)
{
    const ap_provider_t *prov = NULL;
    if (strcmp(cc->provider, "static") != 0) {
        prov = ap_provider_find(cc->provider);
        if (prov == NULL) {
            snprintf(err, errlen, "credential \"%s\": unknown provider \"%s\"", cc->name,
                     cc->provider);
            return NULL;
        }
    }
    ap_cred_t *c = ap_xcalloc(1, sizeof(*c));
    c->refcnt = 1;
    c->io = io;
    c->conf = ap_conf_ref(conf);
    c->cc = cc;
    c->prov = prov;
    ap_list_init(&c->waiters);
    c->timer = io->timer_new(io->ctx, on_timer, c);
    c->extra = ap_xcalloc(cc->headers.n + 1, sizeof(char *));
    for (size_t i = 0; i < cc->headers.n; i++)
        c->extra[i] = ap_xasprintf("%s: %s", cc->headers.items[i].name, cc->headers.items[i].value);
    if (prov == NULL) {
        const char *tok = ap_cred_conf_get(cc, "token");
        c->token = token_new(cc, tok ? tok : "", NULL);
        c->deadline = UINT64_MAX;
        c->last_refresh_wall = io->now_wall_ms(io->ctx);
    }
    return c;
}

/* --- The set ------------------------------------------------------------------------------------
 */

static ap_auth_t *
build(const ap_conf_t *conf_c, const ap_auth_io_t *io, ap_auth_t *old, char *err, size_t errlen)
{
    ap_conf_t *conf = (ap_conf_t *)conf_c; /* refcount only */
    ap_auth_t *a = ap_xcalloc(1, sizeof(*a));
    a->io = io;
    a->creds = ap_xcalloc(conf->ncreds ? conf->ncreds : 1, sizeof(ap_cred_t *));
    for (size_t i = 0; i < conf->ncreds; i++) {
        const ap_cred_conf_t *cc = &conf->creds[i];
        ap_cred_t *keep = NULL;
        for (size_t k = 0; old && k < old->n; k++) {
            ap_cred_t *o = old->creds[k];
            if (strcmp(o->cc->name, cc->name) == 0 && strcmp(o->cc->digest, cc->digest) == 0)
                keep = o;
        }
        if (keep != NULL) {
            a->creds[a->n++] = ap_cred_ref(keep);
            continue;
        }
        ap_cred_t *c = cred_new(io, conf, cc, err, errlen);
        if (c == NULL) {
            ap_auth_free(a);
            return NULL;
        }
        a->creds[a->n++] = c;
    }
    for (size_t i = 0; i < a->n; i++)
        if (a->creds[i]->cc->prefetch && a->creds[i]->prov != NULL &&
            !valid(a->creds[i], now(a->creds[i])))
            start_fetch(a->creds[i], false);
    return a;
}

ap_auth_t *
ap_auth_new(const ap_conf_t *conf, const ap_auth_io_t *io, char *err, size_t errlen)
{
    return build(conf, io, NULL, err, errlen);
}

ap_auth_t *
ap_auth_reload(ap_auth_t *old, const ap_conf_t *conf, char *err, size_t errlen)
{
    return build(conf, old->io, old, err, errlen);
}

void
ap_auth_free(ap_auth_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->n; i++)
        ap_cred_unref(a->creds[i]);
    free(a->creds);
    free(a);
}

ap_cred_t *
ap_auth_find(ap_auth_t *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->creds[i]->cc->name, name) == 0)
            return a->creds[i];
    return NULL;
}

size_t
ap_auth_count(const ap_auth_t *a)
{
    return a->n;
}

ap_cred_t *
ap_auth_at(ap_auth_t *a, size_t i)
{
    return i < a->n ? a->creds[i] : NULL;
}

bool
ap_auth_ready(const ap_auth_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        const ap_cred_t *c = a->creds[i];
        if (c->cc->prefetch && !valid(c, now(c)))
            return false;
    }
    return true;
}
