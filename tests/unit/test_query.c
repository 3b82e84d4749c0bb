/*
 * Unit tests for lib/query.c: per-channel statistics (counts per state, oldest queued,
 * unconfirmed, confirmed in 24 h, sends of the last minute, the last error as text or
 * "http N"; sorted by channel, more channels than the first allocation holds), list paging and
 * filters, one message with its transitions and attempts (OBX_ENOTFOUND when absent), the
 * counts /metrics shows (inbox states, webhook outcomes, database bytes, sends since), the
 * service state and webhook rejection counters, and allocation failure in the statistics
 * (OBX_ENOMEM, nothing returned, no leak).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mem.h"
#include "query.h"
#include "store.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

static struct obx_store *
fresh_store(void)
{
    return testdb_fresh_store(db_path, sizeof db_path, "query", &fake, 1700000000000, 1000);
}

static int
enqueue(struct obx_store *st, const char *ch, const char *ext)
{
    struct obx_msg m = {ch, ext, "b", ext, "hello", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result r;

    return obx_enqueue(st, &m, &r, NULL) == OBX_OK ? 0 : -1;
}

/* Enqueues ext and sends it once: status / error / what comes next. */
static int
send_one(struct obx_store *st, const char *ch, const char *ext, int status, const char *error,
         enum obx_next next)
{
    struct obx_attempt a = {0};
    struct obx_claimed c;
    enum obx_err res = OBX_OK;
    int got = 0;

    if (enqueue(st, ch, ext) != 0 || obx_store_claim(st, 1, 60000, &c, &got) != OBX_OK || got != 1)
        return -1;
    a.message_id = c.id;
    a.lease_token = c.lease_token;
    a.started_at_ms = fake.now_ms;
    a.http_status = status;
    a.outcome = status >= 200 && status < 300 ? "accepted" : status ? "fatal" : "transport";
    a.error = error;
    a.next = next;
    a.counted = 1;
    a.next_attempt_at_ms = fake.now_ms + 3600000;
    a.reason = "test";
    obx_store_claimed_release(&c);
    return obx_store_finish(st, &a, 1, &res) == OBX_OK && res == OBX_OK ? 0 : -1;
}

static const struct obx_channel_stats *
find(const struct obx_channel_stats *c, size_t n, const char *ch)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(c[i].channel_id, ch) == 0)
            return &c[i];
    return NULL;
}

