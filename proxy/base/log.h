/*
 * log.h: level-checked logging. One JSON object per line on stderr (or plain text with
 * AP_LOG_TEXT), so container log collectors can parse it.
 *
 * The macro checks the level before any formatting. Never pass a token, secret or a full
 * Authorization/Proxy-Authorization value: there is no redaction layer behind this, by design
 * the callers simply do not have those strings at hand when they log.
 */
#ifndef AP_LOG_H
#define AP_LOG_H

#include "ap_base.h"

typedef enum { AP_LOG_ERROR = 0, AP_LOG_WARN, AP_LOG_INFO, AP_LOG_DEBUG } ap_log_level_t;

extern ap_log_level_t ap_log_level;

/* Parses "error|warn|info|debug"; AP_ERR on anything else. */
ap_rc_t ap_log_parse_level(const char *s, ap_log_level_t *out);
void ap_log_set_level(ap_log_level_t lvl);
/* true: one JSON object per line (default); false: "ts level msg" text. */
void ap_log_set_json(bool json);

void ap_log_write(ap_log_level_t lvl, const char *fmt, ...) AP_PRINTF(2, 3);

#define ap_log(lvl, ...)                                                                           \
    do {                                                                                           \
        if ((lvl) <= ap_log_level)                                                                 \
            ap_log_write((lvl), __VA_ARGS__);                                                      \
    } while (0)

#define ap_log_error(...) ap_log(AP_LOG_ERROR, __VA_ARGS__)
#define ap_log_warn(...) ap_log(AP_LOG_WARN, __VA_ARGS__)
#define ap_log_info(...) ap_log(AP_LOG_INFO, __VA_ARGS__)
#define ap_log_debug(...) ap_log(AP_LOG_DEBUG, __VA_ARGS__)

/* One access-log line: fields are already-safe strings (no secrets); NULL fields are omitted. */
typedef struct ap_access_s {
    uint64_t conn_id;
    const char *client; /* "ip:port" */
    const char *method;
    const char *host;  /* target host */
    const char *path;  /* path without query string: query strings may carry api keys */
    const char *route; /* route label or NULL */
    const char *credential;
    int status;
    uint64_t bytes_in, bytes_out;
    double duration_ms;
    const char *error; /* stable error code or NULL */
} ap_access_t;

void ap_log_access(const ap_access_t *a);

/* Appends s to b as JSON string contents (no quotes), escaping as RFC 8259 requires. */
void ap_json_escape(ap_buf_t *b, const char *s, size_t n);

#endif
