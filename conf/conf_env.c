/*
 * conf_env.c: the environment-only configuration for the simplest sidecar: one upstream, one
 * credential, all from AUTHPROXY_* variables (docs/configuration.md lists them).
 *
 * The variables are turned into the same JSON document a file would hold and go through the same
 * validator, so the rules and messages are the file's; each message also names the variable the
 * offending value came from. Secrets are never copied into the document: it refers to them as
 * {"env": "AUTHPROXY_X"} or {"file": "..."} and the validator reads them like any other.
 */
#include "conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

/* Prefix of the variables that become oauth2 "params" entries: AUTHPROXY_PARAM_<name>. */
#define PARAM_PREFIX "AUTHPROXY_PARAM_"
/* The one credential of env mode. */
#define CRED "default"

typedef struct env_s {
    cJSON *root;
    ap_conf__hint_t *hints; /* owned */
    size_t nhints;
} env_t;

static void
hint(env_t *e, const char *path, const char *vars)
{
    e->hints = ap_xrealloc(e->hints, (e->nhints + 1) * sizeof(*e->hints));
    e->hints[e->nhints].path = ap_xstrdup(path);
    e->hints[e->nhints].vars = ap_xstrdup(vars);
    e->nhints++;
}

/* Env values are literal: "${" must not be expanded a second time ("$${" is a literal "${"). */
static cJSON *
literal(const char *v)
{
    ap_buf_t b = {0};
    ap_buf_append(&b, "", 0);
    for (const char *p = v; *p; p++) {
        if (p[0] == '$' && p[1] == '{')
            ap_buf_append(&b, "$", 1);
        ap_buf_append(&b, p, 1);
    }
    cJSON *s = cJSON_CreateString(b.data);
    ap_buf_free(&b, false);
    return s;
}

static void
var_name(char *out, size_t n, const char *field)
{
    size_t k = (size_t)snprintf(out, n, "AUTHPROXY_");
    for (const char *p = field; *p && k + 1 < n; p++)
        out[k++] = (*p >= 'a' && *p <= 'z') ? (char)(*p - 32) : *p;
    out[k] = '\0';
}

static void
put_str(env_t *e, cJSON *obj, const char *key, const char *var, const char *path)
{
    const char *v = getenv(var);
    if (v != NULL)
        cJSON_AddItemToObject(obj, key, literal(v));
    hint(e, path, var);
}

/* "a,b c" -> ["a", "b", "c"]. */
static cJSON *
list(const char *v)
{
    cJSON *arr = cJSON_CreateArray();
    for (const char *p = v; *p;) {
        p += strspn(p, ", \t");
        size_t n = strcspn(p, ", \t");
        if (n > 0) {
            char *item = ap_xstrndup(p, n);
            cJSON_AddItemToArray(arr, literal(item));
            free(item);
        }
        p += n;
    }
    return arr;
}

/* Booleans and integers: a value that does not parse is passed on as a string, so the validator
 * reports it ("expected true or false, got "maybe""). */
static void
put_bool(env_t *e, cJSON *obj, const char *key, const char *var, const char *path)
{
    static const char *const yes[] = {"1", "true", "yes", "on", NULL};
    static const char *const no[] = {"0", "false", "no", "off", NULL};
    const char *v = getenv(var);
    hint(e, path, var);
    if (v == NULL)
        return;
    for (const char *const *y = yes; *y; y++)
        if (strcasecmp(v, *y) == 0) {
            cJSON_AddBoolToObject(obj, key, true);
            return;
        }
    for (const char *const *n = no; *n; n++)
        if (strcasecmp(v, *n) == 0) {
            cJSON_AddBoolToObject(obj, key, false);
            return;
        }
    cJSON_AddItemToObject(obj, key, literal(v));
}

static void
put_int(env_t *e, cJSON *obj, const char *key, const char *var, const char *path)
{
    const char *v = getenv(var);
    hint(e, path, var);
    if (v == NULL)
        return;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*v != '\0' && *end == '\0' && n > -(1LL << 53) && n < (1LL << 53))
        cJSON_AddNumberToObject(obj, key, (double)n);
    else
        cJSON_AddItemToObject(obj, key, literal(v));
}

