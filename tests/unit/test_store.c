/* Unit tests of the store: enqueue and dedup, claim order, leases, transitions, purge. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "check.h"
#include "migrate.h"
#include "query.h"
#include "retention.h"
#include "store.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

/* Opens a fresh database in /tmp with a fake clock at t = 1,000,000 ms. */
static struct obx_store *
fresh_store(void)
{
    return testdb_fresh_store(db_path, sizeof db_path, "store", &fake, 1000000, 1000000);
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
            obx_store_claimed_release(&c[i]);
    }
    return got;
}

static enum obx_err
finish(struct obx_store *st, const struct obx_claimed *c, enum obx_next next, int status)
{
    struct obx_attempt a = {c->id, c->lease_token, 1000, 5, status, "test",
                            NULL,  NULL,           next, 1, 0,      "test"};
    enum obx_err r = OBX_OK, err = obx_store_finish(st, &a, 1, &r);
    return err != OBX_OK ? err : r;
}

/* How many rows sql returns (-1 when it does not prepare). */
static int
count_rows(struct obx_store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int n = 0;

    if (sqlite3_prepare_v2(st->db->h, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    while (sqlite3_step(s) == SQLITE_ROW)
        n++;
    sqlite3_finalize(s);
    return n;
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
    obx_store_claimed_release(&c[0]);
    obx_store_claimed_release(&c[1]);
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
    a = (struct obx_attempt){
        c[0].id, c[0].lease_token,   1000,      5, 500, "retry", NULL, NULL, OBX_NEXT_RETRY,
        1,       fake.now_ms + 5000, "http 500"};
    CHECK_OK(obx_store_finish(st, &a, 1, NULL));
    obx_store_claimed_release(&c[0]);
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
    obx_store_claimed_release(&c[0]);
    obx_store_claimed_release(&c2[0]);
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
    obx_store_claimed_release(&c[0]);
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

/* A whole retention pass in steps of `batch` rows (no time bound); counts in *out. */
static enum obx_err
retain(struct obx_store *st, int64_t before_ms, int64_t hashes_before_ms, int include_failed,
       int (*ro)(void *, const char *), int batch, struct obx_retention_counts *out)
{
    struct obx_retention_opts o = {before_ms, hashes_before_ms, include_failed, ro, NULL, batch,
                                   -1};
    struct obx_retention r;
    enum obx_err err = OBX_OK;
    int done = 0;

    obx_retention_init(&r, &o);
    while (!done && err == OBX_OK)
        err = obx_retention_step(st, &r, &done);
    *out = *obx_retention_counts(&r);
    return err;
}

static int
test_purge_terminal_only(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64];
    struct obx_channel_stats *s = NULL;
    struct obx_retention_counts rc;
    size_t n = 0;
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c1", "q")));             /* stays queued */
    CHECK_OK(put(st, msg("b", "c2", "acc")));           /* accepted, bidirectional: kept */
    CHECK_OK(put(st, msg("b", "c3", "can")));           /* cancelled: purged */
    CHECK_INT(claim_ids(st, 1, ids, sizeof ids, c), 1); /* claims "q" (c1 first) */
    CHECK_STR(ids, "q");
    CHECK_OK(finish(st, &c[0], OBX_NEXT_RETRY, 500));
    obx_store_claimed_release(&c[0]);
    fake.now_ms += 1;
    CHECK_INT(claim_ids(st, 1, ids, sizeof ids, c), 1);
    CHECK_OK(finish(st, &c[0], OBX_NEXT_ACCEPTED, 200));
    obx_store_claimed_release(&c[0]);
    CHECK_OK(obx_store_cancel(st, "ch", "can", NULL));
    fake.now_ms += 10000;
    CHECK_INT(count_rows(st, "SELECT 1 FROM conversations"), 3);
    CHECK_OK(retain(st, fake.now_ms, 0, 1, never_readonly, 0, &rc));
    CHECK_INT(rc.messages, 1);
    /* c3's only message is gone, and so is c3; c1 and c2 keep their tails. */
    CHECK_INT(count_rows(st, "SELECT 1 FROM conversations WHERE external_conversation_id"
                             " IN ('c1', 'c2')"),
              2);
    CHECK_INT(count_rows(st, "SELECT 1 FROM conversations"), 2);
    CHECK_OK(put(st, msg("b", "c3", "again")));
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox WHERE external_message_id = 'again'"
                             " AND head = 1"),
              1);
    CHECK_OK(obx_query_stats(st, &s, &n));
    CHECK_INT(n, 1);
    CHECK_INT(s[0].counts[OBX_ST_QUEUED], 2);
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
    struct obx_retention_counts rc;
    char got[128];

    CHECK(st);
    CHECK_INT(
        sqlite3_exec(
            st->db->h,
            "INSERT INTO webhook_events (id, body_sha256, received_at_ms, body, processed_at_ms) VALUES"
            " (1, 'h1', 100, x'7b7d', 101),"   /* old, interpreted: goes */
            " (2, 'h2', 200, x'7b7d', NULL),"  /* old, not interpreted: stays */
            " (3, 'h3', 300, x'7b7d', 301),"   /* old, its reply delivered long ago: both go */
            " (4, 'h4', 400, x'7b7d', 401),"   /* old, its reply pending: stays */
            " (5, 'h5', 500, x'7b7d', 501),"   /* old, its reply failed: stays */
            " (6, 'h6', 600, x'7b7d', 601),"   /* old, reply acknowledged recently: stays */
            " (7, 'h7', 5000, x'7b7d', 5001);" /* young: stays */
            "INSERT INTO inbox (partoo_message_id, event_id, channel_id, received_at_ms, state,"
            " delivered_at_ms, acked_at_ms) VALUES"
            " ('p3', 3, 'ch', 300, 'delivered', 350, NULL),"
            " ('p4', 4, 'ch', 400, 'pending', NULL, NULL),"
            " ('p5', 5, 'ch', 500, 'failed', NULL, NULL),"
            " ('p6', 6, 'ch', 600, 'acked', NULL, 4500);",
            NULL, NULL, NULL),
        SQLITE_OK);
    /* Bodies go at 1000; hashes stay until 250 (the replay guard outlives the bodies). */
    CHECK_OK(retain(st, 1000, 250, 0, NULL, 0, &rc));
    CHECK_INT(rc.replies, 1);
    CHECK_INT(rc.event_bodies, 2);
    CHECK_INT(rc.event_hashes, 1);
    CHECK_STR(text_of(st,
                      "SELECT group_concat(id) FROM (SELECT id FROM webhook_events ORDER BY id)",
                      got, sizeof got),
              "2,3,4,5,6,7");
    CHECK_STR(text_of(st,
                      "SELECT group_concat(id || ':' || length(body)) FROM"
                      " (SELECT id, body FROM webhook_events ORDER BY id)",
                      got, sizeof got),
              "2:2,3:0,4:2,5:2,6:2,7:2");
    CHECK_STR(text_of(st,
                      "SELECT group_concat(partoo_message_id) FROM"
                      " (SELECT partoo_message_id FROM inbox ORDER BY id)",
                      got, sizeof got),
              "p4,p5,p6");
    /* A replayed body of event 3 is still a duplicate (its hash is kept). */
    CHECK_INT(
        sqlite3_exec(
            st->db->h,
            "INSERT INTO webhook_events (body_sha256, received_at_ms, body) VALUES ('h3', 6000, x'7b7d')"
            " ON CONFLICT (body_sha256) DO NOTHING",
            NULL, NULL, NULL),
        SQLITE_OK);
    CHECK_INT(sqlite3_changes(st->db->h), 0);
    /* Later, the hash goes too. */
    CHECK_OK(retain(st, 1000, 1000, 0, NULL, 0, &rc));
    CHECK_INT(rc.replies + rc.event_bodies, 0);
    CHECK_INT(rc.event_hashes, 1);
    CHECK_STR(text_of(st,
                      "SELECT group_concat(id) FROM (SELECT id FROM webhook_events ORDER BY id)",
                      got, sizeof got),
              "2,4,5,6,7");
    /* Nothing left to do: a second run removes nothing. */
    CHECK_OK(retain(st, 1000, 1000, 0, NULL, 0, &rc));
    CHECK_INT(rc.replies + rc.event_bodies + rc.event_hashes, 0);
end:
    obx_store_free(st);
    TEST_END;
}

