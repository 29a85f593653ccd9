/*
 * ap_base.h: the one header every authproxy module includes first.
 *
 * Result codes, branch hints, container_of, an intrusive doubly linked list, the aborting
 * allocator family for small control structures, and secret wiping. Depends on nothing but libc.
 *
 * Out-of-memory policy: fixed-size control allocations go through ap_x*alloc, which abort with a
 * message (a proxy that cannot allocate 200 bytes cannot do anything useful). Anything whose size
 * a peer controls goes through a capped buffer and turns into 400/413/502 at the cap instead.
 */
#ifndef AP_BASE_H
#define AP_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef int ap_rc_t;
#define AP_OK 0
#define AP_ERR (-1)
#define AP_AGAIN (-2)    /* not finished; the callback will be called later */
#define AP_DECLINED (-3) /* not mine; try the next one */

#define AP_LIKELY(x) __builtin_expect(!!(x), 1)
#define AP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define AP_COLD __attribute__((cold))
#define AP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define AP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define ap_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* --- Intrusive list ------------------------------------------------------------------------ */

/* A node embedded in its owner. An unlinked node points at itself, so ap_list_remove is
 * idempotent and ap_list_is_linked is O(1). The head is a node of the same type. */
typedef struct ap_list_s {
    struct ap_list_s *prev, *next;
} ap_list_t;

static inline void
ap_list_init(ap_list_t *n)
{
    n->prev = n->next = n;
}

static inline bool
ap_list_empty(const ap_list_t *head)
{
    return head->next == head;
}

static inline bool
ap_list_is_linked(const ap_list_t *n)
{
    return n->next != n;
}

static inline void
ap_list_insert_tail(ap_list_t *head, ap_list_t *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

static inline void
ap_list_remove(ap_list_t *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

/* Moves every node of `from` to the (empty) `to`, leaving `from` empty. Used to detach a waiter
 * list before calling the waiters, so a callback may cancel or re-add freely. */
static inline void
ap_list_take(ap_list_t *to, ap_list_t *from)
{
    ap_list_init(to);
    if (ap_list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    ap_list_init(from);
}

/* --- Allocation ---------------------------------------------------------------------------- */

/* Abort with a message on failure; never return NULL. */
void *ap_xmalloc(size_t n);
void *ap_xcalloc(size_t nmemb, size_t size);
void *ap_xrealloc(void *p, size_t n);
char *ap_xstrdup(const char *s);
char *ap_xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *ap_xasprintf(const char *fmt, ...) AP_PRINTF(1, 2);
/* printf into a fixed buffer where cutting the text short is intended (diagnostics shown to
 * operators); always NUL-terminated when n > 0. */
void ap_fmt_trunc(char *dst, size_t n, const char *fmt, ...) AP_PRINTF(3, 4);

/* Overwrite n bytes in a way the compiler cannot drop (secrets, tokens). */
void ap_wipe(void *p, size_t n);
/* ap_wipe(s, strlen(s)) then free(s); NULL-safe. For heap strings holding secrets. */
void ap_free_secret(char *s);

/* Lowercases ASCII letters in place (host names). */
void ap_ascii_lower(char *s);

/* Case-insensitive ASCII compare of two length-delimited strings (header names). */
bool ap_memieq(const char *a, size_t alen, const char *b, size_t blen);

/* Monotonic and wall clocks in milliseconds. */
uint64_t ap_now_mono_ms(void);
int64_t ap_now_wall_ms(void);

/* --- Growable byte buffer (capped) --------------------------------------------------------- */

typedef struct ap_buf_s {
    char *data; /* owned; always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t max;  /* hard cap; 0 = unlimited (only for data we generate ourselves) */
    bool secret; /* growth wipes the old block before freeing it (tokens, kept bodies) */
} ap_buf_t;

/* Append; AP_ERR (buffer unchanged) when len + n would exceed b->max. */
ap_rc_t ap_buf_append(ap_buf_t *b, const void *p, size_t n);
ap_rc_t ap_buf_appendf(ap_buf_t *b, const char *fmt, ...) AP_PRINTF(2, 3);
/* Appends NUL-terminated strings up to a NULL argument: no format parsing (hot paths). */
ap_rc_t ap_buf_cat(ap_buf_t *b, ...) __attribute__((sentinel));
/* Appends v in decimal. */
ap_rc_t ap_buf_append_dec(ap_buf_t *b, uint64_t v);
void ap_buf_reset(ap_buf_t *b);
/* Frees the storage; wipes it first when `secret`. */
void ap_buf_free(ap_buf_t *b, bool secret);

#endif
