/*
 * Unit tests for lib/migrate.c: an empty database reaches the latest version, a current
 * one is left alone, a newer one is refused untouched, a failing migration leaves
 * nothing behind, and the drift test (STYLE.md 24): applying every migration gives
 * exactly the schema written in schema/schema.sql.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "buf.h"
#include "check.h"
#include "db.h"
#include "migrate.h"
#include "signature.h"
#include "store.h"
#include "store_dash.h"

#ifndef OBX_SOURCE_DIR
#error "OBX_SOURCE_DIR must name the repository root"
#endif

static char path_a[256], path_b[256];

/* Removes a database file and its WAL companions. */
static void
remove_db(const char *path)
{
    char p[300];

    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", path);
    unlink(p);
    snprintf(p, sizeof p, "%s-journal", path);
    unlink(p);
}

/* A fresh, empty database file named after the test and the process. */
static struct obx_db *
fresh_db(char *path, size_t n, const char *tag)
{
    struct obx_db *db = NULL;
    char msg[256];

    snprintf(path, n, "/tmp/obx_test_migrate_%s_%d.db", tag, (int)getpid());
    remove_db(path);
    if (obx_db_open(path, 1, 5000, &db, msg, sizeof msg) != OBX_OK) {
        fprintf(stderr, "  cannot open %s: %s\n", path, msg);
        return NULL;
    }
    return db;
}

static void
close_db(struct obx_db *db, const char *path)
{
    obx_db_free(db);
    if (path[0])
        remove_db(path);
}

/* Runs a query returning one integer. -1 on error. */
static long long
query_int(sqlite3 *h, const char *sql)
{
    sqlite3_stmt *s = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Number of schema objects (tables, indexes, triggers, views) not owned by SQLite. */
static long long
count_objects(sqlite3 *h)
{
    return query_int(h, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'");
}

/* Reads a whole file into a NUL-terminated malloc'ed string; NULL on error. */
static char *
read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)n + 1);
        if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
            free(data);
            data = NULL;
        } else if (data) {
            data[n] = '\0';
        }
    }
    fclose(f);
    return data;
}

static int
test_empty_to_latest(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "empty");
    int from = -1, to = -1, v = -1;

    CHECK(db);
    CHECK(obx_migrate_latest() >= 1);
    CHECK_OK(obx_migrate_version(db, &v));
    CHECK_INT(v, 0);
    CHECK_OK(obx_migrate_apply(db, &from, &to));
    CHECK_INT(from, 0);
    CHECK_INT(to, obx_migrate_latest());
    CHECK_OK(obx_migrate_version(db, &v));
    CHECK_INT(v, obx_migrate_latest());
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), obx_migrate_latest());
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name"
                               " IN ('outbox', 'transitions', 'attempts')"),
              3);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                               " AND name = 'outbox_claim'"),
              1);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM pragma_integrity_check WHERE"
                               " integrity_check <> 'ok'"),
              0);
    CHECK(!db->in_tx);
    CHECK(sqlite3_get_autocommit(db->h));
    /* from/to may be NULL. */
    CHECK_OK(obx_migrate_apply(db, NULL, NULL));
end:
    close_db(db, path_a);
    TEST_END;
}

/* A current database: nothing to do, from == to, and the schema is not touched. */
static int
test_rerun_is_noop(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "rerun");
    int from = -1, to = -1;
    long long objects, schema_version;

    CHECK(db);
    CHECK_OK(obx_migrate_apply(db, &from, &to));
    objects = count_objects(db->h);
    schema_version = query_int(db->h, "PRAGMA schema_version");
    CHECK(objects > 0);
    CHECK_OK(obx_migrate_apply(db, &from, &to));
    CHECK_INT(from, obx_migrate_latest());
    CHECK_INT(to, obx_migrate_latest());
    CHECK_INT(count_objects(db->h), objects);
    /* schema_version counts schema changes: an idle re-run makes none. */
    CHECK_INT(query_int(db->h, "PRAGMA schema_version"), schema_version);
    /* Through a second connection too (what `outbox migrate` twice does). */
    obx_db_free(db);
    db = NULL;
    {
        char msg[128];
        CHECK_OK(obx_db_open(path_a, 1, 5000, &db, msg, sizeof msg));
    }
    CHECK_OK(obx_migrate_apply(db, &from, &to));
    CHECK_INT(from, to);
    CHECK_INT(count_objects(db->h), objects);
