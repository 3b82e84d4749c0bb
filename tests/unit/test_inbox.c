/*
 * Unit tests of inbox, the relay of replies to inbox_url, against a stub receiver on
 * 127.0.0.1 and a fake clock: a 2xx marks the reply delivered (one POST, JSON, with
 * Idempotency-Key partoo-<id>); a 5xx is retried no earlier than its Retry-After and, at
 * max_attempts, failed; no answer at all is retried too; an id that cannot be a header is
 * failed without a request; without inbox_url nothing is sent and ack works; a failed
 * allocation leaves the reply leased and relayed again after the lease (nothing lost).
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "clock.h"
#include "config.h"
#include "inbox.h"
#include "log.h"
#include "loop_http.h"
#include "mem.h"
#include "store_inbox.h"
#include "store_queue.h"
#include "testdb.h"

static char path[256];

#define T0 1800000000000LL /* the fake clock's start, epoch ms */

/* One text value (copied into out) from the database. */
static const char *
sql_text(const char *sql, char *out, size_t n)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;

    snprintf(out, n, "%s", "(none)");
    if (sqlite3_open(path, &db) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
        sqlite3_column_text(s, 0))
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return out;
}

struct fixture {
    struct event_base *base;
    struct obx_store *st;
    struct obx_fake_clock fc;
    struct obx_config cfg;
    int cfg_ok;
    struct stub_server stub;
    struct obx_inbox *ib;
};

/* A store with one pending reply (partoo message id pid), a stub answering status. */
static int
fixture_start(struct fixture *f, int status, const char *pid, const char *const *kv)
{
    struct obx_new_reply r = {.partoo_message_id = pid,
                              .channel_id = "ch",
                              .external_conversation_id = "conv-42",
                              .sender_type = "User",
                              .sender_label = "Jane",
                              .content_type = "TEXT",
                              .content = "bonjour",
                              .message_date = "2026-11-24 09:15:02+00:00"};
    char url[64];
    int added = 0;

    memset(f, 0, sizeof *f);
    testdb_remove(path);
    obx_clock_fake_init(&f->fc, T0, 1000);
    f->base = event_base_new();
    if (!f->base || stub_start(&f->stub, f->base, status) != 0)
        return -1;
    if (obx_config_init(&f->cfg) != OBX_OK)
        return -1;
    f->cfg_ok = 1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/replies", f->stub.port);
    if (obx_config_set(&f->cfg, "inbox_url", url, OBX_SRC_FLAG, NULL) != OBX_OK)
        return -1;
    for (int i = 0; kv && kv[i]; i += 2)
        if (obx_config_set(&f->cfg, kv[i], kv[i + 1], OBX_SRC_FLAG, NULL) != OBX_OK)
            return -1;
    if (obx_store_open(path, NULL, &f->st) != OBX_OK)
        return -1;
    f->st->clock = &f->fc.base;
    if (pid) {
        if (obx_store_inbox_add_webhook_event(f->st, "00", "{}", 2, T0, &r.event_id) != OBX_OK ||
            obx_store_inbox_add_reply(f->st, &r, &added) != OBX_OK || added != 1)
            return -1;
    }
    return 0;
}

static void
fixture_stop(struct fixture *f)
{
    obx_inbox_free(f->ib);
    stub_free(&f->stub);
    obx_store_free(f->st);
    if (f->base)
        event_base_free(f->base);
    if (f->cfg_ok)
        obx_config_release(&f->cfg);
    testdb_remove(path);
}

static int
attempts_at_least(void *arg)
{
    return testdb_int(path, "SELECT attempts FROM inbox") >= *(int *)arg;
}

static int
state_is_failed(void *arg)
{
    (void)arg;
    return testdb_int(path, "SELECT count(*) FROM inbox WHERE state = 'failed'") == 1;
}

/* Runs the loop until the pump timer set by new/notify has run (it is due at once). */
static void
run_pump(struct fixture *f)
{
    for (int i = 0; i < 3; i++)
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static int
test_2xx_marks_delivered(void)
{
    struct fixture f;
    int one = 1;
    char buf[256];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 204, "424242", NULL));
    CHECK_OK(obx_inbox_new(f.base, f.st, NULL, &f.cfg, &f.ib));
    CHECK(run_until_cond(f.base, attempts_at_least, &one));
    CHECK_STR(sql_text("SELECT state FROM inbox", buf, sizeof buf), "delivered");
    CHECK_INT(testdb_int(path, "SELECT last_http_status FROM inbox"), 204);
    CHECK_INT(testdb_int(path, "SELECT delivered_at_ms FROM inbox"), T0);
    CHECK_INT(f.stub.nseen, 1);
    CHECK_INT(f.stub.seen[0].method, EVHTTP_REQ_POST);
    CHECK_STR(f.stub.seen[0].uri, "/replies");
    CHECK_STR(f.stub.seen[0].idempotency_key, "partoo-424242");
    CHECK_STR(f.stub.seen[0].content_type, "application/json");
    CHECK(strstr(f.stub.seen[0].body, "\"partoo_message_id\":\"424242\"") != NULL);
    CHECK(strstr(f.stub.seen[0].body, "\"content\":\"bonjour\"") != NULL);
    CHECK(strstr(f.stub.seen[0].body, "\"external_conversation_id\":\"conv-42\"") != NULL);
    /* Delivered replies are not sent again. */
    f.fc.now_ms += 3600 * 1000;
    obx_inbox_notify(f.ib);
    run_pump(&f);
    CHECK_INT(testdb_int(path, "SELECT attempts FROM inbox"), 1);
    /* The producer acknowledges it; a second ack of a missing id is ENOTFOUND. */
    CHECK_OK(obx_inbox_ack(f.st, testdb_int(path, "SELECT id FROM inbox")));
    CHECK_STR(sql_text("SELECT state FROM inbox", buf, sizeof buf), "acked");
    CHECK_INT(obx_inbox_ack(f.st, 999), OBX_ENOTFOUND);
