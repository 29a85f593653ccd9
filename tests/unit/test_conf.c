/*
 * test_conf.c: the config loader (conf/). Valid configs for every provider map onto the typed
 * struct; each class of mistake is reported with its JSON path; secrets never reach error text or
 * the --check dump; ${VAR}, {"env"} and {"file"} resolve; the digest follows the settings and only
 * them; env-only mode; the shipped config and every example load.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

extern char **environ;

#define DATA AP_SOURCE_DIR "/tests/data/conf/"

static char tmpdir[64];
static char errbuf[16384];

/* --- Helpers ------------------------------------------------------------------------------- */

static ap_conf_t *
load(const char *json)
{
    return ap_conf_load_buffer(json, strlen(json), "t.json", errbuf, sizeof(errbuf));
}

static ap_conf_t *
load_ok(const char *json)
{
    ap_conf_t *c = load(json);
    if (c == NULL)
        fail_msg("config rejected:\n%s", errbuf);
    return c;
}

static ap_conf_t *
load_file_ok(const char *path)
{
    ap_conf_t *c = ap_conf_load_file(path, errbuf, sizeof(errbuf));
    if (c == NULL)
        fail_msg("%s rejected:\n%s", path, errbuf);
    return c;
}

static void
assert_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL)
        fail_msg("expected \"%s\" in:\n%s", needle, hay);
}

static void
assert_lacks(const char *hay, const char *needle)
{
    if (strstr(hay, needle) != NULL)
        fail_msg("did not expect \"%s\" in:\n%s", needle, hay);
}

/* Loads and expects a rejection whose text contains every needle (NULL-terminated). */
static void
expect_errors(const char *json, ...)
{
    ap_conf_t *c = load(json);
    if (c != NULL) {
        ap_conf_unref(c);
        fail_msg("config accepted, expected errors:\n%s", json);
    }
    va_list ap;
    va_start(ap, json);
    for (const char *n = va_arg(ap, const char *); n != NULL; n = va_arg(ap, const char *))
        assert_contains(errbuf, n);
    va_end(ap);
}

#define EXPECT_ERR(json, ...) expect_errors(json, __VA_ARGS__, (const char *)NULL)

static char *
dump(const ap_conf_t *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    ap_conf_dump(c, f);
    fclose(f);
    return buf;
}

static const ap_kv_t *
kv(const ap_kvlist_t *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    fail_msg("no entry \"%s\"", name);
    return NULL;
}

static const ap_cred_conf_t *
cred(const ap_conf_t *c, const char *name)
{
    const ap_cred_conf_t *cr = ap_conf_find_cred(c, name);
    if (cr == NULL)
        fail_msg("no credential \"%s\"", name);
    return cr;
}

