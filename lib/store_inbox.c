/*
 * store_inbox: the webhook_events and inbox tables, their only writer (see store_inbox.h
 * for the life of a row in each).
 */
#include "store_inbox.h"

#include "err.h"
#include "mem.h"
#include "store_pg_inbox.h"

/* ---- webhook_events ----------------------------------------------------------------------- */

static const char SQL_PENDING_EVENTS[] =
    "SELECT id, body FROM webhook_events WHERE processed_at_ms IS NULL ORDER BY id LIMIT ?1";

enum obx_err
obx_store_inbox_pending_events(struct obx_store *st, int max, struct obx_stored_event *out,
                               size_t *n)
{
    sqlite3_stmt *s;
    enum obx_err err = OBX_OK;
    size_t count = 0;
    int rc;

    if (st->pg)
        return obx_store_pg_inbox_pending_events(st, max, out, n);
    s = obx_db_stmt(st->db, SQL_PENDING_EVENTS);
    *n = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int(s, 1, max);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && err == OBX_OK) {
        size_t len = (size_t)sqlite3_column_bytes(s, 1);
        char *body = obx_strndup(sqlite3_column_blob(s, 1), len);
        out[count].id = sqlite3_column_int64(s, 0);
        out[count].body = body;
        out[count].len = len;
        if (!body && len)
            err = OBX_ENOMEM;
        count++;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    *n = count;
    return err;
}

void
obx_store_inbox_events_release(struct obx_stored_event *ev, size_t n)
{
    for (size_t i = 0; ev && i < n; i++) {
        obx_free(ev[i].body);
        ev[i].body = NULL;
    }
}

static const char SQL_HAS_BACKLOG[] =
    "SELECT EXISTS (SELECT 1 FROM webhook_events WHERE processed_at_ms IS NULL)";

enum obx_err
obx_store_inbox_has_backlog(struct obx_store *st, int *backlog)
{
    sqlite3_stmt *s;
    int64_t v = 0;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_inbox_has_backlog(st, backlog);
    s = obx_db_stmt(st->db, SQL_HAS_BACKLOG);
    *backlog = 0;
    if (!s)
        return OBX_EDB;
    err = obx_db_step_int64(s, &v);
    *backlog = (int)v;
    return err;
}

static const char SQL_MARK_EVENT[] =
    "UPDATE webhook_events SET event_type = ?2, partoo_message_id = NULLIF(?3, ''),"
    " processed_at_ms = ?4, outcome = ?5 WHERE id = ?1";

enum obx_err
obx_store_inbox_mark_event(struct obx_store *st, int64_t id, const char *event_type,
                           const char *partoo_message_id, const char *outcome)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_inbox_mark_event(st, id, event_type, partoo_message_id, outcome);
    s = obx_db_stmt(st->db, SQL_MARK_EVENT);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    obx_db_bind_text(s, 2, event_type);
    obx_db_bind_text(s, 3, partoo_message_id);
    sqlite3_bind_int64(s, 4, obx_now_ms(st->clock));
    obx_db_bind_text(s, 5, outcome);
    return obx_db_step_done(s);
}

/*
 * Replies by id: a reply's time is one of three columns, so there is no index to range
 * over; the id cursor keeps each batch a bounded scan.
 */
static const char SQL_OLD_REPLIES[] =
    "SELECT id, state IN ('delivered', 'acked')"
    " AND coalesce(acked_at_ms, delivered_at_ms, received_at_ms) < ?1"
    " FROM inbox WHERE id > ?2 ORDER BY id LIMIT ?3";

static const char SQL_DELETE_REPLY[] = "DELETE FROM inbox WHERE id = ?1";

enum obx_err
obx_store_inbox_purge_replies_batch(struct obx_store *st, int64_t before_ms,
                                    const struct obx_batch_limit *lim, int64_t *cursor,
                                    int64_t *deleted, int *more)
{
    if (st->pg)
        return obx_store_pg_inbox_purge_replies(st, before_ms, lim->rows, cursor, deleted, more);
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_OLD_REPLIES);
    sqlite3_stmt *del = obx_db_stmt(st->db, SQL_DELETE_REPLY);
    int64_t last = *cursor, n = 0;
    int scanned = 0, rc = SQLITE_DONE;
    enum obx_err err;

    *deleted = 0;
    *more = 0;
    if (!sel || !del)
        return OBX_EDB;
    err = obx_db_begin(st->db);
    sqlite3_bind_int64(sel, 1, before_ms);
    sqlite3_bind_int64(sel, 2, *cursor);
    sqlite3_bind_int(sel, 3, lim->rows);
    while (err == OBX_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        scanned++;
        last = sqlite3_column_int64(sel, 0);
        if (sqlite3_column_int(sel, 1)) {
            sqlite3_bind_int64(del, 1, last);
            err = obx_db_step_done(del);
            n += err == OBX_OK;
        }
        if (obx_store_batch_expired(lim))
            break;
    }
    err = obx_db_end_scan(st->db, sel, rc, err);
    if (err != OBX_OK)
        return err;
    *more = rc == SQLITE_ROW || scanned == lim->rows;
    *cursor = last;
    *deleted = n;
    return OBX_OK;
}

