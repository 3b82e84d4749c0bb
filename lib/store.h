/*
 * store: the message state machine on top of SQLite (drawn in store.c).
 *
 * One struct obx_store per thread: serve's store thread (store_queue.h) writes through
 * one, its loop reads through another, the CLI has its own. Every function that writes
 * runs in a single transaction and returns only after COMMIT (or rollback on error);
 * inside a transaction already open (the store thread's group) it runs at a savepoint
 * and its COMMIT is the group's.
 *
 * On PostgreSQL (a store from obx_store_pg_open_store, issue 15 in progress) the functions
 * serve's delivery, enqueue, tenants and webhooks use hand their calls to store_pg*.c,
 * which take the same items and give the same results; the others are SQLite's only so far
 * (serve answers 501 for the routes that need them, the CLI refuses a PostgreSQL db).
 */
#ifndef OBX_STORE_H
#define OBX_STORE_H

#include "clock.h"
#include "db.h"
#include "msg.h"
#include "outbox.h"

/* Where a tenant's round-robin over businesses stands: the lane it served last. */
struct obx_claim_cursor {
    int64_t priority;
    char business[256]; /* "" = start of the level */
};

struct obx_pg;

struct obx_store {
    struct obx_db *db;          /* SQLite; NULL on PostgreSQL */
    struct obx_pg *pg;          /* PostgreSQL (store_pg.h); NULL on SQLite */
    char *node;                 /* PostgreSQL: this node's name, for the fences; owned */
    int pg_loop;                /* PostgreSQL: the loop's store, without a connection */
    struct obx_clock *clock;    /* borrowed; real clock unless a test swaps it */
    int64_t max_db_size;        /* bytes, 0 = no quota */
    int64_t pg_bytes;           /* PostgreSQL: the outbox's size when last measured */
    int64_t pg_bytes_mono_ms;   /* ... and when (obx_store_check_quota, once a second) */
    int64_t wal_pages;          /* the WAL checkpoint interval asked for at open */
    uint64_t lease_seq;         /* makes lease tokens unique within this process */
    int64_t lease_base;         /* random per open, so tokens differ across processes */
    struct obx_claim_cursor rr; /* obx_store_claim's round-robin (the default tenant's) */
    /* The keyed audit chain (audit.h): set by obx_audit_use_key, else plain SHA-256. */
    int audit_keyed;
    int audit_key_start; /* may start the keyed segment (serve), not only continue it */
    unsigned char audit_key[32];
    char audit_key_id[17];
};

/* The states of SPEC §2. */
enum obx_state {
    OBX_ST_QUEUED = 0,
    OBX_ST_SENDING,
    OBX_ST_ACCEPTED,
    OBX_ST_CONFIRMED,
    OBX_ST_FAILED,
    OBX_ST_CANCELLED,
};
#define OBX_N_STATES 6

/* "queued", ... ; and the reverse (-1 when unknown). */
const char *obx_store_state_name(enum obx_state s);
int obx_store_state_parse(const char *s);

/*
 * How long a statement waits for another process's write lock before failing with
 * OBX_EBUSY. Serve's store thread waits up to a second (off the loop, a wait costs only
 * that group's latency); the CLI keeps the default.
 */
void obx_store_set_busy_timeout(struct obx_store *st, int64_t ms);

/*
 * Ends whatever read is still open on this connection. A connection that only reads while
 * another one writes (serve's loop) calls it after each piece of reading work, so that it
 * never keeps an old snapshot (lib/db.h, obx_db_end_reads).
 */
void obx_store_end_reads(struct obx_store *st);

/*
 * Refuses every write on this connection from now on (OBX_EREADONLY): serve's loop
 * connection, so that a write that bypasses the store thread fails loudly in tests.
 */
OBX_MUST_CHECK enum obx_err obx_store_forbid_writes(struct obx_store *st);

/* ---- enqueue ---------------------------------------------------------------- */

/* One item of a batch enqueue: the message in, the result out. */
struct obx_enq_item {
    struct obx_msg msg;             /* in: borrowed */
    enum obx_err err;               /* out: OBX_OK, OBX_EINVAL (see fe), OBX_ECONFLICT */
    enum obx_enqueue_result result; /* out, when err == OBX_OK */
    int64_t id;                     /* out: row id (new or existing), 0 when invalid */
    char state[16];                 /* out: current state of the row */
    struct obx_field_error fe;      /* out, when err == OBX_EINVAL */
};

