/*
 * conf.c: JSON config -> immutable ap_conf_t. Every error is collected (not just the first),
 * one per line, as "FILE: json.path: expected ..., got ...". Secret values never reach an error
 * message or the --check dump.
 */
#include "conf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- Error collection ------------------------------------------------------------------------ */

typedef struct ctx_s {
    const char *file; /* name used in messages */
    ap_buf_t errs;
    int nerr;
} ctx_t;

static void AP_PRINTF(3, 4) add_err(ctx_t *x, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ap_buf_appendf(&x->errs, "%s%s: %s: %s", x->nerr ? "\n" : "", x->file, path, msg);
    x->nerr++;
}

static const char *
type_name(const cJSON *j)
{
    if (j == NULL)
        return "nothing";
    if (cJSON_IsString(j))
        return "a string";
    if (cJSON_IsNumber(j))
        return "a number";
    if (cJSON_IsBool(j))
        return "a boolean";
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsArray(j))
        return "an array";
    if (cJSON_IsObject(j))
        return "an object";
    return "something else";
}

/* Renders a short, quoted excerpt of a non-secret value for messages. */
static void
got(const cJSON *j, char *out, size_t n)
{
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring;
        size_t len = strlen(s);
        if (len > 60)
            snprintf(out, n, "\"%.57s...\"", s);
        else
            snprintf(out, n, "\"%s\"", s);
    } else if (cJSON_IsNumber(j)) {
        snprintf(out, n, "%g", j->valuedouble);
    } else {
        snprintf(out, n, "%s", type_name(j));
    }
}

static char *
join(const char *path, const char *key)
{
    return ap_xasprintf("%s.%s", path, key);
}

/* Unknown keys are errors: a typo must not silently disable a security setting. */
static void
check_keys(ctx_t *x, const cJSON *obj, const char *path, const char *const *allowed)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, it->string) == 0)
                ok = true;
        if (!ok) {
            ap_buf_t list = {0};
            for (const char *const *a = allowed; *a; a++)
                ap_buf_appendf(&list, "%s%s", a == allowed ? "" : ", ", *a);
            add_err(x, path, "unknown key \"%s\" (expected one of: %s)", it->string,
                    list.data ? list.data : "");
            ap_buf_free(&list, false);
        }
    }
}

/* --- Strings, ${VAR} and secrets -------------------------------------------------------------- */

/* Expands ${VAR} and ${VAR:-default}. NULL (error added) when a variable is unset. */
static char *
expand(ctx_t *x, const char *path, const char *s)
{
    ap_buf_t b = {0};
    ap_buf_append(&b, "", 0);
    const char *p = s;
    while (*p) {
        const char *d = strstr(p, "${");
        if (d == NULL) {
            ap_buf_append(&b, p, strlen(p));
            break;
        }
        ap_buf_append(&b, p, (size_t)(d - p));
        const char *end = strchr(d + 2, '}');
        if (end == NULL) {
            add_err(x, path, "expected \"}\" closing \"${\"");
            ap_buf_free(&b, true);
            return NULL;
        }
        char name[256];
        size_t n = (size_t)(end - d - 2);
        if (n == 0 || n >= sizeof(name)) {
            add_err(x, path, "expected a variable name inside \"${}\"");
            ap_buf_free(&b, true);
            return NULL;
        }
        memcpy(name, d + 2, n);
        name[n] = '\0';
        const char *def = NULL;
        char *sep = strstr(name, ":-");
        if (sep != NULL) {
            *sep = '\0';
            def = sep + 2;
        }
        const char *v = getenv(name);
        if (v == NULL || (def != NULL && *v == '\0'))
            v = def;
        if (v == NULL) {
            add_err(x, path, "environment variable %s is not set", name);
            ap_buf_free(&b, true);
            return NULL;
        }
        ap_buf_append(&b, v, strlen(v));
        p = end + 1;
    }
    return b.data;
}

static char *
read_secret_file(ctx_t *x, const char *path, const char *file)
{
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        add_err(x, path, "cannot read secret file %s: %s", file, strerror(errno));
        return NULL;
    }
    ap_buf_t b = {0};
    b.max = 1024 * 1024;
    char tmp[4096];
    size_t n;
    bool too_big = false;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
        if (ap_buf_append(&b, tmp, n) != AP_OK) {
            too_big = true;
            break;
        }
    }
    ap_wipe(tmp, sizeof(tmp));
    fclose(f);
    if (too_big) {
        add_err(x, path, "secret file %s is larger than 1 MiB", file);
        ap_buf_free(&b, true);
        return NULL;
    }
    /* One trailing newline (echo > file) is not part of the secret. */
    if (b.len > 0 && b.data[b.len - 1] == '\n')
        b.data[--b.len] = '\0';
    if (b.len > 0 && b.data[b.len - 1] == '\r')
        b.data[--b.len] = '\0';
    if (b.len == 0) {
        add_err(x, path, "secret file %s is empty", file);
        ap_buf_free(&b, true);
        return NULL;
    }
    return b.data;
}

/* A string that may be a secret: "literal or ${VAR}", {"env": "VAR"}, {"file": "PATH"}.
 * *from_store is set when it came from env/file form. */
static char *
get_secret(ctx_t *x, const cJSON *j, const char *path, bool *from_store)
{
    if (from_store)
        *from_store = false;
    if (cJSON_IsString(j))
        return expand(x, path, j->valuestring);
    if (cJSON_IsObject(j)) {
        static const char *const keys[] = {"env", "file", NULL};
        check_keys(x, j, path, keys);
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(j, "env");
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(j, "file");
        if (from_store)
            *from_store = true;
        if (cJSON_IsString(env) && file == NULL) {
            const char *v = getenv(env->valuestring);
            if (v == NULL || *v == '\0') {
                add_err(x, path, "environment variable %s is not set", env->valuestring);
                return NULL;
            }
            return ap_xstrdup(v);
        }
        if (cJSON_IsString(file) && env == NULL) {
            char *fp = expand(x, path, file->valuestring);
            if (fp == NULL)
                return NULL;
            char *v = read_secret_file(x, path, fp);
            free(fp);
            return v;
        }
    }
    add_err(x, path, "expected a string, {\"env\": \"VAR\"} or {\"file\": \"PATH\"}, got %s",
            type_name(j));
    return NULL;
}

static char *
get_str(ctx_t *x, const cJSON *obj, const char *key, const char *path, bool required)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    char *p = join(path, key);
    char *v = NULL;
    if (j == NULL) {
        if (required)
            add_err(x, p, "required, missing");
    } else if (!cJSON_IsString(j)) {
        add_err(x, p, "expected a string, got %s", type_name(j));
    } else {
        v = expand(x, p, j->valuestring);
    }
    free(p);
    return v;
}

static bool
get_bool(ctx_t *x, const cJSON *obj, const char *key, const char *path, bool def)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (j == NULL)
        return def;
    if (!cJSON_IsBool(j)) {
        char *p = join(path, key);
        add_err(x, p, "expected true or false, got %s", type_name(j));
        free(p);
        return def;
    }
    return cJSON_IsTrue(j);
}

static int64_t
get_int(ctx_t *x, const cJSON *obj, const char *key, const char *path, int64_t def, int64_t min,
        int64_t max)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (j == NULL)
        return def;
    char *p = join(path, key);
    int64_t v = def;
    if (!cJSON_IsNumber(j) || j->valuedouble != (double)(int64_t)j->valuedouble) {
        char g[80];
        got(j, g, sizeof(g));
        add_err(x, p, "expected an integer, got %s", g);
    } else if (j->valuedouble < (double)min || j->valuedouble > (double)max) {
        add_err(x, p, "expected an integer from %lld to %lld, got %g", (long long)min,
                (long long)max, j->valuedouble);
    } else {
        v = (int64_t)j->valuedouble;
    }
    free(p);
    return v;
}

