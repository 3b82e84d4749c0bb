/*
 * test_retention: one pass over a real store in a temp file: what goes and what stays
 * (age, read-only channels, failed only when asked), that a pass resumes where the last
 * step stopped, and that a failed allocation leaves an error and a pass that can go on.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "check.h"
#include "config.h"
#include "mem.h"
#include "retention.h"
#include "store.h"
#include "store_tenant.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

/* Opens a fresh database in /tmp with a fake clock at t = 1,000,000 ms. */
static struct obx_store *
fresh_store(void)
{
    return testdb_fresh_store(db_path, sizeof db_path, "retention", &fake, 1000000, 1000000);
}

static enum obx_err
put(struct obx_store *st, const char *channel, const char *conv, const char *id)
{
    struct obx_msg m = {channel, id, "b", conv, "hello", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result r;
    return obx_enqueue(st, &m, &r, NULL);
}

/* Message i of a numbered run: external id m<i>, alone in conversation c<i> on "ch". */
static enum obx_err
put_nth(struct obx_store *st, int i)
{
    char id[32], conv[32];

    snprintf(id, sizeof id, "m%d", i);
    snprintf(conv, sizeof conv, "c%d", i);
    return put(st, "ch", conv, id);
}

/* Claims the one due message and ends its attempt with next (accepted or failed). */
static enum obx_err
deliver(struct obx_store *st, enum obx_next next)
{
    struct obx_claimed c;
    struct obx_attempt a = {0};
    int got = 0;
    enum obx_err err = obx_store_claim(st, 1, 60000, &c, &got), r = OBX_OK;

    if (err != OBX_OK || got != 1)
        return err != OBX_OK ? err : OBX_ENOTFOUND;
    a.message_id = c.id;
    a.lease_token = c.lease_token;
    a.started_at_ms = fake.now_ms;
    a.http_status = next == OBX_NEXT_ACCEPTED ? 200 : 400;
    a.outcome = "test";
    a.next = next;
    a.counted = 1;
    a.reason = "test";
    err = obx_store_finish(st, &a, 1, &r);
    obx_store_claimed_release(&c);
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

/* 1 when message id (external) is still in the outbox. */
static int
has(struct obx_store *st, const char *id)
{
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT 1 FROM outbox WHERE external_message_id = '%s'", id);
    return count_rows(st, sql);
}

static int
no_channel(void *ctx, const char *channel)
{
    (void)ctx;
    (void)channel;
    return 0;
}

static int
ro_channel(void *ctx, const char *channel)
{
    (void)ctx;
    return strcmp(channel, "ro") == 0;
}

/*
 * One message per conversation, each in a different end state, all of them "old" at
 * t0 + 10 s except young-cancel, cancelled at t0 + 20 s. Returns 0 on success.
 */
static int
fill(struct obx_store *st)
{
    /* Claim order is by conversation: deliver each one right after it is enqueued. */
    if (put(st, "ch", "c1", "acc") || deliver(st, OBX_NEXT_ACCEPTED))
        return -1; /* accepted, bidirectional channel: waits for its confirmation */
    if (put(st, "ro", "c2", "ro-acc") || deliver(st, OBX_NEXT_ACCEPTED))
        return -1; /* accepted on a read-only channel: terminal */
    if (put(st, "ch", "c3", "fail") || deliver(st, OBX_NEXT_FAILED))
        return -1;
    if (put(st, "ch", "c4", "old-cancel") || obx_store_cancel(st, "ch", "old-cancel", NULL))
        return -1;
    if (put(st, "ch", "c6", "conf") || deliver(st, OBX_NEXT_ACCEPTED) ||
        obx_store_confirm(st, "ch", "conf", "p1", "Success", "webhook"))
        return -1;
    if (put(st, "ch", "c5", "queued")) /* last: the claims above must not take it */
        return -1;
    fake.now_ms += 10000;
    if (put(st, "ch", "c7", "young-cancel") || obx_store_cancel(st, "ch", "young-cancel", NULL))
        return -1;
    fake.now_ms += 10000;
    return 0;
}

/* Steps r to the end; -1 on an error. */
static int
run(struct obx_store *st, struct obx_retention *r)
{
    int done = 0;

    for (int i = 0; i < 100000 && !done; i++)
        if (obx_retention_step(st, r, &done) != OBX_OK)
            return -1;
    return done ? 0 : -1;
}

static int
test_init_defaults(void)
{
    struct obx_retention_opts o = {0};
    struct obx_retention r;
    TEST_BEGIN;

    obx_retention_init(&r, &o);
    CHECK_INT(r.o.batch_rows, OBX_RETENTION_BATCH_ROWS);
    CHECK_INT(r.o.batch_ms, OBX_RETENTION_BATCH_MS);
    CHECK_INT(obx_retention_counts(&r)->steps, 0);
    o.batch_rows = -3;
    o.batch_ms = -1; /* no time bound stays so */
    obx_retention_init(&r, &o);
    CHECK_INT(r.o.batch_rows, OBX_RETENTION_BATCH_ROWS);
    CHECK_INT(r.o.batch_ms, -1);
    o.batch_rows = 7;
    o.batch_ms = 3;
    obx_retention_init(&r, &o);
    CHECK_INT(r.o.batch_rows, 7);
    CHECK_INT(r.o.batch_ms, 3);
end:
    TEST_END;
}

/* The options for a configuration: the cut, the hash cut (never before the cut), read-only. */
static int
test_opts_for(void)
{
    struct obx_config cfg;
    struct obx_retention_opts o;
    int inited = 0;
    TEST_BEGIN;

    CHECK_OK(obx_config_init(&cfg));
    inited = 1;
    CHECK_OK(obx_config_set(&cfg, "readonly_channels", "ro1,ro2", OBX_SRC_FILE, NULL));
    CHECK_OK(obx_config_set(&cfg, "webhook_hash_retention", "10d", OBX_SRC_FILE, NULL));
    obx_retention_opts_for(&cfg, 100LL * 86400000, 3LL * 86400000, &o);
    CHECK_INT(o.before_ms, 97LL * 86400000);
    CHECK_INT(o.hashes_before_ms, 90LL * 86400000);
    CHECK_INT(o.include_failed, 0);
    CHECK(o.is_readonly != NULL);
    CHECK(o.is_readonly(o.ctx, "ro2"));
    CHECK(!o.is_readonly(o.ctx, "ch"));
    CHECK_INT(o.batch_rows, 0);
    CHECK_INT(o.batch_ms, 0);

    /* Hashes kept for less than the age: they go with everything else. */
    obx_retention_opts_for(&cfg, 100LL * 86400000, 30LL * 86400000, &o);
    CHECK_INT(o.before_ms, 70LL * 86400000);
    CHECK_INT(o.hashes_before_ms, 70LL * 86400000);

    /* webhook_hash_retention = 0: kept forever. */
    CHECK_OK(obx_config_set(&cfg, "webhook_hash_retention", "0", OBX_SRC_FILE, NULL));
    obx_retention_opts_for(&cfg, 100LL * 86400000, 3LL * 86400000, &o);
    CHECK_INT(o.hashes_before_ms, INT64_MIN);

    /* No readonly_channels: no callback (accepted is then walked only for tenants). */
    CHECK_OK(obx_config_set(&cfg, "readonly_channels", "", OBX_SRC_FILE, NULL));
    obx_retention_opts_for(&cfg, 100LL * 86400000, 3LL * 86400000, &o);
    CHECK(o.is_readonly == NULL);
end:
    if (inited)
        obx_config_release(&cfg);
    TEST_END;
}

/*
 * What goes: confirmed, cancelled, accepted on a read-only channel, older than the cut.
 * What stays: queued, accepted elsewhere, failed (not asked for), anything younger.
 */
static int
test_keeps_and_deletes(void)
{
    struct obx_store *st = fresh_store();
    struct obx_retention_opts o = {0};
    struct obx_retention r;
    TEST_BEGIN;

    CHECK(st);
    CHECK_INT(fill(st), 0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 7);
    o.before_ms = 1000000 + 5000; /* between the old ones and young-cancel */
    o.hashes_before_ms = INT64_MIN;
    o.is_readonly = ro_channel;
    o.batch_ms = -1;
    obx_retention_init(&r, &o);
    CHECK_INT(run(st, &r), 0);
    CHECK_INT(obx_retention_counts(&r)->messages, 3);
    CHECK_INT(has(st, "conf"), 0);
    CHECK_INT(has(st, "old-cancel"), 0);
    CHECK_INT(has(st, "ro-acc"), 0);
    CHECK_INT(has(st, "acc"), 1);
    CHECK_INT(has(st, "fail"), 1);
    CHECK_INT(has(st, "queued"), 1);
    CHECK_INT(has(st, "young-cancel"), 1);

    /* Without a read-only callback, accepted stays; with include_failed, failed goes. */
    obx_store_free(st);
    st = fresh_store();
    CHECK(st);
    CHECK_INT(fill(st), 0);
    o.is_readonly = NULL;
    o.include_failed = 1;
    obx_retention_init(&r, &o);
    CHECK_INT(run(st, &r), 0);
    CHECK_INT(obx_retention_counts(&r)->messages, 3);
    CHECK_INT(has(st, "ro-acc"), 1);
    CHECK_INT(has(st, "fail"), 0);
    CHECK_INT(has(st, "conf"), 0);
    CHECK_INT(has(st, "old-cancel"), 0);

    /* A later cut takes the young one too; queued and accepted stay whatever their age. */
    o.before_ms = fake.now_ms;
    obx_retention_init(&r, &o);
    CHECK_INT(run(st, &r), 0);
    CHECK_INT(obx_retention_counts(&r)->messages, 1);
    CHECK_INT(has(st, "young-cancel"), 0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 3); /* acc, ro-acc, queued */
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * One row per step: each call does one bounded transaction and the pass picks up where
 * the last call stopped, also from a copy of the pass state (it lives on the caller's
 * stack); once done it stays done and deletes nothing more.
 */
static int
test_resumes_across_calls(void)
{
    struct obx_store *st = fresh_store();
    struct obx_retention_opts o = {0};
    struct obx_retention r, copy;
    int done = 0, calls = 0;
    int64_t prev = 0;
    char id[32];
    TEST_BEGIN;

    CHECK(st);
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "m%d", i);
        CHECK_OK(put_nth(st, i));
        CHECK_OK(obx_store_cancel(st, "ch", id, NULL));
    }
    fake.now_ms += 1000;
    o.before_ms = fake.now_ms;
    o.hashes_before_ms = INT64_MIN;
    o.batch_rows = 1;
    o.batch_ms = -1;
    obx_retention_init(&r, &o);
    /* Five calls: at most one message each, and each commits. */
    for (int i = 0; i < 5; i++) {
        CHECK_OK(obx_retention_step(st, &r, &done));
        CHECK(!done);
        CHECK(obx_retention_counts(&r)->messages - prev <= 1);
        prev = obx_retention_counts(&r)->messages;
        CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 12 - prev);
    }
    CHECK_INT(obx_retention_counts(&r)->steps, 5);
    CHECK(prev >= 4); /* the confirmed state, empty, may take one step */
    copy = r;
    while (!done && calls++ < 10000)
        CHECK_OK(obx_retention_step(st, &copy, &done));
    CHECK(done);
    CHECK_INT(obx_retention_counts(&copy)->messages, 12);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 0);
    CHECK(obx_retention_counts(&copy)->steps > 12);
    prev = obx_retention_counts(&copy)->steps;
    done = 0;
    CHECK_OK(obx_retention_step(st, &copy, &done));
    CHECK(done);
    CHECK_INT(obx_retention_counts(&copy)->steps, prev);
