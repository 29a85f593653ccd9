/*
 * test_auth.c: the token cache (auth/auth.c) against a fake ap_auth_io_t: a manual clock,
 * manual timers and token requests the test answers by hand. Every rule of DESIGN.md section 4
 * that does not need a network: single flight, refresh ahead of expiry, a valid token serving
 * through an outage, never an expired token, exponential backoff with jitter, cancelled waiters,
 * invalidation after a 401, refresh-token rotation and fallback, reload keeping tokens, and
 * freeing with requests still waiting.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "conf.h"
#include "log.h"

/* --- The fake world ------------------------------------------------------------------------ */

typedef struct {
    bool live;
    ap_fetch_done_cb done;
    void *ud;
    char *method, *url, *body, *basic_user, *basic_pass;
} fake_fetch_t;

typedef struct {
    bool used, armed;
    uint64_t at;
    ap_timer_cb cb;
    void *ud;
} fake_timer_t;

static struct {
    uint64_t mono;
    int64_t wall;
    uint32_t rnd;
    fake_fetch_t f[64];
    size_t nf;
    size_t cancelled;
    fake_timer_t t[16];
} W;

static void *
f_start(void *ctx, const ap_fetch_req_t *req, ap_fetch_done_cb done, void *ud)
{
    (void)ctx;
    assert_true(W.nf < AP_ARRAY_LEN(W.f));
    fake_fetch_t *f = &W.f[W.nf++];
    f->live = true;
    f->done = done;
    f->ud = ud;
    f->method = ap_xstrdup(req->method);
    f->url = ap_xstrdup(req->url);
    f->body = req->body ? ap_xstrndup(req->body, req->body_len) : ap_xstrdup("");
    f->basic_user = req->basic_user ? ap_xstrdup(req->basic_user) : NULL;
    f->basic_pass = req->basic_pass ? ap_xstrdup(req->basic_pass) : NULL;
    return f;
}

static void
f_cancel(void *ctx, void *h)
{
    (void)ctx;
    fake_fetch_t *f = h;
    assert_true(f->live);
    f->live = false;
    W.cancelled++;
}

static void *
t_new(void *ctx, ap_timer_cb cb, void *ud)
{
    (void)ctx;
    for (size_t i = 0; i < AP_ARRAY_LEN(W.t); i++)
        if (!W.t[i].used) {
            W.t[i] = (fake_timer_t){.used = true, .cb = cb, .ud = ud};
            return &W.t[i];
        }
    fail_msg("out of fake timers");
    return NULL;
}

static void
t_arm(void *ctx, void *t, uint64_t after)
{
    (void)ctx;
    ((fake_timer_t *)t)->armed = true;
    ((fake_timer_t *)t)->at = W.mono + after;
}

static void
t_disarm(void *ctx, void *t)
{
    (void)ctx;
    ((fake_timer_t *)t)->armed = false;
}

static void
t_free(void *ctx, void *t)
{
    (void)ctx;
    ((fake_timer_t *)t)->used = false;
}

static uint64_t
now_mono(void *ctx)
{
    (void)ctx;
    return W.mono;
}

static int64_t
now_wall(void *ctx)
{
    (void)ctx;
    return W.wall;
}

static uint32_t
rnd(void *ctx)
{
    (void)ctx;
    return W.rnd;
}

static const ap_auth_io_t IO = {NULL,     f_start, f_cancel, t_new,    t_arm,
                                t_disarm, t_free,  now_mono, now_wall, rnd};

/* Moves the clock forward by ms, firing due timers in order. */
static void
advance(uint64_t ms)
{
    uint64_t end = W.mono + ms;
    for (;;) {
        fake_timer_t *next = NULL;
        for (size_t i = 0; i < AP_ARRAY_LEN(W.t); i++)
            if (W.t[i].used && W.t[i].armed && W.t[i].at <= end &&
                (next == NULL || W.t[i].at < next->at))
                next = &W.t[i];
        if (next == NULL)
            break;
        if (next->at > W.mono)
            W.mono = next->at;
        next->armed = false;
        next->cb(next->ud);
    }
    W.mono = end;
}

