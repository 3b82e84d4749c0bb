/* store_pg_query: query.h's reads on PostgreSQL (store_pg_query.h). */
#include "store_pg_query.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"
#include "store_query.h"


static const char *
text(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t
num(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void
read_row(PGresult *r, int row, struct obx_row *m)
{
    memset(m, 0, sizeof *m);
    m->id = num(r, row, 0);
    m->msg.channel_id = text(r, row, 1);
    m->msg.external_message_id = text(r, row, 2);
    m->msg.business_id = text(r, row, 3);
    m->msg.external_conversation_id = text(r, row, 4);
    m->msg.content = text(r, row, 5);
    m->msg.sender_type = text(r, row, 6);
    m->msg.consumer_name = text(r, row, 7);
    m->msg.consumer_image = text(r, row, 8);
    m->msg.priority = num(r, row, 9);
    m->state = text(r, row, 10);
    m->state_reason = text(r, row, 11);
    m->attempts = (int)num(r, row, 12);
    m->resends = (int)num(r, row, 13);
    m->created_at_ms = num(r, row, 14);
    m->state_at_ms = num(r, row, 15);
    m->next_attempt_at_ms = num(r, row, 16);
    m->accepted_at_ms = num(r, row, 17);
    m->confirmed_at_ms = num(r, row, 18);
    m->last_http_status = (int)num(r, row, 19);
    m->last_error = text(r, row, 20);
    m->partoo_message_id = text(r, row, 21);
    m->partoo_status = text(r, row, 22);
    m->unconfirmed_at_ms = num(r, row, 23);
    m->tenant = text(r, row, 24);
}

static const char SQL_GET[] = "SELECT " OBX_MESSAGE_COLUMNS " FROM outbox"
                              " WHERE channel_id = $1 AND external_message_id = $2";
static const char SQL_TRANSITIONS[] =
    "SELECT id, message_id, at_ms, from_state, to_state, reason FROM transitions"
    " WHERE message_id = $1::bigint ORDER BY id";
static const char SQL_ATTEMPTS[] =
    "SELECT id, message_id, started_at_ms, duration_ms, http_status, outcome, error,"
    " response_excerpt FROM attempts WHERE message_id = $1::bigint ORDER BY id";

/* The message's history, row by row, to the callbacks. */
static enum obx_err
each_history(struct obx_pg *pg, const char *id, obx_transition_fn tr_fn, obx_attempt_fn at_fn,
             void *ctx)
{
    const char *vals[1] = {id};
    PGresult *r;
    int stop = 0;

    if (tr_fn) {
        if (!(r = obx_pg_run(pg, SQL_TRANSITIONS, 1, vals, NULL, NULL)))
            return OBX_EDB;
        for (int i = 0; i < PQntuples(r) && !stop; i++) {
            struct obx_transition_row t = {num(r, i, 0),  num(r, i, 1),  num(r, i, 2),
                                           text(r, i, 3), text(r, i, 4), text(r, i, 5)};
            stop = tr_fn(ctx, &t);
        }
        PQclear(r);
    }
    if (at_fn && !stop) {
        if (!(r = obx_pg_run(pg, SQL_ATTEMPTS, 1, vals, NULL, NULL)))
            return OBX_EDB;
        for (int i = 0; i < PQntuples(r) && !stop; i++) {
            struct obx_attempt_row a = {num(r, i, 0),  num(r, i, 1),      num(r, i, 2),
                                        num(r, i, 3),  (int)num(r, i, 4), text(r, i, 5),
                                        text(r, i, 6), text(r, i, 7)};
            stop = at_fn(ctx, &a);
        }
        PQclear(r);
    }
    return OBX_OK;
}

enum obx_err
obx_store_pg_query_message(struct obx_store *st, const char *channel_id,
                           const char *external_message_id, obx_row_fn row_fn,
                           obx_transition_fn tr_fn, obx_attempt_fn at_fn, void *ctx)
{
    const char *vals[2] = {channel_id, external_message_id};
    enum obx_err err;
    PGresult *r;

    if (!st->pg)
        return OBX_EINVAL;
    /* One snapshot, so the row, its transitions and attempts agree. */
    err = obx_pg_exec(st->pg, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
    if (err != OBX_OK)
        return err;
    r = obx_pg_run(st->pg, SQL_GET, 2, vals, NULL, NULL);
    if (!r) {
        err = OBX_EDB;
    } else if (PQntuples(r) == 0) {
        err = OBX_ENOTFOUND;
    } else {
        struct obx_row m;
        char id[24];
        read_row(r, 0, &m);
        snprintf(id, sizeof id, "%lld", (long long)m.id);
        if (row_fn)
            row_fn(ctx, &m);
        err = each_history(st->pg, id, tr_fn, at_fn, ctx);
    }
    PQclear(r);
    obx_pg_exec_quiet(st->pg, "ROLLBACK"); /* read only: nothing to keep */
    return err;
}

/*
 * A page, newest first, with store_query.c's filters: $1 state (NULL: any), $2 channel
 * (NULL: any), ids in [$6, $3), at most $4, $5 = 1 only the unconfirmed, created_at in
 * [$7, $8). outbox_state (state, id) serves a listing by state.
 */
static const char SQL_LIST[] =
    "SELECT " OBX_MESSAGE_COLUMNS " FROM outbox"
    " WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR channel_id = $2)"
    " AND id < $3::bigint AND id >= $6::bigint"
    " AND ($5::integer = 0 OR unconfirmed_at_ms IS NOT NULL)"
    " AND created_at_ms >= $7::bigint AND created_at_ms < $8::bigint"
    " ORDER BY id DESC LIMIT $4::integer";

enum obx_err
obx_store_pg_query_messages(struct obx_store *st, const struct obx_list_query *q, obx_row_fn fn,
                            void *ctx, int64_t *next_cursor)
{
    char num_s[6][24];
    const char *vals[8];
    int64_t below = q->before_id > 0 ? q->before_id : INT64_MAX, last_id = 0;
    int rows, stop = 0;
    PGresult *r;

    *next_cursor = 0;
    if (!st->pg)
        return OBX_EINVAL;
    if (q->win.max_id && q->win.max_id < below) /* max_id is -1 when nothing can match */
        below = q->win.max_id + 1;
    snprintf(num_s[0], sizeof num_s[0], "%lld", (long long)below);
    snprintf(num_s[1], sizeof num_s[1], "%d", q->limit);
    snprintf(num_s[2], sizeof num_s[2], "%d", q->unconfirmed);
    snprintf(num_s[3], sizeof num_s[3], "%lld", (long long)q->win.min_id);
    snprintf(num_s[4], sizeof num_s[4], "%lld",
             (long long)(q->win.after_ms ? q->win.after_ms : INT64_MIN));
    snprintf(num_s[5], sizeof num_s[5], "%lld",
             (long long)(q->win.before_ms ? q->win.before_ms : INT64_MAX));
    vals[0] = q->unconfirmed ? "accepted" : q->state;
    vals[1] = q->channel_id;
    vals[2] = num_s[0];
    vals[3] = num_s[1];
    vals[4] = num_s[2];
    vals[5] = num_s[3];
    vals[6] = num_s[4];
    vals[7] = num_s[5];
    r = obx_pg_run(st->pg, SQL_LIST, 8, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    rows = PQntuples(r);
    for (int i = 0; i < rows && !stop; i++) {
        struct obx_row m;
        read_row(r, i, &m);
        last_id = m.id;
        stop = fn(ctx, &m);
    }
    PQclear(r);
    if (rows == q->limit && last_id > 1)
        *next_cursor = last_id;
    return OBX_OK;
}

/* ---- the inbox (replies for the producer) -------------------------------------------------- */

static const char SQL_INBOX[] =
    "SELECT id, partoo_message_id, channel_id, external_conversation_id, partoo_conversation_id,"
    " business_id, sender_type, sender_label, content_type, content, message_date, state,"
    " attempts, last_http_status, last_error, received_at_ms, delivered_at_ms, acked_at_ms"
    " FROM inbox WHERE id > $1::bigint AND ($2::boolean OR state <> 'acked')"
    " ORDER BY id LIMIT $3::integer";

enum obx_err
obx_store_pg_query_replies(struct obx_store *st, int64_t after_id, int limit, int include_acked,
                           obx_inbox_fn fn, void *ctx, int64_t *next_cursor)
{
    char after[24], lim[24];
    const char *vals[3] = {after, include_acked ? "t" : "f", lim};
    PGresult *r;
    int rows;

    *next_cursor = 0;
    if (!st->pg)
        return OBX_EINVAL;
    snprintf(after, sizeof after, "%lld", (long long)after_id);
    snprintf(lim, sizeof lim, "%d", limit);
    r = obx_pg_run(st->pg, SQL_INBOX, 3, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    rows = PQntuples(r);
    for (int i = 0; i < rows; i++) {
        struct obx_inbox_row m = {
            .id = num(r, i, 0),
            .partoo_message_id = text(r, i, 1),
            .channel_id = text(r, i, 2),
            .external_conversation_id = text(r, i, 3),
            .partoo_conversation_id = text(r, i, 4),
            .business_id = text(r, i, 5),
            .sender_type = text(r, i, 6),
            .sender_label = text(r, i, 7),
            .content_type = text(r, i, 8),
            .content = text(r, i, 9),
            .message_date = text(r, i, 10),
            .state = text(r, i, 11),
            .attempts = (int)num(r, i, 12),
            .last_http_status = (int)num(r, i, 13),
            .last_error = text(r, i, 14),
            .received_at_ms = num(r, i, 15),
            .delivered_at_ms = num(r, i, 16),
            .acked_at_ms = num(r, i, 17),
        };
        if (i + 1 == limit)
            *next_cursor = m.id;
        if (fn(ctx, &m))
            break;
    }
    PQclear(r);
    return OBX_OK;
}

/* ---- statistics (/v1/stats) ----------------------------------------------------------------- */

/* Runs sql with one bigint parameter, $1 = ms: the result, or NULL (obx_pg_errmsg says why). */
static PGresult *
run_with_ms(struct obx_store *st, const char *sql, int64_t ms)
{
    char v[24];
    const char *vals[1] = {v};

    snprintf(v, sizeof v, "%lld", (long long)ms);
    return obx_pg_run(st->pg, sql, 1, vals, NULL, NULL);
}


enum obx_err
obx_store_pg_query_channel_states(struct obx_store *st, int64_t confirmed_since_ms,
                                  obx_channel_state_fn fn, void *ctx)
{
    PGresult *r;

    if (!st->pg)
        return OBX_EINVAL;
    r = run_with_ms(st,
                    "SELECT channel_id, state, count(*),"
                    " coalesce(min(created_at_ms) FILTER (WHERE state = 'queued'), 0),"
                    " count(unconfirmed_at_ms),"
                    " count(*) FILTER (WHERE confirmed_at_ms >= $1::bigint)"
                    " FROM outbox GROUP BY channel_id, state ORDER BY channel_id",
                    confirmed_since_ms);
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        struct obx_channel_state_row row = {text(r, i, 0), text(r, i, 1), num(r, i, 2),
                                            num(r, i, 3),  num(r, i, 4),  num(r, i, 5)};
        if (fn(ctx, &row))
            break;
    }
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_query_last_failure(struct obx_store *st, const char *channel_id, char *error, size_t n,
                                int *http_status, int *found)
{
    const char *vals[1] = {channel_id};
    PGresult *r;

    error[0] = '\0';
    *http_status = 0;
    *found = 0;
    if (!st->pg)
        return OBX_EINVAL;
    r = obx_pg_run(st->pg,
                   "SELECT a.error, a.http_status FROM attempts a JOIN outbox o"
                   " ON o.id = a.message_id WHERE o.channel_id = $1 AND a.outcome <> 'accepted'"
                   " ORDER BY a.id DESC LIMIT 1",
                   1, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) == 1) {
        snprintf(error, n, "%s", text(r, 0, 0) ? text(r, 0, 0) : "");
        *http_status = (int)num(r, 0, 1);
        *found = 1;
    }
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_query_sent_by_channel(struct obx_store *st, int64_t since_ms, obx_channel_count_fn fn,
                                   void *ctx)
{
    PGresult *r;

    if (!st->pg)
        return OBX_EINVAL;
    r = run_with_ms(st,
                    "SELECT o.channel_id, count(*) FROM attempts a JOIN outbox o"
                    " ON o.id = a.message_id WHERE a.started_at_ms >= $1::bigint"
                    " AND a.outcome = 'accepted' GROUP BY o.channel_id",
                    since_ms);
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++)
        if (fn(ctx, text(r, i, 0), num(r, i, 1)))
            break;
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_query_count_accepted_since(struct obx_store *st, int64_t since_ms, int64_t *out)
{
    PGresult *r;

    *out = 0;
    if (!st->pg)
        return OBX_EINVAL;
    r = run_with_ms(st,
                    "SELECT count(*) FROM attempts WHERE started_at_ms >= $1::bigint"
                    " AND outcome = 'accepted'",
                    since_ms);
    if (!r)
        return OBX_EDB;
    *out = num(r, 0, 0);
    PQclear(r);
    return OBX_OK;
}

/* ---- counts for /metrics --------------------------------------------------------------------- */

enum obx_err
obx_store_pg_query_count_by_name(struct obx_store *st, const char *sql, const char *const *names,
                                 int n, int null_slot, int64_t *out)
{
    PGresult *r;

    for (int i = 0; i < n; i++)
        out[i] = 0;
    if (!st->pg)
        return OBX_EINVAL;
    if (!(r = obx_pg_run(st->pg, sql, 0, NULL, NULL, NULL)))
        return OBX_EDB;
    for (int k = 0; k < PQntuples(r); k++) {
        const char *name = text(r, k, 0);
        int slot = name ? n - 1 : null_slot;
        for (int i = 0; name && i < n; i++)
            if (strcmp(name, names[i]) == 0)
                slot = i;
        out[slot] += num(r, k, 1);
    }
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_query_db_bytes(struct obx_store *st, int64_t *out)
{
    /* The outbox's own tables and their indexes and TOAST, not the whole database (the
     * CRM's tables share it). */
    PGresult *r;

    *out = 0;
    if (!st->pg)
        return OBX_EINVAL;
    r = obx_pg_run(st->pg,
                   "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                   " WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'",
                   0, NULL, NULL, NULL);
    if (!r)
        return OBX_EDB;
    *out = num(r, 0, 0);
    PQclear(r);
    return OBX_OK;
}
