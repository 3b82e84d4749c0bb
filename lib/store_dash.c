/* store_dash: pauses, chart history, kept counts and bulk actions for the dashboard. */
#include "store_dash.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "mem.h"
#include "store_dash_filter.h"
#include "store_tenant.h"
#include "store_pg_dash.h"
#include "view.h"

static const char SQL_PAUSE[] =
    "INSERT INTO pauses (scope, key, reason, by, paused_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT (scope, key) WHERE resumed_at_ms IS NULL DO NOTHING";

/* Every pause and resume is an audit event (0010_audit_actions.sql, lib/audit.h). */
static const char SQL_ACTION[] =
    "INSERT INTO actions (at_ms, action, scope, key, reason, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

static enum obx_err
add_action(struct obx_store *st, int64_t at_ms, const char *action, const char *scope,
           const char *key, const char *reason, const char *by)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ACTION);

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, at_ms);
    obx_db_bind_text(s, 2, action);
    obx_db_bind_text(s, 3, scope);
    obx_db_bind_text(s, 4, key);
    obx_db_bind_text(s, 5, reason);
    obx_db_bind_text(s, 6, by);
    return obx_db_step_done(s);
}

enum obx_err
obx_store_dash_pause(struct obx_store *st, const char *scope, const char *key, const char *reason,
                     const char *by, int *created)
{
    if (st->pg)
        return obx_store_pg_dash_pause(st, scope, key, reason, by, created);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PAUSE);
    int64_t now = obx_now_ms(st->clock);
    enum obx_err err;

    *created = 0;
    if (!s)
        return OBX_EDB;
    /* The pause and its audit event commit together, or neither does. */
    err = obx_db_begin(st->db);
    if (err != OBX_OK)
        return err;
    obx_db_bind_text(s, 1, scope);
    obx_db_bind_text(s, 2, key);
    obx_db_bind_text(s, 3, reason);
    obx_db_bind_text(s, 4, by);
    sqlite3_bind_int64(s, 5, now);
    err = obx_db_step_done(s);
    if (err == OBX_OK)
        *created = sqlite3_changes(st->db->h) > 0;
    if (err == OBX_OK && *created)
        err = add_action(st, now, "pause", scope, key, reason, by);
    if (err == OBX_OK)
        return obx_db_commit(st->db);
    obx_db_rollback(st->db);
    *created = 0;
    return err;
}

static const char SQL_RESUME[] = "UPDATE pauses SET resumed_at_ms = max(?3, paused_at_ms)"
                                 " WHERE scope = ?1 AND key = ?2 AND resumed_at_ms IS NULL";

enum obx_err
obx_store_dash_resume(struct obx_store *st, const char *scope, const char *key, const char *by)
{
    if (st->pg)
        return obx_store_pg_dash_resume(st, scope, key, by);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_RESUME);
    int64_t now = obx_now_ms(st->clock);
    enum obx_err err;

    if (!s)
        return OBX_EDB;
    err = obx_db_begin(st->db);
    if (err != OBX_OK)
        return err;
    obx_db_bind_text(s, 1, scope);
    obx_db_bind_text(s, 2, key);
    sqlite3_bind_int64(s, 3, now);
    err = obx_db_step_done(s);
    if (err == OBX_OK && sqlite3_changes(st->db->h) == 0)
        err = OBX_ENOTFOUND;
    if (err == OBX_OK)
        err = add_action(st, now, "resume", scope, key, "", by);
    if (err == OBX_OK)
        return obx_db_commit(st->db);
    obx_db_rollback(st->db);
    return err;
}

/* Actions have no message to wait for: they go once a checkpoint covers them. */
static const char SQL_PRUNE_ACTIONS[] =
    "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE id <= ?1 ORDER BY id"
    " LIMIT ?2)";

enum obx_err
obx_store_dash_prune_actions(struct obx_store *st, int64_t upto_id, int max, int64_t *deleted)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PRUNE_ACTIONS);
    enum obx_err err;

    *deleted = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, upto_id);
    sqlite3_bind_int(s, 2, max);
    err = obx_db_step_done(s);
    if (err == OBX_OK)
        *deleted = sqlite3_changes(st->db->h);
    return err;
}

static const char SQL_PAUSES[] = "SELECT scope, key, reason, by, paused_at_ms FROM pauses"
                                 " WHERE resumed_at_ms IS NULL ORDER BY scope, key";