/* --- Values -------------------------------------------------------------------------------------- */

static bool
valid_token_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c))
            return false;
    }
    return true;
}

static bool
valid_header_value(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 32 && c != '\t') || c == 127)
            return false;
    }
    return true;
}

static bool
valid_host(const char *h, bool allow_wildcard)
{
    if (allow_wildcard && h[0] == '*' && h[1] == '.')
        h += 2;
    if (*h == '\0')
        return false;
    for (const char *p = h; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == ':'))
            return false;
    }
    return true;
}

ap_rc_t
ap_conf_parse_url(const char *url, bool *tls, char **host, int *port, char **path)
{
    const char *p;
    if (strncmp(url, "https://", 8) == 0) {
        *tls = true;
        p = url + 8;
    } else if (strncmp(url, "http://", 7) == 0) {
        *tls = false;
        p = url + 7;
    } else {
        return AP_ERR;
    }
    size_t alen = strcspn(p, "/?#");
    const char *a = p, *aend = p + alen;
    if (memchr(a, '@', alen) != NULL || alen == 0)
        return AP_ERR;
    const char *hs = a, *he;
    const char *ps = NULL;
    if (*a == '[') {
        he = memchr(a, ']', alen);
        if (he == NULL)
            return AP_ERR;
        hs = a + 1;
        if (he + 1 < aend) {
            if (he[1] != ':')
                return AP_ERR;
            ps = he + 2;
        }
    } else {
        he = memchr(a, ':', alen);
        if (he != NULL)
            ps = he + 1;
        else
            he = aend;
    }
    if (he == hs)
        return AP_ERR;
    int pt = *tls ? 443 : 80;
    if (ps != NULL) {
        if (ps == aend)
            return AP_ERR;
        long v = 0;
        for (const char *q = ps; q < aend; q++) {
            if (*q < '0' || *q > '9')
                return AP_ERR;
            v = v * 10 + (*q - '0');
            if (v > 65535)
                return AP_ERR;
        }
        if (v == 0)
            return AP_ERR;
        pt = (int)v;
    }
    char *h = ap_xstrndup(hs, (size_t)(he - hs));
    if (!valid_host(h, false)) {
        free(h);
        return AP_ERR;
    }
    for (char *q = h; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q + 32);
    const char *rest = aend;
    if (*rest == '#')
        rest = "";
    size_t rlen = strcspn(rest, "#");
    /* Base path without a trailing slash: "https://x/" -> "", "https://x/v2/" -> "/v2". */
    while (rlen > 0 && rest[rlen - 1] == '/')
        rlen--;
    for (size_t i = 0; i < rlen; i++)
        if ((unsigned char)rest[i] <= 32 || rest[i] == 127) {
            free(h);
            return AP_ERR;
        }
    *host = h;
    *port = pt;
    if (path)
        *path = ap_xstrndup(rest, rlen);
    return AP_OK;
}

/* "host:port" -> parts; "[::1]:3128" brackets stripped. */
static ap_rc_t
split_hostport(const char *s, char **host, char **port)
{
    const char *colon;
    const char *hs = s, *he;
    if (*s == '[') {
        he = strchr(s, ']');
        if (he == NULL || he[1] != ':')
            return AP_ERR;
        hs = s + 1;
        colon = he + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return AP_ERR;
        he = colon;
    }
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return AP_ERR;
    long v = 0;
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9')
            return AP_ERR;
        v = v * 10 + (*q - '0');
    }
    if (v > 65535)
        return AP_ERR;
    if (he == hs)
        return AP_ERR;
    *host = ap_xstrndup(hs, (size_t)(he - hs));
    *port = ap_xstrdup(p);
    return AP_OK;
}

static void
parse_addrs(ctx_t *x, const cJSON *root, const char *key, const char *def, ap_addr_conf_t **out,
            size_t *n)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, key);
    char *path = ap_xasprintf("%s", key);
    *out = NULL;
    *n = 0;
    const char *one = NULL;
    if (j == NULL) {
        one = def;
    } else if (cJSON_IsFalse(j) || cJSON_IsNull(j)) {
        free(path);
        return;
    } else if (cJSON_IsString(j)) {
        one = j->valuestring;
    } else if (!cJSON_IsArray(j)) {
        add_err(x, path, "expected \"host:port\" or an array of them, got %s", type_name(j));
        free(path);
        return;
    }
    size_t cnt = one ? 1 : (size_t)cJSON_GetArraySize(j);
    *out = ap_xcalloc(cnt ? cnt : 1, sizeof(**out));
    for (size_t i = 0; i < cnt; i++) {
        const char *s = one;
        char *ip = one ? ap_xstrdup(path) : ap_xasprintf("%s[%zu]", path, i);
        if (!one) {
            const cJSON *it = cJSON_GetArrayItem(j, (int)i);
            if (!cJSON_IsString(it)) {
                add_err(x, ip, "expected \"host:port\", got %s", type_name(it));
                free(ip);
                continue;
            }
            s = it->valuestring;
        }
        char *e = expand(x, ip, s);
        if (e != NULL) {
            ap_addr_conf_t *a = &(*out)[*n];
            if (split_hostport(e, &a->host, &a->port) != AP_OK)
                add_err(x, ip, "expected \"host:port\" (port 0-65535), got \"%s\"", e);
            else
                (*n)++;
            free(e);
        }
        free(ip);
    }
    free(path);
}

/* --- Credentials ---------------------------------------------------------------------------------- */

typedef struct field_spec_s {
    const char *name;
    bool required;
    bool secret;
    const char *def;
} field_spec_t;

typedef struct provider_spec_s {
    const char *name;
    field_spec_t fields[12];
    bool scope;  /* takes "scope" */
    bool params; /* takes "params" */
} provider_spec_t;

static const provider_spec_t providers[] = {
    {"static", {{"token", true, true, NULL}}, false, false},
    {"omicall", {{"token_url", true, false, NULL}, {"api_key", true, true, NULL}}, false, false},
    {"antsomi",
     {{"token_url", false, false, "https://iam.ants.tech/oauth/token"},
      {"client_id", true, false, NULL},
      {"client_secret", true, true, NULL}},
     true,
     false},
    {"telmai",
     {{"token_url", true, false, NULL},
      {"client_id", true, false, NULL},
      {"username", true, false, NULL},
      {"password", true, true, NULL},
      {"tenant", false, false, NULL}},
     false,
     false},
    {"manis",
     {{"token_url", true, false, NULL},
      {"merchant_id", true, false, NULL},
      {"secret", true, true, NULL}},
     false,
     false},
    {"micovoice",
     {{"token_url", false, false, "https://api.micovoice.com/oauth/token"},
      {"client_id", true, false, NULL},
      {"client_secret", true, true, NULL}},
     true,
     false},
    {"oauth2",
     {{"token_url", true, false, NULL},
      {"grant", false, false, "client_credentials"},
      {"client_id", false, false, NULL},
      {"client_secret", false, true, NULL},
      {"auth_method", false, false, "client_secret_basic"},
      {"audience", false, false, NULL},
      {"resource", false, false, NULL},
      {"username", false, false, NULL},
      {"password", false, true, NULL},
      {"refresh_token", false, true, NULL}},
     true,
     true},
    {"custom", {{NULL, false, false, NULL}}, false, false},
};