end:
    fixture_stop(&f);
    TEST_END;
}

/* 503 + Retry-After: due again no earlier than that; failed at max_attempts. */
static int
test_5xx_retried_after_retry_after_then_failed(void)
{
    static const char *const kv[] = {"max_attempts", "2", "retry_base", "1s", NULL};
    struct fixture f;
    int one = 1;
    long long due;
    char buf[256];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 503, "424243", kv));
    f.stub.retry_after = "120";
    f.stub.reply_body = "busy";
    CHECK_OK(obx_inbox_new(f.base, f.st, NULL, &f.cfg, &f.ib));
    CHECK(run_until_cond(f.base, attempts_at_least, &one));
    CHECK_STR(sql_text("SELECT state FROM inbox", buf, sizeof buf), "pending");
    CHECK_INT(testdb_int(path, "SELECT last_http_status FROM inbox"), 503);
    CHECK_STR(sql_text("SELECT last_error FROM inbox", buf, sizeof buf), "busy");
    due = testdb_int(path, "SELECT next_attempt_at_ms FROM inbox");
    CHECK(due >= T0 + 120000);
    CHECK(due <= T0 + 300000); /* retry_cap (5 min by default) */
    /* Not due yet: a notify sends nothing (and leases nothing). */
    obx_inbox_notify(f.ib);
    run_pump(&f);
    CHECK_INT(testdb_int(path, "SELECT next_attempt_at_ms FROM inbox"), due);
    CHECK_INT(f.stub.nseen, 1);
    /* Due: the second attempt is the last (max_attempts = 2). */
    f.fc.now_ms = due;
    obx_inbox_notify(f.ib);
    CHECK(run_until_cond(f.base, state_is_failed, NULL));
    CHECK_INT(testdb_int(path, "SELECT attempts FROM inbox"), 2);
    CHECK_INT(f.stub.nseen, 2);
    CHECK_STR(f.stub.seen[1].idempotency_key, "partoo-424243");
end:
    fixture_stop(&f);
    TEST_END;
}

/* No answer at all (nothing listens): an attempt with status 0 and the transport's error. */
static int
test_connection_refused_is_retried(void)
{
    struct fixture f;
    int one = 1;
    char url[64], buf[256];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "424244", NULL));
    /* The stub's port, closed: connections are refused. */
    snprintf(url, sizeof url, "http://127.0.0.1:%d/replies", f.stub.port);
    stub_free(&f.stub);
    CHECK_OK(obx_config_set(&f.cfg, "inbox_url", url, OBX_SRC_FLAG, NULL));
    CHECK_OK(obx_inbox_new(f.base, f.st, NULL, &f.cfg, &f.ib));
    CHECK(run_until_cond(f.base, attempts_at_least, &one));
    CHECK_STR(sql_text("SELECT state FROM inbox", buf, sizeof buf), "pending");
    CHECK_INT(testdb_int(path, "SELECT last_http_status FROM inbox"),
              -2); /* NULL: no HTTP answer */
    CHECK(strcmp(sql_text("SELECT last_error FROM inbox", buf, sizeof buf), "(none)") != 0);
    CHECK(testdb_int(path, "SELECT next_attempt_at_ms FROM inbox") > T0);
end:
    fixture_stop(&f);
    TEST_END;
}

/* An id that would inject a header is failed, never sent. */
static int
test_unusable_id_failed_without_request(void)
{
    struct fixture f;
    char buf[256];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "42\r\nX-Evil: 1", NULL));
    CHECK_OK(obx_inbox_new(f.base, f.st, NULL, &f.cfg, &f.ib));
    CHECK(run_until_cond(f.base, state_is_failed, NULL));
    CHECK(strstr(sql_text("SELECT last_error FROM inbox", buf, sizeof buf), "Idempotency-Key"));
    CHECK_INT(testdb_int(path, "SELECT attempts FROM inbox"), 0);
    CHECK_INT(f.stub.nseen, 0);
