/* Unit tests of the store: enqueue and dedup, claim order, leases, transitions, purge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "query.h"
#include "store.h"

static char db_path[256];
static struct obx_fake_clock fake;

/* Opens a fresh database in /tmp with a fake clock at t = 1,000,000 ms. */
static struct obx_store *
fresh_store(void)
{
    struct obx_store *st = NULL;

    snprintf(db_path, sizeof db_path, "/tmp/obx_test_store_%d.db", (int)getpid());
    unlink(db_path);
    strcat(db_path, "-wal");
    unlink(db_path);
    db_path[strlen(db_path) - 4] = '\0';
    if (obx_store_open(db_path, NULL, &st) != OBX_OK)
        return NULL;
    obx_fake_clock_init(&fake, 1000000, 1000000);
    st->clock = &fake.base;
    return st;
}

static struct obx_msg
msg(const char *business, const char *conv, const char *id)
{
    struct obx_msg m = {"ch", id, business, conv, "hello", "Consumer", NULL, NULL, 0};
    return m;
}

static enum obx_err
put(struct obx_store *st, struct obx_msg m)
{
    enum obx_enqueue_result r;
    return obx_enqueue(st, &m, &r, NULL);
}

/* Claims up to max and returns the external ids joined with ',' in claim order. */
static int
claim_ids(struct obx_store *st, int max, char *out, size_t n, struct obx_claimed *keep)
{
    struct obx_claimed c[64];
    int got = 0;

    out[0] = '\0';
    if (obx_store_claim(st, max, 60000, c, &got) != OBX_OK)
        return -1;
    for (int i = 0; i < got; i++) {
        if (i)
            strncat(out, ",", n - strlen(out) - 1);
        strncat(out, c[i].msg.external_message_id, n - strlen(out) - 1);
        if (keep)
            keep[i] = c[i];
        else
            obx_claimed_release(&c[i]);
    }
    return got;
}

static enum obx_err
finish(struct obx_store *st, const struct obx_claimed *c, enum obx_next next, int status)
{
    struct obx_attempt a = {c->id, c->lease_token, 1000, 5, status, "test", NULL, NULL,
                            next, 1, 0, "test"};
    enum obx_err r = OBX_OK, err = obx_store_finish(st, &a, 1, &r);
    return err != OBX_OK ? err : r;
}

static int
test_enqueue_dedup_conflict(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_msg m = msg("b1", "c1", "m1");
    enum obx_enqueue_result r;
    int64_t id1 = 0, id2 = 0;

    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m, &r, &id1));
    CHECK_INT(r, OBX_ENQ_ACCEPTED);
    CHECK_OK(obx_enqueue(st, &m, &r, &id2));
    CHECK_INT(r, OBX_ENQ_DUPLICATE);
    CHECK_INT(id1, id2);
    m.content = "changed";
    CHECK_INT(obx_enqueue(st, &m, &r, NULL), OBX_ECONFLICT);
    m.content = "hello";
    m.priority = 5;
    CHECK_INT(obx_enqueue(st, &m, &r, NULL), OBX_ECONFLICT);
    m = msg("b1", "c1", "m2");
    m.sender_type = "Robot";
    CHECK_INT(obx_enqueue(st, &m, &r, NULL), OBX_EINVAL);
end:
    obx_store_free(st);
    TEST_END;
}

static int
test_batch_mixed(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_enq_item it[4];

    CHECK(st);
    memset(it, 0, sizeof it);
    it[0].msg = msg("b", "c", "x1");
    it[1].msg = msg("b", "c", "x2");
    it[1].msg.content = "";
    it[2].msg = msg("b", "c", "x1");
    it[3].msg = msg("b", "c", "x1");
    it[3].msg.content = "other";
    CHECK_OK(obx_store_enqueue_batch(st, it, 4, &lim));
    CHECK_INT(it[0].err, OBX_OK);
    CHECK_INT(it[0].result, OBX_ENQ_ACCEPTED);
    CHECK_INT(it[1].err, OBX_EINVAL);
    CHECK_STR(it[1].fe.field, "content");
    CHECK_INT(it[2].err, OBX_OK);
    CHECK_INT(it[2].result, OBX_ENQ_DUPLICATE);
    CHECK_INT(it[3].err, OBX_ECONFLICT);
end:
    obx_store_free(st);
    TEST_END;
}

/* Only the oldest unfinished message of a conversation is claimable. */
static int
test_claim_conversation_order(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64];
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "a1")));
    CHECK_OK(put(st, msg("b", "c1", "a2")));
    CHECK_OK(put(st, msg("b", "c2", "b1")));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, c), 2);
    CHECK_STR(ids, "a1,b1");
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 0);
    /* a1 accepted: a2 becomes the head. */
    CHECK_OK(finish(st, &c[0], OBX_NEXT_ACCEPTED, 200));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 1);
    CHECK_STR(ids, "a2");
    obx_claimed_release(&c[0]);
    obx_claimed_release(&c[1]);