end:
    close_db(db, path_a);
    TEST_END;
}

/* A database newer than this binary is refused and left exactly as it was. */
static int
test_newer_refused_untouched(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "newer");
    struct obx_store *st = NULL;
    char sql[128];
    int from = -7, to = -7, v = 0;

    CHECK(db);
    snprintf(sql, sizeof sql,
             "CREATE TABLE marker (x); INSERT INTO marker VALUES (42);"
             " PRAGMA user_version = %d",
             obx_migrate_latest() + 1);
    CHECK_OK(obx_db_exec(db, sql));
    CHECK_INT(obx_migrate_apply(db, &from, &to), OBX_ESCHEMA);
    CHECK_OK(obx_migrate_version(db, &v));
    CHECK_INT(v, obx_migrate_latest() + 1);
    CHECK_INT(count_objects(db->h), 1);
    CHECK_INT(query_int(db->h, "SELECT x FROM marker"), 42);
    CHECK(sqlite3_get_autocommit(db->h)); /* no transaction left open */
    obx_db_free(db);
    db = NULL;
    /* The store refuses it as well, and still does not touch it. */
    CHECK_INT(obx_store_open(path_a, NULL, &st), OBX_ESCHEMA);
    CHECK(st == NULL);
    {
        char msg[128];
        CHECK_OK(obx_db_open(path_a, 1, 5000, &db, msg, sizeof msg));
    }
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), obx_migrate_latest() + 1);
    CHECK_INT(count_objects(db->h), 1);
end:
    obx_store_free(st);
    close_db(db, path_a);
    TEST_END;
}

/* A store opened with no_migrate refuses an unmigrated database and does not migrate it. */
static int
test_no_migrate_refuses_old(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "nomigrate");
    struct obx_store_opts o = {0};
    struct obx_store *st = NULL;

    CHECK(db);
    o.no_migrate = 1;
    CHECK_INT(obx_store_open(path_a, &o, &st), OBX_ESCHEMA);
    CHECK(st == NULL);
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), 0);
    CHECK_INT(count_objects(db->h), 0);
    /* Once migrated, no_migrate opens it. */
    CHECK_OK(obx_migrate_apply(db, NULL, NULL));
    CHECK_OK(obx_store_open(path_a, &o, &st));
end:
    obx_store_free(st);
    close_db(db, path_a);
    TEST_END;
}

/*
 * A migration that fails part-way is rolled back completely: the version stays, and
 * nothing it created before the failing statement survives. `taken` is a name the
 * migration wants, created by hand first so that its statement fails.
 */
static int
failing_migration_rolls_back(const char *tag, const char *taken)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, tag);
    char sql[256];
    int from = -7, to = -7;

    CHECK(db);
    snprintf(sql, sizeof sql, "CREATE TABLE %s (x)", taken);
    CHECK_OK(obx_db_exec(db, sql));
    CHECK(obx_migrate_apply(db, &from, &to) != OBX_OK);
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), 0);
    CHECK_INT(count_objects(db->h), 1);
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM sqlite_master WHERE name = '%s'"
             " AND sql = 'CREATE TABLE %s (x)'",
             taken, taken);
    CHECK_INT(query_int(db->h, sql), 1);
    CHECK(sqlite3_get_autocommit(db->h));
    CHECK(!db->in_tx);
    /* The database is still usable: drop the obstacle and the migration goes through. */
    snprintf(sql, sizeof sql, "DROP TABLE %s", taken);
    CHECK_OK(obx_db_exec(db, sql));
    CHECK_OK(obx_migrate_apply(db, &from, &to));
    CHECK_INT(from, 0);
    CHECK_INT(to, obx_migrate_latest());
end:
    close_db(db, path_a);
    TEST_END;
}

static int
test_failure_rolls_back_first_statement(void)
{
    /* 0001 starts with CREATE TABLE outbox. */
    return failing_migration_rolls_back("fail_first", "outbox");
}

static int
test_failure_rolls_back_last_statement(void)
{
    /* ... and ends with CREATE INDEX attempts_started: everything before it must go too. */
    return failing_migration_rolls_back("fail_last", "attempts_started");
}

