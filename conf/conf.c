/*
 * conf.c: JSON config -> immutable, refcounted ap_conf_t.
 *
 * Every error is collected, not just the first, one per line as "FILE: json.path: expected X,
 * got Y" (syntax errors as "FILE:LINE:COL: ..."). Unknown and repeated keys are errors: a typo in
 * a security setting must not silently fall back to a default. The top-level keys and the limits
 * are tables below; credentials live in conf_cred.c.
 *
 * The config text, the parsed cJSON tree and every intermediate copy of a secret are wiped before
 * they are freed.
 */
#include "conf.h"

#include "conf_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Limits ---------------------------------------------------------------------------------- */

enum { L_SIZE, L_U64, L_I64 };

typedef struct limit_spec_s {
    const char *key;
    size_t off;
    int kind;
    int64_t def, min, max;
} limit_spec_t;

#define LIM(field, kind, min, max, def)                                                            \
    {                                                                                              \
#field, offsetof(ap_conf_t, limits.field), kind, def, min, max                             \
    }
/* Timeouts above a day are typos (seconds written as milliseconds the other way round). */
#define DAY_MS 86400000LL

static const limit_spec_t limits[] = {
    LIM(max_head, L_SIZE, 1024, 1024 * 1024, AP_CONF_DEFAULT_MAX_HEAD),
    LIM(max_headers, L_SIZE, 1, 100, AP_CONF_DEFAULT_MAX_HEADERS),
    /* 2^50: JSON numbers are doubles, exact to 2^53; a PiB body cap is already "none". */
    LIM(max_body, L_U64, 0, 1LL << 50, AP_CONF_DEFAULT_MAX_BODY),
    LIM(replay_body, L_SIZE, 0, 16 * 1024 * 1024, AP_CONF_DEFAULT_REPLAY_BODY),
    LIM(max_conns, L_SIZE, 1, 1000000, AP_CONF_DEFAULT_MAX_CONNS),
    LIM(head_timeout_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_HEAD_TIMEOUT_MS),
    LIM(body_timeout_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_BODY_TIMEOUT_MS),
    LIM(idle_timeout_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_IDLE_TIMEOUT_MS),
    LIM(connect_timeout_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_CONNECT_TIMEOUT_MS),
    LIM(response_timeout_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_RESPONSE_TIMEOUT_MS),
    LIM(tunnel_idle_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_TUNNEL_IDLE_MS),
    LIM(drain_timeout_ms, L_I64, 0, DAY_MS, AP_CONF_DEFAULT_DRAIN_TIMEOUT_MS),
    LIM(token_wait_ms, L_I64, 1, DAY_MS, AP_CONF_DEFAULT_TOKEN_WAIT_MS),
};

static void
set_limit(ap_conf_t *c, const limit_spec_t *l, int64_t v)
{
    char *f = (char *)c + l->off;
    if (l->kind == L_SIZE) {
        size_t s = (size_t)v;
        memcpy(f, &s, sizeof(s));
    } else if (l->kind == L_U64) {
        uint64_t u = (uint64_t)v;
        memcpy(f, &u, sizeof(u));
    } else {
        memcpy(f, &v, sizeof(v));
    }
}

void
ap_conf_default_limits(ap_conf_t *c)
{
    for (size_t i = 0; i < AP_ARRAY_LEN(limits); i++)
        set_limit(c, &limits[i], limits[i].def);
}

size_t
ap_conf__limit_keys(const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < AP_ARRAY_LEN(limits) && n < max; i++)
        out[n++] = limits[i].key;
    return n;
}

static void
parse_limits(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    const char *keys[AP_ARRAY_LEN(limits) + 1];
    for (size_t i = 0; i < AP_ARRAY_LEN(limits); i++)
        keys[i] = limits[i].key;
    keys[AP_ARRAY_LEN(limits)] = NULL;
    if (!ap_conf__object(x, j, "limits", "an object of limits", keys))
        return;
    for (size_t i = 0; i < AP_ARRAY_LEN(limits); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, limits[i].key);
        char p[AP_CONF_PATH_MAX];
        int64_t n;
        ap_conf__path_key(p, "limits", limits[i].key);
        if (v != NULL && ap_conf__int(x, v, p, limits[i].min, limits[i].max, &n))
            set_limit(c, &limits[i], n);
    }
}

/* --- Listeners ------------------------------------------------------------------------------- */

static void
add_addr(ap_addr_conf_t **v, size_t *n, char *host, int port)
{
    *v = ap_xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[*n].host = host;
    (*v)[*n].port = ap_xasprintf("%d", port);
    (*n)++;
}

static void
one_addr(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_addr_conf_t **v, size_t *n)
{
    char *s = ap_conf__str(x, j, path, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
    if (s == NULL)
        return;
    char *host;
    int port;
    const char *why;
    if (ap_conf__split_hostport(s, 0, &host, &port, &why) == AP_OK) {
        add_addr(v, n, host, port);
    } else {
        char got[128];
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, path, "expected \"host:port\" such as \"127.0.0.1:3128\", got %s (%s)", got,
                     why);
    }
    free(s);
}

