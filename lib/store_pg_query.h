/*
 * store_pg_query: query.h's reads on PostgreSQL (store_query.c hands them here for a store
 * on PostgreSQL): one message with its transitions and attempts, a page of messages, a
 * page of the inbox (the replies), and the counts of /v1/stats.
 * Rows are borrowed from libpq results and valid only during the callback, as on SQLite.
 * serve runs them on its store thread, between groups (OBX_STOREQ_OWN_TX), so they see
 * only what is committed.
 */
#ifndef OBX_STORE_PG_QUERY_H
#define OBX_STORE_PG_QUERY_H

#include "store_query.h"

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

/* The statistics of /v1/stats (store_query.h's counterparts). */
OBX_MUST_CHECK enum obx_err obx_store_pg_query_channel_states(struct obx_store *st,
                                                              int64_t confirmed_since_ms,
                                                              obx_channel_state_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_query_last_failure(struct obx_store *st,
                                                            const char *channel_id, char *error,
                                                            size_t n, int *http_status, int *found);
OBX_MUST_CHECK enum obx_err obx_store_pg_query_sent_by_channel(struct obx_store *st,
                                                               int64_t since_ms,
                                                               obx_channel_count_fn fn, void *ctx);
OBX_MUST_CHECK enum obx_err obx_store_pg_query_count_accepted_since(struct obx_store *st,
                                                                    int64_t since_ms, int64_t *out);

/* /metrics: "SELECT name, count" into the slots of names (store_query.c's count_by_name),
 * and the bytes of the outbox's schema. */
OBX_MUST_CHECK enum obx_err obx_store_pg_query_count_by_name(struct obx_store *st, const char *sql,
                                                             const char *const *names, int n,
                                                             int null_slot, int64_t *out);
OBX_MUST_CHECK enum obx_err obx_store_pg_query_db_bytes(struct obx_store *st, int64_t *out);

#endif