static void
write_file(const char *name, const char *content, char *path, size_t n)
{
    snprintf(path, n, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static void
clear_authproxy_env(void)
{
    char *names[128];
    size_t n = 0;
    for (char **e = environ; *e != NULL && n < 128; e++)
        if (strncmp(*e, "AUTHPROXY_", 10) == 0)
            names[n++] = strndup(*e, strcspn(*e, "="));
    for (size_t i = 0; i < n; i++) {
        unsetenv(names[i]);
        free(names[i]);
    }
}

static int
group_setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ap_test_conf_XXXXXX");
    if (mkdtemp(tmpdir) == NULL)
        return -1;
    clear_authproxy_env();
    return 0;
}

static int
group_teardown(void **state)
{
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(tmpdir);
    return 0;
}

/* --- Valid configs -------------------------------------------------------------------------- */

static void
test_minimal_defaults(void **state)
{
    ap_conf_t *c = load_ok("{}");
    assert_int_equal(c->refcnt, 1);
    assert_int_equal(c->nlisten, 1);
    assert_string_equal(c->listen[0].host, "127.0.0.1");
    assert_string_equal(c->listen[0].port, "3128");
    assert_int_equal(c->nadmin, 1);
    assert_string_equal(c->admin[0].port, "9090");
    assert_false(c->unmatched_forward);
    assert_true(c->allow_connect);
    assert_true(c->log_json);
    assert_string_equal(c->log_level, "info");
    assert_null(c->ca_file);
    assert_null(c->outbound_proxy);
    assert_int_equal(c->limits.max_head, AP_CONF_DEFAULT_MAX_HEAD);
    assert_int_equal(c->limits.max_headers, AP_CONF_DEFAULT_MAX_HEADERS);
    assert_int_equal(c->limits.max_body, 0);
    assert_int_equal(c->limits.replay_body, AP_CONF_DEFAULT_REPLAY_BODY);
    assert_int_equal(c->limits.max_conns, AP_CONF_DEFAULT_MAX_CONNS);
    assert_int_equal(c->limits.head_timeout_ms, AP_CONF_DEFAULT_HEAD_TIMEOUT_MS);
    assert_int_equal(c->limits.tunnel_idle_ms, AP_CONF_DEFAULT_TUNNEL_IDLE_MS);
    assert_int_equal(c->limits.token_wait_ms, AP_CONF_DEFAULT_TOKEN_WAIT_MS);
    assert_int_equal(c->ncreds, 0);
    assert_int_equal(c->nroutes, 0);
    ap_conf_t by_hand;
    memset(&by_hand, 0, sizeof(by_hand));
    ap_conf_default_limits(&by_hand);
    assert_memory_equal(&by_hand.limits, &c->limits, sizeof(c->limits));
    ap_conf_t *r = ap_conf_ref(c);
    assert_ptr_equal(r, c);
    assert_int_equal(c->refcnt, 2);
    ap_conf_unref(c);
    assert_int_equal(c->refcnt, 1);
    ap_conf_unref(c);
    ap_conf_unref(NULL);
}

static void
test_admin_disabled_and_forms(void **state)
{
    ap_conf_t *c = load_ok("{\"admin\": false, \"listen\": [\"[::1]:3128\", \"localhost:0\"]}");
    assert_int_equal(c->nadmin, 0);
    assert_int_equal(c->nlisten, 2);
    assert_string_equal(c->listen[0].host, "::1");
    assert_string_equal(c->listen[0].port, "3128");
    assert_string_equal(c->listen[1].host, "localhost");
    assert_string_equal(c->listen[1].port, "0");
    ap_conf_unref(c);
    c = load_ok("{\"admin\": null}");
    assert_int_equal(c->nadmin, 0);
    ap_conf_unref(c);
    c = load_ok("{\"admin\": [\"127.0.0.1:9091\", \"[::1]:9091\"]}");
    assert_int_equal(c->nadmin, 2);
    ap_conf_unref(c);
}

static void
test_valid_all_providers(void **state)
{
    setenv("TC_BOB_PASSWORD", "bob-pass", 1);
    ap_conf_t *c = load_file_ok(DATA "valid_all.json");
    unsetenv("TC_BOB_PASSWORD");

    assert_int_equal(c->nlisten, 2);
    assert_string_equal(c->listen[1].host, "::1");
    assert_string_equal(c->admin[0].host, "localhost");
    assert_string_equal(c->admin[0].port, "9091");
    assert_int_equal(c->nconnect_to, 2);
    assert_string_equal(c->connect_to[0].from, "api.example.com:443");
    assert_string_equal(c->connect_to[0].to, "127.0.0.1:8443");
    assert_string_equal(c->connect_to[1].to, "[::1]:9443");
    assert_string_equal(c->outbound_proxy, "http://user:proxy-pass@proxy.internal:3128");
    assert_true(c->unmatched_forward);
    assert_false(c->allow_connect);
    assert_string_equal(c->log_level, "debug");
    assert_false(c->log_json);
    assert_int_equal(c->limits.max_head, 32768);
    assert_int_equal(c->limits.max_body, 1048576);
    assert_int_equal(c->limits.replay_body, 0);
    assert_int_equal(c->limits.token_wait_ms, 5000);
    assert_int_equal(c->limits.drain_timeout_ms, 0);
    assert_int_equal(c->limits.idle_timeout_ms, AP_CONF_DEFAULT_IDLE_TIMEOUT_MS);
    assert_int_equal(c->nusers, 2);
    assert_string_equal(c->users[0].name, "alice");
    assert_string_equal(c->users[0].password, "alice-pass");
    assert_string_equal(c->users[1].password, "bob-pass");
    assert_int_equal(c->nallow, 2);
    assert_string_equal(c->allow_cidrs[1], "::1");
    assert_false(c->allow_public_without_auth);

    const ap_cred_conf_t *st = cred(c, "st");
    assert_string_equal(st->provider, "static");
    assert_string_equal(ap_cred_conf_get(st, "token"), "static-token");
    assert_true(kv(&st->fields, "token")->is_secret);
    assert_string_equal(st->inject_header, "Authorization");
    assert_string_equal(st->inject_value, "{token_type} {token}");
    assert_int_equal(st->timeout_ms, AP_CONF_DEFAULT_TOKEN_TIMEOUT_MS);
    assert_int_equal(st->default_ttl_s, 0);
    assert_false(st->prefetch);
    assert_int_equal(strlen(st->digest), 64);

    /* OMICall: the full .../api/auth URL is kept, a base URL gets /api/auth appended. */
    assert_string_equal(ap_cred_conf_get(cred(c, "omi_full"), "token_url"),
                        "https://omi.example.com/api/auth");
    assert_string_equal(ap_cred_conf_get(cred(c, "omi_base"), "token_url"),
                        "https://omi.example.com/api/auth");
    assert_string_equal(ap_cred_conf_get(cred(c, "omi_base"), "api_key"), "omi-key");

    const ap_cred_conf_t *ants = cred(c, "ants");
    assert_string_equal(ap_cred_conf_get(ants, "token_url"), "https://iam.ants.tech/oauth/token");
    assert_string_equal(ap_cred_conf_get(ants, "client_id"), "ants-id");
    assert_false(kv(&ants->fields, "client_id")->is_secret);
    assert_true(kv(&ants->fields, "client_secret")->is_secret);
    assert_int_equal(ants->nscope, 2);
    assert_string_equal(ants->scope[0], "item");
    assert_string_equal(ants->scope[1], "event");

    const ap_cred_conf_t *tel = cred(c, "tel");
    assert_string_equal(ap_cred_conf_get(tel, "username"), "ops@example.com");
    assert_string_equal(ap_cred_conf_get(tel, "password"), "tel-pass");
    assert_null(ap_cred_conf_get(tel, "tenant"));

    const ap_cred_conf_t *man = cred(c, "man");
    assert_string_equal(ap_cred_conf_get(man, "merchant_id"), "M-1");
    assert_string_equal(ap_cred_conf_get(man, "secret"), "man-secret");
    assert_int_equal(man->default_ttl_s, 600);

    const ap_cred_conf_t *mico = cred(c, "mico");
    assert_string_equal(ap_cred_conf_get(mico, "token_url"),
                        "https://api.micovoice.com/oauth/token");
    assert_int_equal(mico->nscope, 2);
    assert_string_equal(mico->scope[1], "outbound_calls:read");
    assert_true(mico->prefetch);
    assert_int_equal(mico->timeout_ms, 2500);

    const ap_cred_conf_t *o2 = cred(c, "o2");
    assert_string_equal(ap_cred_conf_get(o2, "grant"), "password");
    assert_string_equal(ap_cred_conf_get(o2, "auth_method"), "client_secret_basic");
    assert_string_equal(ap_cred_conf_get(o2, "audience"), "https://api.example.com");
    assert_string_equal(ap_cred_conf_get(o2, "resource"), "urn:api");
    assert_null(ap_cred_conf_get(o2, "client_secret"));
    assert_int_equal(o2->params.n, 3);
    assert_string_equal(kv(&o2->params, "ttl")->value, "3600");
    assert_string_equal(kv(&o2->params, "debug")->value, "true");
    assert_false(kv(&o2->params, "org")->is_secret);
    assert_string_equal(o2->inject_header, "X-Auth");
    assert_string_equal(o2->inject_value, "Token {token}");
    assert_int_equal(o2->headers.n, 2);
    assert_false(kv(&o2->headers, "X-Client")->is_secret);
    assert_true(kv(&o2->headers, "X-Api-Key")->is_secret); /* by its name */

    const ap_cred_conf_t *cu = cred(c, "cu");
    assert_string_equal(cu->custom.req.method, "POST");
    assert_string_equal(cu->custom.req.url, "https://auth.example.com/token");
    assert_string_equal(kv(&cu->custom.req.headers, "Accept")->value, "application/json");
    assert_string_equal(kv(&cu->custom.req.query, "v")->value, "2");
    assert_string_equal(kv(&cu->custom.req.json, "login")->value, "cu-user");
    assert_true(kv(&cu->custom.req.json, "secret")->is_secret);
    assert_int_equal(cu->custom.req.form.n, 0);
    assert_string_equal(cu->custom.req.basic_user, "cu-basic");
    assert_string_equal(cu->custom.req.basic_pass, "cu-basic-pass");
    assert_string_equal(cu->custom.token_ptr, "/payload/access_token");
    assert_string_equal(cu->custom.type_ptr, "/payload/token_type");
    assert_string_equal(cu->custom.expires_in_ptr, "/payload/expires");
    assert_string_equal(cu->custom.expires_at_ptr, "/exp");
    assert_string_equal(cu->custom.refresh_ptr, "/payload/refresh");
    assert_string_equal(cu->custom.success_ptr, "/status_code");
    assert_string_equal(cu->custom.success_equals, "9999");

    assert_int_equal(c->nroutes, 5);
    const ap_route_conf_t *r = &c->routes[0];
    assert_string_equal(r->host, "api.example.com");
    assert_int_equal(r->port, 8080);
    assert_string_equal(r->path, "/v1/");
    assert_true(r->up_tls);
    assert_string_equal(r->up_host, "api.example.com");
    assert_int_equal(r->up_port, 8443);
    assert_string_equal(r->up_path, "/base");
    assert_string_equal(r->credential, "st");
    assert_ptr_equal(r->cred, st);
    assert_string_equal(r->label, "api.example.com:8080/v1/");
    r = &c->routes[1];
    assert_string_equal(r->host, "*.micovoice.com");
    assert_false(r->up_tls);
    assert_int_equal(r->up_port, 9000);
    assert_string_equal(r->up_path, "");
    assert_ptr_equal(r->cred, mico);
    assert_string_equal(r->label, "*.micovoice.com");
    r = &c->routes[2];
    assert_null(r->host);
    assert_string_equal(r->path, "/omi/");
    assert_string_equal(r->up_path, "");
    assert_int_equal(r->up_port, 443);
    assert_string_equal(r->label, "/omi/");
    r = &c->routes[3];
    assert_string_equal(r->host, "::1");
    assert_string_equal(r->up_host, "::1");
    assert_int_equal(r->up_port, 8080);
    assert_string_equal(r->up_path, "/v2");
    assert_null(r->credential);
    assert_null(r->cred);
    ap_conf_unref(c);
}

static void
test_scope_forms(void **state)
{
    ap_conf_t *c = load_ok("{\"credentials\": {\"m\": {\"provider\": \"micovoice\", "
                           "\"client_id\": \"i\", \"client_secret\": \"s\", "
                           "\"scope\": \" a:read  b:write,c \"}}}");
    const ap_cred_conf_t *m = cred(c, "m");
    assert_int_equal(m->nscope, 3);
    assert_string_equal(m->scope[0], "a:read");
    assert_string_equal(m->scope[1], "b:write");
    assert_string_equal(m->scope[2], "c");
    ap_conf_unref(c);
    /* micovoice's scope is optional */
    c = load_ok("{\"credentials\": {\"m\": {\"provider\": \"micovoice\", \"client_id\": \"i\", "
                "\"client_secret\": \"s\"}}}");
    assert_int_equal(cred(c, "m")->nscope, 0);
    ap_conf_unref(c);
}

static void
test_custom_equals_rendering(void **state)
{
    static const struct {
        const char *json, *want;
    } cases[] = {{"true", "true"}, {"0", "0"},       {"-5", "-5"},
                 {"1.5", "1.5"},   {"\"ok\"", "ok"}, {"1e3", "1000"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"credentials\": {\"c\": {\"provider\": \"custom\", \"request\": {\"url\": "
                 "\"https://a.example.com/t\"}, \"response\": {\"token\": \"/t\", \"success\": "
                 "{\"pointer\": \"/s\", \"equals\": %s}}}}}",
                 cases[i].json);
        ap_conf_t *c = load_ok(json);
        const ap_cred_conf_t *cu = cred(c, "c");
        assert_string_equal(cu->custom.success_equals, cases[i].want);
        assert_string_equal(cu->custom.req.method, "POST");
        ap_conf_unref(c);
    }
    ap_conf_t *c = load_ok("{\"credentials\": {\"c\": {\"provider\": \"custom\", \"request\": "
                           "{\"method\": \"GET\", \"url\": \"https://a.example.com/t\"}, "
                           "\"response\": {\"token\": \"/a~1b/~0c\", \"success\": {\"pointer\": "
                           "\"/s\"}}}}}");
    assert_null(cred(c, "c")->custom.success_equals);
    assert_string_equal(cred(c, "c")->custom.req.method, "GET");
    ap_conf_unref(c);
}

/* --- Errors ----------------------------------------------------------------------------------- */

static void
test_err_unknown_keys(void **state)
{
    EXPECT_ERR("{\"listn\": \"127.0.0.1:1\"}", "t.json: listn: ", "(did you mean \"listen\"?)");
    EXPECT_ERR("{\"credentials\": {\"m\": {\"provider\": \"micovoice\", \"client_id\": \"i\", "
               "\"client_secret\": \"s\", \"tokn_url\": \"https://x\"}}}",
               "t.json: credentials.m.tokn_url: ", "unknown key \"tokn_url\"",
               "did you mean \"token_url\"");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.com\", \"upstream\": \"https://a.com\", "
               "\"credentials\": \"x\"}]}",
               "t.json: routes[0].credentials: ", "did you mean \"credential\"");
    EXPECT_ERR("{\"limits\": {\"max_header\": 5}}", "t.json: limits.max_header: ");
    EXPECT_ERR("{\"client_auth\": {\"insecure_allow_unauthenticate\": true}}",
               "client_auth.insecure_allow_unauthenticate: ");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": {\"env\": "
               "\"X\", \"fallback\": \"y\"}}}}",
               "credentials.s.token.fallback: ");
    EXPECT_ERR("{\"credentials\": {\"c\": {\"provider\": \"custom\", \"request\": {\"url\": "
               "\"https://a.example.com\", \"body\": {}}, \"response\": {\"token\": \"/t\"}}}}",
               "credentials.c.request.body: ");
    /* A key of another provider is unknown for this one. */
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"t\", "
               "\"scope\": \"a\"}}}",
               "credentials.s.scope: ");
    /* Repeated keys: the second would be silently ignored by lookups. */
    EXPECT_ERR("{\"unmatched\": \"deny\", \"unmatched\": \"forward\"}",
               "t.json: unmatched: expected each key once");
}

