/*
 * Unit tests for lib/reconcile.c: stored webhook events (SPEC §4) become confirmations
 * (message_created/_updated carrying our key), inbox replies (a Partoo user's message in a
 * bidirectional custom channel, once per Partoo message id) or marked outcomes (unmatched,
 * ignored, unparsable), each event exactly once and in order; read-only channels, ids that do
 * not fit or are not [A-Za-z0-9_-], bodies that are not JSON objects; the backlog flag; max;
 * the inline path (obx_reconcile_events); and allocation failure (nothing half-applied: the
 * events stay unprocessed for the next run, no leak).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "mem.h"
#include "reconcile.h"
#include "store.h"
#include "store_tx.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

static struct obx_store *
fresh_store(void)
{
    return testdb_fresh_store(db_path, sizeof db_path, "reconcile", &fake, 1700000000000, 1000);
}

/* Enqueues ext on channel ch and takes it to accepted. */
static int
accepted(struct obx_store *st, const char *ch, const char *ext)
{
    struct obx_msg m = {ch, ext, "b", "conv", "hello", "Consumer", NULL, NULL, 0};
    struct obx_attempt a = {0};
    struct obx_claimed c;
    enum obx_enqueue_result r;
    enum obx_err res = OBX_OK;
    int got = 0;

    if (obx_enqueue(st, &m, &r, NULL) != OBX_OK ||
        obx_store_claim(st, 1, 60000, &c, &got) != OBX_OK || got != 1)
        return -1;
    a.message_id = c.id;
    a.lease_token = c.lease_token;
    a.http_status = 200;
    a.outcome = "accepted";
    a.next = OBX_NEXT_ACCEPTED;
    a.counted = 1;
    a.reason = "http 200";
    obx_store_claimed_release(&c);
    return obx_store_finish(st, &a, 1, &res) == OBX_OK && res == OBX_OK ? 0 : -1;
}

