/*
 * store_audit: the audit trail's tables (audit.h explains the chain). It owns the events,
 * transitions (rows appended by trigger on every state change) and attempts (appended here
 * for obx_store_finish), deleted here behind a checkpoint, and the chain's own tables:
 * audit_log (legacy rows), audit_seals, audit_checkpoints, audit_chain_modes and
 * audit_messages. It reads the events (actions too) in chain order. This module only reads
 * and writes rows; hashing, keys and the verdicts are audit.c's.
 *
 * Writes run inside the caller's transaction (obx_store_tx_begin), except
 * obx_store_audit_prune_batch, which opens its own.
 */
#ifndef OBX_STORE_AUDIT_H
#define OBX_STORE_AUDIT_H

#include "store.h"

/*
 * One row of the chain in canonical form (audit.h): a legacy audit_log row or an event
 * (transition, attempt, action). Borrowed during the callback; texts are "" for SQL NULL.
 */
struct obx_audit_row {
    int64_t id;
    int64_t at_ms;
    const char *kind;
    const char *channel_id;
    const char *external_message_id;
    const char *record;
    const char *hash;      /* legacy rows: the stored hash, NULL = unsealed; events: NULL */
    const char *prev_hash; /* obx_store_audit_export_legacy only: the row before's hash */
};
/* Returns 0 to go on, non-zero to stop. */
typedef int (*obx_audit_row_fn)(void *ctx, const struct obx_audit_row *r);

/* One audit_chain_modes row: from which row on the chain is keyed, under which key. */
struct obx_audit_mode {
    int64_t from_id;
    int keyed; /* mode hmac-sha256 */
    char key_id[17];
    char mac[65];
};

/*
 * One audit_seals row: the events it covers, by id range of each event table, or on
 * PostgreSQL (xact_upto > 0) those of the transactions up to xact_upto (0009_audit.sql).
 */
struct obx_audit_seal {
    int64_t id;
    int64_t t_upto; /* transitions_upto */
    int64_t a_upto; /* attempts_upto */
    int64_t events;
    int64_t at_ms;
    int64_t x_upto;    /* actions_upto */
    int64_t xact_upto; /* PostgreSQL: the last transaction id covered; 0: id ranges */
    char hash[65];     /* "" for the migration's base row */
};
/* Returns 0 to go on, non-zero to stop. */
typedef int (*obx_audit_seal_fn)(void *ctx, const struct obx_audit_seal *s);

/* ---- the events --------------------------------------------------------------------- */

/*
 * Appends the record of one finished attempt (a->message_id, times, HTTP status, outcome,
 * error, excerpt) to attempts, inside the caller's transaction (obx_store_finish's).
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_add_attempt(struct obx_store *st,
                                                        const struct obx_attempt *a);

/* ---- keying -------------------------------------------------------------------------- */

/*
 * The mode rows in chain order into out (room for max); *n gets how many. OBX_ECONFIG when
 * there are more than max: more keyings than any real history, refused rather than guessed.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_modes(struct obx_store *st,
                                                  struct obx_audit_mode *out /* OUT */, int max,
                                                  int *n /* OUT */);

/* The id the next sealed row will have: the first unsealed legacy row, else the next seal. */
OBX_MUST_CHECK enum obx_err obx_store_audit_next_row_id(struct obx_store *st,
                                                        int64_t *id /* OUT */);

/* Records that the chain is keyed (hmac-sha256) with key_id from row from_id on, now. */
OBX_MUST_CHECK enum obx_err obx_store_audit_add_keyed_mode(struct obx_store *st, int64_t from_id,
                                                           const char *key_id, const char *mac);

/* ---- where the chain starts ---------------------------------------------------------- */

/* The latest checkpoint (a prune's): the row it covers up to and the hash there. */
OBX_MUST_CHECK enum obx_err obx_store_audit_last_checkpoint(struct obx_store *st,
                                                            int64_t *upto_id /* OUT */,
                                                            char hash[65] /* OUT */,
                                                            int *found /* OUT */);

/* The hash of the last sealed legacy row. */
OBX_MUST_CHECK enum obx_err obx_store_audit_last_legacy_hash(struct obx_store *st,
                                                             char hash[65] /* OUT */,
                                                             int *found /* OUT */);

/* ---- sealing ------------------------------------------------------------------------- */

/* Computes a row's hash into hash; an error stops the seal. */
typedef enum obx_err (*obx_audit_hash_fn)(void *ctx, const struct obx_audit_row *r,
                                          char hash[65] /* OUT */);

