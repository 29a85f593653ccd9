/*
 * token_json.h: pure helpers for token responses and requests (no I/O): RFC 6901 JSON
 * pointers, expiry parsing (ISO-8601, epoch seconds or milliseconds, JWT "exp"), form encoding.
 */
#ifndef AP_TOKEN_JSON_H
#define AP_TOKEN_JSON_H

#include <cjson/cJSON.h>

#include "ap_base.h"

/* RFC 6901 lookup ("" is the whole document; ~0 and ~1 escapes; array indexes). */
const cJSON *ap_json_pointer(const cJSON *root, const char *ptr);

/* Renders a scalar for comparisons: strings as-is, integral numbers without a fraction,
 * booleans as true/false. Writes "" and returns false for objects, arrays and null. */
bool ap_json_scalar(const cJSON *j, char *out, size_t n);

/* ISO-8601 / RFC 3339 date-time ("2023-08-10T12:41:57.643Z", "+07:00" offsets, no zone = UTC)
 * to epoch milliseconds. AP_ERR if malformed. */
ap_rc_t ap_parse_iso8601(const char *s, int64_t *epoch_ms);

/* An absolute epoch number: values above 1e11 are milliseconds, else seconds. */
int64_t ap_epoch_to_ms(double v);

/* The "exp" claim of a JWT (header.payload.signature, base64url), in epoch ms. AP_ERR when the
 * token is not a JWT or carries no numeric exp. The signature is not verified: the expiry is
 * only a caching hint; the API verifies the token. */
ap_rc_t ap_jwt_exp_ms(const char *token, int64_t *epoch_ms);

/* application/x-www-form-urlencoded encoding of one name or value (space as '+'). */
void ap_form_encode(ap_buf_t *b, const char *s);
/* Appends "name=value" with '&' when b is not empty. */
void ap_form_add(ap_buf_t *b, const char *name, const char *value);

#endif