/* 200 messages, 150 of them cancelled: 150 transitions, the events the audit chain covers. */
static int
fill_for_retention(struct obx_store *st)
{
    char id[32], conv[32];
    int64_t sealed = 0;

    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "m%d", i);
        snprintf(conv, sizeof conv, "c%d", i % 40);
        if (put(st, msg("b", conv, id)) != OBX_OK)
            return -1;
    }
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "m%d", i);
        if (i % 4 != 0 && obx_store_cancel(st, "ch", id, NULL) != OBX_OK)
            return -1;
    }
    return obx_audit_seal(st, 7, &sealed) == OBX_OK ? 0 : -1; /* some sealed, most not */
}

/*
 * A pass in small steps (7 rows each) removes exactly what one big step removes, one
 * short transaction at a time, and leaves a chain that verifies.
 */
static int
test_retention_in_batches(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_retention_counts small, big;
    struct obx_audit_report rep;
    int audit_before;

    CHECK(st);
    CHECK_INT(fill_for_retention(st), 0);
    audit_before = count_rows(st, "SELECT 1 FROM transitions UNION ALL SELECT 1 FROM attempts");
    CHECK(audit_before >= 150);
    fake.now_ms += 10;
    CHECK_OK(retain(st, fake.now_ms, 0, 1, NULL, 7, &small));
    CHECK_INT(small.messages, 150);
    CHECK(small.steps >= 150 / 7 + audit_before / 7);
    CHECK_INT(small.audit_rows, audit_before);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox WHERE state = 'queued'"), 50);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 50);
    CHECK_INT(count_rows(st, "SELECT 1 FROM transitions WHERE message_id NOT IN"
                             " (SELECT id FROM outbox)"),
              0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM transitions UNION ALL SELECT 1 FROM attempts"), 0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM audit_messages"), 0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM audit_checkpoints"), 1);
    CHECK_OK(obx_audit_verify(st, &rep));
    CHECK_INT(rep.first_bad_id, 0);
    obx_store_free(st);

    /* The same database, one step per phase. */
    st = fresh_store();
    CHECK(st);
    CHECK_INT(fill_for_retention(st), 0);
    fake.now_ms += 10;
    CHECK_OK(retain(st, fake.now_ms, 0, 1, NULL, 1000000, &big));
    CHECK_INT(big.messages, small.messages);
    CHECK_INT(big.audit_rows, small.audit_rows);
    CHECK(big.steps < 12);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 50);
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * An audit prune interrupted after its checkpoint (rows behind it still there) is
 * finished by the next pass without a second checkpoint, and verify passes meanwhile.
 */
