/*
 * conf_cred.c: "credentials": the provider schema table, the custom request template, inject
 * and extra headers, and the settings digest that lets a reload keep unchanged tokens.
 *
 * What each provider takes is data (providers[] below); the few rules that span fields (an
 * oauth2 grant's requirements, OMICall's base URL) are small check functions beside it.
 */
#include "conf_internal.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --- Schema ---------------------------------------------------------------------------------- */

#define F_REQ 0x1u    /* required */
#define F_SECRET 0x2u /* a secret: is_secret set, never printed (all fields take env/file) */
#define F_URL 0x4u    /* an http(s) URL; a query string is allowed */

typedef struct field_spec_s {
    const char *name;
    unsigned flags;
    const char *def;           /* default when absent, or NULL */
    const char *const *one_of; /* allowed values, or NULL */
} field_spec_t;

#define X_SCOPE 0x1u     /* takes "scope" */
#define X_SCOPE_REQ 0x2u /* ... and requires it */
#define X_PARAMS 0x4u    /* takes "params" */
#define X_CUSTOM 0x8u    /* takes "request" and "response" */

/* Most fields a provider has (oauth2 has 10); the table below must stay within it. */
#define MAX_FIELDS 12

typedef struct provider_spec_s {
    const char *name;
    field_spec_t fields[MAX_FIELDS];
    unsigned extras;
    /* Rules spanning fields; runs after the fields are parsed. */
    void (*check)(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c);
} provider_spec_t;

static const char *const grants[] = {"client_credentials", "password", "refresh_token", NULL};
static const char *const auth_methods[] = {"client_secret_basic", "client_secret_post", NULL};

static void check_omicall(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c);
static void check_oauth2(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c);

/* Defaults come from the providers' documents where they give a fixed endpoint. Manis has none:
 * its document's server URL is broken ("https:/"), so token_url is required. */
static const provider_spec_t providers[] = {
    {"static", {{"token", F_REQ | F_SECRET, NULL, NULL}}, 0, NULL},
    {"oauth2",
     {{"token_url", F_REQ | F_URL, NULL, NULL},
      {"grant", 0, "client_credentials", grants},
      {"client_id", 0, NULL, NULL},
      {"client_secret", F_SECRET, NULL, NULL},
      {"auth_method", 0, "client_secret_basic", auth_methods},
      {"audience", 0, NULL, NULL},
      {"resource", 0, NULL, NULL},
      {"username", 0, NULL, NULL},
      {"password", F_SECRET, NULL, NULL},
      {"refresh_token", F_SECRET, NULL, NULL}},
     X_SCOPE | X_PARAMS,
     check_oauth2},
    {"custom", {{NULL, 0, NULL, NULL}}, X_CUSTOM, NULL},
    {"omicall",
     {{"token_url", F_REQ | F_URL, NULL, NULL}, {"api_key", F_REQ | F_SECRET, NULL, NULL}},
     0,
     check_omicall},
    {"antsomi",
     {{"token_url", F_URL, "https://iam.ants.tech/oauth/token", NULL},
      {"client_id", F_REQ, NULL, NULL},
      {"client_secret", F_REQ | F_SECRET, NULL, NULL}},
     X_SCOPE | X_SCOPE_REQ,
     NULL},
    {"telmai",
     {{"token_url", F_REQ | F_URL, NULL, NULL},
      {"client_id", F_REQ, NULL, NULL},
      {"username", F_REQ, NULL, NULL},
      {"password", F_REQ | F_SECRET, NULL, NULL},
      {"tenant", 0, NULL, NULL}},
     0,
     NULL},
    {"manis",
     {{"token_url", F_REQ | F_URL, NULL, NULL},
      {"merchant_id", F_REQ, NULL, NULL},
      {"secret", F_REQ | F_SECRET, NULL, NULL}},
     0,
     NULL},
    {"micovoice",
     {{"token_url", F_URL, "https://api.micovoice.com/oauth/token", NULL},
      {"client_id", F_REQ, NULL, NULL},
      {"client_secret", F_REQ | F_SECRET, NULL, NULL}},
     X_SCOPE,
     NULL},
};

const char *const ap_conf__provider_names[] = {
    "static", "oauth2", "custom", "omicall", "antsomi", "telmai", "manis", "micovoice", NULL};

/* Keys every credential takes besides its provider's. */
static const char *const common_keys[] = {"provider",   "prefetch", "default_ttl",
                                          "timeout_ms", "inject",   "headers"};

/* Token lifetime when nothing else states one: at most a year. */
#define MAX_DEFAULT_TTL_S (365LL * 86400)
/* Token endpoint timeout: 100 ms is the least a TLS handshake can use; 10 min is a hang. */
#define MIN_TOKEN_TIMEOUT_MS 100
#define MAX_TOKEN_TIMEOUT_MS 600000
/* auth/ resolves pointer segments in a 256-byte buffer. */
#define MAX_POINTER_SEGMENT 255
/* Credential names appear in /tokens/<name>/refresh and metrics labels. */
#define MAX_CRED_NAME 64

