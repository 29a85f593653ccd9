/*
 * http1.c: strict HTTP/1.1 request-head parsing (RFC 9110/9112), pure and allocation-free.
 * Ambiguity is rejected here, before anything reaches an upstream (DESIGN.md section 7).
 *
 * Two passes over the head. A byte-class scan runs as bytes arrive (incrementally, from
 * prev_len) and rejects what is invalid anywhere in a head: NUL and other CTLs but HTAB, DEL,
 * bare CR, bare LF. So a TLS ClientHello or binary garbage fails at once instead of waiting for
 * the head timeout, and the line parser after it may assume well-formed CRLF lines. Once the
 * terminator is present the lines are parsed and the framing decided.
 */
#include "http1.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <string.h>

/* Empty lines skipped before the request line (RFC 9112 2.2 asks for at least one). Bounded so
 * a stream of CRLFs cannot make every call walk an ever longer prefix. */
#define MAX_LEADING_CRLF 16
/* A DNS name is at most 253 octets of text (255 on the wire); longer cannot be a real host. */
#define MAX_HOST_LEN 255
/* Room for the longest textual IPv6 address plus its NUL, for inet_pton. */
#define IPV6_TEXT_MAX 46

/* Content-Length must fit the signed 64-bit sizes curl and the OS use. */
#define MAX_CONTENT_LENGTH UINT64_C(0x7fffffffffffffff)

/* --- Byte classes ------------------------------------------------------------------------ */

/* tchar (RFC 9110 5.6.2) */
static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The reg-name subset we route on: no percent-encoding, no sub-delims. */
static bool
is_host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static ap_rc_t
fail(ap_http1_err_t *err, int status, const char *code, const char *detail)
{
    err->status = status;
    err->code = code;
    err->detail = detail;
    return AP_ERR;
}

/* --- Authority (shared by targets and Host) ---------------------------------------------- */

static bool
valid_ipv6(const char *s, size_t len)
{
    char tmp[IPV6_TEXT_MAX];
    unsigned char addr[16];
    if (len < 2 || len >= sizeof(tmp))
        return false;
    /* inet_pton wants a C string; it also rejects zone IDs and IPvFuture, as we want. */
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return inet_pton(AF_INET6, tmp, addr) == 1;
}

/* port = 1*5DIGIT in 1..65535 */
static int
parse_port(const char *p, size_t len)
{
    if (len == 0 || len > 5)
        return -1;
    int v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(p[i]))
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* authority = host [ ":" port ] without userinfo. Sets t->host, t->port (default_port when the
 * port is absent). */
static ap_rc_t
parse_authority(const char *a, size_t len, bool require_port, int default_port, ap_target_t *t)
{
    const char *host, *port = NULL;
    size_t host_len;
    if (len == 0)
        return AP_ERR;
    if (a[0] == '[') {
        const char *rb = memchr(a, ']', len);
        if (rb == NULL)
            return AP_ERR;
        host = a + 1;
        host_len = (size_t)(rb - host);
        if (!valid_ipv6(host, host_len))
            return AP_ERR;
        if (rb + 1 < a + len) {
            if (rb[1] != ':')
                return AP_ERR;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(a, ':', len);
        host = a;
        host_len = colon ? (size_t)(colon - a) : len;
        if (host_len == 0 || host_len > MAX_HOST_LEN)
            return AP_ERR;
        /* This also refuses userinfo ('@') and percent-encoding. */
        for (size_t i = 0; i < host_len; i++)
            if (!is_host_char((unsigned char)host[i]))
                return AP_ERR;
        if (colon != NULL)
            port = colon + 1;
    }
    int pv = default_port;
    if (port != NULL) {
        pv = parse_port(port, (size_t)(a + len - port));
        if (pv < 0)
            return AP_ERR;
    } else if (require_port) {
        return AP_ERR;
    }
    t->host = host;
    t->host_len = host_len;
    t->port = pv;
    return AP_OK;
}

/* --- Head scanning ----------------------------------------------------------------------- */

/*
 * Rejects bytes that are invalid anywhere in a request head, in buf[from..lim). A CR at lim - 1
 * is judged on the next call (the caller rescans from prev_len - 1), so the verdict for any byte
 * never depends on how the head was split.
 */
static ap_rc_t
prescan(const char *buf, size_t from, size_t lim, ap_http1_err_t *err)
{
    for (size_t i = from; i < lim; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x20 && c != 0x7f)
            continue;
        if (c == '\n') {
            if (i == 0 || buf[i - 1] != '\r')
                return fail(err, 400, "bad_request", "bare LF in the request head");
        } else if (c == '\r') {
            if (i + 1 < lim && buf[i + 1] != '\n')
                return fail(err, 400, "bad_request", "bare CR in the request head");
        } else if (c != '\t') {
            return fail(err, 400, "bad_request", "control character in the request head");
        }
    }
    return AP_OK;
}

