/*
 * api: the producer HTTP API (SPEC §5) on libevent's evhttp, inside `outbox serve`.
 *
 * Durability: a 202 is sent only after the row is committed. Enqueue requests that
 * arrive in the same loop turn share one transaction (group commit), so many
 * concurrent producers pay one fsync between them. Runs on the daemon's loop;
 * every function must be called from it.
 */
#ifndef OBX_API_H
#define OBX_API_H

#include <event2/event.h>

#include "config.h"
#include "httpd.h"
#include "store.h"
#include "worker.h"

struct obx_api;

/* Counters for /metrics and tests (plain numbers, STYLE 20). */
struct obx_api_stats {
    int64_t requests;
    int64_t messages_accepted; /* new rows committed */
    int64_t messages_duplicate;
    int64_t commits;             /* group-commit transactions */
    int64_t write_failures;      /* 503/507 answers */
    struct obx_httpd_stats http; /* what the HTTP layer answered itself */
};

struct obx_storeq;

/*
 * Binds cfg->api_listen and serves the routes, with at most max_connections open
 * connections (0: the httpd default). st (the loop's connection, read from), q (the store
 * thread, written through), cfg and worker are borrowed and must outlive the API (worker
 * may be NULL: no wake-ups). Refuses a non-loopback address without api_token (OBX_ECONFIG).
 * Its timers (the /readyz probe) read st->clock's monotonic time.
 */
OBX_MUST_CHECK enum obx_err obx_api_new(struct event_base *base, struct obx_store *st,
                                        struct obx_storeq *q, const struct obx_config *cfg,
                                        struct obx_worker *worker, size_t max_connections,
                                        struct obx_api **out /* OUT */);

/* Stops listening and frees. Requests waiting for a group commit are answered 503. NULL ok. */
void obx_api_free(struct obx_api *api);

/* Uses a new configuration (token, limits). */
void obx_api_reload(struct obx_api *api, const struct obx_config *cfg);

/* The port actually bound (useful with port 0). */
int obx_api_port(const struct obx_api *api);

void obx_api_stats(const struct obx_api *api, struct obx_api_stats *out /* OUT */);

/*
 * Serves GET /metrics (behind the token, like every non-health route); without a source the
 * route answers 404. collect(st, ctx, &err) reads the store and returns what it read (owned
 * by render): on the loop on SQLite, on the store thread (between groups) on PostgreSQL.
 * render(ctx, reads, err, b) then appends the text on the loop and frees reads (may be
 * NULL: out of memory).
 */
typedef void *(*obx_api_metrics_collect_fn)(struct obx_store *st, void *ctx, enum obx_err *err);
typedef enum obx_err (*obx_api_metrics_render_fn)(void *ctx, void *reads, enum obx_err err,
                                                  struct obx_buf *b);
void obx_api_set_metrics(struct obx_api *api, obx_api_metrics_collect_fn collect,
                         obx_api_metrics_render_fn render, void *ctx);

#endif