/* The embedded migrations are exactly migrations/NNNN_*.sql, in order, byte for byte. */
static int
test_embedded_match_files(void)
{
    TEST_BEGIN;
    char path[512];
    DIR *dir = opendir(OBX_SOURCE_DIR "/migrations");
    struct dirent *de;
    int on_disk = 0, embedded = 0, prev = 0;
    char *text = NULL;

    CHECK(dir);
    while ((de = readdir(dir)) != NULL) {
        const char *n = de->d_name;
        size_t len = strlen(n);
        if (len > 9 && n[0] >= '0' && n[0] <= '9' && n[1] >= '0' && n[1] <= '9' && n[2] >= '0' &&
            n[2] <= '9' && n[3] >= '0' && n[3] <= '9' && n[4] == '_' &&
            strcmp(n + len - 4, ".sql") == 0)
            on_disk++;
    }
    for (const struct obx_migration *m = obx_migrate_embedded; m->version; m++) {
        embedded++;
        CHECK(m->version > prev); /* strictly increasing */
        prev = m->version;
        CHECK(m->name && m->sql);
        CHECK_INT(atoi(m->name), m->version);
        snprintf(path, sizeof path, "%s/migrations/%s", OBX_SOURCE_DIR, m->name);
        text = read_file(path);
        CHECK(text);
        CHECK(strcmp(text, m->sql) == 0);
        free(text);
        text = NULL;
    }
    CHECK_INT(embedded, on_disk);
    CHECK_INT(prev, obx_migrate_latest());
end:
    free(text);
    if (dir)
        closedir(dir);
    TEST_END;
}

/* ---- drift test -------------------------------------------------------------------- */

/* Strips -- comments (outside quotes), collapses whitespace runs to one space, trims. */
static void
normalise_sql(const char *in, struct obx_buf *out, enum obx_err *err)
{
    char quote = 0;
    int pending_space = 0, started = 0;

    for (const char *p = in; *p && *err == OBX_OK; p++) {
        if (!quote && p[0] == '-' && p[1] == '-') {
            while (p[1] && p[1] != '\n')
                p++;
            pending_space = 1;
            continue;
        }
        if (!quote && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
            pending_space = 1;
            continue;
        }
        if (pending_space && started)
            *err = obx_buf_append(out, " ", 1);
        pending_space = 0;
        started = 1;
        if (quote && *p == quote)
            quote = 0;
        else if (!quote && (*p == '\'' || *p == '"'))
            quote = *p;
        if (*err == OBX_OK)
            *err = obx_buf_append(out, p, 1);
    }
}

/* One line per schema object: "type|name|tbl_name|normalised sql\n", sorted. */
static enum obx_err
schema_dump(sqlite3 *h, struct obx_buf *out)
{
    sqlite3_stmt *s = NULL;
    enum obx_err err = OBX_OK;
    int rc = sqlite3_prepare_v2(h,
                                "SELECT type, name, tbl_name, sql FROM sqlite_master"
                                " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
                                -1, &s, NULL);

    if (rc != SQLITE_OK)
        return OBX_EDB;
    while (err == OBX_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *sql = (const char *)sqlite3_column_text(s, 3);
        err = obx_buf_printf(out, "%s|%s|%s|", (const char *)sqlite3_column_text(s, 0),
                             (const char *)sqlite3_column_text(s, 1),
                             (const char *)sqlite3_column_text(s, 2));
        if (err == OBX_OK && sql)
            normalise_sql(sql, out, &err);
        if (err == OBX_OK)
            err = obx_buf_puts(out, "\n");
    }
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = OBX_EDB;
    sqlite3_finalize(s);
    return err;
}

/* Prints the first line where two dumps differ. */
static void
show_difference(const char *a, const char *b)
{
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || memcmp(a, b, la) != 0) {
            fprintf(stderr, "  migrations: %.*s\n  schema.sql: %.*s\n", (int)la, a, (int)lb, b);
            return;
        }
        a += la + (ea ? 1 : 0);
        b += lb + (eb ? 1 : 0);
    }
    fprintf(stderr, "  migrations: %s\n  schema.sql: %s\n", *a ? a : "(end)", *b ? b : "(end)");
}