enum obx_err
obx_store_dash_pauses(struct obx_store *st, obx_pause_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_dash_pauses(st, fn, ctx);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PAUSES);
    struct obx_pause_row p;
    int rc;

    if (!s)
        return OBX_EDB;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        p.scope = (const char *)sqlite3_column_text(s, 0);
        p.key = (const char *)sqlite3_column_text(s, 1);
        p.reason = (const char *)sqlite3_column_text(s, 2);
        p.by = (const char *)sqlite3_column_text(s, 3);
        p.paused_at_ms = sqlite3_column_int64(s, 4);
        if (fn(ctx, &p)) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

/*
 * The pause intervals of the channel and of its tenant that overlap [since, now], clipped to
 * it, by start: a channel paused while its tenant was too is held once, not twice.
 */
static const char SQL_HELD[] =
    "SELECT max(paused_at_ms, ?3), min(coalesce(resumed_at_ms, ?4), ?4) FROM pauses"
    " WHERE ((scope = 'channel' AND key = ?1) OR (scope = 'tenant' AND key = ?2))"
    " AND paused_at_ms < ?4 AND coalesce(resumed_at_ms, ?4) > ?3 ORDER BY 1";

enum obx_err
obx_store_dash_held_ms(struct obx_store *st, const char *channel_id, const char *tenant,
                       int64_t since_ms, int64_t now_ms, int64_t *out)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_HELD);
    int64_t held = 0, end = since_ms; /* the union so far ends at `end` */
    int rc;

    *out = 0;
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    obx_db_bind_text(s, 2, tenant && *tenant ? tenant : "default");
    sqlite3_bind_int64(s, 3, since_ms);
    sqlite3_bind_int64(s, 4, now_ms);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t from = sqlite3_column_int64(s, 0), to = sqlite3_column_int64(s, 1);
        if (from < end)
            from = end;
        if (to > from) {
            held += to - from;
            end = to;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return obx_err_from_sqlite(rc);
    *out = held;
    return OBX_OK;
}

/* At most 4 rows a minute over the range: 7 days is 40,320 rows read by primary key. */
static const char SQL_HISTORY[] =
    "SELECT minute, kind, n FROM stats_minute WHERE minute >= ?1 AND minute < ?2";

/* PostgreSQL: each kept minute into its bucket. */
struct history_fill {
    struct obx_history_point *out;
    int n;
    int64_t first, bucket_ms;
};

static void
on_pg_minute(void *ctx, int64_t minute, const char *kind, int64_t v)
{
    struct history_fill *h = ctx;
    int64_t i = (minute * 60000 - h->first) / h->bucket_ms;

    if (i < 0 || i >= h->n)
        return;
    if (strcmp(kind, "sent") == 0)
        h->out[i].sent += v;
    else if (strcmp(kind, "accepted") == 0)
        h->out[i].accepted += v;
    else if (strcmp(kind, "failed") == 0)
        h->out[i].failed += v;
    else if (strcmp(kind, "confirmed") == 0)
        h->out[i].confirmed += v;
}

enum obx_err
obx_store_dash_history(struct obx_store *st, int64_t now_ms, int64_t bucket_ms, int n,
                       struct obx_history_point *out)
{
    sqlite3_stmt *s = st->db ? obx_db_stmt(st->db, SQL_HISTORY) : NULL;
    int64_t first = (now_ms / bucket_ms - (n - 1)) * bucket_ms;
    int rc;

    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        out[i].at_ms = first + i * bucket_ms;
    }
    if (st->pg) {
        struct history_fill h = {out, n, first, bucket_ms};
        return obx_store_pg_dash_history(st, first / 60000, (first + n * bucket_ms) / 60000,
                                         on_pg_minute, &h);
    }
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, first / 60000);
    sqlite3_bind_int64(s, 2, (first + n * bucket_ms) / 60000);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t i = (sqlite3_column_int64(s, 0) * 60000 - first) / bucket_ms;
        const char *kind = (const char *)sqlite3_column_text(s, 1);
        int64_t v = sqlite3_column_int64(s, 2);

        if (i < 0 || i >= n || !kind)
            continue;
        if (strcmp(kind, "sent") == 0)
            out[i].sent += v;
        else if (strcmp(kind, "accepted") == 0)
            out[i].accepted += v;
        else if (strcmp(kind, "failed") == 0)
            out[i].failed += v;
        else if (strcmp(kind, "confirmed") == 0)
            out[i].confirmed += v;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

