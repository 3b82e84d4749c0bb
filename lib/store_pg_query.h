/*
 * store_pg_query: query.h's reads on PostgreSQL (store_query.c hands them here for a store
 * on PostgreSQL): one message with its transitions and attempts, a page of messages, and
 * a page of the inbox (the replies).
 * Rows are borrowed from libpq results and valid only during the callback, as on SQLite.
 * serve runs them on its store thread, between groups (OBX_STOREQ_OWN_TX), so they see
 * only what is committed.
 */
#ifndef OBX_STORE_PG_QUERY_H
#define OBX_STORE_PG_QUERY_H

#include "query.h"

OBX_MUST_CHECK enum obx_err obx_store_pg_query_message(struct obx_store *st, const char *channel_id,
                                                       const char *external_message_id,
                                                       obx_row_fn row_fn, obx_transition_fn tr_fn,
                                                       obx_attempt_fn at_fn, void *ctx);

OBX_MUST_CHECK enum obx_err obx_store_pg_query_messages(struct obx_store *st,
                                                        const struct obx_list_query *q,
                                                        obx_row_fn fn, void *ctx,
                                                        int64_t *next_cursor /* OUT */);

OBX_MUST_CHECK enum obx_err obx_store_pg_query_replies(struct obx_store *st, int64_t after_id,
                                                       int limit, int include_acked,
                                                       obx_inbox_fn fn, void *ctx,
                                                       int64_t *next_cursor /* OUT */);

#endif