static size_t
live_fetches(void)
{
    size_t n = 0;
    for (size_t i = 0; i < W.nf; i++)
        n += W.f[i].live;
    return n;
}

static fake_fetch_t *
last_fetch(void)
{
    assert_true(W.nf > 0);
    return &W.f[W.nf - 1];
}

/* Answers the newest token request. */
static void
answer(int status, const char *body)
{
    fake_fetch_t *f = last_fetch();
    assert_true(f->live);
    f->live = false;
    ap_fetch_res_t res = {.status = status,
                          .error = status == 0 ? "connection refused" : NULL,
                          .body = body,
                          .body_len = strlen(body),
                          .content_type = "application/json"};
    f->done(f->ud, &res);
}

static char tokbody[512];

static const char *
token_json(const char *tok, int expires_in, const char *refresh)
{
    snprintf(tokbody, sizeof(tokbody),
             "{\"access_token\":\"%s\",\"token_type\":\"bearer\",\"expires_in\":%d%s%s%s}", tok,
             expires_in, refresh ? ",\"refresh_token\":\"" : "", refresh ? refresh : "",
             refresh ? "\"" : "");
    return tokbody;
}

/* Waiters that record what they got. */
typedef struct {
    ap_token_waiter_t w;
    int called;
    char value[128];
    const char *reason;
} rec_t;

static void
rec_cb(ap_token_waiter_t *w, ap_token_t *tok)
{
    rec_t *r = (rec_t *)w;
    r->called++;
    if (tok != NULL) {
        snprintf(r->value, sizeof(r->value), "%s", ap_token_header_value(tok));
        ap_token_unref(tok);
    } else {
        r->reason = w->reason;
    }
}

static void
rec_init(rec_t *r)
{
    memset(r, 0, sizeof(*r));
    r->w.cb = rec_cb;
}

/* AP_OK and the injected value, or fails the test. */
static void
assert_token(ap_cred_t *c, const char *value)
{
    rec_t r;
    rec_init(&r);
    ap_token_t *t = NULL;
    ap_rc_t rc = ap_cred_acquire(c, &r.w, &t);
    if (rc != AP_OK)
        fail_msg("expected a token \"%s\", acquire returned %d", value, (int)rc);
    assert_string_equal(ap_token_header_value(t), value);
    ap_token_unref(t);
}

/* Starts a wait on a credential without a valid token: AP_AGAIN, or fails the test. */
static void
acquire_waiting(ap_cred_t *c, rec_t *r)
{
    rec_init(r);
    ap_token_t *t = NULL;
    assert_int_equal(ap_cred_acquire(c, &r->w, &t), AP_AGAIN);
    assert_null(t);
}

static char errbuf[8192];
static ap_conf_t *conf;
static ap_auth_t *auth;

#define OAUTH2_CONF(extra)                                                                         \
    "{\"listen\":\"127.0.0.1:0\",\"credentials\":{\"o\":{\"provider\":\"oauth2\","                 \
    "\"token_url\":\"https://issuer.example/token\",\"client_id\":\"the-id\","                     \
    "\"client_secret\":\"s3cr3t-value\"" extra "}},\"routes\":[{\"host\":\"api.example\","         \
    "\"upstream\":\"https://api.example\",\"credential\":\"o\"}]}"

static ap_cred_t *
setup(const char *json)
{
    conf = ap_conf_load_buffer(json, strlen(json), "t.json", errbuf, sizeof(errbuf));
    if (conf == NULL)
        fail_msg("config rejected: %s", errbuf);
    auth = ap_auth_new(conf, &IO, errbuf, sizeof(errbuf));
    if (auth == NULL)
        fail_msg("ap_auth_new: %s", errbuf);
    return ap_auth_find(auth, "o");
}

static int
reset(void **state)
{
    (void)state;
    for (size_t i = 0; i < W.nf; i++) {
        free(W.f[i].method);
        free(W.f[i].url);
        free(W.f[i].body);
        free(W.f[i].basic_user);
        free(W.f[i].basic_pass);
    }
    memset(&W, 0, sizeof(W));
    W.mono = 1000000;
    W.wall = 1767225600000; /* 2026-01-01 */
    W.rnd = 0;
    return 0;
}

