#include "ap_base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static AP_COLD void
oom(size_t n)
{
    fprintf(stderr, "authproxy: out of memory allocating %zu bytes\n", n);
    abort();
}

void *
ap_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *
ap_xcalloc(size_t nmemb, size_t size)
{
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (p == NULL)
        oom(nmemb * size);
    return p;
}

void *
ap_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *
ap_xstrdup(const char *s)
{
    return ap_xstrndup(s, strlen(s));
}

char *
ap_xstrndup(const char *s, size_t n)
{
    char *p = ap_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *
ap_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *p = ap_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void
ap_fmt_trunc(char *dst, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(dst, n, fmt, ap) < 0 && n > 0)
        dst[0] = '\0';
    va_end(ap);
}

/* A volatile function pointer keeps the compiler from proving the memset dead. */
static void *(*const volatile wipe_fn)(void *, int, size_t) = memset;

void
ap_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        wipe_fn(p, 0, n);
}

void
ap_free_secret(char *s)
{
    if (s == NULL)
        return;
    ap_wipe(s, strlen(s));
    free(s);
}

void
ap_ascii_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + ('a' - 'A'));
}

bool
ap_memieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y + 32);
        if (x != y)
            return false;
    }
    return true;
}

uint64_t
ap_now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t
ap_now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ap_rc_t
ap_buf_append(ap_buf_t *b, const void *p, size_t n)
{
    if (b->max && (n > b->max || b->len > b->max - n))
        return AP_ERR;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (b->secret && b->data != NULL) {
            /* realloc would leave the old copy in freed memory. */
            char *grown = ap_xmalloc(cap);
            memcpy(grown, b->data, b->len + 1);
            ap_wipe(b->data, b->cap);
            free(b->data);
            b->data = grown;
        } else {
            b->data = ap_xrealloc(b->data, cap);
        }
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return AP_OK;
}

ap_rc_t
ap_buf_cat(ap_buf_t *b, ...)
{
    va_list ap;
    ap_rc_t rc = AP_OK;
    va_start(ap, b);
    for (const char *s = va_arg(ap, const char *); s != NULL && rc == AP_OK;
         s = va_arg(ap, const char *))
        rc = ap_buf_append(b, s, strlen(s));
    va_end(ap);
    return rc;
}

ap_rc_t
ap_buf_append_dec(ap_buf_t *b, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    return ap_buf_append(b, tmp + i, sizeof(tmp) - i);
}

ap_rc_t
ap_buf_appendf(ap_buf_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return AP_ERR;
    if ((size_t)n < sizeof(small))
        return ap_buf_append(b, small, (size_t)n);
    char *big = ap_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    ap_rc_t rc = ap_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void
ap_buf_reset(ap_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void
ap_buf_free(ap_buf_t *b, bool secret)
{
    if (b->data && secret)
        ap_wipe(b->data, b->cap);
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