static const provider_spec_t *
find_provider(const char *name)
{
    for (size_t i = 0; i < AP_ARRAY_LEN(providers); i++)
        if (strcmp(providers[i].name, name) == 0)
            return &providers[i];
    return NULL;
}

size_t
ap_conf__provider_fields(const char *provider, ap_conf__field_info_t *out, size_t max, bool *scope,
                         bool *params)
{
    const provider_spec_t *ps = find_provider(provider);
    *scope = ps != NULL && (ps->extras & X_SCOPE);
    *params = ps != NULL && (ps->extras & X_PARAMS);
    size_t n = 0;
    for (size_t i = 0; ps != NULL && i < MAX_FIELDS && ps->fields[i].name && n < max; i++) {
        out[n].name = ps->fields[i].name;
        out[n].secret = (ps->fields[i].flags & F_SECRET) != 0;
        n++;
    }
    return n;
}

/* --- Name -> value tables ----------------------------------------------------------------------
 */

static void
kv_add(ap_kvlist_t *l, const char *name, char *value, bool secret)
{
    l->items = ap_xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
    l->items[l->n].name = ap_xstrdup(name);
    l->items[l->n].value = value;
    l->items[l->n].is_secret = secret;
    l->n++;
}

void
ap_conf__kv_free(ap_kvlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].name);
        ap_free_secret(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static ap_kv_t *
kv_find(ap_kvlist_t *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

#define KV_HEADERS 0x1u /* names are header names, values header values */

/* An object of name -> value. Values may use every secret form; a value is marked secret when it
 * came from env/file/${VAR} or its name looks like a credential ("client_secret", "X-Api-Key"). */
static void
parse_kv(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_kvlist_t *out, unsigned mode)
{
    if (j == NULL)
        return;
    if (!ap_conf__object(x, j, path, "an object of name -> value", NULL))
        return;
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        char p[AP_CONF_PATH_MAX];
        ap_conf__path_key(p, path, it->string);
        if (mode & KV_HEADERS) {
            if (!ap_conf__valid_token(it->string)) {
                ap_conf__err(x, p, "expected a header name (letters, digits, '-', ...), got %s",
                             it->string[0] ? "a name with invalid characters" : "\"\"");
                continue;
            }
            if (ap_conf__reserved_header(it->string)) {
                ap_conf__err(x, p, "expected a header the proxy does not manage itself, got \"%s\"",
                             it->string);
                continue;
            }
            bool dup = false;
            for (size_t i = 0; i < out->n && !dup; i++)
                dup = strcasecmp(out->items[i].name, it->string) == 0;
            if (dup) {
                ap_conf__err(x, p,
                             "expected each header once, got \"%s\" again (names are "
                             "case-insensitive)",
                             it->string);
                continue;
            }
        } else if (it->string[0] == '\0') {
            ap_conf__err(x, p, "expected a non-empty name, got \"\"");
            continue;
        }
        bool secret = false;
        char *v = ap_conf__kv_value(x, it, p, &secret);
        if (v == NULL)
            continue;
        if ((mode & KV_HEADERS) && !ap_conf__valid_header_value(v)) {
            /* The value is not echoed: fixed headers often carry keys. */
            ap_conf__err(x, p,
                         "expected a header value without control characters, got one "
                         "with CR, LF or another control character");
            ap_free_secret(v);
            continue;
        }
        kv_add(out, it->string, v, secret || ap_conf__sensitive_name(it->string));
    }
}

/* --- Field helpers -------------------------------------------------------------------------- */

static void
check_url_field(ap_conf__ctx_t *x, const char *path, const char *url)
{
    const char *why;
    if (ap_conf__parse_url(url, true, NULL, NULL, NULL, NULL, &why) != AP_OK) {
        char *safe = ap_conf__safe_url(url);
        ap_conf__err(x, path, "expected an http:// or https:// URL, got \"%s\" (%s)", safe, why);
        free(safe);
    }
}

static void
add_scope(ap_cred_conf_t *c, const char *s, size_t n)
{
    c->scope = ap_xrealloc(c->scope, (c->nscope + 1) * sizeof(char *));
    c->scope[c->nscope++] = ap_xstrndup(s, n);
}

/* "scope": an array of scopes, or one string of scopes separated by spaces and/or commas. */
static void
parse_scope(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    if (cJSON_IsString(j)) {
        char *s = ap_conf__str(x, j, path, AP_CONF_NOCTL);
        if (s == NULL)
            return;
        for (const char *p = s; *p;) {
            p += strspn(p, " ,\t");
            size_t n = strcspn(p, " ,\t");
            if (n > 0)
                add_scope(c, p, n);
            p += n;
        }
        free(s);
        return;
    }
    if (!cJSON_IsArray(j)) {
        ap_conf__err(x, path, "expected an array of scopes or a string, got %s", ap_conf__type(j));
        return;
    }
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, j)
    {
        char p[AP_CONF_PATH_MAX];
        ap_conf__path_idx(p, path, i++);
        char *s = ap_conf__str(x, it, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
        if (s == NULL)
            continue;
        /* Providers join the list with ' ' or ','; either inside one item would split it. */
        if (strpbrk(s, " ,\t") != NULL) {
            char got[128];
            ap_conf__got(it, false, got, sizeof(got));
            ap_conf__err(x, p, "expected one scope (no spaces or commas), got %s", got);
        } else {
            add_scope(c, s, strlen(s));
        }
        free(s);
    }
}

static bool
valid_pointer(const char *p)
{
    if (p[0] != '/')
        return false;
    size_t seg = 0;
    for (p++; *p; p++) {
        if (*p == '/') {
            seg = 0;
            continue;
        }
        if (*p == '~' && p[1] != '0' && p[1] != '1')
            return false;
        if (++seg > MAX_POINTER_SEGMENT)
            return false;
    }
    return true;
}

static char *
get_pointer(ap_conf__ctx_t *x, const cJSON *j, const char *path)
{
    char *v = ap_conf__str(x, j, path, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
    if (v != NULL && !valid_pointer(v)) {
        char got[128];
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, path,
                     "expected a JSON pointer such as \"/access_token\" or \"/data/token\" "
                     "(starts with \"/\", \"~\" only as ~0 or ~1), got %s",
                     got);
        free(v);
        v = NULL;
    }
    return v;
}

/* --- custom ----------------------------------------------------------------------------------- */

static void
custom_req_free(ap_custom_req_t *r)
{
    free(r->method);
    ap_free_secret(r->url); /* its query may carry a key */
    ap_conf__kv_free(&r->headers);
    ap_conf__kv_free(&r->query);
    ap_conf__kv_free(&r->form);
    ap_conf__kv_free(&r->json);
    free(r->basic_user);
    ap_free_secret(r->basic_pass);
}

static bool
kv_mentions_refresh(const ap_kvlist_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].value != NULL && strstr(l->items[i].value, "{refresh_token}") != NULL)
            return true;
    return false;
}