static int
teardown(void **state)
{
    ap_auth_free(auth);
    auth = NULL;
    ap_conf_unref(conf);
    conf = NULL;
    return reset(state);
}

/* --- Tests --------------------------------------------------------------------------------- */

static void
static_token_is_ready_without_a_fetch(void **state)
{
    (void)state;
    const char *j = "{\"listen\":\"127.0.0.1:0\",\"credentials\":{\"o\":{\"provider\":\"static\","
                    "\"token\":\"fixed-1\",\"inject\":{\"header\":\"X-Api-Key\",\"value\":"
                    "\"{token}\"}}},\"routes\":[{\"host\":\"a\",\"upstream\":\"https://a\","
                    "\"credential\":\"o\"}]}";
    ap_cred_t *c = setup(j);
    assert_non_null(c);
    rec_t r;
    rec_init(&r);
    ap_token_t *t = NULL;
    assert_int_equal(ap_cred_acquire(c, &r.w, &t), AP_OK);
    assert_string_equal(ap_token_header_name(t), "X-Api-Key");
    assert_string_equal(ap_token_header_value(t), "fixed-1");
    assert_string_equal(ap_token_header_line(t), "X-Api-Key: fixed-1");
    ap_token_unref(t);
    assert_int_equal(W.nf, 0);
    assert_true(ap_auth_ready(auth));
}

static void
cold_cache_single_flight(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r[50];
    for (size_t i = 0; i < 50; i++) {
        rec_init(&r[i]);
        ap_token_t *t = NULL;
        assert_int_equal(ap_cred_acquire(c, &r[i].w, &t), AP_AGAIN);
    }
    assert_int_equal(W.nf, 1);
    fake_fetch_t *f = last_fetch();
    assert_string_equal(f->method, "POST");
    assert_string_equal(f->url, "https://issuer.example/token");
    assert_non_null(strstr(f->body, "grant_type=client_credentials"));
    ap_cred_stats_t st;
    ap_cred_stats(c, &st);
    assert_int_equal(st.waiters, 50);
    assert_string_equal(st.state, "fetching");

    answer(200, token_json("A1", 3600, NULL));
    for (size_t i = 0; i < 50; i++) {
        assert_int_equal(r[i].called, 1);
        /* token_type "bearer" is normalised to the scheme's usual case. */
        assert_string_equal(r[i].value, "Bearer A1");
    }
    assert_token(c, "Bearer A1");
    assert_int_equal(W.nf, 1);
    ap_cred_stats(c, &st);
    assert_int_equal(st.fetches, 1);
    assert_int_equal(st.waiters, 0);
    assert_true(st.expires_in_ms == 3600 * 1000);
}

static void
refresh_ahead_keeps_serving(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r;
    acquire_waiting(c, &r);
    answer(200, token_json("A1", 100, NULL));
    /* Margin: a fifth of the lifetime (20 s of 100 s). */
    advance(79999);
    assert_int_equal(W.nf, 1);
    advance(1);
    assert_int_equal(W.nf, 2);
    assert_int_equal(live_fetches(), 1);
    assert_token(c, "Bearer A1"); /* requests keep flowing during the refresh */
    answer(200, token_json("A2", 100, NULL));
    assert_token(c, "Bearer A2");
    ap_cred_stats_t st;
    ap_cred_stats(c, &st);
    assert_int_equal(st.refreshes, 1);

    /* A long lifetime refreshes at most 60 s ahead. */
    advance(80000);
    answer(200, token_json("A3", 7200, NULL));
    advance(7200 * 1000 - 60000 - 1);
    assert_int_equal(live_fetches(), 0);
    advance(1);
    assert_int_equal(live_fetches(), 1);
}

