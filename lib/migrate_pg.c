/*
 * migrate_pg: PostgreSQL migrations (migrate_pg.h).
 */
#include "migrate_pg.h"

#include <stdio.h>

int
obx_migrate_pg_latest(void)
{
    int v = 0;

    for (const struct obx_migration *m = obx_migrate_pg_embedded; m->version; m++)
        v = m->version;
    return v;
}

/* Created before the first migration, so that a version can always be read. */
static const char SQL_VERSION_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_version ("
                                        " id integer PRIMARY KEY CHECK (id = 1),"
                                        " version integer NOT NULL)";

/* One lock per schema: two outboxes in one database migrate independently. */
static const char SQL_LOCK[] =
    "SELECT pg_advisory_lock(hashtextextended('partoo-outbox migrate ' || current_schema(), 0))";
static const char SQL_UNLOCK[] =
    "SELECT pg_advisory_unlock(hashtextextended('partoo-outbox migrate ' || current_schema(), 0))";

enum obx_err
obx_migrate_pg_version(struct obx_pg *pg, int *out)
{
    long long v = 0;
    int found = 0;
    enum obx_err err = obx_pg_query_int(pg,
                                        "SELECT (to_regclass('schema_version') IS NOT NULL)::int",
                                        &v, &found);

    *out = 0;
    if (err != OBX_OK || !v)
        return err; /* no table: a schema no migration has touched */
    err = obx_pg_query_int(pg, "SELECT version FROM schema_version WHERE id = 1", &v, &found);
    if (err == OBX_OK && found)
        *out = (int)v;
    return err;
}

static enum obx_err
apply_one(struct obx_pg *pg, const struct obx_migration *m)
{
    char sql[160];
    enum obx_err err = obx_pg_exec(pg, "BEGIN");

    if (err == OBX_OK)
        err = obx_pg_exec(pg, m->sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO schema_version (id, version) VALUES (1, %d)"
             " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
             m->version);
    if (err == OBX_OK)
        err = obx_pg_exec(pg, sql);
    if (err == OBX_OK)
        return obx_pg_exec(pg, "COMMIT");
    obx_pg_exec_quiet(pg, "ROLLBACK");
    return err;
}

enum obx_err
obx_migrate_pg_apply(struct obx_pg *pg, int *from, int *to)
{
    int before = 0, version = 0;
    enum obx_err err = obx_pg_exec(pg, SQL_LOCK);

    if (err != OBX_OK)
        return err;
    err = obx_pg_exec(pg, SQL_VERSION_TABLE);
    if (err == OBX_OK)
        err = obx_migrate_pg_version(pg, &before);
    version = before;
    if (err == OBX_OK && before > obx_migrate_pg_latest())
        err = OBX_ESCHEMA;
    for (const struct obx_migration *m = obx_migrate_pg_embedded; m->version && err == OBX_OK;
         m++) {
        if (m->version <= version)
            continue;
        err = apply_one(pg, m);
        if (err == OBX_OK)
            version = m->version;
    }
    obx_pg_exec_quiet(pg, SQL_UNLOCK);
    if (from)
        *from = before;
    if (to)
        *to = version;
    return err;
}
