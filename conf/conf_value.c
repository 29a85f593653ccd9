/*
 * conf_value.c: the small vocabulary the loader is written in: error collection with JSON paths,
 * typed getters, ${VAR} expansion, the three secret forms, and the syntax of URLs, addresses and
 * header fields.
 *
 * Secrets are assembled in buffers that are wiped whenever they grow or are dropped, so resolving
 * a secret leaves no stray copy on the heap; messages describe secrets, never quote them.
 */
#include "conf_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- Wiping string builder -------------------------------------------------------------------- */

typedef struct sbuf_s {
    char *p; /* owned; NUL-terminated when non-NULL */
    size_t len, cap;
} sbuf_t;

static void
sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        /* Not realloc: the old block may be released unwiped. */
        char *q = ap_xmalloc(cap);
        if (b->len > 0)
            memcpy(q, b->p, b->len);
        if (b->p != NULL) {
            ap_wipe(b->p, b->cap);
            free(b->p);
        }
        b->p = q;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static char *
sb_take(sbuf_t *b)
{
    if (b->p == NULL)
        sb_put(b, "", 0);
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static void
sb_drop(sbuf_t *b)
{
    if (b->p != NULL) {
        ap_wipe(b->p, b->cap);
        free(b->p);
    }
    b->p = NULL;
    b->len = b->cap = 0;
}

/* Reads a whole file into wiping memory. NULL with *why (static or strerror) on failure. */
static char *
read_file(const char *file, size_t max, size_t *len, const char **why)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        *why = strerror(errno);
        return NULL;
    }
    struct stat st;
    bool have_st = fstat(fd, &st) == 0;
    if (have_st && S_ISDIR(st.st_mode)) {
        close(fd);
        *why = "it is a directory";
        return NULL;
    }
    sbuf_t b = {0};
    /* Sized once up front: growing by copies would leave parts of the content behind. */
    if (have_st && S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size <= max) {
        b.cap = (size_t)st.st_size + 1;
        b.p = ap_xmalloc(b.cap);
        b.p[0] = '\0';
    }
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            *why = strerror(errno);
            break;
        }
        if (n == 0) {
            *why = NULL;
            break;
        }
        if (b.len + (size_t)n > max) {
            *why = "the file is too large";
            break;
        }
        sb_put(&b, chunk, (size_t)n);
    }
    ap_wipe(chunk, sizeof(chunk));
    close(fd);
    if (*why != NULL) {
        sb_drop(&b);
        return NULL;
    }
    *len = b.len;
    return sb_take(&b);
}

char *
ap_conf__read_file(const char *file, size_t max, size_t *len, const char **why)
{
    return read_file(file, max, len, why);
}

void
ap_conf__free_text(char *p, size_t len)
{
    if (p != NULL) {
        ap_wipe(p, len);
        free(p);
    }
}

/* --- Errors and paths ------------------------------------------------------------------------- */

/* Env-only mode: the variable behind the longest hint path that prefixes `path`. */
static const char *
hint_for(const ap_conf__ctx_t *x, const char *path)
{
    const char *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < x->nhints; i++) {
        size_t n = strlen(x->hints[i].path);
        if (strncmp(path, x->hints[i].path, n) != 0)
            continue;
        if (path[n] != '\0' && path[n] != '.' && path[n] != '[')
            continue;
        if (best == NULL || n > best_len) {
            best = x->hints[i].vars;
            best_len = n;
        }
    }
    return best;
}

void
ap_conf__err(ap_conf__ctx_t *x, const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *var = hint_for(x, path);
    ap_buf_appendf(&x->errs, "%s%s: %s%s%s%s: %s", x->nerr ? "\n" : "", x->file,
                   path[0] ? path : "(document)", var ? " (" : "", var ? var : "", var ? ")" : "",
                   msg);
    x->nerr++;
}

