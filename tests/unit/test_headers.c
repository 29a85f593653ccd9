/*
 * test_headers.c: the outbound header list (proxy/headers.c). Hop-by-hop and Proxy-* headers,
 * and headers the client's Connection names, never leave; Host/Content-Length/Expect are left
 * to curl; Via is appended; a credentialed route's Authorization is replaced, never duplicated,
 * even when the client tries case tricks; request loops are recognised by the proxy's Via id.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core.h"

static void *
no_fetch(void *ctx, const ap_fetch_req_t *req, ap_fetch_done_cb done, void *ud)
{
    (void)ctx, (void)req, (void)done, (void)ud;
    fail_msg("a static credential must not fetch");
    return NULL;
}
static void
no_cancel(void *ctx, void *h)
{
    (void)ctx, (void)h;
}
static int timer_dummy;
static void *
t_new(void *ctx, ap_timer_cb cb, void *ud)
{
    (void)ctx, (void)cb, (void)ud;
    return &timer_dummy;
}
static void
t_arm(void *ctx, void *t, uint64_t ms)
{
    (void)ctx, (void)t, (void)ms;
}
static void
t_void(void *ctx, void *t)
{
    (void)ctx, (void)t;
}
static uint64_t
mono(void *ctx)
{
    (void)ctx;
    return 1000;
}
static int64_t
wall(void *ctx)
{
    (void)ctx;
    return 1000;
}
static uint32_t
rnd(void *ctx)
{
    (void)ctx;
    return 0;
}
static const ap_auth_io_t IO = {NULL,   no_fetch, no_cancel, t_new, t_arm,
                                t_void, t_void,   mono,      wall,  rnd};

static const char *CONF =
    "{\"listen\":\"127.0.0.1:0\",\"credentials\":{"
    "\"bearer\":{\"provider\":\"static\",\"token\":\"T0KEN\"},"
    "\"key\":{\"provider\":\"static\",\"token\":\"K3Y\",\"inject\":{\"header\":\"X-Api-Key\","
    "\"value\":\"{token}\"},\"headers\":{\"X-Tenant\":\"t1\"}}},"
    "\"routes\":[{\"host\":\"a\",\"upstream\":\"https://a\",\"credential\":\"bearer\"}]}";

typedef struct {
    ap_conf_t *conf;
    ap_auth_t *auth;
    ap_req_t r;
    char buf[4096];
    struct curl_slist *out;
} fx_t;

static void
build(fx_t *f, const char *head, const char *cred)
{
    char err[1024];
    memset(f, 0, sizeof(*f));
    f->conf = ap_conf_load_buffer(CONF, strlen(CONF), "t.json", err, sizeof(err));
    assert_non_null(f->conf);
    f->auth = ap_auth_new(f->conf, &IO, err, sizeof(err));
    assert_non_null(f->auth);
    snprintf(f->buf, sizeof(f->buf), "%s", head);
    ap_http1_err_t e;
    assert_int_equal(ap_http1_parse_request(f->buf, strlen(f->buf), 0, sizeof(f->buf), &f->r.h, &e),
                     AP_OK);
    ap_token_t *tok = NULL;
    if (cred != NULL) {
        f->r.cred = ap_auth_find(f->auth, cred);
        ap_token_waiter_t w;
        memset(&w, 0, sizeof(w));
        assert_int_equal(ap_cred_acquire(f->r.cred, &w, &tok), AP_OK);
    }
    f->out = ap_headers_upstream(&f->r, "authproxy-abc123", tok,
                                 f->r.cred ? ap_cred_extra_headers(f->r.cred) : NULL);
    ap_token_unref(tok);
}

static void
done(fx_t *f)
{
    curl_slist_free_all(f->out);
    ap_auth_free(f->auth);
    ap_conf_unref(f->conf);
}

/* How many output lines start with "name:" (case-insensitive), and the last one's value. */
static int
count(const fx_t *f, const char *name, const char **value)
{
    int n = 0;
    size_t len = strlen(name);
    for (const struct curl_slist *l = f->out; l; l = l->next) {
        const char *colon = strchr(l->data, ':');
        const char *semi = strchr(l->data, ';');
        const char *end = colon ? colon : semi;
        if (end && (size_t)(end - l->data) == len && ap_memieq(l->data, len, name, len)) {
            n++;
            if (value)
                *value = end[0] == ':' ? end + 1 + (end[1] == ' ') : "";
        }
    }
    return n;
}