/* The first message at or after an id: a primary-key seek. */
static const char SQL_ID_PROBE[] =
    "SELECT id, created_at_ms FROM outbox WHERE id >= ?1 ORDER BY id LIMIT 1";
/* Two subqueries: SQLite reads min() or max() from the index only when each stands alone. */
static const char SQL_ID_BOUNDS[] =
    "SELECT (SELECT min(id) FROM outbox), (SELECT max(id) FROM outbox)";

/* Sets *first to the lowest id whose created_at is >= at_ms, or hi + 1 when none is. */
static enum obx_err
first_id_from(sqlite3_stmt *s, int64_t lo, int64_t hi, int64_t at_ms, int64_t *first)
{
    int64_t end = hi + 1; /* answer in [lo, end]; every id probed below end is a row or a gap */
    int rc;

    while (lo < end) {
        int64_t mid = lo + (end - lo) / 2, id, at;

        sqlite3_bind_int64(s, 1, mid);
        rc = sqlite3_step(s);
        if (rc != SQLITE_ROW) {
            sqlite3_reset(s);
            if (rc != SQLITE_DONE)
                return obx_err_from_sqlite(rc);
            end = mid; /* nothing from mid on */
            continue;
        }
        id = sqlite3_column_int64(s, 0);
        at = sqlite3_column_int64(s, 1);
        sqlite3_reset(s);
        if (at >= at_ms)
            end = mid; /* the row at id qualifies; so does the first row from mid */
        else
            lo = id + 1; /* rows up to id are older */
    }
    *first = end;
    return OBX_OK;
}

enum obx_err
obx_store_dash_id_window(struct obx_store *st, struct obx_id_window *w)
{
    if (!st->db) { /* PostgreSQL: the created_at window alone (no id range narrows it) */
        w->min_id = w->max_id = 0;
        return OBX_OK;
    }
    sqlite3_stmt *b = obx_db_stmt(st->db, SQL_ID_BOUNDS);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ID_PROBE);
    int64_t lo, hi, first = 0;
    enum obx_err err = OBX_OK;
    int rc;

    w->min_id = w->max_id = 0;
    if (!b || !s)
        return OBX_EDB;
    if (!w->after_ms && !w->before_ms)
        return OBX_OK;
    rc = sqlite3_step(b);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(b);
        return obx_err_from_sqlite(rc);
    }
    if (sqlite3_column_type(b, 0) == SQLITE_NULL) { /* empty: any range answers nothing */
        sqlite3_reset(b);
        return OBX_OK;
    }
    lo = sqlite3_column_int64(b, 0);
    hi = sqlite3_column_int64(b, 1);
    sqlite3_reset(b);
    if (w->after_ms)
        err = first_id_from(s, lo, hi, w->after_ms, &first);
    if (err == OBX_OK && w->after_ms)
        w->min_id = first;
    if (err == OBX_OK && w->before_ms)
        err = first_id_from(s, w->min_id ? w->min_id : lo, hi, w->before_ms, &first);
    if (err == OBX_OK && w->before_ms)
        w->max_id = first - 1 > 0 ? first - 1 : -1; /* -1: nothing can match */
    return err;
}

static const char SQL_COUNT[] =
    "SELECT count(*) FROM (SELECT 1 FROM outbox INDEXED BY outbox_state" OBX_DASH_FILTER_WHERE
    " LIMIT ?4)";

static const char SQL_COUNT_ANY[] =
    "SELECT count(*) FROM (SELECT 1 FROM outbox"
    " WHERE (?2 IS NULL OR channel_id = ?2) AND (?3 IS NULL OR external_conversation_id = ?3)" OBX_DASH_WINDOW_AND
    " LIMIT ?4)";

void
obx_store_dash_bind_filter(sqlite3_stmt *s, const struct obx_store_dash_filter *f)
{
    obx_db_bind_text(s, 1, f->state);
    obx_db_bind_text(s, 2, f->channel_id);
    obx_db_bind_text(s, 3, f->conversation);
    sqlite3_bind_int64(s, 7, f->win.min_id);
    sqlite3_bind_int64(s, 8, f->win.max_id ? f->win.max_id : INT64_MAX);
    sqlite3_bind_int64(s, 9, f->win.after_ms ? f->win.after_ms : INT64_MIN);
    sqlite3_bind_int64(s, 10, f->win.before_ms ? f->win.before_ms : INT64_MAX);
}