static int
test_retention_resumes_audit_prune(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_retention_counts rc;
    struct obx_audit_report rep;
    struct obx_audit_prune pp = {0};
    int64_t removed = 0;
    int more = 1;

    CHECK(st);
    CHECK_INT(fill_for_retention(st), 0);
    CHECK_OK(obx_audit_seal(st, 1000000, &removed));
    /* The cancelled messages are purged: the prune may then delete their events. */
    CHECK_OK(obx_db_exec(st->db, "DELETE FROM outbox WHERE state = 'cancelled'"));
    fake.now_ms += 10;
    while (more)
        CHECK_OK(obx_audit_prune_scan(st, fake.now_ms, 7, &pp, &more));
    /* The prefix ends at the last seal (the migration's base row has no hash). */
    CHECK_INT(pp.upto_id, count_rows(st, "SELECT 1 FROM audit_seals WHERE hash <> ''"));
    CHECK_OK(obx_audit_prune_batch(st, &pp, 5, &removed, &more));
    CHECK_INT(removed, 5);
    CHECK(more);
    CHECK_OK(obx_audit_verify(st, &rep));
    CHECK_INT(rep.first_bad_id, 0);
    CHECK_INT(rep.checked, 0); /* every row is behind the checkpoint */
    CHECK_OK(retain(st, fake.now_ms, 0, 1, NULL, 0, &rc));
    CHECK_INT(count_rows(st, "SELECT 1 FROM transitions UNION ALL SELECT 1 FROM attempts"), 0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM audit_checkpoints"), 1);
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

/* Whether EXPLAIN QUERY PLAN of sql mentions what. */
static int
plan_uses(struct obx_store *st, const char *sql, const char *what)
{
    char plan[1024] = "", q[1024];

    snprintf(q, sizeof q, "EXPLAIN QUERY PLAN %s", sql);
    if (sqlite3_exec(st->db->h, q, explain_cb, plan, NULL) != SQLITE_OK)
        return 0;
    if (!strstr(plan, what))
        fprintf(stderr, "  plan of %s: %s\n", sql, plan);
    return strstr(plan, what) != NULL;
}

/*
 * The claim runs in the write transaction, so each of its queries (the real SQL,
 * exported by the store) must be a short range scan of the partial index
 * outbox_claim, never a walk over every queued row; the tail lookup of an insert and
 * the successor lookup of a promotion are probes too. Without ANALYZE the plan depends only on the
 * schema, so an empty database shows it. Rows are added first to make sure nothing changes with
 * data.
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
    /* Enqueue reads a conversation's tail by key, then the tail row by id. */
    plan[0] = '\0';
    CHECK_INT(sqlite3_exec(st->db->h,
                           "EXPLAIN QUERY PLAN SELECT t.id FROM conversations c"
                           " JOIN outbox t ON t.id = c.tail_id AND t.channel_id = c.channel_id"
                           "  AND t.external_conversation_id = c.external_conversation_id"
                           " WHERE c.channel_id = 'a' AND c.external_conversation_id = 'b'"
                           "  AND t.state IN ('queued', 'sending')",
                           explain_cb, plan, NULL),
              SQLITE_OK);
    CHECK(strstr(plan, "sqlite_autoindex_conversations_1"));
    CHECK(strstr(plan, "INTEGER PRIMARY KEY"));
    CHECK(!strstr(plan, "SCAN"));
    /* The successor found by the promotion trigger: a probe of outbox_next. */
    plan[0] = '\0';
    CHECK_INT(sqlite3_exec(st->db->h,
                           "EXPLAIN QUERY PLAN UPDATE outbox SET head = 1 WHERE prev_id = 5"
                           " AND state IN ('queued', 'sending') AND channel_id = 'a'"
                           " AND external_conversation_id = 'b'",
                           explain_cb, plan, NULL),
              SQLITE_OK);
    CHECK(strstr(plan, "outbox_next"));
    /* Confirmation timeouts (every second in serve): the partial index of messages that
     * wait for a confirmation, never every accepted message (outbox_state). */
    for (int i = 0; obx_store_confirm_sql[i]; i++) {
        plan[0] = '\0';
        snprintf(sql, sizeof sql, "EXPLAIN QUERY PLAN %s", obx_store_confirm_sql[i]);
        CHECK_INT(sqlite3_exec(st->db->h, sql, explain_cb, plan, NULL), SQLITE_OK);
        if (!strstr(plan, "outbox_confirm_due"))
            fprintf(stderr, "  confirm query %d: plan \"%s\"\n", i, plan);
        CHECK(strstr(plan, "outbox_confirm_due"));
    }
end:
    obx_store_free(st);
    TEST_END;
}

/* ---- conversation chain (0005) -------------------------------------------------------- */

/*
 * Claims and accepts until nothing is claimable; appends the external ids in the order they
 * were claimed to out (comma-separated). Returns how many, or -1 (also when one claim held
 * two messages of the same conversation).
 */
static int
drain_all(struct obx_store *st, char *out, size_t n)
{
    struct obx_claimed c[64];
    char ids[4096];
    int got, total = 0;

    out[0] = '\0';
    while ((got = claim_ids(st, 64, ids, sizeof ids, c)) > 0) {
        /* Never two messages of one conversation in flight (SPEC §3). */
        for (int i = 0; i < got; i++)
            for (int j = 0; j < i; j++)
                if (strcmp(c[i].msg.external_conversation_id, c[j].msg.external_conversation_id) ==
                    0) {
                    fprintf(stderr, "  %s and %s claimed together\n", c[i].msg.external_message_id,
                            c[j].msg.external_message_id);
                    got = -1;
                }
        for (int i = 0; i < (got < 0 ? 0 : got); i++) {
            enum obx_err err = finish(st, &c[i], OBX_NEXT_ACCEPTED, 200);
            obx_store_claimed_release(&c[i]);
            if (err != OBX_OK)
                return -1;
        }
        if (got < 0)
            break;
        if (out[0])
            strncat(out, ",", n - strlen(out) - 1);
        strncat(out, ids, n - strlen(out) - 1);
        total += got;
    }
    return got < 0 ? -1 : total;
}

static int
sql_ok(struct obx_store *st, const char *sql)
{
    return sqlite3_exec(st->db->h, sql, NULL, NULL, NULL) == SQLITE_OK;
}

static enum obx_err
cancel(struct obx_store *st, const char *id)
{
    return obx_store_cancel(st, "ch", id, "test");
}

/*
 * A bulk batch (large enough to skip the CHECK constraints) over several conversations,
 * with invalid items and duplicates among them: every conversation is delivered in enqueue
 * order, each message once, and the constraints are back on afterwards.
 */
static int
test_chain_bulk_batch_order(void)
{
    TEST_BEGIN;
    enum { N = 700, CONVS = 7 };
    struct obx_store *st = fresh_store();
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_enq_item *it = calloc(N, sizeof *it);
    char(*keys)[32] = calloc(N, 32), (*convs)[16] = calloc(CONVS, 16);
    char *order = calloc(1, 16 * N);
    int last_seq[CONVS], accepted = 0;

    CHECK(st && it && keys && convs && order);
    for (int c = 0; c < CONVS; c++)
        snprintf(convs[c], 16, "conv-%d", c);
    for (int i = 0; i < N; i++) {
        /* every 50th item repeats an earlier key (duplicate); every 97th is invalid */
        int seq = i % 50 == 49 ? i - 7 : i;
        snprintf(keys[i], 32, "%d-%04d", seq % CONVS, seq);
        it[i].msg = msg("b", convs[seq % CONVS], keys[i]);
        if (i % 97 == 96)
            it[i].msg.sender_type = "Robot";
    }
    CHECK_OK(obx_store_enqueue_batch(st, it, N, &lim));
    for (int i = 0; i < N; i++) {
        if (i % 97 == 96)
            CHECK_INT(it[i].err, OBX_EINVAL);
        else if (i % 50 == 49)
            CHECK_INT(it[i].result, OBX_ENQ_DUPLICATE);
        else
            accepted++;
    }
    CHECK_INT(drain_all(st, order, 16 * N), accepted);
    for (int c = 0; c < CONVS; c++)
        last_seq[c] = -1;
    for (char *tok = strtok(order, ","); tok; tok = strtok(NULL, ",")) {
        int c = atoi(tok), seq = atoi(strchr(tok, '-') + 1);
        CHECK(seq > last_seq[c]);
        last_seq[c] = seq;
    }
    /* The batch turned the CHECK constraints off for itself only. */
    CHECK(!sql_ok(st, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                      " external_conversation_id, content, sender_type)"
                      " VALUES ('ch', 'bad', 'b', 'c', 'x', 'Robot')"));
end:
    free(it);
    free(keys);
    free(convs);
    free(order);
    obx_store_free(st);
    TEST_END;
}

/* Cancelling from the middle or the end of a conversation keeps the rest in order. */
static int
test_chain_cancel_middle_and_tail(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c", "a1")));
    CHECK_OK(put(st, msg("b", "c", "a2")));
    CHECK_OK(put(st, msg("b", "c", "a3")));
    CHECK_OK(put(st, msg("b", "c", "a4")));
    CHECK_OK(cancel(st, "a2"));
    CHECK_OK(cancel(st, "a4"));
    CHECK_OK(put(st, msg("b", "c", "a5")));
    CHECK_INT(drain_all(st, ids, sizeof ids), 3);
    CHECK_STR(ids, "a1,a3,a5");
    /* Cancelling the head lets the next one go. */
    CHECK_OK(put(st, msg("b", "c", "a6")));
    CHECK_OK(put(st, msg("b", "c", "a7")));
    CHECK_OK(cancel(st, "a6"));
    CHECK_INT(drain_all(st, ids, sizeof ids), 1);
    CHECK_STR(ids, "a7");
end:
    obx_store_free(st);
    TEST_END;
}

/* A queued message confirmed by a webhook (Partoo has it) leaves the line. */
static int
test_chain_confirmed_while_queued(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c", "a1")));
    CHECK_OK(put(st, msg("b", "c", "a2")));
    CHECK_OK(put(st, msg("b", "c", "a3")));
    CHECK_OK(obx_store_confirm(st, "ch", "a2", "p-2", "Success", "webhook"));
    CHECK_OK(obx_store_confirm(st, "ch", "a3", "p-3", "Success", "webhook"));
    CHECK_OK(put(st, msg("b", "c", "a4")));
    CHECK_INT(drain_all(st, ids, sizeof ids), 2);
    CHECK_STR(ids, "a1,a4");
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * A retried message goes to the back of its conversation: it waits while another message
 * of the conversation is unfinished, and is the head at once when none is.
 */
static int
test_chain_retry_goes_to_back(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_claimed c[64];
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c", "a1")));
    CHECK_OK(put(st, msg("b", "c", "a2")));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, c), 1);
    CHECK_OK(finish(st, &c[0], OBX_NEXT_FAILED, 400));
    obx_store_claimed_release(&c[0]);
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, c), 1);
    CHECK_STR(ids, "a2");
    CHECK_OK(obx_store_retry(st, "ch", "a1", "operator"));
    CHECK_INT(claim_ids(st, 10, ids, sizeof ids, NULL), 0);
    CHECK_OK(put(st, msg("b", "c", "a3")));
    CHECK_OK(finish(st, &c[0], OBX_NEXT_ACCEPTED, 200));
    obx_store_claimed_release(&c[0]);
    CHECK_INT(drain_all(st, ids, sizeof ids), 2);
    CHECK_STR(ids, "a1,a3");
    /* Nothing unfinished: a retried message is the head at once. */
    CHECK_OK(obx_store_retry(st, "ch", "a2", "operator"));
    CHECK_INT(drain_all(st, ids, sizeof ids), 1);
    CHECK_STR(ids, "a2");
