/* query: read-only views of the outbox (list, show, stats, audit). */
#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "mem.h"

#define MESSAGE_COLUMNS                                                                        \
    "id, channel_id, external_message_id, business_id, external_conversation_id, content,"     \
    " sender_type, consumer_name, consumer_image, priority, state, state_reason, attempts,"    \
    " resends, created_at_ms, state_at_ms, next_attempt_at_ms, accepted_at_ms,"                \
    " confirmed_at_ms, last_http_status, last_error, partoo_message_id, partoo_status,"         \
    " unconfirmed_at_ms"

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
}

/*
 * Two statements rather than "(?1 IS NULL OR state = ?1)", which no index can serve:
 * with a state the range (state, id < cursor) of outbox_state is walked newest first.
 * ?5 = 1 lists only unconfirmed messages (accepted, resends exhausted).
 */
static const char SQL_LIST_BY_STATE[] =
    "SELECT " MESSAGE_COLUMNS " FROM outbox INDEXED BY outbox_state"
    " WHERE state = ?1 AND id < ?3 AND id >= ?6 AND (?2 IS NULL OR channel_id = ?2)"
    " AND (?5 = 0 OR unconfirmed_at_ms IS NOT NULL)"
    " AND created_at_ms >= ?7 AND created_at_ms < ?8"
    " ORDER BY id DESC LIMIT ?4";

static const char SQL_LIST_ALL[] =
    "SELECT " MESSAGE_COLUMNS " FROM outbox"
    " WHERE id < ?3 AND id >= ?6 AND (?2 IS NULL OR channel_id = ?2)"
    " AND created_at_ms >= ?7 AND created_at_ms < ?8"
    " ORDER BY id DESC LIMIT ?4";

enum obx_err
obx_query_list(struct obx_store *st, const struct obx_list_query *q, obx_row_fn fn, void *ctx,
               int64_t *next_cursor)
{
    int by_state = q->unconfirmed || q->state;
    sqlite3_stmt *s = obx_db_stmt(st->db, by_state ? SQL_LIST_BY_STATE : SQL_LIST_ALL);
    struct obx_row r;
    int rc, rows = 0, stop = 0;
    int64_t last_id = 0, below;

    *next_cursor = 0;
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

static const char SQL_GET[] =
    "SELECT " MESSAGE_COLUMNS " FROM outbox WHERE channel_id = ?1 AND external_message_id = ?2";
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
obx_query_get(struct obx_store *st, const char *channel_id, const char *external_message_id,
              obx_row_fn row_fn, obx_transition_fn tr_fn, obx_attempt_fn at_fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_GET);
    struct obx_row r;
    int64_t id;
    enum obx_err err = OBX_OK;
    int rc;

    if (!s)
        return OBX_EDB;
    /* One read transaction, so the row, its transitions and attempts agree. */
    err = obx_db_exec(st->db, "BEGIN");
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
    if (obx_db_exec(st->db, "COMMIT") != OBX_OK && err == OBX_OK)
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

/* Adds the per-channel sends of the last minute (channels are sorted: binary search). */
static enum obx_err
fill_send_rates(struct obx_store *st, struct obx_channel_stats *arr, size_t n, int64_t now_ms)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_SENT_BY_CHANNEL);
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, now_ms - 60000);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        const char *ch = text(s, 0);
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            int cmp = strcmp(arr[mid].channel_id, ch);
            if (cmp == 0) {
                arr[mid].sent_last_min = sqlite3_column_int64(s, 1);
                break;
            }
            if (cmp < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_LAST_ERROR[] =
    "SELECT a.error, a.http_status FROM attempts a JOIN outbox o ON o.id = a.message_id"
    " WHERE o.channel_id = ?1 AND a.outcome <> 'accepted' ORDER BY a.id DESC LIMIT 1";

static void
fill_last_error(struct obx_store *st, struct obx_channel_stats *c)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_LAST_ERROR);

    if (!s)
        return;
    obx_db_bind_text(s, 1, c->channel_id);
    if (sqlite3_step(s) == SQLITE_ROW) {
        const char *e = text(s, 0);
        int status = sqlite3_column_int(s, 1);
        if (e)
            snprintf(c->last_error, sizeof c->last_error, "%s", e);
        else if (status)
            snprintf(c->last_error, sizeof c->last_error, "http %d", status);
    }
    sqlite3_reset(s);
}

/* Appends (or finds the last) channel entry; the query is sorted by channel. */
static struct obx_channel_stats *
channel_entry(struct obx_channel_stats **arr, size_t *n, size_t *cap, const char *channel)
{
    if (*n && strcmp((*arr)[*n - 1].channel_id, channel) == 0)
        return &(*arr)[*n - 1];
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct obx_channel_stats *p = obx_realloc(*arr, ncap * sizeof *p);
        if (!p)
            return NULL;
        *arr = p;
        *cap = ncap;
    }
    memset(&(*arr)[*n], 0, sizeof **arr);
    snprintf((*arr)[*n].channel_id, sizeof (*arr)[*n].channel_id, "%s", channel);
    return &(*arr)[(*n)++];
}

