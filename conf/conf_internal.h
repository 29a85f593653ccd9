/*
 * conf_internal.h: what the conf_*.c files share and nothing outside conf/ may use.
 *
 * conf.c        loading, the top-level schema, listeners, routes, client_auth, limits, freeing
 * conf_value.c  error collection, typed getters, ${VAR} expansion, secret forms, URL and address
 *               syntax, header syntax
 * conf_cred.c   credentials: the provider schema table, custom requests, inject, digest
 * conf_dump.c   the --check listing
 * conf_env.c    the environment-only configuration
 *
 * Error messages follow one shape, "FILE: json.path: expected X, got Y", and never carry a
 * secret: getters told a value is secret describe it as "(secret)".
 */
#ifndef AP_CONF_INTERNAL_H
#define AP_CONF_INTERNAL_H

#include "conf.h"

#include <cjson/cJSON.h>

/* Longest JSON path kept in a message; deeper paths are truncated, never overflowed. */
#define AP_CONF_PATH_MAX 512
/* Secret files hold a key or a password: anything larger is a wrong path (a log, a binary). */
#define AP_CONF_MAX_SECRET_FILE (64 * 1024)
/* A config is hand-written JSON; a larger file is a mistake worth reporting. */
#define AP_CONF_MAX_FILE (4 * 1024 * 1024)

/* Env-only mode: errors on a JSON path the environment produced also name the variable. */
typedef struct ap_conf__hint_s {
    char *path; /* owned: JSON path, e.g. "credentials.default.client_id" */
    char *vars; /* owned: e.g. "AUTHPROXY_CLIENT_ID" */
} ap_conf__hint_t;

/* One load: where errors go. */
typedef struct ap_conf__ctx_s {
    const char *file; /* borrowed: the name put in front of every message */
    ap_buf_t errs;    /* every message, '\n'-separated */
    size_t nerr;
    const ap_conf__hint_t *hints; /* borrowed, may be NULL */
    size_t nhints;
} ap_conf__ctx_t;

void ap_conf__err(ap_conf__ctx_t *x, const char *path, const char *fmt, ...) AP_PRINTF(3, 4);

/* Paths: base + ".key" (or ["key"] when the key is not a plain identifier), base + "[i]". An
 * empty base gives just the key. Truncates at AP_CONF_PATH_MAX. */
void ap_conf__path_key(char *out, const char *base, const char *key);
void ap_conf__path_idx(char *out, const char *base, size_t i);

/* "a string", "an object", ... */
const char *ap_conf__type(const cJSON *j);
/* What was found, for "got ...": a quoted excerpt for strings ("(secret)" when secret), the number,
 * true/false, or the type. */
void ap_conf__got(const cJSON *j, bool secret, char *out, size_t n);

/* Object checks: j must be an object (else an error "expected <what>"); reports duplicate keys
 * and keys not in `allowed` (NULL-terminated; NULL = any key). False when j is not an object. */
bool ap_conf__object(ap_conf__ctx_t *x, const cJSON *j, const char *path, const char *what,
                     const char *const *allowed);
/* Only the unknown-key part, with a "did you mean" for near misses. */
void ap_conf__check_keys(ap_conf__ctx_t *x, const cJSON *j, const char *path,
                         const char *const *allowed);

/* Reads a whole file (at most max bytes) into memory that is wiped as it grows; NUL-terminated.
 * NULL with *why set (a static string) on failure. Free with ap_conf__free_text. */
char *ap_conf__read_file(const char *file, size_t max, size_t *len, const char **why);
void ap_conf__free_text(char *p, size_t len);

/* --- Typed getters: NULL/false after adding an error; the caller owns returned strings ------ */

#define AP_CONF_NONEMPTY 0x1u /* "" is an error */
#define AP_CONF_NOCTL 0x2u    /* control characters (CR, LF, NUL, ...) are an error */

/* A string value with ${VAR} expanded. */
char *ap_conf__str(ap_conf__ctx_t *x, const cJSON *j, const char *path, unsigned flags);
/* A secret: a string (literal or ${VAR}), {"env": "VAR"} or {"file": "PATH"}. Never empty,
 * never holds CR or LF. *indirect (may be NULL) is set when the value came from the environment
 * or a file. Free with ap_free_secret. */
