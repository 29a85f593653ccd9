/*
 * conf_dump.c: what `authproxy --check` prints. Everything an operator needs to see what the
 * proxy will serve, nothing that authenticates: secret values print as "(secret)", URLs with
 * their userinfo and query masked.
 */
#include "conf_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char secret_mark[] = "(secret)";

static void
line(FILE *out, int indent, const char *label, const char *value)
{
    fprintf(out, "%*s%-15s %s\n", indent, "", label, value);
}

static void
url_line(FILE *out, int indent, const char *label, const char *url)
{
    char *safe = ap_conf__safe_url(url);
    line(out, indent, label, safe);
    free(safe);
}

static void
kv_lines(FILE *out, const char *prefix, const ap_kvlist_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        char label[160];
        snprintf(label, sizeof(label), "%s %s", prefix, l->items[i].name);
        line(out, 4, label, l->items[i].is_secret ? secret_mark : l->items[i].value);
    }
}

static void
custom_req_lines(FILE *out, bool refresh, const ap_custom_req_t *r)
{
    char *safe = ap_conf__safe_url(r->url);
    char req[600];
    snprintf(req, sizeof(req), "%s %s", r->method ? r->method : "POST", safe);
    line(out, 4, refresh ? "refresh request" : "request", req);
    free(safe);
    kv_lines(out, refresh ? "refresh header" : "request header", &r->headers);
    kv_lines(out, refresh ? "refresh query" : "query", &r->query);
    kv_lines(out, refresh ? "refresh form" : "form", &r->form);
    kv_lines(out, refresh ? "refresh json" : "json", &r->json);
    if (r->basic_user != NULL) {
        line(out, 4, refresh ? "refresh basic user" : "basic user", r->basic_user);
        line(out, 4, refresh ? "refresh basic password" : "basic password", secret_mark);
    }
}

static void
addrs(FILE *out, const char *label, const ap_addr_conf_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char a[300];
        bool v6 = strchr(v[i].host, ':') != NULL;
        snprintf(a, sizeof(a), "%s%s%s:%s", v6 ? "[" : "", v[i].host, v6 ? "]" : "", v[i].port);
        line(out, 0, label, a);
    }
}

static void
dump_cred(const ap_cred_conf_t *cr, FILE *out)
{
    fprintf(out, "  %s: provider %s\n", cr->name, cr->provider);
    for (size_t k = 0; k < cr->fields.n; k++) {
        const ap_kv_t *f = &cr->fields.items[k];
        if (f->is_secret)
            line(out, 4, f->name, secret_mark);
        else if (strcmp(f->name, "token_url") == 0)
            url_line(out, 4, f->name, f->value);
        else
            line(out, 4, f->name, f->value);
    }
    if (cr->nscope > 0) {
        ap_buf_t b = {0};
        for (size_t k = 0; k < cr->nscope; k++)
            ap_buf_appendf(&b, "%s%s", k ? " " : "", cr->scope[k]);
        line(out, 4, "scope", b.data);
        ap_buf_free(&b, false);
    }
    kv_lines(out, "param", &cr->params);
    if (cr->custom.req.url != NULL) {
        custom_req_lines(out, false, &cr->custom.req);
        if (cr->custom.has_refresh)
            custom_req_lines(out, true, &cr->custom.refresh);
        const struct {
            const char *label, *ptr;
        } ptrs[] = {{"token at", cr->custom.token_ptr},
                    {"token_type at", cr->custom.type_ptr},
                    {"expires_in at", cr->custom.expires_in_ptr},
                    {"expires_at at", cr->custom.expires_at_ptr},
                    {"refresh at", cr->custom.refresh_ptr}};
        for (size_t k = 0; k < AP_ARRAY_LEN(ptrs); k++)
            if (ptrs[k].ptr != NULL)
                line(out, 4, ptrs[k].label, ptrs[k].ptr);
        if (cr->custom.success_ptr != NULL) {
            char s[300];
            if (cr->custom.success_equals != NULL)
                snprintf(s, sizeof(s), "%s == %s", cr->custom.success_ptr,
                         cr->custom.success_equals);
            else
                snprintf(s, sizeof(s), "%s present", cr->custom.success_ptr);
            line(out, 4, "success when", s);
        }
    }
    char inj[300];
    snprintf(inj, sizeof(inj), "%s: %s", cr->inject_header, cr->inject_value);
    line(out, 4, "inject", inj);
    kv_lines(out, "header", &cr->headers);
    line(out, 4, "prefetch", cr->prefetch ? "yes (/readyz waits for it)" : "no (on first use)");
    char n[64];
    if (cr->default_ttl_s > 0) {
        snprintf(n, sizeof(n), "%lld s", (long long)cr->default_ttl_s);
        line(out, 4, "default_ttl", n);
    }
    snprintf(n, sizeof(n), "%lld ms", (long long)cr->timeout_ms);
    line(out, 4, "timeout", n);
}