/* "listen"/"admin": "host:port" or an array of them; admin may be false or null (disabled). */
static void
parse_addrs(ap_conf__ctx_t *x, const cJSON *j, const char *key, bool may_disable,
            ap_addr_conf_t **v, size_t *n)
{
    if (may_disable && (cJSON_IsFalse(j) || cJSON_IsNull(j)))
        return;
    if (cJSON_IsString(j)) {
        one_addr(x, j, key, v, n);
        return;
    }
    if (!cJSON_IsArray(j) || (!may_disable && cJSON_GetArraySize(j) == 0)) {
        char got[128];
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, key, "expected \"host:port\" or a non-empty array of them%s, got %s",
                     may_disable ? " (or false to disable)" : "", got);
        return;
    }
    const cJSON *it;
    size_t i = 0;
    cJSON_ArrayForEach(it, j)
    {
        char p[AP_CONF_PATH_MAX];
        ap_conf__path_idx(p, key, i++);
        one_addr(x, it, p, v, n);
    }
}

static void
parse_listen(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    parse_addrs(x, j, "listen", false, &c->listen, &c->nlisten);
}

static void
parse_admin(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    parse_addrs(x, j, "admin", true, &c->admin, &c->nadmin);
}

static bool
is_loopback_literal(const char *h)
{
    unsigned char a[16];
    if (strcmp(h, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, h, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, h, a) == 1) {
        static const unsigned char lo[16] = {[15] = 1};
        static const unsigned char mapped[12] = {[10] = 0xff, [11] = 0xff};
        return memcmp(a, lo, 16) == 0 || (memcmp(a, mapped, 12) == 0 && a[12] == 127);
    }
    return false;
}

static bool
is_ip_literal(const char *h)
{
    unsigned char a[16];
    return inet_pton(AF_INET, h, a) == 1 || inet_pton(AF_INET6, h, a) == 1;
}

/* Cross-checks once everything is parsed: an unauthenticated proxy on a public address is an
 * open proxy with our tokens attached. Names are left to the listener, which checks what they
 * resolve to; literals are caught here so --check reports them. */
static void
check_listeners(ap_conf__ctx_t *x, const cJSON *root, ap_conf_t *c)
{
    bool protected = c->nusers > 0 || c->nallow > 0 || c->allow_public_without_auth;
    bool array = cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "listen"));
    for (size_t i = 0; i < c->nlisten; i++) {
        char p[AP_CONF_PATH_MAX];
        if (array)
            ap_conf__path_idx(p, "listen", i);
        else
            snprintf(p, sizeof(p), "listen");
        const ap_addr_conf_t *a = &c->listen[i];
        bool v6 = strchr(a->host, ':') != NULL;
        if (!protected && is_ip_literal(a->host) && !is_loopback_literal(a->host))
            ap_conf__err(x, p,
                         "expected a loopback address unless client_auth has \"users\" or "
                         "\"allow\" (or \"insecure_allow_unauthenticated\": true), got "
                         "\"%s%s%s:%s\"",
                         v6 ? "[" : "", a->host, v6 ? "]" : "", a->port);
        for (size_t k = 0; k < c->nadmin; k++) {
            if (strcmp(a->port, "0") != 0 && strcmp(a->host, c->admin[k].host) == 0 &&
                strcmp(a->port, c->admin[k].port) == 0)
                ap_conf__err(x, "admin",
                             "expected an address other than listen's, got \"%s:%s\" "
                             "for both",
                             a->host, a->port);
        }
    }
}

/* --- tls, connect_to, outbound_proxy ---------------------------------------------------------- */

static void
parse_tls(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    static const char *const keys[] = {"ca_file", NULL};
    if (!ap_conf__object(x, j, "tls", "an object {\"ca_file\": \"PATH\"}", keys))
        return;
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "ca_file");
    if (f == NULL)
        return;
    c->ca_file = ap_conf__str(x, f, "tls.ca_file", AP_CONF_NONEMPTY | AP_CONF_NOCTL);
    if (c->ca_file == NULL)
        return;
    /* Checked now: at the first token fetch it would be a 502 with a curl error instead. */
    int fd = open(c->ca_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    const char *why = NULL;
    struct stat st;
    if (fd == -1)
        why = strerror(errno);
    else if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        why = "it is a directory";
    if (fd != -1)
        close(fd);
    if (why != NULL)
        ap_conf__err(x, "tls.ca_file", "expected a readable CA bundle (PEM file), got \"%s\" (%s)",
                     c->ca_file, why);
}

/* "host:port" in canonical form: lowercase, IPv6 in brackets (curl's --connect-to syntax). */
static char *
canonical_hostport(const char *host, int port)
{
    char buf[300];
    ap_conf_hostport(buf, sizeof(buf), host, port);
    return ap_xstrdup(buf);
}