end:
    obx_store_free(st);
    TEST_END;
}

/* A retried message waits for its due time; the conversation behind it waits too. */
static int
test_retry_backoff_blocks_conversation(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64];
    struct obx_attempt a;
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "a1")));
    CHECK_OK(put(st, msg("b", "c1", "a2")));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, c), 1);
    a = (struct obx_attempt){c[0].id, c[0].lease_token, 1000, 5, 500, "retry", NULL, NULL,
                             OBX_NEXT_RETRY, 1, fake.now_ms + 5000, "http 500"};
    CHECK_OK(obx_store_finish(st, &a, 1, NULL));
    obx_claimed_release(&c[0]);
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 0);
    fake.now_ms += 5000;
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 1);
    CHECK_STR(ids, "a1");
end:
    obx_store_free(st);
    TEST_END;
}

/* Businesses are served round-robin: a big backlog does not starve a small one. */
static int
test_claim_round_robin(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[512], id[16];

    CHECK(st);
    for (int i = 0; i < 50; i++) {
        snprintf(id, sizeof id, "big%02d", i);
        CHECK_OK(put(st, msg("big", id, id)));
    }
    CHECK_OK(put(st, msg("small", "s", "small1")));
    CHECK_INT(claim_ids(st, 3, ids, sizeof ids, NULL), 3);
    CHECK_STR(ids, "big00,small1,big01");
end:
    obx_store_free(st);
    TEST_END;
}

static int
test_claim_priority(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_msg m;
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "low")));
    m = msg("b", "c2", "high");
    m.priority = 10;
    CHECK_OK(put(st, m));
    /* Priority never reorders a conversation: c1's second message stays behind "low". */
    m = msg("b", "c1", "high-but-second");
    m.priority = 20;
    CHECK_OK(put(st, m));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 2);
    CHECK_STR(ids, "high,low");
end:
    obx_store_free(st);
    TEST_END;
}

static int
test_lease_expiry_and_stale_worker(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64], c2[64];
    int64_t n = 0;
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "a1")));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, c), 1);
    CHECK_OK(obx_store_recover(st, 0, &n));
    CHECK_INT(n, 0); /* lease still valid */
    fake.now_ms += 60001;
    CHECK_OK(obx_store_recover(st, 0, &n));
    CHECK_INT(n, 1);
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, c2), 1);
    /* The first worker's lease is gone: its result must not land. */
    CHECK_INT(finish(st, &c[0], OBX_NEXT_ACCEPTED, 200), OBX_ECONFLICT);
    CHECK_OK(finish(st, &c2[0], OBX_NEXT_ACCEPTED, 200));
    obx_claimed_release(&c[0]);
    obx_claimed_release(&c2[0]);
end:
    obx_store_free(st);
    TEST_END;
}

struct collect {
    char buf[1024];
    int n;
};

static int
on_transition(void *ctx, const struct obx_transition_row *t)
{
    struct collect *c = ctx;
    size_t len = strlen(c->buf);
    snprintf(c->buf + len, sizeof c->buf - len, "%s%s>%s", c->n++ ? "," : "", t->from_state,
             t->to_state);
    return 0;
}

static int
on_attempt(void *ctx, const struct obx_attempt_row *a)
{
    (void)a;
    ((struct collect *)ctx)->n += 100;
    return 0;
}

static int
test_transitions_recorded_and_actions(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64];
    struct collect col = {{0}, 0};
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "a1")));
    CHECK_OK(put(st, msg("b", "c2", "a2")));
    CHECK_INT(claim_ids(st, 1, ids, sizeof ids, c), 1);
    CHECK_OK(finish(st, &c[0], OBX_NEXT_FAILED, 400));
    CHECK_INT(obx_store_cancel(st, "ch", "a1", NULL), OBX_ECONFLICT);
    CHECK_INT(obx_store_cancel(st, "ch", "nope", NULL), OBX_ENOTFOUND);
    CHECK_OK(obx_store_retry(st, "ch", "a1", NULL));
    CHECK_INT(obx_store_retry(st, "ch", "a1", NULL), OBX_ECONFLICT);
    CHECK_OK(obx_store_cancel(st, "ch", "a1", NULL));
    CHECK_OK(obx_query_get(st, "ch", "a1", NULL, on_transition, on_attempt, &col));
    CHECK_STR(col.buf, "queued>sending,sending>failed,failed>queued,queued>cancelled");
    CHECK_INT(col.n, 4 + 100);
    obx_claimed_release(&c[0]);
end:
    obx_store_free(st);
    TEST_END;
}