static bool
plain_key(const char *k)
{
    if (*k == '\0')
        return false;
    for (; *k; k++) {
        unsigned char c = (unsigned char)*k;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

void
ap_conf__path_key(char *out, const char *base, const char *key)
{
    if (plain_key(key)) {
        snprintf(out, AP_CONF_PATH_MAX, "%s%s%s", base, base[0] ? "." : "", key);
        return;
    }
    /* Keys with dots, colons or quotes: bracket notation keeps the path unambiguous. */
    char esc[200]; /* a key excerpt: enough to recognise it */
    size_t k = 0;
    for (const char *p = key; *p && k + 5 < sizeof(esc); p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)snprintf(esc + k, sizeof(esc) - k, "\\x%02x", c);
        } else {
            esc[k++] = (char)c;
        }
    }
    esc[k] = '\0';
    snprintf(out, AP_CONF_PATH_MAX, "%s[\"%s\"]", base, esc);
}

void
ap_conf__path_idx(char *out, const char *base, size_t i)
{
    snprintf(out, AP_CONF_PATH_MAX, "%s[%zu]", base, i);
}

const char *
ap_conf__type(const cJSON *j)
{
    if (j == NULL)
        return "nothing";
    if (cJSON_IsString(j))
        return "a string";
    if (cJSON_IsNumber(j))
        return "a number";
    if (cJSON_IsBool(j))
        return "a boolean";
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsArray(j))
        return "an array";
    if (cJSON_IsObject(j))
        return "an object";
    return "an unknown JSON value";
}

/* An integer a double holds exactly (|v| < 2^53); false for NaN and infinities. The range test
 * comes first so the cast is always defined. */
static bool
integral(double v)
{
    return v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(long long)v;
}

/* A quoted, escaped excerpt of a non-secret string. */
static void
quote(const char *s, char *out, size_t n)
{
    /* Long values are cut: the path already says where to look. */
    const size_t max_shown = 60;
    size_t k = 0, shown = 0;
    if (n < 8) {
        snprintf(out, n, "\"\"");
        return;
    }
    out[k++] = '"';
    for (const char *p = s; *p && k + 8 < n; p++) {
        unsigned char c = (unsigned char)*p;
        if (shown++ == max_shown) {
            k += (size_t)snprintf(out + k, n - k, "...");
            break;
        }
        if (c == '"' || c == '\\') {
            out[k++] = '\\';
            out[k++] = (char)c;
        } else if (c == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else if (c == '\r') {
            out[k++] = '\\';
            out[k++] = 'r';
        } else if (c < 0x20 || c == 0x7f) {
            k += (size_t)snprintf(out + k, n - k, "\\x%02x", c);
        } else {
            out[k++] = (char)c;
        }
    }
    out[k++] = '"';
    out[k] = '\0';
}

void
ap_conf__got(const cJSON *j, bool secret, char *out, size_t n)
{
    if (cJSON_IsString(j) && secret) {
        snprintf(out, n, "(secret)");
    } else if (cJSON_IsString(j)) {
        quote(j->valuestring, out, n);
    } else if (cJSON_IsNumber(j) && !secret) {
        double v = j->valuedouble;
        if (integral(v))
            snprintf(out, n, "%lld", (long long)v);
        else
            snprintf(out, n, "%g", v);
    } else if (cJSON_IsBool(j) && !secret) {
        snprintf(out, n, "%s", cJSON_IsTrue(j) ? "true" : "false");
    } else {
        snprintf(out, n, "%s%s", ap_conf__type(j), secret && j != NULL ? " (secret)" : "");
    }
}

/* Levenshtein distance of two short ASCII strings, case-insensitive; SIZE_MAX when too long. */
static size_t
distance(const char *a, const char *b)
{
    enum { MAXK = 48 };
    size_t la = strlen(a), lb = strlen(b);
    if (la >= MAXK || lb >= MAXK)
        return SIZE_MAX;
    size_t prev[MAXK], cur[MAXK];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            int ca = a[i - 1] >= 'A' && a[i - 1] <= 'Z' ? a[i - 1] + 32 : a[i - 1];
            int cb = b[j - 1] >= 'A' && b[j - 1] <= 'Z' ? b[j - 1] + 32 : b[j - 1];
            size_t best = prev[j - 1] + (ca != cb);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

static void
unknown_key(ap_conf__ctx_t *x, const char *path, const char *key, const char *const *allowed)
{
    ap_buf_t list = {0};
    const char *near = NULL;
    size_t best = SIZE_MAX;
    for (const char *const *a = allowed; *a; a++) {
        ap_buf_appendf(&list, "%s%s", a == allowed ? "" : ", ", *a);
        size_t d = distance(key, *a);
        /* Close enough to be a typo: at most 2 edits, and fewer than a third of the word. */
        if (d < best && d <= 2 && d * 3 <= strlen(*a)) {
            best = d;
            near = *a;
        }
    }
    char got[128];
    quote(key, got, sizeof(got));
    if (near != NULL)
        ap_conf__err(x, path, "expected one of %s, got unknown key %s (did you mean \"%s\"?)",
                     list.data ? list.data : "", got, near);
    else
        ap_conf__err(x, path, "expected one of %s, got unknown key %s", list.data ? list.data : "",
                     got);
    ap_buf_free(&list, false);
}

void
ap_conf__check_keys(ap_conf__ctx_t *x, const cJSON *j, const char *path, const char *const *allowed)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        bool ok = false;
        for (const char *const *a = allowed; *a && !ok; a++)
            ok = strcmp(*a, it->string) == 0;
        if (!ok) {
            char p[AP_CONF_PATH_MAX];
            ap_conf__path_key(p, path, it->string);
            unknown_key(x, p, it->string, allowed);
        }
    }
}

