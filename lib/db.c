/* db: SQLite connection, pragmas, statement cache and transactions. */
#include "db.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "mem.h"

static enum obx_err
apply_pragmas(struct obx_db *db, int synchronous_full, int64_t busy_timeout_ms)
{
    char sql[256];
    enum obx_err err;

    sqlite3_busy_timeout(db->h, (int)(busy_timeout_ms > 0 ? busy_timeout_ms : 5000));
    /* WAL: readers (CLI, API reads) never block the writer and vice versa. */
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA foreign_keys=ON;"
             "PRAGMA temp_store=MEMORY;",
             synchronous_full ? "FULL" : "NORMAL");
    err = obx_db_exec(db, sql);
    return err;
}

enum obx_err
obx_db_open(const char *path, int synchronous_full, int64_t busy_timeout_ms, struct obx_db **out,
            char *errmsg, size_t n)
{
    struct obx_db *db = NULL;
    enum obx_err err = OBX_OK;
    int rc;

    *out = NULL;
    db = obx_calloc(1, sizeof *db);
    if (!db)
        return OBX_ENOMEM;
    rc = sqlite3_open_v2(path, &db->h,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = obx_err_from_sqlite(rc);
        goto out;
    }
    sqlite3_extended_result_codes(db->h, 1);
    err = apply_pragmas(db, synchronous_full, busy_timeout_ms);
out:
    if (err != OBX_OK) {
        if (errmsg && n)
            snprintf(errmsg, n, "%s", db->h ? sqlite3_errmsg(db->h) : obx_strerror(err));
        obx_db_free(db);
        return err;
    }
    *out = db;
    return OBX_OK;
}

void
obx_db_free(struct obx_db *db)
{
    if (!db)
        return;
    for (int i = 0; i < db->ncache; i++)
        sqlite3_finalize(db->cache[i].stmt);
    sqlite3_close(db->h);
    obx_free(db);
}

sqlite3_stmt *
obx_db_stmt(struct obx_db *db, const char *sql)
{
    sqlite3_stmt *s = NULL;

    for (int i = 0; i < db->ncache; i++) {
        if (db->cache[i].sql == sql) {
            s = db->cache[i].stmt;
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return s;
        }
    }
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, NULL) != SQLITE_OK)
        return NULL;
    if (db->ncache < OBX_DB_STMT_CACHE) {
        db->cache[db->ncache].sql = sql;
        db->cache[db->ncache].stmt = s;
        db->ncache++;
        return s;
    }
    /* The cache is sized for every statement of the store; running out is a bug. */
    sqlite3_finalize(s);
    return NULL;
}

void
obx_db_end_reads(struct obx_db *db)
{
    for (int i = 0; i < db->ncache; i++)
        sqlite3_reset(db->cache[i].stmt);
}

enum obx_err
obx_db_exec(struct obx_db *db, const char *sql)
{
    return obx_err_from_sqlite(sqlite3_exec(db->h, sql, NULL, NULL, NULL));
}

/*
 * Transactions nest: the outermost level is BEGIN IMMEDIATE .. COMMIT, every inner one a
 * savepoint. The store thread (lib/store_queue.c) opens one transaction for a whole group
 * of jobs and runs each job, and each store function inside a job, one level deeper; an
 * inner failure rolls back only its own level. All levels share one savepoint name:
 * SQLite resolves RELEASE and ROLLBACK TO to the innermost savepoint of that name.
 */
static enum obx_err
run_cached(struct obx_db *db, const char *sql)
{
    sqlite3_stmt *s = obx_db_stmt(db, sql);

    return s ? obx_db_step_done(s) : OBX_EDB;
}

static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_SAVEPOINT[] = "SAVEPOINT obx_level";
static const char SQL_RELEASE[] = "RELEASE obx_level";
static const char SQL_ROLLBACK_TO[] = "ROLLBACK TO obx_level";

enum obx_err
obx_db_begin(struct obx_db *db)
{
    enum obx_err err;

    if (db->in_tx > 0 && sqlite3_get_autocommit(db->h)) {
        /* SQLite ended the outer transaction itself (disk full, I/O error): an inner
         * level must not silently start a new one. */
        return OBX_EDB;
    }
    err = run_cached(db, db->in_tx > 0 ? SQL_SAVEPOINT : SQL_BEGIN);
    if (err == OBX_OK)
        db->in_tx++;
    return err;
}