static void
outage_serves_valid_token_never_an_expired_one(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r;
    acquire_waiting(c, &r);
    answer(200, token_json("A1", 100, NULL));
    advance(80000); /* refresh starts */
    answer(503, "{\"error\":\"temporarily_unavailable\"}");
    assert_token(c, "Bearer A1");
    /* Retries in the background while the token is valid, with growing delays. */
    size_t before = W.nf;
    advance(5000);
    assert_true(W.nf > before);
    while (live_fetches() > 0) {
        answer(0, "");
        advance(1000);
    }
    assert_token(c, "Bearer A1");
    advance(100000 - (W.mono - 1000000)); /* to the expiry */
    while (live_fetches() > 0)
        answer(0, "");
    rec_init(&r);
    ap_token_t *t = NULL;
    ap_rc_t rc = ap_cred_acquire(c, &r.w, &t);
    assert_true(rc != AP_OK);
    assert_null(t);
    ap_cred_stats_t st;
    ap_cred_stats(c, &st);
    assert_false(st.has_token && st.expires_in_ms > 0);
}

static void
backoff_doubles_with_jitter_up_to_a_minute(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    /* rnd 0: jitter is -20 %, so the delays are 0.8 s, 1.6 s, 3.2 s ... then 64 s is capped to
     * 60 s, minus 20 %: 48 s. */
    const uint32_t want[] = {1, 2, 4, 7, 13, 26, 48, 48, 48};
    for (size_t i = 0; i < AP_ARRAY_LEN(want); i++) {
        rec_t r;
        rec_init(&r);
        ap_token_t *t = NULL;
        assert_int_equal(ap_cred_acquire(c, &r.w, &t), AP_AGAIN);
        answer(500, "<html>bad gateway</html>");
        assert_int_equal(r.called, 1);
        assert_ptr_equal(r.reason, ap_err_token_fetch_failed);
        assert_non_null(strstr(r.w.detail, "\"o\""));
        assert_null(strstr(r.w.detail, "s3cr3t"));
        /* While backing off: a quick refusal with Retry-After, and no new request. */
        rec_t q;
        rec_init(&q);
        size_t n = W.nf;
        assert_int_equal(ap_cred_acquire(c, &q.w, &t), AP_ERR);
        assert_ptr_equal(q.w.reason, ap_err_token_unavailable);
        assert_int_equal(q.w.retry_after_s, want[i]);
        assert_int_equal(W.nf, n);
        advance((uint64_t)want[i] * 1000);
    }
    /* The other end of the jitter: +20 %. */
    W.rnd = UINT32_MAX;
    rec_t r;
    acquire_waiting(c, &r);
    answer(500, "");
    rec_init(&r);
    ap_token_t *t = NULL;
    assert_int_equal(ap_cred_acquire(c, &r.w, &t), AP_ERR);
    assert_true(r.w.retry_after_s >= 48 && r.w.retry_after_s <= 72);
    /* Recovery resets the backoff. */
    advance(72000);
    rec_init(&r);
    assert_int_equal(ap_cred_acquire(c, &r.w, &t), AP_AGAIN);
    answer(200, token_json("B", 3600, NULL));
    assert_token(c, "Bearer B");
    ap_cred_stats_t st;
    ap_cred_stats(c, &st);
    assert_int_equal(st.consecutive_failures, 0);
    assert_int_equal(st.failures, AP_ARRAY_LEN(want) + 1);
}

static void
bad_answers_are_failures_not_tokens(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    const char *bodies[] = {"<html>login</html>", "{\"access_token\":\"x\"", "{}",
                            "{\"error\":\"invalid_client\"}", "{\"access_token\":\"\"}"};
    for (size_t i = 0; i < AP_ARRAY_LEN(bodies); i++) {
        rec_t r;
        rec_init(&r);
        ap_token_t *t = NULL;
        assert_int_equal(ap_cred_acquire(c, &r.w, &t), AP_AGAIN);
        answer(200, bodies[i]);
        assert_int_equal(r.called, 1);
        assert_ptr_equal(r.reason, ap_err_token_fetch_failed);
        advance(120000);
    }
}

static void
cancelled_waiter_is_never_called(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t a, b;
    rec_init(&a);
    rec_init(&b);
    ap_token_t *t = NULL;
    assert_int_equal(ap_cred_acquire(c, &a.w, &t), AP_AGAIN);
    assert_int_equal(ap_cred_acquire(c, &b.w, &t), AP_AGAIN);
    ap_cred_cancel(&a.w);
    ap_cred_cancel(&a.w); /* twice is harmless */
    ap_cred_stats_t st;
    ap_cred_stats(c, &st);
    assert_int_equal(st.waiters, 1);
    answer(200, token_json("A1", 3600, NULL));
    assert_int_equal(a.called, 0);
    assert_int_equal(b.called, 1);
    ap_cred_cancel(&b.w); /* after the callback: a no-op */
}