/*
 * Seals up to max unsealed legacy rows in id order: fn gives each one's hash, which is
 * stored. *n gets how many rows were read.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_seal_legacy(struct obx_store *st, int max,
                                                        obx_audit_hash_fn fn, void *ctx,
                                                        int *n /* OUT */);

/* SHA-256 of len bytes of data into out; an error stops the fill. */
typedef enum obx_err (*obx_audit_digest_fn)(void *ctx, const void *data, size_t len,
                                            unsigned char out[32] /* OUT */);

/*
 * Fills audit_messages.sent_sha256 of every message that has none yet: fn digests what was
 * sent (audit.h, "sent_sha256"); a message already gone gets the empty value.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_fill_sent_hashes(struct obx_store *st,
                                                             obx_audit_digest_fn fn, void *ctx);

/* The latest seal (all zero when there is none). */
OBX_MUST_CHECK enum obx_err obx_store_audit_last_seal(struct obx_store *st,
                                                      struct obx_audit_seal *out /* OUT */);

/*
 * *got = 1 when this transaction may seal: on PostgreSQL, where several nodes seal, one at a
 * time (a transaction-level advisory lock; 0 while another holds it); SQLite's write
 * transaction is enough.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_lock(struct obx_store *st, int *got /* OUT */);

/*
 * What the seal after last may cover: *next = last with new ranges and id last->id + 1, and
 * *any = 0 when nothing new is there. SQLite: up to the highest id of each event table, at
 * most max ids further. PostgreSQL: the transactions that have all ended (below the oldest
 * one still running), at most max transaction ids past the first with events.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_next_seal(struct obx_store *st,
                                                      const struct obx_audit_seal *last, int max,
                                                      struct obx_audit_seal *next /* OUT */,
                                                      int *any /* OUT */);

/* Appends a seal with s->id (SQLite: the next id), its ranges, events, at_ms and hash. */
OBX_MUST_CHECK enum obx_err obx_store_audit_add_seal(struct obx_store *st,
                                                     const struct obx_audit_seal *s);

/* ---- reading the chain --------------------------------------------------------------- */

/*
 * The events after from's ranges up to to's, in chain order (transitions, then attempts,
 * then actions, each by id) as canonical rows.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_events(struct obx_store *st,
                                                   const struct obx_audit_seal *from,
                                                   const struct obx_audit_seal *to,
                                                   obx_audit_row_fn fn, void *ctx);

/* The seals from the last one at or below after (the base to go on from) on, by id. */
OBX_MUST_CHECK enum obx_err obx_store_audit_seals(struct obx_store *st, int64_t after,
                                                  obx_audit_seal_fn fn, void *ctx);

/* *n = the events after base's ranges (not sealed yet). */
OBX_MUST_CHECK enum obx_err obx_store_audit_count_events_after(struct obx_store *st,
                                                               const struct obx_audit_seal *base,
                                                               int64_t *n /* OUT */);

/* The legacy rows with id > after, by id (hash NULL when unsealed). */
OBX_MUST_CHECK enum obx_err obx_store_audit_legacy_rows(struct obx_store *st, int64_t after,
                                                        obx_audit_row_fn fn, void *ctx);

/*
 * The legacy rows with since_ms <= at_ms < until_ms (of channel_id unless NULL), by id, each
 * with prev_hash: the row before's hash in the whole chain (the checkpoint's, else genesis).
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_export_legacy(struct obx_store *st, int64_t since_ms,
                                                          int64_t until_ms, const char *channel_id,
                                                          const char *genesis, obx_audit_row_fn fn,
                                                          void *ctx);

/* ---- pruning ------------------------------------------------------------------------- */

/*
 * Walks up to max_rows rows of the chain after *upto_id (legacy rows and seals) while they
 * are sealed and older than before_ms, moving *upto_id and upto_hash to the last such row.
 * *more = 1 when the walk may go on.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_prune_scan(struct obx_store *st, int64_t before_ms,
                                                       int max_rows, int64_t *upto_id /* IN/OUT */,
                                                       char upto_hash[65] /* IN/OUT */,
                                                       int *more /* OUT */);

/*
 * One transaction: writes the checkpoint (upto_id, upto_hash) unless one covers it already,
 * then deletes up to max_rows rows behind the latest checkpoint: legacy rows, then the events
 * whose message is gone, actions (through obx_store_dash_prune_actions: lib/store_dash.c
 * owns that table), and the seals before the checkpoint's. *removed counts the
 * legacy rows and events deleted; *more = 1 when max_rows were.
 */
OBX_MUST_CHECK enum obx_err obx_store_audit_prune_batch(struct obx_store *st, int64_t upto_id,
                                                        const char *upto_hash, int max_rows,
                                                        int64_t *removed /* OUT */,
                                                        int *more /* OUT */);

#endif
