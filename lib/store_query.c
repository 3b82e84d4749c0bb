/* store_query: the reads behind query.h's views (see store_query.h). */
#include "store_query.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "store_pg_query.h"
#include "store_tx.h"


static const char *
text(sqlite3_stmt *s, int col)
{
    return (const char *)sqlite3_column_text(s, col);
}

static void
read_row(sqlite3_stmt *s, struct obx_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    r->msg.channel_id = text(s, 1);
    r->msg.external_message_id = text(s, 2);
    r->msg.business_id = text(s, 3);
    r->msg.external_conversation_id = text(s, 4);
    r->msg.content = text(s, 5);
    r->msg.sender_type = text(s, 6);
    r->msg.consumer_name = text(s, 7);
    r->msg.consumer_image = text(s, 8);
    r->msg.priority = sqlite3_column_int64(s, 9);
    r->state = text(s, 10);
    r->state_reason = text(s, 11);
    r->attempts = sqlite3_column_int(s, 12);
    r->resends = sqlite3_column_int(s, 13);
    r->created_at_ms = sqlite3_column_int64(s, 14);
    r->state_at_ms = sqlite3_column_int64(s, 15);
    r->next_attempt_at_ms = sqlite3_column_int64(s, 16);
    r->accepted_at_ms = sqlite3_column_int64(s, 17);
    r->confirmed_at_ms = sqlite3_column_int64(s, 18);
    r->last_http_status = sqlite3_column_int(s, 19);
    r->last_error = text(s, 20);
    r->partoo_message_id = text(s, 21);
    r->partoo_status = text(s, 22);
    r->unconfirmed_at_ms = sqlite3_column_int64(s, 23);
    r->tenant = text(s, 24);
}

/*
 * Two statements rather than "(?1 IS NULL OR state = ?1)", which no index can serve:
 * with a state the range (state, id < cursor) of outbox_state is walked newest first.
 * ?5 = 1 lists only unconfirmed messages (accepted, resends exhausted).
 */
static const char SQL_LIST_BY_STATE[] =
    "SELECT " OBX_MESSAGE_COLUMNS " FROM outbox INDEXED BY outbox_state"
    " WHERE state = ?1 AND id < ?3 AND id >= ?6 AND (?2 IS NULL OR channel_id = ?2)"
    " AND (?5 = 0 OR unconfirmed_at_ms IS NOT NULL)"
    " AND created_at_ms >= ?7 AND created_at_ms < ?8"
    " ORDER BY id DESC LIMIT ?4";

static const char SQL_LIST_ALL[] = "SELECT " OBX_MESSAGE_COLUMNS " FROM outbox"
                                   " WHERE id < ?3 AND id >= ?6 AND (?2 IS NULL OR channel_id = ?2)"
                                   " AND created_at_ms >= ?7 AND created_at_ms < ?8"
                                   " ORDER BY id DESC LIMIT ?4";

enum obx_err
obx_store_query_messages(struct obx_store *st, const struct obx_list_query *q, obx_row_fn fn,
                         void *ctx, int64_t *next_cursor)
{
    int by_state = q->unconfirmed || q->state;
    sqlite3_stmt *s;
    struct obx_row r;
    int rc, rows = 0, stop = 0;
    int64_t last_id = 0, below;

    *next_cursor = 0;
    if (st->pg)
        return obx_store_pg_query_messages(st, q, fn, ctx, next_cursor);
    s = obx_db_stmt(st->db, by_state ? SQL_LIST_BY_STATE : SQL_LIST_ALL);
    if (!s)
        return OBX_EDB;
    if (by_state) {
        obx_db_bind_text(s, 1, q->unconfirmed ? "accepted" : q->state);
        sqlite3_bind_int(s, 5, q->unconfirmed);
    }
    obx_db_bind_text(s, 2, q->channel_id);
    below = q->before_id > 0 ? q->before_id : INT64_MAX;
    if (q->win.max_id && q->win.max_id < below) /* max_id is -1 when nothing can match */
        below = q->win.max_id + 1;
    sqlite3_bind_int64(s, 3, below);
    sqlite3_bind_int(s, 4, q->limit);
    sqlite3_bind_int64(s, 6, q->win.min_id);
    sqlite3_bind_int64(s, 7, q->win.after_ms ? q->win.after_ms : INT64_MIN);
    sqlite3_bind_int64(s, 8, q->win.before_ms ? q->win.before_ms : INT64_MAX);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && !stop) {
        read_row(s, &r);
        last_id = r.id;
        rows++;
        stop = fn(ctx, &r);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return obx_err_from_sqlite(rc);
    if (rows == q->limit && last_id > 1)
        *next_cursor = last_id;
    return OBX_OK;
}