void
ap_conf_hostport(char *dst, size_t n, const char *host, int port)
{
    bool v6 = strchr(host, ':') != NULL;
    /* One spelling per IPv6 address ("[0:0::1]" is "[::1]"), as curl matches connect_to. */
    unsigned char a[16];
    char canon[INET6_ADDRSTRLEN];
    if (v6 && inet_pton(AF_INET6, host, a) == 1 && inet_ntop(AF_INET6, a, canon, sizeof(canon)))
        host = canon;
    ap_fmt_trunc(dst, n, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

void
ap_conf_connect_to(const ap_conf_t *c, const char *host, int port, char *out_host, size_t hlen,
                   int *out_port)
{
    char key[300];
    ap_conf_hostport(key, sizeof(key), host, port);
    snprintf(out_host, hlen, "%s", host);
    *out_port = port;
    for (size_t i = 0; i < c->nconnect_to; i++) {
        if (strcmp(c->connect_to[i].from, key) != 0)
            continue;
        const char *to = c->connect_to[i].to;
        const char *colon = strrchr(to, ':');
        if (colon == NULL)
            return;
        size_t n = (size_t)(colon - to);
        if (n > 1 && to[0] == '[' && to[n - 1] == ']') {
            to++;
            n -= 2;
        }
        if (n >= hlen)
            return;
        memcpy(out_host, to, n);
        out_host[n] = '\0';
        *out_port = (int)strtol(colon + 1, NULL, 10);
        return;
    }
}

static void
parse_connect_to(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    if (!ap_conf__object(x, j, "connect_to", "an object of \"host:port\" -> \"addr:port\"", NULL))
        return;
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        char p[AP_CONF_PATH_MAX];
        ap_conf__path_key(p, "connect_to", it->string);
        char *fh = NULL, *th = NULL;
        int fp, tp;
        const char *why;
        if (ap_conf__split_hostport(it->string, 1, &fh, &fp, &why) != AP_OK) {
            ap_conf__err(x, p,
                         "expected a key \"host:port\" such as \"api.example.com:443\", "
                         "got \"%.80s\" (%s)",
                         it->string, why);
            continue;
        }
        char *to = ap_conf__str(x, it, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
        if (to != NULL && ap_conf__split_hostport(to, 1, &th, &tp, &why) != AP_OK) {
            char got[128];
            ap_conf__got(it, false, got, sizeof(got));
            ap_conf__err(x, p, "expected \"addr:port\" such as \"10.0.0.7:8443\", got %s (%s)", got,
                         why);
        } else if (to != NULL) {
            char *from = canonical_hostport(fh, fp);
            bool dup = false;
            for (size_t i = 0; i < c->nconnect_to && !dup; i++)
                dup = strcmp(c->connect_to[i].from, from) == 0;
            if (dup) {
                ap_conf__err(x, p, "expected each \"host:port\" once, got \"%s\" again", from);
                free(from);
            } else {
                c->connect_to =
                    ap_xrealloc(c->connect_to, (c->nconnect_to + 1) * sizeof(*c->connect_to));
                c->connect_to[c->nconnect_to].from = from;
                c->connect_to[c->nconnect_to].to = canonical_hostport(th, tp);
                c->nconnect_to++;
            }
        }
        free(to);
        free(fh);
        free(th);
    }
}

/* "outbound_proxy": a URL curl understands as CURLOPT_PROXY. It may carry user:password, so it
 * takes the secret forms and is printed with the userinfo masked. */
static void
parse_outbound(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    static const char *const schemes[] = {"http",   "https",   "socks4", "socks4a",
                                          "socks5", "socks5h", NULL};
    char *v = ap_conf__secret(x, j, "outbound_proxy", NULL);
    if (v == NULL)
        return;
    const char *sep = strstr(v, "://");
    bool ok = false;
    const char *why = "expected scheme://host:port";
    if (sep != NULL) {
        for (const char *const *s = schemes; *s && !ok; s++)
            ok = strlen(*s) == (size_t)(sep - v) && strncasecmp(*s, v, (size_t)(sep - v)) == 0;
        if (!ok)
            why = "the scheme must be http, https, socks4, socks4a, socks5 or socks5h";
    }
    if (ok) {
        /* Check host[:port] with the URL parser, without the userinfo. */
        const char *auth = sep + 3;
        size_t alen = strcspn(auth, "/?#");
        const char *at = NULL;
        for (const char *p = auth; p < auth + alen; p++)
            if (*p == '@')
                at = p;
        char *probe = ap_xasprintf("http://%s", at ? at + 1 : auth);
        char *path = NULL;
        ok = ap_conf__parse_url(probe, false, NULL, NULL, NULL, &path, &why) == AP_OK;
        if (ok && path[0] != '\0') {
            ok = false;
            why = "a proxy URL has no path";
        }
        free(path);
        ap_free_secret(probe);
    }
    if (!ok) {
        char *safe = ap_conf__safe_url(v);
        ap_conf__err(x, "outbound_proxy",
                     "expected a proxy URL such as \"http://proxy:3128\", "
                     "got \"%s\" (%s)",
                     safe, why);
        free(safe);
        ap_free_secret(v);
        return;
    }
    c->outbound_proxy = v;
}

/* --- Small top-level values ---------------------------------------------------------------------
 */

static void
parse_unmatched(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    static const char *const v[] = {"deny", "forward", NULL};
    c->unmatched_forward = ap_conf__enum(x, j, "unmatched", v) == 1;
}

static void
parse_log_level(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    static const char *const v[] = {"error", "warn", "info", "debug", NULL};
    int k = ap_conf__enum(x, j, "log_level", v);
    if (k >= 0) {
        free(c->log_level);
        c->log_level = ap_xstrdup(v[k]);
    }
}

static void
parse_log_format(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    static const char *const v[] = {"json", "text", NULL};
    c->log_json = ap_conf__enum(x, j, "log_format", v) != 1;
}

static void
parse_connect(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    ap_conf__bool(x, j, "connect", &c->allow_connect);
}

static void
parse_fast_path(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    ap_conf__bool(x, j, "upstream_fast_path", &c->fast_path);
}

/* --- client_auth ----------------------------------------------------------------------------- */

static bool
valid_cidr(const char *s)
{
    char addr[INET6_ADDRSTRLEN + 1];
    size_t n = strcspn(s, "/");
    if (n == 0 || n >= sizeof(addr))
        return false;
    memcpy(addr, s, n);
    addr[n] = '\0';
    unsigned char a[16];
    int bits;
    if (inet_pton(AF_INET, addr, a) == 1)
        bits = 32;
    else if (inet_pton(AF_INET6, addr, a) == 1)
        bits = 128;
    else
        return false;
    if (s[n] == '\0')
        return true;
    const char *p = s + n + 1;
    if (*p == '\0' || strlen(p) > 3)
        return false;
    int v = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    return v <= bits;
}

static void
add_cidr(ap_conf__ctx_t *x, const cJSON *j, const char *path, ap_conf_t *c)
{
    char *s = ap_conf__str(x, j, path, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
    if (s == NULL)
        return;
    if (!valid_cidr(s)) {
        char got[128];
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, path,
                     "expected an address or CIDR such as \"10.0.0.0/8\" or \"::1\", "
                     "got %s",
                     got);
        free(s);
        return;
    }
    c->allow_cidrs = ap_xrealloc(c->allow_cidrs, (c->nallow + 1) * sizeof(char *));
    c->allow_cidrs[c->nallow++] = s;
}

static void
parse_client_auth(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    static const char *const keys[] = {"users", "allow", "insecure_allow_unauthenticated", NULL};
    if (!ap_conf__object(x, j, "client_auth",
                         "an object {users, allow, insecure_allow_unauthenticated}", keys))
        return;
    const cJSON *users = cJSON_GetObjectItemCaseSensitive(j, "users");
    if (users != NULL &&
        ap_conf__object(x, users, "client_auth.users", "an object of user -> password", NULL)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, users)
        {
            char p[AP_CONF_PATH_MAX];
            ap_conf__path_key(p, "client_auth.users", it->string);
            /* Proxy-Authorization: Basic base64(user ":" password): the first ':' splits. */
            if (it->string[0] == '\0' || strchr(it->string, ':') != NULL ||
                !ap_conf__valid_header_value(it->string)) {
                ap_conf__err(x, p,
                             "expected a user name without \":\" or control characters, "
                             "got \"%.80s\"",
                             it->string);
                continue;
            }
            char *pw = ap_conf__secret(x, it, p, NULL);
            if (pw == NULL)
                continue;
            c->users = ap_xrealloc(c->users, (c->nusers + 1) * sizeof(*c->users));
            c->users[c->nusers].name = ap_xstrdup(it->string);
            c->users[c->nusers].password = pw;
            c->nusers++;
        }
    }
    const cJSON *allow = cJSON_GetObjectItemCaseSensitive(j, "allow");
    if (cJSON_IsString(allow)) {
        add_cidr(x, allow, "client_auth.allow", c);
    } else if (cJSON_IsArray(allow)) {
        const cJSON *it;
        size_t i = 0;
        cJSON_ArrayForEach(it, allow)
        {
            char p[AP_CONF_PATH_MAX];
            ap_conf__path_idx(p, "client_auth.allow", i++);
            add_cidr(x, it, p, c);
        }
    } else if (allow != NULL) {
        ap_conf__err(x, "client_auth.allow",
                     "expected an array of CIDRs such as [\"10.0.0.0/8\"], "
                     "got %s",
                     ap_conf__type(allow));
    }
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(j, "insecure_allow_unauthenticated");
    if (ins != NULL)
        ap_conf__bool(x, ins, "client_auth.insecure_allow_unauthenticated",
                      &c->allow_public_without_auth);
}

/* --- Routes ---------------------------------------------------------------------------------- */

/* Route hosts: "api.x.com", "*.x.com", an IPv4 literal or "[v6]" (stored without brackets, as
 * the parser hands the router request hosts). */
static char *
route_host(ap_conf__ctx_t *x, const cJSON *j, const char *path)
{
    char *h = ap_conf__str(x, j, path, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
    if (h == NULL)
        return NULL;
    ap_ascii_lower(h);
    size_t n = strlen(h);
    bool ok;
    const char *hint = "";
    if (h[0] == '[' && h[n - 1] == ']') {
        memmove(h, h + 1, n - 2);
        h[n - 2] = '\0';
        ok = ap_conf__is_ipv6(h);
    } else if (h[0] == '*' && h[1] == '.') {
        ok = ap_conf__valid_hostname(h + 2);
    } else {
        ok = ap_conf__valid_hostname(h);
        if (!ok && strchr(h, ':') != NULL)
            hint = " (put a port in \"port\")";
    }
    if (!ok) {
        char got[128];
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, path,
                     "expected a host name such as \"api.example.com\" or \"*.example.com\", "
                     "got %s%s",
                     got, hint);
        free(h);
        return NULL;
    }
    return h;
}

static bool
same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static void
parse_route(ap_conf__ctx_t *x, ap_conf_t *c, const cJSON *j, size_t idx, ap_route_conf_t *r)
{
    static const char *const keys[] = {"host", "port", "path", "upstream", "credential", NULL};
    char path[AP_CONF_PATH_MAX], p[AP_CONF_PATH_MAX];
    ap_conf__path_idx(path, "routes", idx);
    if (!ap_conf__object(x, j, path, "a route {host, port, path, upstream, credential}", keys))
        return;
    const cJSON *v;
    size_t before = x->nerr;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "host")) != NULL) {
        ap_conf__path_key(p, path, "host");
        r->host = route_host(x, v, p);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "port")) != NULL) {
        int64_t port = 0;
        ap_conf__path_key(p, path, "port");
        if (ap_conf__int(x, v, p, 1, 65535, &port))
            r->port = (int)port;
        if (cJSON_GetObjectItemCaseSensitive(j, "host") == NULL)
            ap_conf__err(x, p,
                         "expected \"port\" only with \"host\" (base-URL routes match the "
                         "path alone), got a port without a host");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "path")) != NULL) {
        ap_conf__path_key(p, path, "path");
        r->path = ap_conf__str(x, v, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
        if (r->path != NULL && (r->path[0] != '/' || strpbrk(r->path, " ?#") != NULL)) {
            char got[128];
            ap_conf__got(v, false, got, sizeof(got));
            ap_conf__err(x, p,
                         "expected a path prefix starting with \"/\" (no spaces, '?' or '#'), "
                         "got %s",
                         got);
        }
    }
    if (cJSON_GetObjectItemCaseSensitive(j, "host") == NULL &&
        cJSON_GetObjectItemCaseSensitive(j, "path") == NULL)
        ap_conf__err(x, path,
                     "expected \"host\" (proxy mode) and/or \"path\" (base-URL mode), "
                     "got neither");
    ap_conf__path_key(p, path, "upstream");
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "upstream")) == NULL) {
        ap_conf__err(x, p,
                     "expected the base URL to forward to, e.g. \"https://api.example.com\" "
                     "(required), got nothing");
    } else if ((r->upstream = ap_conf__str(x, v, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL)) != NULL) {
        const char *why;
        if (ap_conf__parse_url(r->upstream, false, &r->up_tls, &r->up_host, &r->up_port,
                               &r->up_path, &why) != AP_OK) {
            char *safe = ap_conf__safe_url(r->upstream);
            ap_conf__err(x, p, "expected an http:// or https:// base URL, got \"%s\" (%s)", safe,
                         why);
            free(safe);
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "credential")) != NULL) {
        ap_conf__path_key(p, path, "credential");
        r->credential = ap_conf__str(x, v, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
        if (r->credential != NULL) {
            r->cred = ap_conf_find_cred(c, r->credential);
            if (r->cred == NULL) {
                char got[128];
                ap_conf__got(v, false, got, sizeof(got));
                ap_conf__err(x, p, "expected the name of an entry in \"credentials\", got %s", got);
            }
        }
    }
    if (r->host != NULL)
        r->label = ap_xasprintf("%s%s%.0d%s", r->host, r->port ? ":" : "", r->port,
                                r->path ? r->path : "");
    else if (r->path != NULL)
        r->label = ap_xstrdup(r->path);
    else
        r->label = ap_xstrdup(path);
    if (x->nerr != before)
        return;
    /* First match wins: an identical earlier route makes this one dead config. */
    for (size_t k = 0; k < idx; k++) {
        const ap_route_conf_t *o = &c->routes[k];
        if (same(o->host, r->host) && o->port == r->port && same(o->path, r->path)) {
            ap_conf__err(x, path,
                         "expected a route that differs from routes[%zu] (same host, port and "
                         "path: it could never match), got a duplicate",
                         k);
            break;
        }
    }
}