static int
never_readonly(void *ctx, const char *ch)
{
    (void)ctx;
    (void)ch;
    return 0;
}

static int
test_purge_terminal_only(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64];
    struct obx_channel_stats *s = NULL;
    struct obx_purge_opts po = {1, NULL, NULL, NULL};
    size_t n = 0;
    int64_t purged = 0;
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "q")));      /* stays queued */
    CHECK_OK(put(st, msg("b", "c2", "acc")));    /* accepted, bidirectional: kept */
    CHECK_OK(put(st, msg("b", "c3", "can")));    /* cancelled: purged */
    CHECK_INT(claim_ids(st, 1, ids, sizeof ids, c), 1); /* claims "q" (c1 first) */
    CHECK_STR(ids, "q");
    CHECK_OK(finish(st, &c[0], OBX_NEXT_RETRY, 500));
    obx_claimed_release(&c[0]);
    fake.now_ms += 1;
    CHECK_INT(claim_ids(st, 1, ids, sizeof ids, c), 1);
    CHECK_OK(finish(st, &c[0], OBX_NEXT_ACCEPTED, 200));
    obx_claimed_release(&c[0]);
    CHECK_OK(obx_store_cancel(st, "ch", "can", NULL));
    fake.now_ms += 10000;
    po.is_readonly = never_readonly;
    CHECK_OK(obx_store_purge(st, fake.now_ms, &po, &purged));
    CHECK_INT(purged, 1);
    CHECK_OK(obx_query_stats(st, &s, &n));
    CHECK_INT(n, 1);
    CHECK_INT(s[0].counts[OBX_ST_QUEUED], 1);
    CHECK_INT(s[0].counts[OBX_ST_ACCEPTED], 1);
    CHECK_INT(s[0].counts[OBX_ST_CANCELLED], 0);
end:
    free(s);
    obx_store_free(st);
    TEST_END;
}