static void
test_err_missing_required(void **state)
{
    EXPECT_ERR("{\"credentials\": {\"x\": {\"token\": \"t\"}}}",
               "credentials.x.provider: ", "(required)");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"static\"}}}",
               "t.json: credentials.x.token: expected a secret (required by provider "
               "\"static\"), got nothing");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"omicall\", \"api_key\": \"k\"}}}",
               "credentials.x.token_url: ", "required by provider \"omicall\"");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"omicall\", \"token_url\": "
               "\"https://o.example.com\"}}}",
               "credentials.x.api_key: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"antsomi\", \"client_id\": \"i\", "
               "\"client_secret\": \"s\"}}}",
               "credentials.x.scope: expected at least one scope (required by provider "
               "\"antsomi\")");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"antsomi\", \"scope\": \"item\"}}}",
               "credentials.x.client_id: ", "credentials.x.client_secret: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"telmai\", \"token_url\": "
               "\"https://t.example.com/auth/token\"}}}",
               "credentials.x.client_id: ", "credentials.x.username: ", "credentials.x.password: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"manis\", \"merchant_id\": \"m\", "
               "\"secret\": \"s\"}}}",
               "credentials.x.token_url: ", "required by provider \"manis\"");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"micovoice\", \"client_id\": \"i\"}}}",
               "credentials.x.client_secret: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"oauth2\", \"client_id\": \"i\", "
               "\"client_secret\": \"s\"}}}",
               "credentials.x.token_url: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"oauth2\", \"token_url\": "
               "\"https://o.example.com/t\", \"client_id\": \"i\"}}}",
               "credentials.x.client_secret: ", "grant \"client_credentials\"");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"oauth2\", \"token_url\": "
               "\"https://o.example.com/t\", \"grant\": \"password\", \"username\": \"u\"}}}",
               "credentials.x.password: ", "grant \"password\"");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"oauth2\", \"token_url\": "
               "\"https://o.example.com/t\", \"grant\": \"refresh_token\"}}}",
               "credentials.x.refresh_token: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"oauth2\", \"token_url\": "
               "\"https://o.example.com/t\", \"grant\": \"implicit\"}}}",
               "credentials.x.grant: expected \"client_credentials\", \"password\" or "
               "\"refresh_token\", got \"implicit\"");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"custom\"}}}",
               "credentials.x.request: ", "credentials.x.response: ");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"custom\", \"request\": {}, "
               "\"response\": {}}}}",
               "credentials.x.request.url: ", "credentials.x.response.token: ");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.example.com\"}]}",
               "routes[0].upstream: ", "(required)");
    EXPECT_ERR("{\"routes\": [{\"upstream\": \"https://a.example.com\"}]}",
               "t.json: routes[0]: expected \"host\" (proxy mode) and/or \"path\"");
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"sftp\"}}}",
               "credentials.x.provider: expected \"static\", ", "got \"sftp\"");
}