/*
 * Webhook events arrive in time order, so the oldest are the lowest ids: the scan
 * stops at the first event too young to go, instead of reading the whole table.
 * An event past body retention keeps its row without the body: body_sha256 is the
 * replay guard (an old captured event sent again is a duplicate, not a new event),
 * so the hash stays until hashes_before_ms, which is never later than before_ms.
 */
static const char SQL_OLD_EVENTS[] =
    "SELECT id, received_at_ms, processed_at_ms IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM inbox WHERE event_id = webhook_events.id),"
    " length(body) FROM webhook_events WHERE id > ?1 ORDER BY id LIMIT ?2";

static const char SQL_STORE_EVENT[] =
    "INSERT INTO webhook_events (body_sha256, received_at_ms, body) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (body_sha256) DO NOTHING";

enum obx_err
obx_store_inbox_add_webhook_event(struct obx_store *st, const char *sha256, const void *body,
                                  size_t len, int64_t received_at_ms, int64_t *id)
{
    sqlite3_stmt *s;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_inbox_add_event(st, sha256, body, len, received_at_ms, id);
    s = obx_db_stmt(st->db, SQL_STORE_EVENT);
    *id = 0;
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, sha256);
    sqlite3_bind_int64(s, 2, received_at_ms);
    sqlite3_bind_blob(s, 3, body, (int)len, SQLITE_STATIC);
    err = obx_db_step_done(s);
    if (err == OBX_OK && sqlite3_changes(st->db->h) == 1)
        *id = sqlite3_last_insert_rowid(st->db->h);
    return err;
}

static const char SQL_DELETE_EVENT[] = "DELETE FROM webhook_events WHERE id = ?1";
static const char SQL_DROP_EVENT_BODY[] = "UPDATE webhook_events SET body = x'' WHERE id = ?1";

enum obx_err
obx_store_inbox_purge_events_batch(struct obx_store *st, int64_t before_ms,
                                   int64_t hashes_before_ms, const struct obx_batch_limit *lim,
                                   int64_t *cursor, int64_t *bodies, int64_t *hashes, int *more)
{
    if (st->pg)
        return obx_store_pg_inbox_purge_events(st, before_ms,
                                               hashes_before_ms > before_ms ? before_ms
                                                                            : hashes_before_ms,
                                               lim->rows, cursor, bodies, hashes, more);
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_OLD_EVENTS);
    sqlite3_stmt *del = obx_db_stmt(st->db, SQL_DELETE_EVENT);
    sqlite3_stmt *drop = obx_db_stmt(st->db, SQL_DROP_EVENT_BODY);
    int64_t last = *cursor, nb = 0, nh = 0;
    int scanned = 0, young = 0, rc = SQLITE_DONE;
    enum obx_err err;

    *bodies = *hashes = 0;
    *more = 0;
    if (!sel || !del || !drop)
        return OBX_EDB;
    if (hashes_before_ms > before_ms)
        hashes_before_ms = before_ms;
    err = obx_db_begin(st->db);
    sqlite3_bind_int64(sel, 1, *cursor);
    sqlite3_bind_int(sel, 2, lim->rows);
    while (err == OBX_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(sel, 0), at = sqlite3_column_int64(sel, 1);
        int has_body = sqlite3_column_int64(sel, 3) > 0;
        if (at >= before_ms) {
            young = 1;
            break;
        }
        scanned++;
        last = id;
        if (!sqlite3_column_int(sel, 2))
            continue; /* not interpreted yet, or a reply still to deliver */
        if (at < hashes_before_ms) {
            sqlite3_bind_int64(del, 1, id);
            err = obx_db_step_done(del);
            nh += err == OBX_OK;
            nb += err == OBX_OK && has_body;
        } else if (has_body) {
            sqlite3_bind_int64(drop, 1, id);
            err = obx_db_step_done(drop);
            nb += err == OBX_OK;
        }
        if (obx_store_batch_expired(lim))
            break;
    }
    err = obx_db_end_scan(st->db, sel, rc, err);
    if (err != OBX_OK)
        return err;
    *more = !young && (rc == SQLITE_ROW || scanned == lim->rows);
    *cursor = last;
    *bodies = nb;
    *hashes = nh;
    return OBX_OK;
}


/* ---- inbox -------------------------------------------------------------------------------- */

static const char SQL_INSERT_REPLY[] =
    "INSERT INTO inbox (partoo_message_id, event_id, channel_id, external_conversation_id,"
    " partoo_conversation_id, business_id, sender_type, sender_label, content_type, content,"
    " message_date, received_at_ms) VALUES (?1, ?2, ?3, ?4, NULLIF(?5, ''), NULLIF(?6, ''),"
    " ?7, ?8, ?9, ?10, ?11, ?12) ON CONFLICT (partoo_message_id) DO NOTHING";