static void
invalidate_after_401_fetches_once(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r;
    acquire_waiting(c, &r);
    answer(200, token_json("A1", 3600, NULL));
    ap_token_t *t = NULL;
    assert_int_equal(ap_cred_acquire(c, &r.w, &t), AP_OK);
    ap_token_t *old = t;
    ap_cred_invalidate(c, old);
    /* Many requests saw the same 401: one new fetch. */
    ap_cred_invalidate(c, old);
    rec_t w[5];
    for (size_t i = 0; i < 5; i++) {
        rec_init(&w[i]);
        ap_token_t *x = NULL;
        assert_int_equal(ap_cred_acquire(c, &w[i].w, &x), AP_AGAIN);
    }
    assert_int_equal(W.nf, 2);
    answer(200, token_json("A2", 3600, NULL));
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(w[i].value, "Bearer A2");
    /* A late 401 for the old token does not throw away the new one. */
    ap_cred_invalidate(c, old);
    assert_token(c, "Bearer A2");
    assert_int_equal(W.nf, 2);
    ap_token_unref(old);
}

static void
refresh_token_rotates_then_falls_back_to_primary_grant(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r;
    acquire_waiting(c, &r);
    answer(200, token_json("A1", 100, "R1"));
    advance(80000);
    assert_non_null(strstr(last_fetch()->body, "grant_type=refresh_token"));
    assert_non_null(strstr(last_fetch()->body, "refresh_token=R1"));
    answer(200, token_json("A2", 100, "R2")); /* rotated */
    assert_token(c, "Bearer A2");
    advance(80000);
    assert_non_null(strstr(last_fetch()->body, "refresh_token=R2"));
    size_t n = W.nf;
    answer(400, "{\"error\":\"invalid_grant\"}");
    /* Refused: the primary grant at once, in the same cycle. */
    assert_int_equal(W.nf, n + 1);
    assert_non_null(strstr(last_fetch()->body, "grant_type=client_credentials"));
    assert_null(strstr(last_fetch()->body, "refresh_token"));
    answer(200, token_json("A3", 100, NULL));
    assert_token(c, "Bearer A3");
    ap_cred_stats_t st;
    ap_cred_stats(c, &st);
    assert_int_equal(st.failures, 0);
}

static void
client_secret_basic_is_form_encoded(void **state)
{
    (void)state;
    const char *j =
        "{\"listen\":\"127.0.0.1:0\",\"credentials\":{\"o\":{\"provider\":\"oauth2\","
        "\"token_url\":\"https://issuer.example/token\",\"client_id\":\"id:with space\","
        "\"client_secret\":\"p+w%d/é\",\"auth_method\":\"client_secret_basic\",\"scope\":[\"a\","
        "\"b\"]}},\"routes\":[{\"host\":\"a\",\"upstream\":\"https://a\","
        "\"credential\":\"o\"}]}";
    ap_cred_t *c = setup(j);
    rec_t r;
    acquire_waiting(c, &r);
    fake_fetch_t *f = last_fetch();
    /* RFC 6749 2.3.1: application/x-www-form-urlencoded before Basic. */
    assert_string_equal(f->basic_user, "id%3Awith+space");
    assert_string_equal(f->basic_pass, "p%2Bw%25d%2F%C3%A9");
    assert_null(strstr(f->body, "client_secret"));
    assert_non_null(strstr(f->body, "scope=a+b"));
    answer(200, token_json("A", 60, NULL));
}

static void
prefetch_makes_ready_and_retries_on_its_own(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(",\"prefetch\":true"));
    (void)c;
    assert_int_equal(W.nf, 1); /* fetching before any request */
    assert_false(ap_auth_ready(auth));
    answer(0, "");
    assert_false(ap_auth_ready(auth));
    advance(1200); /* no request needed for the retry */
    assert_int_equal(W.nf, 2);
    answer(200, token_json("A", 3600, NULL));
    assert_true(ap_auth_ready(auth));
}