void
ap_conf_dump(const ap_conf_t *c, FILE *out)
{
    addrs(out, "listen", c->listen, c->nlisten);
    if (c->nadmin == 0)
        line(out, 0, "admin", "disabled");
    addrs(out, "admin", c->admin, c->nadmin);
    line(out, 0, "unmatched",
         c->unmatched_forward ? "forward (hosts without a route pass through, no credential)"
                              : "deny (hosts without a route get 403)");
    line(out, 0, "connect", c->allow_connect ? "CONNECT allowed to routed hosts" : "disabled");
    line(out, 0, "upstream_fast_path",
         !c->fast_path       ? "off (every upstream request through curl)"
         : c->outbound_proxy ? "off (outbound_proxy set: every upstream request through curl)"
                             : "on (HTTP/1.1 origins, requests with a body in memory)");
    line(out, 0, "tls.ca_file", c->ca_file ? c->ca_file : "(system default bundle)");
    if (c->outbound_proxy != NULL)
        url_line(out, 0, "outbound_proxy", c->outbound_proxy);
    else
        line(out, 0, "outbound_proxy", "none (direct; HTTP(S)_PROXY in the environment ignored)");
    for (size_t i = 0; i < c->nconnect_to; i++) {
        char m[600];
        snprintf(m, sizeof(m), "%s -> %s", c->connect_to[i].from, c->connect_to[i].to);
        line(out, 0, "connect_to", m);
    }
    ap_buf_t b = {0};
    for (size_t i = 0; i < c->nusers; i++)
        ap_buf_appendf(&b, "%s%s", i ? ", " : "users: ", c->users[i].name);
    for (size_t i = 0; i < c->nallow; i++)
        ap_buf_appendf(&b, "%s%s", i ? ", " : (c->nusers ? "; allow: " : "allow: "),
                       c->allow_cidrs[i]);
    if (c->allow_public_without_auth)
        ap_buf_appendf(&b, "%sinsecure_allow_unauthenticated", b.len ? "; " : "");
    line(out, 0, "client_auth", b.data ? b.data : "none (loopback listeners only)");
    ap_buf_free(&b, false);
    char m[600];
    snprintf(m, sizeof(m), "%s, %s", c->log_level ? c->log_level : "info",
             c->log_json ? "json" : "text");
    line(out, 0, "log", m);
    snprintf(m, sizeof(m),
             "max_head %zu, max_headers %zu, max_body %llu%s, replay_body %zu, max_conns %zu",
             c->limits.max_head, c->limits.max_headers, (unsigned long long)c->limits.max_body,
             c->limits.max_body ? "" : " (unlimited)", c->limits.replay_body, c->limits.max_conns);
    line(out, 0, "limits", m);
    snprintf(m, sizeof(m),
             "head %lld, body %lld, idle %lld, connect %lld, response %lld, tunnel_idle %lld, "
             "drain %lld, token_wait %lld",
             (long long)c->limits.head_timeout_ms, (long long)c->limits.body_timeout_ms,
             (long long)c->limits.idle_timeout_ms, (long long)c->limits.connect_timeout_ms,
             (long long)c->limits.response_timeout_ms, (long long)c->limits.tunnel_idle_ms,
             (long long)c->limits.drain_timeout_ms, (long long)c->limits.token_wait_ms);
    line(out, 0, "timeouts (ms)", m);

    fprintf(out, "routes (%zu, first match wins):\n", c->nroutes);
    for (size_t i = 0; i < c->nroutes; i++) {
        const ap_route_conf_t *r = &c->routes[i];
        fprintf(out, "  %-30s -> %s  %s%s%s\n", r->label, r->upstream,
                r->credential ? "credential " : "no credential", r->credential ? r->credential : "",
                r->host ? "" : "  (base-URL mode)");
    }
    fprintf(out, "credentials (%zu):\n", c->ncreds);
    for (size_t i = 0; i < c->ncreds; i++)
        dump_cred(&c->creds[i], out);
}
