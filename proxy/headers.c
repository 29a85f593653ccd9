/*
 * headers.c: the outbound request header list, built by filtering (never by deleting while
 * iterating: tinyproxy CVE-2023-49606), then injecting, so a client can neither override nor
 * smuggle the credential.
 */
#include "core.h"

#include <stdlib.h>
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

void
ap_headers_each(const ap_req_t *r, const char *via_id, const ap_token_t *tok,
                const char *const *extra, ap_header_line_cb emit, void *ud)
{
    ap_buf_t line = {0};
    const char *inject_name = tok ? ap_token_header_name(tok) : NULL;
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
        ap_buf_reset(&line);
        ap_buf_append(&line, x->name, x->name_len);
        ap_buf_append(&line, ":", 1);
        if (x->value_len > 0) {
            ap_buf_append(&line, " ", 1);
            ap_buf_append(&line, x->value, x->value_len);
        }
        emit(ud, line.data, line.len);
    }
    ap_buf_reset(&line);
    if (via != NULL) {
        ap_buf_append(&line, "Via: ", 5);
        ap_buf_append(&line, via->value, via->value_len);
        ap_buf_cat(&line, ", 1.1 ", via_id, NULL);
    } else {
        ap_buf_cat(&line, "Via: 1.1 ", via_id, NULL);
    }
    emit(ud, line.data, line.len);
    for (const char *const *e = extra; e && *e; e++)
        emit(ud, *e, strlen(*e));
    if (tok != NULL) {
        const char *t = ap_token_header_line(tok);
        emit(ud, t, strlen(t));
    }
    ap_buf_free(&line, false);
}

typedef struct slist_acc_s {
    struct curl_slist *l;
    bool has_accept;
} slist_acc_t;

static void
slist_emit(void *ud, const char *line, size_t len)
{
    slist_acc_t *a = ud;
    if (len >= 7 && ap_memieq(line, 7, "accept:", 7))
        a->has_accept = true;
    if (len > 0 && line[len - 1] == ':') {
        /* curl's spelling of "send it with an empty value" is "Name;". */
        char *tmp = ap_xasprintf("%.*s;", (int)(len - 1), line);
        a->l = curl_slist_append(a->l, tmp);
        free(tmp);
        return;
    }
    a->l = curl_slist_append(a->l, line);
}

struct curl_slist *
ap_headers_upstream(const ap_req_t *r, const char *via_id, const ap_token_t *tok,
                    const char *const *extra)
{
    slist_acc_t a = {NULL, false};
    ap_headers_each(r, via_id, tok, extra, slist_emit, &a);
    /* Suppress headers curl would add on its own. */
    if (!a.has_accept)
        a.l = curl_slist_append(a.l, "Accept:");
    a.l = curl_slist_append(a.l, "Expect:");
    return a.l;
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