static void
reload_keeps_unchanged_credentials(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r;
    acquire_waiting(c, &r);
    answer(200, token_json("A1", 3600, NULL));

    /* Same credential, another route: the token moves over. */
    const char *same = OAUTH2_CONF("");
    ap_conf_t *c2 = ap_conf_load_buffer(same, strlen(same), "t2.json", errbuf, sizeof(errbuf));
    assert_non_null(c2);
    ap_auth_t *a2 = ap_auth_reload(auth, c2, errbuf, sizeof(errbuf));
    assert_non_null(a2);
    ap_auth_free(auth);
    ap_conf_unref(conf);
    auth = a2;
    conf = c2;
    assert_token(ap_auth_find(auth, "o"), "Bearer A1");
    assert_int_equal(W.nf, 1);

    /* A changed secret: a new credential, a new token. */
    const char *changed = "{\"listen\":\"127.0.0.1:0\",\"credentials\":{\"o\":{\"provider\":"
                          "\"oauth2\",\"token_url\":\"https://issuer.example/token\","
                          "\"client_id\":\"the-id\",\"client_secret\":\"rotated\"}},"
                          "\"routes\":[{\"host\":\"a\",\"upstream\":\"https://a\","
                          "\"credential\":\"o\"}]}";
    ap_conf_t *c3 =
        ap_conf_load_buffer(changed, strlen(changed), "t3.json", errbuf, sizeof(errbuf));
    assert_non_null(c3);
    ap_auth_t *a3 = ap_auth_reload(auth, c3, errbuf, sizeof(errbuf));
    assert_non_null(a3);
    ap_auth_free(auth);
    ap_conf_unref(conf);
    auth = a3;
    conf = c3;
    acquire_waiting(ap_auth_find(auth, "o"), &r);
    /* client_secret_basic is the default (RFC 6749 2.3.1: servers must support it). */
    assert_string_equal(last_fetch()->basic_pass, "rotated");
    answer(200, token_json("A2", 3600, NULL));
    assert_string_equal(r.value, "Bearer A2");
}

static void
custom_refresh_request_renews_and_falls_back(void **state)
{
    (void)state;
    const char *j =
        "{\"listen\":\"127.0.0.1:0\",\"credentials\":{\"o\":{\"provider\":\"custom\","
        "\"request\":{\"url\":\"https://issuer.example/login\",\"json\":{\"user\":\"u\","
        "\"password\":\"pw\"}},\"refresh_request\":{\"form\":{\"grant\":\"refresh\","
        "\"rt\":\"{refresh_token}\"},\"headers\":{\"X-Refresh\":\"t={refresh_token}\"}},"
        "\"response\":{\"token\":\"/data/tok\",\"expires_in\":\"/data/ttl\","
        "\"refresh_token\":\"/data/rt\"},\"inject\":{\"header\":\"X-Session\","
        "\"value\":\"{token}\"}}},\"routes\":[{\"host\":\"a\",\"upstream\":\"https://a\","
        "\"credential\":\"o\"}]}";
    ap_cred_t *c = setup(j);
    rec_t r;
    acquire_waiting(c, &r);
    assert_string_equal(last_fetch()->body, "{\"user\":\"u\",\"password\":\"pw\"}");
    answer(200, "{\"data\":{\"tok\":\"T1\",\"ttl\":100,\"rt\":\"R1\"}}");
    assert_string_equal(r.value, "T1");
    advance(80000); /* refresh ahead, with the refresh template */
    fake_fetch_t *f = last_fetch();
    assert_string_equal(f->url, "https://issuer.example/login");
    assert_string_equal(f->body, "grant=refresh&rt=R1");
    answer(200, "{\"data\":{\"tok\":\"T2\",\"ttl\":100,\"rt\":\"R2\"}}");
    assert_token(c, "T2");
    advance(80000);
    assert_string_equal(last_fetch()->body, "grant=refresh&rt=R2"); /* rotated */
    size_t n = W.nf;
    answer(401, "{\"error\":\"expired\"}");
    assert_int_equal(W.nf, n + 1); /* refused: the primary request at once */
    assert_string_equal(last_fetch()->body, "{\"user\":\"u\",\"password\":\"pw\"}");
    answer(200, "{\"data\":{\"tok\":\"T3\",\"ttl\":100}}");
    assert_token(c, "T3");
}

