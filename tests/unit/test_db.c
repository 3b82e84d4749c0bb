/*
 * Unit tests for lib/db.c: opening (pragmas, errors named), the statement cache (same
 * statement back, reset and unbound; a full cache refuses), nested transactions (savepoints:
 * an inner rollback undoes only its level, the outer commit keeps the rest), a transaction
 * SQLite ended itself (obx_db_tx_alive 0, no new level started inside it), abort, a commit
 * refused by a deferred foreign key, obx_db_step_in_tx, the process-wide settings, and
 * allocation failure on open.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "db.h"
#include "mem.h"
#include "testdb.h"

static char db_path[256];

/* A fresh database with table t(v) and the deferred-FK pair p/c. */
static struct obx_db *
fresh_db(void)
{
    struct obx_db *db = NULL;

    snprintf(db_path, sizeof db_path, "/tmp/obx_test_db_%d.db", (int)getpid());
    testdb_remove(db_path);
    if (obx_db_open(db_path, 0, 2000, &db, NULL, 0) != OBX_OK)
        return NULL;
    if (obx_db_exec(db, "CREATE TABLE t (v INTEGER);"
                        "CREATE TABLE p (id INTEGER PRIMARY KEY);"
                        "CREATE TABLE c (pid INTEGER REFERENCES p(id) "
                        "DEFERRABLE INITIALLY DEFERRED);") != OBX_OK) {
        obx_db_free(db);
        return NULL;
    }
    return db;
}

/* The values of t, ascending, joined with ','. */
static const char *
values(struct obx_db *db)
{
    static char out[256];
    sqlite3_stmt *s = NULL;

    out[0] = '\0';
    if (sqlite3_prepare_v2(db->h, "SELECT v FROM t ORDER BY v", -1, &s, NULL) != SQLITE_OK)
        return "error";
    while (sqlite3_step(s) == SQLITE_ROW) {
        char v[32];
        snprintf(v, sizeof v, "%s%d", out[0] ? "," : "", sqlite3_column_int(s, 0));
        strncat(out, v, sizeof out - strlen(out) - 1);
    }
    sqlite3_finalize(s);
    return out;
}

static enum obx_err
insert(struct obx_db *db, int v)
{
    static const char sql[] = "INSERT INTO t (v) VALUES (?1)";
    sqlite3_stmt *s = obx_db_stmt(db, sql);

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int(s, 1, v);
    return obx_db_step_done(s);
}