/* A secret: {"env": VAR} or {"file": $VAR_FILE} (both set: the validator says so). */
static void
put_secret(env_t *e, cJSON *obj, const char *key, const char *var, const char *path)
{
    char fvar[128], vars[300];
    snprintf(fvar, sizeof(fvar), "%s_FILE", var);
    snprintf(vars, sizeof(vars), "%s or %s", var, fvar);
    hint(e, path, vars);
    const char *file = getenv(fvar);
    if (getenv(var) == NULL && file == NULL)
        return;
    cJSON *o = cJSON_AddObjectToObject(obj, key);
    if (getenv(var) != NULL)
        cJSON_AddStringToObject(o, "env", var);
    if (file != NULL)
        cJSON_AddItemToObject(o, "file", literal(file));
}

static void
build_credential(env_t *e, cJSON *creds, const char *provider)
{
    char path[AP_CONF_PATH_MAX], p[AP_CONF_PATH_MAX], var[128];
    ap_conf__path_key(path, "credentials", CRED);
    cJSON *cred = cJSON_AddObjectToObject(creds, CRED);
    cJSON_AddItemToObject(cred, "provider", literal(provider));
    ap_conf__path_key(p, path, "provider");
    hint(e, p, "AUTHPROXY_PROVIDER");

    ap_conf__field_info_t fields[16];
    bool scope, params;
    size_t n = ap_conf__provider_fields(provider, fields, AP_ARRAY_LEN(fields), &scope, &params);
    for (size_t i = 0; i < n; i++) {
        var_name(var, sizeof(var), fields[i].name);
        ap_conf__path_key(p, path, fields[i].name);
        if (fields[i].secret)
            put_secret(e, cred, fields[i].name, var, p);
        else
            put_str(e, cred, fields[i].name, var, p);
    }
    if (scope) {
        ap_conf__path_key(p, path, "scope");
        put_str(e, cred, "scope", "AUTHPROXY_SCOPE", p);
    }
    if (params) {
        cJSON *o = NULL;
        for (char **ev = environ; *ev != NULL; ev++) {
            if (strncmp(*ev, PARAM_PREFIX, strlen(PARAM_PREFIX)) != 0)
                continue;
            const char *name = *ev + strlen(PARAM_PREFIX);
            const char *eq = strchr(name, '=');
            if (eq == NULL || eq == name)
                continue;
            if (o == NULL)
                o = cJSON_AddObjectToObject(cred, "params");
            char *k = ap_xstrndup(name, (size_t)(eq - name));
            /* By reference: a parameter may be a secret (client_assertion, ...). */
            char *full = ap_xasprintf("%s%s", PARAM_PREFIX, k);
            cJSON *ref = cJSON_AddObjectToObject(o, k);
            cJSON_AddStringToObject(ref, "env", full);
            free(full);
            free(k);
        }
        ap_conf__path_key(p, path, "params");
        hint(e, p, PARAM_PREFIX "<name>");
    }
    ap_conf__path_key(p, path, "prefetch");
    put_bool(e, cred, "prefetch", "AUTHPROXY_PREFETCH", p);
    ap_conf__path_key(p, path, "default_ttl");
    put_int(e, cred, "default_ttl", "AUTHPROXY_DEFAULT_TTL", p);
    ap_conf__path_key(p, path, "timeout_ms");
    put_int(e, cred, "timeout_ms", "AUTHPROXY_TIMEOUT_MS", p);
    if (getenv("AUTHPROXY_INJECT_HEADER") != NULL || getenv("AUTHPROXY_INJECT_VALUE") != NULL) {
        cJSON *inj = cJSON_AddObjectToObject(cred, "inject");
        char q[AP_CONF_PATH_MAX];
        ap_conf__path_key(q, path, "inject");
        ap_conf__path_key(p, q, "header");
        put_str(e, inj, "header", "AUTHPROXY_INJECT_HEADER", p);
        ap_conf__path_key(p, q, "value");
        put_str(e, inj, "value", "AUTHPROXY_INJECT_VALUE", p);
    }
}

