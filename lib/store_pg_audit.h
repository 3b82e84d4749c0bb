/*
 * store_pg_audit: the audit chain's tables on PostgreSQL (store_audit.c hands its calls here
 * for a store on PostgreSQL; same items, same results). It owns audit_messages, audit_seals,
 * audit_checkpoints, audit_chain_modes and audit_log there, and reads the events
 * (transitions, attempts, actions) in chain order.
 *
 * Two things differ from SQLite (migrations/postgresql/0009_audit.sql explains both): a seal
 * covers the events of the transactions that have all ended, not an id range; and the
 * records, which SQLite writes with json_object(), are written here by
 * obx_store_pg_audit_json_object, byte for byte as SQLite does, so that one chain verifies
 * the same on either backend (and after a move from one to the other).
 */
#ifndef OBX_STORE_PG_AUDIT_H
#define OBX_STORE_PG_AUDIT_H

#include "buf.h"
#include "store_audit.h"

/* One member of a JSON object: value NULL writes null; number: value is written as is. */
struct obx_store_pg_audit_member {
    const char *key;
    const char *value;
    int number;
};

/*
 * Appends the object of the n members to b exactly as SQLite's json_object() writes it: no
 * spaces; in strings '"' and '\' escaped, \b \t \n \f \r, the other bytes below 0x20 as
 * \u00xx (lower-case hex), every other byte as it is.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_json_object(
    struct obx_buf *b, const struct obx_store_pg_audit_member *m, int n);

OBX_MUST_CHECK enum obx_err obx_store_pg_audit_modes(struct obx_store *st,
                                                     struct obx_audit_mode *out, int max, int *n);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_next_row_id(struct obx_store *st, int64_t *id);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_add_keyed_mode(struct obx_store *st, int64_t from_id,
                                                              const char *key_id, const char *mac);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_last_checkpoint(struct obx_store *st,
                                                               int64_t *upto_id, char hash[65],
                                                               int *found);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_last_legacy_hash(struct obx_store *st, char hash[65],
                                                                int *found);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_seal_legacy(struct obx_store *st, int max,
                                                           obx_audit_hash_fn fn, void *ctx, int *n);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_fill_sent_hashes(struct obx_store *st,
                                                                obx_audit_digest_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_last_seal(struct obx_store *st,
                                                         struct obx_audit_seal *out);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_lock(struct obx_store *st, int *got);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_next_seal(struct obx_store *st,
                                                         const struct obx_audit_seal *last, int max,
                                                         struct obx_audit_seal *next, int *any);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_add_seal(struct obx_store *st,
                                                        const struct obx_audit_seal *s);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_events(struct obx_store *st,
                                                      const struct obx_audit_seal *from,
                                                      const struct obx_audit_seal *to,
                                                      obx_audit_row_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_seals(struct obx_store *st, int64_t after,
                                                     obx_audit_seal_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_count_events_after(struct obx_store *st,
                                                                  const struct obx_audit_seal *base,
                                                                  int64_t *n);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_legacy_rows(struct obx_store *st, int64_t after,
                                                           obx_audit_row_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_export_legacy(struct obx_store *st, int64_t since_ms,
                                                             int64_t until_ms,
                                                             const char *channel_id,
                                                             const char *genesis,
                                                             obx_audit_row_fn fn, void *ctx);

/* The audit prune (store_audit.h's prune_scan and prune_batch) on PostgreSQL. */
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_prune_scan(struct obx_store *st, int64_t before_ms,
                                                          int max_rows, int64_t *upto_id,
                                                          char upto_hash[65], int *more);
OBX_MUST_CHECK enum obx_err obx_store_pg_audit_prune_batch(struct obx_store *st, int64_t upto_id,
                                                           const char *upto_hash, int max_rows,
                                                           int64_t *removed, int *more);

#endif
