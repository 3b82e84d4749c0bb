/* store_pg_dash: channel pauses on PostgreSQL (store_pg_dash.h). */
#include "store_pg_dash.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg.h"

/* The pause and its audit event in one statement: both are written, or neither. */
static const char SQL_PAUSE[] =
    "WITH p AS (INSERT INTO pauses (scope, key, reason, by, paused_at_ms)"
    "  VALUES ($1, $2, $3, $4, $5::bigint)"
    "  ON CONFLICT (scope, key) WHERE resumed_at_ms IS NULL DO NOTHING RETURNING paused_at_ms),"
    " a AS (INSERT INTO actions (at_ms, action, scope, key, reason, by)"
    "  SELECT paused_at_ms, 'pause', $1, $2, $3, $4 FROM p)"
    " SELECT count(*) FROM p";

static const char SQL_RESUME[] =
    "WITH r AS (UPDATE pauses SET resumed_at_ms = greatest($3::bigint, paused_at_ms)"
    "  WHERE scope = $1 AND key = $2 AND resumed_at_ms IS NULL RETURNING 1),"
    " a AS (INSERT INTO actions (at_ms, action, scope, key, reason, by)"
    "  SELECT $3::bigint, 'resume', $1, $2, '', $4 FROM r)"
    " SELECT count(*) FROM r";

/* Runs one of the two in the call's transaction; *changed: rows paused or resumed. */
static enum obx_err
run_counted(struct obx_store *st, const char *sql, int n, const char *const *vals, int *changed)
{
    enum obx_err err = obx_pg_tx_begin(st->pg);
    PGresult *r;

    *changed = 0;
    if (err != OBX_OK)
        return err;
    r = obx_pg_run(st->pg, sql, n, vals, NULL, NULL);
    if (r)
        *changed = atoi(PQgetvalue(r, 0, 0));
    else
        err = OBX_EDB;
    PQclear(r);
    return obx_pg_tx_end(st->pg, err);
}

enum obx_err
obx_store_pg_dash_pause(struct obx_store *st, const char *scope, const char *key,
                        const char *reason, const char *by, int *created)
{
    char now[24];
    const char *vals[5] = {scope, key, reason, by, now};

    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    return run_counted(st, SQL_PAUSE, 5, vals, created);
}

enum obx_err
obx_store_pg_dash_resume(struct obx_store *st, const char *scope, const char *key, const char *by)
{
    char now[24];
    const char *vals[4] = {scope, key, now, by};
    int changed = 0;
    enum obx_err err;

    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    err = run_counted(st, SQL_RESUME, 4, vals, &changed);
    return err == OBX_OK && !changed ? OBX_ENOTFOUND : err;
}

enum obx_err
obx_store_pg_dash_pauses(struct obx_store *st, obx_pause_fn fn, void *ctx)
{
    PGresult *r = obx_pg_run(st->pg,
                             "SELECT scope, key, reason, by, paused_at_ms FROM pauses"
                             " WHERE resumed_at_ms IS NULL ORDER BY scope, key",
                             0, NULL, NULL, NULL);

    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        struct obx_pause_row p = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
                                  PQgetvalue(r, i, 3), strtoll(PQgetvalue(r, i, 4), NULL, 10)};
        if (fn(ctx, &p))
            break;
    }
    PQclear(r);
    return OBX_OK;
}

/*
 * The audit prune's part (actions are this module's): the actions behind the checkpoint's
 * seal, that is of the transactions up to xact_upto, or (a seal a move from SQLite brought,
 * xact_upto 0) with id up to x_upto.
 */