static void
build_routes(env_t *e, const char *up, bool with_cred)
{
    cJSON *routes = cJSON_AddArrayToObject(e->root, "routes");
    const char *rh = getenv("AUTHPROXY_ROUTE_HOST");
    const char *rp = getenv("AUTHPROXY_ROUTE_PATH");
    char r0[AP_CONF_PATH_MAX], p[AP_CONF_PATH_MAX];
    size_t i = 0;
    /* Proxy mode (HTTP_PROXY=...): the upstream's own host unless told otherwise; "" = none. */
    if (rh == NULL || *rh != '\0') {
        char *host = NULL;
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToArray(routes, r);
        if (rh != NULL)
            cJSON_AddItemToObject(r, "host", literal(rh));
        else if (ap_conf_parse_url(up, NULL, &host, NULL, NULL) == AP_OK)
            cJSON_AddItemToObject(r, "host", literal(host));
        free(host);
        cJSON_AddItemToObject(r, "upstream", literal(up));
        if (with_cred)
            cJSON_AddStringToObject(r, "credential", CRED);
        ap_conf__path_idx(r0, "routes", i++);
        hint(e, r0, "AUTHPROXY_UPSTREAM, AUTHPROXY_ROUTE_HOST");
        ap_conf__path_key(p, r0, "host");
        hint(e, p, rh ? "AUTHPROXY_ROUTE_HOST" : "AUTHPROXY_UPSTREAM");
        ap_conf__path_key(p, r0, "upstream");
        hint(e, p, "AUTHPROXY_UPSTREAM");
    }
    /* Base-URL mode (the client's base URL points at the proxy). */
    if (rp != NULL) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddItemToArray(routes, r);
        cJSON_AddItemToObject(r, "path", literal(rp));
        cJSON_AddItemToObject(r, "upstream", literal(up));
        if (with_cred)
            cJSON_AddStringToObject(r, "credential", CRED);
        ap_conf__path_idx(r0, "routes", i);
        hint(e, r0, "AUTHPROXY_ROUTE_PATH");
        ap_conf__path_key(p, r0, "upstream");
        hint(e, p, "AUTHPROXY_UPSTREAM");
    }
}