static bool
custom_mentions_refresh(const ap_custom_req_t *r)
{
    return kv_mentions_refresh(&r->headers) || kv_mentions_refresh(&r->query) ||
           kv_mentions_refresh(&r->form) || kv_mentions_refresh(&r->json);
}

static void
parse_custom_request(ap_conf__ctx_t *x, const cJSON *req, const char *path, ap_custom_req_t *r,
                     const char *default_url)
{
    static const char *const keys[] = {"method", "url",  "headers", "query",
                                       "form",   "json", "basic",   NULL};
    static const char *const methods[] = {"GET", "POST", NULL};
    if (!ap_conf__object(x, req, path, "an object {method, url, headers, query, form, json, basic}",
                         keys))
        return;
    char p[AP_CONF_PATH_MAX];
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(req, "method");
    ap_conf__path_key(p, path, "method");
    char *method = m ? ap_conf__str(x, m, p, AP_CONF_NONEMPTY) : ap_xstrdup("POST");
    if (method != NULL) {
        for (char *q = method; *q; q++)
            if (*q >= 'a' && *q <= 'z')
                *q = (char)(*q - ('a' - 'A'));
        if (strcmp(method, methods[0]) != 0 && strcmp(method, methods[1]) != 0) {
            char got[128];
            ap_conf__got(m, false, got, sizeof(got));
            ap_conf__err(x, p, "expected \"GET\" or \"POST\", got %s", got);
        }
    }
    r->method = method ? method : ap_xstrdup("POST");

    const cJSON *u = cJSON_GetObjectItemCaseSensitive(req, "url");
    ap_conf__path_key(p, path, "url");
    if (u == NULL && default_url != NULL)
        r->url = ap_xstrdup(default_url);
    else if (u == NULL)
        ap_conf__err(x, p, "expected the token endpoint URL (required), got nothing");
    else if ((r->url = ap_conf__str(x, u, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL)) != NULL)
        check_url_field(x, p, r->url);

    ap_conf__path_key(p, path, "headers");
    parse_kv(x, cJSON_GetObjectItemCaseSensitive(req, "headers"), p, &r->headers, KV_HEADERS);
    ap_conf__path_key(p, path, "query");
    parse_kv(x, cJSON_GetObjectItemCaseSensitive(req, "query"), p, &r->query, 0);
    ap_conf__path_key(p, path, "form");
    parse_kv(x, cJSON_GetObjectItemCaseSensitive(req, "form"), p, &r->form, 0);
    ap_conf__path_key(p, path, "json");
    parse_kv(x, cJSON_GetObjectItemCaseSensitive(req, "json"), p, &r->json, 0);
    if (r->form.n > 0 && r->json.n > 0)
        ap_conf__err(x, path, "expected a \"form\" body or a \"json\" body, got both");
    if (strcmp(r->method, "GET") == 0 && (r->form.n > 0 || r->json.n > 0))
        ap_conf__err(x, path, "expected no body for method GET (use \"query\"), got \"%s\"",
                     r->form.n > 0 ? "form" : "json");

    const cJSON *basic = cJSON_GetObjectItemCaseSensitive(req, "basic");
    static const char *const bkeys[] = {"user", "password", NULL};
    ap_conf__path_key(p, path, "basic");
    if (basic != NULL && ap_conf__object(x, basic, p, "an object {user, password}", bkeys)) {
        char q[AP_CONF_PATH_MAX];
        const cJSON *user = cJSON_GetObjectItemCaseSensitive(basic, "user");
        const cJSON *pass = cJSON_GetObjectItemCaseSensitive(basic, "password");
        ap_conf__path_key(q, p, "user");
        if (user == NULL)
            ap_conf__err(x, q, "expected the HTTP Basic user name (required), got nothing");
        else
            r->basic_user = ap_conf__str(x, user, q, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
        if (r->basic_user != NULL && strchr(r->basic_user, ':') != NULL) {
            ap_conf__err(x, q, "expected a user name without \":\" (HTTP Basic), got one");
        }
        ap_conf__path_key(q, p, "password");
        if (pass == NULL)
            ap_conf__err(x, q, "expected the HTTP Basic password (required), got nothing");
        else
            r->basic_pass = ap_conf__secret(x, pass, q, NULL);
    }
}

static void
parse_custom_response(ap_conf__ctx_t *x, const cJSON *res, const char *path, ap_cred_conf_t *c)
{
    static const char *const keys[] = {"token",         "token_type", "expires_in", "expires_at",
                                       "refresh_token", "success",    NULL};
    if (!ap_conf__object(x, res, path,
                         "an object {token, token_type, expires_in, expires_at, refresh_token, "
                         "success}",
                         keys))
        return;
    struct {
        const char *key;
        char **dst;
    } ptrs[] = {{"token", &c->custom.token_ptr},
                {"token_type", &c->custom.type_ptr},
                {"expires_in", &c->custom.expires_in_ptr},
                {"expires_at", &c->custom.expires_at_ptr},
                {"refresh_token", &c->custom.refresh_ptr}};
    char p[AP_CONF_PATH_MAX];
    for (size_t i = 0; i < AP_ARRAY_LEN(ptrs); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, ptrs[i].key);
        ap_conf__path_key(p, path, ptrs[i].key);
        if (v != NULL)
            *ptrs[i].dst = get_pointer(x, v, p);
        else if (i == 0)
            ap_conf__err(x, p,
                         "expected a JSON pointer to the token, e.g. \"/access_token\" "
                         "(required), got nothing");
    }
    const cJSON *succ = cJSON_GetObjectItemCaseSensitive(res, "success");
    static const char *const skeys[] = {"pointer", "equals", NULL};
    ap_conf__path_key(p, path, "success");
    if (succ == NULL || !ap_conf__object(x, succ, p, "an object {pointer, equals}", skeys))
        return;
    char q[AP_CONF_PATH_MAX];
    const cJSON *ptr = cJSON_GetObjectItemCaseSensitive(succ, "pointer");
    ap_conf__path_key(q, p, "pointer");
    if (ptr == NULL)
        ap_conf__err(x, q,
                     "expected a JSON pointer such as \"/status_code\" (required), got "
                     "nothing");
    else
        c->custom.success_ptr = get_pointer(x, ptr, q);
    const cJSON *eq = cJSON_GetObjectItemCaseSensitive(succ, "equals");
    ap_conf__path_key(q, p, "equals");
    if (eq == NULL)
        return;
    if (cJSON_IsString(eq) || cJSON_IsNumber(eq) || cJSON_IsBool(eq)) {
        bool secret;
        c->custom.success_equals = ap_conf__kv_value(x, eq, q, &secret);
    } else {
        ap_conf__err(x, q, "expected a string, number or boolean, got %s", ap_conf__type(eq));
    }
}