static void
parse_routes(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c)
{
    if (!cJSON_IsArray(j)) {
        ap_conf__err(x, "routes", "expected an array of routes, got %s", ap_conf__type(j));
        return;
    }
    size_t n = (size_t)cJSON_GetArraySize(j);
    c->routes = ap_xcalloc(n ? n : 1, sizeof(*c->routes));
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        parse_route(x, c, it, c->nroutes, &c->routes[c->nroutes]);
        c->nroutes++;
    }
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

/* --- Top level -------------------------------------------------------------------------------- */

typedef void (*top_fn)(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c);

/* Processed in this order whatever the file's order: routes resolve credential names. */
static const struct {
    const char *key;
    top_fn parse;
} top[] = {
    {"listen", parse_listen},
    {"admin", parse_admin},
    {"tls", parse_tls},
    {"connect_to", parse_connect_to},
    {"outbound_proxy", parse_outbound},
    {"unmatched", parse_unmatched},
    {"connect", parse_connect},
    {"upstream_fast_path", parse_fast_path},
    {"log_level", parse_log_level},
    {"log_format", parse_log_format},
    {"limits", parse_limits},
    {"client_auth", parse_client_auth},
    {"credentials", ap_conf__parse_credentials},
    {"routes", parse_routes},
};

static void
set_defaults(ap_conf_t *c)
{
    c->refcnt = 1;
    ap_conf_default_limits(c);
    c->log_level = ap_xstrdup("info");
    c->log_json = true;
    c->allow_connect = true;
    c->fast_path = true;
}