/* The first column of the first row of sql as text, into out[n] ("" when none). */
static const char *
text_of(struct obx_store *st, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *s = NULL;

    out[0] = '\0';
    if (sqlite3_prepare_v2(st->db->h, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
}

/*
 * Retention of what Partoo sent: old interpreted events go, unless a reply still to
 * deliver (pending) or given up (failed) needs them; delivered and acknowledged
 * replies go; anything younger than the cut stays, and so does an event not yet
 * interpreted.
 */
static int
test_purge_events_and_replies(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    int64_t events = -1, replies = -1;
    char got[128];

    CHECK(st);
    CHECK_INT(sqlite3_exec(st->db->h,
        "INSERT INTO webhook_events (id, body_sha256, received_at_ms, body, processed_at_ms) VALUES"
        " (1, 'h1', 100, x'7b7d', 101),"    /* old, interpreted: goes */
        " (2, 'h2', 200, x'7b7d', NULL),"   /* old, not interpreted: stays */
        " (3, 'h3', 300, x'7b7d', 301),"    /* old, its reply delivered long ago: both go */
        " (4, 'h4', 400, x'7b7d', 401),"    /* old, its reply pending: stays */
        " (5, 'h5', 500, x'7b7d', 501),"    /* old, its reply failed: stays */
        " (6, 'h6', 600, x'7b7d', 601),"    /* old, reply acknowledged recently: stays */
        " (7, 'h7', 5000, x'7b7d', 5001);"  /* young: stays */
        "INSERT INTO inbox (partoo_message_id, event_id, channel_id, received_at_ms, state,"
        " delivered_at_ms, acked_at_ms) VALUES"
        " ('p3', 3, 'ch', 300, 'delivered', 350, NULL),"
        " ('p4', 4, 'ch', 400, 'pending', NULL, NULL),"
        " ('p5', 5, 'ch', 500, 'failed', NULL, NULL),"
        " ('p6', 6, 'ch', 600, 'acked', NULL, 4500);",
        NULL, NULL, NULL), SQLITE_OK);
    CHECK_OK(obx_store_purge_events(st, 1000, &events, &replies));
    CHECK_INT(replies, 1);
    CHECK_INT(events, 2);
    CHECK_STR(text_of(st, "SELECT group_concat(id) FROM (SELECT id FROM webhook_events ORDER BY id)",
                      got, sizeof got),
              "2,4,5,6,7");
    CHECK_STR(text_of(st, "SELECT group_concat(partoo_message_id) FROM"
                          " (SELECT partoo_message_id FROM inbox ORDER BY id)", got, sizeof got),
              "p4,p5,p6");
    /* Nothing left to do: a second run removes nothing. */
    CHECK_OK(obx_store_purge_events(st, 1000, &events, &replies));
    CHECK_INT(events + replies, 0);
end:
    obx_store_free(st);
    TEST_END;
}

/* A producer's own transaction: the message commits or rolls back with it. */
static int
test_enqueue_in_caller_transaction(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_msg m = msg("b", "c", "tx1");
    enum obx_enqueue_result r;
    sqlite3 *h = NULL;
    char ids[64];

    CHECK(st);
    CHECK_INT(sqlite3_open(db_path, &h), SQLITE_OK);
    CHECK_INT(sqlite3_exec(h, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    CHECK_OK(obx_enqueue_sqlite((struct sqlite3 *)h, &m, &r, NULL));
    CHECK_INT(sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 0);
    CHECK_INT(sqlite3_exec(h, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    CHECK_OK(obx_enqueue_sqlite((struct sqlite3 *)h, &m, &r, NULL));
    CHECK_INT(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 1);
end:
    sqlite3_close(h);
    obx_store_free(st);
    TEST_END;
}

/* Rows inserted through the SQL contract get their head flag from the trigger. */
static int
test_sql_contract_insert(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[64];

    CHECK(st);
    CHECK_INT(sqlite3_exec(st->db->h,
                           "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                           " external_conversation_id, content, sender_type) VALUES"
                           " ('ch','s1','b','c','hi','User'), ('ch','s2','b','c','hi','User')",
                           NULL, NULL, NULL),
              SQLITE_OK);
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 1);
    CHECK_STR(ids, "s1");
    CHECK(sqlite3_exec(st->db->h,
                       "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                       " external_conversation_id, content, sender_type) VALUES"
                       " ('ch','s3','b','c','hi','Bot')",
                       NULL, NULL, NULL) == SQLITE_CONSTRAINT_CHECK);
end:
    obx_store_free(st);
    TEST_END;
}

static int
explain_cb(void *ctx, int n, char **vals, char **cols)
{
    (void)cols;
    if (n >= 4 && vals[3]) {
        strncat(ctx, vals[3], 1023 - strlen(ctx));
        strncat(ctx, "\n", 1023 - strlen(ctx));
    }
    return 0;
}

/*
 * The claim runs in the write transaction, so each of its queries (the real SQL,
 * exported by the store) must be a short range scan of the partial index
 * outbox_claim, never a walk over every queued row, and the head check of an insert
 * must use outbox_conversation. Without ANALYZE the plan depends only on the schema,
 * so an empty database shows it. Rows are added first to make sure nothing changes
 * with data.
 */
static int
test_claim_query_plan(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char plan[1024], sql[1024], id[16];

    CHECK(st);
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "p%d", i);
        CHECK_OK(put(st, msg(i % 2 ? "b1" : "b2", id, id)));
    }
    for (int i = 0; obx_store_claim_sql[i]; i++) {
        plan[0] = '\0';
        snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", obx_store_claim_sql[i]);
        CHECK_INT(sqlite3_exec(st->db->h, sql, explain_cb, plan, NULL), SQLITE_OK);
        if (!strstr(plan, "outbox_claim") || strstr(plan, "TEMP B-TREE") ||
            strstr(plan, "SCAN outbox"))
            fprintf(stderr, "  query %d: plan \"%s\"\n", i, plan);
        CHECK(strstr(plan, "outbox_claim"));
        CHECK(!strstr(plan, "TEMP B-TREE"));
        CHECK(!strstr(plan, "SCAN outbox"));
    }
    plan[0] = '\0';
    CHECK_INT(sqlite3_exec(st->db->h,
                           "EXPLAIN QUERY PLAN SELECT NOT EXISTS (SELECT 1 FROM outbox WHERE"
                           " channel_id = ?1 AND external_conversation_id = ?4"
                           " AND state IN ('queued', 'sending'))",
                           explain_cb, plan, NULL),
              SQLITE_OK);
    CHECK(strstr(plan, "outbox_conversation"));
end:
    obx_store_free(st);
    TEST_END;
}

static const struct test_case tests[] = {
    {"enqueue_dedup_conflict", test_enqueue_dedup_conflict},
    {"batch_mixed", test_batch_mixed},
    {"claim_conversation_order", test_claim_conversation_order},
    {"retry_backoff_blocks_conversation", test_retry_backoff_blocks_conversation},
    {"claim_round_robin", test_claim_round_robin},
    {"claim_priority", test_claim_priority},
    {"lease_expiry_and_stale_worker", test_lease_expiry_and_stale_worker},
    {"transitions_recorded_and_actions", test_transitions_recorded_and_actions},
    {"purge_terminal_only", test_purge_terminal_only},
    {"purge_events_and_replies", test_purge_events_and_replies},
    {"enqueue_in_caller_transaction", test_enqueue_in_caller_transaction},
    {"sql_contract_insert", test_sql_contract_insert},
    {"claim_query_plan", test_claim_query_plan},
    {NULL, NULL},
};

TEST_MAIN(tests)