/* --- Cross-field rules ------------------------------------------------------------------------ */

/* A field another one requires; one that was given but rejected has its own message already. */
static void
need(ap_conf__ctx_t *x, const cJSON *j, const char *path, const char *field, const char *why)
{
    if (cJSON_GetObjectItemCaseSensitive(j, field) != NULL)
        return;
    char p[AP_CONF_PATH_MAX];
    ap_conf__path_key(p, path, field);
    ap_conf__err(x, p, "expected a value (required %s), got nothing", why);
}

static void
check_oauth2(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    static const char *const reserved[] = {
        "grant_type", "client_id", "client_secret", "scope",         "audience",
        "resource",   "username",  "password",      "refresh_token", NULL};
    const char *grant = ap_cred_conf_get(c, "grant");
    if (grant != NULL && strcmp(grant, "client_credentials") == 0) {
        need(x, j, path, "client_id", "by grant \"client_credentials\"");
        need(x, j, path, "client_secret", "by grant \"client_credentials\"");
    } else if (grant != NULL && strcmp(grant, "password") == 0) {
        need(x, j, path, "username", "by grant \"password\"");
        need(x, j, path, "password", "by grant \"password\"");
    } else if (grant != NULL && strcmp(grant, "refresh_token") == 0) {
        need(x, j, path, "refresh_token", "by grant \"refresh_token\"");
    }
    bool cc = grant != NULL && strcmp(grant, "client_credentials") == 0;
    if (!cc && cJSON_GetObjectItemCaseSensitive(j, "client_secret") != NULL)
        need(x, j, path, "client_id", "with client_secret");
    char p[AP_CONF_PATH_MAX];
    ap_conf__path_key(p, path, "params");
    for (size_t i = 0; i < c->params.n; i++) {
        for (const char *const *r = reserved; *r; r++) {
            if (strcmp(*r, c->params.items[i].name) != 0)
                continue;
            char q[AP_CONF_PATH_MAX];
            ap_conf__path_key(q, p, *r);
            ap_conf__err(x, q,
                         "expected a parameter no other field sets, got \"%s\" (use the "
                         "credential's own field)",
                         *r);
        }
    }
}

