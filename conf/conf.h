/*
 * conf.h: the configuration, loaded from one JSON file into an immutable, refcounted snapshot.
 *
 * The proxy and auth/ never touch cJSON nodes of the config: everything is typed here, secrets
 * are resolved (${VAR}, {"env": ...}, {"file": ...}) at load time, and every error names the JSON
 * path, what was expected and, for non-secret values, what was found. A reload builds a new
 * snapshot; connections keep the one they started with (ap_conf_ref/unref).
 *
 * Secret-bearing strings are marked below; they are wiped when the snapshot is freed and never
 * printed by ap_conf_dump.
 */
#ifndef AP_CONF_H
#define AP_CONF_H

#include <stdio.h>

#include "ap_base.h"

/* --- Defaults (the one place they live; docs/configuration.md repeats them) ------------------ */

#define AP_CONF_DEFAULT_LISTEN "127.0.0.1:3128" /* loopback: never an open proxy by default */
#define AP_CONF_DEFAULT_ADMIN "127.0.0.1:9090"
#define AP_CONF_DEFAULT_INJECT_HEADER "Authorization"
#define AP_CONF_DEFAULT_INJECT_VALUE "{token_type} {token}" /* auth/ renders "Bearer" */
#define AP_CONF_DEFAULT_TOKEN_TIMEOUT_MS 10000              /* token endpoint, per fetch */

/* limits.*: default, and the accepted range [min, max] (validated at load). */
#define AP_CONF_DEFAULT_MAX_HEAD (64 * 1024)    /* [1 KiB, 1 MiB] request head bytes */
#define AP_CONF_DEFAULT_MAX_HEADERS 100         /* [1, 100]: the parser's fixed table */
#define AP_CONF_DEFAULT_MAX_BODY 0              /* [0, 2^50]: 0 = unlimited */
#define AP_CONF_DEFAULT_REPLAY_BODY (64 * 1024) /* [0, 16 MiB]: 0 = never replay */
#define AP_CONF_DEFAULT_MAX_CONNS 4096          /* [1, 1000000] */
#define AP_CONF_DEFAULT_HEAD_TIMEOUT_MS 30000   /* timeouts: [1 ms, 1 day] */
#define AP_CONF_DEFAULT_BODY_TIMEOUT_MS 60000
#define AP_CONF_DEFAULT_IDLE_TIMEOUT_MS 60000
#define AP_CONF_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define AP_CONF_DEFAULT_RESPONSE_TIMEOUT_MS 60000
#define AP_CONF_DEFAULT_TUNNEL_IDLE_MS 300000
#define AP_CONF_DEFAULT_DRAIN_TIMEOUT_MS 10000 /* [0, 1 day]: 0 = close at once */
#define AP_CONF_DEFAULT_TOKEN_WAIT_MS 15000

/* One "host:port" address to bind. */
typedef struct ap_addr_conf_s {
    char *host; /* literal IP or name, "[::1]" brackets stripped */
    char *port; /* decimal */
} ap_addr_conf_t;

typedef struct ap_kv_s {
    char *name;
    char *value; /* may be secret when the config gave a secret form */
    /* Set for secret-bearing fields, values from {"env"}/{"file"}/${VAR}, and names that look
     * like credentials ("client_secret", "X-Api-Key", ...): never log or print these. */
    bool is_secret;
} ap_kv_t;

typedef struct ap_kvlist_s {
    ap_kv_t *items; /* owned */
    size_t n;
} ap_kvlist_t;

/* A custom provider's token request. */
typedef struct ap_custom_req_s {
    char *method; /* GET or POST */
    char *url;
    ap_kvlist_t headers; /* request headers */
    ap_kvlist_t query;   /* appended to the URL, form-encoded */
    ap_kvlist_t form;    /* application/x-www-form-urlencoded body */
    ap_kvlist_t json;    /* flat JSON object body, string values */
    char *basic_user;    /* HTTP Basic client auth, when set */
    char *basic_pass;    /* secret */
} ap_custom_req_t;

/* A credential. `provider` is one of: static, oauth2, custom, omicall, antsomi, telmai, manis,
 * micovoice. Scalar provider fields (token_url, client_id, client_secret, api_key, ...) are kept
 * by name in `fields` so conf/ validates which fields each provider takes and auth/ interprets
 * them; secret-bearing ones have is_secret set. */
