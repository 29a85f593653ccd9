/*
 * http1.c: strict HTTP/1.1 request-head parsing (RFC 9112), pure and allocation-free.
 * Ambiguity is rejected here, before anything reaches an upstream (DESIGN.md section 7).
 */
#include "http1.h"

#include <string.h>

/* tchar (RFC 9110 5.6.2) */
static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static ap_rc_t
fail(ap_http1_err_t *err, int status, const char *code, const char *detail)
{
    err->status = status;
    err->code = code;
    err->detail = detail;
    return AP_ERR;
}

static bool
list_has_token(const char *v, size_t len, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < len) {
        while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < len && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s && ap_memieq(v + s, e - s, tok, tl))
            return true;
    }
    return false;
}

/* Finds the end of the head (CRLFCRLF) starting near `from`; returns the length including it,
 * or 0. Bare LF line ends are rejected later, line by line. */
static size_t
find_end(const char *buf, size_t len, size_t from)
{
    size_t i = from > 3 ? from - 3 : 0;
    for (; i + 3 < len; i++) {
        if (buf[i] == '\r' && buf[i + 1] == '\n' && buf[i + 2] == '\r' && buf[i + 3] == '\n')
            return i + 4;
    }
    return 0;
}

ap_rc_t
ap_http1_parse_request(const char *buf, size_t len, size_t prev_len, size_t max_head,
                       ap_http1_req_t *r, ap_http1_err_t *err)
{
    size_t start = 0;
    /* RFC 9112 2.2: ignore at least one empty line before the request line. */
    while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n' && start < 8)
        start += 2;
    size_t scan = len > max_head ? max_head : len;
    size_t end = find_end(buf, scan, prev_len > start ? prev_len : start);
    if (end == 0) {
        /* A bare LF or NUL early in the head is an error now, not after max_head bytes. */
        for (size_t i = start; i < scan; i++) {
            if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
                return fail(err, 400, "bad_request", "bare LF in the request head");
            if (buf[i] == '\0')
                return fail(err, 400, "bad_request", "NUL byte in the request head");
        }
        if (len >= max_head)
            return fail(err, 431, "head_too_large", "the request head exceeds limits.max_head");
        return AP_AGAIN;
    }
    memset(r, 0, sizeof(*r));
    const char *p = buf + start, *e = buf + end - 2; /* e: the final empty line's CR */

    /* Request line: method SP target SP HTTP/1.x CRLF */
    const char *m = p;
    while (p < e && is_tchar((unsigned char)*p))
        p++;
    if (p == m || p >= e || *p != ' ')
        return fail(err, 400, "bad_request_line", "malformed method in the request line");
    r->method = m;
    r->method_len = (size_t)(p - m);
    p++;
    const char *t = p;
    while (p < e && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if (p == t || p >= e || *p != ' ')
        return fail(err, 400, "bad_request_line", "malformed request target");
    r->target = t;
    r->target_len = (size_t)(p - t);
    p++;
    if (e - p < 10 || memcmp(p, "HTTP/", 5) != 0)
        return fail(err, 400, "bad_request_line", "malformed HTTP version");
    if (p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9' || p[8] != '\r' ||
        p[9] != '\n')
        return fail(err, 400, "bad_request_line", "malformed HTTP version");
    if (p[5] != '1')
        return fail(err, 505, "version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    r->minor_version = p[7] - '0';
    if (r->minor_version > 1)
        return fail(err, 505, "version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    p += 10;

    /* Header fields */
    int ncl = 0, nte = 0, nhost = 0;
    bool close = false, keep = false;
    const ap_header_t *te = NULL;
    while (p < e) {
        const char *ls = p;
        const char *le = ls;
        while (le < e && *le != '\r' && *le != '\n')
            le++;
        if (le >= e || *le != '\r' || le[1] != '\n')
            return fail(err, 400, "bad_header", "header line without CRLF (bare CR or LF)");
        if (*ls == ' ' || *ls == '\t')
            return fail(err, 400, "bad_header", "obsolete line folding is not accepted");
        const char *c = ls;
        while (c < le && is_tchar((unsigned char)*c))
            c++;
        if (c == ls || c >= le || *c != ':')
            return fail(err, 400, "bad_header", "malformed header name (or space before colon)");
        const char *v = c + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *q = v; q < ve; q++) {
            unsigned char ch = (unsigned char)*q;
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                return fail(err, 400, "bad_header", "control character in a header value");
        }
        if (r->nheaders >= AP_HTTP1_MAX_HEADERS)
            return fail(err, 431, "too_many_headers", "too many header fields");
        ap_header_t *h = &r->headers[r->nheaders++];
        h->name = ls;
        h->name_len = (size_t)(c - ls);
        h->value = v;
        h->value_len = (size_t)(ve - v);
        if (ap_memieq(h->name, h->name_len, "content-length", 14)) {
            ncl++;
            if (h->value_len == 0 || h->value_len > 18)
                return fail(err, 400, "bad_content_length", "invalid Content-Length");
            uint64_t n = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                if (h->value[i] < '0' || h->value[i] > '9')
                    return fail(err, 400, "bad_content_length", "invalid Content-Length");
                n = n * 10 + (uint64_t)(h->value[i] - '0');
            }
            r->content_length = n;
        } else if (ap_memieq(h->name, h->name_len, "transfer-encoding", 17)) {
            nte++;
            te = h;
        } else if (ap_memieq(h->name, h->name_len, "host", 4)) {
            nhost++;
        } else if (ap_memieq(h->name, h->name_len, "connection", 10)) {
            if (list_has_token(h->value, h->value_len, "close"))
                close = true;
            if (list_has_token(h->value, h->value_len, "keep-alive"))
                keep = true;
        } else if (ap_memieq(h->name, h->name_len, "expect", 6)) {
            if (ap_memieq(h->value, h->value_len, "100-continue", 12))
                r->expect_continue = true;
        }
        p = le + 2;
    }
    if (ncl > 1)
        return fail(err, 400, "bad_content_length", "more than one Content-Length");
    if (nte > 0) {
        if (ncl > 0)
            return fail(err, 400, "bad_transfer_encoding",
                        "Content-Length together with Transfer-Encoding");
        if (nte > 1 || r->minor_version == 0)
            return fail(err, 400, "bad_transfer_encoding", "ambiguous Transfer-Encoding");
        /* Only exactly "chunked": other codings cannot be framed or forwarded safely. */
        if (!ap_memieq(te->value, te->value_len, "chunked", 7))
            return fail(err, 501, "unsupported_transfer_encoding",
                        "only Transfer-Encoding: chunked is supported");
        r->body = AP_BODY_CHUNKED;
    } else if (ncl == 1 && r->content_length > 0) {
        r->body = AP_BODY_LENGTH;
    }
    if (nhost > 1)
        return fail(err, 400, "bad_header", "more than one Host header");
    if (nhost == 0 && r->minor_version == 1)
        return fail(err, 400, "bad_header", "HTTP/1.1 request without Host");
    r->is_connect = r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0;
    r->keep_alive = r->minor_version == 1 ? !close : (keep && !close);
    r->head_len = end;
    return AP_OK;
}

const ap_header_t *
ap_http1_find(const ap_http1_req_t *r, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < r->nheaders; i++)
        if (ap_memieq(r->headers[i].name, r->headers[i].name_len, name, n))
            return &r->headers[i];
    return NULL;
}