static void
test_err_bad_values(void **state)
{
    EXPECT_ERR("{\"credentials\": {\"x\": {\"provider\": \"telmai\", \"token_url\": "
               "\"ftp://t.example.com\", \"client_id\": \"c\", \"username\": \"u\", "
               "\"password\": \"p\"}}}",
               "t.json: credentials.x.token_url: expected an http:// or https:// URL, got "
               "\"ftp://t.example.com\"");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.example.com\", \"upstream\": \"https:///x\"}]}",
               "routes[0].upstream: expected an http:// or https:// base URL", "(no host)");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.example.com\", \"upstream\": "
               "\"https://a.example.com/v1?x=1\"}]}",
               "routes[0].upstream: ", "?query is not allowed");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.example.com\", \"upstream\": "
               "\"https://u:p@a.example.com\"}]}",
               "routes[0].upstream: ", "user:password@ is not allowed");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.example.com\", \"upstream\": "
               "\"https://a.example.com:0\"}]}",
               "routes[0].upstream: ", "port");
    EXPECT_ERR("{\"listen\": \"127.0.0.1\"}",
               "t.json: listen: expected \"host:port\" such as \"127.0.0.1:3128\", got "
               "\"127.0.0.1\"");
    EXPECT_ERR("{\"listen\": [\"127.0.0.1:3128\", \"127.0.0.1:70000\"]}", "t.json: listen[1]: ");
    EXPECT_ERR("{\"listen\": \"::1:3128\"}", "listen: ", "needs brackets");
    EXPECT_ERR("{\"listen\": []}", "t.json: listen: ");
    EXPECT_ERR("{\"admin\": \"localhost\"}", "t.json: admin: ");
    EXPECT_ERR("{\"listen\": \"127.0.0.1:3128\", \"admin\": \"127.0.0.1:3128\"}",
               "t.json: admin:", "other than listen's");
    EXPECT_ERR("{\"connect_to\": {\"api.example.com\": \"10.0.0.1:443\"}}", "connect_to[");
    EXPECT_ERR(
        "{\"routes\": [{\"host\": \"a.example.com\", \"upstream\": \"https://a.example.com\", "
        "\"credential\": \"ghost\"}]}",
        "t.json: routes[0].credential: expected the name of an entry in \"credentials\", "
        "got \"ghost\"");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"t\", "
               "\"inject\": {\"value\": \"Bearer\"}}}}",
               "t.json: credentials.s.inject.value: expected a template containing {token}",
               "no {token}");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"t\", "
               "\"inject\": {\"header\": \"Bad Header\", \"value\": \"{token}\"}}}}",
               "credentials.s.inject.header: ");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"t\", "
               "\"headers\": {\"X-A\": \"a\\r\\nInjected: 1\"}}}}",
               "credentials.s.headers.X-A: ", "CR, LF");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"t\", "
               "\"headers\": {\"Authorization\": \"x\"}}}}",
               "credentials.s.headers.Authorization: ", "injected");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"t\", "
               "\"default_ttl\": 0}}}",
               "credentials.s.default_ttl: expected an integer from 1 to");
    EXPECT_ERR("{\"limits\": {\"max_conns\": 0, \"head_timeout_ms\": \"30s\"}}",
               "limits.max_conns: expected an integer from 1 to 1000000, got 0",
               "limits.head_timeout_ms: expected an integer", "got \"30s\"");
    EXPECT_ERR("{\"unmatched\": \"allow\"}",
               "t.json: unmatched: expected \"deny\" or \"forward\", got \"allow\"");
    EXPECT_ERR("{\"log_format\": \"xml\", \"connect\": \"yes\"}",
               "log_format: ", "connect: expected true or false, got \"yes\"");
    EXPECT_ERR("{\"client_auth\": {\"allow\": [\"10.0.0.0/40\"]}}", "client_auth.allow[0]: ");
    EXPECT_ERR("{\"routes\": [{\"host\": \"a.example.com:8080\", \"upstream\": "
               "\"https://a.example.com\"}]}",
               "routes[0].host: ", "\"port\"");
    EXPECT_ERR("{\"routes\": [{\"path\": \"api\", \"upstream\": \"https://a.example.com\"}]}",
               "routes[0].path: ");
    EXPECT_ERR("{\"credentials\": {\"c\": {\"provider\": \"custom\", \"request\": {\"url\": "
               "\"https://a.example.com\"}, \"response\": {\"token\": \"access_token\"}}}}",
               "credentials.c.response.token: expected a JSON pointer");
    EXPECT_ERR("{\"outbound_proxy\": \"ftp://p:21\"}", "outbound_proxy: ");
    /* An open proxy on a public address needs client_auth. */
    EXPECT_ERR("{\"listen\": \"0.0.0.0:3128\"}", "t.json: listen: expected a loopback address");
    ap_conf_t *c = load_ok("{\"listen\": \"0.0.0.0:3128\", \"client_auth\": {\"allow\": "
                           "\"10.0.0.0/8\"}}");
    ap_conf_unref(c);
    c = load_ok("{\"listen\": \"0.0.0.0:3128\", \"client_auth\": "
                "{\"insecure_allow_unauthenticated\": true}}");
    assert_true(c->allow_public_without_auth);
    ap_conf_unref(c);
}

static void
test_err_all_collected(void **state)
{
    ap_conf_t *c = ap_conf_load_file(DATA "errors.json", errbuf, sizeof(errbuf));
    assert_null(c);
    const char *want[] = {"errors.json: admin: ",
                          "errors.json: unmatched: ",
                          "errors.json: credentials.mico.scopes: ",
                          "errors.json: credentials.tel.token_url: ",
                          "errors.json: credentials.st.inject.value: ",
                          "errors.json: routes[0].credential: ",
                          "errors.json: routes[1]: "};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_contains(errbuf, want[i]);
    size_t lines = 1;
    for (const char *p = errbuf; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, sizeof(want) / sizeof(want[0]));
    assert_lacks(errbuf, "LEAK");
}

static void
test_err_json_syntax(void **state)
{
    ap_conf_t *c = ap_conf_load_file(DATA "syntax_error.json", errbuf, sizeof(errbuf));
    assert_null(c);
    assert_contains(errbuf, "syntax_error.json:4:44: JSON syntax error");
    assert_contains(errbuf, "unterminated string");
    assert_lacks(errbuf, "LEAK");
    EXPECT_ERR("{\n  \"a\": 1,\n}", "t.json:2:9: JSON syntax error near ','", "trailing comma");
    EXPECT_ERR("{\"token\": s3cr3t}", "t.json:1:11: ", "unquoted word");
    assert_lacks(errbuf, "s3cr3t");
    EXPECT_ERR("// comment\n{}", "t.json:1:1: ", "comments are not allowed");
    EXPECT_ERR("{\"a\": 1}\n{}", "t.json:2:1: ", "after the end");
    EXPECT_ERR("{\"a\" 1}", "t.json:1:6: ", "':'");
    EXPECT_ERR("", "t.json: (document): expected a JSON object, got an empty file");
    EXPECT_ERR("[1, 2]", "t.json: (document): expected a JSON object");
    /* Non-ASCII before the error: columns count characters. */
    EXPECT_ERR("{\"\xc3\xa9\xc3\xa9\": tru}", "t.json:1:8: ");
    /* A NUL byte inside the buffer is an error, not the end of the document. */
    static const char nul[] = "{}\0{}";
    assert_null(ap_conf_load_buffer(nul, sizeof(nul) - 1, "t.json", errbuf, sizeof(errbuf)));
    assert_contains(errbuf, "t.json:1:3: ");
    /* A UTF-8 BOM is tolerated. */
    c = load_ok("\xef\xbb\xbf{}");
    ap_conf_unref(c);
}

