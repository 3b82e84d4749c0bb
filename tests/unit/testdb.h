/*
 * testdb: a unit test's scratch database file, used from outside the code under test: remove
 * it with its WAL and shared-memory files, and read or write it on a connection of the
 * test's own (so a read sees only what was committed).
 */
#ifndef OBX_TEST_TESTDB_H
#define OBX_TEST_TESTDB_H

#include <sqlite3.h>
#include <stdio.h>
#include <unistd.h>

#include "clock.h"
#include "store.h"

static inline void
testdb_remove(const char *path)
{
    const char *sfx[] = {"", "-wal", "-shm"};
    char p[300];

    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

/* The first column of sql's first row: -1 when there is none (or on an error), -2 for NULL. */
static inline long long
testdb_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    long long v = -1;

    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_type(s, 0) == SQLITE_NULL ? -2 : sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Runs sql (several statements allowed); SQLite's result code. */
static inline int
testdb_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);

    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/*
 * A new, empty store at /tmp/obx_test_<tag>_<pid>.db (its path written to path), whose clock
 * is the fake clock fake, started at wall_ms and mono_ms.
 */
static inline struct obx_store *
testdb_fresh_store(char *path, size_t n, const char *tag, struct obx_fake_clock *fake,
                   int64_t wall_ms, int64_t mono_ms)
{
    struct obx_store *st = NULL;

    snprintf(path, n, "/tmp/obx_test_%s_%d.db", tag, (int)getpid());
    testdb_remove(path);
    if (obx_store_open(path, NULL, &st) != OBX_OK)
        return NULL;
    obx_clock_fake_init(fake, wall_ms, mono_ms);
    st->clock = &fake->base;
    return st;
}

/*
 * One message delivered through the store: id enqueued on channel "ch" (conversation "c1"),
 * claimed, and its attempt recorded as accepted at started_at_ms with its confirmation due at
 * confirm_due_at_ms (0: none). Two transitions and an attempt. 0 on success.
 */
static inline int
testdb_deliver(struct obx_store *st, const char *id, int64_t started_at_ms,
               int64_t confirm_due_at_ms)
{
    struct obx_msg m = {"ch", id, "b1", "c1", "hello", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result res;
    struct obx_claimed c;
    enum obx_err r = OBX_OK;
    int got = 0, ok;

    if (obx_enqueue(st, &m, &res, NULL) != OBX_OK || obx_store_claim(st, 1, 60000, &c, &got) ||
        got != 1)
        return -1;
    struct obx_attempt a = {.message_id = c.id,
                            .lease_token = c.lease_token,
                            .started_at_ms = started_at_ms,
                            .http_status = 200,
                            .outcome = "accepted",
                            .next = OBX_NEXT_ACCEPTED,
                            .counted = 1,
                            .reason = "http 200",
                            .confirm_due_at_ms = confirm_due_at_ms};
    ok = obx_store_finish(st, &a, 1, &r) == OBX_OK && r == OBX_OK;
    obx_store_claimed_release(&c);
    return ok ? 0 : -1;
}

#endif
