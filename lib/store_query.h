/*
 * store_query: the store's reads behind the views of query.h (list, show, statistics, the
 * inbox, /metrics counts, service state). Only reads: it owns no table. Row types and
 * callbacks are query.h's; rows are borrowed and valid only during the callback.
 */
#ifndef OBX_STORE_QUERY_H
#define OBX_STORE_QUERY_H

#include "query.h"

/* The columns of struct obx_row in the order both backends read them (store_query.c,
 * store_pg_query.c). */
#define OBX_MESSAGE_COLUMNS                                                                 \
    "id, channel_id, external_message_id, business_id, external_conversation_id, content,"  \
    " sender_type, consumer_name, consumer_image, priority, state, state_reason, attempts," \
    " resends, created_at_ms, state_at_ms, next_attempt_at_ms, accepted_at_ms,"             \
    " confirmed_at_ms, last_http_status, last_error, partoo_message_id, partoo_status,"     \
    " unconfirmed_at_ms, tenant"

/*
 * One page of messages, newest first, filtered by q (state or unconfirmed, channel, id
 * cursor, created_at window); *next_cursor = the last id when the page is full (0 = end).
 */
OBX_MUST_CHECK enum obx_err obx_store_query_messages(struct obx_store *st,
                                                     const struct obx_list_query *q, obx_row_fn fn,
                                                     void *ctx, int64_t *next_cursor /* OUT */);

/*
 * One message by key, then its transitions and attempts (each callback may be NULL), all
 * from one snapshot. OBX_ENOTFOUND when absent.
 */
OBX_MUST_CHECK enum obx_err obx_store_query_message(struct obx_store *st, const char *channel_id,
                                                    const char *external_message_id,
                                                    obx_row_fn row_fn, obx_transition_fn tr_fn,
                                                    obx_attempt_fn at_fn, void *ctx);

/* The messages of one channel in one state (borrowed during the callback). */
struct obx_channel_state_row {
    const char *channel_id;
    const char *state;
    int64_t count;
    int64_t oldest_created_at_ms; /* of the queued ones; 0 in other states */
    int64_t unconfirmed;          /* given up on confirmation */
    int64_t confirmed_since;      /* confirmed at or after the since_ms asked */
};
typedef int (*obx_channel_state_fn)(void *ctx, const struct obx_channel_state_row *r);

/* Counts per (channel, state), sorted by channel. fn returns non-zero to stop. */
OBX_MUST_CHECK enum obx_err obx_store_query_channel_states(struct obx_store *st,
                                                           int64_t confirmed_since_ms,
                                                           obx_channel_state_fn fn, void *ctx);

/* Attempts answered 2xx since since_ms, per channel (unsorted). fn returns non-zero to stop. */
typedef int (*obx_channel_count_fn)(void *ctx, const char *channel_id, int64_t n);
OBX_MUST_CHECK enum obx_err obx_store_query_sent_by_channel(struct obx_store *st, int64_t since_ms,
                                                            obx_channel_count_fn fn, void *ctx);

/*
 * The error of the channel's most recent attempt that was not accepted: its text into
 * error[n] ("" when it had none) and its HTTP status (0 = none). *found = 0 when the channel
 * has no such attempt.
 */
OBX_MUST_CHECK enum obx_err obx_store_query_last_failure(struct obx_store *st,
                                                         const char *channel_id,
                                                         char *error /* OUT */, size_t n,
                                                         int *http_status /* OUT */,
                                                         int *found /* OUT */);

/* Attempts answered 2xx since since_ms. */
OBX_MUST_CHECK enum obx_err obx_store_query_count_accepted_since(struct obx_store *st,
                                                                 int64_t since_ms,
                                                                 int64_t *out /* OUT */);

/* Replies with id > after_id, oldest first, at most limit (acked ones when include_acked). */
OBX_MUST_CHECK enum obx_err obx_store_query_replies(struct obx_store *st, int64_t after_id,
                                                    int limit, int include_acked, obx_inbox_fn fn,
                                                    void *ctx, int64_t *next_cursor /* OUT */);

/* Replies per state: pending, delivered, acked, failed (in that order). */
OBX_MUST_CHECK enum obx_err obx_store_query_reply_states(struct obx_store *st, int64_t out[4]);

/*
 * Webhook events per interpretation outcome in the order of names[] (n entries): not yet
 * interpreted counts as names[0], an outcome not in names as names[n - 1].
 */
OBX_MUST_CHECK enum obx_err obx_store_query_event_outcomes(struct obx_store *st,
                                                           const char *const *names, int n,
                                                           int64_t *out /* OUT */);

/* Size in bytes of the database's pages. */
OBX_MUST_CHECK enum obx_err obx_store_query_db_bytes(struct obx_store *st, int64_t *out /* OUT */);

/* Every key/value serve published (service_state), by key. fn returns non-zero to stop. */
OBX_MUST_CHECK enum obx_err obx_store_query_service_state(struct obx_store *st, obx_state_fn fn,
                                                          void *ctx);

#endif