end:
    obx_store_free(st);
    TEST_END;
}

/* Library and plain-SQL producers append to the same conversation. */
static int
test_chain_sql_and_library_mixed(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "c", "a1")));
    CHECK(sql_ok(st, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                     " external_conversation_id, content, sender_type)"
                     " VALUES ('ch', 'a2', 'b', 'c', 'x', 'User')"));
    CHECK_OK(put(st, msg("b", "c", "a3")));
    CHECK(sql_ok(st, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                     " external_conversation_id, content, sender_type)"
                     " VALUES ('ch', 'a4', 'b', 'c', 'x', 'User')"));
    CHECK_INT(drain_all(st, ids, sizeof ids), 4);
    CHECK_STR(ids, "a1,a2,a3,a4");
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * An enqueue links only the plain-SQL rows of the conversations it appends to (bounded work
 * however many others wait); a claim links the rest, each conversation in id order.
 */
static int
test_chain_sql_rows_linked_where_needed(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[256];

    CHECK(st);
    CHECK(sql_ok(st, "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                     " external_conversation_id, content, sender_type) VALUES"
                     " ('ch', 'a1', 'b', 'conv-a', 'x', 'User'),"
                     " ('ch', 'z1', 'b', 'conv-z', 'x', 'User'),"
                     " ('ch', 'a2', 'b', 'conv-a', 'x', 'User')"));
    CHECK_OK(put(st, msg("b", "conv-b", "b1")));
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox WHERE head IS NULL"), 3);
    CHECK_OK(put(st, msg("b", "conv-z", "z2")));
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox WHERE head IS NULL"), 2);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox o JOIN outbox p ON p.id = o.prev_id"
                             " WHERE o.external_message_id = 'z2'"
                             " AND p.external_message_id = 'z1'"),
              1);
    /* The claim links conv-a (a1 then a2) and sends each conversation's head. */
    CHECK_INT(drain_all(st, ids, sizeof ids), 5);
    CHECK(strstr(ids, "a1") < strstr(ids, "a2"));
    CHECK(strstr(ids, "z1") < strstr(ids, "z2"));
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox WHERE head IS NULL"), 0);
    /* Both lookups of unlinked rows are probes of outbox_unlinked. */
    CHECK(plan_uses(st,
                    "SELECT id FROM outbox INDEXED BY outbox_unlinked WHERE head IS NULL"
                    " AND channel_id = 'ch' AND external_conversation_id = 'a' LIMIT 1",
                    "outbox_unlinked (channel_id=? AND external_conversation_id=?)"));
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * SQLite reuses the largest id after it is deleted. A conversation whose tail row was
 * purged must not take a reused id of another conversation for its tail.
 */