static int
test_schema_drift(void)
{
    TEST_BEGIN;
    struct obx_db *a = fresh_db(path_a, sizeof path_a, "drift_migrations");
    struct obx_db *b = fresh_db(path_b, sizeof path_b, "drift_schema");
    char *schema = read_file(OBX_SOURCE_DIR "/schema/schema.sql");
    struct obx_buf da, db;
    char *errmsg = NULL;

    obx_buf_init(&da, 1 << 20);
    obx_buf_init(&db, 1 << 20);
    CHECK(a && b);
    CHECK(schema);
    CHECK_OK(obx_migrate_apply(a, NULL, NULL));
    if (sqlite3_exec(b->h, schema, NULL, NULL, &errmsg) != SQLITE_OK)
        fprintf(stderr, "  schema.sql: %s\n", errmsg ? errmsg : "?");
    CHECK(errmsg == NULL);
    CHECK_OK(schema_dump(a->h, &da));
    CHECK_OK(schema_dump(b->h, &db));
    CHECK(da.len > 0);
    if (strcmp(obx_buf_str(&da), obx_buf_str(&db)) != 0)
        show_difference(obx_buf_str(&da), obx_buf_str(&db));
    CHECK(strcmp(obx_buf_str(&da), obx_buf_str(&db)) == 0);
end:
    sqlite3_free(errmsg);
    free(schema);
    obx_buf_release(&da);
    obx_buf_release(&db);
    close_db(a, path_a);
    close_db(b, path_b);
    TEST_END;
}

/* The normaliser itself: the drift test is only as good as it. */
static int
test_normaliser(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    enum obx_err err = OBX_OK;

    obx_buf_init(&b, 4096);
    normalise_sql("  CREATE TABLE t (\n    a INT, -- the a\n\tb TEXT DEFAULT '--  x'\n)  ", &b,
                  &err);
    CHECK_OK(err);
    CHECK_STR(obx_buf_str(&b), "CREATE TABLE t ( a INT, b TEXT DEFAULT '--  x' )");
    obx_buf_reset(&b);
    normalise_sql("-- only a comment\nSELECT 1 -- trailing", &b, &err);
    CHECK_OK(err);
    CHECK_STR(obx_buf_str(&b), "SELECT 1");
    /* A real difference survives normalisation. */
    obx_buf_reset(&b);
    normalise_sql("CREATE INDEX i ON t (a DESC)", &b, &err);
    CHECK(strcmp(obx_buf_str(&b), "CREATE INDEX i ON t (a)") != 0);
end:
    obx_buf_release(&b);
    TEST_END;
}

/* Applies the embedded migrations up to and including version `upto` by hand. */
static enum obx_err
migrate_upto(struct obx_db *db, int upto)
{
    char bump[64];
    enum obx_err err = OBX_OK;

    for (const struct obx_migration *m = obx_migrate_embedded; m->version && err == OBX_OK; m++)
        if (m->version <= upto)
            err = obx_db_exec(db, m->sql);
    snprintf(bump, sizeof bump, "PRAGMA user_version = %d", upto);
    if (err == OBX_OK)
        err = obx_db_exec(db, bump);
    return err;
}

/*
 * 0006 rebuilds outbox to add a CHECK: every row, id, attempt and transition survives,
 * foreign keys are on again afterwards, the triggers work, and "." is refused from then on.
 */
