/*
 * store_pg: the delivery core of the store on PostgreSQL: enqueue, claim and finish with the
 * same items and results as their SQLite counterparts in store.h (obx_store_enqueue_batch,
 * obx_store_claim_tenants, obx_store_finish), on the schema of migrations/postgresql. serve's
 * store thread calls them through store.c; tests/unit/test_store_pg.c and bench/pg_store.sh
 * call them directly.
 *
 * Each call is one transaction of set-based statements over the whole batch (array
 * parameters), sent through a libpq pipeline: two round trips whatever its size. A claim or
 * a finish is one statement for every tenant in it, each row under its own tenant's lease.
 * Order per conversation, the head, transitions and the fencing of several nodes are the
 * schema's (triggers and functions), so that a producer's own SQL gets them too.
 */
#ifndef OBX_STORE_PG_H
#define OBX_STORE_PG_H

#include "pg.h"
#include "store.h"

/*
 * Fencing for several nodes (migrations/postgresql/0002_nodes.sql): the lease under which
 * this node writes for tenant ("default" for the configured key). A call given one checks it
 * in its own transaction, locking the lease row until it ends, and writes nothing when the
 * lease is no longer this node's under that epoch: it returns OBX_ECONFLICT ("lease lost"
 * in obx_pg_errmsg) and the node must stop sending for that tenant. NULL: no check (one
 * node). serve's calls (obx_store_pg_claim_tenants, obx_store_pg_finish_fenced) carry a
 * fence per tenant instead: a tenant whose lease is lost gets nothing, the others go on.
 */
struct obx_pg_fence {
    const char *tenant;
    const char *node;
    int64_t epoch;
};

/*
 * Enqueues n items in one transaction, with obx_store_enqueue_batch's results: OBX_OK and
 * OBX_ENQ_ACCEPTED (new) or OBX_ENQ_DUPLICATE (the key exists with identical fields),
 * OBX_ECONFLICT (the key exists with other fields), OBX_EINVAL (see fe). Returns the
 * transaction's error; then nothing was written.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_enqueue_batch(struct obx_pg *pg,
                                                       struct obx_enq_item *items, size_t n,
                                                       const struct obx_msg_limits *lim);

/*
 * Claims up to max due heads of tenant (NULL: the channels no tenant owns), highest
 * priority first, then oldest due: each becomes `sending` under a fresh lease token until
 * now + lease_ms. Rows another node or process holds locked are skipped (SKIP LOCKED).
 * out must have room for max; release each with obx_store_claimed_release.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_claim(struct obx_pg *pg, const struct obx_pg_fence *fence,
                                               const char *tenant, int max, int64_t lease_ms,
                                               struct obx_claimed *out /* OUT, max */,
                                               int *n /* OUT */);

/*
 * Records n attempts and applies their transitions in one transaction, as
 * obx_store_finish: a transition whose lease is no longer held is OBX_ECONFLICT in
 * results[i] (may be NULL), its attempt still recorded.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_finish(struct obx_pg *pg, const struct obx_pg_fence *fence,
                                                const struct obx_attempt *a, size_t n,
                                                enum obx_err *results /* OUT, n */);

/*
 * A tenant's pacing as the nodes share it (tenant_pacing), written by every fenced finish
 * from the attempts it records: the end of a 429's Retry-After, whether the last answer
 * refused the key, the last send (wall-clock ms).
 */
struct obx_pg_pacing {
    int64_t paused_until_ms;
    int auth_paused;
    int64_t last_sent_at_ms;
    int64_t circuit_open_until_ms; /* the breaker of the tenant's base URL, open until then */
};

/*
 * Returns to `queued` every message of tenant (NULL: the channels no tenant owns) left in
 * `sending`, under fence: a node that has just taken the tenant's lease over runs it before
 * its first claim, so what the previous holder had in flight is sent again (at most its
 * max_inflight: the duplicates SPEC §12 allows per failover). *count (may be NULL) gets how
 * many; *pacing (may be NULL) the tenant's pacing state, zero when none was recorded.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_requeue_tenant(struct obx_pg *pg,
                                                        const struct obx_pg_fence *fence,
                                                        const char *tenant,
                                                        int64_t *count /* OUT */,
                                                        struct obx_pg_pacing *pacing /* OUT */);