end:
    obx_store_free(st);
    TEST_END;
}

/* Steps r to the end; its step count, or -1 on an error. */
static int64_t
steps_to_end(struct obx_store *st, const struct obx_retention_opts *o)
{
    struct obx_retention r;

    obx_retention_init(&r, o);
    return run(st, &r) == 0 ? obx_retention_counts(&r)->steps : -1;
}

/*
 * Accepted messages are walked only when some channel is read-only: 40 old accepted
 * messages take 8 steps of 5 when a read-only callback is given (it says no to each), none
 * without one; once a tenant owns a read-only channel, its old accepted message goes.
 */
static int
test_accepted_walk_only_with_readonly(void)
{
    struct obx_store *st = fresh_store();
    struct obx_retention_opts o = {0};
    struct obx_tenant_channel ro = {"ro", 1};
    struct obx_tenant_spec t = {.name = "acme", .api_key = "k", .channels = &ro, .nchannels = 1};
    int64_t walked, skipped;
    int created = 0;
    TEST_BEGIN;

    CHECK(st);
    for (int i = 0; i < 40; i++) {
        CHECK_OK(put_nth(st, i));
        CHECK_OK(deliver(st, OBX_NEXT_ACCEPTED));
    }
    CHECK_OK(put(st, "ro", "c-ro", "ro-acc"));
    CHECK_OK(deliver(st, OBX_NEXT_ACCEPTED));
    fake.now_ms += 10000;
    o.before_ms = fake.now_ms;
    o.hashes_before_ms = INT64_MIN;
    o.batch_rows = 5;
    o.batch_ms = -1;
    o.is_readonly = no_channel;
    walked = steps_to_end(st, &o);
    o.is_readonly = NULL;
    skipped = steps_to_end(st, &o);
    CHECK(skipped >= 0);
    CHECK(walked - skipped >= 8);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 41);
    CHECK_OK(obx_store_tenant_put(st, &t, OBX_TENANT_CREATE, NULL, &created, NULL, 0));
    CHECK(steps_to_end(st, &o) >= walked);
    CHECK_INT(has(st, "ro-acc"), 0);
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 40);
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * A walk ends at the first message created after the cut: 10 old cancelled messages then
 * 40 young ones, one batch of 100: the 10 go, the cursor stays on the last of them and
 * nothing more is to come, so the 40 are not read again on every pass.
 */
