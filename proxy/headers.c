/*
 * headers.c: the outbound request header list, built by filtering (never by deleting while
 * iterating: tinyproxy CVE-2023-49606), then injecting, so a client can neither override nor
 * smuggle the credential.
 */
#include "core.h"

#include <string.h>

static bool
token_in_list(const char *v, size_t vlen, const char *name, size_t nlen)
{
    const char *p = v, *end = v + vlen;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *tok = p;
        while (p < end && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if (p > tok && ap_memieq(tok, (size_t)(p - tok), name, nlen))
            return true;
    }
    return false;
}

/* Headers the client's Connection header names are hop-by-hop too (RFC 9110 7.6.1). */
static bool
named_by_connection(const ap_http1_req_t *h, const char *name, size_t nlen)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        const ap_header_t *x = &h->headers[i];
        if (ap_memieq(x->name, x->name_len, "connection", 10) &&
            token_in_list(x->value, x->value_len, name, nlen))
            return true;
    }
    return false;
}

static bool
dropped(const ap_req_t *r, const ap_header_t *x, const char *inject_name)
{
    const char *n = x->name;
    size_t len = x->name_len;
    if (ap_http1_is_hop_by_hop(n, len) || named_by_connection(&r->h, n, len))
        return true;
    /* curl owns these: Host from the URL, framing from the upload settings. */
    if (ap_memieq(n, len, "host", 4) || ap_memieq(n, len, "content-length", 14) ||
        ap_memieq(n, len, "expect", 6) || ap_memieq(n, len, "via", 3))
        return true;
    if (inject_name != NULL && ap_memieq(n, len, inject_name, strlen(inject_name)))
        return true;
    return false;
}

struct curl_slist *
ap_headers_upstream(const ap_req_t *r, const char *via_id, const ap_token_t *tok,
                    const char *const *extra)
{
    struct curl_slist *l = NULL;
    ap_buf_t line = {0};
    const char *inject_name = tok ? ap_token_header_name(tok) : NULL;
    bool has_accept = false;
    const ap_header_t *via = NULL;
    for (size_t i = 0; i < r->h.nheaders; i++) {
        const ap_header_t *x = &r->h.headers[i];
        if (ap_memieq(x->name, x->name_len, "via", 3))
            via = x;
        if (dropped(r, x, inject_name))
            continue;
        /* A credentialed route replaces the client's own Authorization, never duplicates it. */
        if (r->cred != NULL && ap_memieq(x->name, x->name_len, "authorization", 13))
            continue;
        if (ap_memieq(x->name, x->name_len, "accept", 6))
            has_accept = true;
        ap_buf_reset(&line);
        ap_buf_append(&line, x->name, x->name_len);
        if (x->value_len == 0) {
            ap_buf_append(&line, ";", 1); /* curl's spelling of "send it empty" */
        } else {
            ap_buf_append(&line, ": ", 2);
            ap_buf_append(&line, x->value, x->value_len);
        }
        l = curl_slist_append(l, line.data);
    }
    ap_buf_reset(&line);
    if (via != NULL)
        ap_buf_appendf(&line, "Via: %.*s, 1.1 %s", (int)via->value_len, via->value, via_id);
    else
        ap_buf_appendf(&line, "Via: 1.1 %s", via_id);
    l = curl_slist_append(l, line.data);
    /* Suppress headers curl would add on its own. */
    if (!has_accept)
        l = curl_slist_append(l, "Accept:");
    l = curl_slist_append(l, "Expect:");
    for (const char *const *e = extra; e && *e; e++)
        l = curl_slist_append(l, *e);
    if (tok != NULL)
        l = curl_slist_append(l, ap_token_header_line(tok));
    ap_buf_free(&line, false);
    return l;
}

bool
ap_headers_has_loop(const ap_http1_req_t *h, const char *via_id)
{
    size_t idlen = strlen(via_id);
    for (size_t i = 0; i < h->nheaders; i++) {
        const ap_header_t *x = &h->headers[i];
        if (!ap_memieq(x->name, x->name_len, "via", 3))
            continue;
        for (size_t j = 0; j + idlen <= x->value_len; j++)
            if (memcmp(x->value + j, via_id, idlen) == 0)
                return true;
    }
    return false;
}