static const provider_spec_t *
find_provider(const char *name)
{
    for (size_t i = 0; i < AP_ARRAY_LEN(providers); i++)
        if (strcmp(providers[i].name, name) == 0)
            return &providers[i];
    return NULL;
}

static void
kv_add(ap_kvlist_t *l, const char *name, char *value, bool secret)
{
    l->items = ap_xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
    l->items[l->n].name = ap_xstrdup(name);
    l->items[l->n].value = value;
    l->items[l->n].is_secret = secret;
    l->n++;
}

static void
kv_free(ap_kvlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].name);
        ap_free_secret(l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* An object of name -> string-or-secret. Header names are validated when `headers`. */
static void
parse_kv_object(ctx_t *x, const cJSON *j, const char *path, ap_kvlist_t *out, bool headers)
{
    if (j == NULL)
        return;
    if (!cJSON_IsObject(j)) {
        add_err(x, path, "expected an object of name -> value, got %s", type_name(j));
        return;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        char *p = join(path, it->string);
        bool store = false;
        char *v = NULL;
        if (cJSON_IsNumber(it) || cJSON_IsBool(it)) {
            char *pr = cJSON_PrintUnformatted(it);
            v = ap_xstrdup(pr);
            cJSON_free(pr);
        } else {
            v = get_secret(x, it, p, &store);
        }
        if (v != NULL) {
            if (headers && !valid_token_name(it->string)) {
                add_err(x, p, "expected a valid HTTP header name");
                ap_free_secret(v);
            } else if (headers && !valid_header_value(v)) {
                add_err(x, p, "header value must not contain control characters (CR/LF)");
                ap_free_secret(v);
            } else {
                kv_add(out, it->string, v, store);
            }
        }
        free(p);
    }
}

static void
parse_scope(ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    if (j == NULL)
        return;
    if (cJSON_IsString(j)) {
        char *s = expand(x, path, j->valuestring);
        if (s == NULL)
            return;
        /* A string may list scopes separated by spaces or commas. */
        for (char *p = s; *p;) {
            size_t skip = strspn(p, " ,\t");
            p += skip;
            size_t n = strcspn(p, " ,\t");
            if (n == 0)
                break;
            c->scope = ap_xrealloc(c->scope, (c->nscope + 1) * sizeof(char *));
            c->scope[c->nscope++] = ap_xstrndup(p, n);
            p += n;
        }
        free(s);
        return;
    }
    if (!cJSON_IsArray(j)) {
        add_err(x, path, "expected a string or an array of strings, got %s", type_name(j));
        return;
    }
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, j)
    {
        char *p = ap_xasprintf("%s[%zu]", path, i++);
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
            add_err(x, p, "expected a non-empty string, got %s", type_name(it));
        } else {
            char *s = expand(x, p, it->valuestring);
            if (s != NULL) {
                c->scope = ap_xrealloc(c->scope, (c->nscope + 1) * sizeof(char *));
                c->scope[c->nscope++] = s;
            }
        }
        free(p);
    }
}

static void
check_url(ctx_t *x, const char *path, const char *url)
{
    bool tls;
    char *h = NULL;
    int port;
    if (ap_conf_parse_url(url, &tls, &h, &port, NULL) != AP_OK)
        add_err(x, path, "expected an http:// or https:// URL with a host, got \"%s\"", url);
    free(h);
}

static void
parse_custom(ctx_t *x, const cJSON *j, const char *path, ap_cred_conf_t *c)
{
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(j, "request");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(j, "response");
    char *rp = join(path, "request");
    char *sp = join(path, "response");
    if (!cJSON_IsObject(req)) {
        add_err(x, rp, "required: an object {method, url, headers, query, form, json, basic}");
    } else {
        static const char *const rk[] = {"method", "url",  "headers", "query",
                                         "form",   "json", "basic",   NULL};
        check_keys(x, req, rp, rk);
        c->custom.method = get_str(x, req, "method", rp, false);
        if (c->custom.method == NULL)
            c->custom.method = ap_xstrdup("POST");
        if (strcmp(c->custom.method, "GET") != 0 && strcmp(c->custom.method, "POST") != 0 &&
            strcmp(c->custom.method, "PUT") != 0) {
            char *p = join(rp, "method");
            add_err(x, p, "expected \"GET\", \"POST\" or \"PUT\", got \"%s\"", c->custom.method);
            free(p);
        }
        c->custom.url = get_str(x, req, "url", rp, true);
        if (c->custom.url) {
            char *p = join(rp, "url");
            check_url(x, p, c->custom.url);
            free(p);
        }
        char *p;
        p = join(rp, "headers");
        parse_kv_object(x, cJSON_GetObjectItemCaseSensitive(req, "headers"), p,
                        &c->custom.headers, true);
        free(p);
        p = join(rp, "query");
        parse_kv_object(x, cJSON_GetObjectItemCaseSensitive(req, "query"), p, &c->custom.query,
                        false);
        free(p);
        p = join(rp, "form");
        parse_kv_object(x, cJSON_GetObjectItemCaseSensitive(req, "form"), p, &c->custom.form,
                        false);
        free(p);
        p = join(rp, "json");
        parse_kv_object(x, cJSON_GetObjectItemCaseSensitive(req, "json"), p, &c->custom.json,
                        false);
        free(p);
        if (c->custom.form.n > 0 && c->custom.json.n > 0)
            add_err(x, rp, "expected either \"form\" or \"json\", not both");
        const cJSON *basic = cJSON_GetObjectItemCaseSensitive(req, "basic");
        if (basic != NULL) {
            p = join(rp, "basic");
            static const char *const bk[] = {"user", "password", NULL};
            if (!cJSON_IsObject(basic)) {
                add_err(x, p, "expected an object {user, password}");
            } else {
                check_keys(x, basic, p, bk);
                c->custom.basic_user = get_str(x, basic, "user", p, true);
                char *pp = join(p, "password");
                const cJSON *pw = cJSON_GetObjectItemCaseSensitive(basic, "password");
                if (pw == NULL)
                    add_err(x, pp, "required, missing");
                else
                    c->custom.basic_pass = get_secret(x, pw, pp, NULL);
                free(pp);
            }
            free(p);
        }
    }
    if (!cJSON_IsObject(res)) {
        add_err(x, sp, "required: an object {token, token_type, expires_in, expires_at, "
                       "refresh_token, success}");
    } else {
        static const char *const sk[] = {"token",         "token_type", "expires_in", "expires_at",
                                         "refresh_token", "success",    NULL};
        check_keys(x, res, sp, sk);
        struct {
            const char *key;
            char **dst;
            bool req;
        } ptrs[] = {{"token", &c->custom.token_ptr, true},
                    {"token_type", &c->custom.type_ptr, false},
                    {"expires_in", &c->custom.expires_in_ptr, false},
                    {"expires_at", &c->custom.expires_at_ptr, false},
                    {"refresh_token", &c->custom.refresh_ptr, false}};
        for (size_t i = 0; i < AP_ARRAY_LEN(ptrs); i++) {
            *ptrs[i].dst = get_str(x, res, ptrs[i].key, sp, ptrs[i].req);
            if (*ptrs[i].dst && (*ptrs[i].dst)[0] != '/') {
                char *p = join(sp, ptrs[i].key);
                add_err(x, p, "expected a JSON pointer starting with \"/\", got \"%s\"",
                        *ptrs[i].dst);
                free(p);
            }
        }
        const cJSON *succ = cJSON_GetObjectItemCaseSensitive(res, "success");
        if (succ != NULL) {
            char *p = join(sp, "success");
            static const char *const ck[] = {"pointer", "equals", NULL};
            if (!cJSON_IsObject(succ)) {
                add_err(x, p, "expected an object {pointer, equals}");
            } else {
                check_keys(x, succ, p, ck);
                c->custom.success_ptr = get_str(x, succ, "pointer", p, true);
                const cJSON *eq = cJSON_GetObjectItemCaseSensitive(succ, "equals");
                if (cJSON_IsString(eq)) {
                    c->custom.success_equals = ap_xstrdup(eq->valuestring);
                } else if (cJSON_IsNumber(eq)) {
                    if (eq->valuedouble == (double)(long long)eq->valuedouble)
                        c->custom.success_equals =
                            ap_xasprintf("%lld", (long long)eq->valuedouble);
                    else
                        c->custom.success_equals = ap_xasprintf("%g", eq->valuedouble);
                } else if (cJSON_IsBool(eq)) {
                    c->custom.success_equals = ap_xstrdup(cJSON_IsTrue(eq) ? "true" : "false");
                } else if (eq != NULL) {
                    char *pe = join(p, "equals");
                    add_err(x, pe, "expected a string, number or boolean, got %s", type_name(eq));
                    free(pe);
                }
            }
            free(p);
        }
    }
    free(rp);
    free(sp);
}