/* OMICall's document gives "[URL]/api/auth": accept the full URL or the base [URL]. */
static void
check_omicall(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    static const char suffix[] = "/api/auth";
    ap_kv_t *u = kv_find(&c->fields, "token_url");
    if (u == NULL)
        return;
    char *p = NULL;
    const char *why;
    if (ap_conf__parse_url(u->value, true, NULL, NULL, NULL, &p, &why) != AP_OK)
        return; /* already reported */
    bool query = strchr(p, '?') != NULL;
    free(p);
    if (query) {
        char q[AP_CONF_PATH_MAX];
        ap_conf__path_key(q, path, "token_url");
        ap_conf__err(x, q,
                     "expected the URL without a query (the key goes in \"api_key\"), got one "
                     "with \"?\"");
        return;
    }
    size_t n = strlen(u->value);
    while (n > 0 && u->value[n - 1] == '/')
        n--;
    size_t sl = sizeof(suffix) - 1;
    char *full;
    if (n >= sl && strncasecmp(u->value + n - sl, suffix, sl) == 0)
        full = ap_xstrndup(u->value, n);
    else
        full = ap_xasprintf("%.*s%s", (int)n, u->value, suffix);
    free(u->value);
    u->value = full;
}

/* --- inject ----------------------------------------------------------------------------------- */

/* {token} is required, {token_type} optional; any other {...} is a typo. */
static const char *
template_problem(const char *t)
{
    bool token = false;
    for (const char *p = t; *p; p++) {
        if (*p != '{')
            continue;
        if (strncmp(p, "{token}", 7) == 0)
            token = true;
        else if (strncmp(p, "{token_type}", 12) != 0)
            return "an unknown placeholder (only {token} and {token_type} exist)";
    }
    if (!token)
        return "no {token}";
    if (!ap_conf__valid_header_value(t))
        return "a control character (CR, LF, ...)";
    return NULL;
}

static void
parse_inject(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    static const char *const keys[] = {"header", "value", NULL};
    if (j != NULL && ap_conf__object(x, j, path, "an object {header, value}", keys)) {
        char p[AP_CONF_PATH_MAX];
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "header");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "value");
        ap_conf__path_key(p, path, "header");
        if (h != NULL && (c->inject_header = ap_conf__str(x, h, p, AP_CONF_NONEMPTY)) != NULL) {
            char got[128];
            ap_conf__got(h, false, got, sizeof(got));
            if (!ap_conf__valid_token(c->inject_header))
                ap_conf__err(x, p, "expected a header name such as \"X-Api-Key\", got %s", got);
            else if (ap_conf__reserved_header(c->inject_header))
                ap_conf__err(x, p, "expected a header the proxy does not manage itself, got %s",
                             got);
        }
        ap_conf__path_key(p, path, "value");
        if (v != NULL && (c->inject_value = ap_conf__str(x, v, p, AP_CONF_NONEMPTY)) != NULL) {
            const char *why = template_problem(c->inject_value);
            if (why != NULL) {
                char got[128];
                ap_conf__got(v, false, got, sizeof(got));
                ap_conf__err(x, p,
                             "expected a template containing {token}, e.g. \"Bearer {token}\", "
                             "got %s with %s",
                             got, why);
            }
        }
    }
    if (c->inject_header == NULL)
        c->inject_header = ap_xstrdup(AP_CONF_DEFAULT_INJECT_HEADER);
    if (c->inject_value == NULL)
        c->inject_value = ap_xstrdup(AP_CONF_DEFAULT_INJECT_VALUE);
}

