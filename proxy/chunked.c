/*
 * chunked.c: the chunked transfer coding decoder (RFC 9112 7.1), strict and overflow-safe.
 *
 * A byte-at-a-time state machine for the framing (so any split of the input decodes the same)
 * and a bulk copy-free step for chunk data. The grammar accepted:
 *
 *   chunk-size  = 1*16HEXDIG
 *   chunk-line  = chunk-size *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) CRLF
 *   ext-val     = token / quoted-string
 *   trailer     = *( field-name ":" field-value CRLF ) CRLF
 */
#include "chunked.h"

#include <string.h>

/* 16 hex digits fill the 64-bit size exactly; one more could only overflow. */
#define MAX_SIZE_DIGITS 16

enum {
    S_SIZE = 0,     /* hex digits */
    S_SIZE_BWS,     /* whitespace after the size: only ";" may follow */
    S_EXT_PRE_NAME, /* after ";" */
    S_EXT_NAME,
    S_EXT_POST_NAME, /* whitespace after a name: "=" or ";" may follow */
    S_EXT_PRE_VAL,   /* after "=" */
    S_EXT_VAL,       /* token value */
    S_EXT_QUOTE,     /* inside a quoted value */
    S_EXT_ESC,       /* after a backslash in a quoted value */
    S_EXT_POST_VAL,  /* after a value: ";", whitespace or CR */
    S_EXT_POST_WS,   /* whitespace after a value: only ";" may follow */
    S_SIZE_LF,       /* CR of the chunk line seen */
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER,      /* start of a trailer line, or the final CRLF */
    S_TRAILER_NAME, /* inside a field name */
    S_TRAILER_VAL,  /* after the colon */
    S_TRAILER_LF,   /* CR at the end of a trailer line seen */
    S_FINAL_LF,     /* CR of the final empty line seen */
    S_DONE,
    S_ERROR
};

void
ap_chunked_init(ap_chunked_t *c)
{
    memset(c, 0, sizeof(*c));
}

static int
hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* tchar (RFC 9110 5.6.2) */
static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/* qdtext and the second byte of a quoted-pair, less '"' and '\\' for qdtext (RFC 9110 5.6.4):
 * HTAB, SP, VCHAR, obs-text. */
static bool
is_qchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* One byte of a chunk line after the size digits. Returns the next state or S_ERROR. */
static int
chunk_line_byte(int state, unsigned char ch)
{
    switch (state) {
    case S_SIZE: /* first byte after the digits */
    case S_EXT_VAL:
    case S_EXT_POST_VAL:
        if (state == S_EXT_VAL && is_tchar(ch))
            return S_EXT_VAL;
        if (ch == ';')
            return S_EXT_PRE_NAME;
        if (ch == '\r')
            return S_SIZE_LF;
        if (is_ws(ch))
            return state == S_SIZE ? S_SIZE_BWS : S_EXT_POST_WS;
        return S_ERROR;
    case S_SIZE_BWS:
    case S_EXT_POST_WS:
        if (is_ws(ch))
            return state;
        return ch == ';' ? S_EXT_PRE_NAME : S_ERROR;
    case S_EXT_PRE_NAME:
        if (is_ws(ch))
            return S_EXT_PRE_NAME;
        return is_tchar(ch) ? S_EXT_NAME : S_ERROR;
    case S_EXT_NAME:
        if (is_tchar(ch))
            return S_EXT_NAME;
        if (ch == '=')
            return S_EXT_PRE_VAL;
        if (ch == ';')
            return S_EXT_PRE_NAME;
        if (ch == '\r')
            return S_SIZE_LF;
        return is_ws(ch) ? S_EXT_POST_NAME : S_ERROR;
    case S_EXT_POST_NAME:
        if (is_ws(ch))
            return S_EXT_POST_NAME;
        if (ch == '=')
            return S_EXT_PRE_VAL;
        return ch == ';' ? S_EXT_PRE_NAME : S_ERROR;
    case S_EXT_PRE_VAL:
        if (is_ws(ch))
            return S_EXT_PRE_VAL;
        if (ch == '"')
            return S_EXT_QUOTE;
        return is_tchar(ch) ? S_EXT_VAL : S_ERROR;
    case S_EXT_QUOTE:
        if (ch == '"')
            return S_EXT_POST_VAL;
        if (ch == '\\')
            return S_EXT_ESC;
        return is_qchar(ch) ? S_EXT_QUOTE : S_ERROR;
    case S_EXT_ESC:
        return is_qchar(ch) ? S_EXT_QUOTE : S_ERROR;
    default:
        return S_ERROR;
    }
}