bool
ap_conf__object(ap_conf__ctx_t *x, const cJSON *j, const char *path, const char *what,
                const char *const *allowed)
{
    if (!cJSON_IsObject(j)) {
        char got[128];
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, path, "expected %s, got %s", what, got);
        return false;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, j)
    {
        /* cJSON keeps both copies of a repeated key and lookups find the first: a second
         * "insecure_allow_unauthenticated" or "token_url" would be silently ignored. */
        for (const cJSON *prev = j->child; prev != it; prev = prev->next) {
            if (strcmp(prev->string, it->string) == 0) {
                char p[AP_CONF_PATH_MAX];
                ap_conf__path_key(p, path, it->string);
                ap_conf__err(x, p, "expected each key once, got a repeated key");
                break;
            }
        }
    }
    if (allowed != NULL)
        ap_conf__check_keys(x, j, path, allowed);
    return true;
}

/* --- ${VAR} ------------------------------------------------------------------------------------
 */

static bool
var_name_char(char c, bool first)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
           (!first && c >= '0' && c <= '9');
}

char *
ap_conf__expand(ap_conf__ctx_t *x, const char *path, const char *s, bool *used_var)
{
    sbuf_t b = {0};
    if (used_var != NULL)
        *used_var = false;
    const char *p = s;
    while (*p) {
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            sb_put(&b, "${", 2);
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            size_t n = strcspn(p + 1, "$") + 1;
            sb_put(&b, p, n);
            p += n;
            continue;
        }
        const char *name = p + 2, *q = name;
        while (var_name_char(*q, q == name))
            q++;
        size_t nlen = (size_t)(q - name);
        const char *def = NULL;
        size_t dlen = 0;
        if (nlen > 0 && q[0] == ':' && q[1] == '-') {
            def = q + 2;
            dlen = strcspn(def, "}");
            q = def + dlen;
        }
        /* The text of a malformed reference is not echoed: it may sit inside a literal secret. */
        if (nlen == 0 || *q != '}' || nlen > 255) {
            ap_conf__err(x, path,
                         "expected ${NAME} or ${NAME:-default} (NAME: letters, digits, '_'), "
                         "got a malformed \"${\" reference");
            sb_drop(&b);
            return NULL;
        }
        char var[256];
        memcpy(var, name, nlen);
        var[nlen] = '\0';
        const char *v = getenv(var);
        if (used_var != NULL)
            *used_var = true;
        if (v == NULL || (def != NULL && *v == '\0')) {
            if (def == NULL) {
                ap_conf__err(x, path,
                             "expected environment variable %s to be set (or a default: "
                             "${%s:-value}), got unset",
                             var, var);
                sb_drop(&b);
                return NULL;
            }
            sb_put(&b, def, dlen);
        } else {
            sb_put(&b, v, strlen(v));
        }
        p = q + 1;
    }
    return sb_take(&b);
}

/* --- Getters --------------------------------------------------------------------------------- */

static bool
has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