typedef struct ap_cred_conf_s {
    char *name;
    char *provider;
    ap_kvlist_t fields; /* scalar fields by name, secrets resolved */
    char **scope;       /* "scope" as a list (array given, or a string split on ' ' / ',') */
    size_t nscope;
    ap_kvlist_t params;  /* oauth2 "params": extra token-request parameters */
    ap_kvlist_t headers; /* "headers": extra fixed headers on every API call */
    char *inject_header; /* default "Authorization" */
    char *inject_value;  /* template; {token} and {token_type}; default "{token_type} {token}" */
    bool prefetch;
    int64_t default_ttl_s; /* 0 = none stated */
    int64_t timeout_ms;    /* token endpoint timeout; default 10000 */

    /* provider "custom" only (NULL/empty otherwise): the token request template, an optional
     * template for renewing with a refresh token ("{refresh_token}" in its values is replaced),
     * ... */
    struct {
        ap_custom_req_t req;
        ap_custom_req_t refresh; /* valid when has_refresh */
        bool has_refresh;
        /* ... and where the answer is (RFC 6901 JSON pointers; NULL = absent) */
        char *token_ptr;
        char *type_ptr;
        char *expires_in_ptr; /* relative seconds */
        char *expires_at_ptr; /* absolute: ISO-8601 string or epoch s/ms integer */
        char *refresh_ptr;
        char *success_ptr;    /* the response is a success only if this pointer ... */
        char *success_equals; /* ... renders to this (numbers rendered as integers), or exists
                                 when success_equals is NULL */
    } custom;

    /* hex SHA-256 over every setting including secrets (not the name), keyed with a random
     * per-process salt so a digest that leaks into a log cannot be brute-forced offline: compare
     * digests within one process only (reload does). */
    char *digest;
} ap_cred_conf_t;

typedef struct ap_route_conf_s {
    char *host;                 /* exact "api.x.com", wildcard "*.x.com", or NULL (base-URL mode) */
    int port;                   /* 0 = any */
    char *path;                 /* prefix, or NULL */
    char *upstream;             /* base URL: scheme://host[:port][/path] */
    char *credential;           /* name or NULL */
    const ap_cred_conf_t *cred; /* borrowed: resolved `credential`, lives as long as the conf */
    /* upstream, parsed */
    bool up_tls;
    char *up_host;
    int up_port;
    char *up_path; /* "" or "/base": never ends with "/" ("https://x/v2/" gives "/v2") */
    char *label;   /* for logs and metrics: "host[:port][path]", or "path" (base-URL mode) */
} ap_route_conf_t;

typedef struct ap_connect_to_s {
    char *from; /* "host:port" */
    char *to;   /* "addr:port" */
} ap_connect_to_t;

typedef struct ap_user_s {
    char *name;
    char *password; /* secret */
} ap_user_t;

typedef struct ap_conf_s {
    int refcnt;
    char *path; /* file it came from, or NULL */

    ap_addr_conf_t *listen;
    size_t nlisten;
    ap_addr_conf_t *admin;
    size_t nadmin;

    char *ca_file; /* tls.ca_file; NULL = system default bundle */
    ap_connect_to_t *connect_to;
    size_t nconnect_to;
    char *outbound_proxy;   /* "outbound_proxy": explicit proxy URL for outbound, or NULL */
    bool unmatched_forward; /* "unmatched": "forward" (true) or "deny" (false, default) */

    ap_cred_conf_t *creds;
    size_t ncreds;
    ap_route_conf_t *routes;
    size_t nroutes;

    /* "client_auth": shared egress proxy */
    ap_user_t *users; /* Proxy-Authorization: Basic users */
    size_t nusers;
    char **allow_cidrs; /* source allowlist, e.g. "10.0.0.0/8" */
    size_t nallow;
    bool allow_public_without_auth; /* "insecure_allow_unauthenticated" */

    /* "limits" (all have defaults) */
    struct {
        size_t max_head;             /* 64 KiB */
        size_t max_headers;          /* 100 */
        uint64_t max_body;           /* request body cap, 0 = unlimited (default 0) */
        size_t replay_body;          /* bodies up to this are kept for a 401 replay: 64 KiB */
        size_t max_conns;            /* 4096 */
        int64_t head_timeout_ms;     /* 30 s */
        int64_t body_timeout_ms;     /* 60 s: idle time between body reads */
        int64_t idle_timeout_ms;     /* 60 s keep-alive idle */
        int64_t connect_timeout_ms;  /* 10 s */
        int64_t response_timeout_ms; /* 60 s to first response byte */
        int64_t tunnel_idle_ms;      /* 300 s */
        int64_t drain_timeout_ms;    /* 10 s on SIGTERM */
        int64_t token_wait_ms;       /* 15 s: longest a request waits for a token */
    } limits;

    char *log_level;    /* "error", "warn", "info" (default, never NULL) or "debug" */
    bool log_json;      /* "log_format": "json" (default) or "text" */
    bool allow_connect; /* "connect": true (default): CONNECT to routed hosts */
    bool fast_path;     /* "upstream_fast_path": true (default): own HTTP/1.1 keep-alive */
} ap_conf_t;