enum obx_err
obx_store_dash_count(struct obx_store *st, const struct obx_store_dash_filter *f, int64_t cap,
                     int64_t *out)
{
    if (st->pg)
        return obx_store_pg_dash_count(st, f, cap, out);
    sqlite3_stmt *s = obx_db_stmt(st->db, f->state ? SQL_COUNT : SQL_COUNT_ANY);
    int rc;

    *out = 0;
    if (!s)
        return OBX_EDB;
    obx_store_dash_bind_filter(s, f);
    sqlite3_bind_int64(s, 4, cap);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
}

/* The UPDATEs are lib/store.c's, the owner of outbox (docs/architecture.md). */
enum obx_err
obx_store_dash_bulk(struct obx_store *st, const struct obx_store_dash_filter *f, int retry, int max,
                    const char *reason, int64_t *touched)
{
    return obx_store_bulk_transition(st, f, retry, max, obx_now_ms(st->clock), reason, touched);
}

static const char SQL_CONV_TAIL[] =
    "SELECT tail_id FROM conversations WHERE channel_id = ?1 AND external_conversation_id = ?2";

static const char SQL_CONV_ROW[] =
    "SELECT id, external_message_id, state, state_reason, attempts, coalesce(head, 0),"
    " created_at_ms, state_at_ms, next_attempt_at_ms, last_error, prev_id"
    " FROM outbox WHERE id = ?1";

enum obx_err
obx_store_dash_conversation(struct obx_store *st, const char *channel_id, const char *conversation,
                            int limit, obx_conv_fn fn, void *ctx, int *truncated)
{
    if (st->pg)
        return obx_store_pg_dash_conversation(st, channel_id, conversation, limit, fn, ctx,
                                              truncated);
    sqlite3_stmt *t = obx_db_stmt(st->db, SQL_CONV_TAIL);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CONV_ROW);
    int64_t *chain, id = 0;
    int n = 0, rc;
    enum obx_err err = OBX_OK;

    *truncated = 0;
    if (!t || !s)
        return OBX_EDB;
    obx_db_bind_text(t, 1, channel_id);
    obx_db_bind_text(t, 2, conversation);
    rc = sqlite3_step(t);
    if (rc == SQLITE_ROW)
        id = sqlite3_column_int64(t, 0);
    sqlite3_reset(t);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
    chain = obx_calloc((size_t)limit, sizeof *chain);
    if (!chain)
        return OBX_ENOMEM;
    /* Tail to head through prev_id; each step is one primary-key lookup. */
    while (id > 0 && err == OBX_OK) {
        if (n == limit) {
            *truncated = 1;
            break;
        }
        sqlite3_bind_int64(s, 1, id);
        rc = sqlite3_step(s);
        chain[n++] = id;
        id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 10) : 0;
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            err = obx_err_from_sqlite(rc);
    }
    /* Head first: the oldest collected is the one sent next. */
    while (err == OBX_OK && n > 0) {
        struct obx_conv_row r;

        sqlite3_bind_int64(s, 1, chain[--n]);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            r.id = sqlite3_column_int64(s, 0);
            r.external_message_id = (const char *)sqlite3_column_text(s, 1);
            r.state = (const char *)sqlite3_column_text(s, 2);
            r.state_reason = (const char *)sqlite3_column_text(s, 3);
            r.attempts = sqlite3_column_int(s, 4);
            r.head = sqlite3_column_int(s, 5);
            r.created_at_ms = sqlite3_column_int64(s, 6);
            r.state_at_ms = sqlite3_column_int64(s, 7);
            r.next_attempt_at_ms = sqlite3_column_int64(s, 8);
            r.last_error = (const char *)sqlite3_column_text(s, 9);
            if (fn(ctx, &r))
                n = 0;
        } else if (rc != SQLITE_DONE) {
            err = obx_err_from_sqlite(rc);
        }
        sqlite3_reset(s);
    }
    obx_free(chain);
    return err;
}

/* The channels, one seek each through UNIQUE (channel_id, external_message_id). */
static const char SQL_NEXT_CHANNEL[] = "SELECT min(channel_id) FROM outbox WHERE channel_id > ?1";
static const char SQL_HAS[] =
    "SELECT 1 FROM outbox WHERE channel_id = ?1 AND external_message_id = ?2";