char *
ap_conf__str(ap_conf__ctx_t *x, const cJSON *j, const char *path, unsigned flags)
{
    char got[128];
    if (!cJSON_IsString(j)) {
        ap_conf__got(j, false, got, sizeof(got));
        ap_conf__err(x, path, "expected a string, got %s", got);
        return NULL;
    }
    char *v = ap_conf__expand(x, path, j->valuestring, NULL);
    if (v == NULL)
        return NULL;
    if ((flags & AP_CONF_NONEMPTY) && v[0] == '\0') {
        ap_conf__err(x, path, "expected a non-empty string, got \"\"%s",
                     strstr(j->valuestring, "${") ? " (after ${VAR} expansion)" : "");
        free(v);
        return NULL;
    }
    if ((flags & AP_CONF_NOCTL) && has_ctl(v)) {
        quote(v, got, sizeof(got));
        ap_conf__err(x, path, "expected a string without control characters (CR, LF, ...), got %s",
                     got);
        free(v);
        return NULL;
    }
    return v;
}

static char *
secret_file(ap_conf__ctx_t *x, const char *path, const char *file)
{
    const char *why = NULL;
    size_t len = 0;
    char *v = read_file(file, AP_CONF_MAX_SECRET_FILE, &len, &why);
    if (v == NULL) {
        ap_conf__err(x, path, "expected a readable secret file, got \"%s\" (%s)", file, why);
        return NULL;
    }
    /* `echo secret > file` adds one newline that is not part of the secret (and CRLF editors). */
    if (len > 0 && v[len - 1] == '\n')
        v[--len] = '\0';
    if (len > 0 && v[len - 1] == '\r')
        v[--len] = '\0';
    const char *bad = NULL;
    if (len == 0)
        bad = "it is empty";
    else if (strlen(v) != len)
        bad = "it contains a NUL byte";
    if (bad != NULL) {
        ap_conf__err(x, path, "expected a non-empty text secret file, got \"%s\" (%s)", file, bad);
        ap_wipe(v, len);
        free(v);
        return NULL;
    }
    return v;
}

char *
ap_conf__secret(ap_conf__ctx_t *x, const cJSON *j, const char *path, bool *indirect)
{
    static const char *const keys[] = {"env", "file", NULL};
    static const char forms[] = "a string, {\"env\": \"VAR\"} or {\"file\": \"PATH\"}";
    bool ind = false;
    char *v = NULL;
    if (indirect != NULL)
        *indirect = false;
    if (cJSON_IsString(j)) {
        v = ap_conf__expand(x, path, j->valuestring, &ind);
        if (v == NULL)
            return NULL;
    } else if (cJSON_IsObject(j)) {
        ind = true;
        if (!ap_conf__object(x, j, path, forms, keys))
            return NULL;
        const cJSON *env = cJSON_GetObjectItemCaseSensitive(j, "env");
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(j, "file");
        char p[AP_CONF_PATH_MAX];
        if ((env == NULL) == (file == NULL)) {
            ap_conf__err(x, path, "expected exactly one of \"env\" or \"file\", got %s",
                         env ? "both" : "neither");
            return NULL;
        }
        if (env != NULL) {
            ap_conf__path_key(p, path, "env");
            const char *name = cJSON_IsString(env) ? env->valuestring : "";
            bool ok = *name != '\0';
            for (const char *q = name; *q && ok; q++)
                ok = var_name_char(*q, q == name);
            if (!ok) {
                char got[128];
                ap_conf__got(env, false, got, sizeof(got));
                ap_conf__err(x, p, "expected an environment variable name, got %s", got);
                return NULL;
            }
            const char *ev = getenv(name);
            if (ev == NULL) {
                ap_conf__err(x, path, "expected environment variable %s to be set, got unset",
                             name);
                return NULL;
            }
            if (*ev == '\0') {
                ap_conf__err(x, path,
                             "expected environment variable %s to hold a secret, got an empty "
                             "value",
                             name);
                return NULL;
            }
            v = ap_xstrdup(ev);
        } else {
            ap_conf__path_key(p, path, "file");
            char *fp = ap_conf__str(x, file, p, AP_CONF_NONEMPTY | AP_CONF_NOCTL);
            if (fp == NULL)
                return NULL;
            v = secret_file(x, path, fp);
            free(fp);
            if (v == NULL)
                return NULL;
        }
    } else {
        ap_conf__err(x, path, "expected %s, got %s", forms, ap_conf__type(j));
        return NULL;
    }
    if (v[0] == '\0') {
        ap_conf__err(x, path, "expected a non-empty secret, got an empty string");
        free(v);
        return NULL;
    }
    /* A line break in a secret ends up in a header or a form field: never what was meant. */
    if (strpbrk(v, "\r\n") != NULL) {
        ap_conf__err(x, path, "expected a secret on one line, got (secret) with a line break");
        ap_free_secret(v);
        return NULL;
    }
    if (indirect != NULL)
        *indirect = ind;
    return v;
}

