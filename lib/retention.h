/*
 * retention: the one pass that deletes old data, for serve (hourly, see lib/cron.c) and
 * `outbox purge` alike.
 *
 * A pass is a sequence of short transactions ("steps"), each bounded by a number of rows
 * and a time budget, so that a writer waiting for the lock (an API commit in serve, or
 * serve while `outbox purge` runs) gets it within milliseconds. Between steps the caller
 * gives way: serve returns to its event loop and runs the next step on a zero-delay
 * timer; the CLI pauses briefly after each commit. The phases, in order:
 *
 *   messages (confirmed, cancelled, failed*, read-only accepted; per state by id)
 *     -> replies (delivered/acked)
 *     -> webhook events (bodies; then rows, i.e. replay hashes, past hashes_before_ms)
 *     -> audit seal (rows not yet in the chain; a prune only removes sealed rows)
 *     -> audit prune: find the prefix (reads, in steps), then checkpoint first and the
 *        rows behind it
 *     -> done
 *
 * (* failed only when asked: include_failed. Accepted is walked only when some channel is
 * read-only, in readonly_channels or a tenant's.)
 *
 * Each step commits what it did: a pass interrupted at any point (crash, SIGTERM, a
 * failed write) has lost nothing and leaves a database the next pass finishes.
 */
#ifndef OBX_RETENTION_H
#define OBX_RETENTION_H

#include "audit.h"
#include "config.h"
#include "store.h"

/* Rows and time per step by default: about 10 ms of work on a 2-vCPU VM (docs/benchmarks.md). */
#define OBX_RETENTION_BATCH_ROWS 500
#define OBX_RETENTION_BATCH_MS 8

struct obx_retention_opts {
    int64_t before_ms;        /* messages, replies, event bodies, audit rows older go */
    int64_t hashes_before_ms; /* webhook body hashes older go (capped at before_ms) */
    int include_failed;       /* also failed messages (`outbox purge` without --keep-failed) */
    /* readonly_channels; NULL when it names none (then accepted messages are walked only
     * if a tenant has a read-only channel) */
    int (*is_readonly)(void *ctx, const char *channel);
    void *ctx;
    int batch_rows;   /* rows per step; 0 = OBX_RETENTION_BATCH_ROWS */
    int64_t batch_ms; /* time per step; 0 = OBX_RETENTION_BATCH_MS, < 0 = no bound */
};

/* What a pass removed so far, and how many transactions it took. */
struct obx_retention_counts {
    int64_t messages, replies, event_bodies, event_hashes, audit_sealed, audit_rows;
    int64_t steps;
};

/* A pass in progress. Fields are private: use the API (it lives on the caller's stack). */
struct obx_retention {
    struct obx_retention_opts o;
    struct obx_retention_counts n;
    int phase;
    int state_idx;
    int64_t cursor;
    struct obx_audit_prune prune;
};

void obx_retention_init(struct obx_retention *r, const struct obx_retention_opts *o);

/*
 * The options of a pass for cfg at now_ms: what is older than age_ms goes (serve passes
 * cfg->retention_ms, `outbox purge` its --older-than), accepted messages of cfg's
 * read-only channels included; webhook body hashes stay webhook_hash_retention (never
 * less than age_ms; 0 = forever), so a replayed old event is still a duplicate.
 * Failed messages are not included: set include_failed for that.
 */
void obx_retention_opts_for(const struct obx_config *cfg, int64_t now_ms, int64_t age_ms,
                            struct obx_retention_opts *out /* OUT */);

/*
 * Runs one step (one transaction). *done is 1 once the pass is complete. On an error
 * the pass can be stepped again later (it resumes where it stopped) or dropped.
 */
OBX_MUST_CHECK enum obx_err obx_retention_step(struct obx_store *st, struct obx_retention *r,
                                               int *done /* OUT */);

/* The counts so far (borrowed from r). */
const struct obx_retention_counts *obx_retention_counts(const struct obx_retention *r);

#endif
