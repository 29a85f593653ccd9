/*
 * provider.c: the five presets, generic OAuth2 and the declarative custom provider.
 *
 * Each preset follows its provider's document (../shared/providers/):
 *   omicall    GET {token_url}?apiKey=KEY, Content-Type: application/json; success only when
 *              status_code == 9999; token at payload.access_token; lifetime from the JWT exp.
 *   antsomi    POST form grant_type=client_credentials, client_id, client_secret, scope joined
 *              with ","; accessToken, absolute accessTokenExpiresAt (ISO-8601).
 *   telmai     POST {auth_endpoint}/auth/token with clientId, grantType=password, username,
 *              password, tenant; renew with grantType=refresh_token + refreshToken. The
 *              document's header table says form body while its curl example puts every
 *              parameter in the query string: we send both, so a server following either part
 *              of the document accepts the request. expires is relative seconds.
 *   manis      POST, headers x-merchant-id and x-secret, empty body; token, tokenType, absolute
 *              integer expiresAt in seconds or milliseconds.
 *   micovoice  RFC 6749 client_credentials, form body, scope joined with " "; expires_in.
 *   oauth2     RFC 6749: client_credentials / password / refresh_token grants, client auth
 *              client_secret_basic (id and secret form-encoded before base64, 2.3.1) or
 *              client_secret_post; scope, audience, resource, extra params.
 *   custom     a request template and JSON pointers from the config.
 * Anything that does not yield a token is a failure: HTTP errors, 200 with an error code, HTML,
 * truncated or non-JSON bodies, a missing/empty token, a token with characters that cannot go
 * into a header.
 */
#include "provider.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "token_json.h"

void
ap_treq_header(ap_treq_t *r, const char *name, const char *value)
{
    if (r->nheaders >= AP_ARRAY_LEN(r->headers))
        return;
    r->headers[r->nheaders++] = ap_xasprintf("%s: %s", name, value);
}

void
ap_treq_free(ap_treq_t *r)
{
    ap_buf_free(&r->url, true);
    ap_buf_free(&r->body, true);
    for (size_t i = 0; i < r->nheaders; i++)
        ap_free_secret(r->headers[i]);
    ap_free_secret(r->basic_user);
    ap_free_secret(r->basic_pass);
    memset(r, 0, sizeof(*r));
}

void
ap_tres_free(ap_tres_t *t)
{
    ap_free_secret(t->token);
    free(t->token_type);
    ap_free_secret(t->refresh_token);
    t->token = t->token_type = t->refresh_token = NULL;
}

static const char *
get(const ap_cred_conf_t *c, const char *f)
{
    return ap_cred_conf_get(c, f);
}

static void
url_with_query(ap_treq_t *r, const char *base, const ap_buf_t *query)
{
    ap_buf_append(&r->url, base, strlen(base));
    if (query && query->len) {
        ap_buf_append(&r->url, strchr(base, '?') ? "&" : "?", 1);
        ap_buf_append(&r->url, query->data, query->len);
    }
}

static char *
join_scope(const ap_cred_conf_t *c, const char *sep)
{
    if (c->nscope == 0)
        return NULL;
    ap_buf_t b = {0};
    for (size_t i = 0; i < c->nscope; i++) {
        if (i)
            ap_buf_append(&b, sep, strlen(sep));
        ap_buf_append(&b, c->scope[i], strlen(c->scope[i]));
    }
    return b.data;
}

static void
form_post(ap_treq_t *r, const char *url)
{
    r->method = "POST";
    ap_buf_append(&r->url, url, strlen(url));
    ap_treq_header(r, "Content-Type", "application/x-www-form-urlencoded");
    ap_treq_header(r, "Accept", "application/json");
}

/* --- Request builders ------------------------------------------------------------------------ */

static void
build_omicall(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    ap_buf_t q = {0};
    ap_form_add(&q, "apiKey", get(c, "api_key"));
    r->method = "GET";
    url_with_query(r, get(c, "token_url"), &q);
    ap_buf_free(&q, true);
    ap_treq_header(r, "Content-Type", "application/json");
    ap_treq_header(r, "Accept", "application/json");
}