static char *
render_number(double v)
{
    /* Integral values print as integers (3600, not 3600.0); auth/ renders responses alike. */
    if (integral(v))
        return ap_xasprintf("%lld", (long long)v);
    return ap_xasprintf("%.17g", v);
}

char *
ap_conf__kv_value(ap_conf__ctx_t *x, const cJSON *j, const char *path, bool *secret)
{
    *secret = false;
    if (cJSON_IsNumber(j))
        return render_number(j->valuedouble);
    if (cJSON_IsBool(j))
        return ap_xstrdup(cJSON_IsTrue(j) ? "true" : "false");
    if (cJSON_IsString(j)) /* "" is a legitimate parameter value here */
        return ap_conf__expand(x, path, j->valuestring, secret);
    if (cJSON_IsObject(j))
        return ap_conf__secret(x, j, path, secret);
    ap_conf__err(x, path,
                 "expected a string, number, boolean, {\"env\": \"VAR\"} or {\"file\": \"PATH\"}, "
                 "got %s",
                 ap_conf__type(j));
    return NULL;
}

/* Strict decimal: optional '-', digits only, no overflow. */
static bool
parse_dec(const char *s, int64_t *out)
{
    bool neg = *s == '-';
    if (neg)
        s++;
    if (*s == '\0')
        return false;
    int64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (INT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (*s - '0');
    }
    *out = neg ? -v : v;
    return true;
}

bool
ap_conf__int(ap_conf__ctx_t *x, const cJSON *j, const char *path, int64_t min, int64_t max,
             int64_t *out)
{
    char got[128];
    if (cJSON_IsString(j) && strstr(j->valuestring, "${") != NULL) {
        char *s = ap_conf__expand(x, path, j->valuestring, NULL);
        if (s == NULL)
            return false;
        int64_t v;
        bool ok = parse_dec(s, &v) && v >= min && v <= max;
        if (ok)
            *out = v;
        else
            quote(s, got, sizeof(got));
        free(s);
        if (ok)
            return true;
        ap_conf__err(x, path, "expected an integer from %lld to %lld, got %s", (long long)min,
                     (long long)max, got);
        return false;
    }
    if (cJSON_IsNumber(j)) {
        double v = j->valuedouble;
        if (integral(v) && v >= (double)min && v <= (double)max) {
            *out = (int64_t)v;
            return true;
        }
    }
    ap_conf__got(j, false, got, sizeof(got));
    ap_conf__err(x, path, "expected an integer from %lld to %lld, got %s", (long long)min,
                 (long long)max, got);
    return false;
}

bool
ap_conf__bool(ap_conf__ctx_t *x, const cJSON *j, const char *path, bool *out)
{
    if (cJSON_IsBool(j)) {
        *out = cJSON_IsTrue(j);
        return true;
    }
    char got[128];
    if (cJSON_IsString(j) && strstr(j->valuestring, "${") != NULL) {
        char *s = ap_conf__expand(x, path, j->valuestring, NULL);
        if (s == NULL)
            return false;
        bool ok = true;
        if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
            *out = true;
        else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
            *out = false;
        else
            ok = false;
        quote(s, got, sizeof(got));
        free(s);
        if (ok)
            return true;
    } else {
        ap_conf__got(j, false, got, sizeof(got));
    }
    ap_conf__err(x, path, "expected true or false, got %s", got);
    return false;
}

