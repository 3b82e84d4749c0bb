/*
 * store_queue: the store thread, serve's one writer (drawn in store_queue.c).
 *
 * The event loop never waits for a commit. It hands work to the store thread as jobs;
 * the thread runs every job queued meanwhile inside ONE transaction (group commit: one
 * fsync for the lot), then hands the jobs back to the loop, which calls each job's done
 * callback. So a 202, a webhook 200 or the next claim is acted on only after its COMMIT,
 * and the loop keeps sending while the previous round's outcomes are being written.
 *
 * Threads: a job's run() is called on the store thread with the thread's own store (its
 * own SQLite connection); its done() on the loop thread. Between submit and done the job
 * and whatever run() reads belong to the store thread: the loop must not touch them.
 * Jobs run in the order they were submitted.
 *
 * On PostgreSQL (a store from obx_store_pg_open_store) the same: one transaction per group,
 * each job's store_pg calls at savepoints of it, the connection opened again first when it
 * was lost. A job flagged OBX_STOREQ_OWN_TX runs between groups, outside every transaction
 * of the thread's: the API's reads, which must see only what is committed.
 */
#ifndef OBX_STORE_QUEUE_H
#define OBX_STORE_QUEUE_H

#include <event2/event.h>

#include "outbox.h"
#include "store.h"

struct obx_storeq;

/* Runs the job's work inside the group's transaction; its writes last only if it returns OBX_OK. */
typedef enum obx_err (*obx_storeq_run_fn)(struct obx_store *st, void *arg);
/* err: run()'s result, or the group's COMMIT error (then nothing of the job was written). */
typedef void (*obx_storeq_done_fn)(void *arg, enum obx_err err);

/* Flags of a job. */
#define OBX_STOREQ_OWN_TX 1 /* run() opens its own transactions (retention, checkpoints) */

/*
 * Most conversations one PostgreSQL transaction of the store thread writes into. Each takes
 * a transaction-scoped lock (0001's outbox_order and outbox_line_change), one entry of the
 * server's shared lock table until the COMMIT; that table holds about 12,000 on a default
 * server (max_locks_per_transaction 64 x max_connections 100), shared by every session.
 * Past it a statement fails with "out of shared memory" (docs/schema.md).
 */
#define OBX_STOREQ_PG_GROUP_WEIGHT 4000

/* One unit of work. Owned by the submitter, who must keep it alive until done() runs. */
struct obx_storeq_job {
    obx_storeq_run_fn run;
    obx_storeq_done_fn done; /* may be NULL */
    void *arg;
    int flags;
    /* The conversations it may write into, at most (0 counts as 1): on PostgreSQL a group
     * takes jobs up to OBX_STOREQ_PG_GROUP_WEIGHT of them (and always one). */
    int64_t weight;
    /* private to store_queue.c */
    enum obx_err err;
    int sync_done;
    struct obx_storeq_job *next;
};

/* What the thread has done so far (for /metrics and the benchmarks). */
struct obx_storeq_stats {
    int64_t groups; /* transactions committed or failed */
    int64_t jobs;   /* jobs run */
    int64_t failed_groups;
    int64_t max_group; /* most jobs in one transaction */
};

/*
 * Starts the store thread on st, which it owns from now on (freed by obx_storeq_free):
 * no other thread may use st again. Done callbacks run on base's loop.
 */
OBX_MUST_CHECK enum obx_err obx_storeq_new(struct event_base *base, struct obx_store *st,
                                           struct obx_storeq **out /* OUT */);

/* Queues a job (loop thread). */
void obx_storeq_submit(struct obx_storeq *q, struct obx_storeq_job *job);

/*
 * Runs run(st, arg) on the store thread and waits for its group's COMMIT; returns its
 * result. For work outside the loop's hot paths (start-up, the CLI-like operator calls):
 * the caller blocks for one group commit.
 */
OBX_MUST_CHECK enum obx_err obx_storeq_call(struct obx_storeq *q, obx_storeq_run_fn run, void *arg);

/*
 * Waits until every submitted job has run and calls the done callbacks on this (the
 * loop's) thread, again and again while they submit more. Before freeing the modules
 * whose jobs may still be queued.
 */
void obx_storeq_drain(struct obx_storeq *q);

void obx_storeq_stats(struct obx_storeq *q, struct obx_storeq_stats *out /* OUT */);

/* Drains, stops and joins the thread, frees the store. */
void obx_storeq_free(struct obx_storeq *q);

#endif
