/*
 * store_dash_filter: the dashboard's message filter (struct obx_store_dash_filter) as SQL,
 * for the two store modules that run it: lib/store_dash.c counts with it, and lib/store.c,
 * which owns the outbox table, retries and cancels in bulk with it
 * (obx_store_bulk_transition). One text and one binding, so a count and the bulk action
 * that follows it select the same messages. Internal to lib/store*.c.
 */
#ifndef OBX_STORE_DASH_FILTER_H
#define OBX_STORE_DASH_FILTER_H

#include "db.h"
#include "store_dash.h"

/* The created_at window: an id range that the (state, id) or rowid walk can use, then exact. */
#define OBX_DASH_WINDOW_AND \
    " AND id >= ?7 AND id <= ?8 AND created_at_ms >= ?9 AND created_at_ms < ?10"

/*
 * The filter, walked through (state, id) so a count or a batch never reads the whole table.
 * ?4 is left to the statement (its LIMIT); ?5 and ?6 too (a bulk action's time and reason).
 */
#define OBX_DASH_FILTER_WHERE                               \
    " WHERE state = ?1 AND (?2 IS NULL OR channel_id = ?2)" \
    " AND (?3 IS NULL OR external_conversation_id = ?3)" OBX_DASH_WINDOW_AND

/* Binds f to the parameters the two macros above use (1-3, 7-10). */
void obx_store_dash_bind_filter(sqlite3_stmt *s, const struct obx_store_dash_filter *f);

#endif