int
ap_conf__enum(ap_conf__ctx_t *x, const cJSON *j, const char *path, const char *const *names)
{
    char *v = ap_conf__str(x, j, path, 0);
    if (v == NULL)
        return -1;
    int found = -1;
    for (int i = 0; names[i] != NULL && found < 0; i++)
        if (strcmp(names[i], v) == 0)
            found = i;
    if (found < 0) {
        ap_buf_t list = {0};
        for (int i = 0; names[i] != NULL; i++)
            ap_buf_appendf(&list, "%s\"%s\"", i == 0 ? "" : names[i + 1] ? ", " : " or ", names[i]);
        char got[128];
        quote(v, got, sizeof(got));
        ap_conf__err(x, path, "expected %s, got %s", list.data ? list.data : "", got);
        ap_buf_free(&list, false);
    }
    free(v);
    return found;
}

/* --- Syntax: hosts, addresses, URLs ------------------------------------------------------------
 */

bool
ap_conf__valid_hostname(const char *h)
{
    size_t len = strlen(h), label = 0;
    /* RFC 1035 limits: 253 characters in all, 63 per label. */
    if (len == 0 || len > 253)
        return false;
    for (const char *p = h;; p++) {
        char c = *p;
        if (c == '.' || c == '\0') {
            if (label == 0 || label > 63)
                return false;
            if (c == '\0')
                return true;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
        label++;
    }
}

bool
ap_conf__is_ipv6(const char *h)
{
    unsigned char a[16];
    return inet_pton(AF_INET6, h, a) == 1;
}

static bool
parse_port(const char *s, size_t n, int min, int *out)
{
    if (n == 0 || n > 5)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > 65535)
        return false;
    *out = v;
    return true;
}

ap_rc_t
ap_conf__split_hostport(const char *s, int min_port, char **host, int *port, const char **why)
{
    const char *hs, *he, *ps;
    if (s[0] == '[') {
        hs = s + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':') {
            *why = "expected \"[IPv6]:port\"";
            return AP_ERR;
        }
        ps = he + 2;
    } else {
        he = strrchr(s, ':');
        if (he == NULL) {
            *why = "no \":port\"";
            return AP_ERR;
        }
        hs = s;
        ps = he + 1;
    }
    if (he == hs) {
        *why = "no host (0.0.0.0 or [::] means every address)";
        return AP_ERR;
    }
    int pt;
    if (!parse_port(ps, strlen(ps), min_port, &pt)) {
        *why = min_port == 0 ? "the port must be a number from 0 to 65535"
                             : "the port must be a number from 1 to 65535";
        return AP_ERR;
    }
    char *h = ap_xstrndup(hs, (size_t)(he - hs));
    ap_ascii_lower(h);
    bool ok = s[0] == '[' ? ap_conf__is_ipv6(h) : ap_conf__valid_hostname(h);
    if (!ok) {
        *why = s[0] != '[' && strchr(h, ':') ? "an IPv6 address needs brackets: \"[::1]:3128\""
                                             : "bad host name or address";
        free(h);
        return AP_ERR;
    }
    if (host != NULL)
        *host = h;
    else
        free(h);
    if (port != NULL)
        *port = pt;
    return AP_OK;
}