static int
test_0006_keeps_data(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "m0006");

    CHECK(db);
    CHECK_OK(migrate_upto(db, 5));
    CHECK_OK(obx_db_exec(db, "INSERT INTO outbox (id, channel_id, external_message_id,"
                             " business_id, external_conversation_id, content, sender_type)"
                             " VALUES (7, 'ch', 'm1', 'b', 'c', 'hi', 'User'),"
                             " (9, 'ch', 'm2', 'b', 'c', 'yo', 'Consumer');"
                             " UPDATE outbox SET state = 'failed', state_reason = 'x'"
                             " WHERE id = 7;"
                             " INSERT INTO attempts (message_id, started_at_ms, duration_ms,"
                             " outcome) VALUES (7, 1, 2, 'fatal')"));
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM transitions"), 1);
    CHECK_OK(obx_migrate_apply(db, NULL, NULL));
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), obx_migrate_latest());
    CHECK_INT(query_int(db->h, "PRAGMA foreign_keys"), 1);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM outbox WHERE (id = 7 AND state = 'failed')"
                               " OR (id = 9 AND state = 'queued')"),
              2);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM attempts WHERE message_id = 7"), 1);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM transitions WHERE message_id = 7"), 1);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM pragma_integrity_check WHERE"
                               " integrity_check <> 'ok'"),
              0);
    /* The transition trigger is back. Since 0009 a message's events outlive it (the audit
     * chain covers them; its prune removes them). */
    CHECK_OK(obx_db_exec(db, "UPDATE outbox SET state = 'cancelled', state_reason = 'y'"
                             " WHERE id = 9"));
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM transitions WHERE message_id = 9"), 1);
    CHECK_OK(obx_db_exec(db, "DELETE FROM outbox WHERE id = 7"));
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM attempts"), 1);
    CHECK(obx_db_exec(db, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                          " external_conversation_id, content, sender_type)"
                          " VALUES ('..', 'm3', 'b', 'c', 'hi', 'User')") != OBX_OK);
    CHECK_OK(obx_db_exec(db, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                             " external_conversation_id, content, sender_type)"
                             " VALUES ('...', 'm3', 'b', 'c', 'hi', 'User')"));
end:
    close_db(db, path_a);
    TEST_END;
}

/* A database that already holds a "." channel stops at 0006 with nothing changed. */
static int
test_0006_refuses_dot_rows(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "m0006dot");

    CHECK(db);
    CHECK_OK(migrate_upto(db, 5));
    CHECK_OK(obx_db_exec(db, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                             " external_conversation_id, content, sender_type)"
                             " VALUES ('.', 'm1', 'b', 'c', 'hi', 'User')"));
    CHECK(obx_migrate_apply(db, NULL, NULL) != OBX_OK);
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), 5);
    CHECK_INT(query_int(db->h, "PRAGMA foreign_keys"), 1);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM outbox WHERE channel_id = '.'"), 1);
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM sqlite_master WHERE name = 'outbox_0006'"), 0);
    CHECK(sqlite3_get_autocommit(db->h));
    /* Once the row is gone, the migration goes through. */
    CHECK_OK(obx_db_exec(db, "DELETE FROM outbox"));
    CHECK_OK(obx_migrate_apply(db, NULL, NULL));
    CHECK_INT(query_int(db->h, "PRAGMA user_version"), obx_migrate_latest());
end:
    close_db(db, path_a);
    TEST_END;
}

/* hash = sha256(prev || "\n" || canonical(row)) as schema 7's seal wrote it (lib/audit.h). */
static enum obx_err
legacy_seal(sqlite3 *h, int upto_id)
{
    sqlite3_stmt *s = NULL, *u = NULL;
    char prev[65] = "0000000000000000000000000000000000000000000000000000000000000000", hash[65];
    struct obx_buf b;
    enum obx_err err = OBX_OK;

    obx_buf_init(&b, 1 << 20);
    if (sqlite3_prepare_v2(h,
                           "SELECT id, at_ms, kind, channel_id, external_message_id, record"
                           " FROM audit_log WHERE id <= ?1 ORDER BY id",
                           -1, &s, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, "UPDATE audit_log SET hash = ?2 WHERE id = ?1", -1, &u, NULL) !=
            SQLITE_OK)
        err = OBX_EDB;
    if (err == OBX_OK)
        sqlite3_bind_int(s, 1, upto_id);
    while (err == OBX_OK && sqlite3_step(s) == SQLITE_ROW) {
        obx_buf_reset(&b);
        err = obx_buf_printf(&b, "%s\n[%lld,%lld", prev, (long long)sqlite3_column_int64(s, 0),
                             (long long)sqlite3_column_int64(s, 1));
        for (int col = 2; err == OBX_OK && col <= 5; col++) {
            err = obx_buf_puts(&b, ",");
            if (err == OBX_OK)
                err = obx_buf_json_str(&b, (const char *)sqlite3_column_text(s, col));
        }
        if (err == OBX_OK)
            err = obx_buf_puts(&b, "]");
        if (err == OBX_OK)
            err = obx_signature_sha256_hex(obx_buf_str(&b), b.len, hash);
        sqlite3_bind_int64(u, 1, sqlite3_column_int64(s, 0));
        sqlite3_bind_text(u, 2, hash, -1, SQLITE_TRANSIENT);
        if (err == OBX_OK && sqlite3_step(u) != SQLITE_DONE)
            err = OBX_EDB;
        sqlite3_reset(u);
        memcpy(prev, hash, sizeof prev);
    }
    sqlite3_finalize(s);
    sqlite3_finalize(u);
    obx_buf_release(&b);
    return err;
}

