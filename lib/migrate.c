/* migrate: embedded, ordered, transactional schema migrations. */
#include "migrate.h"

#include <stdio.h>

#include "err.h"

int
obx_migrate_latest(void)
{
    int latest = 0;

    for (const struct obx_migration *m = obx_migrate_embedded; m->version; m++)
        latest = m->version;
    return latest;
}

enum obx_err
obx_migrate_version(struct obx_db *db, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc;

    *out = 0;
    rc = sqlite3_prepare_v2(db->h, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(s);
    return obx_err_from_sqlite(rc);
}

/* The value of a PRAGMA that returns one integer (0 on any error). */
static int
pragma_int(struct obx_db *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int v = 0;

    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* OBX_OK when no row breaks a foreign key, OBX_EDB when one does or the check fails. */
static enum obx_err
foreign_key_check(struct obx_db *db)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db->h, "PRAGMA foreign_key_check", -1, &s, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? OBX_OK : OBX_EDB;
}

/*
 * Applies one migration if the database is still below it; re-checks under the lock.
 * Foreign keys are off while it runs, as SQLite's procedure for rebuilding a table asks
 * (with them on, DROP TABLE outbox would delete every row first and cascade into attempts
 * and transitions); PRAGMA foreign_key_check must then find nothing before the commit. The
 * pragma is a no-op inside a transaction, hence set around it.
 */
static enum obx_err
apply_one(struct obx_db *db, const struct obx_migration *m)
{
    char bump[64];
    int current = 0, fk = pragma_int(db, "PRAGMA foreign_keys");
    enum obx_err err = fk ? obx_db_exec(db, "PRAGMA foreign_keys = OFF") : OBX_OK;

    if (err == OBX_OK)
        err = obx_db_begin(db);
    if (err != OBX_OK)
        goto restore;
    err = obx_migrate_version(db, &current);
    if (err == OBX_OK && current >= m->version)
        goto out; /* another process applied it meanwhile */
    if (err == OBX_OK)
        err = obx_db_exec(db, m->sql);
    if (err == OBX_OK && fk)
        err = foreign_key_check(db);
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", m->version);
    if (err == OBX_OK)
        err = obx_db_exec(db, bump);
out:
    err = obx_db_end(db, err);
restore:
    if (fk && obx_db_exec(db, "PRAGMA foreign_keys = ON") != OBX_OK && err == OBX_OK)
        err = OBX_EDB;
    return err;
}

enum obx_err
obx_migrate_apply(struct obx_db *db, int *from, int *to)
{
    int before = 0, after = 0;
    enum obx_err err = obx_migrate_version(db, &before);

    if (err != OBX_OK)
        return err;
    if (before > obx_migrate_latest())
        return OBX_ESCHEMA;
    for (const struct obx_migration *m = obx_migrate_embedded; m->version && err == OBX_OK; m++)
        if (m->version > before)
            err = apply_one(db, m);
    if (err == OBX_OK)
        err = obx_migrate_version(db, &after);
    if (err == OBX_OK) {
        if (from)
            *from = before;
        if (to)
            *to = after;
    }
    return err;
}
