/*
 * core.h: types shared by the files of proxy/ (server, listener, conn, upstream, tunnel, admin).
 * Not a public interface: nothing outside proxy/ includes it.
 *
 * Ownership in one picture:
 *   ap_server_t  owns  event_base, curl glue, auth set, conf snapshot (ref), listeners,
 *                      admin listener, every ap_conn_t (on conns list), metrics
 *   ap_conn_t    owns  its bufferevent (fd, CLOSE_ON_FREE), one ap_req_t at a time, a conf ref
 *   ap_req_t     owns  its curl easy handle + header lists (upstream leg), a token ref,
 *                      a cred ref, kept body, or a tunnel (CONNECT)
 * Frees happen only from the reaper event (ap_conn_close defers), never inside a callback that
 * may still touch the object.
 */
#ifndef AP_CORE_H
#define AP_CORE_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "ap_base.h"
#include "auth.h"
#include "chunked.h"
#include "conf.h"
#include "curl_glue.h"
#include "http1.h"

/* Client-side buffering bounds (backpressure): stop reading the client / pause curl above
 * these. 256 KiB keeps a loopback link busy while a thousand slow clients cost < 512 MiB. */
#define AP_HIGH_WATER (256 * 1024)
#define AP_LOW_WATER (64 * 1024)

typedef struct ap_server_s ap_server_t;
typedef struct ap_conn_s ap_conn_t;
typedef struct ap_req_s ap_req_t;
typedef struct ap_tunnel_s ap_tunnel_t;
typedef struct ap_metrics_s ap_metrics_t;
typedef struct ap_h1up_s ap_h1up_t;
typedef struct ap_h1conn_s ap_h1conn_t;

/* --- Requests --------------------------------------------------------------------------- */

typedef enum {
    AP_REQ_NONE = 0,
    AP_REQ_READ_BODY,  /* reading a small body fully before sending (replayable) */
    AP_REQ_WAIT_TOKEN, /* waiting on the credential */
    AP_REQ_UPSTREAM,   /* curl transfer in progress */
    AP_REQ_TUNNEL,
    AP_REQ_DONE
} ap_req_state_t;

struct ap_req_s {
    ap_conn_t *conn; /* borrowed: the owner */
    ap_req_state_t state;
    uint64_t started_ms;

    /* Request line and headers, copied out of the input buffer (which moves on). */
    ap_buf_t head; /* owned: the raw head bytes; headers below point into it */
    ap_http1_req_t h;
    ap_target_t target;
    char method[32];
    char *host; /* owned, lowercase */
    int port;
    char *path;    /* owned: path + query as the client sent it */
    bool absolute; /* absolute-form (proxy mode) vs origin-form (base-URL mode) */
    bool head_method;

    const ap_route_conf_t *route; /* borrowed from conn->conf, NULL when forwarded unmatched */
    ap_cred_t *cred;              /* owned ref, or NULL */
    ap_token_t *token;            /* owned ref, or NULL */
    ap_token_waiter_t waiter;
    bool replayed;       /* the one 401 replay was used */
    struct event *timer; /* owned: phase timeout (body read, token wait, response) */

    /* Request body */
    ap_body_kind_t body_kind;
    uint64_t body_left; /* AP_BODY_LENGTH: bytes still to read from the client */
    ap_chunked_t chunked;
    bool body_done;    /* every body byte has been read from the client */
    bool keep_body;    /* body held in `body` (replayable) */
    ap_buf_t body;     /* owned: kept body */
    size_t body_off;   /* read offset into `body` for the current attempt */
    uint64_t bytes_in; /* body bytes received */
    bool sent_continue;

    /* Upstream leg: a curl transfer (xfer.easy) or a fast-path connection (h1), never both */
    ap_xfer_t xfer;
    ap_h1conn_t *h1; /* borrowed from the server's h1up engine while attached */
    bool h1_refused; /* the fast path failed before a response byte: curl only from now */
    unsigned up_gen; /* the fast path's configure generation when the curl transfer started */
    struct curl_slist *up_headers; /* owned; holds the token line: wiped on free */
    char *url;                     /* owned */
    char errbuf[256];
    const char *bad_response; /* static text: why we refused the upstream's response head */
    bool paused_recv;         /* we returned CURL_WRITEFUNC_PAUSE */
    bool paused_send;         /* we returned CURL_READFUNC_PAUSE */
    bool in_curl_cb;          /* guards re-entrancy during curl_easy_pause */
    int status;               /* upstream final status, 0 until known */
    bool headers_sent;        /* response head written to the client */
    bool retry_401;           /* abort and replay after invalidating the token */
    bool chunked_out;         /* we chunk-encode the response to the client */
    bool close_after;         /* close the client connection after this response */
    bool no_body;             /* HEAD/204/304/1xx: no response body */
    ap_buf_t resp_head;       /* owned: response head being assembled from curl's header lines */
    uint64_t bytes_out;
    const char *error; /* stable error code for the access log, or NULL */