enum obx_err
obx_db_commit(struct obx_db *db)
{
    enum obx_err err;
    int full;

    if (db->in_tx > 1) {
        err = run_cached(db, SQL_RELEASE);
        if (err == OBX_OK) {
            db->in_tx--;
            return OBX_OK;
        }
        obx_db_rollback(db);
        return err;
    }
    err = run_cached(db, SQL_COMMIT);
    if (err == OBX_OK) {
        db->in_tx = 0;
        return OBX_OK;
    }
    full = (sqlite3_errcode(db->h) & 0xff) == SQLITE_FULL;
    obx_db_rollback(db);
    /*
     * The disk is full: copy the WAL back into the database while the pages still fit
     * (PASSIVE never waits for readers), so that the next writer can restart the WAL
     * from its beginning instead of appending to a file that has no room left. Without
     * this, a WAL that filled the disk stays full after space returns: the first
     * commits use up the space again and a checkpoint never fits (docs/reliability.md).
     */
    if (full)
        (void)sqlite3_wal_checkpoint_v2(db->h, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return err;
}

void
obx_db_rollback(struct obx_db *db)
{
    if (db->in_tx > 1 && !sqlite3_get_autocommit(db->h)) {
        /* Undo this level only; RELEASE then drops the savepoint itself. */
        (void)run_cached(db, SQL_ROLLBACK_TO);
        (void)run_cached(db, SQL_RELEASE);
        db->in_tx--;
        return;
    }
    if (!sqlite3_get_autocommit(db->h))
        (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    /* Whatever the level, the transaction is gone now (or SQLite ended it already). */
    db->in_tx = db->in_tx > 1 ? db->in_tx - 1 : 0;
}

int
obx_db_tx_alive(const struct obx_db *db)
{
    return db->in_tx > 0 && !sqlite3_get_autocommit(db->h);
}

void
obx_db_abort(struct obx_db *db)
{
    if (!sqlite3_get_autocommit(db->h))
        (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    db->in_tx = 0;
}

enum obx_err
obx_db_step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);

    sqlite3_reset(s);
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_db_step_int64(sqlite3_stmt *s, int64_t *out)
{
    int rc = sqlite3_step(s);

    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
}

enum obx_err
obx_db_end_scan(struct obx_db *db, sqlite3_stmt *sel, int rc, enum obx_err err)
{
    if (err == OBX_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    sqlite3_reset(sel);
    return obx_db_end(db, err);
}

enum obx_err
obx_db_end(struct obx_db *db, enum obx_err err)
{
    if (err == OBX_OK)
        return obx_db_commit(db);
    obx_db_rollback(db);
    return err;
}

enum obx_err
obx_db_step_in_tx(struct obx_db *db, sqlite3_stmt *s, int64_t *changes)
{
    int64_t n = 0;
    enum obx_err err = obx_db_begin(db);

    *changes = 0;
    if (err == OBX_OK)
        err = obx_db_step_done(s);
    if (err == OBX_OK)
        n = sqlite3_changes(db->h);
    err = obx_db_end(db, err);
    if (err == OBX_OK)
        *changes = n;
    return err;
}

const char *
obx_db_errmsg(struct obx_db *db)
{
    return sqlite3_errmsg(db->h);
}

const char *
obx_db_libversion(void)
{
    return sqlite3_libversion();
}

enum obx_err
obx_db_tune_process(void)
{
    /*
     * No allocation statistics: with them every SQLite malloc and free takes a global
     * mutex, which a process with a second SQLite thread (serve's store thread) pays on
     * every row: 7 % of serve's CPU in a drain went to that mutex and its barriers.
     */
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK ? OBX_OK : OBX_EDB;
}

enum obx_err
obx_db_route_log(void (*fn)(void *ctx, int code, const char *msg))
{
    return sqlite3_config(SQLITE_CONFIG_LOG, fn, NULL) == SQLITE_OK ? OBX_OK : OBX_EDB;
}

int
obx_db_bind_text(sqlite3_stmt *s, int idx, const char *v)
{
    if (!v)
        return sqlite3_bind_null(s, idx);
    return sqlite3_bind_text(s, idx, v, -1, SQLITE_STATIC);
}

char *
obx_db_column_dup(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    return t ? obx_strdup((const char *)t) : NULL;
}