/* --- Digest ---------------------------------------------------------------------------------- */

typedef struct digest_s {
    EVP_MD_CTX *md;
} digest_t;

/* Length-prefixed, so ("ab", "c") and ("a", "bc") differ; NULL differs from "". */
static void
dg_str(digest_t *d, const char *s)
{
    unsigned char len[9];
    uint64_t n = s ? strlen(s) : 0;
    len[0] = s ? 1 : 0;
    for (int i = 0; i < 8; i++)
        len[1 + i] = (unsigned char)(n >> (56 - 8 * i));
    EVP_DigestUpdate(d->md, len, sizeof(len));
    if (n > 0)
        EVP_DigestUpdate(d->md, s, (size_t)n);
}

static void
dg_int(digest_t *d, int64_t v)
{
    char s[32];
    snprintf(s, sizeof(s), "%lld", (long long)v);
    dg_str(d, s);
}

static int
kv_cmp(const void *a, const void *b)
{
    const ap_kv_t *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

/* Sorted by name: the order keys were written in changes nothing on the wire that matters. */
static void
dg_kv(digest_t *d, const char *tag, const ap_kvlist_t *l)
{
    dg_str(d, tag);
    dg_int(d, (int64_t)l->n);
    const ap_kv_t **v = ap_xcalloc(l->n ? l->n : 1, sizeof(*v));
    for (size_t i = 0; i < l->n; i++)
        v[i] = &l->items[i];
    qsort(v, l->n, sizeof(*v), kv_cmp);
    for (size_t i = 0; i < l->n; i++) {
        dg_str(d, v[i]->name);
        dg_str(d, v[i]->value);
    }
    free(v);
}

static void
compute_digest(ap_cred_conf_t *c)
{
    /* A per-process salt: the digest of a short secret must not be a lookup away from it. */
    static unsigned char salt[32];
    static bool salted;
    if (!salted) {
        if (RAND_bytes(salt, (int)sizeof(salt)) != 1)
            memset(salt, 0, sizeof(salt)); /* still a correct digest, just unsalted */
        salted = true;
    }
    digest_t d = {EVP_MD_CTX_new()};
    if (d.md == NULL || EVP_DigestInit_ex(d.md, EVP_sha256(), NULL) != 1) {
        fprintf(stderr, "authproxy: SHA-256 unavailable\n");
        abort();
    }
    EVP_DigestUpdate(d.md, salt, sizeof(salt));
    dg_str(&d, c->provider);
    dg_kv(&d, "fields", &c->fields);
    dg_str(&d, "scope");
    dg_int(&d, (int64_t)c->nscope);
    for (size_t i = 0; i < c->nscope; i++)
        dg_str(&d, c->scope[i]);
    dg_kv(&d, "params", &c->params);
    dg_kv(&d, "headers", &c->headers);
    dg_str(&d, c->inject_header);
    dg_str(&d, c->inject_value);
    dg_int(&d, c->prefetch);
    dg_int(&d, c->default_ttl_s);
    dg_int(&d, c->timeout_ms);
    const ap_custom_req_t *reqs[] = {&c->custom.req, &c->custom.refresh};
    for (size_t k = 0; k < AP_ARRAY_LEN(reqs); k++) {
        dg_str(&d, reqs[k]->method);
        dg_str(&d, reqs[k]->url);
        dg_kv(&d, "custom.headers", &reqs[k]->headers);
        dg_kv(&d, "custom.query", &reqs[k]->query);
        dg_kv(&d, "custom.form", &reqs[k]->form);
        dg_kv(&d, "custom.json", &reqs[k]->json);
        dg_str(&d, reqs[k]->basic_user);
        dg_str(&d, reqs[k]->basic_pass);
    }
    dg_str(&d, c->custom.token_ptr);
    dg_str(&d, c->custom.type_ptr);
    dg_str(&d, c->custom.expires_in_ptr);
    dg_str(&d, c->custom.expires_at_ptr);
    dg_str(&d, c->custom.refresh_ptr);
    dg_str(&d, c->custom.success_ptr);
    dg_str(&d, c->custom.success_equals);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(d.md, md, &mdlen);
    EVP_MD_CTX_free(d.md); /* OpenSSL cleanses the context state */
    static const char hex[] = "0123456789abcdef";
    c->digest = ap_xmalloc((size_t)mdlen * 2 + 1);
    for (size_t i = 0; i < mdlen; i++) {
        c->digest[2 * i] = hex[md[i] >> 4];
        c->digest[2 * i + 1] = hex[md[i] & 0xf];
    }
    c->digest[(size_t)mdlen * 2] = '\0';
    ap_wipe(md, sizeof(md));
}

/* --- One credential ------------------------------------------------------------------------- */

static void
parse_fields(ap_conf__ctx_t *x, const provider_spec_t *ps, const cJSON *j, const char *path,
             ap_cred_conf_t *c)
{
    for (size_t i = 0; i < MAX_FIELDS && ps->fields[i].name; i++) {
        const field_spec_t *f = &ps->fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f->name);
        char p[AP_CONF_PATH_MAX];
        ap_conf__path_key(p, path, f->name);
        char *val = NULL;
        if (v == NULL) {
            if (f->flags & F_REQ)
                ap_conf__err(x, p, "expected %s (required by provider \"%s\"), got nothing",
                             (f->flags & F_SECRET) ? "a secret" : "a string", ps->name);
            else if (f->def != NULL)
                val = ap_xstrdup(f->def);
        } else if (f->flags & F_SECRET) {
            val = ap_conf__secret(x, v, p, NULL);
        } else if (f->one_of != NULL) {
            int k = ap_conf__enum(x, v, p, f->one_of);
            if (k >= 0)
                val = ap_xstrdup(f->one_of[k]);
        } else if (cJSON_IsObject(v)) {
            /* {"env"}/{"file"} work for plain fields too (a client_id kept with its secret). */
            val = ap_conf__secret(x, v, p, NULL);
            if (val != NULL && (f->flags & F_URL))
                check_url_field(x, p, val);
        } else {
            val = ap_conf__str(x, v, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
            if (val != NULL && (f->flags & F_URL))
                check_url_field(x, p, val);
        }
        if (val != NULL)
            kv_add(&c->fields, f->name, val, (f->flags & F_SECRET) != 0);
    }
}

static void
parse_cred(ap_conf__ctx_t *x, const char *name, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    c->name = ap_xstrdup(name);
    c->timeout_ms = AP_CONF_DEFAULT_TOKEN_TIMEOUT_MS;
    if (!ap_conf__object(x, j, path, "an object {\"provider\": ..., ...}", NULL)) {
        c->inject_header = ap_xstrdup(AP_CONF_DEFAULT_INJECT_HEADER);
        c->inject_value = ap_xstrdup(AP_CONF_DEFAULT_INJECT_VALUE);
        c->provider = ap_xstrdup("");
        return;
    }
    char p[AP_CONF_PATH_MAX];
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(j, "provider");
    ap_conf__path_key(p, path, "provider");
    const provider_spec_t *ps = NULL;
    if (pv == NULL) {
        ap_conf__err(x, p,
                     "expected one of static, oauth2, custom, omicall, antsomi, telmai, manis, "
                     "micovoice (required), got nothing");
    } else {
        int k = ap_conf__enum(x, pv, p, ap_conf__provider_names);
        if (k >= 0)
            ps = find_provider(ap_conf__provider_names[k]);
    }
    c->provider = ap_xstrdup(ps ? ps->name : "");

    /* Unknown keys can only be told once the provider is known. */
    if (ps != NULL) {
        const char *allowed[AP_ARRAY_LEN(common_keys) + MAX_FIELDS + 4];
        size_t na = 0;
        for (size_t i = 0; i < AP_ARRAY_LEN(common_keys); i++)
            allowed[na++] = common_keys[i];
        for (size_t i = 0; i < MAX_FIELDS && ps->fields[i].name; i++)
            allowed[na++] = ps->fields[i].name;
        if (ps->extras & X_SCOPE)
            allowed[na++] = "scope";
        if (ps->extras & X_PARAMS)
            allowed[na++] = "params";
        if (ps->extras & X_CUSTOM) {
            allowed[na++] = "request";
            allowed[na++] = "refresh_request";
            allowed[na++] = "response";
        }
        allowed[na] = NULL;
        ap_conf__check_keys(x, j, path, allowed);

        parse_fields(x, ps, j, path, c);
        if (ps->extras & X_SCOPE) {
            const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "scope");
            ap_conf__path_key(p, path, "scope");
            size_t before = x->nerr;
            if (s != NULL)
                parse_scope(x, s, p, c);
            if ((ps->extras & X_SCOPE_REQ) && c->nscope == 0 && x->nerr == before)
                ap_conf__err(x, p,
                             "expected at least one scope (required by provider \"%s\"), "
                             "got %s",
                             ps->name, s == NULL ? "nothing" : "none");
        }
        if (ps->extras & X_PARAMS) {
            ap_conf__path_key(p, path, "params");
            parse_kv(x, cJSON_GetObjectItemCaseSensitive(j, "params"), p, &c->params, 0);
        }
        if (ps->extras & X_CUSTOM) {
            const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "request");
            const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "response");
            ap_conf__path_key(p, path, "request");
            if (req == NULL)
                ap_conf__err(x, p,
                             "expected the token request {method, url, ...} (required by "
                             "provider \"custom\"), got nothing");
            else
                parse_custom_request(x, req, p, &c->custom.req, NULL);
            const cJSON *rr = cJSON_GetObjectItemCaseSensitive(j, "refresh_request");
            ap_conf__path_key(p, path, "refresh_request");
            if (rr != NULL) {
                c->custom.has_refresh = true;
                parse_custom_request(x, rr, p, &c->custom.refresh,
                                     req != NULL ? c->custom.req.url : NULL);
                if (!custom_mentions_refresh(&c->custom.refresh))
                    ap_conf__err(x, p,
                                 "expected \"{refresh_token}\" in one of its values (where the "
                                 "refresh token goes), got none");
            }
            ap_conf__path_key(p, path, "response");
            if (res == NULL)
                ap_conf__err(x, p,
                             "expected where the token is {\"token\": \"/pointer\", ...} "
                             "(required by provider \"custom\"), got nothing");
            else
                parse_custom_response(x, res, p, c);
            if (c->custom.has_refresh && res != NULL && c->custom.refresh_ptr == NULL) {
                char q[AP_CONF_PATH_MAX];
                ap_conf__path_key(q, p, "refresh_token");
                ap_conf__err(x, q,
                             "expected a JSON pointer to the refresh token (\"refresh_request\" "
                             "needs one), got nothing");
            }
        }
    }

    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "prefetch")) != NULL) {
        ap_conf__path_key(p, path, "prefetch");
        ap_conf__bool(x, v, p, &c->prefetch);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "default_ttl")) != NULL) {
        ap_conf__path_key(p, path, "default_ttl");
        ap_conf__int(x, v, p, 1, MAX_DEFAULT_TTL_S, &c->default_ttl_s);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "timeout_ms")) != NULL) {
        ap_conf__path_key(p, path, "timeout_ms");
        ap_conf__int(x, v, p, MIN_TOKEN_TIMEOUT_MS, MAX_TOKEN_TIMEOUT_MS, &c->timeout_ms);
    }
    ap_conf__path_key(p, path, "inject");
    parse_inject(x, cJSON_GetObjectItemCaseSensitive(j, "inject"), p, c);
    ap_conf__path_key(p, path, "headers");
    parse_kv(x, cJSON_GetObjectItemCaseSensitive(j, "headers"), p, &c->headers, KV_HEADERS);
    for (size_t i = 0; i < c->headers.n; i++) {
        if (strcasecmp(c->headers.items[i].name, c->inject_header) != 0)
            continue;
        char q[AP_CONF_PATH_MAX];
        ap_conf__path_key(q, p, c->headers.items[i].name);
        ap_conf__err(x, q,
                     "expected a header other than the injected one, got \"%s\" (set by "
                     "\"inject\")",
                     c->headers.items[i].name);
    }
    if (ps != NULL && ps->check != NULL)
        ps->check(x, j, path, c);
    compute_digest(c);
}