    ap_tunnel_t *tunnel; /* owned, CONNECT only */
};

/* --- Connections ------------------------------------------------------------------------ */

struct ap_conn_s {
    ap_list_t link;          /* on server->conns */
    ap_list_t reap_link;     /* on server->reap while closing */
    ap_server_t *srv;        /* borrowed */
    ap_conf_t *conf;         /* owned ref: the snapshot this connection started under */
    struct bufferevent *bev; /* owned; owns the fd */
    uint64_t id;
    char peer[64];
    struct sockaddr_storage peer_addr;
    bool closing;
    bool reading_head;   /* waiting for / reading a request head */
    bool lingering;      /* error sent, write side shut, discarding input before close */
    size_t scanned;      /* prev_len for the parser */
    struct event *timer; /* owned: head / idle timeout */
    struct event *flush; /* owned: write-through of buffered output, see conn.c */
    bool flush_pending;
    ap_req_t *req; /* owned: the current request, NULL between requests */
    unsigned nrequests;
};

/* --- Server ----------------------------------------------------------------------------- */

struct ap_server_s {
    struct event_base *base; /* owned */
    struct evdns_base *dns;  /* owned: CONNECT tunnels resolve without blocking */
    ap_curl_t *curl;         /* owned */
    ap_h1up_t *h1up;         /* owned: the HTTP/1.1 upstream fast path */
    ap_auth_io_t auth_io;
    ap_auth_t *auth; /* owned */
    ap_conf_t *conf; /* owned ref: the current snapshot */
    char *conf_path; /* owned; NULL in env-only mode */
    bool env_only;

    ap_curl_opts_t curl_opts;      /* points into conf + connect_to list below */
    struct curl_slist *connect_to; /* owned, built from conf */
    /* The previous generation's options stay alive until the server is freed, because
     * in-flight handles still point at them. */
    struct curl_slist *old_connect_to;

    struct evconnlistener **listeners; /* owned */
    size_t nlisteners;
    struct event *accept_retry; /* owned: re-enable after EMFILE */
    struct evhttp *admin;       /* owned */

    ap_list_t conns;
    ap_list_t reap;
    struct event *reaper; /* owned: frees closing connections after callbacks unwind */
    uint64_t nconns;
    uint64_t next_conn_id;

    struct event *sig_term, *sig_int, *sig_hup; /* owned */
    bool draining;
    struct event *drain_timer; /* owned */
    int exit_code;

    char via_id[32];       /* "authproxy-<hex>": our pseudonym in Via, for loop detection */
    ap_metrics_t *metrics; /* owned */
};

/* server.c */
ap_server_t *ap_server_new(ap_conf_t *conf, const char *conf_path, bool env_only) AP_COLD;
int ap_server_run(ap_server_t *s);
void ap_server_free(ap_server_t *s) AP_COLD;
ap_rc_t ap_server_reload(ap_server_t *s) AP_COLD;
/* The server's current upstream options (conf-derived). */
const ap_curl_opts_t *ap_server_curl_opts(ap_server_t *s);

/* listener.c */
ap_rc_t ap_listener_start(ap_server_t *s) AP_COLD;
void ap_listener_stop(ap_server_t *s);
/* 127.0.0.0/8 or ::1. */
bool ap_sockaddr_is_loopback(const struct sockaddr *sa);

/* conn.c */
void ap_conn_accept(ap_server_t *s, evutil_socket_t fd, struct sockaddr *sa, int salen);
/* Idempotent; the connection is freed from the reaper after current callbacks unwind. */
void ap_conn_close(ap_conn_t *c, const char *reason);
void ap_conn_reap(ap_server_t *s);
/* Sends a JSON error response {"error","detail"} and finishes the request. */
void ap_conn_send_error(ap_conn_t *c, int status, const char *code, const char *detail,
                        uint32_t retry_after_s);