/*
 * 0009 (lean audit): a schema 7 database whose audit_log rows were sealed (two) or not yet
 * (one) keeps a chain that verifies after the migration; the chain goes on from the legacy
 * rows into the seals of the new events; a change to a legacy row or to a new event is still
 * caught, and the new events are not copied into audit_log.
 */
static int
test_0009_keeps_audit_chain(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "m0009");
    struct obx_store *st = NULL;
    struct obx_audit_report r;
    int64_t sealed = 0;

    CHECK(db);
    CHECK_OK(migrate_upto(db, 7));
    CHECK_OK(obx_db_exec(db, "INSERT INTO outbox (id, channel_id, external_message_id,"
                             " business_id, external_conversation_id, content, sender_type, head)"
                             " VALUES (7, 'ch', 'm1', 'b', 'c1', 'hi', 'User', 1),"
                             " (9, 'ch', 'm2', 'b', 'c2', 'yo', 'Consumer', 1);"
                             " UPDATE outbox SET state = 'sending', state_reason = 'claimed'"
                             " WHERE id = 7;"
                             " INSERT INTO attempts (message_id, started_at_ms, duration_ms,"
                             " http_status, outcome) VALUES (7, 1, 2, 503, 'retry');"
                             " UPDATE outbox SET state = 'queued', state_reason = 'retry'"
                             " WHERE id = 7;"));
    CHECK_INT(query_int(db->h, "SELECT count(*) FROM audit_log"), 3);
    CHECK_OK(legacy_seal(db->h, 2)); /* the third row waits for its seal */
    obx_db_free(db);
    db = NULL;

    CHECK_OK(obx_store_open(path_a, NULL, &st));
    CHECK_INT(query_int(st->db->h, "PRAGMA user_version"), obx_migrate_latest());
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 2);
    CHECK_INT(r.unsealed, 1);
    /* New events after the migration: delivered and cancelled. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE outbox SET state = 'cancelled', state_reason = 'x'"
                                 " WHERE id = 9;"
                                 " INSERT INTO attempts (message_id, started_at_ms, duration_ms,"
                                 " http_status, outcome) VALUES (7, 5, 2, 200, 'accepted');"));
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_INT(sealed, 3); /* the legacy row, then the two new events */
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_log"), 3);
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_seals WHERE hash <> ''"), 1);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 5);
    CHECK_INT(r.unsealed, 0);
    /* A new event changed: its seal is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE attempts SET http_status = 500 WHERE http_status = 200"));
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, query_int(st->db->h, "SELECT max(id) FROM audit_seals"));
    CHECK_OK(obx_db_exec(st->db, "UPDATE attempts SET http_status = 200 WHERE http_status = 500"));
    /* A legacy row changed: the legacy row is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_log SET record = json_set(record, '$.reason',"
                                 " 'forged') WHERE id = 1"));
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 1);
end:
    obx_store_free(st);
    close_db(db, path_a);
    TEST_END;
}

/*
 * 0010 (audit actions): a schema 9 database keeps its seals (actions_upto 0: no action, so
 * their hashes stay) and its chain verifies; pauses and resumes after the migration are sealed
 * into the chain, and a change to one is caught at its seal.
 */