end:
    fixture_stop(&f);
    TEST_END;
}

/* Without inbox_url replies wait to be pulled; a reload that sets it starts the relay. */
static int
test_pull_only_then_reload(void)
{
    struct fixture f;
    struct obx_config pull;
    int pull_ok = 0, one = 1;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "424245", NULL));
    CHECK_OK(obx_config_init(&pull));
    pull_ok = 1;
    CHECK_OK(obx_inbox_new(f.base, f.st, NULL, &pull, &f.ib));
    obx_inbox_notify(f.ib);
    run_pump(&f);
    CHECK_INT(testdb_int(path, "SELECT next_attempt_at_ms FROM inbox"), 0);
    CHECK_INT(f.stub.nseen, 0);
    obx_inbox_reload(f.ib, &f.cfg);
    CHECK(run_until_cond(f.base, attempts_at_least, &one));
    CHECK_INT(f.stub.nseen, 1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox WHERE state = 'delivered'"), 1);
end:
    fixture_stop(&f);
    if (pull_ok)
        obx_config_release(&pull);
    TEST_END;
}

/* In serve the relay writes through the store thread: same outcome, committed there. */
static int
test_relay_through_store_thread(void)
{
    struct fixture f;
    struct obx_store *wst = NULL;
    struct obx_storeq *q = NULL;
    int one = 1;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "424247", NULL));
    CHECK_OK(obx_store_open(path, NULL, &wst));
    wst->clock = &f.fc.base;
    CHECK_OK(obx_storeq_new(f.base, wst, &q));
    CHECK_OK(obx_inbox_new(f.base, f.st, q, &f.cfg, &f.ib));
    CHECK(run_until_cond(f.base, attempts_at_least, &one));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox WHERE state = 'delivered' AND "
                               "last_http_status = 200"),
              1);
    CHECK_INT(f.stub.nseen, 1);
end:
    /* As serve stops: the relay's jobs still queued run, and their done callbacks, while the
     * inbox exists (ThreadSanitizer saw one read the freed inbox). */
    if (q)
        obx_storeq_drain(q);
    obx_inbox_free(f.ib);
    f.ib = NULL;
    if (q)
        obx_storeq_free(q);
    fixture_stop(&f);
    TEST_END;
}

/*
 * A failed allocation while relaying: the reply keeps its lease and no attempt is
 * counted; once the lease is over it is relayed again. Each step of obx_inbox_new fails
 * cleanly too.
 */
static int
test_allocation_failures(void)
{
    struct fixture f;
    int one = 1, failures = 0;
    enum obx_err err = OBX_ENOMEM;
    struct obx_inbox *ib = NULL;
    long long lease;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "424246", NULL));
    for (long n = 0; n < 100 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_inbox_new(f.base, f.st, NULL, &f.cfg, &ib);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK(ib == NULL);
            CHECK_INT(err, OBX_ENOMEM);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    f.ib = ib;
    /* Allocations fail from the n-th on, n growing, until one fails after the reply was
     * leased: nothing is sent, no attempt counted, and the lease stays. */
    lease = 0;
    for (long n = 0; n < 100 && lease <= T0; n++) {
        obx_inbox_notify(f.ib); /* look now, not after the poll interval */
        obx_mem_fail_after(n);
        run_pump(&f);
        obx_mem_fail_after(-1);
        CHECK_INT(f.stub.nseen, 0);
        CHECK_INT(testdb_int(path, "SELECT attempts FROM inbox"), 0);
        lease = testdb_int(path, "SELECT next_attempt_at_ms FROM inbox");
    }
    CHECK(lease > T0);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox WHERE state = 'pending'"), 1);
    f.fc.now_ms = lease;
    obx_inbox_notify(f.ib);
    CHECK(run_until_cond(f.base, attempts_at_least, &one));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM inbox WHERE state = 'delivered'"), 1);
    CHECK_INT(f.stub.nseen, 1);
end:
    obx_mem_fail_after(-1);
    fixture_stop(&f);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"2xx_marks_delivered", test_2xx_marks_delivered},
        {"5xx_retried_after_retry_after_then_failed",
         test_5xx_retried_after_retry_after_then_failed},
        {"connection_refused_is_retried", test_connection_refused_is_retried},
        {"unusable_id_failed_without_request", test_unusable_id_failed_without_request},
        {"pull_only_then_reload", test_pull_only_then_reload},
        {"relay_through_store_thread", test_relay_through_store_thread},
        {"allocation_failures", test_allocation_failures},
        {NULL, NULL},
    };

    setenv("NO_PROXY", "127.0.0.1", 1);
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, stderr);
    snprintf(path, sizeof path, "/tmp/obx_test_inbox_%d.db", (int)getpid());
    return test_run_table(tests, argc, argv);
}
