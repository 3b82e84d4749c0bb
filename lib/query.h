/*
 * query: read-only views of the outbox for the CLI and the producer API: list,
 * show, statistics and the inbox. Rows are borrowed from SQLite
 * statements and valid only during the callback that receives them.
 */
#ifndef OBX_QUERY_H
#define OBX_QUERY_H

#include "store.h"
#include "store_dash.h"


/* A message row, borrowed from the statement: valid only during the callback. */
struct obx_row {
    int64_t id;
    struct obx_msg msg;
    const char *state;
    const char *state_reason;
    int attempts;
    int resends;
    int64_t created_at_ms;
    int64_t state_at_ms;
    int64_t next_attempt_at_ms;
    int64_t accepted_at_ms;  /* 0 = never */
    int64_t confirmed_at_ms; /* 0 = never */
    int last_http_status;    /* 0 = none */
    const char *last_error;  /* NULL = none */
    const char *partoo_message_id;
    const char *partoo_status;
    int64_t unconfirmed_at_ms; /* 0 = not given up on confirmation */
    const char *tenant;        /* the tenant owning the channel, NULL = none (SPEC §11) */
};

struct obx_transition_row {
    int64_t id;
    int64_t message_id;
    int64_t at_ms;
    const char *from_state;
    const char *to_state;
    const char *reason;
};

struct obx_attempt_row {
    int64_t id;
    int64_t message_id;
    int64_t started_at_ms;
    int64_t duration_ms;
    int http_status; /* 0 = none */
    const char *outcome;
    const char *error;
    const char *excerpt;
};

/* Callbacks return 0 to continue, non-zero to stop (the value is passed back). */
typedef int (*obx_row_fn)(void *ctx, const struct obx_row *r);
typedef int (*obx_transition_fn)(void *ctx, const struct obx_transition_row *t);
typedef int (*obx_attempt_fn)(void *ctx, const struct obx_attempt_row *a);

/* Filter and page for obx_query_list(): newest first. */
struct obx_list_query {
    const char *state;        /* NULL = any */
    const char *channel_id;   /* NULL = any */
    int unconfirmed;          /* 1 = only accepted messages given up on confirmation */
    int64_t before_id;        /* cursor: only ids below it; 0 = from the newest */
    int limit;                /* 1..1000 */
    struct obx_id_window win; /* created_at window; all zero = any time */
};

/* Lists messages; *next_cursor gets the id to pass as before_id for the next page (0 = end). */
OBX_MUST_CHECK enum obx_err obx_query_list(struct obx_store *st, const struct obx_list_query *q,
                                           obx_row_fn fn, void *ctx,
                                           int64_t *next_cursor /* OUT */);

/* One message by key with its transitions and attempts. OBX_ENOTFOUND when absent. */
OBX_MUST_CHECK enum obx_err obx_query_get(struct obx_store *st, const char *channel_id,
                                          const char *external_message_id, obx_row_fn row_fn,
                                          obx_transition_fn tr_fn, obx_attempt_fn at_fn, void *ctx);

/* Counts per channel and state (indexed by enum obx_state). */
struct obx_channel_stats {
    char channel_id[256];
    int64_t counts[6];           /* indexed by enum obx_state */
    int64_t oldest_queued_at_ms; /* 0 = nothing queued */
    int64_t unconfirmed;         /* accepted, awaiting confirmation, resends exhausted */
    int64_t confirmed_24h;       /* confirmed in the last 24 hours */
    int64_t sent_last_min;       /* attempts answered 2xx in the last minute */
    char last_error[256];        /* of the most recent failed attempt, "" = none */
};


/*
 * Per-channel statistics, sorted by channel id. *out is owned by the caller
 * (obx_free); *n gets the number of channels.
 */
OBX_MUST_CHECK enum obx_err obx_query_stats(struct obx_store *st,
                                            struct obx_channel_stats **out /* OUT */,
                                            size_t *n /* OUT */);

/* One key of the state `outbox serve` publishes (service_state table). */
typedef int (*obx_state_fn)(void *ctx, const char *key, const char *value, int64_t updated_at_ms);

OBX_MUST_CHECK enum obx_err obx_query_service_state(struct obx_store *st, obx_state_fn fn,
                                                    void *ctx);

/* service_state keys: webhooks refused since serve started, by reason. */
#define OBX_STATE_WEBHOOKS_REJECTED_SIGNATURE "webhooks_rejected_signature"
#define OBX_STATE_WEBHOOKS_REJECTED_TOO_LARGE "webhooks_rejected_too_large"

/*
 * The webhooks the running (or last) serve refused since it started: 401 for the signature,
 * 413 over webhook_max_body_bytes. Both 0 when serve never published them.
 */
OBX_MUST_CHECK enum obx_err obx_query_webhook_rejections(struct obx_store *st,
                                                         int64_t *bad_signature /* OUT */,
                                                         int64_t *too_large /* OUT */);

/* The number of messages sent (attempts answered 2xx) since since_ms. */
OBX_MUST_CHECK enum obx_err obx_query_count_accepted_since(struct obx_store *st, int64_t since_ms,
                                                           int64_t *out /* OUT */);

/* A reply in the inbox (borrowed, valid during the callback). */
struct obx_inbox_row {
    int64_t id;
    const char *partoo_message_id;
    const char *channel_id;
    const char *external_conversation_id;
    const char *partoo_conversation_id;
    const char *business_id;
    const char *sender_type;
    const char *sender_label;
    const char *content_type;
    const char *content;
    const char *message_date;
    const char *state; /* pending, delivered, acked, failed */
    int attempts;
    int last_http_status; /* 0 = none */
    const char *last_error;
    int64_t received_at_ms;
    int64_t delivered_at_ms; /* 0 = not yet */
    int64_t acked_at_ms;     /* 0 = not yet */
};
typedef int (*obx_inbox_fn)(void *ctx, const struct obx_inbox_row *r);

/*
 * Lists inbox rows with id > after_id, oldest first, at most limit; acked rows
 * only when include_acked. *next_cursor gets the last id when the page is full.
 */
OBX_MUST_CHECK enum obx_err obx_query_inbox(struct obx_store *st, int64_t after_id, int limit,
                                            int include_acked, obx_inbox_fn fn, void *ctx,
                                            int64_t *next_cursor /* OUT */);

/* Inbox rows per state: pending, delivered, acked, failed (in that order). */
OBX_MUST_CHECK enum obx_err obx_query_inbox_counts(struct obx_store *st, int64_t out[4]);

/*
 * Webhook events per processing outcome, in the order of names[] (n entries);
 * NULL outcome counts as names[0] ("pending"), unknown ones as the last name.
 */
OBX_MUST_CHECK enum obx_err obx_query_webhook_outcomes(struct obx_store *st,
                                                       const char *const *names, int n,
                                                       int64_t *out);

/* Size in bytes of the database file's pages. */
OBX_MUST_CHECK enum obx_err obx_query_db_bytes(struct obx_store *st, int64_t *out /* OUT */);

#endif