static void
build(env_t *e, const char *up)
{
    cJSON *root = e->root;
    const char *v;
    if ((v = getenv("AUTHPROXY_LISTEN")) != NULL)
        cJSON_AddItemToObject(root, "listen", list(v));
    hint(e, "listen", "AUTHPROXY_LISTEN");
    if ((v = getenv("AUTHPROXY_ADMIN")) != NULL) {
        if (*v == '\0' || strcasecmp(v, "off") == 0 || strcasecmp(v, "false") == 0 ||
            strcasecmp(v, "none") == 0)
            cJSON_AddFalseToObject(root, "admin");
        else
            cJSON_AddItemToObject(root, "admin", list(v));
    }
    hint(e, "admin", "AUTHPROXY_ADMIN");
    if (getenv("AUTHPROXY_CA_FILE") != NULL)
        put_str(e, cJSON_AddObjectToObject(root, "tls"), "ca_file", "AUTHPROXY_CA_FILE",
                "tls.ca_file");
    hint(e, "tls", "AUTHPROXY_CA_FILE");
    put_str(e, root, "unmatched", "AUTHPROXY_UNMATCHED", "unmatched");
    put_bool(e, root, "connect", "AUTHPROXY_CONNECT", "connect");
    put_str(e, root, "log_level", "AUTHPROXY_LOG_LEVEL", "log_level");
    put_str(e, root, "log_format", "AUTHPROXY_LOG_FORMAT", "log_format");
    put_secret(e, root, "outbound_proxy", "AUTHPROXY_OUTBOUND_PROXY", "outbound_proxy");

    if ((v = getenv("AUTHPROXY_CONNECT_TO")) != NULL) {
        /* "from=to,from=to"; an item without '=' becomes a bad entry the validator names. */
        cJSON *ct = cJSON_AddObjectToObject(root, "connect_to");
        for (const char *p = v; *p;) {
            p += strspn(p, ", ");
            size_t n = strcspn(p, ", ");
            if (n > 0) {
                char *item = ap_xstrndup(p, n);
                char *eq = strchr(item, '=');
                if (eq != NULL)
                    *eq = '\0';
                cJSON_AddItemToObject(ct, item, literal(eq ? eq + 1 : ""));
                free(item);
            }
            p += n;
        }
    }
    hint(e, "connect_to", "AUTHPROXY_CONNECT_TO");

    const char *user = getenv("AUTHPROXY_PROXY_USER");
    bool pw = getenv("AUTHPROXY_PROXY_PASSWORD") || getenv("AUTHPROXY_PROXY_PASSWORD_FILE");
    const char *allow = getenv("AUTHPROXY_ALLOW");
    const char *insecure = getenv("AUTHPROXY_INSECURE_ALLOW_UNAUTHENTICATED");
    if (user != NULL || pw || allow != NULL || insecure != NULL) {
        cJSON *ca = cJSON_AddObjectToObject(root, "client_auth");
        if (user != NULL || pw) {
            cJSON *users = cJSON_AddObjectToObject(ca, "users");
            char p[AP_CONF_PATH_MAX];
            ap_conf__path_key(p, "client_auth.users", user ? user : "");
            put_secret(e, users, user ? user : "", "AUTHPROXY_PROXY_PASSWORD", p);
            if (cJSON_GetArraySize(users) == 0) /* a user without a password */
                cJSON_AddItemToObject(users, user ? user : "", cJSON_CreateNull());
        }
        if (allow != NULL)
            cJSON_AddItemToObject(ca, "allow", list(allow));
        put_bool(e, ca, "insecure_allow_unauthenticated",
                 "AUTHPROXY_INSECURE_ALLOW_UNAUTHENTICATED",
                 "client_auth.insecure_allow_unauthenticated");
    }
    hint(e, "client_auth.users", "AUTHPROXY_PROXY_USER, AUTHPROXY_PROXY_PASSWORD");
    hint(e, "client_auth.allow", "AUTHPROXY_ALLOW");

    const char *keys[32];
    size_t nk = ap_conf__limit_keys(keys, AP_ARRAY_LEN(keys));
    cJSON *lim = cJSON_CreateObject();
    for (size_t i = 0; i < nk; i++) {
        char var[128], p[AP_CONF_PATH_MAX];
        var_name(var, sizeof(var), keys[i]);
        ap_conf__path_key(p, "limits", keys[i]);
        put_int(e, lim, keys[i], var, p);
    }
    if (cJSON_GetArraySize(lim) > 0)
        cJSON_AddItemToObject(root, "limits", lim);
    else
        cJSON_Delete(lim);

    const char *provider = getenv("AUTHPROXY_PROVIDER");
    if (provider == NULL || *provider == '\0')
        provider = "static";
    /* "none": an allowed upstream without injection. */
    bool with_cred = strcmp(provider, "none") != 0;
    cJSON *creds = cJSON_AddObjectToObject(root, "credentials");
    if (with_cred)
        build_credential(e, creds, provider);
    build_routes(e, up, with_cred);
}

ap_conf_t *
ap_conf_load_env(bool *used, char *err, size_t errlen)
{
    const char *up = getenv("AUTHPROXY_UPSTREAM");
    *used = up != NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (up == NULL)
        return NULL;
    env_t e = {cJSON_CreateObject(), NULL, 0};
    build(&e, up);
    char *json = cJSON_PrintUnformatted(e.root);
    cJSON_Delete(e.root);
    ap_conf_t *c =
        ap_conf__load(json, strlen(json), "(environment)", e.hints, e.nhints, err, errlen);
    ap_wipe(json, strlen(json));
    cJSON_free(json);
    for (size_t i = 0; i < e.nhints; i++) {
        free(e.hints[i].path);
        free(e.hints[i].vars);
    }
    free(e.hints);
    return c;
}
