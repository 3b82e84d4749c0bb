/*
 * store_pg_dash: channel pauses on PostgreSQL (0010: tables pauses, and actions, the audit
 * events of pauses and resumes), as store_dash.c on SQLite, which hands its calls here for a
 * PostgreSQL store. A pause notifies every node (0010's trigger); the claim skips a paused
 * channel and returns the time a message was held (lib/store_pg.c).
 */
#ifndef OBX_STORE_PG_DASH_H
#define OBX_STORE_PG_DASH_H

#include "store_dash.h"

OBX_MUST_CHECK enum obx_err obx_store_pg_dash_pause(struct obx_store *st, const char *scope,
                                                    const char *key, const char *reason,
                                                    const char *by, int *created);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_resume(struct obx_store *st, const char *scope,
                                                     const char *key, const char *by);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_pauses(struct obx_store *st, obx_pause_fn fn,
                                                     void *ctx);

/* The audit prune's deletion of actions behind a checkpoint (store_pg_audit.c). */
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_prune_actions(struct obx_store *st, int64_t xact_upto,
                                                            int64_t x_upto, int max,
                                                            int64_t *deleted);

/* Folds the counts' deltas (0011's dashboard_compact): serve's periodic job, once a second. */
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_compact(struct obx_store *st);

/* obx_store_dash_overview on PostgreSQL: the kept counts plus the deltas not folded yet. */
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_overview_tenants(struct obx_store *st,
                                                               obx_overview_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_overview(struct obx_store *st, obx_overview_fn fn,
                                                       void *ctx);

/* Each (minute, kind, count) kept for minutes in [first_minute, end_minute). */
typedef void (*obx_store_pg_minute_fn)(void *ctx, int64_t minute, const char *kind, int64_t n);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_history(struct obx_store *st, int64_t first_minute,
                                                      int64_t end_minute, obx_store_pg_minute_fn fn,
                                                      void *ctx);

/*
 * The dashboard's filter on PostgreSQL ($1 state, $2 channel, $3 conversation, each NULL for
 * any; $4..$5 the id range, $6..$7 the created_at window), for the count here and the bulk
 * actions of lib/store_pg.c, so that both select the same messages.
 */
#define OBX_STORE_PG_DASH_FILTER                                                    \
    "($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR channel_id = $2)"    \
    " AND ($3::text IS NULL OR external_conversation_id = $3) AND id >= $4::bigint" \
    " AND id <= $5::bigint AND created_at_ms >= $6::bigint AND created_at_ms < $7::bigint"

/* The filter's seven parameters ($1..$7 above) into vals, the numbers written in text. */
void obx_store_pg_dash_filter_params(const struct obx_store_dash_filter *f, char text[4][24],
                                     const char *vals[7]);

OBX_MUST_CHECK enum obx_err obx_store_pg_dash_count(struct obx_store *st,
                                                    const struct obx_store_dash_filter *f,
                                                    int64_t cap, int64_t *out);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_find(struct obx_store *st,
                                                   const char *external_message_id, int max,
                                                   obx_channel_fn fn, void *ctx);

OBX_MUST_CHECK enum obx_err obx_store_pg_dash_conversation(struct obx_store *st,
                                                           const char *channel_id,
                                                           const char *conversation, int limit,
                                                           obx_conv_fn fn, void *ctx,
                                                           int *truncated);

#endif