static int
test_0010_actions_in_chain(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "m0010");
    struct obx_store *st = NULL;
    struct obx_audit_report r;
    int64_t sealed = 0;
    int created = 0;

    CHECK(db);
    CHECK_OK(migrate_upto(db, 9));
    CHECK_OK(obx_db_exec(db, "INSERT INTO outbox (id, channel_id, external_message_id,"
                             " business_id, external_conversation_id, content, sender_type, head)"
                             " VALUES (7, 'ch', 'm1', 'b', 'c1', 'hi', 'User', 1);"
                             " UPDATE outbox SET state = 'cancelled', state_reason = 'x'"
                             " WHERE id = 7;"));
    obx_db_free(db);
    db = NULL;

    CHECK_OK(obx_store_open(path_a, NULL, &st));
    CHECK_INT(query_int(st->db->h, "PRAGMA user_version"), obx_migrate_latest());
    /* The schema 9 base seal: no action covered. */
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_seals WHERE actions_upto = 0"), 1);
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_INT(sealed, 1);
    CHECK_OK(obx_store_dash_pause(st, "channel", "ch", "why", "dashboard", &created));
    CHECK_INT(created, 1);
    CHECK_OK(obx_store_dash_resume(st, "channel", "ch", "dashboard"));
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM actions WHERE by = 'dashboard'"), 2);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.unsealed, 2);
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_INT(sealed, 2);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 3);
    CHECK_INT(r.unsealed, 0);
    /* A stored pause changed: its seal is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE actions SET reason = 'forged' WHERE action = 'pause'"));
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, query_int(st->db->h, "SELECT max(id) FROM audit_seals"));
end:
    obx_store_free(st);
    close_db(db, path_a);
    TEST_END;
}

/*
 * 0011 (lean triggers): a schema 10 database keeps its counters; a message without an
 * identity row (its events older than 0009) gets one with its next event, which is sealed
 * and verifies; the counters and the minute prune work on the rebuilt tables.
 */
static int
test_0011_lean_triggers(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "m0011");
    struct obx_store *st = NULL;
    struct obx_audit_report r;
    int64_t sealed = 0;

    CHECK(db);
    CHECK_OK(migrate_upto(db, 10));
    CHECK_OK(obx_db_exec(db, "INSERT INTO outbox (id, channel_id, external_message_id,"
                             " business_id, external_conversation_id, content, sender_type, head)"
                             " VALUES (7, 'ch', 'm1', 'b', 'c1', 'hi', 'User', 1),"
                             " (8, 'ch', 'm2', 'b', 'c2', 'hi', 'User', 1);"
                             " INSERT INTO state_counts VALUES ('ch', 'queued', 2);"
                             " UPDATE outbox SET state = 'accepted', state_reason = 'x',"
                             " state_at_ms = 120000 WHERE id = 7;"
                             " DELETE FROM audit_messages WHERE message_id = 7;"
                             " INSERT INTO stats_minute VALUES (1, 'sent', 5);"));
    obx_db_free(db);
    db = NULL;

    CHECK_OK(obx_store_open(path_a, NULL, &st));
    CHECK_INT(query_int(st->db->h, "PRAGMA user_version"), obx_migrate_latest());
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_messages WHERE message_id = 7"), 0);
    CHECK_INT(query_int(st->db->h, "SELECT n FROM state_counts WHERE state = 'queued'"), 1);
    CHECK_INT(query_int(st->db->h, "SELECT n FROM state_counts WHERE state = 'accepted'"), 1);
    CHECK_INT(query_int(st->db->h, "SELECT n FROM stats_minute WHERE minute = 1"), 5);
    /* The message's next event (not out of 'queued') is sealed with its identity. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE outbox SET state = 'confirmed', state_reason = 'y',"
                                 " state_at_ms = 180000 WHERE id = 7"));
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_messages WHERE message_id = 7"), 1);
    CHECK_INT(query_int(st->db->h, "SELECT n FROM state_counts WHERE state = 'accepted'"), 0);
    CHECK_INT(query_int(st->db->h, "SELECT n FROM state_counts WHERE state = 'confirmed'"), 1);
    CHECK_INT(query_int(st->db->h, "SELECT n FROM stats_minute WHERE minute = 3"
                                   " AND kind = 'confirmed'"),
              1);
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.unsealed, 0);
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_messages"
                                   " WHERE message_id = 7 AND sent_sha256 IS NOT NULL"),
              1);
    /* An attempt written by hand, with no transition before it, still names its message;
     * its first transition then adds no second identity row. */
    CHECK_OK(obx_db_exec(st->db, "INSERT INTO attempts (message_id, started_at_ms, duration_ms,"
                                 " outcome) VALUES (8, 240000, 1, 'retry')"));
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_messages WHERE message_id = 8"), 1);
    CHECK_OK(obx_db_exec(st->db, "UPDATE outbox SET state = 'cancelled', state_reason = 'z'"
                                 " WHERE id = 8"));
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM audit_messages WHERE message_id = 8"), 1);
    /* A new minute row drops minutes older than 7 days; a repeat of the minute does not. */
    CHECK_OK(obx_db_exec(st->db, "INSERT INTO stats_minute VALUES (10082, 'sent', 1)"));
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM stats_minute WHERE minute = 1"), 0);
    CHECK_INT(query_int(st->db->h, "SELECT count(*) FROM stats_minute WHERE minute = 3"), 1);
