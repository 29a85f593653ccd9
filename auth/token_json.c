#include "token_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const cJSON *
ap_json_pointer(const cJSON *root, const char *ptr)
{
    if (ptr == NULL || root == NULL)
        return NULL;
    if (*ptr == '\0')
        return root;
    if (*ptr != '/')
        return NULL;
    const cJSON *cur = root;
    const char *p = ptr + 1;
    char seg[256];
    for (;;) {
        size_t k = 0;
        while (*p && *p != '/') {
            char c = *p++;
            if (c == '~') {
                if (*p == '0')
                    c = '~';
                else if (*p == '1')
                    c = '/';
                else
                    return NULL;
                p++;
            }
            if (k + 1 >= sizeof(seg))
                return NULL;
            seg[k++] = c;
        }
        seg[k] = '\0';
        if (cJSON_IsObject(cur)) {
            cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
        } else if (cJSON_IsArray(cur)) {
            if (k == 0 || (k > 1 && seg[0] == '0'))
                return NULL;
            long idx = 0;
            for (size_t i = 0; i < k; i++) {
                if (seg[i] < '0' || seg[i] > '9' || idx > 1000000)
                    return NULL;
                idx = idx * 10 + (seg[i] - '0');
            }
            cur = cJSON_GetArrayItem(cur, (int)idx);
        } else {
            return NULL;
        }
        if (cur == NULL)
            return NULL;
        if (*p == '\0')
            return cur;
        p++; /* skip '/' */
    }
}

bool
ap_json_scalar(const cJSON *j, char *out, size_t n)
{
    out[0] = '\0';
    if (cJSON_IsString(j)) {
        snprintf(out, n, "%s", j->valuestring);
    } else if (cJSON_IsNumber(j)) {
        double v = j->valuedouble;
        if (v == (double)(long long)v)
            snprintf(out, n, "%lld", (long long)v);
        else
            snprintf(out, n, "%.17g", v);
    } else if (cJSON_IsBool(j)) {
        snprintf(out, n, "%s", cJSON_IsTrue(j) ? "true" : "false");
    } else {
        return false;
    }
    return true;
}

static int
digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return -1;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (Howard Hinnant's
 * days_from_civil): no timegm(), no TZ environment games. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

ap_rc_t
ap_parse_iso8601(const char *s, int64_t *epoch_ms)
{
    int y, mo, d, h = 0, mi = 0, sec = 0;
    const char *p = s;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' || digits(&p, 2, &d))
        return AP_ERR;
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return AP_ERR;
    int64_t ms = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return AP_ERR;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return AP_ERR;
            if (*p == '.' || *p == ',') {
                p++;
                int scale = 100, nd = 0;
                while (*p >= '0' && *p <= '9') {
                    if (nd < 3)
                        ms += (*p - '0') * scale;
                    scale /= 10;
                    nd++;
                    p++;
                }
                if (nd == 0)
                    return AP_ERR;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return AP_ERR;
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        int oh, om = 0;
        p++;
        if (digits(&p, 2, &oh))
            return AP_ERR;
        if (*p == ':')
            p++;
        if (*p >= '0' && *p <= '9' && digits(&p, 2, &om))
            return AP_ERR;
        offset_min = sign * (oh * 60 + om);
    }
    if (*p != '\0')
        return AP_ERR;
    int64_t days = days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    *epoch_ms = secs * 1000 + ms;
    return AP_OK;
}

int64_t
ap_epoch_to_ms(double v)
{
    /* 1e11 seconds is the year 5138; 1e11 milliseconds is 1973. */
    if (v > 1e11)
        return (int64_t)v;
    return (int64_t)(v * 1000.0);
}

static int
b64url_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-' || c == '+')
        return 62;
    if (c == '_' || c == '/')
        return 63;
    return -1;
}

ap_rc_t
ap_jwt_exp_ms(const char *token, int64_t *epoch_ms)
{
    const char *d1 = strchr(token, '.');
    if (d1 == NULL)
        return AP_ERR;
    const char *d2 = strchr(d1 + 1, '.');
    if (d2 == NULL || d2 - d1 - 1 > 16384)
        return AP_ERR;
    ap_buf_t out = {0};
    unsigned acc = 0;
    int bits = 0;
    for (const char *p = d1 + 1; p < d2; p++) {
        if (*p == '=')
            break;
        int v = b64url_val(*p);
        if (v < 0) {
            ap_buf_free(&out, false);
            return AP_ERR;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)((acc >> bits) & 0xff);
            ap_buf_append(&out, &ch, 1);
        }
    }
    ap_rc_t rc = AP_ERR;
    cJSON *j = out.data ? cJSON_ParseWithLength(out.data, out.len) : NULL;
    const cJSON *exp = j ? cJSON_GetObjectItemCaseSensitive(j, "exp") : NULL;
    if (cJSON_IsNumber(exp) && exp->valuedouble > 0) {
        *epoch_ms = (int64_t)(exp->valuedouble * 1000.0);
        rc = AP_OK;
    }
    cJSON_Delete(j);
    ap_buf_free(&out, true);
    return rc;
}

void
ap_form_encode(ap_buf_t *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '*') {
            ap_buf_append(b, p, 1);
        } else if (c == ' ') {
            ap_buf_append(b, "+", 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            ap_buf_append(b, e, 3);
        }
    }
}

void
ap_form_add(ap_buf_t *b, const char *name, const char *value)
{
    if (value == NULL)
        return;
    if (b->len > 0)
        ap_buf_append(b, "&", 1);
    ap_form_encode(b, name);
    ap_buf_append(b, "=", 1);
    ap_form_encode(b, value);
}