static void
digest_cred(ap_cred_conf_t *c)
{
    ap_buf_t b = {0};
#define D(s) ap_buf_appendf(&b, "%zu:%s;", strlen((s) ? (s) : ""), (s) ? (s) : "")
    D(c->name);
    D(c->provider);
    for (size_t i = 0; i < c->fields.n; i++) {
        D(c->fields.items[i].name);
        D(c->fields.items[i].value);
    }
    ap_buf_append(&b, "|scope", 6);
    for (size_t i = 0; i < c->nscope; i++)
        D(c->scope[i]);
    const ap_kvlist_t *lists[] = {&c->params, &c->headers, &c->custom.headers, &c->custom.query,
                                  &c->custom.form, &c->custom.json};
    for (size_t l = 0; l < AP_ARRAY_LEN(lists); l++) {
        ap_buf_appendf(&b, "|%zu", l);
        for (size_t i = 0; i < lists[l]->n; i++) {
            D(lists[l]->items[i].name);
            D(lists[l]->items[i].value);
        }
    }
    D(c->inject_header);
    D(c->inject_value);
    ap_buf_appendf(&b, "|%d|%lld|%lld", c->prefetch, (long long)c->default_ttl_s,
                   (long long)c->timeout_ms);
    D(c->custom.method);
    D(c->custom.url);
    D(c->custom.basic_user);
    D(c->custom.basic_pass);
    D(c->custom.token_ptr);
    D(c->custom.type_ptr);
    D(c->custom.expires_in_ptr);
    D(c->custom.expires_at_ptr);
    D(c->custom.refresh_ptr);
    D(c->custom.success_ptr);
    D(c->custom.success_equals);
#undef D
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_Digest(b.data, b.len, md, &mdlen, EVP_sha256(), NULL);
    ap_buf_free(&b, true);
    char *hex = ap_xmalloc(mdlen * 2 + 1);
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    c->digest = hex;
}

static void
parse_cred(ctx_t *x, const char *name, const cJSON *j, ap_cred_conf_t *c)
{
    char *path = ap_xasprintf("credentials.%s", name);
    c->name = ap_xstrdup(name);
    c->timeout_ms = 10000;
    if (!cJSON_IsObject(j)) {
        add_err(x, path, "expected an object, got %s", type_name(j));
        free(path);
        return;
    }
    c->provider = get_str(x, j, "provider", path, true);
    const provider_spec_t *ps = c->provider ? find_provider(c->provider) : NULL;
    if (c->provider && ps == NULL) {
        char *p = join(path, "provider");
        add_err(x, p,
                "expected one of static, oauth2, custom, omicall, antsomi, telmai, manis, "
                "micovoice, got \"%s\"",
                c->provider);
        free(p);
    }
    /* Keys every credential takes, plus the provider's own. */
    const char *allowed[32] = {"provider", "prefetch", "default_ttl", "timeout_ms", "inject",
                               "headers"};
    size_t na = 6;
    if (ps != NULL) {
        for (size_t i = 0; i < AP_ARRAY_LEN(ps->fields) && ps->fields[i].name; i++)
            allowed[na++] = ps->fields[i].name;
        if (ps->scope)
            allowed[na++] = "scope";
        if (ps->params)
            allowed[na++] = "params";
        if (strcmp(ps->name, "custom") == 0) {
            allowed[na++] = "request";
            allowed[na++] = "response";
        }
        allowed[na] = NULL;
        check_keys(x, j, path, allowed);
        for (size_t i = 0; i < AP_ARRAY_LEN(ps->fields) && ps->fields[i].name; i++) {
            const field_spec_t *f = &ps->fields[i];
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, f->name);
            char *fp = join(path, f->name);
            char *val = NULL;
            bool store = false;
            if (v == NULL) {
                if (f->required)
                    add_err(x, fp, "required for provider \"%s\", missing", ps->name);
                else if (f->def)
                    val = ap_xstrdup(f->def);
            } else if (f->secret) {
                val = get_secret(x, v, fp, &store);
            } else if (!cJSON_IsString(v)) {
                add_err(x, fp, "expected a string, got %s", type_name(v));
            } else {
                val = expand(x, fp, v->valuestring);
            }
            if (val != NULL) {
                if (strcmp(f->name, "token_url") == 0)
                    check_url(x, fp, val);
                if (!f->secret && !valid_header_value(val))
                    add_err(x, fp, "must not contain control characters");
                kv_add(&c->fields, f->name, val, f->secret);
            }
            free(fp);
        }
        if (ps->scope) {
            char *sp = join(path, "scope");
            parse_scope(x, cJSON_GetObjectItemCaseSensitive(j, "scope"), sp, c);
            free(sp);
            if (strcmp(ps->name, "antsomi") == 0 && c->nscope == 0)
                add_err(x, path, "scope: required for provider \"antsomi\" (item, event, profile, "
                                 "promotion), missing");
        }
        if (ps->params) {
            char *pp = join(path, "params");
            parse_kv_object(x, cJSON_GetObjectItemCaseSensitive(j, "params"), pp, &c->params,
                            false);
            free(pp);
        }
        if (strcmp(ps->name, "custom") == 0)
            parse_custom(x, j, path, c);
        if (strcmp(ps->name, "oauth2") == 0) {
            const char *grant = ap_cred_conf_get(c, "grant");
            const char *am = ap_cred_conf_get(c, "auth_method");
            char *gp = join(path, "grant");
            if (grant && strcmp(grant, "client_credentials") != 0 &&
                strcmp(grant, "password") != 0 && strcmp(grant, "refresh_token") != 0)
                add_err(x, gp,
                        "expected \"client_credentials\", \"password\" or \"refresh_token\", got "
                        "\"%s\"",
                        grant);
            if (grant && strcmp(grant, "password") == 0 &&
                (!ap_cred_conf_get(c, "username") || !ap_cred_conf_get(c, "password")))
                add_err(x, gp, "grant \"password\" needs username and password");
            if (grant && strcmp(grant, "refresh_token") == 0 &&
                !ap_cred_conf_get(c, "refresh_token"))
                add_err(x, gp, "grant \"refresh_token\" needs refresh_token");
            if (grant && strcmp(grant, "client_credentials") == 0 &&
                (!ap_cred_conf_get(c, "client_id") || !ap_cred_conf_get(c, "client_secret")))
                add_err(x, gp, "grant \"client_credentials\" needs client_id and client_secret");
            free(gp);
            if (am && strcmp(am, "client_secret_basic") != 0 &&
                strcmp(am, "client_secret_post") != 0) {
                char *ap = join(path, "auth_method");
                add_err(x, ap, "expected \"client_secret_basic\" or \"client_secret_post\", got "
                               "\"%s\"",
                        am);
                free(ap);
            }
        }
    }
    c->prefetch = get_bool(x, j, "prefetch", path, false);
    c->default_ttl_s = get_int(x, j, "default_ttl", path, 0, 1, 365LL * 86400);
    c->timeout_ms = get_int(x, j, "timeout_ms", path, 10000, 100, 600000);
    char *hp = join(path, "headers");
    parse_kv_object(x, cJSON_GetObjectItemCaseSensitive(j, "headers"), hp, &c->headers, true);
    free(hp);
    const cJSON *inj = cJSON_GetObjectItemCaseSensitive(j, "inject");
    char *ip = join(path, "inject");
    if (inj != NULL) {
        static const char *const ik[] = {"header", "value", NULL};
        if (!cJSON_IsObject(inj)) {
            add_err(x, ip, "expected an object {header, value}, got %s", type_name(inj));
        } else {
            check_keys(x, inj, ip, ik);
            c->inject_header = get_str(x, inj, "header", ip, false);
            c->inject_value = get_str(x, inj, "value", ip, false);
        }
    }
    if (c->inject_header == NULL)
        c->inject_header = ap_xstrdup("Authorization");
    if (c->inject_value == NULL)
        c->inject_value = ap_xstrdup("{token_type} {token}");
    if (!valid_token_name(c->inject_header)) {
        char *p = join(ip, "header");
        add_err(x, p, "expected a valid HTTP header name, got \"%s\"", c->inject_header);
        free(p);
    }
    if (strstr(c->inject_value, "{token}") == NULL || !valid_header_value(c->inject_value)) {
        char *p = join(ip, "value");
        add_err(x, p, "expected a template containing {token} (and optionally {token_type}), "
                      "got \"%s\"",
                c->inject_value);
        free(p);
    }
    free(ip);
    digest_cred(c);
    free(path);
}