static bool
hexdig(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Path and query characters: visible ASCII except those RFC 3986 never allows unencoded, and
 * well-formed %XX escapes. */
static bool
valid_path_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`{|}", c) != NULL)
            return false;
        if (c == '%' && (i + 2 >= n || !hexdig(s[i + 1]) || !hexdig(s[i + 2])))
            return false;
    }
    return true;
}

ap_rc_t
ap_conf__parse_url(const char *url, bool allow_query, bool *tls, char **host, int *port,
                   char **path, const char **why)
{
    bool t;
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        t = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        t = false;
        p = url + 7;
    } else {
        *why = "the scheme must be http:// or https://";
        return AP_ERR;
    }
    size_t alen = strcspn(p, "/?#");
    const char *aend = p + alen;
    if (memchr(p, '@', alen) != NULL) {
        *why = "user:password@ is not allowed in the URL";
        return AP_ERR;
    }
    const char *hs = p, *he, *ps = NULL;
    if (*p == '[') {
        hs = p + 1;
        he = memchr(hs, ']', (size_t)(aend - hs));
        if (he == NULL || (he + 1 < aend && he[1] != ':')) {
            *why = "bad [IPv6] host";
            return AP_ERR;
        }
        if (he + 1 < aend)
            ps = he + 2;
    } else {
        he = memchr(p, ':', alen);
        if (he != NULL)
            ps = he + 1;
        else
            he = aend;
    }
    if (he == hs) {
        *why = "no host";
        return AP_ERR;
    }
    int pt = t ? 443 : 80;
    if (ps != NULL && !parse_port(ps, (size_t)(aend - ps), 1, &pt)) {
        *why = "the port must be a number from 1 to 65535";
        return AP_ERR;
    }
    char *h = ap_xstrndup(hs, (size_t)(he - hs));
    ap_ascii_lower(h);
    if (*p == '[' ? !ap_conf__is_ipv6(h) : !ap_conf__valid_hostname(h)) {
        *why = "bad host name";
        free(h);
        return AP_ERR;
    }
    const char *rest = aend;
    size_t plen = strcspn(rest, "?#");
    const char *q = rest + plen;
    const char *reason = NULL;
    if (strchr(q, '#') != NULL)
        reason = "a #fragment is not allowed";
    else if (*q == '?' && !allow_query)
        reason = "a ?query is not allowed in a base URL";
    else if (!valid_path_chars(rest, strlen(rest)))
        reason = "the path has a character that must be %-encoded";
    if (reason != NULL) {
        *why = reason;
        free(h);
        return AP_ERR;
    }
    /* A base path never ends with "/": the request path brings its own. */
    size_t keep = plen;
    while (keep > 0 && rest[keep - 1] == '/')
        keep--;
    if (tls != NULL)
        *tls = t;
    if (port != NULL)
        *port = pt;
    if (host != NULL)
        *host = h;
    else
        free(h);
    if (path != NULL) {
        if (*q == '?')
            *path = ap_xasprintf("%.*s%s", (int)plen, rest, q);
        else
            *path = ap_xstrndup(rest, keep);
    }
    return AP_OK;
}

ap_rc_t
ap_conf_parse_url(const char *url, bool *tls, char **host, int *port, char **path)
{
    const char *why;
    if (url == NULL)
        return AP_ERR;
    return ap_conf__parse_url(url, false, tls, host, port, path, &why);
}

char *
ap_conf__safe_url(const char *url)
{
    const char *auth = strstr(url, "://");
    auth = auth ? auth + 3 : url;
    size_t alen = strcspn(auth, "/?#");
    const char *at = NULL;
    for (const char *p = auth; p < auth + alen; p++)
        if (*p == '@')
            at = p;
    ap_buf_t b = {0};
    ap_buf_append(&b, url, (size_t)(auth - url));
    if (at != NULL) {
        ap_buf_append(&b, "***", 3);
        ap_buf_append(&b, at, (size_t)(auth + alen - at));
    } else {
        ap_buf_append(&b, auth, alen);
    }
    const char *rest = auth + alen;
    size_t plen = strcspn(rest, "?#");
    ap_buf_append(&b, rest, plen);
    if (rest[plen] == '?')
        ap_buf_append(&b, "?***", 4);
    return b.data;
}

/* --- Syntax: header fields ------------------------------------------------------------------ */

bool
ap_conf__valid_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        if (!ok)
            return false;
    }
    return true;
}

bool
ap_conf__valid_header_value(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

bool
ap_conf__reserved_header(const char *name)
{
    static const char *const reserved[] = {
        "host", "content-length", "transfer-encoding", "connection", "keep-alive",
        "te",   "trailer",        "upgrade",           "via",        NULL};
    /* Proxy-* headers are hop-by-hop for a proxy: removed on the way out, never added. */
    if (strncasecmp(name, "proxy-", 6) == 0)
        return true;
    for (const char *const *r = reserved; *r; r++)
        if (strcasecmp(*r, name) == 0)
            return true;
    return false;
}

bool
ap_conf__sensitive_name(const char *name)
{
    static const char *const words[] = {"secret", "passw",   "pwd",    "token",
                                        "key",    "auth",    "sign",   "credential",
                                        "cookie", "session", "assert", NULL};
    char low[128];
    snprintf(low, sizeof(low), "%s", name);
    ap_ascii_lower(low);
    for (const char *const *w = words; *w; w++)
        if (strstr(low, *w) != NULL)
            return true;
    return false;
}