static void
hop_by_hop_and_proxy_headers_never_leave(void **state)
{
    (void)state;
    fx_t f;
    build(&f,
          "GET http://a/x HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret-Hop\r\n"
          "Keep-Alive: timeout=5\r\nProxy-Authorization: Basic dTpw\r\nProxy-Connection: "
          "keep-alive\r\nProxy-Foo: 1\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\n"
          "X-Secret-Hop: 1\r\nX-Keep: yes\r\nUser-Agent: legacy/1.0\r\n\r\n",
          NULL);
    const char *gone[] = {"Connection",
                          "Keep-Alive",
                          "Proxy-Authorization",
                          "Proxy-Connection",
                          "Proxy-Foo",
                          "TE",
                          "Trailer",
                          "Upgrade",
                          "X-Secret-Hop",
                          "Host"};
    for (size_t i = 0; i < AP_ARRAY_LEN(gone); i++)
        if (count(&f, gone[i], NULL) != 0)
            fail_msg("%s was forwarded", gone[i]);
    const char *v;
    assert_int_equal(count(&f, "X-Keep", &v), 1);
    assert_string_equal(v, "yes");
    assert_int_equal(count(&f, "User-Agent", &v), 1);
    assert_string_equal(v, "legacy/1.0");
    assert_int_equal(count(&f, "Via", &v), 1);
    assert_string_equal(v, "1.1 authproxy-abc123");
    assert_int_equal(count(&f, "Authorization", NULL), 0); /* no credential: nothing added */
    done(&f);
}

static void
client_authorization_is_replaced_not_duplicated(void **state)
{
    (void)state;
    fx_t f;
    build(&f,
          "POST http://a/x HTTP/1.1\r\nHost: a\r\nauthorization: Bearer client-own\r\n"
          "AUTHORIZATION: Basic Zm9vOmJhcg==\r\nContent-Length: 2\r\nExpect: 100-continue\r\n"
          "Via: 1.0 corp-gw\r\n\r\nhi",
          "bearer");
    const char *v;
    assert_int_equal(count(&f, "Authorization", &v), 1);
    assert_string_equal(v, "Bearer T0KEN");
    /* Framing and Expect belong to curl; Via extends the client's chain. */
    assert_int_equal(count(&f, "Content-Length", NULL), 0);
    assert_int_equal(count(&f, "Expect", &v), 1);
    assert_string_equal(v, "");
    assert_int_equal(count(&f, "Via", &v), 1);
    assert_string_equal(v, "1.0 corp-gw, 1.1 authproxy-abc123");
    done(&f);
}

static void
custom_header_credential_and_extra_headers(void **state)
{
    (void)state;
    fx_t f;
    build(&f,
          "GET http://a/x HTTP/1.1\r\nHost: a\r\nx-api-key: forged\r\nX-Tenant: t1\r\n"
          "Authorization: Bearer someone-elses\r\n\r\n",
          "key");
    const char *v;
    assert_int_equal(count(&f, "X-Api-Key", &v), 1);
    assert_string_equal(v, "K3Y");
    /* The client's own Authorization is not this route's business to forward. */
    assert_int_equal(count(&f, "Authorization", NULL), 0);
    assert_int_equal(count(&f, "X-Tenant", NULL), 2); /* the client's and the credential's */
    done(&f);
}

static void
empty_header_values_survive(void **state)
{
    (void)state;
    fx_t f;
    build(&f, "GET http://a/x HTTP/1.1\r\nHost: a\r\nX-Empty:\r\n\r\n", NULL);
    const char *v;
    assert_int_equal(count(&f, "X-Empty", &v), 1);
    assert_string_equal(v, "");
    done(&f);
}

static void
loop_detection_by_via_id(void **state)
{
    (void)state;
    char a[] = "GET http://a/ HTTP/1.1\r\nHost: a\r\nVia: 1.1 other, 1.1 authproxy-abc123\r\n\r\n";
    char b[] = "GET http://a/ HTTP/1.1\r\nHost: a\r\nVia: 1.1 authproxy-abc124\r\n\r\n";
    ap_http1_req_t h;
    ap_http1_err_t e;
    assert_int_equal(ap_http1_parse_request(a, strlen(a), 0, sizeof(a), &h, &e), AP_OK);
    assert_true(ap_headers_has_loop(&h, "authproxy-abc123"));
    assert_int_equal(ap_http1_parse_request(b, strlen(b), 0, sizeof(b), &h, &e), AP_OK);
    assert_false(ap_headers_has_loop(&h, "authproxy-abc123"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hop_by_hop_and_proxy_headers_never_leave),
        cmocka_unit_test(client_authorization_is_replaced_not_duplicated),
        cmocka_unit_test(custom_header_credential_and_extra_headers),
        cmocka_unit_test(empty_header_values_survive),
        cmocka_unit_test(loop_detection_by_via_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