static const char SQL_GET[] = "SELECT " OBX_MESSAGE_COLUMNS
                              " FROM outbox WHERE channel_id = ?1 AND external_message_id = ?2";
static const char SQL_TRANSITIONS[] =
    "SELECT id, message_id, at_ms, from_state, to_state, reason FROM transitions"
    " WHERE message_id = ?1 ORDER BY id";
static const char SQL_ATTEMPTS[] =
    "SELECT id, message_id, started_at_ms, duration_ms, http_status, outcome, error,"
    " response_excerpt FROM attempts WHERE message_id = ?1 ORDER BY id";

static enum obx_err
each_transition(struct obx_store *st, int64_t id, obx_transition_fn fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_TRANSITIONS);
    struct obx_transition_row t;
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        t.id = sqlite3_column_int64(s, 0);
        t.message_id = sqlite3_column_int64(s, 1);
        t.at_ms = sqlite3_column_int64(s, 2);
        t.from_state = text(s, 3);
        t.to_state = text(s, 4);
        t.reason = text(s, 5);
        if (fn(ctx, &t))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static enum obx_err
each_attempt(struct obx_store *st, int64_t id, obx_attempt_fn fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ATTEMPTS);
    struct obx_attempt_row a;
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        a.id = sqlite3_column_int64(s, 0);
        a.message_id = sqlite3_column_int64(s, 1);
        a.started_at_ms = sqlite3_column_int64(s, 2);
        a.duration_ms = sqlite3_column_int64(s, 3);
        a.http_status = sqlite3_column_int(s, 4);
        a.outcome = text(s, 5);
        a.error = text(s, 6);
        a.excerpt = text(s, 7);
        if (fn(ctx, &a))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_store_query_message(struct obx_store *st, const char *channel_id,
                        const char *external_message_id, obx_row_fn row_fn, obx_transition_fn tr_fn,
                        obx_attempt_fn at_fn, void *ctx)
{
    sqlite3_stmt *s;
    struct obx_row r;
    int64_t id;
    enum obx_err err = OBX_OK;
    int rc;

    if (st->pg)
        return obx_store_pg_query_message(st, channel_id, external_message_id, row_fn, tr_fn, at_fn,
                                          ctx);
    s = obx_db_stmt(st->db, SQL_GET);
    if (!s)
        return OBX_EDB;
    /* One read transaction, so the row, its transitions and attempts agree. */
    err = obx_store_tx_read_begin(st);
    if (err != OBX_OK)
        return err;
    obx_db_bind_text(s, 1, channel_id);
    obx_db_bind_text(s, 2, external_message_id);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        err = rc == SQLITE_DONE ? OBX_ENOTFOUND : obx_err_from_sqlite(rc);
        sqlite3_reset(s);
        goto out;
    }
    read_row(s, &r);
    id = r.id;
    if (row_fn)
        row_fn(ctx, &r);
    sqlite3_reset(s);
    if (tr_fn)
        err = each_transition(st, id, tr_fn, ctx);
    if (err == OBX_OK && at_fn)
        err = each_attempt(st, id, at_fn, ctx);
out:
    /* Ending a read transaction cannot lose anything; its result does not matter. */
    if (obx_store_tx_read_end(st) != OBX_OK && err == OBX_OK)
        err = OBX_EDB;
    return err;
}

/* ---- stats ---------------------------------------------------------------------------- */