/* Returns the length of the head including its CRLFCRLF when the terminator ends at or after
 * buf[from + 3], or 0. */
static size_t
find_end(const char *buf, size_t len, size_t from)
{
    size_t i = from + 3;
    while (i < len) {
        const char *lf = memchr(buf + i, '\n', len - i);
        if (lf == NULL)
            return 0;
        i = (size_t)(lf - buf);
        if (buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
        i++;
    }
    return 0;
}

/* --- Field semantics --------------------------------------------------------------------- */

/* Walks the elements of a comma-separated list (RFC 9110 5.6.1), OWS trimmed. Empty elements
 * are returned too (length 0) so that strict callers can refuse them. */
typedef struct {
    const char *p, *end;
} list_iter_t;

static bool
list_next(list_iter_t *it, const char **elt, size_t *elt_len)
{
    if (it->p == NULL)
        return false;
    const char *s = it->p;
    const char *comma = memchr(s, ',', (size_t)(it->end - s));
    const char *e = comma ? comma : it->end;
    it->p = comma ? comma + 1 : NULL;
    while (s < e && is_ows(*s))
        s++;
    while (e > s && is_ows(e[-1]))
        e--;
    *elt = s;
    *elt_len = (size_t)(e - s);
    return true;
}

static bool
list_has_token(const char *v, size_t len, const char *tok, size_t tok_len)
{
    list_iter_t it = {v, v + len};
    const char *e;
    size_t el;
    while (list_next(&it, &e, &el))
        if (ap_memieq(e, el, tok, tok_len))
            return true;
    return false;
}

static bool
all_tchar(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_tchar((unsigned char)s[i]))
            return false;
    return true;
}

/*
 * Transfer-Encoding in a request: only a lone "chunked" is served.
 *  - malformed list (empty value or element, parameters, non-token) -> 400
 *  - chunked more than once (RFC 9112 6.1 forbids it) -> 400
 *  - any other well-formed list ("gzip", "gzip, chunked", "chunked, gzip") -> 501: the coding,
 *    not the syntax, is what we refuse. RFC 9112 6.3 would also allow 400 when chunked is not
 *    final; either way nothing is forwarded and the connection is closed.
 */
static ap_rc_t
check_transfer_encoding(const ap_header_t *h, ap_http1_err_t *err)
{
    list_iter_t it = {h->value, h->value + h->value_len};
    const char *e;
    size_t el, n = 0, nchunked = 0;
    while (list_next(&it, &e, &el)) {
        if (!all_tchar(e, el))
            return fail(err, 400, "bad_transfer_encoding", "malformed Transfer-Encoding");
        nchunked += ap_memieq(e, el, "chunked", 7);
        n++;
    }
    if (nchunked > 1)
        return fail(err, 400, "bad_transfer_encoding", "chunked applied more than once");
    if (n > 1 || nchunked == 0)
        return fail(err, 501, "unsupported_transfer_encoding",
                    "only Transfer-Encoding: chunked is supported");
    return AP_OK;
}

/* Content-Length = 1*DIGIT, at most MAX_CONTENT_LENGTH. A list ("5, 5") is refused too. */
static ap_rc_t
parse_content_length(const ap_header_t *h, uint64_t *out)
{
    uint64_t n = 0;
    if (h->value_len == 0)
        return AP_ERR;
    for (size_t i = 0; i < h->value_len; i++) {
        if (!is_digit(h->value[i]))
            return AP_ERR;
        uint64_t d = (uint64_t)(h->value[i] - '0');
        if (n > (MAX_CONTENT_LENGTH - d) / 10)
            return AP_ERR;
        n = n * 10 + d;
    }
    *out = n;
    return AP_OK;
}

/* Host = uri-host [ ":" port ] (RFC 9110 7.2), restricted like targets; empty is allowed for
 * targets without an authority. */