/*
 * Enqueues n items in one transaction. Invalid and conflicting items are reported
 * per item and do not stop the others. Returns the transaction's error (OBX_EBUSY,
 * OBX_EFULL, OBX_EREADONLY, OBX_EQUOTA, ...): then nothing was written and every
 * item's result is meaningless.
 */
OBX_MUST_CHECK enum obx_err obx_store_enqueue_batch(struct obx_store *st,
                                                    struct obx_enq_item *items, size_t n,
                                                    const struct obx_msg_limits *lim);

/*
 * OBX_EQUOTA when the database has reached max_db_size (new messages are refused). On
 * PostgreSQL the outbox's own tables count (not the CRM's), measured at most once a second.
 */
OBX_MUST_CHECK enum obx_err obx_store_check_quota(struct obx_store *st);

/* ---- delivery ---------------------------------------------------------------- */

/* A claimed message, owned by the caller until obx_store_claimed_release(). */
struct obx_claimed {
    int64_t id;
    int64_t lease_token;
    int attempts;         /* attempts made before this claim */
    int counted_attempts; /* of which count toward max_attempts */
    int resends;
    int64_t created_at_ms;
    int64_t accepted_at_ms; /* 0 unless this is a confirmation re-send */
    struct obx_msg msg;     /* strings point into `strings` */
    char *strings;          /* one allocation holding every string of msg */
    char tenant[65];        /* the tenant owning the channel; "" = none (default) */
    int readonly;           /* the tenant's channel is read-only: 1, bidirectional: 0,
                               no tenant owns it: -1 (readonly_channels decides) */
    int64_t epoch;          /* PostgreSQL: the lease epoch it was claimed under (0: none) */
    int64_t held_ms;        /* PostgreSQL: time its channel was paused since it was created,
                               at the claim (SQLite: 0, the worker asks when it matters) */
};

void obx_store_claimed_release(struct obx_claimed *c);

/*
 * Copies a claimed message's eight strings into one block owned by c (each backend's claim):
 * channel_id, external_message_id, business_id, external_conversation_id, content,
 * sender_type, consumer_name, consumer_image; v[i] NULL for SQL NULL, len[i] its bytes.
 */
OBX_MUST_CHECK enum obx_err obx_store_claimed_copy_strings(struct obx_claimed *c,
                                                           const char *const v[8],
                                                           const size_t len[8]);

/*
 * The three queries a claim runs (next priority level, next business of a level,
 * due head of a lane), NULL-terminated: exported so tests and docs can show their
 * query plans. Each must be a range scan of the partial index outbox_claim.
 */
extern const char *const obx_store_claim_sql[];
/* The confirmation-timeout statements, for the same kind of plan test. */
extern const char *const obx_store_confirm_sql[];

/*
 * Claims up to max due messages (state queued, head of their conversation,
 * next_attempt_at <= now): strict priority, then round-robin over businesses.
 * Each becomes `sending` with a fresh lease token expiring after lease_ms.
 * out must have room for max entries; *n gets how many were filled.
 */
OBX_MUST_CHECK enum obx_err obx_store_claim(struct obx_store *st, int max, int64_t lease_ms,
                                            struct obx_claimed *out /* OUT */, int *n /* OUT */);

/* One tenant's part of a claim: up to `want` of its messages, round-robin from *cursor. */
struct obx_claim_want {
    const char *tenant;              /* NULL: channels no tenant owns (the default tenant) */
    struct obx_claim_cursor *cursor; /* borrowed; advanced by the claim */
    int want;
    int got;       /* OUT: how many of out are this tenant's (they follow the previous tenant's) */
    int64_t epoch; /* PostgreSQL: the tenant's lease epoch on this node (the fence); 0: none */
};

/*
 * The claim of several tenants in one transaction, in the order given: wants[0]'s messages
 * first in out, then wants[1]'s, and so on. out must have room for the sum of the wants.
 * obx_store_claim is this for the default tenant alone, with the store's own cursor.
 */
OBX_MUST_CHECK enum obx_err obx_store_claim_tenants(struct obx_store *st,
                                                    struct obx_claim_want *wants, size_t nwants,
                                                    int64_t lease_ms,
                                                    struct obx_claimed *out /* OUT */,
                                                    int *n /* OUT */);

/* What happens to a message after an attempt (the worker's decision). */
enum obx_next {
    OBX_NEXT_ACCEPTED, /* sending -> accepted */
    OBX_NEXT_FAILED,   /* sending -> failed (dead letter) */
    OBX_NEXT_RETRY,    /* sending -> queued, due at next_attempt_at_ms */
    OBX_NEXT_RELEASE,  /* sending -> queued now, no attempt recorded (shutdown) */
};