static int
test_walk_ends_at_young(void)
{
    struct obx_store *st = fresh_store();
    struct obx_purge_opts po = {0};
    struct obx_batch_limit lim = {100, 0};
    char id[32];
    int64_t cursor = 0, deleted = 0, last_old = 0;
    int more = 1;
    TEST_BEGIN;

    CHECK(st);
    for (int i = 0; i < 50; i++) {
        if (i == 10) {
            last_old = count_rows(st, "SELECT 1 FROM outbox");
            fake.now_ms += 10000;
        }
        snprintf(id, sizeof id, "m%d", i);
        CHECK_OK(put_nth(st, i));
        CHECK_OK(obx_store_cancel(st, "ch", id, NULL));
    }
    po.before_ms = fake.now_ms - 5000;
    CHECK_OK(obx_store_purge_batch(st, &po, OBX_ST_CANCELLED, &lim, &cursor, &deleted, &more));
    CHECK_INT(deleted, 10);
    CHECK_INT(more, 0);
    CHECK_INT(cursor, last_old); /* ids 1..10: the walk did not read past the first young */
    CHECK_INT(count_rows(st, "SELECT 1 FROM outbox"), 40);
end:
    obx_store_free(st);
    TEST_END;
}

/*
 * Every allocation failing: the steps that allocate (the audit seal) return OBX_ENOMEM
 * and change neither the counts nor the database; once memory is back, the same pass
 * finishes and the audit chain verifies.
 */
