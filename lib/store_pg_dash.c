/* store_pg_dash: channel pauses on PostgreSQL (store_pg_dash.h). */
#include "store_pg_dash.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

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