enum obx_err
obx_store_dash_find(struct obx_store *st, const char *external_message_id, int max,
                    obx_channel_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_dash_find(st, external_message_id, max, fn, ctx);
    sqlite3_stmt *next = obx_db_stmt(st->db, SQL_NEXT_CHANNEL);
    sqlite3_stmt *has = obx_db_stmt(st->db, SQL_HAS);
    char channel[1024] = "";
    int rc = SQLITE_DONE;

    if (!next || !has)
        return OBX_EDB;
    for (int i = 0; i < max; i++) {
        const char *c;
        int found;

        sqlite3_bind_text(next, 1, channel, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(next);
        c = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(next, 0) : NULL;
        if (!c || strlen(c) >= sizeof channel) {
            sqlite3_reset(next);
            rc = rc == SQLITE_ROW ? SQLITE_DONE : rc;
            break;
        }
        memcpy(channel, c, strlen(c) + 1);
        sqlite3_reset(next);
        obx_db_bind_text(has, 1, channel);
        obx_db_bind_text(has, 2, external_message_id);
        rc = sqlite3_step(has);
        found = rc == SQLITE_ROW;
        sqlite3_reset(has);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            break;
        rc = SQLITE_DONE;
        if (found && fn(ctx, channel))
            break;
    }
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

struct holds_ctx {
    struct obx_buf *b;
    int n;
    enum obx_err err;
};

static int
on_hold(void *ctx, const struct obx_pause_row *p)
{
    struct holds_ctx *h = ctx;
    enum obx_err err = obx_buf_puts(h->b, h->n++ ? ",{\"scope\":" : "{\"scope\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(h->b, p->scope);
    if (err == OBX_OK)
        err = obx_buf_puts(h->b, strcmp(p->scope, OBX_PAUSE_CHANNEL) == 0 ? ",\"channel_id\":"
                                                                          : ",\"tenant\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(h->b, p->key);
    if (err == OBX_OK)
        err = obx_buf_puts(h->b, ",\"reason\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(h->b, p->reason);
    if (err == OBX_OK)
        err = obx_buf_puts(h->b, ",\"by\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(h->b, p->by);
    if (err == OBX_OK)
        err = obx_buf_puts(h->b, ",\"since\":");
    if (err == OBX_OK)
        err = obx_view_time_or_null(h->b, p->paused_at_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(h->b, "}");
    h->err = err;
    return err != OBX_OK;
}

enum obx_err
obx_store_dash_holds(struct obx_store *st, struct obx_buf *b)
{
    struct holds_ctx h = {b, 0, OBX_OK};
    enum obx_err err = obx_buf_puts(b, "[");

    if (err == OBX_OK)
        err = obx_store_dash_pauses(st, on_hold, &h);
    if (err == OBX_OK)
        err = h.err;
    return err == OBX_OK ? obx_buf_puts(b, "]") : err;
}

enum obx_err
obx_store_dash_append_holds(struct obx_store *st, struct obx_buf *b)
{
    enum obx_err err;

    if (b->len == 0 || obx_buf_str(b)[b->len - 1] != '}')
        return OBX_EINVAL;
    b->len--; /* reopen the object */
    err = obx_buf_puts(b, ",\"holds\":");
    if (err == OBX_OK)
        err = obx_store_dash_holds(st, b);
    return err == OBX_OK ? obx_buf_puts(b, "}") : err;
}

static const char SQL_COUNT_ADD[] =
    "INSERT INTO state_counts (channel_id, state, n) VALUES (?1, 'queued', ?2)"
    " ON CONFLICT (channel_id, state) DO UPDATE SET n = n + excluded.n";

enum obx_err
obx_store_dash_count_inserted(struct obx_store *st, const struct obx_enq_item *items, size_t n)
{
    sqlite3_stmt *s = NULL;
    enum obx_err err = OBX_OK;
    size_t i = 0;

    while (err == OBX_OK && i < n) {
        const char *channel = NULL;
        int64_t k = 0;

        /* A run of items of one channel (a batch is usually one channel). */
        for (; i < n; i++) {
            const struct obx_enq_item *it = &items[i];
            if (it->err != OBX_OK || it->result != OBX_ENQ_ACCEPTED)
                continue;
            if (channel && strcmp(channel, it->msg.channel_id) != 0)
                break;
            channel = it->msg.channel_id;
            k++;
        }
        if (!k)
            break;
        if (!s && !(s = obx_db_stmt(st->db, SQL_COUNT_ADD)))
            return OBX_EDB;
        obx_db_bind_text(s, 1, channel);
        sqlite3_bind_int64(s, 2, k);
        err = obx_db_step_done(s);
    }
    return err;
}

static const char SQL_OVERVIEW[] =
    "SELECT s.channel_id, s.state, s.n, coalesce(t.tenant, 'default') FROM state_counts s"
    " LEFT JOIN tenant_channels t ON t.channel_id = s.channel_id WHERE s.n <> 0"
    " ORDER BY s.channel_id";

static const char SQL_OVERVIEW_TENANTS[] =
    "SELECT coalesce(t.tenant, 'default') AS tenant, s.state, sum(s.n) FROM state_counts s"
    " LEFT JOIN tenant_channels t ON t.channel_id = s.channel_id WHERE s.n <> 0"
    " GROUP BY 1, 2 ORDER BY 1";

/* The oldest queued message of a channel: ids grow with time, so the first in (state, id). */
static const char SQL_OLDEST_QUEUED[] =
    "SELECT created_at_ms FROM outbox INDEXED BY outbox_state"
    " WHERE state = 'queued' AND channel_id = ?1 ORDER BY id LIMIT 1";

static int
emit_overview(struct obx_store *st, struct obx_overview_row *r, obx_overview_fn fn, void *ctx,
              enum obx_err *err)
{
    if (r->counts[OBX_ST_QUEUED] > 0) {
        sqlite3_stmt *s = obx_db_stmt(st->db, SQL_OLDEST_QUEUED);
        int rc;

        if (!s) {
            *err = OBX_EDB;
            return 1;
        }
        obx_db_bind_text(s, 1, r->channel_id);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            r->oldest_queued_at_ms = sqlite3_column_int64(s, 0);
        sqlite3_reset(s);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            *err = obx_err_from_sqlite(rc);
            return 1;
        }
    }
    return fn(ctx, r);
}

/*
 * Emits the rows of sql (key, state, count[, tenant]), which come grouped by key, as one
 * overview row per key, each when the next key starts. by_channel: the key is a channel,
 * column 3 its tenant, and its oldest queued message is looked up; else the key is a tenant.
 */
static enum obx_err
overview_grouped(struct obx_store *st, const char *sql, int by_channel, obx_overview_fn fn,
                 void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, sql);
    struct obx_overview_row r = {0};
    char key[1024] = "", tenant[OBX_TENANT_NAME_MAX + 1] = "";
    enum obx_err err = OBX_OK;
    int rc, stop = 0;

    if (!s)
        return OBX_EDB;
    while (!stop) {
        const char *k = NULL;
        int state = 0;
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            k = (const char *)sqlite3_column_text(s, 0);
            state = obx_store_state_parse((const char *)sqlite3_column_text(s, 1));
            if (!k || strlen(k) >= sizeof key || state < 0)
                continue;
        } else if (rc != SQLITE_DONE) {
            break;
        }
        if (key[0] && (!k || strcmp(key, k) != 0))
            stop = by_channel ? emit_overview(st, &r, fn, ctx, &err) : fn(ctx, &r);
        if (!k)
            break;
        if (strcmp(key, k) != 0) {
            memset(&r, 0, sizeof r);
            memcpy(key, k, strlen(k) + 1);
            if (by_channel) {
                snprintf(tenant, sizeof tenant, "%s", (const char *)sqlite3_column_text(s, 3));
                r.channel_id = key;
                r.tenant = tenant;
            } else {
                r.tenant = key;
            }
        }
        r.counts[state] = sqlite3_column_int64(s, 2);
    }
    sqlite3_reset(s);
    if (err != OBX_OK)
        return err;
    return stop || rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_store_dash_overview(struct obx_store *st, obx_overview_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_dash_overview(st, fn, ctx);
    return overview_grouped(st, SQL_OVERVIEW, 1, fn, ctx);
}

enum obx_err
obx_store_dash_overview_tenants(struct obx_store *st, obx_overview_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_dash_overview_tenants(st, fn, ctx);
    return overview_grouped(st, SQL_OVERVIEW_TENANTS, 0, fn, ctx);
}