/* The response to the current request is complete: keep-alive or close. */
void ap_conn_request_done(ap_conn_t *c);
/* Client output drained below the low mark (upstream.c unpauses curl). */
void ap_req_free(ap_req_t *r);

/* upstream.c */
ap_rc_t ap_upstream_start(ap_req_t *r);
void ap_upstream_abort(ap_req_t *r);
/* For both upstream engines (curl in upstream.c, the fast path in h1up.c): */
/* The final response head is in r->status / r->resp_head. false: a 401 to replay instead
 * (drop this attempt, then call ap_upstream_replay). */
bool ap_upstream_head_ready(ap_req_t *r);
void ap_upstream_replay(ap_req_t *r);
/* Response body bytes to the client; the fast path is paused above the high-water mark. */
void ap_upstream_emit(ap_req_t *r, const char *p, size_t len);
/* The response is complete. */
void ap_upstream_finish(ap_req_t *r);
/* The upstream failed: an error response (status, stable code) if nothing was sent yet, else
 * the client connection is closed mid-body. */
void ap_upstream_fail(ap_req_t *r, int status, const char *code, const char *why);
/* The fast path gave up before any response byte: send the request through curl instead. */
void ap_upstream_fallback(ap_req_t *r);
/* More client body bytes arrived (unpause curl's send side). */
void ap_upstream_on_client_readable(ap_req_t *r);
/* Client output drained (unpause curl's receive side). */
void ap_upstream_on_client_drained(ap_req_t *r);
/* Pulls up to max decoded body bytes from the client input into dst. Returns bytes, 0 when
 * none available (or body complete: see r->body_done), -1 on a framing error. */
long ap_req_read_body(ap_req_t *r, char *dst, size_t max);

/* tunnel.c */
void ap_tunnel_start(ap_req_t *r, const char *host, int port);
/* Stops all callbacks (safe inside any callback); ap_tunnel_free releases (reaper only). */
void ap_tunnel_stop(ap_tunnel_t *t);
void ap_tunnel_free(ap_tunnel_t *t);

/* headers.c */
/* One outbound header line, "Name: value" or "Name:" for an empty value (no CRLF). */
typedef void (*ap_header_line_cb)(void *ud, const char *line, size_t len);
/* The outbound request headers, in order: client headers minus hop-by-hop, Proxy-*, Host,
 * framing, Expect, Via and (credentialed route) the injected header name; then Via with our
 * pseudonym, the credential's extra headers, the token line. Secrets pass through `emit`. */
void ap_headers_each(const ap_req_t *r, const char *via_id, const ap_token_t *tok,
                     const char *const *extra, ap_header_line_cb emit, void *ud);
/* The same lines as a curl header list, plus the suppression of curl's own Accept and Expect.
 * Secrets live only in the returned list. */
struct curl_slist *ap_headers_upstream(const ap_req_t *r, const char *via_id, const ap_token_t *tok,
                                       const char *const *extra);
/* True if the Via header carries our own pseudonym (a request loop). */
bool ap_headers_has_loop(const ap_http1_req_t *h, const char *via_id);

/* router.c */
/* The first route matching host/port/path (host NULL for origin-form). */
const ap_route_conf_t *ap_router_match(const ap_conf_t *c, const char *host, int port,
                                       const char *path, size_t path_len);
/* Builds the upstream URL for a request on `route`. */
char *ap_router_upstream_url(const ap_route_conf_t *route, const char *path, size_t path_len);
/* Client address allowed by client_auth.allow (true when no allowlist). */
bool ap_router_client_allowed(const ap_conf_t *c, const struct sockaddr *sa);

/* admin.c */
ap_rc_t ap_admin_start(ap_server_t *s) AP_COLD;
void ap_admin_stop(ap_server_t *s);
ap_metrics_t *ap_metrics_new(void);
void ap_metrics_free(ap_metrics_t *m);
void ap_metrics_request(ap_metrics_t *m, const char *route, int status, double seconds);
void ap_metrics_upstream_error(ap_metrics_t *m, const char *code);
/* The health-check client: GET url (loopback admin), 0 on HTTP 200. */
int ap_admin_healthcheck(const char *url);

#endif