static void
default_addr(ap_addr_conf_t **v, size_t *n, const char *s)
{
    char *host;
    int port;
    const char *why;
    if (ap_conf__split_hostport(s, 0, &host, &port, &why) == AP_OK)
        add_addr(v, n, host, port);
}

static void
parse_root(ap_conf__ctx_t *x, const cJSON *root, ap_conf_t *c)
{
    const char *keys[AP_ARRAY_LEN(top) + 1];
    for (size_t i = 0; i < AP_ARRAY_LEN(top); i++)
        keys[i] = top[i].key;
    keys[AP_ARRAY_LEN(top)] = NULL;
    if (!ap_conf__object(x, root, "", "a JSON object {\"listen\": ..., \"routes\": [...]}", keys))
        return;
    for (size_t i = 0; i < AP_ARRAY_LEN(top); i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(root, top[i].key);
        if (j != NULL)
            top[i].parse(x, j, c);
    }
    if (cJSON_GetObjectItemCaseSensitive(root, "listen") == NULL)
        default_addr(&c->listen, &c->nlisten, AP_CONF_DEFAULT_LISTEN);
    if (cJSON_GetObjectItemCaseSensitive(root, "admin") == NULL)
        default_addr(&c->admin, &c->nadmin, AP_CONF_DEFAULT_ADMIN);
    check_listeners(x, root, c);
}