static void
build_antsomi(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    form_post(r, get(c, "token_url"));
    char *scope = join_scope(c, ",");
    ap_form_add(&r->body, "grant_type", "client_credentials");
    ap_form_add(&r->body, "client_id", get(c, "client_id"));
    ap_form_add(&r->body, "client_secret", get(c, "client_secret"));
    ap_form_add(&r->body, "scope", scope);
    free(scope);
}

static void
build_telmai(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    ap_buf_t p = {0};
    ap_form_add(&p, "clientId", get(c, "client_id"));
    if (refresh != NULL) {
        ap_form_add(&p, "grantType", "refresh_token");
        ap_form_add(&p, "refreshToken", refresh);
    } else {
        ap_form_add(&p, "grantType", "password");
        ap_form_add(&p, "username", get(c, "username"));
        ap_form_add(&p, "password", get(c, "password"));
    }
    ap_form_add(&p, "tenant", get(c, "tenant"));
    r->method = "POST";
    url_with_query(r, get(c, "token_url"), &p);
    ap_treq_header(r, "Content-Type", "application/x-www-form-urlencoded");
    ap_treq_header(r, "Accept", "*/*");
    ap_buf_append(&r->body, p.data, p.len);
    ap_buf_free(&p, true);
}

static void
build_manis(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    r->method = "POST";
    ap_buf_append(&r->url, get(c, "token_url"), strlen(get(c, "token_url")));
    ap_treq_header(r, "x-merchant-id", get(c, "merchant_id"));
    ap_treq_header(r, "x-secret", get(c, "secret"));
    ap_treq_header(r, "Accept", "application/json");
    /* An empty POST: no body, so no Content-Type (curl would add a form type otherwise). */
    r->headers[r->nheaders++] = ap_xstrdup("Content-Type:");
}

static void
build_micovoice(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    form_post(r, get(c, "token_url"));
    char *scope = join_scope(c, " ");
    ap_form_add(&r->body, "grant_type", "client_credentials");
    ap_form_add(&r->body, "client_id", get(c, "client_id"));
    ap_form_add(&r->body, "client_secret", get(c, "client_secret"));
    ap_form_add(&r->body, "scope", scope);
    free(scope);
}

static char *
form_encoded(const char *s)
{
    ap_buf_t b = {0};
    ap_buf_append(&b, "", 0);
    ap_form_encode(&b, s);
    return b.data;
}

static void
build_oauth2(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    form_post(r, get(c, "token_url"));
    const char *grant = get(c, "grant") ? get(c, "grant") : "client_credentials";
    const char *id = get(c, "client_id"), *secret = get(c, "client_secret");
    const char *method = get(c, "auth_method") ? get(c, "auth_method") : "client_secret_basic";
    if (refresh == NULL && strcmp(grant, "refresh_token") == 0)
        refresh = get(c, "refresh_token");
    if (refresh != NULL) {
        ap_form_add(&r->body, "grant_type", "refresh_token");
        ap_form_add(&r->body, "refresh_token", refresh);
    } else {
        ap_form_add(&r->body, "grant_type", grant);
        if (strcmp(grant, "password") == 0) {
            ap_form_add(&r->body, "username", get(c, "username"));
            ap_form_add(&r->body, "password", get(c, "password"));
        }
    }
    char *scope = join_scope(c, " ");
    ap_form_add(&r->body, "scope", scope);
    free(scope);
    ap_form_add(&r->body, "audience", get(c, "audience"));
    ap_form_add(&r->body, "resource", get(c, "resource"));
    for (size_t i = 0; i < c->params.n; i++)
        ap_form_add(&r->body, c->params.items[i].name, c->params.items[i].value);
    if (id != NULL && secret != NULL && strcmp(method, "client_secret_basic") == 0) {
        r->basic_user = form_encoded(id);
        r->basic_pass = form_encoded(secret);
    } else {
        ap_form_add(&r->body, "client_id", id);
        ap_form_add(&r->body, "client_secret", secret);
    }
}

/* v with every "{refresh_token}" replaced by rt: a new string (free with ap_free_secret), or NULL
 * when there is nothing to replace. */