static const char SQL_STATS[] =
    "SELECT channel_id, state, count(*), min(CASE WHEN state = 'queued' THEN created_at_ms END),"
    " count(unconfirmed_at_ms), count(CASE WHEN confirmed_at_ms >= ?1 THEN 1 END)"
    " FROM outbox GROUP BY channel_id, state ORDER BY channel_id";

static const char SQL_SENT_BY_CHANNEL[] =
    "SELECT o.channel_id, count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id"
    " WHERE a.started_at_ms >= ?1 AND a.outcome = 'accepted' GROUP BY o.channel_id";

enum obx_err
obx_store_query_sent_by_channel(struct obx_store *st, int64_t since_ms, obx_channel_count_fn fn,
                                void *ctx)
{
    sqlite3_stmt *s;
    int rc;

    if (st->pg)
        return obx_store_pg_query_sent_by_channel(st, since_ms, fn, ctx);
    s = obx_db_stmt(st->db, SQL_SENT_BY_CHANNEL);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, since_ms);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        if (fn(ctx, text(s, 0), sqlite3_column_int64(s, 1)))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_LAST_ERROR[] =
    "SELECT a.error, a.http_status FROM attempts a JOIN outbox o ON o.id = a.message_id"
    " WHERE o.channel_id = ?1 AND a.outcome <> 'accepted' ORDER BY a.id DESC LIMIT 1";

enum obx_err
obx_store_query_last_failure(struct obx_store *st, const char *channel_id, char *error, size_t n,
                             int *http_status, int *found)
{
    sqlite3_stmt *s;
    int rc;

    if (st->pg)
        return obx_store_pg_query_last_failure(st, channel_id, error, n, http_status, found);
    error[0] = '\0';
    *http_status = 0;
    *found = 0;
    s = obx_db_stmt(st->db, SQL_LAST_ERROR);
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const char *e = text(s, 0);
        snprintf(error, n, "%s", e ? e : "");
        *http_status = sqlite3_column_int(s, 1);
        *found = 1;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_store_query_channel_states(struct obx_store *st, int64_t confirmed_since_ms,
                               obx_channel_state_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    struct obx_channel_state_row r;
    int rc;

    if (st->pg)
        return obx_store_pg_query_channel_states(st, confirmed_since_ms, fn, ctx);
    s = obx_db_stmt(st->db, SQL_STATS);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, confirmed_since_ms);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        r.channel_id = text(s, 0);
        r.state = text(s, 1);
        r.count = sqlite3_column_int64(s, 2);
        r.oldest_created_at_ms = sqlite3_column_int64(s, 3);
        r.unconfirmed = sqlite3_column_int64(s, 4);
        r.confirmed_since = sqlite3_column_int64(s, 5);
        if (fn(ctx, &r))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_ACCEPTED_SINCE[] =
    "SELECT count(*) FROM attempts WHERE started_at_ms >= ?1 AND outcome = 'accepted'";

enum obx_err
obx_store_query_count_accepted_since(struct obx_store *st, int64_t since_ms, int64_t *out)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_query_count_accepted_since(st, since_ms, out);
    *out = 0;
    s = obx_db_stmt(st->db, SQL_ACCEPTED_SINCE);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, since_ms);
    return obx_db_step_int64(s, out);
}

/* ---- inbox ------------------------------------------------------------------------------- */

static const char SQL_INBOX[] =
    "SELECT id, partoo_message_id, channel_id, external_conversation_id, partoo_conversation_id,"
    " business_id, sender_type, sender_label, content_type, content, message_date, state,"
    " attempts, last_http_status, last_error, received_at_ms, delivered_at_ms, acked_at_ms"
    " FROM inbox WHERE id > ?1 AND (?2 OR state <> 'acked') ORDER BY id LIMIT ?3";