static void
test_err_env_and_files(void **state)
{
    unsetenv("TC_UNSET_VAR");
    EXPECT_ERR("{\"credentials\": {\"m\": {\"provider\": \"micovoice\", \"client_id\": "
               "\"${TC_UNSET_VAR}\", \"client_secret\": \"s\"}}}",
               "t.json: credentials.m.client_id: expected environment variable TC_UNSET_VAR to "
               "be set");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": {\"env\": "
               "\"TC_UNSET_VAR\"}}}}",
               "credentials.s.token: expected environment variable TC_UNSET_VAR to be set");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": {\"file\": "
               "\"/nonexistent/tc_secret\"}}}}",
               "t.json: credentials.s.token: expected a readable secret file, got "
               "\"/nonexistent/tc_secret\" (No such file or directory)");
    char path[512], json[1024];
    write_file("empty_secret", "\n", path, sizeof(path));
    snprintf(json, sizeof(json),
             "{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": {\"file\": "
             "\"%s\"}}}}",
             path);
    EXPECT_ERR(json, "credentials.s.token: ", "it is empty", path);
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": {\"file\": "
               "\"/tmp\"}}}}",
               "credentials.s.token: ", "directory");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": {}}}}",
               "credentials.s.token: expected exactly one of \"env\" or \"file\", got neither");
    EXPECT_ERR("{\"credentials\": {\"s\": {\"provider\": \"static\", \"token\": \"\"}}}",
               "credentials.s.token: expected a non-empty secret");
    EXPECT_ERR("{\"log_level\": \"${TC_BAD\"}", "log_level: ", "malformed");
    EXPECT_ERR("{\"tls\": {\"ca_file\": \"/nonexistent/ca.pem\"}}",
               "t.json: tls.ca_file: expected a readable CA bundle");
    assert_null(ap_conf_load_file("/nonexistent/authproxy.json", errbuf, sizeof(errbuf)));
    assert_contains(errbuf, "/nonexistent/authproxy.json: cannot read");
}

static void
test_err_truncation(void **state)
{
    /* Many errors into a small buffer: whole lines, a count of the rest, always terminated. */
    char small[600];
    memset(small, 'x', sizeof(small));
    static const char json[] = "{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, \"e\": 5, \"f\": 6}";
    assert_null(ap_conf_load_buffer(json, strlen(json), "t.json", small, sizeof(small)));
    assert_true(strlen(small) < sizeof(small));
    assert_contains(small, "more errors not shown");
    char tiny[8];
    assert_null(ap_conf_load_buffer(json, strlen(json), "t.json", tiny, sizeof(tiny)));
    assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
    assert_null(ap_conf_load_buffer(json, strlen(json), "t.json", NULL, 0));
}

/* --- Secrets -----------------------------------------------------------------------------------
 */

static void
test_secrets_never_printed(void **state)
{
    ap_conf_t *c = load_file_ok(DATA "secrets.json");
    char *out = dump(c);
    assert_lacks(out, "LEAK");
    assert_contains(out, "(secret)");
    assert_contains(out, "http://***@proxy:3128");
    assert_contains(out, "https://c.example.com/t?***");
    free(out);
    ap_conf_unref(c);

    /* The same secrets next to errors: no message quotes them. */
    static const char *const bad[] = {
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": \"LEAK-1\", "
        "\"inject\": {\"value\": \"nothing\"}}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": \"LEAK-2\\nx\"}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": 12345}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"omicall\", \"token_url\": "
        "\"https://o.example.com/api/auth?apiKey=LEAK-3\", \"api_key\": \"k\"}}}",
        "{\"outbound_proxy\": \"ftp://u:LEAK-4@p:1\"}",
        "{\"routes\": [{\"host\": \"a.example.com\", \"upstream\": \"https://u:LEAK-5@a/\"}]}",
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": \"t\", "
        "\"headers\": {\"X-Key\": \"LEAK-6\\r\\n\"}}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": \"LEAK-7${\"}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": \"LEAK-8\" \"x\"}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": \"LEAK-9\\q\"}}}",
        "{\"client_auth\": {\"users\": {\"a:b\": \"LEAK-10\"}}}",
        "{\"credentials\": {\"a\": {\"provider\": \"custom\", \"request\": {\"url\": "
        "\"https://c.example.com/t?k=LEAK-11\", \"form\": {\"a\": \"b\"}, \"json\": {\"c\": "
        "\"d\"}}, \"response\": {\"token\": \"/t\"}}}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ap_conf_t *b = load(bad[i]);
        if (b != NULL)
            fail_msg("accepted: %s", bad[i]);
        assert_lacks(errbuf, "LEAK");
    }
    assert_contains(errbuf, "got both");
}