/* --- JSON syntax errors -------------------------------------------------------------------------
 */

/* cJSON says only "somewhere near here", and that pointer often lands inside a string (which may
 * be a secret). This scanner finds the first real error and a reason, and never looks at what a
 * string contains beyond its syntax. */
typedef struct scan_s {
    const char *s;
    size_t len, pos;
    const char *why;
} scan_t;

/* JSON nesting deeper than this is not a config (cJSON stops at 1000). */
#define MAX_DEPTH 512

static void
sc_ws(scan_t *t)
{
    while (t->pos < t->len && strchr(" \t\r\n", t->s[t->pos]) != NULL && t->s[t->pos] != '\0')
        t->pos++;
}

static bool
sc_fail(scan_t *t, const char *why)
{
    t->why = why;
    return false;
}

static bool
sc_string(scan_t *t)
{
    size_t start = t->pos++;
    while (t->pos < t->len) {
        unsigned char c = (unsigned char)t->s[t->pos];
        if (c == '"') {
            t->pos++;
            return true;
        }
        if (c == '\\') {
            char e = t->pos + 1 < t->len ? t->s[t->pos + 1] : '\0';
            if (e == 'u') {
                for (size_t k = 2; k < 6; k++) {
                    char h = t->pos + k < t->len ? t->s[t->pos + k] : '\0';
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return sc_fail(t, "bad \\u escape in a string (4 hex digits)");
                }
                t->pos += 6;
                continue;
            }
            if (e == '\0' || strchr("\"\\/bfnrt", e) == NULL)
                return sc_fail(t, "bad escape in a string (\\\" \\\\ \\/ \\b \\f \\n \\r \\t "
                                  "\\uXXXX)");
            t->pos += 2;
            continue;
        }
        if (c == '\n') {
            t->pos = start;
            return sc_fail(t, "unterminated string (a string must end on the line it starts)");
        }
        if (c < 0x20)
            return sc_fail(t, "control character inside a string (write it as an escape)");
        t->pos++;
    }
    t->pos = start;
    return sc_fail(t, "unterminated string");
}

