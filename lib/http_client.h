/*
 * http_client: asynchronous HTTP POSTs on libcurl's multi *socket* interface,
 * driven by a libevent loop (no blocking call, no polling). Connections are
 * kept alive and reused across requests by the multi handle's connection cache.
 *
 * All functions run on the loop's thread. A request's callback runs exactly
 * once, from the loop, unless the client is freed first (then never).
 */
#ifndef OBX_HTTP_CLIENT_H
#define OBX_HTTP_CLIENT_H

#include <event2/event.h>
#include <stdint.h>

#include "clock.h"
#include "outbox.h"

struct obx_http;

struct obx_http_opts {
    int64_t connect_timeout_ms;
    int64_t request_timeout_ms;
    long max_connections;    /* per host; also the cache size */
    const char *ca_file;     /* NULL: the system store. Peer verification is always on. */
    const char *user_agent;  /* copied */
    struct obx_clock *clock; /* borrowed; times requests (duration_ms); NULL = the real one */
};

/* What came back. Strings are borrowed and valid only during the callback. */
struct obx_http_result {
    int status;              /* HTTP status, 0 when no answer (see error) */
    const char *error;       /* transport error text, NULL on an HTTP answer */
    const char *body;        /* first bytes of the response body ("" if none), NUL-terminated */
    const char *retry_after; /* Retry-After header value or NULL */
    int64_t duration_ms;
};

typedef void (*obx_http_done_fn)(void *ctx, const struct obx_http_result *r);

/* Creates a client on base (borrowed, must outlive the client). */
OBX_MUST_CHECK enum obx_err obx_http_client_new(struct event_base *base,
                                                const struct obx_http_opts *o,
                                                struct obx_http **out /* OUT */);

/*
 * Frees the client; requests still in flight are abandoned without callbacks.
 * NULL is a no-op.
 */
void obx_http_client_free(struct obx_http *h);

/*
 * Starts a POST of body (copied) to url with the given extra headers (array of
 * "Name: value", copied). done(ctx, result) is called once when it ends.
 */
OBX_MUST_CHECK enum obx_err obx_http_client_post(struct obx_http *h, const char *url,
                                                 const char *const *headers, size_t nheaders,
                                                 const char *body, size_t body_len,
                                                 obx_http_done_fn done, void *ctx);

/* Requests in flight. */
int obx_http_client_inflight(const struct obx_http *h);

/* libcurl's version (for `outbox version`: the CLI does not call curl_*). */
const char *obx_http_client_libversion(void);

/* How many response-body bytes are kept for the result (the rest is discarded). */
#define OBX_HTTP_BODY_KEEP 1024

#endif