static void
cred_free(ap_cred_conf_t *c)
{
    free(c->name);
    free(c->provider);
    kv_free(&c->fields);
    for (size_t i = 0; i < c->nscope; i++)
        free(c->scope[i]);
    free(c->scope);
    kv_free(&c->params);
    kv_free(&c->headers);
    free(c->inject_header);
    free(c->inject_value);
    free(c->custom.method);
    free(c->custom.url);
    kv_free(&c->custom.headers);
    kv_free(&c->custom.query);
    kv_free(&c->custom.form);
    kv_free(&c->custom.json);
    free(c->custom.basic_user);
    ap_free_secret(c->custom.basic_pass);
    free(c->custom.token_ptr);
    free(c->custom.type_ptr);
    free(c->custom.expires_in_ptr);
    free(c->custom.expires_at_ptr);
    free(c->custom.refresh_ptr);
    free(c->custom.success_ptr);
    free(c->custom.success_equals);
    free(c->digest);
}

/* --- Routes ----------------------------------------------------------------------------------------- */

static void
parse_route(ctx_t *x, ap_conf_t *conf, const cJSON *j, size_t idx, ap_route_conf_t *r)
{
    char *path = ap_xasprintf("routes[%zu]", idx);
    if (!cJSON_IsObject(j)) {
        add_err(x, path, "expected an object {host, port, path, upstream, credential}, got %s",
                type_name(j));
        free(path);
        return;
    }
    static const char *const keys[] = {"host", "port", "path", "upstream", "credential", NULL};
    check_keys(x, j, path, keys);
    r->host = get_str(x, j, "host", path, false);
    if (r->host) {
        for (char *q = r->host; *q; q++)
            if (*q >= 'A' && *q <= 'Z')
                *q = (char)(*q + 32);
        if (!valid_host(r->host, true)) {
            char *p = join(path, "host");
            add_err(x, p, "expected a host name or \"*.example.com\", got \"%s\"", r->host);
            free(p);
        }
    }
    r->port = (int)get_int(x, j, "port", path, 0, 1, 65535);
    r->path = get_str(x, j, "path", path, false);
    if (r->path && r->path[0] != '/') {
        char *p = join(path, "path");
        add_err(x, p, "expected a path prefix starting with \"/\", got \"%s\"", r->path);
        free(p);
    }
    if (r->host == NULL && r->path == NULL)
        add_err(x, path, "a route needs \"host\" (proxy mode) or \"path\" (base-URL mode)");
    r->upstream = get_str(x, j, "upstream", path, true);
    if (r->upstream) {
        if (ap_conf_parse_url(r->upstream, &r->up_tls, &r->up_host, &r->up_port, &r->up_path) !=
            AP_OK) {
            char *p = join(path, "upstream");
            add_err(x, p, "expected an http:// or https:// base URL with a host, got \"%s\"",
                    r->upstream);
            free(p);
        }
    }
    r->credential = get_str(x, j, "credential", path, false);
    if (r->credential) {
        r->cred = ap_conf_find_cred(conf, r->credential);
        if (r->cred == NULL) {
            char *p = join(path, "credential");
            add_err(x, p, "expected the name of a credential defined in \"credentials\", got "
                          "\"%s\"",
                    r->credential);
            free(p);
        }
    }
    if (r->host && r->path)
        r->label = ap_xasprintf("%s%s%.0d%s", r->host, r->port ? ":" : "", r->port, r->path);
    else if (r->host)
        r->label = r->port ? ap_xasprintf("%s:%d", r->host, r->port) : ap_xstrdup(r->host);
    else if (r->path)
        r->label = ap_xstrdup(r->path);
    else
        r->label = ap_xasprintf("route[%zu]", idx);
    free(path);
}

static void
route_free(ap_route_conf_t *r)
{
    free(r->host);
    free(r->path);
    free(r->upstream);
    free(r->credential);
    free(r->up_host);
    free(r->up_path);
    free(r->label);
}

/* --- Top level -------------------------------------------------------------------------------------- */