/* The record of one finished attempt and the transition it causes. */
struct obx_attempt {
    int64_t message_id;
    int64_t lease_token;
    int64_t started_at_ms;
    int64_t duration_ms;
    int http_status;     /* 0: no HTTP answer */
    const char *outcome; /* obx_backoff_outcome_name() */
    const char *error;   /* NULL or a short reason */
    const char *excerpt; /* NULL or the first bytes of the response body */
    enum obx_next next;
    int counted;                /* 1: counts toward max_attempts */
    int64_t next_attempt_at_ms; /* OBX_NEXT_RETRY only */
    const char *reason;         /* transition reason, e.g. "http 500" */
    int64_t confirm_due_at_ms;  /* OBX_NEXT_ACCEPTED: re-send if unconfirmed by then; 0 = none */
    /* PostgreSQL: the lease it was claimed under (obx_claimed.epoch), fencing the write;
     * fence_tenant "default" for the default tenant. Ignored on SQLite. */
    const char *fence_tenant;
    int64_t epoch;
};

/*
 * Records n attempts and applies their transitions in one transaction. A
 * transition whose lease is no longer held (claimed again after expiry) is
 * skipped and reported as OBX_ECONFLICT in results[i] (may be NULL); its attempt
 * row is still recorded. Returns the transaction's error.
 */
OBX_MUST_CHECK enum obx_err obx_store_finish(struct obx_store *st, const struct obx_attempt *a,
                                             size_t n, enum obx_err *results /* OUT, n */);

/*
 * Returns `sending` messages to `queued`: every one when all is 1 (start-up of the
 * single serve process, which holds the serve lock), else those whose lease has
 * expired. *count (may be NULL) gets how many.
 */
OBX_MUST_CHECK enum obx_err obx_store_recover(struct obx_store *st, int all,
                                              int64_t *count /* OUT */);

/* ---- confirmation (webhooks) --------------------------------------------------------- */

/*
 * Re-sends accepted messages whose confirmation is overdue (state back to queued,
 * resends + 1) while resends < max_resends; past that, marks them unconfirmed.
 * One transaction. *resent and *unconfirmed get the counts.
 */
OBX_MUST_CHECK enum obx_err obx_store_confirm_timeouts(struct obx_store *st, int64_t max_resends,
                                                       int64_t *resent /* OUT */,
                                                       int64_t *unconfirmed /* OUT */);

/*
 * Records a confirmation from Partoo for a key. channel_id NULL: match on the
 * external id alone, only when it is unambiguous (OBX_ECONFLICT otherwise).
 * OBX_ENOTFOUND when no message matches. Runs inside the caller's transaction
 * when one is open (it opens none).
 */
OBX_MUST_CHECK enum obx_err obx_store_confirm(struct obx_store *st, const char *channel_id,
                                              const char *external_message_id,
                                              const char *partoo_message_id,
                                              const char *partoo_status, const char *reason);

/* ---- service state ------------------------------------------------------------------ */

/* Writes n key/value pairs into service_state (one transaction); values may be NULL. */
OBX_MUST_CHECK enum obx_err obx_store_publish_state(struct obx_store *st, const char *const *keys,
                                                    const char *const *values, size_t n);

/* ---- operator actions ----------------------------------------------------------- */

/* failed or accepted -> queued (resets resends). OBX_ENOTFOUND, OBX_ECONFLICT (wrong state). */
OBX_MUST_CHECK enum obx_err obx_store_retry(struct obx_store *st, const char *channel_id,
                                            const char *external_message_id, const char *reason);
/* Every failed message -> queued; *count gets how many. */
OBX_MUST_CHECK enum obx_err obx_store_retry_failed(struct obx_store *st, const char *channel_id,
                                                   int64_t *count /* OUT */);
/* queued -> cancelled. OBX_ENOTFOUND, OBX_ECONFLICT (not queued). */
OBX_MUST_CHECK enum obx_err obx_store_cancel(struct obx_store *st, const char *channel_id,
                                             const char *external_message_id, const char *reason);

/*
 * The dashboard's bulk retry (retry = 1: failed|accepted -> queued, as obx_store_retry) or
 * cancel (retry = 0: queued -> cancelled) of at most max messages matching f (the filter of
 * lib/store_dash.h), oldest first, in one statement and its own transaction (a savepoint in
 * the caller's, if any), with reason as the transitions' reason and now_ms as their time. Touched
 * rows leave the filter's state, so calling again continues where this one stopped; *touched
 * gets how many. Called through obx_store_dash_bulk.
 */