enum obx_err
obx_store_inbox_add_reply(struct obx_store *st, const struct obx_new_reply *r, int *added)
{
    sqlite3_stmt *s;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_inbox_add_reply(st, r, added);
    s = obx_db_stmt(st->db, SQL_INSERT_REPLY);
    *added = 0;
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, r->partoo_message_id);
    sqlite3_bind_int64(s, 2, r->event_id);
    obx_db_bind_text(s, 3, r->channel_id);
    obx_db_bind_text(s, 4, r->external_conversation_id);
    obx_db_bind_text(s, 5, r->partoo_conversation_id);
    obx_db_bind_text(s, 6, r->business_id);
    obx_db_bind_text(s, 7, r->sender_type);
    obx_db_bind_text(s, 8, r->sender_label);
    obx_db_bind_text(s, 9, r->content_type);
    obx_db_bind_text(s, 10, r->content);
    obx_db_bind_text(s, 11, r->message_date);
    sqlite3_bind_int64(s, 12, obx_now_ms(st->clock));
    err = obx_db_step_done(s);
    if (err == OBX_OK)
        *added = sqlite3_changes(st->db->h) > 0;
    return err;
}

static const char SQL_DUE[] =
    "SELECT id FROM inbox WHERE state = 'pending' AND next_attempt_at_ms <= ?1"
    " ORDER BY next_attempt_at_ms, id LIMIT 1";
static const char SQL_LEASE[] = "UPDATE inbox SET next_attempt_at_ms = ?2 WHERE id = ?1";

enum obx_err
obx_store_inbox_lease_due(struct obx_store *st, int64_t lease_ms, int64_t *id)
{
    sqlite3_stmt *due, *lease;
    int64_t now_ms = obx_now_ms(st->clock);
    enum obx_err err;
    int rc;

    if (st->pg)
        return obx_store_pg_inbox_lease_due(st, lease_ms, id);
    *id = 0;
    due = obx_db_stmt(st->db, SQL_DUE);
    lease = obx_db_stmt(st->db, SQL_LEASE);
    if (!due || !lease)
        return OBX_EDB;
    sqlite3_bind_int64(due, 1, now_ms);
    rc = sqlite3_step(due);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(due, 0);
    sqlite3_reset(due);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
    sqlite3_bind_int64(lease, 1, *id);
    sqlite3_bind_int64(lease, 2, now_ms + lease_ms);
    err = obx_db_step_done(lease);
    if (err != OBX_OK)
        *id = 0;
    return err;
}

static const char SQL_DELIVERED[] =
    "UPDATE inbox SET state = 'delivered', delivered_at_ms = ?2, attempts = attempts + 1,"
    " last_http_status = ?3, last_error = NULL WHERE id = ?1 AND state = 'pending'";

enum obx_err
obx_store_inbox_mark_delivered(struct obx_store *st, int64_t id, int http_status, int64_t at_ms)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_inbox_mark_delivered(st, id, http_status, at_ms);
    s = obx_db_stmt(st->db, SQL_DELIVERED);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, at_ms);
    sqlite3_bind_int(s, 3, http_status);
    return obx_db_step_done(s);
}

static const char SQL_RETRY[] =
    "UPDATE inbox SET attempts = attempts + 1, last_http_status = NULLIF(?3, 0),"
    " last_error = ?4, next_attempt_at_ms = ?5,"
    " state = CASE WHEN ?6 THEN 'failed' ELSE state END WHERE id = ?1 AND state = 'pending'";

enum obx_err
obx_store_inbox_mark_retry(struct obx_store *st, int64_t id, int http_status, const char *error,
                           int64_t next_attempt_at_ms, int give_up)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_inbox_mark_retry(st, id, http_status, error, next_attempt_at_ms,
                                             give_up);
    s = obx_db_stmt(st->db, SQL_RETRY);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int(s, 3, http_status);
    obx_db_bind_text(s, 4, error);
    sqlite3_bind_int64(s, 5, next_attempt_at_ms);
    sqlite3_bind_int(s, 6, give_up);
    return obx_db_step_done(s);
}

static const char SQL_FAIL[] =
    "UPDATE inbox SET state = 'failed', last_error = ?2 WHERE id = ?1 AND state = 'pending'";

enum obx_err
obx_store_inbox_fail(struct obx_store *st, int64_t id, const char *reason)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_inbox_fail(st, id, reason);
    s = obx_db_stmt(st->db, SQL_FAIL);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    obx_db_bind_text(s, 2, reason);
    return obx_db_step_done(s);
}

static const char SQL_ACK[] =
    "UPDATE inbox SET state = 'acked', acked_at_ms = coalesce(acked_at_ms, ?2)"
    " WHERE id = ?1";

enum obx_err
obx_store_inbox_ack(struct obx_store *st, int64_t id)
{
    sqlite3_stmt *s;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_inbox_ack(st, id);
    s = obx_db_stmt(st->db, SQL_ACK);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, obx_now_ms(st->clock));
    err = obx_db_step_done(s);
    if (err == OBX_OK && sqlite3_changes(st->db->h) == 0)
        err = OBX_ENOTFOUND;
    return err;
}