/* obx_store_pg_requeue_tenant for serve's store thread: under st's node and epoch. */
OBX_MUST_CHECK enum obx_err obx_store_pg_takeover(struct obx_store *st, const char *tenant,
                                                  int64_t epoch, int64_t *count /* OUT */,
                                                  struct obx_pg_pacing *pacing /* OUT */);

/*
 * A node's circuit breaker for a Partoo base URL opened (until open_until_ms, wall clock) or
 * closed (0): recorded in the pacing of the n tenants it holds that send there (tenants[i]
 * under epochs[i]; "default" for the channels no tenant owns), so that a node taking one of
 * them over does not probe a service that is down before the breaker would have
 * (obx_store_pg_takeover's pacing). A tenant whose lease moved on is left alone.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_record_circuit(struct obx_store *st,
                                                        const char *const *tenants,
                                                        const int64_t *epochs, size_t n,
                                                        int64_t open_until_ms);

/* A round trip that shows the database answers (serve's /readyz on PostgreSQL). */
OBX_MUST_CHECK enum obx_err obx_store_pg_ping(struct obx_pg *pg);

/* ---- struct obx_store on PostgreSQL (serve) ------------------------------------------------ */

/*
 * Opens a struct obx_store on PostgreSQL for serve: connect = 1 for the store thread's (it
 * checks that the schema is migrated: OBX_ESCHEMA otherwise, see errmsg); connect = 0 for
 * the loop's, which has no connection (every read or write of serve on PostgreSQL goes
 * through the store thread, so the loop never waits on the network). node names this node
 * in the fences. Free with obx_store_free.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_open_store(const char *uri, const char *schema,
                                                    const char *node, int connect,
                                                    struct obx_store **out /* OUT */, char *errmsg,
                                                    size_t n);

/* 1 when st is a store on PostgreSQL (serve's, either kind). */
int obx_store_pg_in_use(const struct obx_store *st);

/*
 * obx_store_claim_tenants and obx_store_finish on PostgreSQL (store.c dispatches here).
 * A want with an epoch claims under that tenant's fence ("default" for the tenant NULL);
 * the claimed messages carry the epoch. All wants are one statement, and all attempts
 * another, in one transaction: the messages of a tenant whose lease is lost are neither
 * claimed nor written (their results are OBX_ECONFLICT: the new holder sends them again),
 * the others' are. Measured (bench/pg_tenants.sh, 300 tenants): one statement per tenant
 * instead cost 0.8 ms a message and held three nodes to 45 % of the tenants' limits.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_claim_tenants(struct obx_store *st,
                                                       struct obx_claim_want *wants, size_t nwants,
                                                       int64_t lease_ms, struct obx_claimed *out,
                                                       int *n);
OBX_MUST_CHECK enum obx_err obx_store_pg_finish_fenced(struct obx_store *st,
                                                       const struct obx_attempt *a, size_t n,
                                                       enum obx_err *results /* OUT, n */);

/* Records Partoo's confirmation of a key, as obx_store_confirm (which hands its call here). */
OBX_MUST_CHECK enum obx_err obx_store_pg_confirm(struct obx_store *st, const char *channel_id,
                                                 const char *external_message_id,
                                                 const char *partoo_message_id,
                                                 const char *partoo_status, const char *reason);

/* ---- status -------------------------------------------------------------------------------- */

/* The message states, in the order of obx_store_pg_status's counts. */
#define OBX_PG_STATES 6
extern const char *const obx_store_pg_state_names[OBX_PG_STATES];

