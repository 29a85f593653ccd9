/*
 * router.c: routes in config order, first match wins. Host routes match absolute-form (proxy)
 * requests by exact host or "*.suffix" wildcard, optional port and optional path prefix; routes
 * without a host serve origin-form requests sent straight to the proxy (base-URL mode), and
 * their path prefix is stripped before the upstream's base path is prepended.
 */
#include "core.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
host_matches(const char *pattern, const char *host)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        size_t pl = strlen(pattern + 1), hl = strlen(host);
        /* "*.example.com" matches "a.example.com", not "example.com". */
        return hl > pl && strcmp(host + hl - pl, pattern + 1) == 0;
    }
    return strcmp(pattern, host) == 0;
}

/* "/mico/" matches "/mico/x", "/mico/" and "/mico" (also "/mico?x"), not "/micro". */
static bool
path_matches(const char *prefix, const char *path, size_t path_len, size_t *strip)
{
    size_t pl = strlen(prefix);
    size_t core = pl;
    if (core > 1 && prefix[core - 1] == '/')
        core--;
    if (path_len < core || memcmp(prefix, path, core) != 0)
        return false;
    if (path_len > core && core > 1 && path[core] != '/' && path[core] != '?')
        return false;
    if (core == 1 && prefix[0] == '/')
        core = 0; /* "/" matches everything and strips nothing */
    *strip = core;
    return true;
}

const ap_route_conf_t *
ap_router_match(const ap_conf_t *c, const char *host, int port, const char *path, size_t path_len)
{
    for (size_t i = 0; i < c->nroutes; i++) {
        const ap_route_conf_t *rt = &c->routes[i];
        size_t strip;
        if (host == NULL) {
            if (rt->host != NULL || rt->path == NULL)
                continue;
            if (path_matches(rt->path, path, path_len, &strip))
                return rt;
            continue;
        }
        if (rt->host == NULL || !host_matches(rt->host, host))
            continue;
        if (rt->port != 0 && rt->port != port)
            continue;
        if (rt->path != NULL && (path == NULL || !path_matches(rt->path, path, path_len, &strip)))
            continue;
        return rt;
    }
    return NULL;
}

char *
ap_router_upstream_url(const ap_route_conf_t *rt, const char *path, size_t path_len)
{
    size_t strip = 0;
    if (rt->host == NULL && rt->path != NULL)
        path_matches(rt->path, path, path_len, &strip);
    const char *rest = path + strip;
    size_t rest_len = path_len - strip;
    bool v6 = strchr(rt->up_host, ':') != NULL;
    bool default_port = rt->up_port == 0 || (rt->up_tls && rt->up_port == 443) ||
                        (!rt->up_tls && rt->up_port == 80);
    const char *base = rt->up_path ? rt->up_path : "";
    const char *slash = (rest_len == 0 || rest[0] != '/') ? "/" : "";
    /* Per request: concatenation, not printf. */
    ap_buf_t u = {0};
    ap_buf_cat(&u, rt->up_tls ? "https://" : "http://", v6 ? "[" : "", rt->up_host, v6 ? "]" : "",
               NULL);
    if (!default_port) {
        ap_buf_append(&u, ":", 1);
        ap_buf_append_dec(&u, (uint64_t)rt->up_port);
    }
    ap_buf_cat(&u, base, slash, NULL);
    ap_buf_append(&u, rest, rest_len);
    return u.data;
}

static bool
cidr_match(const char *cidr, const struct sockaddr *sa)
{
    char addr[INET6_ADDRSTRLEN + 8];
    size_t n = strcspn(cidr, "/");
    if (n >= sizeof(addr))
        return false;
    memcpy(addr, cidr, n);
    addr[n] = '\0';
    long bits = -1;
    if (cidr[n] == '/') {
        char *end;
        bits = strtol(cidr + n + 1, &end, 10);
        if (*end != '\0')
            return false;
    }
    unsigned char want[16], have[16];
    size_t alen;
    if (inet_pton(AF_INET, addr, want) == 1) {
        alen = 4;
        if (sa->sa_family == AF_INET) {
            memcpy(have, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        } else if (sa->sa_family == AF_INET6) {
            const unsigned char *a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
            static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
            if (memcmp(a6, mapped, 12) != 0)
                return false;
            memcpy(have, a6 + 12, 4);
        } else {
            return false;
        }
    } else if (inet_pton(AF_INET6, addr, want) == 1) {
        alen = 16;
        if (sa->sa_family != AF_INET6)
            return false;
        memcpy(have, ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr, 16);
    } else {
        return false;
    }
    if (bits < 0)
        bits = (long)alen * 8;
    if (bits > (long)alen * 8)
        return false;
    size_t full = (size_t)bits / 8;
    if (memcmp(want, have, full) != 0)
        return false;
    int rem = (int)(bits % 8);
    if (rem == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rem));
    return (want[full] & mask) == (have[full] & mask);
}

bool
ap_router_client_allowed(const ap_conf_t *c, const struct sockaddr *sa)
{
    if (c->nallow == 0)
        return true;
    for (size_t i = 0; i < c->nallow; i++)
        if (cidr_match(c->allow_cidrs[i], sa))
            return true;
    return false;
}
