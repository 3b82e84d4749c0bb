/*
 * store_pg_inbox: Partoo's webhooks on PostgreSQL (store_pg_inbox.h), the counterpart of the
 * parts of store_inbox.c and store.c that serve's webhook path uses: an event stored once,
 * interpreted later (confirmation of our message, or a reply for the producer). Tables of
 * migrations/postgresql/0006_webhooks; each call runs in the caller's transaction (the store
 * thread's group), as its SQLite counterpart does.
 */
#include "store_pg_inbox.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "mem.h"
#include "pg.h"

static const char *
num(char *buf, size_t n, int64_t v)
{
    snprintf(buf, n, "%lld", (long long)v);
    return buf;
}

enum obx_err
obx_store_pg_inbox_add_event(struct obx_store *st, const char *sha256, const void *body, size_t len,
                             int64_t received_at_ms, int64_t *id)
{
    char at[24];
    const char *vals[3] = {sha256, num(at, sizeof at, received_at_ms), body};
    int lens[3] = {0, 0, (int)len}, formats[3] = {0, 0, 1};
    PGresult *r;

    *id = 0;
    r = obx_pg_run(st->pg,
                   "INSERT INTO webhook_events (body_sha256, received_at_ms, body)"
                   " VALUES ($1, $2::bigint, $3) ON CONFLICT (body_sha256) DO NOTHING"
                   " RETURNING id",
                   3, vals, lens, formats);
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) == 1)
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_inbox_pending_events(struct obx_store *st, int max, struct obx_stored_event *out,
                                  size_t *n)
{
    char lim[24];
    const char *vals[1] = {num(lim, sizeof lim, max)};
    PGresult *r = obx_pg_run(st->pg,
                             "SELECT id, body FROM webhook_events WHERE processed_at_ms IS NULL"
                             " ORDER BY id LIMIT $1::integer",
                             1, vals, NULL, NULL);
    enum obx_err err = OBX_OK;

    *n = 0;
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r) && i < max && err == OBX_OK; i++) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, i, 1), &len);
        struct obx_stored_event *e = &out[*n];
        if (!raw) {
            err = OBX_ENOMEM;
            break;
        }
        e->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
        e->len = len;
        e->body = NULL;
        if (len) {
            e->body = obx_malloc(len + 1);
            if (e->body) {
                memcpy(e->body, raw, len);
                e->body[len] = '\0';
            } else {
                err = OBX_ENOMEM;
            }
        }
        PQfreemem(raw);
        if (err == OBX_OK)
            (*n)++;
    }
    PQclear(r);
    if (err != OBX_OK) {
        obx_store_inbox_events_release(out, *n);
        *n = 0;
    }
    return err;
}

enum obx_err
obx_store_pg_inbox_has_backlog(struct obx_store *st, int *backlog)
{
    long long v = 0;
    int found = 0;
    enum obx_err err = obx_pg_query_int(
        st->pg, "SELECT EXISTS (SELECT 1 FROM webhook_events WHERE processed_at_ms IS NULL)::int",
        &v, &found);

    *backlog = v != 0;
    return err;
}

enum obx_err
obx_store_pg_inbox_mark_event(struct obx_store *st, int64_t id, const char *event_type,
                              const char *partoo_message_id, const char *outcome)
{
    char ids[24], now[24];
    const char *vals[5] = {num(ids, sizeof ids, id), event_type, partoo_message_id,
                           num(now, sizeof now, obx_now_ms(st->clock)), outcome};
    PGresult *r =
        obx_pg_run(st->pg,
                   "UPDATE webhook_events SET event_type = $2, partoo_message_id = NULLIF($3, ''),"
                   " processed_at_ms = $4::bigint, outcome = $5 WHERE id = $1::bigint",
                   5, vals, NULL, NULL);

    if (!r)
        return OBX_EDB;
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_inbox_add_reply(struct obx_store *st, const struct obx_new_reply *rp, int *added)
{
    char ev[24], now[24];
    const char *vals[12] = {rp->partoo_message_id,
                            num(ev, sizeof ev, rp->event_id),
                            rp->channel_id,
                            rp->external_conversation_id,
                            rp->partoo_conversation_id,
                            rp->business_id,
                            rp->sender_type,
                            rp->sender_label,
                            rp->content_type,
                            rp->content,
                            rp->message_date,
                            num(now, sizeof now, obx_now_ms(st->clock))};
    PGresult *r = obx_pg_run(st->pg,
                             "INSERT INTO inbox (partoo_message_id, event_id, channel_id,"
                             " external_conversation_id, partoo_conversation_id, business_id,"
                             " sender_type, sender_label, content_type, content, message_date,"
                             " received_at_ms) VALUES ($1, $2::bigint, $3, $4, NULLIF($5, ''),"
                             " NULLIF($6, ''), $7, $8, $9, $10, $11, $12::bigint)"
                             " ON CONFLICT (partoo_message_id) DO NOTHING",
                             12, vals, NULL, NULL);

    *added = 0;
    if (!r)
        return OBX_EDB;
    *added = strtoll(PQcmdTuples(r), NULL, 10) > 0;
    PQclear(r);
    return OBX_OK;
}

/* ---- the relay of replies to inbox_url ------------------------------------------------------ */

/*
 * The next due reply, its due time pushed ahead as a lease, in one statement. SKIP LOCKED:
 * two nodes relaying at once take different replies.
 */
enum obx_err
obx_store_pg_inbox_lease_due(struct obx_store *st, int64_t lease_ms, int64_t *id)
{
    char now[24], lease[24];
    const char *vals[2] = {num(now, sizeof now, obx_now_ms(st->clock)),
                           num(lease, sizeof lease, lease_ms)};
    PGresult *r = obx_pg_run(st->pg,
                             "UPDATE inbox SET next_attempt_at_ms = $1::bigint + $2::bigint"
                             " WHERE id = (SELECT id FROM inbox WHERE state = 'pending'"
                             "  AND next_attempt_at_ms <= $1::bigint"
                             "  ORDER BY next_attempt_at_ms, id LIMIT 1 FOR UPDATE SKIP LOCKED)"
                             " RETURNING id",
                             2, vals, NULL, NULL);

    *id = 0;
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) == 1)
        *id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return OBX_OK;
}

