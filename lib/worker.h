/*
 * worker: the delivery loop. Claims due messages, paces them per API key, sends
 * them to Partoo, records every attempt and moves each message to its next state
 * (SPEC §3). Runs on one libevent loop; every function must be called from it. Its
 * database work runs on the store thread (store_queue.h).
 *
 *   claim job (store thread) -> ready -> gate (auth pause, circuit, token bucket)
 *        -> POST (http_client) -> classify + decide (backoff) -> pending -> finish job
 */
#ifndef OBX_WORKER_H
#define OBX_WORKER_H

#include <event2/event.h>

#include "config.h"
#include "metrics.h"
#include "store.h"

struct obx_worker;

/* Counters for status and /metrics; plain numbers owned by the worker (STYLE 20). */
struct obx_worker_stats {
    int64_t attempts;                    /* requests finished */
    int64_t accepted;                    /* 2xx */
    int64_t failed;                      /* messages moved to failed */
    int64_t retried;                     /* messages scheduled for another attempt */
    int64_t rate_limited;                /* 429 answers */
    int64_t auth_failures;               /* 401/403 answers */
    int64_t transport_errors;            /* no HTTP answer */
    int64_t server_errors;               /* 5xx and 408 */
    int64_t lease_conflicts;             /* results dropped because the lease was lost */
    int64_t by_status[OBX_STATUS_SLOTS]; /* finished requests per HTTP status, 0 = none */
    int64_t by_outcome[6];               /* per enum obx_outcome */
    struct obx_histogram latency;        /* request durations */
    int inflight;
    const char *circuit;       /* "closed", "open", "half_open" */
    const char *paused_reason; /* the default tenant's: NULL, "auth", "rate_limited",
                                  "circuit_open", "no_key" (no key and no tenant) */
    int64_t paused_until_ms;   /* wall clock, 0 = unknown */
    int64_t tenants;           /* tenants in the registry (the default one not counted) */
};

/* One tenant's delivery as the worker sees it (borrowed during the callback). */
struct obx_worker_tenant {
    const char *name; /* "default" for the configured key */
    int is_default;
    const char *key_fingerprint; /* "" when there is no key */
    const char *no_key;          /* why there is no key to send with, or NULL */
    const char *paused_reason;   /* NULL, "no_key", "auth", "circuit_open", "rate_limited" */
    int64_t paused_until_ms;     /* wall clock, 0 = unknown */
    double rate_limit_per_min;   /* in effect (0 = unlimited) */
    int64_t rate_burst;
    int64_t send_rate_per_min; /* requests sent in the last 60 s */
    int64_t sent;              /* requests sent since start */
    int inflight, ready;
    const char *base_url; /* NULL: the configured one */
    /* PostgreSQL: another node sends for it. Its pause is that node's, in the database
     * (tenant_pacing); this node's lane for it is idle and knows nothing of it. */
    int held_elsewhere;
};
typedef int (*obx_worker_tenant_fn)(void *ctx, const struct obx_worker_tenant *t);

struct obx_storeq;

/*
 * Creates a worker on base (all borrowed; they must outlive the worker; cfg may be
 * swapped with obx_worker_reload). st is the loop's connection, used for reads only;
 * claims and outcomes go through q, the store thread. It starts pumping at once. Its
 * time (timers' monotonic clock, attempts' wall clock) comes from st->clock, which a test
 * may swap for a fake one before calling this.
 */
OBX_MUST_CHECK enum obx_err obx_worker_new(struct event_base *base, struct obx_store *st,
                                           struct obx_storeq *q, const struct obx_config *cfg,
                                           struct obx_worker **out /* OUT */);

/* Frees the worker. Call after the drained callback (or abandon in-flight work). NULL ok. */
void obx_worker_free(struct obx_worker *w);

/* New work was committed by this process: look for it now rather than at the next poll. */
void obx_worker_notify(struct obx_worker *w);

/*
 * PostgreSQL with several nodes: from now on the worker sends for a tenant only while this
 * node holds its lease (store_pg_nodes.h), fences every write with the lease's epoch, and
 * first queues again what the previous holder left in `sending`. nodes is borrowed and
 * must outlive the worker. obx_worker_nodes_changed: call it from the nodes callback.
 */
struct obx_store_pg_nodes;
void obx_worker_use_nodes(struct obx_worker *w, struct obx_store_pg_nodes *nodes);
void obx_worker_nodes_changed(struct obx_worker *w);

/* The same for work of one channel only: wakes only the tenant that owns it (or the
 * default one), so a stream of enqueues does not make thousands of idle tenants look. */
void obx_worker_notify_channel(struct obx_worker *w, const char *channel_id);

/*
 * A channel or a tenant was paused (scope OBX_PAUSE_CHANNEL or OBX_PAUSE_TENANT, key its id
 * or name, "default" for the configured key's): its claimed but unsent messages go back to
 * `queued` (recorded as releases) instead of being sent, and so do those that claims
 * outstanding now bring (they may have read the outbox before the pause). Requests already
 * in flight finish.
 */
void obx_worker_release_held(struct obx_worker *w, const char *scope, const char *key);

/* Uses a new configuration (rate, API key, log level, limits, secrets_key_file). Resumes
 * the default tenant's auth pause. */
void obx_worker_reload(struct obx_worker *w, const struct obx_config *cfg);

/*
 * Stops claiming. In-flight requests may finish until timeout_ms; the rest are
 * released back to `queued`. drained(ctx) is called once everything is recorded.
 */
void obx_worker_stop(struct obx_worker *w, int64_t timeout_ms, void (*drained)(void *ctx),
                     void *ctx);

void obx_worker_stats(const struct obx_worker *w, struct obx_worker_stats *out /* OUT */);

/* Every tenant, the default one first, then by name; fn returns nonzero to stop. */
void obx_worker_tenants(const struct obx_worker *w, obx_worker_tenant_fn fn, void *ctx);

/* This process changed the tenant registry: apply it now, not at the next 1 s poll. */
void obx_worker_tenants_changed(struct obx_worker *w);


struct obx_tenant_stats_set;

/* Fills the pause, pace in effect and send rate of each tenant of s from its lane (the
 * tenants section of /v1/stats and /metrics); a lane s lacks is skipped. */
void obx_worker_tenant_stats(const struct obx_worker *w, struct obx_tenant_stats_set *s);

#endif