static char *
subst_refresh(const char *v, const char *rt)
{
    static const char mark[] = "{refresh_token}";
    if (rt == NULL || v == NULL || strstr(v, mark) == NULL)
        return NULL;
    ap_buf_t b = {0};
    for (const char *p = v; *p;) {
        const char *m = strstr(p, mark);
        if (m == NULL) {
            ap_buf_append(&b, p, strlen(p));
            break;
        }
        ap_buf_append(&b, p, (size_t)(m - p));
        ap_buf_append(&b, rt, strlen(rt));
        p = m + sizeof(mark) - 1;
    }
    return b.data ? b.data : ap_xstrdup("");
}

/* A custom template's value, with the refresh token in place when renewing. */
#define CUSTOM_VALUE(list, i, rt, tmp)                                                             \
    ((tmp) = subst_refresh((list).items[i].value, (rt)), (tmp) ? (tmp) : (list).items[i].value)

static void
build_custom(const ap_cred_conf_t *c, const char *refresh, ap_treq_t *r)
{
    /* Renewing with a refresh token uses refresh_request when the config has one. */
    const char *rt = c->custom.has_refresh ? refresh : NULL;
    const ap_custom_req_t *t = rt != NULL ? &c->custom.refresh : &c->custom.req;
    char *tmp;
    r->method = t->method ? t->method : "POST";
    ap_buf_t q = {0};
    for (size_t i = 0; i < t->query.n; i++) {
        ap_form_add(&q, t->query.items[i].name, CUSTOM_VALUE(t->query, i, rt, tmp));
        ap_free_secret(tmp);
    }
    url_with_query(r, t->url, &q);
    ap_buf_free(&q, true);
    bool has_ct = false;
    for (size_t i = 0; i < t->headers.n; i++) {
        if (strcasecmp(t->headers.items[i].name, "content-type") == 0)
            has_ct = true;
        ap_treq_header(r, t->headers.items[i].name, CUSTOM_VALUE(t->headers, i, rt, tmp));
        ap_free_secret(tmp);
    }
    if (t->form.n > 0) {
        if (!has_ct)
            ap_treq_header(r, "Content-Type", "application/x-www-form-urlencoded");
        for (size_t i = 0; i < t->form.n; i++) {
            ap_form_add(&r->body, t->form.items[i].name, CUSTOM_VALUE(t->form, i, rt, tmp));
            ap_free_secret(tmp);
        }
    } else if (t->json.n > 0) {
        if (!has_ct)
            ap_treq_header(r, "Content-Type", "application/json");
        cJSON *o = cJSON_CreateObject();
        for (size_t i = 0; i < t->json.n; i++) {
            cJSON_AddStringToObject(o, t->json.items[i].name, CUSTOM_VALUE(t->json, i, rt, tmp));
            ap_free_secret(tmp);
        }
        char *s = cJSON_PrintUnformatted(o);
        ap_buf_append(&r->body, s, strlen(s));
        ap_wipe(s, strlen(s));
        cJSON_free(s);
        /* cJSON copied the values: wipe its copies before freeing. */
        cJSON *it;
        cJSON_ArrayForEach(it, o)
        {
            if (it->valuestring != NULL)
                ap_wipe(it->valuestring, strlen(it->valuestring));
        }
        cJSON_Delete(o);
    } else if (!has_ct && strcmp(r->method, "GET") != 0) {
        r->headers[r->nheaders++] = ap_xstrdup("Content-Type:");
    }
    if (t->basic_user) {
        r->basic_user = ap_xstrdup(t->basic_user);
        r->basic_pass = ap_xstrdup(t->basic_pass ? t->basic_pass : "");
    }
}

/* --- Response parsing ---------------------------------------------------------------------------
 */

typedef struct map_s {
    const char *token, *type, *expires_in, *expires_at, *refresh, *success, *success_equals;
} map_t;

/* A token goes into a header line: visible ASCII only (RFC 6750 b64token is narrower still). */
static bool
header_safe(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return false;
    return true;
}