static bool
host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_';
}

/* authority = host [ ":" port ]; sets host/port; require_port for CONNECT. */
static ap_rc_t
parse_authority(const char *a, size_t len, bool require_port, int default_port, ap_target_t *t)
{
    const char *hs, *he, *ps = NULL;
    if (len == 0 || memchr(a, '@', len) != NULL)
        return AP_ERR;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', len);
        if (rb == NULL || rb == a + 1)
            return AP_ERR;
        for (const char *q = a + 1; q < rb; q++)
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                  (*q >= 'A' && *q <= 'F') || *q == ':' || *q == '.'))
                return AP_ERR;
        hs = a + 1;
        he = rb;
        if (rb + 1 < a + len) {
            if (rb[1] != ':')
                return AP_ERR;
            ps = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', len);
        hs = a;
        he = colon ? colon : a + len;
        ps = colon ? colon + 1 : NULL;
        if (he == hs)
            return AP_ERR;
        for (const char *q = hs; q < he; q++)
            if (!host_char((unsigned char)*q))
                return AP_ERR;
    }
    int port = default_port;
    if (ps != NULL) {
        const char *pe = a + len;
        if (ps == pe || pe - ps > 5)
            return AP_ERR;
        long v = 0;
        for (const char *q = ps; q < pe; q++) {
            if (*q < '0' || *q > '9')
                return AP_ERR;
            v = v * 10 + (*q - '0');
        }
        if (v < 1 || v > 65535)
            return AP_ERR;
        port = (int)v;
    } else if (require_port) {
        return AP_ERR;
    }
    t->host = hs;
    t->host_len = (size_t)(he - hs);
    t->port = port;
    return AP_OK;
}

ap_rc_t
ap_http1_parse_target(const char *target, size_t len, bool is_connect, ap_target_t *t)
{
    memset(t, 0, sizeof(*t));
    if (len == 0)
        return AP_ERR;
    if (is_connect) {
        t->form = AP_TARGET_AUTHORITY;
        return parse_authority(target, len, true, 0, t);
    }
    if (target[0] == '/') {
        t->form = AP_TARGET_ORIGIN;
        t->path = target;
        t->path_len = len;
        return AP_OK;
    }
    if (len == 1 && target[0] == '*') {
        t->form = AP_TARGET_ASTERISK;
        return AP_OK;
    }
    size_t skip;
    if (len > 7 && ap_memieq(target, 7, "http://", 7)) {
        skip = 7;
    } else if (len > 8 && ap_memieq(target, 8, "https://", 8)) {
        skip = 8;
        t->https = true;
    } else {
        return AP_ERR;
    }
    t->form = AP_TARGET_ABSOLUTE;
    const char *a = target + skip;
    size_t alen = 0;
    while (skip + alen < len && a[alen] != '/' && a[alen] != '?' && a[alen] != '#')
        alen++;
    if (parse_authority(a, alen, false, t->https ? 443 : 80, t) != AP_OK)
        return AP_ERR;
    const char *rest = a + alen;
    size_t rlen = len - skip - alen;
    if (rlen > 0 && rest[0] == '#')
        return AP_ERR;
    /* "http://h?q" has an empty path: the caller prepends "/" when path[0] != '/'. */
    t->path = rlen ? rest : "/";
    t->path_len = rlen ? rlen : 1;
    return AP_OK;
}

const char *
ap_http1_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 103: return "Early Hints";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 508: return "Loop Detected";
    default: return "Unknown";
    }
}

bool
ap_http1_is_hop_by_hop(const char *name, size_t len)
{
    static const char *const hop[] = {"connection", "keep-alive",        "proxy-connection", "te",
                                      "trailer",    "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < AP_ARRAY_LEN(hop); i++)
        if (ap_memieq(name, len, hop[i], strlen(hop[i])))
            return true;
    return len >= 6 && ap_memieq(name, 6, "proxy-", 6);
}