/* Loads and validates. On success returns a snapshot with refcount 1 (err set to ""). On failure
 * returns NULL and writes every error, one per line ("<path>: <json.path>: expected ..., got
 * ..."; JSON syntax errors as "<path>:<line>:<col>: JSON syntax error ..."), into err, cut at a
 * line boundary with "(N more errors not shown)" when errlen is short, always NUL-terminated;
 * err may be NULL. Never writes a secret value into err. `name` (buffer) is the file name used
 * in messages. The text and any copies of secrets are wiped before being freed. */
ap_conf_t *ap_conf_load_file(const char *path, char *err, size_t errlen) AP_COLD;
ap_conf_t *ap_conf_load_buffer(const char *json, size_t len, const char *name, char *err,
                               size_t errlen) AP_COLD;

ap_conf_t *ap_conf_ref(ap_conf_t *c);
void ap_conf_unref(ap_conf_t *c); /* NULL-safe; frees (wiping secrets) at zero */

/* What --check prints: listeners, routes and credentials with their non-secret settings;
 * secrets appear as "(secret)". */
void ap_conf_dump(const ap_conf_t *c, FILE *out) AP_COLD;

/* Environment-only configuration for the simplest sidecar (docs/configuration.md "Env-only
 * mode"): builds the same snapshot from AUTHPROXY_* variables (one upstream, one credential named
 * "default"), through the same validator; each error also names the variable. Returns NULL with
 * *used = false when AUTHPROXY_UPSTREAM is unset; NULL with *used = true and err on an
 * incomplete or invalid set. */
ap_conf_t *ap_conf_load_env(bool *used, char *err, size_t errlen) AP_COLD;

/* Splits an http(s) base URL: scheme case-insensitive, host lowercased (IPv6 literals without
 * brackets), port defaulted by scheme (80/443), path without trailing slashes (may be "").
 * AP_ERR on other schemes, userinfo, a query or fragment, ports outside 1..65535, bad host or
 * path characters; then nothing is allocated. Every output pointer may be NULL (not wanted);
 * *host and *path are owned by the caller. */
ap_rc_t ap_conf_parse_url(const char *url, bool *tls, char **host, int *port, char **path);

/* Sets c->limits to the defaults above (for snapshots built by hand, e.g. in tests). */
void ap_conf_default_limits(ap_conf_t *c);

/* The canonical "host:port" of connect_to keys and values: IPv6 literals in brackets and in
 * their shortest form ("[0:0::1]" gives "[::1]:443"). Truncated to n - 1 bytes (hosts are at
 * most 255). */
void ap_conf_hostport(char *dst, size_t n, const char *host, int port);

/* connect_to applied to host:port (curl's --connect-to): where to connect instead, brackets
 * removed from an IPv6 address; host and port unchanged when no entry matches (or the address
 * would not fit in hlen). */
void ap_conf_connect_to(const ap_conf_t *c, const char *host, int port, char *out_host, size_t hlen,
                        int *out_port);

/* Field lookup on a credential: value or NULL. */
const char *ap_cred_conf_get(const ap_cred_conf_t *c, const char *field);
const ap_cred_conf_t *ap_conf_find_cred(const ap_conf_t *c, const char *name);

#endif