ap_rc_t
ap_chunked_next(ap_chunked_t *c, const char *in, size_t len, size_t *consumed, size_t *data_len)
{
    size_t i = 0;
    *data_len = 0;
    *consumed = 0;
    if (c->state == S_ERROR)
        return AP_ERR;
    while (i < len && c->state != S_DONE) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case S_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->count == MAX_SIZE_DIGITS)
                    goto bad;
                c->remaining = (c->remaining << 4) | (uint64_t)v;
                c->count++;
                i++;
                continue;
            }
            if (c->count == 0)
                goto bad; /* no digits: "-1", " 5", ";x", "\r\n" */
            c->count = 0; /* from here on: extension bytes */
            break;        /* the chunk-line grammar takes this byte */
        }
        case S_SIZE_LF:
            if (ch != '\n')
                goto bad;
            i++;
            c->count = 0;
            c->state = c->remaining == 0 ? S_TRAILER : S_DATA;
            continue;
        case S_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            c->remaining -= n;
            c->total += n;
            i += n;
            if (c->remaining == 0)
                c->state = S_DATA_CR;
            *consumed = i;
            *data_len = n;
            return AP_AGAIN;
        }
        case S_DATA_CR:
            if (ch != '\r')
                goto bad;
            c->state = S_DATA_LF;
            i++;
            continue;
        case S_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = S_SIZE;
            c->count = 0;
            c->remaining = 0;
            i++;
            continue;
        case S_TRAILER:
        case S_TRAILER_NAME:
        case S_TRAILER_VAL:
        case S_TRAILER_LF:
        case S_FINAL_LF:
            /* The whole trailer section, CRLFs included, counts against the cap. */
            if (++c->count > (size_t)AP_CHUNKED_MAX_TRAILER)
                goto bad;
            if (c->state == S_TRAILER) {
                if (ch == '\r')
                    c->state = S_FINAL_LF;
                else if (is_tchar(ch))
                    c->state = S_TRAILER_NAME; /* not SP/HTAB: no obs-fold */
                else
                    goto bad;
            } else if (c->state == S_TRAILER_NAME) {
                if (ch == ':')
                    c->state = S_TRAILER_VAL;
                else if (!is_tchar(ch))
                    goto bad;
            } else if (c->state == S_TRAILER_VAL) {
                if (ch == '\r')
                    c->state = S_TRAILER_LF;
                else if (!is_qchar(ch))
                    goto bad;
            } else if (c->state == S_TRAILER_LF) {
                if (ch != '\n')
                    goto bad;
                c->state = S_TRAILER;
            } else {
                if (ch != '\n')
                    goto bad;
                c->state = S_DONE;
            }
            i++;
            continue;
        default:
            break;
        }
        /* Chunk-line bytes after the size digits (including the one S_SIZE passed on). */
        if (++c->count > AP_CHUNKED_MAX_EXT)
            goto bad;
        int next = chunk_line_byte(c->state, ch);
        if (next == S_ERROR)
            goto bad;
        c->state = next;
        i++;
    }
    *consumed = i;
    return c->state == S_DONE ? AP_OK : AP_AGAIN;
bad:
    c->state = S_ERROR;
    *consumed = i;
    return AP_ERR;
}
