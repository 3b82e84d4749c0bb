/*
 * httpd: what the daemon's HTTP listeners share on top of libevent's evhttp:
 * binding "host:port" with the project's limits, reading a bounded body, and
 * replying with JSON (including the SPEC §5 error shape). evbuffer and evhttp
 * types stay at this edge.
 */
#ifndef OBX_HTTPD_H
#define OBX_HTTPD_H

#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "outbox.h"

struct obx_httpd; /* one listening evhttp with the project's limits */

/* What a listener allows; 0 in a size field means the default named there. */
struct obx_httpd_limits {
    size_t max_body_bytes;          /* evhttp answers 413 (JSON) past this */
    const char *body_limit_message; /* the 413's message, e.g. "the body exceeds
                                      max_body_bytes" (borrowed, static); NULL: generic */
    size_t max_connections;         /* open connections; default 400 */
    size_t max_lingering;           /* sockets draining after their close; default a quarter
                                       of max_connections, + 1 */
    size_t body_budget_bytes;       /* request bytes received and not yet answered, all
                                       connections together; default 64 MiB, at least
                                       max_body_bytes + 16 KiB */
};

/* What the HTTP layer answered by itself (each also counted nowhere else). */
struct obx_httpd_stats {
    int64_t too_large;   /* 413: body over the listener's limit */
    int64_t bad_request; /* 400 bad request line or headers (also headers over 16 KiB);
                            417, 501 and the like */
    int64_t timeout;     /* 408: a request not complete within its deadline */
    int64_t shed;        /* 503: the body budget was full */
};

/*
 * Listens on listen ("127.0.0.1:8787", "[::1]:8787") with header and body size
 * limits, a 12 s inactivity timeout, a 10 s deadline for each whole request (from the
 * accept, or from the previous reply on a kept-alive connection; 408 when it passes), so
 * stalled and trickling clients alike are cut off, and at most lim->max_connections open
 * connections: beyond that, clients wait in the kernel's backlog. When accept() runs out
 * of descriptors, accepting pauses for a second. Errors evhttp answers by itself come out
 * as SPEC §5 JSON, and a connection closed after an error lingers so that the client
 * can read the answer (httpd.c). *bound_port (may be NULL) gets the actual port (useful
 * with port 0). Set the request callback on obx_httpd_evhttp(); free with obx_httpd_free
 * (never evhttp_free). Loop thread only.
 */
OBX_MUST_CHECK enum obx_err obx_httpd_new(struct event_base *base, const char *listen,
                                          const struct obx_httpd_limits *lim,
                                          struct obx_httpd **out /* OUT */,
                                          int *bound_port /* OUT */);

/* Counters of the errors the HTTP layer answered itself. */
void obx_httpd_stats(const struct obx_httpd *h, struct obx_httpd_stats *out /* OUT */);

/* The evhttp, for evhttp_set_gencb and friends (borrowed). */
struct evhttp *obx_httpd_evhttp(const struct obx_httpd *h);

/* Closes the listener and every connection. NULL is fine. */
void obx_httpd_free(struct obx_httpd *h);

/*
 * Call before returning from a request callback without replying. libevent 2.1
 * keeps reading a connection whose request had no body, and aborts the process
 * ("illegal connection state") if bytes arrive before the reply; evhttp turns
 * reading back on once the reply is written.
 */
void obx_httpd_hold(struct evhttp_request *req);

/*
 * 1 when the host of listen ("host:port", "[v6]:port") is loopback by
 * obx_net_host_is_loopback(): every address it resolves to is in 127.0.0.0/8, ::1 or
 * ::ffff:127.0.0.0/104. May block on a name lookup: for start-up and reload only.
 */
int obx_httpd_is_loopback(const char *listen);

/* Replies with status and the JSON document in b (b is left empty). */
void obx_httpd_reply_json(struct evhttp_request *req, int status, struct obx_buf *b);

/* Replies {"error":{"code","message","field"}}; field may be NULL. */
void obx_httpd_error(struct evhttp_request *req, int status, const char *code, const char *message,
                     const char *field);

/*
 * Copies the request body into *out (NUL-terminated, caller frees with obx_free)
 * unless it exceeds max: then OBX_ETOOBIG and *out is NULL.
 */
OBX_MUST_CHECK enum obx_err obx_httpd_body(struct evhttp_request *req, size_t max,
                                           char **out /* OUT */, size_t *len /* OUT */);

/* 1 when the Content-Type is application/json (parameters allowed). */
int obx_httpd_is_json(struct evhttp_request *req);

/*
 * Splits the request path into percent-decoded segments (max n); returns the count, -1 for
 * a path that has no segments to give (more than n, an encoded NUL, not absolute), or
 * OBX_HTTPD_PATH_NOMEM when memory ran out (a 503, not a 404: a webhook answered 4xx is
 * never sent again).
 */
#define OBX_HTTPD_PATH_NOMEM (-2)
int obx_httpd_path_segments(struct evhttp_request *req, char **seg, int n);
void obx_httpd_free_segments(char **seg, int n);

/* Query parameter value (decoded, caller frees), or NULL. */
char *obx_httpd_query_param(struct evhttp_request *req, const char *name);

#endif