static void
test_secret_forms_resolve(void **state)
{
    char path[512], json[2048];
    write_file("tok", "file-token\n", path, sizeof(path));
    setenv("TC_TOKEN", "env-token", 1);
    setenv("TC_PART", "mid", 1);
    setenv("TC_EMPTY", "", 1);
    setenv("TC_DIR", tmpdir, 1);
    snprintf(json, sizeof(json),
             "{\"credentials\": {"
             "\"a\": {\"provider\": \"static\", \"token\": {\"env\": \"TC_TOKEN\"}},"
             "\"b\": {\"provider\": \"static\", \"token\": {\"file\": \"%s\"}},"
             "\"c\": {\"provider\": \"static\", \"token\": \"pre-${TC_PART}-post\"},"
             "\"d\": {\"provider\": \"static\", \"token\": \"${TC_NOPE:-fallback}\"},"
             "\"e\": {\"provider\": \"static\", \"token\": \"${TC_EMPTY:-empty-fallback}\"},"
             "\"f\": {\"provider\": \"static\", \"token\": \"lit$${TC_PART}$x\"},"
             "\"g\": {\"provider\": \"static\", \"token\": {\"file\": \"${TC_DIR}/tok\"}},"
             "\"i\": {\"provider\": \"micovoice\", \"client_id\": {\"env\": \"TC_PART\"},"
             "  \"client_secret\": {\"env\": \"TC_TOKEN\"}},"
             "\"h\": {\"provider\": \"oauth2\", \"token_url\": \"https://o.example.com/t\","
             "  \"client_id\": \"${TC_PART}\", \"client_secret\": \"s\","
             "  \"params\": {\"plain\": \"v\", \"fromenv\": {\"env\": \"TC_TOKEN\"},"
             "  \"expanded\": \"${TC_PART}\", \"empty\": \"\"}}"
             "}, \"log_level\": \"${TC_NOPE:-warn}\"}",
             path);
    ap_conf_t *c = load_ok(json);
    assert_string_equal(ap_cred_conf_get(cred(c, "a"), "token"), "env-token");
    assert_string_equal(ap_cred_conf_get(cred(c, "b"), "token"), "file-token");
    assert_string_equal(ap_cred_conf_get(cred(c, "c"), "token"), "pre-mid-post");
    assert_string_equal(ap_cred_conf_get(cred(c, "d"), "token"), "fallback");
    assert_string_equal(ap_cred_conf_get(cred(c, "e"), "token"), "empty-fallback");
    assert_string_equal(ap_cred_conf_get(cred(c, "f"), "token"), "lit${TC_PART}$x");
    assert_string_equal(ap_cred_conf_get(cred(c, "g"), "token"), "file-token");
    assert_string_equal(ap_cred_conf_get(cred(c, "i"), "client_id"), "mid");
    assert_false(kv(&cred(c, "i")->fields, "client_id")->is_secret);
    const ap_cred_conf_t *h = cred(c, "h");
    assert_string_equal(ap_cred_conf_get(h, "client_id"), "mid");
    assert_false(kv(&h->params, "plain")->is_secret);
    assert_true(kv(&h->params, "fromenv")->is_secret);
    assert_string_equal(kv(&h->params, "fromenv")->value, "env-token");
    assert_true(kv(&h->params, "expanded")->is_secret);
    assert_string_equal(kv(&h->params, "empty")->value, "");
    assert_string_equal(c->log_level, "warn");
    ap_conf_unref(c);

    /* CRLF at the end of a secret file goes too; only one newline is stripped. */
    write_file("crlf", "crlf-token\r\n", path, sizeof(path));
    snprintf(json, sizeof(json),
             "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": {\"file\": "
             "\"%s\"}}}}",
             path);
    c = load_ok(json);
    assert_string_equal(ap_cred_conf_get(cred(c, "a"), "token"), "crlf-token");
    ap_conf_unref(c);
    write_file("two", "two\n\n", path, sizeof(path));
    snprintf(json, sizeof(json),
             "{\"credentials\": {\"a\": {\"provider\": \"static\", \"token\": {\"file\": "
             "\"%s\"}}}}",
             path);
    EXPECT_ERR(json, "credentials.a.token: ", "line break");

    /* Integers and booleans may come from the environment. */
    setenv("TC_TTL", "120", 1);
    setenv("TC_BOOL", "true", 1);
    c = load_ok("{\"connect\": \"${TC_BOOL}\", \"limits\": {\"max_conns\": \"${TC_TTL}\"}}");
    assert_true(c->allow_connect);
    assert_int_equal(c->limits.max_conns, 120);
    ap_conf_unref(c);
    unsetenv("TC_TOKEN");
    unsetenv("TC_PART");
    unsetenv("TC_EMPTY");
    unsetenv("TC_DIR");
    unsetenv("TC_TTL");
    unsetenv("TC_BOOL");
}

/* --- Digest ---------------------------------------------------------------------------------- */

static char *
digest_of(const char *json, const char *name)
{
    ap_conf_t *c = load_ok(json);
    char *d = strdup(cred(c, name)->digest);
    ap_conf_unref(c);
    return d;
}

static void
test_digest(void **state)
{
    static const char base[] =
        "{\"credentials\": {\"m\": {\"provider\": \"micovoice\", \"client_id\": \"id\", "
        "\"client_secret\": \"%s\", \"headers\": {%s}, \"prefetch\": %s}}, \"routes\": [%s]}";
    static const char r1[] =
        "{\"host\": \"a.example.com\", \"upstream\": \"https://a.example.com\", "
        "\"credential\": \"m\"}";
    static const char r2[] = "{\"path\": \"/m/\", \"upstream\": \"https://a.example.com\", "
                             "\"credential\": \"m\"}";
    static const char h1[] = "\"X-A\": \"1\", \"X-B\": \"2\"";
    static const char h2[] = "\"X-B\": \"2\", \"X-A\": \"1\"";
    char json[2048], routes[512];
    snprintf(routes, sizeof(routes), "%s, %s", r1, r2);
    snprintf(json, sizeof(json), base, "secret-1", h1, "false", routes);
    char *d0 = digest_of(json, "m");
    char *d1 = digest_of(json, "m");
    assert_string_equal(d0, d1); /* stable */
    snprintf(routes, sizeof(routes), "%s, %s", r2, r1);
    snprintf(json, sizeof(json), base, "secret-1", h2, "false", routes);
    char *d2 = digest_of(json, "m");
    assert_string_equal(d0, d2); /* route and header order do not matter */
    snprintf(json, sizeof(json), base, "secret-2", h1, "false", routes);
    char *d3 = digest_of(json, "m");
    assert_string_not_equal(d0, d3); /* a changed secret does */
    snprintf(json, sizeof(json), base, "secret-1", h1, "true", routes);
    char *d4 = digest_of(json, "m");
    assert_string_not_equal(d0, d4);
    snprintf(json, sizeof(json), base, "secret-1", "\"X-A\": \"1\"", "false", routes);
    char *d5 = digest_of(json, "m");
    assert_string_not_equal(d0, d5);
    for (const char *p = d0; *p; p++)
        assert_true((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'));
    free(d0);
    free(d1);
    free(d2);
    free(d3);
    free(d4);
    free(d5);
}

/* --- URL parsing ------------------------------------------------------------------------------ */

static void
test_parse_url(void **state)
{
    static const struct {
        const char *url;
        bool tls;
        const char *host;
        int port;
        const char *path;
    } ok[] = {
        {"https://api.example.com", true, "api.example.com", 443, ""},
        {"https://api.example.com/", true, "api.example.com", 443, ""},
        {"http://API.Example.COM:8080/v2/", false, "api.example.com", 8080, "/v2"},
        {"HTTPS://x.example.com/a/b", true, "x.example.com", 443, "/a/b"},
        {"http://[::1]:9000/p", false, "::1", 9000, "/p"},
        {"http://127.0.0.1", false, "127.0.0.1", 80, ""},
        {"https://x.example.com/a%20b", true, "x.example.com", 443, "/a%20b"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        bool tls = !ok[i].tls;
        char *host = NULL, *path = NULL;
        int port = 0;
        if (ap_conf_parse_url(ok[i].url, &tls, &host, &port, &path) != AP_OK)
            fail_msg("rejected %s", ok[i].url);
        assert_int_equal(tls, ok[i].tls);
        assert_string_equal(host, ok[i].host);
        assert_int_equal(port, ok[i].port);
        assert_string_equal(path, ok[i].path);
        free(host);
        free(path);
    }
    static const char *const bad[] = {
        "ftp://x.example.com", "https://",        "https://:443",      "https://u:p@x.example.com",
        "https://x:0",         "https://x:65536", "https://x:8a",      "https://x/?q=1",
        "https://x/#f",        "https://[zz]/",   "https://a..b/",     "https://x/a b",
        "https://x/%zz",       "x.example.com",   "https://x_y:80:90", "https://[::1/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *host = NULL, *path = NULL;
        bool tls;
        int port;
        if (ap_conf_parse_url(bad[i], &tls, &host, &port, &path) == AP_OK)
            fail_msg("accepted %s", bad[i]);
        assert_null(host);
        assert_null(path);
    }
    assert_int_equal(ap_conf_parse_url("https://x.example.com", NULL, NULL, NULL, NULL), AP_OK);
}

/* --- Dump ------------------------------------------------------------------------------------- */

static void
test_dump(void **state)
{
    setenv("TC_BOB_PASSWORD", "bob-pass", 1);
    ap_conf_t *c = load_file_ok(DATA "valid_all.json");
    unsetenv("TC_BOB_PASSWORD");
    char *out = dump(c);
    assert_contains(out, "listen          127.0.0.1:3128");
    assert_contains(out, "listen          [::1]:3129");
    assert_contains(out, "unmatched       forward");
    assert_contains(out, "api.example.com:8080/v1/");
    assert_contains(out, "-> https://api.example.com:8443/base/  credential st");
    assert_contains(out, "(base-URL mode)");
    assert_contains(out, "mico: provider micovoice");
    assert_contains(out, "client_id       mico-id");
    assert_contains(out, "users: alice, bob");
    static const char *const secrets[] = {
        "static-token", "omi-key",  "ants-secret", "tel-pass",  "man-secret",
        "mico-secret",  "o2-pass",  "header-key",  "cu-secret", "cu-basic-pass",
        "alice-pass",   "bob-pass", "proxy-pass"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        assert_lacks(out, secrets[i]);
    free(out);
    ap_conf_unref(c);
}

/* --- Env-only mode ---------------------------------------------------------------------------- */

static ap_conf_t *
load_env(bool *used)
{
    return ap_conf_load_env(used, errbuf, sizeof(errbuf));
}

static void
test_env_unused(void **state)
{
    clear_authproxy_env();
    bool used = true;
    assert_null(load_env(&used));
    assert_false(used);
}

static void
test_env_static(void **state)
{
    clear_authproxy_env();
    setenv("AUTHPROXY_UPSTREAM", "https://api.micovoice.com", 1);
    setenv("AUTHPROXY_TOKEN", "env-static-token${NOT_EXPANDED}", 1);
    bool used = false;
    ap_conf_t *c = load_env(&used);
    if (c == NULL)
        fail_msg("%s", errbuf);
    assert_true(used);
    assert_int_equal(c->ncreds, 1);
    assert_string_equal(c->creds[0].provider, "static");
    assert_string_equal(ap_cred_conf_get(&c->creds[0], "token"), "env-static-token${NOT_EXPANDED}");
    assert_int_equal(c->nroutes, 1);
    assert_string_equal(c->routes[0].host, "api.micovoice.com");
    assert_ptr_equal(c->routes[0].cred, &c->creds[0]);
    assert_string_equal(c->listen[0].port, "3128");
    ap_conf_unref(c);
    clear_authproxy_env();
}

static void
test_env_micovoice(void **state)
{
    char path[512];
    write_file("mico_secret", "mico-file-secret\n", path, sizeof(path));
    clear_authproxy_env();
    setenv("AUTHPROXY_UPSTREAM", "https://api.micovoice.com/", 1);
    setenv("AUTHPROXY_PROVIDER", "micovoice", 1);
    setenv("AUTHPROXY_CLIENT_ID", "mico-id", 1);
    setenv("AUTHPROXY_CLIENT_SECRET_FILE", path, 1);
    setenv("AUTHPROXY_SCOPE", "campaigns:read outbound_calls:read", 1);
    setenv("AUTHPROXY_ROUTE_PATH", "/mico/", 1);
    setenv("AUTHPROXY_LISTEN", "127.0.0.1:13128", 1);
    setenv("AUTHPROXY_ADMIN", "off", 1);
    setenv("AUTHPROXY_CONNECT_TO", "api.micovoice.com:443=127.0.0.1:8443", 1);
    setenv("AUTHPROXY_PREFETCH", "yes", 1);
    setenv("AUTHPROXY_TOKEN_WAIT_MS", "2000", 1);
    bool used = false;
    ap_conf_t *c = load_env(&used);
    if (c == NULL)
        fail_msg("%s", errbuf);
    const ap_cred_conf_t *cr = &c->creds[0];
    assert_string_equal(cr->provider, "micovoice");
    assert_string_equal(ap_cred_conf_get(cr, "client_id"), "mico-id");
    assert_string_equal(ap_cred_conf_get(cr, "client_secret"), "mico-file-secret");
    assert_string_equal(ap_cred_conf_get(cr, "token_url"), "https://api.micovoice.com/oauth/token");
    assert_int_equal(cr->nscope, 2);
    assert_true(cr->prefetch);
    assert_string_equal(c->listen[0].port, "13128");
    assert_int_equal(c->nadmin, 0);
    assert_int_equal(c->nconnect_to, 1);
    assert_string_equal(c->connect_to[0].to, "127.0.0.1:8443");
    assert_int_equal(c->limits.token_wait_ms, 2000);
    assert_int_equal(c->nroutes, 2);
    assert_string_equal(c->routes[0].host, "api.micovoice.com");
    assert_null(c->routes[1].host);
    assert_string_equal(c->routes[1].path, "/mico/");
    assert_string_equal(c->routes[1].up_path, "");
    char *out = dump(c);
    assert_lacks(out, "mico-file-secret");
    free(out);
    ap_conf_unref(c);
    clear_authproxy_env();
}

static void
test_env_errors(void **state)
{
    clear_authproxy_env();
    setenv("AUTHPROXY_UPSTREAM", "ftp://x", 1);
    setenv("AUTHPROXY_PROVIDER", "oauth2", 1);
    setenv("AUTHPROXY_CLIENT_SECRET", "LEAK-env-secret", 1);
    setenv("AUTHPROXY_PREFETCH", "maybe", 1);
    setenv("AUTHPROXY_LISTEN", "0.0.0.0:3128", 1);
    bool used = false;
    assert_null(load_env(&used));
    assert_true(used);
    assert_contains(errbuf, "(environment): routes[0].upstream (AUTHPROXY_UPSTREAM): expected an "
                            "http:// or https:// base URL");
    assert_contains(errbuf, "credentials.default.token_url (AUTHPROXY_TOKEN_URL): ");
    assert_contains(errbuf, "credentials.default.client_id (AUTHPROXY_CLIENT_ID): ");
    assert_contains(errbuf, "credentials.default.prefetch (AUTHPROXY_PREFETCH): expected true or "
                            "false, got \"maybe\"");
    assert_contains(errbuf, "listen[0] (AUTHPROXY_LISTEN): expected a loopback address");
    assert_lacks(errbuf, "LEAK");
    clear_authproxy_env();

    setenv("AUTHPROXY_UPSTREAM", "https://api.example.com", 1);
    assert_null(load_env(&used));
    assert_contains(errbuf, "credentials.default.token (AUTHPROXY_TOKEN or AUTHPROXY_TOKEN_FILE): "
                            "expected a secret");
    setenv("AUTHPROXY_PROVIDER", "nope", 1);
    assert_null(load_env(&used));
    assert_contains(errbuf, "credentials.default.provider (AUTHPROXY_PROVIDER): ");
    setenv("AUTHPROXY_PROVIDER", "none", 1);
    ap_conf_t *c = load_env(&used);
    if (c == NULL)
        fail_msg("%s", errbuf);
    assert_int_equal(c->ncreds, 0);
    assert_null(c->routes[0].credential);
    ap_conf_unref(c);
    clear_authproxy_env();
}

/* --- Shipped configs -------------------------------------------------------------------------- */

static void
test_shipped_config(void **state)
{
    unsetenv("AUTHPROXY_DEMO_TOKEN");
    ap_conf_t *c = load_file_ok(AP_SOURCE_DIR "/conf/authproxy.json");
    assert_string_equal(c->listen[0].host, "127.0.0.1");
    assert_string_equal(c->listen[0].port, "3128");
    assert_string_equal(c->admin[0].port, "9090");
    assert_false(c->unmatched_forward);
    const ap_cred_conf_t *demo = cred(c, "demo");
    assert_string_equal(demo->provider, "static");
    assert_string_equal(ap_cred_conf_get(demo, "token"), "demo-token");
    bool host_mode = false, base_url_mode = false;
    for (size_t i = 0; i < c->nroutes; i++) {
        host_mode |= c->routes[i].host != NULL;
        base_url_mode |= c->routes[i].host == NULL && c->routes[i].path != NULL;
        assert_ptr_equal(c->routes[i].cred, demo);
    }
    assert_true(host_mode);
    assert_true(base_url_mode);
    ap_conf_unref(c);
}

static void
test_examples_load(void **state)
{
    char path[512];
    write_file("manis_secret", "manis-secret\n", path, sizeof(path));
    write_file("proxy_password_batch", "batch-pass\n", path, sizeof(path));
    static const char *const vars[][2] = {
        {"SECRETS_DIR", NULL},
        {"MICO_CLIENT_ID", "mico-id"},
        {"MICO_CLIENT_SECRET", "mico-secret"},
        {"ANTSOMI_CLIENT_ID", "ants-id"},
        {"ANTSOMI_CLIENT_SECRET", "ants-secret"},
        {"ANTSOMI_API_HOST", "api.antsomi.example"},
        {"OMICALL_API_HOST", "omi.example.com"},
        {"OMICALL_API_KEY", "omi-key"},
        {"TELMAI_AUTH_ENDPOINT", "https://auth.telm.ai"},
        {"TELMAI_CLIENT_ID", "tel-id"},
        {"TELMAI_USERNAME", "ops@example.com"},
        {"TELMAI_PASSWORD", "tel-pass"},
        {"TELMAI_TENANT", "acme"},
        {"TELMAI_API_HOST", "api.telm.ai"},
        {"MANIS_API_HOST", "api.manis.example"},
        {"MANIS_MERCHANT_ID", "M-1"},
        {"OAUTH2_ISSUER_HOST", "login.example.com"},
        {"OAUTH2_CLIENT_ID", "o2-id"},
        {"OAUTH2_CLIENT_SECRET", "o2-secret"},
        {"LEGACY_USER", "legacy"},
        {"LEGACY_PASSWORD", "legacy-pass"},
        {"WEATHER_API_KEY", "weather-key"},
        {"PROXY_PASSWORD_CI", "ci-pass"},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        setenv(vars[i][0], vars[i][1] ? vars[i][1] : tmpdir, 1);
    static const char *const expected[] = {"antsomi",       "custom", "manis",
                                           "micovoice",     "oauth2", "omicall",
                                           "shared-egress", "static", "telmai"};
    DIR *d = opendir(AP_SOURCE_DIR "/conf/examples");
    assert_non_null(d);
    size_t n = 0, seen = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/conf/examples/%s", AP_SOURCE_DIR, de->d_name);
        ap_conf_t *c = load_file_ok(path);
        char *out = dump(c);
        for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
            if (vars[i][1] != NULL && (strstr(vars[i][0], "SECRET") ||
                                       strstr(vars[i][0], "PASSWORD") || strstr(vars[i][0], "KEY")))
                assert_lacks(out, vars[i][1]);
        assert_lacks(out, "manis-secret");
        assert_lacks(out, "batch-pass");
        free(out);
        ap_conf_unref(c);
        for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
            if (strncmp(de->d_name, expected[i], l - 5) == 0 && strlen(expected[i]) == l - 5)
                seen++;
        n++;
    }
    closedir(d);
    assert_int_equal(seen, sizeof(expected) / sizeof(expected[0]));
    assert_true(n >= seen);
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i][0]);
}

/* custom refresh_request: parsed like request (url defaults to the request's), needs the
 * {refresh_token} placeholder and a response pointer to the refresh token. */
static void
test_custom_refresh_request(void **state)
{
    (void)state;
#define CUSTOM_RR(rr, resp)                                                                        \
    "{\"credentials\":{\"c\":{\"provider\":\"custom\",\"request\":{\"url\":"                       \
    "\"https://auth.example.com/login\",\"json\":{\"user\":\"u\"}},\"refresh_request\":" rr        \
    ",\"response\":" resp "}},\"routes\":[{\"host\":\"a.example\",\"upstream\":"                   \
    "\"https://a.example\",\"credential\":\"c\"}]}"
    ap_conf_t *c =
        load_ok(CUSTOM_RR("{\"form\":{\"grant\":\"refresh\",\"rt\":\"{refresh_token}\"}}",
                          "{\"token\":\"/t\",\"refresh_token\":\"/r\"}"));
    const ap_cred_conf_t *cu = cred(c, "c");
    assert_true(cu->custom.has_refresh);
    assert_string_equal(cu->custom.refresh.url, "https://auth.example.com/login");
    assert_string_equal(cu->custom.refresh.method, "POST");
    assert_string_equal(kv(&cu->custom.refresh.form, "rt")->value, "{refresh_token}");
    char *d = dump(c);
    assert_contains(d, "refresh request");
    free(d);
    ap_conf_unref(c);

    EXPECT_ERR(CUSTOM_RR("{\"form\":{\"grant\":\"refresh\"}}",
                         "{\"token\":\"/t\",\"refresh_token\":\"/r\"}"),
               "credentials.c.refresh_request: expected \"{refresh_token}\" in one of its values");
    EXPECT_ERR(
        CUSTOM_RR("{\"query\":{\"rt\":\"{refresh_token}\"}}", "{\"token\":\"/t\"}"),
        "credentials.c.response.refresh_token: expected a JSON pointer to the refresh token");
    EXPECT_ERR(CUSTOM_RR("{\"method\":\"PUT\",\"query\":{\"rt\":\"{refresh_token}\"}}",
                         "{\"token\":\"/t\",\"refresh_token\":\"/r\"}"),
               "credentials.c.refresh_request.method: expected \"GET\" or \"POST\"");
#undef CUSTOM_RR
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_admin_disabled_and_forms),
        cmocka_unit_test(test_valid_all_providers),
        cmocka_unit_test(test_scope_forms),
        cmocka_unit_test(test_custom_equals_rendering),
        cmocka_unit_test(test_err_unknown_keys),
        cmocka_unit_test(test_err_missing_required),
        cmocka_unit_test(test_err_bad_values),
        cmocka_unit_test(test_err_all_collected),
        cmocka_unit_test(test_err_json_syntax),
        cmocka_unit_test(test_err_env_and_files),
        cmocka_unit_test(test_err_truncation),
        cmocka_unit_test(test_secrets_never_printed),
        cmocka_unit_test(test_secret_forms_resolve),
        cmocka_unit_test(test_digest),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_env_unused),
        cmocka_unit_test(test_env_static),
        cmocka_unit_test(test_env_micovoice),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_shipped_config),
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_custom_refresh_request),
    };
    return cmocka_run_group_tests_name("conf", tests, group_setup, group_teardown);
}