static bool
valid_host_value(const char *v, size_t len)
{
    ap_target_t t;
    return len == 0 || parse_authority(v, len, false, 0, &t) == AP_OK;
}

/* --- Request head ------------------------------------------------------------------------ */

static ap_rc_t
parse_request_line(const char *p, const char *le, ap_http1_req_t *r, ap_http1_err_t *err)
{
    const char *m = p;
    while (p < le && is_tchar((unsigned char)*p))
        p++;
    if (p == m || p == le || *p != ' ')
        return fail(err, 400, "bad_request_line", "malformed method in the request line");
    r->method = m;
    r->method_len = (size_t)(p - m);
    p++;

    const char *t = p;
    while (p < le && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
        p++;
    if (p == t || p == le || *p != ' ')
        return fail(err, 400, "bad_request_line", "malformed request target");
    r->target = t;
    r->target_len = (size_t)(p - t);
    p++;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3) */
    if (le - p != 8 || memcmp(p, "HTTP/", 5) != 0 || !is_digit(p[5]) || p[6] != '.' ||
        !is_digit(p[7]))
        return fail(err, 400, "bad_request_line", "malformed HTTP version");
    if (p[5] != '1' || p[7] > '1')
        return fail(err, 505, "version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    r->minor_version = p[7] - '0';
    return AP_OK;
}

/* What the header loop learns for the framing decision. */
typedef struct {
    const ap_header_t *cl, *te, *host;
    bool conn_close, conn_keep_alive;
} head_facts_t;

static ap_rc_t
note_header(const ap_header_t *h, ap_http1_req_t *r, head_facts_t *f, ap_http1_err_t *err)
{
    switch (h->name_len) {
    case 4:
        if (!ap_memieq(h->name, 4, "host", 4))
            break;
        if (f->host != NULL)
            return fail(err, 400, "bad_header", "more than one Host header");
        if (!valid_host_value(h->value, h->value_len))
            return fail(err, 400, "bad_header", "invalid Host header");
        f->host = h;
        break;
    case 6:
        if (!ap_memieq(h->name, 6, "expect", 6))
            break;
        /* RFC 9110 10.1.1: a 100-continue expectation in an HTTP/1.0 request is ignored. */
        if (ap_memieq(h->value, h->value_len, "100-continue", 12))
            r->expect_continue = r->minor_version == 1;
        else
            r->expect_other = true;
        break;
    case 10:
        if (!ap_memieq(h->name, 10, "connection", 10))
            break;
        f->conn_close |= list_has_token(h->value, h->value_len, "close", 5);
        f->conn_keep_alive |= list_has_token(h->value, h->value_len, "keep-alive", 10);
        break;
    case 14:
        if (!ap_memieq(h->name, 14, "content-length", 14))
            break;
        /* Even identical duplicates: some peers take the first, some the last, some the sum. */
        if (f->cl != NULL)
            return fail(err, 400, "bad_content_length", "more than one Content-Length");
        if (parse_content_length(h, &r->content_length) != AP_OK)
            return fail(err, 400, "bad_content_length", "invalid Content-Length");
        f->cl = h;
        break;
    case 17:
        if (!ap_memieq(h->name, 17, "transfer-encoding", 17))
            break;
        if (f->te != NULL)
            return fail(err, 400, "bad_transfer_encoding", "more than one Transfer-Encoding");
        f->te = h;
        break;
    default:
        break;
    }
    return AP_OK;
}

static ap_rc_t
decide_framing(ap_http1_req_t *r, const head_facts_t *f, ap_http1_err_t *err)
{
    if (f->te != NULL) {
        if (f->cl != NULL)
            return fail(err, 400, "bad_transfer_encoding",
                        "Content-Length together with Transfer-Encoding");
        /* RFC 9112 6.1: HTTP/1.0 framing with Transfer-Encoding is faulty. */
        if (r->minor_version == 0)
            return fail(err, 400, "bad_transfer_encoding", "Transfer-Encoding in HTTP/1.0");
        if (check_transfer_encoding(f->te, err) != AP_OK)
            return AP_ERR;
        r->body = AP_BODY_CHUNKED;
    } else if (f->cl != NULL && r->content_length > 0) {
        r->body = AP_BODY_LENGTH;
    }
    /* Bytes after a CONNECT head belong to the tunnel; a declared body there is a smuggling
     * attempt or a confused client. */
    if (r->is_connect && r->body != AP_BODY_NONE)
        return fail(err, 400, "bad_request", "CONNECT with a request body");
    if (f->host == NULL && r->minor_version == 1)
        return fail(err, 400, "bad_header", "HTTP/1.1 request without Host");
    r->keep_alive = r->minor_version == 1 ? !f->conn_close : f->conn_keep_alive && !f->conn_close;
    return AP_OK;
}

/* Parses buf[start..end), a complete head that already passed prescan: every line ends in
 * CRLF and holds no CTL but HTAB. */
static ap_rc_t
parse_head(const char *buf, size_t start, size_t end, ap_http1_req_t *r, ap_http1_err_t *err)
{
    const char *p = buf + start;
    const char *e = buf + end - 2; /* the final empty line */
    head_facts_t f = {0};

    memset(r, 0, sizeof(*r));
    const char *le = memchr(p, '\r', (size_t)(e - p));
    if (parse_request_line(p, le, r, err) != AP_OK)
        return AP_ERR;
    r->is_connect = r->method_len == 7 && memcmp(r->method, "CONNECT", 7) == 0;
    p = le + 2;

    while (p < e) {
        le = memchr(p, '\r', (size_t)(e - p));
        if (is_ows(*p))
            return fail(err, 400, "bad_header", "obsolete line folding is not accepted");
        const char *c = p;
        while (c < le && is_tchar((unsigned char)*c))
            c++;
        if (c == p || c == le || *c != ':')
            return fail(err, 400, "bad_header",
                        is_ows(*c) ? "whitespace before the colon of a header"
                                   : "malformed header name");
        if (r->nheaders == AP_HTTP1_MAX_HEADERS)
            return fail(err, 431, "too_many_headers", "too many header fields");
        const char *v = c + 1, *ve = le;
        while (v < ve && is_ows(*v))
            v++;
        while (ve > v && is_ows(ve[-1]))
            ve--;
        ap_header_t *h = &r->headers[r->nheaders++];
        h->name = p;
        h->name_len = (size_t)(c - p);
        h->value = v;
        h->value_len = (size_t)(ve - v);
        if (note_header(h, r, &f, err) != AP_OK)
            return AP_ERR;
        p = le + 2;
    }
    if (decide_framing(r, &f, err) != AP_OK)
        return AP_ERR;
    r->head_len = end;
    return AP_OK;
}

ap_rc_t
ap_http1_parse_request(const char *buf, size_t len, size_t prev_len, size_t max_head,
                       ap_http1_req_t *r, ap_http1_err_t *err)
{
    size_t scan = len < max_head ? len : max_head;
    if (prev_len > scan)
        prev_len = scan;

    size_t start = 0;
    for (int n = 0;
         n < MAX_LEADING_CRLF && start + 1 < scan && buf[start] == '\r' && buf[start + 1] == '\n';
         n++)
        start += 2;

    /* The request line starts at `start`, so a terminator cannot begin before it; and none
     * ended inside buf[0..prev_len), or the previous call would have found it. */
    size_t from = prev_len > 3 ? prev_len - 3 : 0;
    if (from < start)
        from = start;
    size_t end = find_end(buf, scan, from);

    if (prescan(buf, prev_len > 0 ? prev_len - 1 : 0, end ? end : scan, err) != AP_OK)
        return AP_ERR;
    if (end == 0) {
        if (len >= max_head)
            return fail(err, 431, "head_too_large", "the request head exceeds limits.max_head");
        return AP_AGAIN;
    }
    return parse_head(buf, start, end, r, err);
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

/* --- Request target ---------------------------------------------------------------------- */

ap_rc_t
ap_http1_parse_target(const char *target, size_t len, bool is_connect, ap_target_t *t)
{
    memset(t, 0, sizeof(*t));
    if (len == 0)
        return AP_ERR;
    /* The parser already limits the charset, but main.c's --explain passes raw argv here. A
     * fragment never belongs in a request target, and curl would silently drop it. */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)target[i];
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return AP_ERR;
    }
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
    if (len >= 7 && ap_memieq(target, 7, "http://", 7)) {
        skip = 7;
    } else if (len >= 8 && ap_memieq(target, 8, "https://", 8)) {
        skip = 8;
        t->https = true;
    } else {
        return AP_ERR;
    }
    t->form = AP_TARGET_ABSOLUTE;
    const char *a = target + skip;
    size_t alen = 0;
    while (skip + alen < len && a[alen] != '/' && a[alen] != '?')
        alen++;
    if (parse_authority(a, alen, false, t->https ? 443 : 80, t) != AP_OK)
        return AP_ERR;
    const char *rest = a + alen;
    size_t rest_len = len - skip - alen;
    if (rest_len == 0) {
        t->path = "/";
        t->path_len = 1;
    } else {
        t->path = rest;
        t->path_len = rest_len;
        t->path_needs_slash = rest[0] == '?';
    }
    return AP_OK;
}