static bool
sc_number(scan_t *t)
{
    const char *s = t->s;
    size_t p = t->pos, n = t->len;
    if (p < n && s[p] == '-')
        p++;
    if (p < n && s[p] == '0') {
        p++;
    } else if (p < n && s[p] >= '1' && s[p] <= '9') {
        while (p < n && s[p] >= '0' && s[p] <= '9')
            p++;
    } else {
        return sc_fail(t, "bad number");
    }
    if (p < n && s[p] == '.') {
        if (++p >= n || s[p] < '0' || s[p] > '9')
            return sc_fail(t, "bad number (digits must follow '.')");
        while (p < n && s[p] >= '0' && s[p] <= '9')
            p++;
    }
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-'))
            p++;
        if (p >= n || s[p] < '0' || s[p] > '9')
            return sc_fail(t, "bad number (digits must follow the exponent)");
        while (p < n && s[p] >= '0' && s[p] <= '9')
            p++;
    }
    t->pos = p;
    return true;
}

static bool sc_value(scan_t *t, int depth);

static bool
sc_container(scan_t *t, int depth, bool object)
{
    char close = object ? '}' : ']';
    if (depth > MAX_DEPTH)
        return sc_fail(t, "nesting too deep");
    t->pos++;
    sc_ws(t);
    if (t->pos < t->len && t->s[t->pos] == close) {
        t->pos++;
        return true;
    }
    for (;;) {
        sc_ws(t);
        if (object) {
            if (t->pos >= t->len)
                return sc_fail(t, "unexpected end of file inside an object (missing '}')");
            if (t->s[t->pos] == '\'')
                return sc_fail(t, "keys and strings take double quotes, not single quotes");
            if (t->s[t->pos] != '"')
                return sc_fail(t, "expected a \"key\" in double quotes");
            if (!sc_string(t))
                return false;
            sc_ws(t);
            if (t->pos >= t->len || t->s[t->pos] != ':')
                return sc_fail(t, "expected ':' after the key");
            t->pos++;
        }
        if (!sc_value(t, depth + 1))
            return false;
        sc_ws(t);
        if (t->pos >= t->len)
            return sc_fail(t, object ? "unexpected end of file (missing '}')"
                                     : "unexpected end of file (missing ']')");
        char c = t->s[t->pos];
        if (c == close) {
            t->pos++;
            return true;
        }
        if (c != ',')
            return sc_fail(t, object ? "expected ',' or '}' (a missing comma?)"
                                     : "expected ',' or ']' (a missing comma?)");
        size_t comma = t->pos++;
        sc_ws(t);
        if (t->pos < t->len && t->s[t->pos] == close) {
            t->pos = comma;
            return sc_fail(t, "trailing comma (JSON allows none before '}' or ']')");
        }
    }
}

static bool
sc_value(scan_t *t, int depth)
{
    sc_ws(t);
    if (t->pos >= t->len)
        return sc_fail(t, "unexpected end of file (a value is missing)");
    char c = t->s[t->pos];
    if (c == '{' || c == '[')
        return sc_container(t, depth, c == '{');
    if (c == '"')
        return sc_string(t);
    if (c == '-' || (c >= '0' && c <= '9'))
        return sc_number(t);
    if (c == '/')
        return sc_fail(t, "comments are not allowed in JSON");
    if (c == '\'')
        return sc_fail(t, "strings take double quotes, not single quotes");
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t i = 0; i < AP_ARRAY_LEN(lits); i++) {
        size_t n = strlen(lits[i]);
        if (t->len - t->pos >= n && memcmp(t->s + t->pos, lits[i], n) == 0) {
            t->pos += n;
            return true;
        }
    }
    /* The word itself is not shown: an unquoted value may well be a secret. */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return sc_fail(t, "unquoted word (strings take double quotes; literals are true, false "
                          "and null)");
    return sc_fail(t, "unexpected character");
}

static void
syntax_error(ap_conf__ctx_t *x, const char *s, size_t len)
{
    scan_t t = {s, len, 0, NULL};
    if (sc_value(&t, 0)) {
        sc_ws(&t);
        if (t.pos < t.len)
            t.why = t.s[t.pos] == '\0' ? "NUL byte in the file"
                                       : "more content after the end of the JSON document";
    }
    if (t.why == NULL) {
        /* cJSON refused what the scanner accepts (a limit of cJSON's): use its position. */
        const char *ep = cJSON_GetErrorPtr();
        t.pos = ep != NULL && ep >= s && ep <= s + len ? (size_t)(ep - s) : 0;
        t.why = "rejected by the JSON parser";
    }
    size_t line = 1, col = 1;
    for (size_t i = 0; i < t.pos && i < len; i++) {
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else if (((unsigned char)s[i] & 0xc0) != 0x80) {
            col++; /* columns count characters, not UTF-8 bytes */
        }
    }
    char near[16] = "";
    if (t.pos < len && strchr("{}[]:,", s[t.pos]) != NULL && s[t.pos] != '\0')
        snprintf(near, sizeof(near), " near '%c'", s[t.pos]);
    else if (t.pos >= len)
        snprintf(near, sizeof(near), " at the end");
    ap_buf_appendf(&x->errs, "%s%s:%zu:%zu: JSON syntax error%s: %s", x->nerr ? "\n" : "", x->file,
                   line, col, near, t.why);
    x->nerr++;
}