enum obx_err
obx_store_pg_dash_prune_actions(struct obx_store *st, int64_t xact_upto, int64_t x_upto, int max,
                                int64_t *deleted)
{
    char v[3][24];
    const char *vals[3] = {v[0], v[1], v[2]};
    PGresult *r;

    *deleted = 0;
    snprintf(v[0], sizeof v[0], "%lld", (long long)xact_upto);
    snprintf(v[1], sizeof v[1], "%lld", (long long)x_upto);
    snprintf(v[2], sizeof v[2], "%d", max);
    r = obx_pg_run(st->pg,
                   "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE"
                   " CASE WHEN $1::bigint > 0 THEN xact <= $1::text::xid8"
                   " ELSE xact = '0' AND id <= $2::bigint END ORDER BY id LIMIT $3::bigint)",
                   3, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    *deleted = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return OBX_OK;
}

/* ---- the kept counts (0011) ----------------------------------------------------------- */

enum obx_err
obx_store_pg_dash_compact(struct obx_store *st)
{
    enum obx_err err = obx_pg_tx_begin(st->pg);
    PGresult *r;

    if (err != OBX_OK)
        return err;
    r = obx_pg_run(st->pg, "SELECT dashboard_compact()", 0, NULL, NULL, NULL);
    if (!r)
        err = OBX_EDB;
    PQclear(r);
    return obx_pg_tx_end(st->pg, err);
}

/* The counts folded so far plus the deltas not folded yet; channels in byte order. */
static const char SQL_OVERVIEW[] =
    "SELECT x.channel_id, x.state, sum(x.n), min(coalesce(t.tenant, 'default'))"
    " FROM (SELECT channel_id, state, n FROM state_counts"
    " UNION ALL SELECT channel_id, state, d FROM count_deltas) x"
    " LEFT JOIN tenant_channels t ON t.channel_id = x.channel_id"
    " GROUP BY x.channel_id, x.state HAVING sum(x.n) <> 0"
    " ORDER BY x.channel_id COLLATE \"C\", x.state";

static const char SQL_OVERVIEW_TENANTS[] =
    "SELECT coalesce(t.tenant, 'default'), x.state, sum(x.n)"
    " FROM (SELECT channel_id, state, n FROM state_counts"
    " UNION ALL SELECT channel_id, state, d FROM count_deltas) x"
    " LEFT JOIN tenant_channels t ON t.channel_id = x.channel_id"
    " GROUP BY 1, 2 HAVING sum(x.n) <> 0"
    " ORDER BY coalesce(t.tenant, 'default') COLLATE \"C\", 2";

static const char SQL_OLDEST_QUEUED[] =
    "SELECT created_at_ms FROM outbox WHERE state = 'queued' AND channel_id = $1"
    " ORDER BY id LIMIT 1";

static int
emit_overview(struct obx_store *st, struct obx_overview_row *r, obx_overview_fn fn, void *ctx,
              enum obx_err *err)
{
    if (r->counts[OBX_ST_QUEUED] > 0) {
        const char *vals[1] = {r->channel_id};
        PGresult *q = obx_pg_run(st->pg, SQL_OLDEST_QUEUED, 1, vals, NULL, NULL);
        if (!q) {
            *err = OBX_EDB;
            return 1;
        }
        if (PQntuples(q) > 0)
            r->oldest_queued_at_ms = strtoll(PQgetvalue(q, 0, 0), NULL, 10);
        PQclear(q);
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
    PGresult *r = obx_pg_run(st->pg, sql, 0, NULL, NULL, NULL);
    struct obx_overview_row row = {0};
    const char *key = NULL;
    enum obx_err err = OBX_OK;
    int stop = 0, n;

    if (!r)
        return OBX_EDB;
    n = PQntuples(r);
    for (int i = 0; i <= n && !stop; i++) {
        const char *k = i < n ? PQgetvalue(r, i, 0) : NULL;
        int state = i < n ? obx_store_state_parse(PQgetvalue(r, i, 1)) : 0;
        if (state < 0)
            continue;
        if (key && (!k || strcmp(key, k) != 0))
            stop = by_channel ? emit_overview(st, &row, fn, ctx, &err) : fn(ctx, &row);
        if (!k)
            break;
        if (!key || strcmp(key, k) != 0) {
            memset(&row, 0, sizeof row);
            key = k;
            if (by_channel) {
                row.channel_id = k;
                row.tenant = PQgetvalue(r, i, 3);
            } else {
                row.tenant = k;
            }
        }
        row.counts[state] = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    }
    PQclear(r);
    return err;
}

enum obx_err
obx_store_pg_dash_overview(struct obx_store *st, obx_overview_fn fn, void *ctx)
{
    return overview_grouped(st, SQL_OVERVIEW, 1, fn, ctx);
}

enum obx_err
obx_store_pg_dash_overview_tenants(struct obx_store *st, obx_overview_fn fn, void *ctx)
{
    return overview_grouped(st, SQL_OVERVIEW_TENANTS, 0, fn, ctx);
}

enum obx_err
obx_store_pg_dash_history(struct obx_store *st, int64_t first_minute, int64_t end_minute,
                          obx_store_pg_minute_fn fn, void *ctx)
{
    char v[2][24];
    const char *vals[2] = {v[0], v[1]};
    PGresult *r;

    snprintf(v[0], sizeof v[0], "%lld", (long long)first_minute);
    snprintf(v[1], sizeof v[1], "%lld", (long long)end_minute);
    r = obx_pg_run(st->pg,
                   "SELECT minute, kind, sum(n) FROM (SELECT minute, kind, n FROM stats_minute"
                   " WHERE minute >= $1::bigint AND minute < $2::bigint UNION ALL"
                   " SELECT minute, kind, d FROM stats_deltas"
                   " WHERE minute >= $1::bigint AND minute < $2::bigint) x GROUP BY minute, kind",
                   2, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++)
        fn(ctx, strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1),
           strtoll(PQgetvalue(r, i, 2), NULL, 10));
    PQclear(r);
    return OBX_OK;
}

void
obx_store_pg_dash_filter_params(const struct obx_store_dash_filter *f, char text[4][24],
                                const char *vals[7])
{
    const int64_t bounds[4] = {f->win.min_id, f->win.max_id ? f->win.max_id : INT64_MAX,
                               f->win.after_ms ? f->win.after_ms : INT64_MIN,
                               f->win.before_ms ? f->win.before_ms : INT64_MAX};

    vals[0] = f->state;
    vals[1] = f->channel_id;
    vals[2] = f->conversation;
    for (int i = 0; i < 4; i++) {
        snprintf(text[i], sizeof text[i], "%lld", (long long)bounds[i]);
        vals[3 + i] = text[i];
    }
}

/* The dashboard's filter (store_dash_filter.h), as one bounded count. */
enum obx_err
obx_store_pg_dash_count(struct obx_store *st, const struct obx_store_dash_filter *f, int64_t cap,
                        int64_t *out)
{
    char v[4][24], limit[24];
    const char *vals[8];
    PGresult *r;

    *out = 0;
    obx_store_pg_dash_filter_params(f, v, vals);
    snprintf(limit, sizeof limit, "%lld", (long long)cap);
    vals[7] = limit;
    r = obx_pg_run(st->pg,
                   "SELECT count(*) FROM (SELECT 1 FROM outbox WHERE " OBX_STORE_PG_DASH_FILTER
                   " LIMIT $8::bigint) x",
                   8, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    *out = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return OBX_OK;
}

/*
 * The channels holding a message with this id. outbox_key is (channel_id,
 * external_message_id), so the channels are walked through it one distinct value at a time
 * (a recursive CTE: PostgreSQL 15 has no skip scan) and each is probed: two index seeks per
 * channel, where a plain WHERE on the id read the whole table (98 ms at 1,000,000 rows).
 */
enum obx_err
obx_store_pg_dash_find(struct obx_store *st, const char *external_message_id, int max,
                       obx_channel_fn fn, void *ctx)
{
    char lim[24];
    const char *vals[2] = {external_message_id, lim};
    PGresult *r;

    snprintf(lim, sizeof lim, "%d", max);
    r = obx_pg_run(st->pg,
                   "WITH RECURSIVE ch(c) AS ((SELECT channel_id FROM outbox ORDER BY channel_id"
                   "  LIMIT 1) UNION ALL SELECT (SELECT o.channel_id FROM outbox o"
                   "  WHERE o.channel_id > ch.c ORDER BY o.channel_id LIMIT 1) FROM ch"
                   "  WHERE ch.c IS NOT NULL)"
                   " SELECT c COLLATE \"C\" AS c FROM ch WHERE c IS NOT NULL AND EXISTS"
                   " (SELECT 1 FROM outbox o WHERE o.channel_id = ch.c"
                   "  AND o.external_message_id = $1) ORDER BY 1 LIMIT $2::bigint",
                   2, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++)
        if (fn(ctx, PQgetvalue(r, i, 0)))
            break;
    PQclear(r);
    return OBX_OK;
}

/*
 * A conversation's line: its unfinished messages by their place (conv_seq), the head first;
 * when none is unfinished, its last message. That one has no index (outbox_conversation
 * holds the unfinished only, and one more index would slow every enqueue): the table is
 * walked backwards, 86 ms at 1,000,000 rows (docs/benchmarks.md).
 */
enum obx_err
obx_store_pg_dash_conversation(struct obx_store *st, const char *channel_id,
                               const char *conversation, int limit, obx_conv_fn fn, void *ctx,
                               int *truncated)
{
    char lim[24];
    const char *vals[3] = {channel_id, conversation, lim};
    PGresult *r;
    int n;

    *truncated = 0;
    snprintf(lim, sizeof lim, "%d", limit + 1);
    r = obx_pg_run(
        st->pg,
        "WITH line AS (SELECT * FROM outbox WHERE channel_id = $1"
        "  AND external_conversation_id = $2 AND state IN ('queued', 'sending')"
        "  ORDER BY conv_seq LIMIT $3::bigint)"
        " SELECT id, external_message_id, state, state_reason, attempts, head::integer,"
        " created_at_ms, state_at_ms, next_attempt_at_ms, last_error FROM ("
        "  SELECT *, 0 AS k FROM line UNION ALL"
        "  (SELECT *, 1 FROM outbox WHERE channel_id = $1 AND external_conversation_id = $2"
        "   AND NOT EXISTS (SELECT 1 FROM line) ORDER BY id DESC LIMIT 1)) x"
        " ORDER BY k, conv_seq",
        3, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    n = PQntuples(r);
    if (n > limit) {
        *truncated = 1;
        n = limit;
    }
    for (int i = 0; i < n; i++) {
        struct obx_conv_row c = {strtoll(PQgetvalue(r, i, 0), NULL, 10),
                                 PQgetvalue(r, i, 1),
                                 PQgetvalue(r, i, 2),
                                 PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3),
                                 atoi(PQgetvalue(r, i, 4)),
                                 atoi(PQgetvalue(r, i, 5)),
                                 strtoll(PQgetvalue(r, i, 6), NULL, 10),
                                 strtoll(PQgetvalue(r, i, 7), NULL, 10),
                                 strtoll(PQgetvalue(r, i, 8), NULL, 10),
                                 PQgetisnull(r, i, 9) ? NULL : PQgetvalue(r, i, 9)};
        if (fn(ctx, &c))
            break;
    }
    PQclear(r);
    return OBX_OK;
}