char *
ap_http1_target_path(const ap_target_t *t)
{
    if (t->path == NULL)
        return ap_xstrdup("/");
    if (t->path_needs_slash)
        return ap_xasprintf("/%.*s", (int)t->path_len, t->path);
    return ap_xstrndup(t->path, t->path_len);
}

/* --- Tables ------------------------------------------------------------------------------ */

static const struct {
    int status;
    const char *reason;
} reasons[] = {
    {100, "Continue"},
    {101, "Switching Protocols"},
    {103, "Early Hints"},
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {203, "Non-Authoritative Information"},
    {204, "No Content"},
    {205, "Reset Content"},
    {206, "Partial Content"},
    {300, "Multiple Choices"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {303, "See Other"},
    {304, "Not Modified"},
    {307, "Temporary Redirect"},
    {308, "Permanent Redirect"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {406, "Not Acceptable"},
    {407, "Proxy Authentication Required"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {411, "Length Required"},
    {412, "Precondition Failed"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {416, "Range Not Satisfiable"},
    {417, "Expectation Failed"},
    {421, "Misdirected Request"},
    {422, "Unprocessable Content"},
    {425, "Too Early"},
    {426, "Upgrade Required"},
    {428, "Precondition Required"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {451, "Unavailable For Legal Reasons"},
    {499, "Client Closed Request"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
    {508, "Loop Detected"},
};

const char *
ap_http1_reason(int status)
{
    for (size_t i = 0; i < AP_ARRAY_LEN(reasons); i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    return "Unknown";
}

bool
ap_http1_is_hop_by_hop(const char *name, size_t len)
{
    static const struct {
        const char *s;
        size_t n;
    } hop[] = {
        {"connection", 10}, {"keep-alive", 10},        {"proxy-connection", 16}, {"te", 2},
        {"trailer", 7},     {"transfer-encoding", 17}, {"upgrade", 7},
    };
    for (size_t i = 0; i < AP_ARRAY_LEN(hop); i++)
        if (ap_memieq(name, len, hop[i].s, hop[i].n))
            return true;
    return len >= 6 && ap_memieq(name, 6, "proxy-", 6);
}

/* --- Response heads (the upstream's answer) ------------------------------------------------ */

/* Comma-separated list element test, for Connection and Transfer-Encoding values. Returns the
 * number of elements; *has is set when `tok` is one of them, *last_is when it is the last. */
static size_t
list_scan(const char *v, size_t len, const char *tok, bool *has, bool *last_is)
{
    size_t n = 0;
    size_t tlen = strlen(tok);
    const char *p = v, *end = v + len;
    *last_is = false;
    while (p < end) {
        while (p < end && (is_ows(*p) || *p == ','))
            p++;
        const char *s = p;
        while (p < end && *p != ',')
            p++;
        const char *e = p;
        while (e > s && is_ows(e[-1]))
            e--;
        if (e > s) {
            n++;
            *last_is = ap_memieq(s, (size_t)(e - s), tok, tlen);
            if (*last_is)
                *has = true;
        }
    }
    return n;
}

static ap_rc_t
parse_status_line(const char *p, size_t len, ap_http1_resp_t *r)
{
    /* HTTP-version SP 3DIGIT SP [reason]; we also accept a missing reason and its SP. */
    if (len < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ')
        return AP_ERR;
    if (!is_digit(p[9]) || !is_digit(p[10]) || !is_digit(p[11]) || p[9] == '0')
        return AP_ERR;
    if (len > 12 && p[12] != ' ')
        return AP_ERR;
    r->minor_version = p[7] - '0';
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    return AP_OK;
}

static ap_rc_t
resp_content_length(const char *v, size_t len, ap_http1_resp_t *r, bool *seen)
{
    uint64_t n = 0;
    if (len == 0 || len > 19)
        return AP_ERR;
    for (size_t i = 0; i < len; i++) {
        if (!is_digit(v[i]))
            return AP_ERR;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    if (n > MAX_CONTENT_LENGTH || (*seen && n != r->content_length))
        return AP_ERR;
    *seen = true;
    r->content_length = n;
    return AP_OK;
}

/* No bare CR, NUL or other control character but HTAB: never pass them on. */
static bool
no_controls(const char *p, size_t l)
{
    for (size_t i = 0; i < l; i++) {
        unsigned char ch = (unsigned char)p[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

bool
ap_http1_response_field(const char *p, size_t l, ap_header_t *h)
{
    const char *colon = memchr(p, ':', l);
    if (colon == NULL || colon == p || !no_controls(p, l))
        return false; /* also obs-fold: the line starts with whitespace */
    *h = (ap_header_t){p, (size_t)(colon - p), colon + 1, l - (size_t)(colon - p) - 1};
    for (size_t i = 0; i < h->name_len; i++)
        if (!is_tchar((unsigned char)h->name[i]))
            return false;
    while (h->value_len && is_ows(h->value[0])) {
        h->value++;
        h->value_len--;
    }
    while (h->value_len && is_ows(h->value[h->value_len - 1]))
        h->value_len--;
    return true;
}

ap_rc_t
ap_http1_parse_response(const char *buf, size_t len, size_t max_head, ap_http1_resp_t *r,
                        ap_http1_header_cb cb, void *ud)
{
    /* The end of the head first: nothing is reported for a head that is not complete. LF alone
     * ends a line too (RFC 9112 2.2 lets a recipient accept it); a bare CR never does. */
    size_t scan = len < max_head ? len : max_head;
    size_t end = 0;
    for (size_t i = 0; i + 1 < scan; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i + 1] == '\n') {
            end = i + 2;
            break;
        }
        if (buf[i + 1] == '\r' && i + 2 < scan && buf[i + 2] == '\n') {
            end = i + 3;
            break;
        }
    }
    if (end == 0)
        return scan >= max_head ? AP_ERR : AP_AGAIN;
    memset(r, 0, sizeof(*r));
    r->head_len = end;
    bool seen_cl = false, te = false, te_chunked = false, conn_close = false, conn_keep = false;
    const char *p = buf, *stop = buf + end;
    bool first = true;
    while (p < stop) {
        const char *nl = memchr(p, '\n', (size_t)(stop - p));
        size_t l = (size_t)(nl - p);
        const char *next = nl + 1;
        if (l > 0 && p[l - 1] == '\r')
            l--;
        if (first) {
            if (!no_controls(p, l) || parse_status_line(p, l, r) != AP_OK)
                return AP_ERR;
            first = false;
        } else if (l > 0) {
            ap_header_t h;
            if (!ap_http1_response_field(p, l, &h))
                return AP_ERR;
            if (ap_memieq(h.name, h.name_len, "content-length", 14)) {
                if (resp_content_length(h.value, h.value_len, r, &seen_cl) != AP_OK)
                    return AP_ERR;
            } else if (ap_memieq(h.name, h.name_len, "transfer-encoding", 17)) {
                bool has = false, last = false;
                if (list_scan(h.value, h.value_len, "chunked", &has, &last) > 0) {
                    te = true;
                    te_chunked = last; /* a later line's last coding decides */
                }
            } else if (ap_memieq(h.name, h.name_len, "connection", 10)) {
                bool last = false;
                list_scan(h.value, h.value_len, "close", &conn_close, &last);
                list_scan(h.value, h.value_len, "keep-alive", &conn_keep, &last);
            }
            if (cb != NULL)
                cb(ud, &h);
        }
        p = next;
    }
    if (te) {
        /* Transfer-Encoding overrides Content-Length (RFC 9112 6.3); such a message, or one
         * whose final coding is not chunked, leaves the connection unfit for reuse. */
        r->body = te_chunked ? AP_RESP_CHUNKED : AP_RESP_CLOSE;
        r->keep_alive = te_chunked && !seen_cl;
    } else if (seen_cl) {
        r->body = AP_RESP_LENGTH;
        r->keep_alive = true;
    } else {
        r->body = AP_RESP_CLOSE;
        r->keep_alive = false;
    }
    r->persistent = !conn_close && (r->minor_version == 1 || conn_keep);
    if (!r->persistent)
        r->keep_alive = false;
    return AP_OK;
}
