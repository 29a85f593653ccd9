#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

ap_log_level_t ap_log_level = AP_LOG_INFO;
static bool log_json = true;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

ap_rc_t
ap_log_parse_level(const char *s, ap_log_level_t *out)
{
    for (size_t i = 0; i < AP_ARRAY_LEN(level_names); i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (ap_log_level_t)i;
            return AP_OK;
        }
    }
    return AP_ERR;
}

void
ap_log_set_level(ap_log_level_t lvl)
{
    ap_log_level = lvl;
}

void
ap_log_set_json(bool json)
{
    log_json = json;
}

void
ap_json_escape(ap_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
            continue;
        ap_buf_append(b, s + start, i - start);
        char esc[7] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            ap_buf_append(b, esc, 2);
        } else if (c == '\n') {
            ap_buf_append(b, "\\n", 2);
        } else {
            ap_buf_append(b, esc, 6);
        }
        start = i + 1;
    }
    ap_buf_append(b, s + start, n - start);
}

static void
timestamp(char *out, size_t n)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void
emit(ap_buf_t *b)
{
    ap_buf_append(b, "\n", 1);
    fwrite(b->data, 1, b->len, stderr);
    fflush(stderr);
    ap_buf_free(b, false);
}

void
ap_log_write(ap_log_level_t lvl, const char *fmt, ...)
{
    char msg[1024];
    char ts[40];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1;
    timestamp(ts, sizeof(ts));
    ap_buf_t b = {0};
    if (log_json) {
        ap_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[lvl]);
        ap_json_escape(&b, msg, len);
        ap_buf_append(&b, "\"}", 2);
    } else {
        ap_buf_appendf(&b, "%s %s %.*s", ts, level_names[lvl], (int)len, msg);
    }
    emit(&b);
}

static void
field_str(ap_buf_t *b, const char *k, const char *v)
{
    if (v == NULL)
        return;
    ap_buf_appendf(b, ",\"%s\":\"", k);
    ap_json_escape(b, v, strlen(v));
    ap_buf_append(b, "\"", 1);
}

void
ap_log_access(const ap_access_t *a)
{
    if (ap_log_level < AP_LOG_INFO)
        return;
    char ts[40];
    timestamp(ts, sizeof(ts));
    ap_buf_t b = {0};
    if (log_json) {
        ap_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"access\",\"conn\":%llu", ts,
                       (unsigned long long)a->conn_id);
        field_str(&b, "client", a->client);
        field_str(&b, "method", a->method);
        field_str(&b, "host", a->host);
        field_str(&b, "path", a->path);
        field_str(&b, "route", a->route);
        field_str(&b, "credential", a->credential);
        ap_buf_appendf(&b, ",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"ms\":%.3f",
                       a->status, (unsigned long long)a->bytes_in, (unsigned long long)a->bytes_out,
                       a->duration_ms);
        field_str(&b, "error", a->error);
        ap_buf_append(&b, "}", 1);
    } else {
        ap_buf_appendf(&b, "%s access conn=%llu %s %s %s%s %d %.3fms%s%s", ts,
                       (unsigned long long)a->conn_id, a->client ? a->client : "-",
                       a->method ? a->method : "-", a->host ? a->host : "", a->path ? a->path : "",
                       a->status, a->duration_ms, a->error ? " error=" : "",
                       a->error ? a->error : "");
    }
    emit(&b);
}
