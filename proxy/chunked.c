/*
 * chunked.c: the chunked transfer coding decoder (RFC 9112 7.1), strict and overflow-safe.
 */
#include "chunked.h"

#include <string.h>

enum {
    S_SIZE = 0,  /* hex digits */
    S_EXT,       /* ";ext..." up to CR */
    S_EXT_QUOTE, /* inside a quoted extension value */
    S_EXT_ESC,   /* after a backslash in a quoted value */
    S_SIZE_LF,   /* CR seen after size line */
    S_DATA,
    S_DATA_CR,
    S_DATA_LF,
    S_TRAILER,    /* start of a trailer line (or the final CRLF) */
    S_TRAILER_LN, /* inside a trailer line */
    S_TRAILER_LF, /* CR seen at end of a trailer line */
    S_FINAL_LF,   /* CR of the final empty line seen */
    S_DONE,
    S_ERROR
};

void
ap_chunked_init(ap_chunked_t *c)
{
    memset(c, 0, sizeof(*c));
}

static int
hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static bool
tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

ap_rc_t
ap_chunked_next(ap_chunked_t *c, const char *in, size_t len, size_t *consumed, size_t *data_len)
{
    size_t i = 0;
    *data_len = 0;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case S_SIZE:
            if (hexval((char)ch) >= 0) {
                if (c->count >= 16)
                    goto bad; /* more than 64 bits */
                c->remaining = (c->remaining << 4) | (uint64_t)hexval((char)ch);
                c->count++;
                i++;
                break;
            }
            if (c->count == 0)
                goto bad;
            if (ch == ';') {
                c->state = S_EXT;
                c->count = 0;
                i++;
                break;
            }
            if (ch == '\r') {
                c->state = S_SIZE_LF;
                i++;
                break;
            }
            goto bad;
        case S_EXT:
        case S_EXT_QUOTE:
        case S_EXT_ESC:
            if (++c->count > AP_CHUNKED_MAX_EXT)
                goto bad;
            if (c->state == S_EXT_ESC) {
                if (ch < 0x20 && ch != '\t')
                    goto bad;
                c->state = S_EXT_QUOTE;
            } else if (c->state == S_EXT_QUOTE) {
                if (ch == '"')
                    c->state = S_EXT;
                else if (ch == '\\')
                    c->state = S_EXT_ESC;
                else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                    goto bad;
            } else if (ch == '\r') {
                c->state = S_SIZE_LF;
            } else if (ch == '"') {
                c->state = S_EXT_QUOTE;
            } else if (!(tchar(ch) || ch == ';' || ch == '=' || ch == ' ' || ch == '\t')) {
                goto bad;
            }
            i++;
            break;
        case S_SIZE_LF:
            if (ch != '\n')
                goto bad;
            i++;
            c->count = 0;
            c->state = c->remaining == 0 ? S_TRAILER : S_DATA;
            break;
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
            break;
        case S_DATA_LF:
            if (ch != '\n')
                goto bad;
            c->state = S_SIZE;
            c->count = 0;
            c->remaining = 0;
            i++;
            break;
        case S_TRAILER:
            if (ch == '\r') {
                c->state = S_FINAL_LF;
                i++;
                break;
            }
            if (!tchar(ch))
                goto bad; /* obs-fold or garbage */
            c->state = S_TRAILER_LN;
            break;
        case S_TRAILER_LN:
            if (++c->count > AP_CHUNKED_MAX_TRAILER)
                goto bad;
            if (ch == '\r')
                c->state = S_TRAILER_LF;
            else if (ch == '\n' || ch == 0 || ch == 0x7f)
                goto bad;
            i++;
            break;
        case S_TRAILER_LF:
            if (ch != '\n')
                goto bad;
            c->state = S_TRAILER;
            i++;
            break;
        case S_FINAL_LF:
            if (ch != '\n')
                goto bad;
            c->state = S_DONE;
            i++;
            *consumed = i;
            return AP_OK;
        case S_DONE:
            *consumed = i;
            return AP_OK;
        default:
            goto bad;
        }
    }
    *consumed = i;
    return c->state == S_DONE ? AP_OK : AP_AGAIN;
bad:
    c->state = S_ERROR;
    *consumed = i;
    return AP_ERR;
}
