/*
 * h1up.h: the upstream fast path (h1up.c): HTTP/1.1 keep-alive connections of our own, for
 * requests whose body is already in memory, to origins whose address is known (connect_to to
 * an IP address, or learned from curl). Everything else goes through curl (upstream.c).
 */
#ifndef AP_H1UP_H
#define AP_H1UP_H

#include "core.h"

ap_h1up_t *ap_h1up_new(struct event_base *base) AP_COLD;
void ap_h1up_free(ap_h1up_t *u) AP_COLD;
/* At start and on every reload: TLS settings from `c`, learned origins and idle connections
 * dropped (connect_to or the CA may have changed). Off when an outbound proxy is configured. */
void ap_h1up_configure(ap_h1up_t *u, ap_conf_t *c) AP_COLD;
/* After curl completed a transfer for `url` that started under configure generation `gen`:
 * remember where an HTTP/1.1 origin lives (nothing if a reload came in between). */
unsigned ap_h1up_generation(const ap_h1up_t *u);
void ap_h1up_learn(ap_h1up_t *u, unsigned gen, const char *url, CURL *easy);
/* Takes the request (AP_OK) or declines it (AP_AGAIN: use curl). Off, for every request, when
 * an outbound proxy is configured or upstream_fast_path is false. */
ap_rc_t ap_h1up_start(ap_h1up_t *u, ap_req_t *r);
/* The request goes away mid-transfer: its connection is closed. Safe in any callback. */
void ap_h1up_detach(ap_req_t *r);
/* Backpressure from the client side. */
void ap_h1up_pause(ap_req_t *r);
void ap_h1up_resume(ap_req_t *r);

/* Counters for /metrics. */
typedef struct ap_h1up_stats_s {
    uint64_t requests;    /* responses it received in full */
    uint64_t connections; /* connections it opened */
    uint64_t fallbacks;   /* requests handed to curl after a failure without response */
    uint64_t idle;        /* pooled idle connections now */
} ap_h1up_stats_t;
void ap_h1up_stats(const ap_h1up_t *u, ap_h1up_stats_t *st);

#endif
