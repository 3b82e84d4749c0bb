/*
 * store_dash: the dashboard's part of the store (SPEC §13), beyond the plain /v1 views:
 * pauses that hold messages, per-minute history for the charts, kept per-state counts,
 * bounded counts and bulk retry/cancel over a filter. Tables: pauses, stats_minute and
 * state_counts (migrations/0008), and actions (the audit events of pauses and resumes:
 * appended here, deleted here for the audit prune). The bulk actions' UPDATEs are
 * lib/store.c's, the owner of outbox (obx_store_bulk_transition).
 */
#ifndef OBX_STORE_DASH_H
#define OBX_STORE_DASH_H

#include "buf.h"
#include "store.h"

/* Pause scopes: a channel today; a tenant once SPEC §11 lands (the table takes both). */
#define OBX_PAUSE_CHANNEL "channel"
#define OBX_PAUSE_TENANT "tenant"

/*
 * Holds every queued message of (scope, key): the claim skips them. *created = 0 when the
 * pause already held (idempotent; the first reason stays). A new pause and a resume each
 * append an audit event (table actions: what, by whom, when) in their own transaction.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_pause(struct obx_store *st, const char *scope,
                                                 const char *key, const char *reason,
                                                 const char *by, int *created /* OUT */);

/* Ends the pause of (scope, key). OBX_ENOTFOUND when none holds. */
OBX_MUST_CHECK enum obx_err obx_store_dash_resume(struct obx_store *st, const char *scope,
                                                  const char *key, const char *by);

/* An open pause (borrowed during the callback). */
struct obx_pause_row {
    const char *scope;
    const char *key;
    const char *reason;
    const char *by;
    int64_t paused_at_ms;
};
typedef int (*obx_pause_fn)(void *ctx, const struct obx_pause_row *p);

/* The open pauses, by scope and key. */
OBX_MUST_CHECK enum obx_err obx_store_dash_pauses(struct obx_store *st, obx_pause_fn fn, void *ctx);

/*
 * Appends "holds":[{"scope","channel_id"|"tenant","reason","by","since"}...] to the JSON
 * object that b ends with (the stats document of /v1/stats and `outbox status --json`).
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_append_holds(struct obx_store *st, struct obx_buf *b);

/* The same array alone ([{...}...]), appended to b. */
OBX_MUST_CHECK enum obx_err obx_store_dash_holds(struct obx_store *st, struct obx_buf *b);

/*
 * How long the channel or its tenant ("" or NULL: default) was held between since_ms and
 * now_ms, overlaps counted once: max_age does not count it.
 * Only asked when a message is about to fail by age, so the interval scan is rare.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_held_ms(struct obx_store *st, const char *channel_id,
                                                   const char *tenant, int64_t since_ms,
                                                   int64_t now_ms, int64_t *out /* OUT */);

/* Counts of one kind per bucket: sent, accepted, failed, confirmed. */
struct obx_history_point {
    int64_t at_ms; /* bucket start */
    int64_t sent, accepted, failed, confirmed;
};

/*
 * n buckets of bucket_ms ending with the one holding now_ms (oldest first), from the
 * per-minute counts the triggers keep. out has room for n points.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_history(struct obx_store *st, int64_t now_ms,
                                                   int64_t bucket_ms, int n,
                                                   struct obx_history_point *out /* OUT */);

/*
 * A created_at window [after_ms, before_ms) and the id range [min_id, max_id] that holds it,
 * from obx_store_dash_id_window(). 0 = no bound. The SQL keeps the exact created_at predicate, so
 * the id range only narrows the scan, and the window is answered without an index on created_at.
 */
struct obx_id_window {
    int64_t after_ms;  /* created_at >= after_ms */
    int64_t before_ms; /* created_at < before_ms */
    int64_t min_id;
    int64_t max_id;
};

/*
 * Fills w->min_id and w->max_id from w->after_ms and w->before_ms by binary search over ids
 * (a few dozen primary-key lookups), assuming created_at does not decrease as ids grow: ids
 * are handed out in commit order and created_at is the clock at enqueue. If the wall clock was
 * set back, messages created after the jump with times inside the window may fall outside the
 * id range and be left out (never a message outside the window); the list is exact again once
 * the clock has passed its old value.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_id_window(struct obx_store *st,
                                                     struct obx_id_window *w /* IN/OUT */);

