/*
 * curl_glue.h: one curl multi handle driven by the server's libevent loop (the hiperfifo
 * pattern: CURLMOPT_SOCKETFUNCTION maps curl sockets to events, CURLMOPT_TIMERFUNCTION arms one
 * evtimer). Upstream requests and token fetches share it, and with it the connection pool.
 *
 * Also implements auth/'s ap_auth_io_t (fetch.h) on top of the same multi handle and loop.
 */
#ifndef AP_CURL_GLUE_H
#define AP_CURL_GLUE_H

#include <curl/curl.h>
#include <event2/event.h>

#include "ap_base.h"
#include "fetch.h"

typedef struct ap_curl_s ap_curl_t;
typedef struct ap_xfer_s ap_xfer_t;

/* Called once when a transfer added with ap_curl_add completes (or fails). The easy handle has
 * already been removed from the multi handle; the owner cleans it up (here or later). */
typedef void (*ap_xfer_done_cb)(ap_xfer_t *x, CURLcode rc);

/* Embedded in its owner (an upstream request, a token fetch). */
struct ap_xfer_s {
    CURL *easy; /* owned by the embedding object */
    ap_xfer_done_cb on_done;
    bool active; /* private: added to the multi handle */
};

ap_curl_t *ap_curl_new(struct event_base *base) AP_COLD;
/* curl_multi_cleanup first (it may still call the socket callback), then the events. */
void ap_curl_free(ap_curl_t *g) AP_COLD;

/* Starts a transfer; CURLOPT_PRIVATE is set to x. AP_ERR if the multi handle refused it. */
ap_rc_t ap_curl_add(ap_curl_t *g, ap_xfer_t *x);
/* Stops a transfer early (client gone, timeout). No-op if not active. Never call it from inside
 * a curl callback of that transfer. on_done is not called. */
void ap_curl_remove(ap_curl_t *g, ap_xfer_t *x);

/* Settings applied to every outbound handle (upstream and token endpoint): CA bundle, verify on,
 * connect_to, no environment proxy (or the configured outbound proxy), timeouts. Owned strings
 * copied. */
typedef struct ap_curl_opts_s {
    const char *ca_file;           /* NULL: curl's default bundle */
    struct curl_slist *connect_to; /* borrowed, must outlive handles using it */
    const char *outbound_proxy;    /* NULL: none (environment ignored) */
    long connect_timeout_ms;
} ap_curl_opts_t;

void ap_curl_apply_common(CURL *easy, const ap_curl_opts_t *o);

/* The auth/ I/O interface over this glue. opts is borrowed and may be swapped on reload with
 * ap_curl_set_fetch_opts. */
void ap_curl_auth_io(ap_curl_t *g, ap_auth_io_t *io);
void ap_curl_set_fetch_opts(ap_curl_t *g, const ap_curl_opts_t *opts);

/* Counters for /metrics. */
/* Easy handles for transfers, from a pool of reset idle handles (curl_easy_init when empty).
 * Put a handle back only once it is in no multi handle (after ap_curl_remove or completion). */
CURL *ap_curl_easy_get(ap_curl_t *g);
void ap_curl_easy_put(ap_curl_t *g, CURL *easy);

uint64_t ap_curl_active(const ap_curl_t *g);

#endif