end:
    obx_store_free(st);
    close_db(db, path_a);
    TEST_END;
}

/*
 * A keyed chain with pauses and resumes verifies in slices of one seal to the verdict of a
 * whole verification, before and after a resume is changed.
 */
static int
test_0010_keyed_slices(void)
{
    TEST_BEGIN;
    struct obx_db *db = fresh_db(path_a, sizeof path_a, "m0010k");
    struct obx_store *st = NULL;
    struct obx_audit_report whole, r;
    struct obx_audit_cursor c;
    char keyfile[300] = "", errmsg[200];
    int64_t sealed = 0;
    int created = 0, done = 0, calls = 0;
    FILE *f;

    CHECK(db);
    obx_db_free(db);
    db = NULL;
    snprintf(keyfile, sizeof keyfile, "%s.key", path_a);
    f = fopen(keyfile, "w");
    CHECK(f);
    fputs("a test key of more than sixteen bytes\n", f);
    fclose(f);
    CHECK_OK(obx_store_open(path_a, NULL, &st));
    CHECK_OK(obx_audit_use_key(st, keyfile, 1, errmsg, sizeof errmsg));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(obx_store_dash_pause(st, "channel", "ch", "why", "dashboard", &created));
        CHECK_OK(obx_audit_seal(st, 1000, &sealed));
        CHECK_OK(obx_store_dash_resume(st, "channel", "ch", "dashboard"));
        CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    }
    for (int tampered = 0; tampered < 2; tampered++) {
        if (tampered)
            CHECK_OK(obx_db_exec(st->db, "UPDATE actions SET by = 'cli' WHERE id = 5"));
        CHECK_OK(obx_audit_verify(st, &whole));
        CHECK(whole.keyed_from_id > 0);
        CHECK_INT(whole.first_bad_id != 0, tampered);
        memset(&c, 0, sizeof c);
        done = 0;
        calls = 0;
        while (!done && calls < 100) {
            CHECK_OK(obx_audit_verify_slice(st, 1, 0, &c, &r, &done));
            calls++;
        }
        CHECK(calls >= 3);
        CHECK_INT(r.first_bad_id, whole.first_bad_id);
        CHECK_INT(r.checked, whole.checked);
        CHECK_INT(r.head_id, whole.head_id);
        CHECK(strcmp(r.head_hash, whole.head_hash) == 0);
    }
end:
    if (*keyfile)
        unlink(keyfile);
    obx_store_free(st);
    close_db(db, path_a);
    TEST_END;
}

static const struct test_case tests[] = {
    {"empty_to_latest", test_empty_to_latest},
    {"rerun_is_noop", test_rerun_is_noop},
    {"newer_refused_untouched", test_newer_refused_untouched},
    {"no_migrate_refuses_old", test_no_migrate_refuses_old},
    {"failure_rolls_back_first_statement", test_failure_rolls_back_first_statement},
    {"failure_rolls_back_last_statement", test_failure_rolls_back_last_statement},
    {"embedded_match_files", test_embedded_match_files},
    {"normaliser", test_normaliser},
    {"schema_drift", test_schema_drift},
    {"0006_keeps_data", test_0006_keeps_data},
    {"0006_refuses_dot_rows", test_0006_refuses_dot_rows},
    {"0009_keeps_audit_chain", test_0009_keeps_audit_chain},
    {"0010_actions_in_chain", test_0010_actions_in_chain},
    {"0010_keyed_slices", test_0010_keyed_slices},
    {"0011_lean_triggers", test_0011_lean_triggers},
    {NULL, NULL},
};

TEST_MAIN(tests)