static int
test_open_pragmas(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db();
    sqlite3_stmt *s = NULL;

    CHECK(db);
    CHECK(sqlite3_prepare_v2(db->h, "PRAGMA journal_mode", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    s = NULL;
    CHECK(sqlite3_prepare_v2(db->h, "PRAGMA foreign_keys", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 1);
    sqlite3_finalize(s);
    s = NULL;
    /* synchronous: NORMAL (1) unless asked for FULL (2) */
    CHECK(sqlite3_prepare_v2(db->h, "PRAGMA synchronous", -1, &s, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 1);
    CHECK_INT(db->in_tx, 0);
    CHECK(obx_db_libversion()[0] == '3');
end:
    sqlite3_finalize(s);
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_open_errors(void)
{
    TEST_BEGIN;
    struct obx_db *db = (struct obx_db *)&db; /* must be set to NULL on failure */
    char msg[200] = "";

    CHECK_INT(obx_db_open("/nonexistent-dir-obx/x.db", 1, 100, &db, msg, sizeof msg),
              OBX_EREADONLY); /* SQLITE_CANTOPEN */
    CHECK(db == NULL);
    CHECK(strstr(msg, "unable to open"));
    /* No message wanted: still a clean error. */
    CHECK(obx_db_open("/nonexistent-dir-obx/x.db", 1, 100, &db, NULL, 0) != OBX_OK);
    CHECK(db == NULL);
    /* Not a database: the pragmas fail and say so. */
    snprintf(db_path, sizeof db_path, "/tmp/obx_test_db_%d.db", (int)getpid());
    testdb_remove(db_path);
    {
        FILE *f = fopen(db_path, "w");
        CHECK(f);
        fputs("this is not an SQLite database, just some text of more than 100 bytes ......"
              "..............................................................",
              f);
        fclose(f);
    }
    msg[0] = '\0';
    CHECK_INT(obx_db_open(db_path, 1, 100, &db, msg, sizeof msg), OBX_ESCHEMA);
    CHECK(db == NULL);
    CHECK(strstr(msg, "not a database"));
    /* synchronous FULL when asked. */
    testdb_remove(db_path);
    CHECK_OK(obx_db_open(db_path, 1, 0, &db, msg, sizeof msg));
    {
        sqlite3_stmt *s = NULL;
        CHECK(sqlite3_prepare_v2(db->h, "PRAGMA synchronous", -1, &s, NULL) == SQLITE_OK);
        CHECK(sqlite3_step(s) == SQLITE_ROW);
        CHECK_INT(sqlite3_column_int(s, 0), 2);
        sqlite3_finalize(s);
    }
end:
    if (db != (struct obx_db *)&db)
        obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_open_alloc_failure(void)
{
    TEST_BEGIN;
    struct obx_db *db = NULL;
    char msg[100] = "";

    snprintf(db_path, sizeof db_path, "/tmp/obx_test_db_%d.db", (int)getpid());
    testdb_remove(db_path);
    obx_mem_fail_after(0);
    CHECK_INT(obx_db_open(db_path, 0, 100, &db, msg, sizeof msg), OBX_ENOMEM);
    obx_mem_fail_after(-1);
    CHECK(db == NULL);
    /* Nothing was created. */
    CHECK(access(db_path, F_OK) != 0);
end:
    obx_mem_fail_after(-1);
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_stmt_cache(void)
{
    TEST_BEGIN;
    static const char sel[] = "SELECT ?1";
    static const char bad[] = "SELEKT nothing";
    /* Distinct addresses: the cache keys on the SQL's address, not its text. */
    static char many[OBX_DB_STMT_CACHE + 1][24];
    struct obx_db *db = fresh_db();
    sqlite3_stmt *s, *s2;
    int i;

    CHECK(db);
    s = obx_db_stmt(db, sel);
    CHECK(s);
    sqlite3_bind_int(s, 1, 7);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(s, 0), 7);
    /* The same statement back: reset (it can step again) and its binding cleared. */
    s2 = obx_db_stmt(db, sel);
    CHECK(s2 == s);
    CHECK(sqlite3_step(s2) == SQLITE_ROW);
    CHECK_INT(sqlite3_column_type(s2, 0), SQLITE_NULL);
    obx_db_end_reads(db);
    CHECK(sqlite3_stmt_busy(s2) == 0);
    /* A prepare error: NULL, nothing cached. */
    i = db->ncache;
    CHECK(obx_db_stmt(db, bad) == NULL);
    CHECK_INT(db->ncache, i);
    CHECK(strstr(obx_db_errmsg(db), "syntax error"));
    /* Fill the cache; the one over is refused (and not leaked: ASan/valgrind). */
    for (i = 0; db->ncache < OBX_DB_STMT_CACHE; i++) {
        snprintf(many[i], sizeof many[i], "SELECT %d", i);
        CHECK(obx_db_stmt(db, many[i]));
    }
    snprintf(many[i], sizeof many[i], "SELECT %d", i);
    CHECK(obx_db_stmt(db, many[i]) == NULL);
    CHECK_INT(db->ncache, OBX_DB_STMT_CACHE);
    /* Cached ones still come back. */
    CHECK(obx_db_stmt(db, sel) == s);
end:
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_nested_savepoints(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db();

    CHECK(db);
    CHECK_INT(obx_db_tx_alive(db), 0);
    CHECK_OK(obx_db_begin(db));
    CHECK_INT(db->in_tx, 1);
    CHECK_INT(obx_db_tx_alive(db), 1);
    CHECK_OK(insert(db, 1));
    CHECK_OK(obx_db_begin(db)); /* savepoint */
    CHECK_INT(db->in_tx, 2);
    CHECK_OK(insert(db, 2));
    CHECK_OK(obx_db_begin(db)); /* savepoint in savepoint */
    CHECK_INT(db->in_tx, 3);
    CHECK_OK(insert(db, 3));
    obx_db_rollback(db); /* undoes 3 only */
    CHECK_INT(db->in_tx, 2);
    CHECK_INT(obx_db_tx_alive(db), 1);
    CHECK_STR(values(db), "1,2");
    CHECK_OK(obx_db_commit(db)); /* releases the level holding 2 */
    CHECK_INT(db->in_tx, 1);
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 4));
    CHECK_INT(obx_db_end(db, OBX_EINVAL), OBX_EINVAL); /* a failed job: its level only */
    CHECK_INT(db->in_tx, 1);
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 5));
    CHECK_OK(obx_db_end(db, OBX_OK));
    CHECK_OK(obx_db_commit(db));
    CHECK_INT(db->in_tx, 0);
    CHECK_INT(obx_db_tx_alive(db), 0);
    CHECK(sqlite3_get_autocommit(db->h));
    CHECK_STR(values(db), "1,2,5");
    /* An outer rollback undoes everything under it. */
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 6));
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 7));
    CHECK_OK(obx_db_commit(db));
    obx_db_rollback(db);
    CHECK_INT(db->in_tx, 0);
    CHECK_STR(values(db), "1,2,5");
    /* Rolling back with nothing open is harmless. */
    obx_db_rollback(db);
    CHECK_INT(db->in_tx, 0);