static void
parse_limits(ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    c->limits.max_head = 64 * 1024;
    c->limits.max_headers = 100;
    c->limits.max_body = 0;
    c->limits.replay_body = 64 * 1024;
    c->limits.max_conns = 4096;
    c->limits.head_timeout_ms = 30000;
    c->limits.body_timeout_ms = 60000;
    c->limits.idle_timeout_ms = 60000;
    c->limits.connect_timeout_ms = 10000;
    c->limits.response_timeout_ms = 60000;
    c->limits.tunnel_idle_ms = 300000;
    c->limits.drain_timeout_ms = 10000;
    c->limits.token_wait_ms = 15000;
    if (j == NULL)
        return;
    if (!cJSON_IsObject(j)) {
        add_err(x, "limits", "expected an object, got %s", type_name(j));
        return;
    }
    static const char *const keys[] = {
        "max_head",           "max_headers",       "max_body",           "replay_body",
        "max_conns",          "head_timeout_ms",   "body_timeout_ms",    "idle_timeout_ms",
        "connect_timeout_ms", "response_timeout_ms", "tunnel_idle_ms",   "drain_timeout_ms",
        "token_wait_ms",      NULL};
    check_keys(x, j, "limits", keys);
    const int64_t day = 86400000;
    c->limits.max_head = (size_t)get_int(x, j, "max_head", "limits", 64 * 1024, 1024, 1 << 20);
    c->limits.max_headers = (size_t)get_int(x, j, "max_headers", "limits", 100, 1, 100);
    c->limits.max_body = (uint64_t)get_int(x, j, "max_body", "limits", 0, 0, INT64_MAX / 2);
    c->limits.replay_body =
        (size_t)get_int(x, j, "replay_body", "limits", 64 * 1024, 0, 16 * 1024 * 1024);
    c->limits.max_conns = (size_t)get_int(x, j, "max_conns", "limits", 4096, 1, 1000000);
    c->limits.head_timeout_ms = get_int(x, j, "head_timeout_ms", "limits", 30000, 1, day);
    c->limits.body_timeout_ms = get_int(x, j, "body_timeout_ms", "limits", 60000, 1, day);
    c->limits.idle_timeout_ms = get_int(x, j, "idle_timeout_ms", "limits", 60000, 1, day);
    c->limits.connect_timeout_ms = get_int(x, j, "connect_timeout_ms", "limits", 10000, 1, day);
    c->limits.response_timeout_ms =
        get_int(x, j, "response_timeout_ms", "limits", 60000, 1, day);
    c->limits.tunnel_idle_ms = get_int(x, j, "tunnel_idle_ms", "limits", 300000, 1, day);
    c->limits.drain_timeout_ms = get_int(x, j, "drain_timeout_ms", "limits", 10000, 0, day);
    c->limits.token_wait_ms = get_int(x, j, "token_wait_ms", "limits", 15000, 1, day);
}

static void
parse_client_auth(ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    if (j == NULL)
        return;
    if (!cJSON_IsObject(j)) {
        add_err(x, "client_auth", "expected an object {users, allow, "
                                  "insecure_allow_unauthenticated}, got %s",
                type_name(j));
        return;
    }
    static const char *const keys[] = {"users", "allow", "insecure_allow_unauthenticated", NULL};
    check_keys(x, j, "client_auth", keys);
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(j, "users");
    if (users != NULL) {
        if (!cJSON_IsObject(users)) {
            add_err(x, "client_auth.users", "expected an object of user -> password");
        } else {
            const cJSON *it;
            cJSON_ArrayForEach(it, users)
            {
                char *p = ap_xasprintf("client_auth.users.%s", it->string);
                char *pw = get_secret(x, it, p, NULL);
                if (strchr(it->string, ':') != NULL || it->string[0] == '\0') {
                    add_err(x, p, "user names must be non-empty and contain no \":\"");
                    ap_free_secret(pw);
                } else if (pw != NULL) {
                    c->users = ap_xrealloc(c->users, (c->nusers + 1) * sizeof(*c->users));
                    c->users[c->nusers].name = ap_xstrdup(it->string);
                    c->users[c->nusers].password = pw;
                    c->nusers++;
                }
                free(p);
            }
        }
    }
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(j, "allow");
    if (allow != NULL) {
        if (!cJSON_IsArray(allow)) {
            add_err(x, "client_auth.allow", "expected an array of CIDRs, got %s",
                    type_name(allow));
        } else {
            const cJSON *it;
            size_t i = 0;
            cJSON_ArrayForEach(it, allow)
            {
                char *p = ap_xasprintf("client_auth.allow[%zu]", i++);
                if (!cJSON_IsString(it) || it->valuestring[0] == '\0') {
                    add_err(x, p, "expected a CIDR such as \"10.0.0.0/8\", got %s",
                            type_name(it));
                } else {
                    c->allow_cidrs =
                        ap_xrealloc(c->allow_cidrs, (c->nallow + 1) * sizeof(char *));
                    c->allow_cidrs[c->nallow++] = ap_xstrdup(it->valuestring);
                }
                free(p);
            }
        }
    }
    c->allow_public_without_auth =
        get_bool(x, j, "insecure_allow_unauthenticated", "client_auth", false);
}