/* Form fields of a request body, order-independent. */
static void
assert_form_has(const char *body, const char *field)
{
    size_t n = strlen(field);
    for (const char *p = body; (p = strstr(p, field)) != NULL; p++)
        if ((p == body || p[-1] == '&') && (p[n] == '&' || p[n] == '\0'))
            return;
    fail_msg("expected %s in %s", field, body);
}

static void
oauth2_password_grant_with_post_auth_and_parameters(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(",\"grant\":\"password\",\"username\":\"ann\","
                                     "\"password\":\"p&w\",\"auth_method\":\"client_secret_post\","
                                     "\"audience\":\"https://api.example\",\"resource\":"
                                     "\"urn:r\",\"scope\":\"read write\",\"params\":{\"tenant\":"
                                     "\"t1\"}"));
    rec_t r;
    acquire_waiting(c, &r);
    fake_fetch_t *f = last_fetch();
    assert_null(f->basic_user);
    const char *want[] = {"grant_type=password",
                          "username=ann",
                          "password=p%26w",
                          "client_id=the-id",
                          "client_secret=s3cr3t-value",
                          "audience=https%3A%2F%2Fapi.example",
                          "resource=urn%3Ar",
                          "scope=read+write",
                          "tenant=t1"};
    for (size_t i = 0; i < AP_ARRAY_LEN(want); i++)
        assert_form_has(f->body, want[i]);
    answer(200, token_json("P1", 3600, NULL));
    assert_token(c, "Bearer P1");
}

static void
oauth2_refresh_token_grant_uses_and_rotates_the_configured_token(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(",\"grant\":\"refresh_token\",\"refresh_token\":\"RT0\""));
    rec_t r;
    acquire_waiting(c, &r);
    assert_form_has(last_fetch()->body, "grant_type=refresh_token");
    assert_form_has(last_fetch()->body, "refresh_token=RT0");
    answer(200, token_json("A1", 100, "RT1"));
    advance(80000);
    assert_form_has(last_fetch()->body, "refresh_token=RT1");
    answer(200, token_json("A2", 100, NULL)); /* no rotation this time: RT1 stays */
    advance(80000);
    assert_form_has(last_fetch()->body, "refresh_token=RT1");
    answer(200, token_json("A3", 100, NULL));
    assert_token(c, "Bearer A3");
}

static void
free_with_waiters_fails_them_and_cancels_the_fetch(void **state)
{
    (void)state;
    ap_cred_t *c = setup(OAUTH2_CONF(""));
    rec_t r[3];
    for (size_t i = 0; i < 3; i++) {
        rec_init(&r[i]);
        ap_token_t *t = NULL;
        assert_int_equal(ap_cred_acquire(c, &r[i].w, &t), AP_AGAIN);
    }
    ap_auth_free(auth);
    auth = NULL;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(r[i].called, 1);
        assert_non_null(r[i].reason);
    }
    assert_int_equal(W.cancelled, 1);
    assert_int_equal(live_fetches(), 0);
}

int
main(void)
{
    ap_log_set_level(AP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, reset, teardown)
        T(static_token_is_ready_without_a_fetch),
        T(cold_cache_single_flight),
        T(refresh_ahead_keeps_serving),
        T(outage_serves_valid_token_never_an_expired_one),
        T(backoff_doubles_with_jitter_up_to_a_minute),
        T(bad_answers_are_failures_not_tokens),
        T(cancelled_waiter_is_never_called),
        T(invalidate_after_401_fetches_once),
        T(refresh_token_rotates_then_falls_back_to_primary_grant),
        T(client_secret_basic_is_form_encoded),
        T(prefetch_makes_ready_and_retries_on_its_own),
        T(reload_keeps_unchanged_credentials),
        T(custom_refresh_request_renews_and_falls_back),
        T(oauth2_password_grant_with_post_auth_and_parameters),
        T(oauth2_refresh_token_grant_uses_and_rotates_the_configured_token),
        T(free_with_waiters_fails_them_and_cancels_the_fetch),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