/* A filter over messages for counts and bulk actions (NULL = any). */
struct obx_store_dash_filter {
    const char *state;
    const char *channel_id;
    const char *conversation;
    struct obx_id_window win; /* created_at window; all zero = any time */
};

/* Counts matching messages, stopping at cap (*out == cap means "cap or more"). */
OBX_MUST_CHECK enum obx_err obx_store_dash_count(struct obx_store *st,
                                                 const struct obx_store_dash_filter *f, int64_t cap,
                                                 int64_t *out /* OUT */);

/*
 * Retries (failed|accepted -> queued) or cancels (queued -> cancelled) at most max messages
 * matching f, oldest first, in one transaction with reason as the transition's reason.
 * Touched rows leave the filter's state, so calling again continues where this one stopped.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_bulk(struct obx_store *st,
                                                const struct obx_store_dash_filter *f, int retry,
                                                int max, const char *reason,
                                                int64_t *touched /* OUT */);

/*
 * The audit prune's part of the actions table (its owner is this module): deletes up to max
 * actions with id <= upto_id (the ones the checkpoint's seal covers), oldest first, inside
 * the caller's transaction (obx_store_audit_prune_batch's); *deleted gets how many.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_prune_actions(struct obx_store *st, int64_t upto_id,
                                                         int max, int64_t *deleted /* OUT */);

/* A message of a conversation (borrowed during the callback). */
struct obx_conv_row {
    int64_t id;
    const char *external_message_id;
    const char *state;
    const char *state_reason;
    int attempts;
    int head; /* 1: the conversation's next message to send */
    int64_t created_at_ms;
    int64_t state_at_ms;
    int64_t next_attempt_at_ms;
    const char *last_error;
};
typedef int (*obx_conv_fn)(void *ctx, const struct obx_conv_row *r);

/*
 * The unfinished messages of a conversation in sending order (its chain: the head first,
 * then each one waiting for the one before), or its last message when nothing is
 * unfinished; at most limit, *truncated = 1 when there were more. Walks the chain from the
 * conversation's tail by primary key: no index on the conversation (docs/schema.md says
 * why there is none).
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_conversation(struct obx_store *st,
                                                        const char *channel_id,
                                                        const char *conversation, int limit,
                                                        obx_conv_fn fn, void *ctx,
                                                        int *truncated /* OUT */);

/*
 * Calls fn with every channel holding a message external_message_id (at most max channels
 * visited): one index seek per channel, so a lookup without a channel stays cheap.
 */
typedef int (*obx_channel_fn)(void *ctx, const char *channel_id);
OBX_MUST_CHECK enum obx_err obx_store_dash_find(struct obx_store *st,
                                                const char *external_message_id, int max,
                                                obx_channel_fn fn, void *ctx);

/*
 * Adds the items a batch inserted (result OBX_ENQ_ACCEPTED) to the overview's counts, one
 * statement per run of the same channel. Called by obx_store_enqueue_batch inside its
 * transaction. (Plain-SQL rows are counted by a trigger when the store links them.)
 */
struct obx_enq_item;
OBX_MUST_CHECK enum obx_err obx_store_dash_count_inserted(struct obx_store *st,
                                                          const struct obx_enq_item *items,
                                                          size_t n);

/* One channel's line of the overview, or one tenant's (channel_id NULL). */
struct obx_overview_row {
    const char *channel_id;
    const char *tenant;           /* the owner; "default" when no tenant owns the channel */
    int64_t counts[OBX_N_STATES]; /* indexed by enum obx_state */
    int64_t oldest_queued_at_ms;  /* 0 = nothing queued (channels only) */
};
typedef int (*obx_overview_fn)(void *ctx, const struct obx_overview_row *r);

/*
 * The overview per channel, sorted by channel id, from state_counts (a few rows) and one
 * index seek per channel with queued messages for the oldest one.
 */
OBX_MUST_CHECK enum obx_err obx_store_dash_overview(struct obx_store *st, obx_overview_fn fn,
                                                    void *ctx);

/* The same counts summed per tenant (SPEC §13: counts per state, tenant and channel), by
 * name; "default" sums the channels no tenant owns. */
OBX_MUST_CHECK enum obx_err obx_store_dash_overview_tenants(struct obx_store *st,
                                                            obx_overview_fn fn, void *ctx);

#endif