struct obx_store_dash_filter;
OBX_MUST_CHECK enum obx_err obx_store_bulk_transition(struct obx_store *st,
                                                      const struct obx_store_dash_filter *f,
                                                      int retry, int max, int64_t now_ms,
                                                      const char *reason,
                                                      int64_t *touched /* OUT */);

/*
 * Retention, one short transaction at a time. lib/retention.c drives these batches for
 * serve and `outbox purge` alike; call them through obx_retention_step, not directly.
 */

/* How much one batch may do: at most `rows` rows read, and stop at until_mono_ms
 * (obx_mono_ms of the real clock; 0 = no time bound). */
struct obx_batch_limit {
    int rows;
    int64_t until_mono_ms;
};

/* 1 once lim's time bound has passed (never without one). */
int obx_store_batch_expired(const struct obx_batch_limit *lim);

/* Which messages retention removes. is_readonly may be NULL (no read-only channel). */
struct obx_purge_opts {
    int64_t before_ms;                                  /* last transition older than this */
    int include_failed;                                 /* also delete failed messages */
    int (*is_readonly)(void *ctx, const char *channel); /* accepted is terminal there */
    void *ctx;
};

/*
 * One batch: messages in `state` with id > *cursor whose last transition is older than
 * o->before_ms, if that state is terminal (confirmed, cancelled; failed when
 * o->include_failed; accepted on a read-only channel). Never queued or sending.
 * *cursor advances past what was read; *more is 1 while rows of that state remain.
 */
OBX_MUST_CHECK enum obx_err obx_store_purge_batch(struct obx_store *st,
                                                  const struct obx_purge_opts *o,
                                                  enum obx_state state,
                                                  const struct obx_batch_limit *lim,
                                                  int64_t *cursor /* IN/OUT */,
                                                  int64_t *deleted /* OUT */, int *more /* OUT */);

/* One batch of replies (id > *cursor) delivered or acknowledged before before_ms. */
OBX_MUST_CHECK enum obx_err obx_store_inbox_purge_replies_batch(
    struct obx_store *st, int64_t before_ms, const struct obx_batch_limit *lim,
    int64_t *cursor /* IN/OUT */, int64_t *deleted /* OUT */, int *more /* OUT */);

/*
 * Stores one verified webhook (body, len bytes, and sha256 = hex SHA-256 of the body) received
 * at received_at_ms, inside the caller's transaction. *id gets the new row's id, or 0 when an
 * event with the same body is stored already (a replay: nothing written).
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_add_webhook_event(struct obx_store *st,
                                                              const char *sha256, const void *body,
                                                              size_t len, int64_t received_at_ms,
                                                              int64_t *id /* OUT */);

/*
 * One batch of webhook events (id > *cursor) received before before_ms, interpreted and
 * needed by no inbox row: the body goes (*bodies), and the whole row with its
 * body_sha256 replay guard goes once older than hashes_before_ms (*hashes). Pending
 * and failed replies keep their events. Stops at the first event too young.
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_purge_events_batch(
    struct obx_store *st, int64_t before_ms, int64_t hashes_before_ms,
    const struct obx_batch_limit *lim, int64_t *cursor /* IN/OUT */, int64_t *bodies /* OUT */,
    int64_t *hashes /* OUT */, int *more /* OUT */);

/* ---- the WAL on a tight disk ------------------------------------------------------- */

/* What obx_store_guard_wal saw and set; keep it between calls (starts zeroed). */
struct obx_wal_guard {
    int64_t free_bytes;           /* free for us on the database's filesystem */
    int64_t wal_bytes;            /* size of the -wal file */
    int64_t autocheckpoint_pages; /* the checkpoint interval in force */
    int64_t cap_pages;            /* in: a lower interval the caller wants for now (0 = none) */
    int tight;                    /* below the interval asked for at open */
    int checkpointed;             /* this call's TRUNCATE checkpoint succeeded */
};

/*
 * Bounds the WAL by the free disk space (serve runs it every second): the checkpoint
 * interval and journal_size_limit shrink to a quarter of the free space, and while the
 * disk is that tight a TRUNCATE checkpoint is tried at every call, which is what
 * recovers after SQLITE_FULL once space returns. OBX_EIO when statvfs fails.
 */
OBX_MUST_CHECK enum obx_err obx_store_guard_wal(struct obx_store *st,
                                                struct obx_wal_guard *g /* IN/OUT */);

/* The last error the store's database reported (SQLite's or PostgreSQL's), for a message. */
const char *obx_store_errmsg(struct obx_store *st);

#endif