/* --- Load ------------------------------------------------------------------------------------- */

/* Literal secrets sit in the parsed tree: wipe every string before cJSON frees it. */
static void
json_wipe(cJSON *j)
{
    for (; j != NULL; j = j->next) {
        if (j->valuestring != NULL)
            ap_wipe(j->valuestring, strlen(j->valuestring));
        json_wipe(j->child);
    }
}

/* Copies the messages into err: whole lines only, then how many were left out. */
static void
report(const ap_conf__ctx_t *x, char *err, size_t errlen)
{
    if (err == NULL || errlen == 0)
        return;
    const char *all = x->errs.data ? x->errs.data : "invalid configuration";
    if (strlen(all) < errlen) {
        snprintf(err, errlen, "%s", all);
        return;
    }
    size_t used = 0, shown = 0;
    for (const char *p = all; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        size_t need = used + (shown ? 1 : 0) + l;
        size_t left = x->nerr > shown + 1 ? x->nerr - shown - 1 : 0;
        int tail = left ? snprintf(NULL, 0, "\n(%zu more errors not shown)", left) : 0;
        if (need + (size_t)tail >= errlen)
            break;
        used = need;
        shown++;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    if (shown == 0) {
        snprintf(err, errlen, "%s", all); /* cut mid-line, still NUL-terminated */
        return;
    }
    size_t left = x->nerr > shown ? x->nerr - shown : 0;
    if (left > 0)
        snprintf(err, errlen, "%.*s\n(%zu more errors not shown)", (int)used, all, left);
    else
        snprintf(err, errlen, "%.*s", (int)used, all);
}

ap_conf_t *
ap_conf__load(const char *json, size_t len, const char *name, const ap_conf__hint_t *hints,
              size_t nhints, char *err, size_t errlen)
{
    ap_conf__ctx_t x = {.file = name ? name : "config", .hints = hints, .nhints = nhints};
    ap_conf_t *c = ap_xcalloc(1, sizeof(*c));
    set_defaults(c);
    c->path = name ? ap_xstrdup(name) : NULL;
    /* An own NUL-terminated copy: cJSON may read one byte past `len` to check the end. */
    char *text = ap_xmalloc(len + 1);
    if (len > 0)
        memcpy(text, json, len);
    text[len] = '\0';
    size_t skip = len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0; /* UTF-8 BOM */
    const char *end = NULL;
    cJSON *root = NULL;
    if (strlen(text + skip) != len - skip) {
        syntax_error(&x, text + skip, len - skip);
    } else if (len - skip == strspn(text + skip, " \t\r\n")) {
        ap_conf__err(&x, "", "expected a JSON object, got an empty file");
    } else {
        root = cJSON_ParseWithOpts(text + skip, &end, 1);
        if (root == NULL)
            syntax_error(&x, text + skip, len - skip);
    }
    ap_conf__free_text(text, len);
    if (root != NULL) {
        parse_root(&x, root, c);
        json_wipe(root);
        cJSON_Delete(root);
    }
    if (x.nerr > 0) {
        report(&x, err, errlen);
        ap_buf_free(&x.errs, false);
        ap_conf_unref(c);
        return NULL;
    }
    ap_buf_free(&x.errs, false);
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    return c;
}

ap_conf_t *
ap_conf_load_buffer(const char *json, size_t len, const char *name, char *err, size_t errlen)
{
    return ap_conf__load(json, len, name, NULL, 0, err, errlen);
}

ap_conf_t *
ap_conf_load_file(const char *path, char *err, size_t errlen)
{
    const char *why = NULL;
    size_t len = 0;
    char *text = ap_conf__read_file(path, AP_CONF_MAX_FILE, &len, &why);
    if (text == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "%s: cannot read the configuration file: %s", path, why);
        return NULL;
    }
    ap_conf_t *c = ap_conf_load_buffer(text, len, path, err, errlen);
    ap_conf__free_text(text, len);
    return c;
}

/* --- Lifetime and lookups ------------------------------------------------------------------- */

ap_conf_t *
ap_conf_ref(ap_conf_t *c)
{
    if (c != NULL)
        c->refcnt++;
    return c;
}

static void
addrs_free(ap_addr_conf_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].host);
        free(v[i].port);
    }
    free(v);
}

void
ap_conf_unref(ap_conf_t *c)
{
    if (c == NULL || --c->refcnt > 0)
        return;
    free(c->path);
    addrs_free(c->listen, c->nlisten);
    addrs_free(c->admin, c->nadmin);
    free(c->ca_file);
    for (size_t i = 0; i < c->nconnect_to; i++) {
        free(c->connect_to[i].from);
        free(c->connect_to[i].to);
    }
    free(c->connect_to);
    ap_free_secret(c->outbound_proxy);
    for (size_t i = 0; i < c->ncreds; i++)
        ap_conf__cred_free(&c->creds[i]);
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
        if (c->creds[i].name != NULL && strcmp(c->creds[i].name, name) == 0)
            return &c->creds[i];
    return NULL;
}