static int
test_stats(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_channel_stats *c = NULL;
    const struct obx_channel_stats *a, *b, *z;
    size_t n = 0;
    int64_t sent = -1;

    CHECK(st);
    /* No messages: no channels. */
    CHECK_OK(obx_query_stats(st, &c, &n));
    CHECK_INT(n, 0);
    obx_free(c);
    c = NULL;
    /* The sends first (a claim takes any due message): channel a sent one 2 hours ago
     * (accepted), then one failed with a text; channel b one failed without text, then one
     * sent and confirmed now. */
    CHECK_OK(send_one(st, "a", "a1", 201, NULL, OBX_NEXT_ACCEPTED));
    fake.now_ms += 2 * 3600 * 1000;
    CHECK_OK(send_one(st, "a", "a2", 400, "bad request: content", OBX_NEXT_FAILED));
    CHECK_OK(send_one(st, "b", "b1", 500, NULL, OBX_NEXT_FAILED));
    CHECK_OK(send_one(st, "b", "b2", 200, NULL, OBX_NEXT_ACCEPTED));
    CHECK_OK(obx_store_confirm(st, "b", "b2", "p-1", "delivered", "test"));
    /* Then a queues two. */
    fake.now_ms += 1000;
    CHECK_OK(enqueue(st, "a", "a3"));
    fake.now_ms += 1000;
    CHECK_OK(enqueue(st, "a", "a4"));
    /* Channels z0..z9 sort after b (more channels than the first allocation, 8). */
    for (int i = 0; i < 10; i++) {
        char ch[8];
        snprintf(ch, sizeof ch, "z%d", i);
        CHECK_OK(enqueue(st, ch, "x"));
    }
    fake.now_ms += 5000;
    CHECK_OK(obx_query_stats(st, &c, &n));
    CHECK_INT(n, 12);
    for (size_t i = 1; i < n; i++)
        CHECK(strcmp(c[i - 1].channel_id, c[i].channel_id) < 0);
    a = find(c, n, "a");
    b = find(c, n, "b");
    z = find(c, n, "z9");
    CHECK(a && b && z);
    CHECK_INT(a->counts[OBX_ST_QUEUED], 2);
    CHECK_INT(a->counts[OBX_ST_ACCEPTED], 1);
    CHECK_INT(a->counts[OBX_ST_FAILED], 1);
    CHECK_INT(a->counts[OBX_ST_SENDING], 0);
    CHECK_INT(a->oldest_queued_at_ms, 1700000000000 + 2 * 3600 * 1000 + 1000);
    CHECK_STR(a->last_error, "bad request: content");
    CHECK_INT(a->sent_last_min, 0); /* its send was 2 hours ago */
    CHECK_INT(b->counts[OBX_ST_CONFIRMED], 1);
    CHECK_INT(b->counts[OBX_ST_FAILED], 1);
    CHECK_INT(b->confirmed_24h, 1);
    CHECK_INT(b->oldest_queued_at_ms, 0);
    CHECK_STR(b->last_error, "http 500");
    CHECK_INT(b->sent_last_min, 1);
    CHECK_INT(z->counts[OBX_ST_QUEUED], 1);
    CHECK_STR(z->last_error, "");
    CHECK_OK(obx_query_count_accepted_since(st, 0, &sent));
    CHECK_INT(sent, 2);
    CHECK_OK(obx_query_count_accepted_since(st, fake.now_ms - 60000, &sent));
    CHECK_INT(sent, 1);
    obx_free(c);
    c = NULL;
    /* A day later: nothing confirmed in the last 24 h, nothing sent in the last minute. */
    fake.now_ms += 25 * 3600 * 1000LL;
    CHECK_OK(obx_query_stats(st, &c, &n));
    b = find(c, n, "b");
    CHECK(b);
    CHECK_INT(b->confirmed_24h, 0);
    CHECK_INT(b->sent_last_min, 0);
end:
    obx_free(c);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

struct ids {
    int n;
    char ext[32][16];
};

static int
on_row(void *ctx, const struct obx_row *r)
{
    struct ids *x = ctx;

    if (x->n < 32)
        snprintf(x->ext[x->n], sizeof x->ext[x->n], "%s", r->msg.external_message_id);
    x->n++;
    return 0;
}

static int
test_list_and_get(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_list_query q;
    struct ids x;
    int64_t next = -1;

    CHECK(st);
    CHECK_OK(send_one(st, "a", "m1", 500, "boom", OBX_NEXT_FAILED));
    CHECK_OK(enqueue(st, "a", "m2"));
    CHECK_OK(enqueue(st, "b", "m3"));
    CHECK_OK(enqueue(st, "a", "m4"));
    memset(&q, 0, sizeof q);
    memset(&x, 0, sizeof x);
    q.limit = 2;
    CHECK_OK(obx_query_list(st, &q, on_row, &x, &next));
    CHECK_INT(x.n, 2);
    CHECK_STR(x.ext[0], "m4"); /* newest first */
    CHECK_STR(x.ext[1], "m3");
    CHECK(next > 0);
    q.before_id = next;
    CHECK_OK(obx_query_list(st, &q, on_row, &x, &next));
    CHECK_INT(x.n, 4);
    CHECK_STR(x.ext[3], "m1");
    CHECK_INT(next, 0); /* the last page ends at id 1: no cursor */
    /* Filters. */
    memset(&q, 0, sizeof q);
    memset(&x, 0, sizeof x);
    q.limit = 100;
    q.state = "failed";
    CHECK_OK(obx_query_list(st, &q, on_row, &x, &next));
    CHECK_INT(x.n, 1);
    CHECK_STR(x.ext[0], "m1");
    memset(&x, 0, sizeof x);
    q.state = NULL;
    q.channel_id = "b";
    CHECK_OK(obx_query_list(st, &q, on_row, &x, &next));
    CHECK_INT(x.n, 1);
    CHECK_STR(x.ext[0], "m3");
    /* get: absent keys. */
    CHECK_INT(obx_query_get(st, "a", "nope", on_row, NULL, NULL, &x), OBX_ENOTFOUND);
    CHECK_INT(obx_query_get(st, "b", "m1", on_row, NULL, NULL, &x), OBX_ENOTFOUND);
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_query_get(st, "a", "m1", on_row, NULL, NULL, &x));
    CHECK_INT(x.n, 1);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static int
on_state(void *ctx, const char *key, const char *value, int64_t at)
{
    int *n = ctx;

    (void)at;
    if (strcmp(key, "k1") == 0 && value && strcmp(value, "v1") == 0)
        n[0]++;
    if (strcmp(key, "k2") == 0 && !value)
        n[1]++;
    return 0;
}

static int
test_service_state_and_counts(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    const char *keys[4] = {OBX_STATE_WEBHOOKS_REJECTED_SIGNATURE,
                           OBX_STATE_WEBHOOKS_REJECTED_TOO_LARGE, "k1", "k2"};
    const char *vals[4] = {"7", "3", "v1", NULL};
    const char *names[3] = {"pending", "confirmed", "other"};
    int64_t sig = -1, big = -1, counts[3] = {-1, -1, -1}, inbox[4], bytes = 0;
    int seen[2] = {0, 0};

    CHECK(st);
    /* Never published: both 0. */
    CHECK_OK(obx_query_webhook_rejections(st, &sig, &big));
    CHECK_INT(sig, 0);
    CHECK_INT(big, 0);
    CHECK_OK(obx_store_publish_state(st, keys, vals, 4));
    CHECK_OK(obx_query_webhook_rejections(st, &sig, &big));
    CHECK_INT(sig, 7);
    CHECK_INT(big, 3);
    CHECK_OK(obx_query_service_state(st, on_state, seen));
    CHECK_INT(seen[0], 1);
    CHECK_INT(seen[1], 1);
    /* A NULL value counts as 0. */
    vals[0] = NULL;
    CHECK_OK(obx_store_publish_state(st, keys, vals, 1));
    CHECK_OK(obx_query_webhook_rejections(st, &sig, &big));
    CHECK_INT(sig, 0);
    CHECK_INT(big, 3);

    /* Webhook outcomes: NULL counts as the first name, unknown ones as the last. */
    CHECK_OK(obx_db_exec(st->db,
                         "INSERT INTO webhook_events (body_sha256, received_at_ms, body, outcome)"
                         " VALUES ('a', 1, 'x', NULL), ('b', 1, 'x', 'confirmed'),"
                         " ('c', 1, 'x', 'confirmed'), ('d', 1, 'x', 'weird');"
                         "INSERT INTO inbox (partoo_message_id, event_id, channel_id,"
                         " external_conversation_id, state, received_at_ms, next_attempt_at_ms)"
                         " VALUES ('p1', 1, 'ch', 'c', 'pending', 1, 1),"
                         " ('p2', 2, 'ch', 'c', 'acked', 1, 1),"
                         " ('p3', 3, 'ch', 'c', 'acked', 1, 1)"));
    CHECK_OK(obx_query_webhook_outcomes(st, names, 3, counts));
    CHECK_INT(counts[0], 1);
    CHECK_INT(counts[1], 2);
    CHECK_INT(counts[2], 1);
    CHECK_OK(obx_query_inbox_counts(st, inbox));
    CHECK_INT(inbox[0], 1);
    CHECK_INT(inbox[1], 0);
    CHECK_INT(inbox[2], 2);
    CHECK_INT(inbox[3], 0);
    CHECK_OK(obx_query_db_bytes(st, &bytes));
    CHECK(bytes > 0 && bytes % 512 == 0);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

struct inbox_ids {
    int n;
    char pm[8][8];
};

static int
on_inbox(void *ctx, const struct obx_inbox_row *r)
{
    struct inbox_ids *x = ctx;

    if (x->n < 8)
        snprintf(x->pm[x->n], sizeof x->pm[x->n], "%s", r->partoo_message_id);
    x->n++;
    return 0;
}

static int
test_inbox_pages(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct inbox_ids x;
    int64_t next = -1;

    memset(&x, 0, sizeof x);
    CHECK(st);
    CHECK_OK(obx_db_exec(st->db,
                         "INSERT INTO webhook_events (body_sha256, received_at_ms, body)"
                         " VALUES ('a', 1, 'x'), ('b', 1, 'x'), ('c', 1, 'x');"
                         "INSERT INTO inbox (partoo_message_id, event_id, channel_id,"
                         " external_conversation_id, state, received_at_ms, next_attempt_at_ms)"
                         " VALUES ('p1', 1, 'ch', 'c', 'pending', 1, 1),"
                         " ('p2', 2, 'ch', 'c', 'acked', 1, 1),"
                         " ('p3', 3, 'ch', 'c', 'delivered', 1, 1)"));
    /* Oldest first; acked ones left out unless asked for. */
    CHECK_OK(obx_query_inbox(st, 0, 1, 0, on_inbox, &x, &next));
    CHECK_INT(x.n, 1);
    CHECK_STR(x.pm[0], "p1");
    CHECK(next > 0);
    CHECK_OK(obx_query_inbox(st, next, 10, 0, on_inbox, &x, &next));
    CHECK_INT(x.n, 2);
    CHECK_STR(x.pm[1], "p3");
    CHECK_INT(next, 0);
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_query_inbox(st, 0, 10, 1, on_inbox, &x, &next));
    CHECK_INT(x.n, 3);
    CHECK_STR(x.pm[1], "p2");
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* Allocation n fails while the statistics are built: OBX_ENOMEM, *out NULL, no leak. */
static int
test_stats_alloc_failure(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_channel_stats *c = NULL;
    enum obx_err err = OBX_ENOMEM;
    size_t n = 99;
    long i;
    int failures = 0;

    CHECK(st);
    for (int k = 0; k < 20; k++) {
        char ch[8];
        snprintf(ch, sizeof ch, "c%02d", k);
        CHECK_OK(send_one(st, ch, "m", 500, k % 2 ? "boom" : NULL, OBX_NEXT_FAILED));
    }
    for (i = 0; i < 1000; i++) {
        obx_mem_fail_after(i);
        err = obx_query_stats(st, &c, &n);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break;
        CHECK_INT(err, OBX_ENOMEM);
        CHECK(c == NULL);
        CHECK_INT(n, 0);
        failures++;
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    CHECK_INT(n, 20);
    CHECK_STR(c[19].channel_id, "c19");
    CHECK_STR(c[19].last_error, "boom");
    CHECK_STR(c[18].last_error, "http 500");
end:
    obx_mem_fail_after(-1);
    obx_free(c);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static const struct test_case tests[] = {
    {"stats", test_stats},
    {"list_and_get", test_list_and_get},
    {"service_state_and_counts", test_service_state_and_counts},
    {"inbox_pages", test_inbox_pages},
    {"stats_alloc_failure", test_stats_alloc_failure},
    {NULL, NULL},
};

TEST_MAIN(tests)