enum obx_err
obx_query_stats(struct obx_store *st, struct obx_channel_stats **out, size_t *n)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_STATS);
    int64_t now_ms = obx_now_ms(st->clock);
    struct obx_channel_stats *arr = NULL;
    size_t cnt = 0, cap = 0;
    enum obx_err err = OBX_OK;
    int rc;

    *out = NULL;
    *n = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, now_ms - 24 * 3600 * 1000LL);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && err == OBX_OK) {
        struct obx_channel_stats *c = channel_entry(&arr, &cnt, &cap, text(s, 0));
        int state = obx_state_parse(text(s, 1));
        if (!c) {
            err = OBX_ENOMEM;
            break;
        }
        if (state >= 0)
            c->counts[state] = sqlite3_column_int64(s, 2);
        if (state == OBX_ST_QUEUED)
            c->oldest_queued_at_ms = sqlite3_column_int64(s, 3);
        if (state == OBX_ST_ACCEPTED)
            c->unconfirmed = sqlite3_column_int64(s, 4);
        if (state == OBX_ST_CONFIRMED)
            c->confirmed_24h = sqlite3_column_int64(s, 5);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    for (size_t i = 0; err == OBX_OK && i < cnt; i++)
        fill_last_error(st, &arr[i]);
    if (err == OBX_OK)
        err = fill_send_rates(st, arr, cnt, now_ms);
    if (err != OBX_OK) {
        obx_free(arr);
        return err;
    }
    *out = arr;
    *n = cnt;
    return OBX_OK;
}

static const char SQL_ACCEPTED_SINCE[] =
    "SELECT count(*) FROM attempts WHERE started_at_ms >= ?1 AND outcome = 'accepted'";

enum obx_err
obx_query_count_accepted_since(struct obx_store *st, int64_t since_ms, int64_t *out)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ACCEPTED_SINCE);
    int rc;

    *out = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, since_ms);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
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
obx_query_inbox(struct obx_store *st, int64_t after_id, int limit, int include_acked,
                obx_inbox_fn fn, void *ctx, int64_t *next_cursor)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_INBOX);
    struct obx_inbox_row r;
    int rc, rows = 0;

    *next_cursor = 0;
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
count_by_name(struct obx_store *st, const char *sql, const char *const *names, int n,
              int null_slot, int64_t *out)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, sql);
    int rc;

    for (int i = 0; i < n; i++)
        out[i] = 0;
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
obx_query_inbox_counts(struct obx_store *st, int64_t out[4])
{
    static const char *const states[4] = {"pending", "delivered", "acked", "failed"};

    return count_by_name(st, SQL_INBOX_COUNTS, states, 4, 0, out);
}

enum obx_err
obx_query_webhook_outcomes(struct obx_store *st, const char *const *names, int n, int64_t *out)
{
    return count_by_name(st, SQL_EVENT_OUTCOMES, names, n, 0, out);
}

enum obx_err
obx_query_db_bytes(struct obx_store *st, int64_t *out)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, "SELECT page_count * page_size FROM"
                                          " pragma_page_count(), pragma_page_size()");
    int rc;

    *out = 0;
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
}

/* ---- service state ----------------------------------------------------------------------- */

static const char SQL_SERVICE_STATE[] =
    "SELECT key, value, updated_at_ms FROM service_state ORDER BY key";

enum obx_err
obx_query_service_state(struct obx_store *st, obx_state_fn fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_SERVICE_STATE);
    int rc;

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

static int
on_rejection_state(void *ctx, const char *key, const char *value, int64_t updated_at_ms)
{
    int64_t *out = ctx;

    (void)updated_at_ms;
    if (!value)
        return 0;
    if (strcmp(key, OBX_STATE_WEBHOOKS_REJECTED_SIGNATURE) == 0)
        out[0] = strtoll(value, NULL, 10);
    else if (strcmp(key, OBX_STATE_WEBHOOKS_REJECTED_TOO_LARGE) == 0)
        out[1] = strtoll(value, NULL, 10);
    return 0;
}

enum obx_err
obx_query_webhook_rejections(struct obx_store *st, int64_t *bad_signature, int64_t *too_large)
{
    int64_t v[2] = {0, 0};
    enum obx_err err = obx_query_service_state(st, on_rejection_state, v);

    *bad_signature = 0;
    *too_large = 0;
    if (err == OBX_OK) {
        *bad_signature = v[0];
        *too_large = v[1];
    }
    return err;
}