/* One node as `outbox status` shows it (borrowed during the callback). */
struct obx_store_pg_node_row {
    const char *name;
    int live;            /* its lease runs: it beat less than node_lease ago */
    int64_t beat_age_ms; /* since its last beat, by PostgreSQL's clock */
    const char *held;    /* the tenants it holds, "t1:3,t2:1" (tenant:epoch), "" for none */
};
typedef int (*obx_store_pg_node_fn)(void *ctx, const struct obx_store_pg_node_row *n);

/*
 * Reads the next tenant of a node row's `held` list at *p into name (truncated to n bytes)
 * and its epoch, and moves *p past it; 0 when the list is done.
 */
int obx_store_pg_held_next(const char **p, char *name, size_t n, int64_t *epoch);

/*
 * Counts the messages per state into counts (obx_store_pg_state_names' order; a count of
 * the table, so it reads every row) and calls on_node for every node, live ones first; a
 * non-zero return stops it.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_status(struct obx_pg *pg,
                                                int64_t counts[OBX_PG_STATES] /* OUT */,
                                                obx_store_pg_node_fn on_node, void *ctx);

/* Only the nodes of obx_store_pg_status, live ones first. */
OBX_MUST_CHECK enum obx_err obx_store_pg_list_nodes(struct obx_pg *pg, obx_store_pg_node_fn on_node,
                                                    void *ctx);

/* The same on serve's store (store thread); on SQLite there are none: OBX_OK, no call. */
OBX_MUST_CHECK enum obx_err obx_store_pg_list_nodes_of(struct obx_store *st,
                                                       obx_store_pg_node_fn on_node, void *ctx);

/* obx_store_confirm_timeouts and obx_store_recover on PostgreSQL (serve's periodic jobs). */
OBX_MUST_CHECK enum obx_err obx_store_pg_confirm_timeouts(struct obx_store *st, int64_t max_resends,
                                                          int64_t *resent /* OUT */,
                                                          int64_t *unconfirmed /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_recover(struct obx_store *st, int all,
                                                 int64_t *count /* OUT, may be NULL */);

/*
 * An operator's retry (retry = 1: a failed or accepted message queued again, its budget
 * reset) or cancel (0: a queued message), by key, as obx_store_retry and obx_store_cancel:
 * OBX_ENOTFOUND when no such message, OBX_ECONFLICT when it is in another state.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_transition_by_key(struct obx_store *st, int retry,
                                                           const char *channel_id,
                                                           const char *external_message_id,
                                                           const char *reason);

/*
 * Retention (lib/retention.c through obx_store_purge_batch, which decides): the messages in
 * state with id > after_id, by id, at most rows, each to fn until it returns nonzero (the
 * walk's end: that row is not counted); *last: the last id read.
 * Then obx_store_pg_delete_messages deletes the ids chosen (PostgreSQL's array text form)
 * that are still in that state, in one transaction.
 */
typedef int (*obx_store_pg_candidate_fn)(void *ctx, int64_t id, const char *channel_id,
                                         int64_t state_at_ms, int64_t created_at_ms);
OBX_MUST_CHECK enum obx_err obx_store_pg_purge_candidates(struct obx_store *st, const char *state,
                                                          int64_t after_id, int rows,
                                                          obx_store_pg_candidate_fn fn, void *ctx,
                                                          int64_t *last /* OUT */,
                                                          int *scanned /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_delete_messages(struct obx_store *st, const char *ids,
                                                         const char *state,
                                                         int64_t *deleted /* OUT */);

/* obx_store_bulk_transition on PostgreSQL (the dashboard's bulk retry and cancel). */
struct obx_store_dash_filter;
OBX_MUST_CHECK enum obx_err obx_store_pg_bulk_transition(struct obx_store *st,
                                                         const struct obx_store_dash_filter *f,
                                                         int retry, int max, int64_t now_ms,
                                                         const char *reason,
                                                         int64_t *touched /* OUT */);

/* obx_store_retry_failed on PostgreSQL: every failed message (of channel_id unless NULL). */
OBX_MUST_CHECK enum obx_err obx_store_pg_retry_failed(struct obx_store *st, const char *channel_id,
                                                      int64_t *count /* OUT */);

#endif