/* Stores one webhook event as the listener would (the body's bytes; a unique dedup key). */
static int64_t
store_event(struct obx_store *st, const char *body)
{
    static int seq;
    sqlite3_stmt *s = NULL;
    char key[32];
    int64_t id = -1;

    snprintf(key, sizeof key, "k%d", ++seq);
    if (sqlite3_prepare_v2(st->db->h,
                           "INSERT INTO webhook_events (body_sha256, received_at_ms,"
                           " body) VALUES (?1, 1, ?2)",
                           -1, &s, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 2, body, (int)strlen(body), SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(st->db->h);
    sqlite3_finalize(s);
    return id;
}

/* A text column of one row (into a static buffer; "(null)" for NULL, "(none)" for no row). */
static const char *
query_text(struct obx_store *st, const char *sql)
{
    static char out[512];
    sqlite3_stmt *s = NULL;

    snprintf(out, sizeof out, "(none)");
    if (sqlite3_prepare_v2(st->db->h, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        snprintf(out, sizeof out, "%s",
                 sqlite3_column_text(s, 0) ? (const char *)sqlite3_column_text(s, 0) : "(null)");
    sqlite3_finalize(s);
    return out;
}

static int64_t
query_int(struct obx_store *st, const char *sql)
{
    return strtoll(query_text(st, sql), NULL, 10);
}

/* The outcome stored for event id. */
static const char *
outcome(struct obx_store *st, int64_t id)
{
    char sql[128];

    snprintf(sql, sizeof sql, "SELECT outcome FROM webhook_events WHERE id = %lld", (long long)id);
    return query_text(st, sql);
}

#define CONFIRM(type, mid, ext, ch)                                                              \
    "{\"type\":\"" type "\",\"payload\":{\"message\":{\"id\":" mid ",\"status\":\"delivered\","  \
    "\"sender_type\":\"Consumer\",\"custom_channel\":{\"external_message_id\":\"" ext "\"}},"    \
    "\"conversation\":{\"id\":77,\"business\":{\"id\":\"biz\"},\"custom_channel\":{\"id\":\"" ch \
    "\",\"external_conversation_id\":\"conv\"}}}}"

#define REPLY(mid, ch, extra)                                                                   \
    "{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":" mid ",\"sender_type\":"   \
    "\"User\",\"sender_label\":\"Agent\",\"content_type\":\"TEXT\",\"content\":\"Hi back\","    \
    "\"date\":\"2024-01-01T00:00:00Z\"},\"conversation\":{\"id\":\"c-9\",\"business\":{\"id\":" \
    "12},\"custom_channel\":{\"id\":\"" ch "\",\"external_conversation_id\":\"conv\"" extra "}}}}"

static int
test_confirm_reply_and_outcomes(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_config cfg;
    struct obx_reconcile_result r;
    int64_t e[12];
    int backlog = -1;
    char long_id[400];

    CHECK_OK(obx_config_init(&cfg));
    CHECK_OK(obx_config_set(&cfg, "readonly_channels", "ro,other", OBX_SRC_FILE, NULL));
    CHECK(st);
    CHECK_OK(accepted(st, "ch", "m-1"));
    CHECK_OK(obx_reconcile_has_backlog(st, &backlog));
    CHECK_INT(backlog, 0);
    e[0] = store_event(st, CONFIRM("message_created", "9001", "m-1", "ch"));
    e[1] = store_event(st, CONFIRM("message_updated", "9002", "nope", "ch"));
    e[2] = store_event(st, REPLY("\"r-1\"", "ch", ""));
    e[3] = store_event(st, REPLY("\"r-1\"", "ch", ",\"x\":1")); /* the same reply again */
    e[4] = store_event(st, REPLY("\"r-2\"", "ro", ""));         /* read-only by config */
    e[5] = store_event(st, REPLY("\"r-3\"", "ch", ",\"is_readonly\":true"));
    e[6] = store_event(st, REPLY("\"bad id\\r\\nX-Injected: 1\"", "ch", ""));
    e[7] = store_event(st, "not json at all");
    e[8] = store_event(st, "[1,2,3]");
    e[9] = store_event(st, "{\"type\":\"conversation_updated\",\"payload\":{}}");
    memset(long_id, 'x', 300);
    long_id[300] = '\0';
    {
        char body[1024];
        snprintf(body, sizeof body, REPLY("\"%s\"", "ch", ""), long_id);
        e[10] = store_event(st, body);
    }
    e[11] = store_event(st, REPLY("1.5", "ch", "")); /* not an integer id: none */
    for (int i = 0; i < 12; i++)
        CHECK(e[i] > 0);
    CHECK_OK(obx_reconcile_has_backlog(st, &backlog));
    CHECK_INT(backlog, 1);

    CHECK_OK(obx_reconcile_run(st, &cfg, 100, &r));
    CHECK_INT(r.processed, 12);
    CHECK_INT(r.confirmed, 1);
    CHECK_INT(r.replies, 1);
    CHECK_INT(r.unmatched, 1);
    CHECK_INT(r.unparsable, 3);
    CHECK_INT(r.ignored, 5);
    CHECK_STR(outcome(st, e[0]), "confirmed");
    CHECK_STR(outcome(st, e[1]), "unmatched");
    CHECK_STR(outcome(st, e[2]), "reply");
    CHECK_STR(outcome(st, e[3]), "reply");
    CHECK_STR(outcome(st, e[4]), "ignored");
    CHECK_STR(outcome(st, e[5]), "ignored");
    CHECK_STR(outcome(st, e[6]), "unparsable");
    CHECK_STR(outcome(st, e[7]), "unparsable");
    CHECK_STR(outcome(st, e[8]), "unparsable");
    CHECK_STR(outcome(st, e[9]), "ignored");
    CHECK_STR(outcome(st, e[10]), "ignored");
    CHECK_STR(outcome(st, e[11]), "ignored");
    /* The confirmation: state, Partoo's id (a number kept as text) and status. */
    CHECK_STR(query_text(st, "SELECT state || ',' || partoo_message_id || ',' || partoo_status "
                             "FROM outbox WHERE external_message_id = 'm-1'"),
              "confirmed,9001,delivered");
    CHECK_STR(query_text(st, "SELECT reason FROM transitions WHERE to_state = 'confirmed'"),
              "confirmed by message_created (partoo message 9001, status delivered)");
    /* The event rows record type and Partoo id. */
    CHECK_STR(query_text(st, "SELECT event_type || ',' || partoo_message_id FROM webhook_events "
                             "WHERE id = 1"),
              "message_created,9001");
    CHECK_STR(query_text(st, "SELECT event_type FROM webhook_events WHERE id = 8"), "(null)");
    CHECK_INT(query_int(st, "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL"),
              0);
    /* One inbox row, with the fields of the event. */
    CHECK_INT(query_int(st, "SELECT count(*) FROM inbox"), 1);
    CHECK_STR(query_text(st, "SELECT partoo_message_id || '|' || channel_id || '|' || "
                             "external_conversation_id || '|' || partoo_conversation_id || '|' ||"
                             " business_id || '|' || sender_type || '|' || sender_label || '|' ||"
                             " content_type || '|' || content || '|' || message_date || '|' || "
                             "state FROM inbox"),
              "r-1|ch|conv|c-9|12|User|Agent|TEXT|Hi back|2024-01-01T00:00:00Z|pending");
    CHECK_OK(obx_reconcile_has_backlog(st, &backlog));
    CHECK_INT(backlog, 0);
    /* Nothing left: a run does nothing (r may be NULL). */
    CHECK_OK(obx_reconcile_run(st, &cfg, 100, &r));
    CHECK_INT(r.processed, 0);
    CHECK_OK(obx_reconcile_run(st, &cfg, 100, NULL));
end:
    obx_config_release(&cfg);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* max events per run, oldest first. */
static int
test_max_and_order(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_config cfg;
    struct obx_reconcile_result r;
    int64_t a, b, c;

    CHECK_OK(obx_config_init(&cfg));
    CHECK(st);
    CHECK_OK(accepted(st, "ch", "m-1"));
    /* The update first, then the creation: both confirm (the first one wins the state). */
    a = store_event(st, CONFIRM("message_updated", "\"p-1\"", "m-1", "ch"));
    b = store_event(st, CONFIRM("message_created", "\"p-1\"", "m-1", "ch"));
    c = store_event(st, REPLY("\"r-9\"", "ch", ""));
    CHECK_OK(obx_reconcile_run(st, &cfg, 2, &r));
    CHECK_INT(r.processed, 2);
    CHECK_STR(outcome(st, a), "confirmed");
    CHECK(strcmp(outcome(st, b), "(null)") != 0);
    CHECK_STR(outcome(st, c), "(null)");
    CHECK_OK(obx_reconcile_run(st, &cfg, 2, &r));
    CHECK_INT(r.processed, 1);
    CHECK_INT(r.replies, 1);
    CHECK_STR(outcome(st, c), "reply");
end:
    obx_config_release(&cfg);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* The inline path: events handed over inside the caller's transaction, results added up. */
static int
test_events_inline(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_config cfg;
    struct obx_reconcile_result r = {0};
    struct obx_reconcile_event ev[3];
    const char *b0 = REPLY("\"r-5\"", "ch", ""), *b1 = "{}";

    CHECK_OK(obx_config_init(&cfg));
    CHECK(st);
    ev[0].id = store_event(st, b0);
    ev[0].body = b0;
    ev[0].len = strlen(b0);
    ev[1].id = store_event(st, b1);
    ev[1].body = b1;
    ev[1].len = strlen(b1);
    ev[2].id = store_event(st, "x");
    ev[2].body = NULL; /* read as "" */
    ev[2].len = 0;
    r.processed = 10; /* added to */
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_reconcile_events(st, &cfg, ev, 3, &r));
    CHECK_OK(obx_store_tx_end(st, OBX_OK));
    CHECK_INT(r.processed, 13);
    CHECK_INT(r.replies, 1);
    CHECK_INT(r.ignored, 1);
    CHECK_INT(r.unparsable, 1);
    CHECK_STR(outcome(st, ev[0].id), "reply");
    CHECK_STR(outcome(st, ev[1].id), "ignored");
    CHECK_STR(outcome(st, ev[2].id), "unparsable");
    /* Rolled back by the caller: the events stay unprocessed. */
    {
        int64_t id = store_event(st, b1);
        struct obx_reconcile_event e1 = {id, b1, strlen(b1)};
        CHECK_OK(obx_store_tx_begin(st));
        CHECK_OK(obx_reconcile_events(st, &cfg, &e1, 1, &r));
        CHECK_INT(obx_store_tx_end(st, OBX_EINVAL), OBX_EINVAL);
        CHECK_STR(outcome(st, id), "(null)");
    }
end:
    obx_config_release(&cfg);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/*
 * Allocation n fails during a run: an error, and nothing applied (no event marked, no inbox
 * row, the message still accepted); the first run that gets through applies everything.
 */
static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_config cfg;
    struct obx_reconcile_result r;
    enum obx_err err = OBX_ENOMEM;
    int failures = 0;
    long n;

    CHECK_OK(obx_config_init(&cfg));
    CHECK(st);
    CHECK_OK(accepted(st, "ch", "m-1"));
    CHECK(store_event(st, CONFIRM("message_created", "9001", "m-1", "ch")) > 0);
    CHECK(store_event(st, REPLY("\"r-1\"", "ch", "")) > 0);
    CHECK(store_event(st, "{\"type\":\"other\"}") > 0);
    for (n = 0; n < 1000; n++) {
        memset(&r, 0, sizeof r);
        obx_mem_fail_after(n);
        err = obx_reconcile_run(st, &cfg, 10, &r);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break;
        failures++;
        CHECK_INT(r.processed, 0);
        CHECK_INT(query_int(st, "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS "
                                "NOT NULL"),
                  0);
        CHECK_INT(query_int(st, "SELECT count(*) FROM inbox"), 0);
        CHECK_STR(query_text(st, "SELECT state FROM outbox"), "accepted");
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    CHECK_INT(r.processed, 3);
    CHECK_INT(r.confirmed, 1);
    CHECK_INT(r.replies, 1);
    CHECK_INT(r.ignored, 1);
    CHECK_STR(query_text(st, "SELECT state FROM outbox"), "confirmed");
end:
    obx_mem_fail_after(-1);
    obx_config_release(&cfg);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static const struct test_case tests[] = {
    {"confirm_reply_and_outcomes", test_confirm_reply_and_outcomes},
    {"max_and_order", test_max_and_order},
    {"events_inline", test_events_inline},
    {"alloc_failure", test_alloc_failure},
    {NULL, NULL},
};

TEST_MAIN(tests)