/* Best human explanation an error body offers (never echoing unknown fields). */
static void
error_detail(const cJSON *root, char *out, size_t n)
{
    static const char *const keys[] = {"error",  "error_description", "name",  "message",
                                       "detail", "description",       "title", "soaCode"};
    ap_buf_t b = {0};
    for (size_t i = 0; i < AP_ARRAY_LEN(keys); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        char s[160];
        if (v && ap_json_scalar(v, s, sizeof(s)) && s[0]) {
            ap_buf_appendf(&b, "%s%s=\"", b.len ? ", " : "", keys[i]);
            for (char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == '"')
                    *p = ' ';
            ap_buf_append(&b, s, strlen(s));
            ap_buf_append(&b, "\"", 1);
        }
    }
    snprintf(out, n, "%s", b.data ? b.data : "");
    ap_buf_free(&b, false);
}

static ap_rc_t
parse_mapped(const ap_cred_conf_t *c, const ap_fetch_res_t *res, const map_t *m, ap_tres_t *out)
{
    const char *name = c->name;
    if (res->status == 0) {
        snprintf(out->detail, sizeof(out->detail),
                 "credential \"%s\": token endpoint unreachable: %s", name,
                 res->error ? res->error : "transfer failed");
        return AP_ERR;
    }
    if (res->truncated) {
        snprintf(out->detail, sizeof(out->detail),
                 "credential \"%s\": token endpoint answered HTTP %d with an oversized body", name,
                 res->status);
        return AP_ERR;
    }
    cJSON *root = cJSON_ParseWithLength(res->body, res->body_len);
    if (res->status < 200 || res->status > 299) {
        char why[200] = "";
        if (cJSON_IsObject(root))
            error_detail(root, why, sizeof(why));
        snprintf(out->detail, sizeof(out->detail),
                 "credential \"%s\": token endpoint answered HTTP %d%s%s", name, res->status,
                 why[0] ? ": " : "", why);
        cJSON_Delete(root);
        return AP_ERR;
    }
    if (!cJSON_IsObject(root)) {
        bool html =
            res->body_len > 0 && memchr(res->body, '<', res->body_len < 64 ? res->body_len : 64);
        snprintf(out->detail, sizeof(out->detail),
                 "credential \"%s\": token endpoint answered HTTP %d with %s", name, res->status,
                 res->body_len == 0 ? "an empty body"
                 : html             ? "an HTML page, not JSON"
                                    : "a body that is not a JSON object (truncated or garbage)");
        cJSON_Delete(root);
        return AP_ERR;
    }
    ap_rc_t rc = AP_ERR;
    char s[128];
    if (m->success != NULL) {
        const cJSON *sv = ap_json_pointer(root, m->success);
        bool ok = sv != NULL;
        if (ok && m->success_equals != NULL)
            ok = ap_json_scalar(sv, s, sizeof(s)) && strcmp(s, m->success_equals) == 0;
        if (!ok) {
            char why[200] = "";
            error_detail(root, why, sizeof(why));
            char shown[64] = "missing";
            if (sv != NULL && ap_json_scalar(sv, s, sizeof(s)))
                snprintf(shown, sizeof(shown), "%.40s", s);
            ap_fmt_trunc(out->detail, sizeof(out->detail),
                         "credential \"%s\": token endpoint reported failure (%s is %s, expected "
                         "%s)%s%s",
                         name, m->success, shown, m->success_equals ? m->success_equals : "present",
                         why[0] ? ": " : "", why);
            goto out;
        }
    }
    const cJSON *tok = ap_json_pointer(root, m->token);
    if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0') {
        char why[200] = "";
        error_detail(root, why, sizeof(why));
        ap_fmt_trunc(out->detail, sizeof(out->detail),
                     "credential \"%s\": token endpoint answered %d without a token at %s%s%s",
                     name, res->status, m->token, why[0] ? ": " : "", why);
        goto out;
    }
    if (!header_safe(tok->valuestring)) {
        snprintf(out->detail, sizeof(out->detail),
                 "credential \"%s\": the token contains characters that cannot be sent in a "
                 "header",
                 name);
        goto out;
    }
    out->token = ap_xstrdup(tok->valuestring);
    const cJSON *ty = m->type ? ap_json_pointer(root, m->type) : NULL;
    if (cJSON_IsString(ty) && ty->valuestring[0] && header_safe(ty->valuestring))
        out->token_type = ap_xstrdup(ty->valuestring);
    const cJSON *rt = m->refresh ? ap_json_pointer(root, m->refresh) : NULL;
    if (cJSON_IsString(rt) && rt->valuestring[0])
        out->refresh_token = ap_xstrdup(rt->valuestring);
    const cJSON *ei = m->expires_in ? ap_json_pointer(root, m->expires_in) : NULL;
    if (cJSON_IsNumber(ei)) {
        out->has_lifetime = true;
        out->lifetime_ms = (int64_t)(ei->valuedouble * 1000.0);
    } else if (cJSON_IsString(ei)) {
        char *end;
        double v = strtod(ei->valuestring, &end);
        if (end != ei->valuestring && *end == '\0') {
            out->has_lifetime = true;
            out->lifetime_ms = (int64_t)(v * 1000.0);
        }
    }
    const cJSON *ea = m->expires_at ? ap_json_pointer(root, m->expires_at) : NULL;
    if (!out->has_lifetime && ea != NULL) {
        int64_t ms;
        if (cJSON_IsNumber(ea) && ea->valuedouble > 0) {
            out->has_abs = true;
            out->abs_wall_ms = ap_epoch_to_ms(ea->valuedouble);
        } else if (cJSON_IsString(ea) && ap_parse_iso8601(ea->valuestring, &ms) == AP_OK) {
            out->has_abs = true;
            out->abs_wall_ms = ms;
        } else if (cJSON_IsString(ea)) {
            char *end;
            double v = strtod(ea->valuestring, &end);
            if (end != ea->valuestring && *end == '\0' && v > 0) {
                out->has_abs = true;
                out->abs_wall_ms = ap_epoch_to_ms(v);
            }
        }
    }
    rc = AP_OK;