static void
read_inbox_row(sqlite3_stmt *s, struct obx_inbox_row *r)
{
    r->id = sqlite3_column_int64(s, 0);
    r->partoo_message_id = text(s, 1);
    r->channel_id = text(s, 2);
    r->external_conversation_id = text(s, 3);
    r->partoo_conversation_id = text(s, 4);
    r->business_id = text(s, 5);
    r->sender_type = text(s, 6);
    r->sender_label = text(s, 7);
    r->content_type = text(s, 8);
    r->content = text(s, 9);
    r->message_date = text(s, 10);
    r->state = text(s, 11);
    r->attempts = sqlite3_column_int(s, 12);
    r->last_http_status = sqlite3_column_int(s, 13);
    r->last_error = text(s, 14);
    r->received_at_ms = sqlite3_column_int64(s, 15);
    r->delivered_at_ms = sqlite3_column_int64(s, 16);
    r->acked_at_ms = sqlite3_column_int64(s, 17);
}

enum obx_err
obx_store_query_replies(struct obx_store *st, int64_t after_id, int limit, int include_acked,
                        obx_inbox_fn fn, void *ctx, int64_t *next_cursor)
{
    sqlite3_stmt *s;
    struct obx_inbox_row r;
    int rc, rows = 0;

    *next_cursor = 0;
    if (st->pg)
        return obx_store_pg_query_replies(st, after_id, limit, include_acked, fn, ctx, next_cursor);
    s = obx_db_stmt(st->db, SQL_INBOX);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int(s, 2, include_acked);
    sqlite3_bind_int(s, 3, limit);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        read_inbox_row(s, &r);
        rows++;
        if (rows == limit)
            *next_cursor = r.id;
        if (fn(ctx, &r))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/* ---- counts for /metrics ---------------------------------------------------------------- */

/* Runs a "SELECT name, count" query and adds each count to the slot of its name. */
static enum obx_err
count_by_name(struct obx_store *st, const char *sql, const char *const *names, int n, int null_slot,
              int64_t *out)
{
    sqlite3_stmt *s;
    int rc;

    if (st->pg)
        return obx_store_pg_query_count_by_name(st, sql, names, n, null_slot, out);
    for (int i = 0; i < n; i++)
        out[i] = 0;
    s = obx_db_stmt(st->db, sql);
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        const char *name = text(s, 0);
        int slot = name ? n - 1 : null_slot;
        for (int i = 0; name && i < n; i++)
            if (strcmp(name, names[i]) == 0)
                slot = i;
        out[slot] += sqlite3_column_int64(s, 1);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_INBOX_COUNTS[] = "SELECT state, count(*) FROM inbox GROUP BY state";
static const char SQL_EVENT_OUTCOMES[] =
    "SELECT outcome, count(*) FROM webhook_events GROUP BY outcome";

enum obx_err
obx_store_query_reply_states(struct obx_store *st, int64_t out[4])
{
    static const char *const states[4] = {"pending", "delivered", "acked", "failed"};

    return count_by_name(st, SQL_INBOX_COUNTS, states, 4, 0, out);
}

enum obx_err
obx_store_query_event_outcomes(struct obx_store *st, const char *const *names, int n, int64_t *out)
{
    return count_by_name(st, SQL_EVENT_OUTCOMES, names, n, 0, out);
}

enum obx_err
obx_store_query_db_bytes(struct obx_store *st, int64_t *out)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_query_db_bytes(st, out);
    *out = 0;
    s = obx_db_stmt(st->db, "SELECT page_count * page_size FROM"
                            " pragma_page_count(), pragma_page_size()");
    if (!s)
        return OBX_EDB;
    return obx_db_step_int64(s, out);
}

/* ---- service state ----------------------------------------------------------------------- */

static const char SQL_SERVICE_STATE[] =
    "SELECT key, value, updated_at_ms FROM service_state ORDER BY key";

enum obx_err
obx_store_query_service_state(struct obx_store *st, obx_state_fn fn, void *ctx)
{
    sqlite3_stmt *s;
    int rc;

    if (st->pg)
        return OBX_OK; /* no service_state on PostgreSQL yet: nothing published */
    s = obx_db_stmt(st->db, SQL_SERVICE_STATE);
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        if (fn(ctx, text(s, 0), (const char *)sqlite3_column_text(s, 1),
               sqlite3_column_int64(s, 2)))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}