static bool
valid_cred_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_CRED_NAME)
        return false;
    for (; *s; s++) {
        char ch = *s;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

void
ap_conf__parse_credentials(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    if (!ap_conf__object(x, j, "credentials", "an object of name -> credential", NULL))
        return;
    size_t n = (size_t)cJSON_GetArraySize(j);
    c->creds = ap_xcalloc(n ? n : 1, sizeof(*c->creds));
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        char p[AP_CONF_PATH_MAX];
        ap_conf__path_key(p, "credentials", it->string);
        if (!valid_cred_name(it->string))
            ap_conf__err(x, p,
                         "expected a credential name of letters, digits, '-', '_' or '.' (at "
                         "most %d), got \"%.80s\"",
                         MAX_CRED_NAME, it->string);
        parse_cred(x, it->string, it, p, &c->creds[c->ncreds++]);
    }
}

void
ap_conf__cred_free(ap_cred_conf_t *c)
{
    free(c->name);
    free(c->provider);
    ap_conf__kv_free(&c->fields);
    for (size_t i = 0; i < c->nscope; i++)
        free(c->scope[i]);
    free(c->scope);
    ap_conf__kv_free(&c->params);
    ap_conf__kv_free(&c->headers);
    free(c->inject_header);
    free(c->inject_value);
    custom_req_free(&c->custom.req);
    custom_req_free(&c->custom.refresh);
    free(c->custom.token_ptr);
    free(c->custom.type_ptr);
    free(c->custom.expires_in_ptr);
    free(c->custom.expires_at_ptr);
    free(c->custom.refresh_ptr);
    free(c->custom.success_ptr);
    free(c->custom.success_equals);
    free(c->digest);
}