out:
    cJSON_Delete(root);
    return rc;
}

static ap_rc_t
parse_omicall(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out)
{
    static const map_t m = {
        "/payload/access_token", "/payload/token_type", NULL, NULL, NULL, "/status_code", "9999"};
    return parse_mapped(c, res, &m, out);
}

static ap_rc_t
parse_antsomi(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out)
{
    static const map_t m = {"/accessToken", "/tokenType", NULL, "/accessTokenExpiresAt",
                            NULL,           NULL,         NULL};
    return parse_mapped(c, res, &m, out);
}

static ap_rc_t
parse_telmai(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out)
{
    static const map_t m = {"/access_token",  "/token_type", "/expires", NULL,
                            "/refresh_token", NULL,          NULL};
    return parse_mapped(c, res, &m, out);
}

static ap_rc_t
parse_manis(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out)
{
    static const map_t m = {"/token", "/tokenType", NULL, "/expiresAt", NULL, NULL, NULL};
    return parse_mapped(c, res, &m, out);
}

static ap_rc_t
parse_oauth2(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out)
{
    static const map_t m = {"/access_token",  "/token_type", "/expires_in", NULL,
                            "/refresh_token", NULL,          NULL};
    return parse_mapped(c, res, &m, out);
}

static ap_rc_t
parse_custom(const ap_cred_conf_t *c, const ap_fetch_res_t *res, ap_tres_t *out)
{
    /* A refresh token is kept only when there is a refresh_request to use it in. */
    map_t m = {c->custom.token_ptr,
               c->custom.type_ptr,
               c->custom.expires_in_ptr,
               c->custom.expires_at_ptr,
               c->custom.has_refresh ? c->custom.refresh_ptr : NULL,
               c->custom.success_ptr,
               c->custom.success_equals};
    return parse_mapped(c, res, &m, out);
}

static const ap_provider_t providers[] = {
    {"omicall", build_omicall, parse_omicall, false},
    {"antsomi", build_antsomi, parse_antsomi, false},
    {"telmai", build_telmai, parse_telmai, true},
    {"manis", build_manis, parse_manis, false},
    {"micovoice", build_micovoice, parse_oauth2, false},
    {"oauth2", build_oauth2, parse_oauth2, true},
    {"custom", build_custom, parse_custom, true},
};

const ap_provider_t *
ap_provider_find(const char *name)
{
    for (size_t i = 0; i < AP_ARRAY_LEN(providers); i++)
        if (strcmp(providers[i].name, name) == 0)
            return &providers[i];
    return NULL;
}