/* Runs an UPDATE of one reply; *changed (may be NULL) gets how many rows it matched. */
static enum obx_err
update_reply(struct obx_store *st, const char *sql, int n, const char *const *vals, int *changed)
{
    PGresult *r = obx_pg_run(st->pg, sql, n, vals, NULL, NULL);

    if (!r)
        return OBX_EDB;
    if (changed)
        *changed = atoi(PQcmdTuples(r));
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_inbox_mark_delivered(struct obx_store *st, int64_t id, int http_status, int64_t at_ms)
{
    char a[24], b[24], c[24];
    const char *vals[3] = {num(a, sizeof a, id), num(b, sizeof b, at_ms),
                           num(c, sizeof c, http_status)};

    return update_reply(st,
                        "UPDATE inbox SET state = 'delivered', delivered_at_ms = $2::bigint,"
                        " attempts = attempts + 1, last_http_status = $3::integer,"
                        " last_error = NULL WHERE id = $1::bigint AND state = 'pending'",
                        3, vals, NULL);
}

enum obx_err
obx_store_pg_inbox_mark_retry(struct obx_store *st, int64_t id, int http_status, const char *error,
                              int64_t next_attempt_at_ms, int give_up)
{
    char a[24], b[24], c[24];
    const char *vals[5] = {num(a, sizeof a, id), num(b, sizeof b, http_status), error,
                           num(c, sizeof c, next_attempt_at_ms), give_up ? "t" : "f"};

    return update_reply(st,
                        "UPDATE inbox SET attempts = attempts + 1,"
                        " last_http_status = NULLIF($2::integer, 0), last_error = $3,"
                        " next_attempt_at_ms = $4::bigint,"
                        " state = CASE WHEN $5::boolean THEN 'failed' ELSE state END"
                        " WHERE id = $1::bigint AND state = 'pending'",
                        5, vals, NULL);
}

enum obx_err
obx_store_pg_inbox_fail(struct obx_store *st, int64_t id, const char *reason)
{
    char a[24];
    const char *vals[2] = {num(a, sizeof a, id), reason};

    return update_reply(st,
                        "UPDATE inbox SET state = 'failed', last_error = $2"
                        " WHERE id = $1::bigint AND state = 'pending'",
                        2, vals, NULL);
}

enum obx_err
obx_store_pg_inbox_ack(struct obx_store *st, int64_t id)
{
    char a[24], b[24];
    const char *vals[2] = {num(a, sizeof a, id), num(b, sizeof b, obx_now_ms(st->clock))};
    int changed = 0;
    enum obx_err err = update_reply(st,
                                    "UPDATE inbox SET state = 'acked',"
                                    " acked_at_ms = coalesce(acked_at_ms, $2::bigint)"
                                    " WHERE id = $1::bigint",
                                    2, vals, &changed);

    return err == OBX_OK && changed == 0 ? OBX_ENOTFOUND : err;
}

/* ---- retention ------------------------------------------------------------------------ */

/* One batch of replies by id (SQLite's SQL_OLD_REPLIES), the old ones deleted. */
static const char SQL_PURGE_REPLIES[] =
    "WITH c AS (SELECT id, state IN ('delivered', 'acked')"
    "  AND coalesce(acked_at_ms, delivered_at_ms, received_at_ms) < $1::bigint AS old"
    "  FROM inbox WHERE id > $2::bigint ORDER BY id LIMIT $3::bigint),"
    " d AS (DELETE FROM inbox WHERE id IN (SELECT id FROM c WHERE old) RETURNING 1)"
    " SELECT (SELECT count(*) FROM c), (SELECT max(id) FROM c), (SELECT count(*) FROM d)";

enum obx_err
obx_store_pg_inbox_purge_replies(struct obx_store *st, int64_t before_ms, int rows, int64_t *cursor,
                                 int64_t *deleted, int *more)
{
    char v[3][24];
    const char *vals[3] = {v[0], v[1], v[2]};
    enum obx_err err;
    PGresult *r;

    *deleted = 0;
    *more = 0;
    snprintf(v[0], sizeof v[0], "%lld", (long long)before_ms);
    snprintf(v[1], sizeof v[1], "%lld", (long long)*cursor);
    snprintf(v[2], sizeof v[2], "%d", rows);
    err = obx_pg_tx_begin(st->pg);
    if (err != OBX_OK)
        return err;
    r = obx_pg_run(st->pg, SQL_PURGE_REPLIES, 3, vals, NULL, NULL);
    if (!r) {
        err = OBX_EDB;
    } else {
        *more = strtoll(PQgetvalue(r, 0, 0), NULL, 10) == rows;
        if (!PQgetisnull(r, 0, 1))
            *cursor = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        *deleted = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
    }
    PQclear(r);
    return obx_pg_tx_end(st->pg, err);
}

/*
 * One batch of webhook events by id (SQLite's SQL_OLD_EVENTS): up to the first one too young
 * to go; an interpreted event with no reply waiting is deleted before hashes_before_ms, else
 * loses its body (its hash stays: the replay guard).
 */
static const char SQL_PURGE_EVENTS[] =
    "WITH c AS (SELECT w.id, w.received_at_ms AS at, w.processed_at_ms IS NOT NULL"
    "  AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = w.id) AS done,"
    "  length(w.body) > 0 AS has_body FROM webhook_events w"
    "  WHERE w.id > $1::bigint ORDER BY w.id LIMIT $2::bigint),"
    " young AS (SELECT min(id) AS id FROM c WHERE at >= $3::bigint),"
    " s AS (SELECT c.* FROM c, young WHERE young.id IS NULL OR c.id < young.id),"
    " del AS (DELETE FROM webhook_events WHERE id IN"
    "  (SELECT id FROM s WHERE done AND at < $4::bigint) RETURNING length(body) > 0 AS had_body),"
    " stripped AS (UPDATE webhook_events SET body = '\\x'::bytea WHERE id IN"
    "  (SELECT id FROM s WHERE done AND at >= $4::bigint AND has_body) RETURNING 1)"
    " SELECT (SELECT count(*) FROM s), (SELECT max(id) FROM s),"
    " (SELECT count(*) FROM del WHERE had_body) + (SELECT count(*) FROM stripped),"
    " (SELECT count(*) FROM del), (SELECT id FROM young) IS NOT NULL";

enum obx_err
obx_store_pg_inbox_purge_events(struct obx_store *st, int64_t before_ms, int64_t hashes_before_ms,
                                int rows, int64_t *cursor, int64_t *bodies, int64_t *hashes,
                                int *more)
{
    char v[4][24];
    const char *vals[4] = {v[0], v[1], v[2], v[3]};
    enum obx_err err;
    PGresult *r;

    *bodies = *hashes = 0;
    *more = 0;
    snprintf(v[0], sizeof v[0], "%lld", (long long)*cursor);
    snprintf(v[1], sizeof v[1], "%d", rows);
    snprintf(v[2], sizeof v[2], "%lld", (long long)before_ms);
    snprintf(v[3], sizeof v[3], "%lld", (long long)hashes_before_ms);
    err = obx_pg_tx_begin(st->pg);
    if (err != OBX_OK)
        return err;
    r = obx_pg_run(st->pg, SQL_PURGE_EVENTS, 4, vals, NULL, NULL);
    if (!r) {
        err = OBX_EDB;
    } else {
        int young = strcmp(PQgetvalue(r, 0, 4), "t") == 0;
        *more = !young && strtoll(PQgetvalue(r, 0, 0), NULL, 10) == rows;
        if (!PQgetisnull(r, 0, 1))
            *cursor = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
        *bodies = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
        *hashes = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
    }
    PQclear(r);
    return obx_pg_tx_end(st->pg, err);
}