char *ap_conf__secret(ap_conf__ctx_t *x, const cJSON *j, const char *path, bool *indirect);
/* A value for a name -> value table (headers, form, params): a secret form, or a number or
 * boolean rendered as text. *secret is set when it came from env/file/${VAR}. */
char *ap_conf__kv_value(ap_conf__ctx_t *x, const cJSON *j, const char *path, bool *secret);
/* An integer in [min, max]; a string is accepted only when it uses ${VAR}. */
bool ap_conf__int(ap_conf__ctx_t *x, const cJSON *j, const char *path, int64_t min, int64_t max,
                  int64_t *out);
/* true/false; a string is accepted only when it uses ${VAR} ("true", "false", "1", "0"). */
bool ap_conf__bool(ap_conf__ctx_t *x, const cJSON *j, const char *path, bool *out);
/* One of `names` (NULL-terminated): its index, or -1 after an error. */
int ap_conf__enum(ap_conf__ctx_t *x, const cJSON *j, const char *path, const char *const *names);

/* Expands ${VAR} and ${VAR:-default}; "$${" is a literal "${". NULL after an error. *used_var
 * (may be NULL) is set when a variable was referenced. The result is built in memory that is
 * wiped as it grows, so a secret leaves no copies behind. */
char *ap_conf__expand(ap_conf__ctx_t *x, const char *path, const char *s, bool *used_var);

/* --- Syntax ------------------------------------------------------------------------------------
 */

/* Like ap_conf_parse_url, with a reason for messages; a query string is kept in *path when
 * allow_query (token endpoints), rejected otherwise (base URLs). */
ap_rc_t ap_conf__parse_url(const char *url, bool allow_query, bool *tls, char **host, int *port,
                           char **path, const char **why);
/* A URL for a message or the dump: userinfo and query replaced by "***". Owned by the caller. */
char *ap_conf__safe_url(const char *url);
/* "host:port", "[v6]:port": host without brackets (lowercased), port in [min_port, 65535]. */
ap_rc_t ap_conf__split_hostport(const char *s, int min_port, char **host, int *port,
                                const char **why);
/* DNS name (letters, digits, '-', '_', dots between non-empty labels) or IPv4 literal. */
bool ap_conf__valid_hostname(const char *h);
bool ap_conf__is_ipv6(const char *h);
/* RFC 9110 token (header names). */
bool ap_conf__valid_token(const char *s);
/* A header value: no control character but tab. */
bool ap_conf__valid_header_value(const char *s);
/* Headers the proxy owns (framing, hop-by-hop, Host): not settable from the config. */
bool ap_conf__reserved_header(const char *name);
/* Names that suggest a credential ("secret", "password", "token", "key", ...): values under such
 * names are treated as secrets even when written literally. */
bool ap_conf__sensitive_name(const char *name);

/* --- Pieces of the snapshot --------------------------------------------------------------- */

void ap_conf__parse_credentials(ap_conf__ctx_t *x, const cJSON *j, ap_conf_t *c);
void ap_conf__cred_free(ap_cred_conf_t *c);
void ap_conf__kv_free(ap_kvlist_t *l);

/* The provider names, NULL-terminated, and the scalar fields a provider takes (for env mode). */
extern const char *const ap_conf__provider_names[];
typedef struct ap_conf__field_info_s {
    const char *name;
    bool secret;
} ap_conf__field_info_t;
/* Fills up to `max` fields of `provider`; returns how many (0 for an unknown provider). Also
 * reports whether the provider takes "scope" and "params". */
size_t ap_conf__provider_fields(const char *provider, ap_conf__field_info_t *out, size_t max,
                                bool *scope, bool *params);

/* The limits keys, for env mode: fills up to max, returns how many. */
size_t ap_conf__limit_keys(const char **out, size_t max);

/* The loader behind ap_conf_load_buffer, with env-mode hints. */
ap_conf_t *ap_conf__load(const char *json, size_t len, const char *name,
                         const ap_conf__hint_t *hints, size_t nhints, char *err, size_t errlen);

#endif