static void
json_syntax_error(ctx_t *x, const char *json, size_t len)
{
    const char *ep = cJSON_GetErrorPtr();
    size_t off = ep && ep >= json && ep <= json + len ? (size_t)(ep - json) : len;
    int line = 1, col = 1;
    for (size_t i = 0; i < off; i++) {
        if (json[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char near[24] = "";
    size_t k = 0;
    for (size_t i = off; i < len && k < sizeof(near) - 1 && json[i] != '\n'; i++)
        near[k++] = json[i];
    near[k] = '\0';
    ap_buf_appendf(&x->errs, "%s%s:%d:%d: JSON syntax error near \"%s\"", x->nerr ? "\n" : "",
                   x->file, line, col, near);
    x->nerr++;
}

ap_conf_t *
ap_conf_load_buffer(const char *json, size_t len, const char *name, char *err, size_t errlen)
{
    ctx_t x = {.file = name ? name : "config"};
    ap_conf_t *c = ap_xcalloc(1, sizeof(*c));
    c->refcnt = 1;
    c->path = name ? ap_xstrdup(name) : NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (root == NULL) {
        json_syntax_error(&x, json, len);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        add_err(&x, "(top level)", "expected an object, got %s", type_name(root));
        goto fail;
    }
    static const char *const keys[] = {"listen",      "admin",     "tls",         "connect_to",
                                       "outbound_proxy", "unmatched", "credentials", "routes",
                                       "client_auth", "limits",    "log_level",   "log_format",
                                       "connect",     NULL};
    check_keys(&x, root, "(top level)", keys);
    parse_addrs(&x, root, "listen", "127.0.0.1:3128", &c->listen, &c->nlisten);
    parse_addrs(&x, root, "admin", "127.0.0.1:9090", &c->admin, &c->nadmin);
    if (c->nlisten == 0 && x.nerr == 0)
        add_err(&x, "listen", "expected at least one address");

    const cJSON *tls = cJSON_GetObjectItemCaseSensitive(root, "tls");
    if (tls != NULL) {
        static const char *const tk[] = {"ca_file", NULL};
        if (!cJSON_IsObject(tls)) {
            add_err(&x, "tls", "expected an object {ca_file}, got %s", type_name(tls));
        } else {
            check_keys(&x, tls, "tls", tk);
            c->ca_file = get_str(&x, tls, "ca_file", "tls", false);
            if (c->ca_file) {
                FILE *f = fopen(c->ca_file, "r");
                if (f == NULL)
                    add_err(&x, "tls.ca_file", "cannot read %s: %s", c->ca_file,
                            strerror(errno));
                else
                    fclose(f);
            }
        }
    }
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "connect_to");
    if (ct != NULL) {
        if (!cJSON_IsObject(ct)) {
            add_err(&x, "connect_to", "expected an object of \"host:port\" -> \"addr:port\"");
        } else {
            const cJSON *it;
            cJSON_ArrayForEach(it, ct)
            {
                char *p = ap_xasprintf("connect_to.%s", it->string);
                char *h = NULL, *pt = NULL, *h2 = NULL, *pt2 = NULL;
                char *to = cJSON_IsString(it) ? expand(&x, p, it->valuestring) : NULL;
                if (!cJSON_IsString(it))
                    add_err(&x, p, "expected \"addr:port\", got %s", type_name(it));
                else if (split_hostport(it->string, &h, &pt) != AP_OK)
                    add_err(&x, p, "the key must be \"host:port\"");
                else if (to != NULL && split_hostport(to, &h2, &pt2) != AP_OK)
                    add_err(&x, p, "expected \"addr:port\", got \"%s\"", to);
                else if (to != NULL) {
                    c->connect_to = ap_xrealloc(c->connect_to,
                                                (c->nconnect_to + 1) * sizeof(*c->connect_to));
                    c->connect_to[c->nconnect_to].from = ap_xstrdup(it->string);
                    c->connect_to[c->nconnect_to].to = ap_xstrdup(to);
                    c->nconnect_to++;
                }
                free(h);
                free(pt);
                free(h2);
                free(pt2);
                free(to);
                free(p);
            }
        }
    }
    c->outbound_proxy = get_str(&x, root, "outbound_proxy", "(top level)", false);
    char *um = get_str(&x, root, "unmatched", "(top level)", false);
    if (um != NULL) {
        if (strcmp(um, "forward") == 0)
            c->unmatched_forward = true;
        else if (strcmp(um, "deny") != 0)
            add_err(&x, "unmatched", "expected \"deny\" or \"forward\", got \"%s\"", um);
        free(um);
    }
    c->allow_connect = get_bool(&x, root, "connect", "(top level)", true);
    c->log_level = get_str(&x, root, "log_level", "(top level)", false);
    if (c->log_level && strcmp(c->log_level, "error") != 0 && strcmp(c->log_level, "warn") != 0 &&
        strcmp(c->log_level, "info") != 0 && strcmp(c->log_level, "debug") != 0)
        add_err(&x, "log_level", "expected \"error\", \"warn\", \"info\" or \"debug\", got \"%s\"",
                c->log_level);
    c->log_json = true;
    char *lf = get_str(&x, root, "log_format", "(top level)", false);
    if (lf != NULL) {
        if (strcmp(lf, "text") == 0)
            c->log_json = false;
        else if (strcmp(lf, "json") != 0)
            add_err(&x, "log_format", "expected \"json\" or \"text\", got \"%s\"", lf);
        free(lf);
    }
    parse_limits(&x, cJSON_GetObjectItemCaseSensitive(root, "limits"), c);
    parse_client_auth(&x, cJSON_GetObjectItemCaseSensitive(root, "client_auth"), c);

    const cJSON *creds = cJSON_GetObjectItemCaseSensitive(root, "credentials");
    if (creds != NULL && !cJSON_IsObject(creds)) {
        add_err(&x, "credentials", "expected an object of name -> credential, got %s",
                type_name(creds));
    } else if (creds != NULL) {
        size_t n = (size_t)cJSON_GetArraySize(creds);
        c->creds = ap_xcalloc(n ? n : 1, sizeof(*c->creds));
        const cJSON *it;
        cJSON_ArrayForEach(it, creds)
        {
            if (!valid_token_name(it->string)) {
                char *p = ap_xasprintf("credentials.%s", it->string);
                add_err(&x, p, "credential names must be letters, digits, '-', '_' or '.'");
                free(p);
            }
            parse_cred(&x, it->string, it, &c->creds[c->ncreds++]);
        }
    }
    const cJSON *routes = cJSON_GetObjectItemCaseSensitive(root, "routes");
    if (routes != NULL && !cJSON_IsArray(routes)) {
        add_err(&x, "routes", "expected an array of routes, got %s", type_name(routes));
    } else if (routes != NULL) {
        size_t n = (size_t)cJSON_GetArraySize(routes);
        c->routes = ap_xcalloc(n ? n : 1, sizeof(*c->routes));
        const cJSON *it;
        cJSON_ArrayForEach(it, routes)
        {
            parse_route(&x, c, it, c->nroutes, &c->routes[c->nroutes]);
            c->nroutes++;
        }
    }
    if (x.nerr > 0)
        goto fail;
    cJSON_Delete(root);
    ap_buf_free(&x.errs, false);
    if (err && errlen)
        err[0] = '\0';
    return c;
fail:
    if (root)
        cJSON_Delete(root);
    if (err && errlen)
        snprintf(err, errlen, "%s", x.errs.data ? x.errs.data : "invalid configuration");
    ap_buf_free(&x.errs, false);
    c->refcnt = 1;
    ap_conf_unref(c);
    return NULL;
}

ap_conf_t *
ap_conf_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    ap_buf_t b = {0};
    b.max = 16 * 1024 * 1024;
    char tmp[8192];
    size_t n;
    bool big = false;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        if (ap_buf_append(&b, tmp, n) != AP_OK) {
            big = true;
            break;
        }
    fclose(f);
    if (big) {
        snprintf(err, errlen, "%s: larger than 16 MiB", path);
        ap_buf_free(&b, true);
        return NULL;
    }
    ap_conf_t *c = ap_conf_load_buffer(b.data ? b.data : "", b.len, path, err, errlen);
    ap_buf_free(&b, true); /* literal secrets may sit in the file */
    return c;
}

ap_conf_t *
ap_conf_ref(ap_conf_t *c)
{
    c->refcnt++;
    return c;
}

void
ap_conf_unref(ap_conf_t *c)
{
    if (c == NULL || --c->refcnt > 0)
        return;
    free(c->path);
    for (size_t i = 0; i < c->nlisten; i++) {
        free(c->listen[i].host);
        free(c->listen[i].port);
    }
    free(c->listen);
    for (size_t i = 0; i < c->nadmin; i++) {
        free(c->admin[i].host);
        free(c->admin[i].port);
    }
    free(c->admin);
    free(c->ca_file);
    for (size_t i = 0; i < c->nconnect_to; i++) {
        free(c->connect_to[i].from);
        free(c->connect_to[i].to);
    }
    free(c->connect_to);
    free(c->outbound_proxy);
    for (size_t i = 0; i < c->ncreds; i++)
        cred_free(&c->creds[i]);
    free(c->creds);
    for (size_t i = 0; i < c->nroutes; i++)
        route_free(&c->routes[i]);
    free(c->routes);
    for (size_t i = 0; i < c->nusers; i++) {
        free(c->users[i].name);
        ap_free_secret(c->users[i].password);
    }
    free(c->users);
    for (size_t i = 0; i < c->nallow; i++)
        free(c->allow_cidrs[i]);
    free(c->allow_cidrs);
    free(c->log_level);
    free(c);
}

const char *
ap_cred_conf_get(const ap_cred_conf_t *c, const char *field)
{
    for (size_t i = 0; i < c->fields.n; i++)
        if (strcmp(c->fields.items[i].name, field) == 0)
            return c->fields.items[i].value;
    return NULL;
}

const ap_cred_conf_t *
ap_conf_find_cred(const ap_conf_t *c, const char *name)
{
    for (size_t i = 0; i < c->ncreds; i++)
        if (c->creds[i].name && strcmp(c->creds[i].name, name) == 0)
            return &c->creds[i];
    return NULL;
}

/* --- --check output ------------------------------------------------------------------------------ */

void
ap_conf_dump(const ap_conf_t *c, FILE *out)
{
    for (size_t i = 0; i < c->nlisten; i++)
        fprintf(out, "listen      %s:%s\n", c->listen[i].host, c->listen[i].port);
    for (size_t i = 0; i < c->nadmin; i++)
        fprintf(out, "admin       %s:%s\n", c->admin[i].host, c->admin[i].port);
    if (c->nadmin == 0)
        fprintf(out, "admin       disabled\n");
    fprintf(out, "unmatched   %s\n", c->unmatched_forward ? "forward" : "deny (403)");
    fprintf(out, "tls.ca_file %s\n", c->ca_file ? c->ca_file : "(system default)");
    for (size_t i = 0; i < c->nconnect_to; i++)
        fprintf(out, "connect_to  %s -> %s\n", c->connect_to[i].from, c->connect_to[i].to);
    if (c->nusers || c->nallow)
        fprintf(out, "client_auth %zu user(s), %zu allowlist entr%s\n", c->nusers, c->nallow,
                c->nallow == 1 ? "y" : "ies");
    fprintf(out, "routes:\n");
    for (size_t i = 0; i < c->nroutes; i++) {
        const ap_route_conf_t *r = &c->routes[i];
        fprintf(out, "  %-30s -> %s%s%s\n", r->label, r->upstream,
                r->credential ? "  credential " : "  (no credential)",
                r->credential ? r->credential : "");
    }
    fprintf(out, "credentials:\n");
    for (size_t i = 0; i < c->ncreds; i++) {
        const ap_cred_conf_t *cr = &c->creds[i];
        fprintf(out, "  %s: provider %s%s\n", cr->name, cr->provider ? cr->provider : "?",
                cr->prefetch ? ", prefetch" : "");
        for (size_t k = 0; k < cr->fields.n; k++)
            fprintf(out, "    %-14s %s\n", cr->fields.items[k].name,
                    cr->fields.items[k].is_secret ? "(secret)" : cr->fields.items[k].value);
        if (cr->nscope) {
            fprintf(out, "    %-14s", "scope");
            for (size_t k = 0; k < cr->nscope; k++)
                fprintf(out, " %s", cr->scope[k]);
            fprintf(out, "\n");
        }
        for (size_t k = 0; k < cr->params.n; k++)
            fprintf(out, "    param %-8s %s\n", cr->params.items[k].name,
                    cr->params.items[k].is_secret ? "(secret)" : cr->params.items[k].value);
        if (cr->custom.url)
            fprintf(out, "    %-14s %s %s\n", "request", cr->custom.method, cr->custom.url);
        fprintf(out, "    %-14s %s: %s\n", "inject", cr->inject_header, cr->inject_value);
        for (size_t k = 0; k < cr->headers.n; k++)
            fprintf(out, "    header %-7s %s\n", cr->headers.items[k].name,
                    cr->headers.items[k].is_secret ? "(secret)" : cr->headers.items[k].value);
        if (cr->default_ttl_s)
            fprintf(out, "    %-14s %llds\n", "default_ttl", (long long)cr->default_ttl_s);
    }
}

/* --- Environment-only mode ---------------------------------------------------------------------- */

static void
env_field(cJSON *cred, const char *field, bool secret)
{
    char var[96], fvar[104];
    snprintf(var, sizeof(var), "AUTHPROXY_");
    size_t k = strlen(var);
    for (const char *p = field; *p && k < sizeof(var) - 1; p++)
        var[k++] = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    var[k] = '\0';
    snprintf(fvar, sizeof(fvar), "%s_FILE", var);
    if (getenv(var) != NULL) {
        if (secret) {
            cJSON *o = cJSON_AddObjectToObject(cred, field);
            cJSON_AddStringToObject(o, "env", var);
        } else {
            cJSON_AddStringToObject(cred, field, getenv(var));
        }
    } else if (secret && getenv(fvar) != NULL) {
        cJSON *o = cJSON_AddObjectToObject(cred, field);
        cJSON_AddStringToObject(o, "file", getenv(fvar));
    }
}

ap_conf_t *
ap_conf_load_env(bool *used, char *err, size_t errlen)
{
    const char *up = getenv("AUTHPROXY_UPSTREAM");
    *used = up != NULL;
    if (up == NULL)
        return NULL;
    cJSON *root = cJSON_CreateObject();
    const char *v;
    if ((v = getenv("AUTHPROXY_LISTEN")) != NULL)
        cJSON_AddStringToObject(root, "listen", v);
    if ((v = getenv("AUTHPROXY_ADMIN")) != NULL)
        cJSON_AddStringToObject(root, "admin", v);
    if ((v = getenv("AUTHPROXY_CA_FILE")) != NULL)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "tls"), "ca_file", v);
    if ((v = getenv("AUTHPROXY_UNMATCHED")) != NULL)
        cJSON_AddStringToObject(root, "unmatched", v);
    if ((v = getenv("AUTHPROXY_LOG_LEVEL")) != NULL)
        cJSON_AddStringToObject(root, "log_level", v);
    if ((v = getenv("AUTHPROXY_ALLOW")) != NULL) {
        cJSON *ca = cJSON_AddObjectToObject(root, "client_auth");
        cJSON *arr = cJSON_AddArrayToObject(ca, "allow");
        char *copy = ap_xstrdup(v);
        for (char *p = copy; *p;) {
            size_t n = strcspn(p, ", ");
            if (n > 0) {
                char *item = ap_xstrndup(p, n);
                cJSON_AddItemToArray(arr, cJSON_CreateString(item));
                free(item);
            }
            p += n;
            p += strspn(p, ", ");
        }
        free(copy);
    }
    if ((v = getenv("AUTHPROXY_CONNECT_TO")) != NULL) {
        cJSON *ct = cJSON_AddObjectToObject(root, "connect_to");
        char *copy = ap_xstrdup(v);
        for (char *p = copy; *p;) {
            size_t n = strcspn(p, ",");
            char *item = ap_xstrndup(p, n);
            char *eq = strchr(item, '=');
            if (eq != NULL) {
                *eq = '\0';
                cJSON_AddStringToObject(ct, item, eq + 1);
            }
            free(item);
            p += n;
            if (*p == ',')
                p++;
        }
        free(copy);
    }
    const char *prov = getenv("AUTHPROXY_PROVIDER");
    if (prov == NULL)
        prov = "static";
    cJSON *creds = cJSON_AddObjectToObject(root, "credentials");
    cJSON *cred = cJSON_AddObjectToObject(creds, "default");
    cJSON_AddStringToObject(cred, "provider", prov);
    const provider_spec_t *ps = find_provider(prov);
    if (ps != NULL) {
        for (size_t i = 0; i < AP_ARRAY_LEN(ps->fields) && ps->fields[i].name; i++)
            env_field(cred, ps->fields[i].name, ps->fields[i].secret);
        if (ps->scope && (v = getenv("AUTHPROXY_SCOPE")) != NULL)
            cJSON_AddStringToObject(cred, "scope", v);
    }
    if ((v = getenv("AUTHPROXY_PREFETCH")) != NULL)
        cJSON_AddBoolToObject(cred, "prefetch", strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
    cJSON *routes = cJSON_AddArrayToObject(root, "routes");
    cJSON *route = cJSON_CreateObject();
    cJSON_AddItemToArray(routes, route);
    const char *rh = getenv("AUTHPROXY_ROUTE_HOST");
    const char *rp = getenv("AUTHPROXY_ROUTE_PATH");
    char *uphost = NULL;
    bool tls;
    int port;
    if (rh != NULL) {
        cJSON_AddStringToObject(route, "host", rh);
    } else if (rp == NULL && ap_conf_parse_url(up, &tls, &uphost, &port, NULL) == AP_OK) {
        cJSON_AddStringToObject(route, "host", uphost);
    }
    free(uphost);
    if (rp != NULL)
        cJSON_AddStringToObject(route, "path", rp);
    cJSON_AddStringToObject(route, "upstream", up);
    cJSON_AddStringToObject(route, "credential", "default");
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    ap_conf_t *c = ap_conf_load_buffer(json, strlen(json), "(environment)", err, errlen);
    ap_wipe(json, strlen(json));
    cJSON_free(json);
    return c;
}