static int
test_alloc_failure(void)
{
    struct obx_store *st = fresh_store();
    struct obx_retention_opts o = {0};
    struct obx_retention r;
    struct obx_retention_counts before;
    struct obx_audit_report rep;
    enum obx_err err = OBX_OK;
    int done = 0, failures = 0, rows;
    TEST_BEGIN;

    CHECK(st);
    CHECK_INT(fill(st), 0);
    o.before_ms = fake.now_ms;
    o.hashes_before_ms = INT64_MIN;
    o.include_failed = 1;
    o.batch_rows = 2;
    o.batch_ms = -1;
    obx_retention_init(&r, &o);
    for (int i = 0; i < 1000 && !done; i++) {
        before = *obx_retention_counts(&r);
        rows = count_rows(st, "SELECT 1 FROM audit_seals");
        obx_mem_fail_after(0);
        err = obx_retention_step(st, &r, &done);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            continue;
        CHECK_INT(err, OBX_ENOMEM);
        CHECK(!done);
        CHECK(memcmp(&before, obx_retention_counts(&r), sizeof before) == 0);
        CHECK_INT(count_rows(st, "SELECT 1 FROM audit_seals"), rows);
        failures++;
        /* The same step again, with memory: the pass goes on from there. */
        CHECK_OK(obx_retention_step(st, &r, &done));
    }
    CHECK(done);
    CHECK(failures > 0);
    CHECK_INT(obx_retention_counts(&r)->messages, 4);
    CHECK(obx_retention_counts(&r)->audit_sealed > 0);
    CHECK_OK(obx_audit_verify(st, &rep));
    CHECK_INT(rep.first_bad_id, 0);
end:
    obx_mem_fail_after(-1);
    obx_store_free(st);
    TEST_END;
}

static const struct test_case tests[] = {
    {"init_defaults", test_init_defaults},
    {"opts_for", test_opts_for},
    {"keeps_and_deletes", test_keeps_and_deletes},
    {"resumes_across_calls", test_resumes_across_calls},
    {"alloc_failure", test_alloc_failure},
    {"accepted_walk_only_with_readonly", test_accepted_walk_only_with_readonly},
    {"walk_ends_at_young", test_walk_ends_at_young},
    {NULL, NULL},
};

TEST_MAIN(tests)