end:
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_abort_all_levels(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db();

    CHECK(db);
    CHECK_OK(insert(db, 1));
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 2));
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 3));
    obx_db_abort(db);
    CHECK_INT(db->in_tx, 0);
    CHECK_INT(obx_db_tx_alive(db), 0);
    CHECK(sqlite3_get_autocommit(db->h));
    CHECK_STR(values(db), "1");
    obx_db_abort(db); /* nothing open: harmless */
    CHECK_INT(db->in_tx, 0);
    /* A new transaction works after it. */
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 4));
    CHECK_OK(obx_db_commit(db));
    CHECK_STR(values(db), "1,4");
end:
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

/*
 * SQLite ended the outer transaction itself (as on SQLITE_FULL or an I/O error): the level
 * count says open, but obx_db_tx_alive says 0, and a nested begin refuses rather than
 * starting a fresh transaction whose work would commit alone.
 */
static int
test_tx_ended_by_sqlite(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db();

    CHECK(db);
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 1));
    CHECK(sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(db->in_tx, 2);
    CHECK_INT(obx_db_tx_alive(db), 0);
    CHECK_INT(obx_db_begin(db), OBX_EDB);
    CHECK_INT(db->in_tx, 2);
    /* Unwinding: each rollback drops a level without running SQL on a dead transaction. */
    obx_db_rollback(db);
    CHECK_INT(db->in_tx, 1);
    obx_db_rollback(db);
    CHECK_INT(db->in_tx, 0);
    CHECK_STR(values(db), "");
    /* A begin at level 0 works again. */
    CHECK_OK(obx_db_begin(db));
    CHECK_INT(obx_db_tx_alive(db), 1);
    obx_db_abort(db);
end:
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

/* COMMIT refused (a deferred foreign key): the error comes back and nothing is kept. */
static int
test_commit_refused(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db();

    CHECK(db);
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(insert(db, 1));
    CHECK_OK(obx_db_exec(db, "INSERT INTO c (pid) VALUES (42)")); /* no p 42 */
    CHECK_INT(obx_db_commit(db), OBX_EINVAL);                     /* SQLITE_CONSTRAINT_FOREIGNKEY */
    CHECK_INT(db->in_tx, 0);
    CHECK_INT(obx_db_tx_alive(db), 0);
    CHECK(sqlite3_get_autocommit(db->h));
    CHECK_STR(values(db), "");
    /* The same through obx_db_end. */
    CHECK_OK(obx_db_begin(db));
    CHECK_OK(obx_db_exec(db, "INSERT INTO c (pid) VALUES (43)"));
    CHECK(obx_db_end(db, OBX_OK) != OBX_OK);
    CHECK_INT(db->in_tx, 0);
end:
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_step_in_tx(void)
{
    TEST_BEGIN;
    static const char upd[] = "UPDATE t SET v = v + 10 WHERE v < ?1";
    static const char bad[] = "INSERT INTO p (id) VALUES (?1)";
    struct obx_db *db = fresh_db();
    sqlite3_stmt *s;
    int64_t changes = -1;

    CHECK(db);
    CHECK_OK(insert(db, 1));
    CHECK_OK(insert(db, 2));
    CHECK_OK(insert(db, 3));
    s = obx_db_stmt(db, upd);
    CHECK(s);
    sqlite3_bind_int(s, 1, 3);
    CHECK_OK(obx_db_step_in_tx(db, s, &changes));
    CHECK_INT(changes, 2);
    CHECK_STR(values(db), "3,11,12");
    CHECK_INT(db->in_tx, 0);
    /* A failing statement: rolled back, no changes reported, the error mapped. */
    s = obx_db_stmt(db, bad);
    CHECK(s);
    sqlite3_bind_int(s, 1, 1);
    CHECK_OK(obx_db_step_in_tx(db, s, &changes));
    CHECK_INT(changes, 1);
    s = obx_db_stmt(db, bad);
    sqlite3_bind_int(s, 1, 1);
    changes = -1;
    CHECK_INT(obx_db_step_in_tx(db, s, &changes), OBX_EINVAL); /* SQLITE_CONSTRAINT */
    CHECK_INT(changes, 0);
    CHECK_INT(db->in_tx, 0);
    /* Inside an open transaction it nests as a savepoint. */
    CHECK_OK(obx_db_begin(db));
    s = obx_db_stmt(db, upd);
    sqlite3_bind_int(s, 1, 100);
    CHECK_OK(obx_db_step_in_tx(db, s, &changes));
    CHECK_INT(changes, 3);
    CHECK_INT(db->in_tx, 1);
    obx_db_rollback(db);
    CHECK_STR(values(db), "3,11,12");
end:
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_bind_and_dup(void)
{
    TEST_BEGIN;
    static const char sel[] = "SELECT ?1, ?2";
    struct obx_db *db = fresh_db();
    sqlite3_stmt *s;
    char *a = NULL, *b = NULL;

    CHECK(db);
    s = obx_db_stmt(db, sel);
    CHECK(s);
    CHECK_INT(obx_db_bind_text(s, 1, "hello"), SQLITE_OK);
    CHECK_INT(obx_db_bind_text(s, 2, NULL), SQLITE_OK);
    CHECK(sqlite3_step(s) == SQLITE_ROW);
    a = obx_db_column_dup(s, 0);
    b = obx_db_column_dup(s, 1);
    CHECK_STR(a, "hello");
    CHECK(b == NULL);
    obx_free(a);
    /* The copy fails cleanly when memory does. */
    obx_mem_fail_after(0);
    a = obx_db_column_dup(s, 0);
    obx_mem_fail_after(-1);
    CHECK(a == NULL);
end:
    obx_mem_fail_after(-1);
    obx_free(b);
    obx_db_free(db);
    testdb_remove(db_path);
    TEST_END;
}

static int log_calls, log_code;

static void
on_sqlite_log(void *ctx, int code, const char *msg)
{
    (void)ctx;
    (void)msg;
    log_calls++;
    log_code = code;
}

/* Process-wide settings: accepted before SQLite initialises, refused after. */
static int
test_process_settings(void)
{
    TEST_BEGIN;
    struct obx_db *db = NULL;

    CHECK(sqlite3_shutdown() == SQLITE_OK); /* back to "not initialised" */
    CHECK_OK(obx_db_route_log(on_sqlite_log));
    CHECK_OK(obx_db_tune_process());
    db = fresh_db();
    CHECK(db);
    log_calls = 0;
    CHECK(obx_db_exec(db, "SELEKT 1") != OBX_OK);
    CHECK(log_calls > 0);
    CHECK_INT(log_code, SQLITE_ERROR);
    CHECK_INT(obx_db_route_log(on_sqlite_log), OBX_EDB);
    CHECK_INT(obx_db_tune_process(), OBX_EDB);
end:
    obx_db_free(db);
    testdb_remove(db_path);
    if (sqlite3_shutdown() == SQLITE_OK)
        if (obx_db_route_log(NULL) != OBX_OK)
            rc_ = 1;
    TEST_END;
}

static const struct test_case tests[] = {
    {"open_pragmas", test_open_pragmas},
    {"open_errors", test_open_errors},
    {"open_alloc_failure", test_open_alloc_failure},
    {"stmt_cache", test_stmt_cache},
    {"nested_savepoints", test_nested_savepoints},
    {"abort_all_levels", test_abort_all_levels},
    {"tx_ended_by_sqlite", test_tx_ended_by_sqlite},
    {"commit_refused", test_commit_refused},
    {"step_in_tx", test_step_in_tx},
    {"bind_and_dup", test_bind_and_dup},
    {"process_settings", test_process_settings},
    {NULL, NULL},
};

TEST_MAIN(tests)