static int
test_chain_reused_id(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    char ids[256];

    CHECK(st);
    CHECK_OK(put(st, msg("b", "conv-a", "a1")));
    CHECK_OK(cancel(st, "a1"));
    CHECK(sql_ok(st, "DELETE FROM outbox WHERE external_message_id = 'a1'"));
    CHECK_OK(put(st, msg("b", "conv-b", "b1"))); /* takes a1's id */
    CHECK_OK(put(st, msg("b", "conv-a", "a2")));
    CHECK_INT(drain_all(st, ids, sizeof ids), 2);
    CHECK_STR(ids, "b1,a2");
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * A version-4 database with a backlog keeps its order through migration 0005, including a
 * retried message waiting behind a newer head (the old rule let it go next).
 */
static int
test_chain_migration_keeps_backlog(void)
{
    TEST_BEGIN;
    struct obx_store *st = NULL;
    sqlite3 *h = NULL;
    char ids[256];
    const char *rows = "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                       " external_conversation_id, content, sender_type) VALUES"
                       " ('ch','a1','b','c','x','User'), ('ch','a2','b','c','x','User'),"
                       " ('ch','a3','b','c','x','User'), ('ch','z1','b','d','x','User');"
                       /* a1 failed, a2 became the head, then a1 was retried and waits */
                       "UPDATE outbox SET state = 'failed' WHERE external_message_id = 'a1';"
                       "UPDATE outbox SET state = 'queued' WHERE external_message_id = 'a1';"
                       "UPDATE outbox SET state = 'cancelled' WHERE external_message_id = 'z1';";

    snprintf(db_path, sizeof db_path, "/tmp/obx_test_store_v4_%d.db", (int)getpid());
    unlink(db_path);
    CHECK_INT(sqlite3_open(db_path, &h), SQLITE_OK);
    for (int i = 0; obx_migrate_embedded[i].version && obx_migrate_embedded[i].version <= 4; i++)
        CHECK_INT(sqlite3_exec(h, obx_migrate_embedded[i].sql, NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_exec(h, "PRAGMA user_version = 4", NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_exec(h, rows, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    h = NULL;
    CHECK_OK(obx_store_open(db_path, NULL, &st));
    obx_clock_fake_init(&fake, 1000000, 1000000);
    st->clock = &fake.base;
    CHECK_OK(put(st, msg("b", "c", "a4")));
    CHECK_OK(put(st, msg("b", "d", "z2")));
    CHECK_INT(drain_all(st, ids, sizeof ids), 5);
    CHECK_STR(ids, "a2,z2,a1,a3,a4");
end:
    sqlite3_close(h);
    obx_store_free(st);
    unlink(db_path);
    TEST_END;
}

/* A confirmation without a channel id is matched when exactly one channel has the key. */
static int
test_confirm_by_external_id_alone(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    const char *channels[] = {"ch-a", "ch-b", "ch-c"};
    struct obx_msg m;

    CHECK(st);
    for (int i = 0; i < 3; i++) {
        m = msg("b", "c", "shared");
        m.channel_id = channels[i];
        if (i < 2)
            CHECK_OK(put(st, m)); /* "shared" is in ch-a and ch-b */
        m.external_message_id = i == 2 ? "only-c" : "filler";
        CHECK_OK(put(st, m));
    }
    CHECK_OK(obx_store_confirm(st, NULL, "only-c", "p-1", "Success", "webhook"));
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox WHERE external_message_id = 'only-c'"
                             " AND channel_id = 'ch-c' AND state = 'confirmed'"),
              1);
    CHECK_INT(obx_store_confirm(st, NULL, "shared", "p-2", "Success", "webhook"), OBX_ECONFLICT);
    CHECK_INT(obx_store_confirm(st, NULL, "nowhere", "p-3", "Success", "webhook"), OBX_ENOTFOUND);
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * Large batches skip the CHECK constraints because every item passed obx_msg_validate()
 * first. That is only sound while the validator is no looser than the constraints: every
 * message it accepts (at the widest limits a configuration allows) must also pass them.
 */
static int
test_validator_no_looser_than_checks(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_msg_limits lim = obx_msg_limits_default();
    static const size_t lens[] = {0, 1, 254, 255, 256, 2047, 2048, 2049};
    static char text[3000];
    sqlite3_stmt *ins = NULL;
    int checked = 0;

    CHECK(st);
    lim.max_content_bytes = 1048576; /* the largest max_content_bytes config accepts */
    CHECK_INT(sqlite3_prepare_v2(st->db->h,
                                 "INSERT INTO outbox (channel_id, external_message_id,"
                                 " business_id, external_conversation_id, content, sender_type,"
                                 " consumer_name, consumer_image) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                 -1, &ins, NULL),
              SQLITE_OK);
    memset(text, 'x', sizeof text - 1);
    for (int field = 0; field < 8; field++) {
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            char id[32];
            const char *v[8];
            struct obx_field_error fe;
            struct obx_msg m;

            snprintf(id, sizeof id, "v-%d-%zu", field, k);
            v[0] = "ch", v[1] = id, v[2] = "b", v[3] = "c", v[4] = "hi", v[5] = "User";
            v[6] = NULL, v[7] = NULL;
            v[field] = text + sizeof text - 1 - lens[k]; /* a string of lens[k] bytes */
            m = (struct obx_msg){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], 0};
            if (obx_msg_validate(&m, &lim, &fe) != OBX_OK)
                continue;
            for (int i = 0; i < 8; i++)
                obx_db_bind_text(ins, i + 1, v[i]);
            if (sqlite3_step(ins) != SQLITE_DONE)
                fprintf(stderr, "  field %d, %zu bytes: %s\n", field, lens[k],
                        sqlite3_errmsg(st->db->h));
            CHECK_INT(sqlite3_reset(ins), SQLITE_OK);
            CHECK(sqlite3_exec(st->db->h, "DELETE FROM outbox", NULL, NULL, NULL) == SQLITE_OK);
            checked++;
        }
    }
    CHECK(checked > 20);
    /* Dot segments: the validator and channel_id_not_dot_segment agree, both ways. */
    {
        static const char *const chans[] = {".", "..", "...", ".x", "x.", "./", "%2E"};
        for (size_t i = 0; i < sizeof chans / sizeof chans[0]; i++) {
            struct obx_field_error fe;
            struct obx_msg m = msg("b", "c", "dot");
            int valid, stored;
            m.channel_id = chans[i];
            valid = obx_msg_validate(&m, &lim, &fe) == OBX_OK;
            obx_db_bind_text(ins, 1, chans[i]);
            obx_db_bind_text(ins, 2, "dot");
            obx_db_bind_text(ins, 3, "b");
            obx_db_bind_text(ins, 4, "c");
            obx_db_bind_text(ins, 5, "hi");
            obx_db_bind_text(ins, 6, "User");
            sqlite3_bind_null(ins, 7);
            sqlite3_bind_null(ins, 8);
            stored = sqlite3_step(ins) == SQLITE_DONE;
            sqlite3_reset(ins);
            CHECK(sqlite3_exec(st->db->h, "DELETE FROM outbox", NULL, NULL, NULL) == SQLITE_OK);
            if (valid != stored)
                fprintf(stderr, "  channel_id '%s': validator %d, constraints %d\n", chans[i],
                        valid, stored);
            CHECK_INT(valid, stored);
            CHECK_INT(valid, i >= 2);
        }
    }
    /* The other way round, the validator refuses what the constraints refuse. */
    {
        struct obx_field_error fe;
        struct obx_msg m = msg("b", "c", "x");
        m.sender_type = "Bot";
        CHECK_INT(obx_msg_validate(&m, &lim, &fe), OBX_EINVAL);
        m = msg("b", "c", "");
        CHECK_INT(obx_msg_validate(&m, &lim, &fe), OBX_EINVAL);
    }
end:
    sqlite3_finalize(ins);
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
    {"retention_in_batches", test_retention_in_batches},
    {"retention_resumes_audit_prune", test_retention_resumes_audit_prune},
    {"enqueue_in_caller_transaction", test_enqueue_in_caller_transaction},
    {"sql_contract_insert", test_sql_contract_insert},
    {"claim_query_plan", test_claim_query_plan},
    {"chain_bulk_batch_order", test_chain_bulk_batch_order},
    {"chain_cancel_middle_and_tail", test_chain_cancel_middle_and_tail},
    {"chain_confirmed_while_queued", test_chain_confirmed_while_queued},
    {"chain_retry_goes_to_back", test_chain_retry_goes_to_back},
    {"chain_sql_and_library_mixed", test_chain_sql_and_library_mixed},
    {"chain_sql_rows_linked_where_needed", test_chain_sql_rows_linked_where_needed},
    {"chain_reused_id", test_chain_reused_id},
    {"chain_migration_keeps_backlog", test_chain_migration_keeps_backlog},
    {"confirm_by_external_id_alone", test_confirm_by_external_id_alone},
    {"validator_no_looser_than_checks", test_validator_no_looser_than_checks},
    {NULL, NULL},
};

TEST_MAIN(tests)
