/*
 * Unit tests of worker, the delivery loop, against a stub Partoo on 127.0.0.1 and a real
 * store thread: the request (path, x-APIKey, JSON body); what each answer does to the
 * message and its attempt row (SPEC §3): 2xx accepted and awaiting its confirmation (not
 * on a read-only channel), other 4xx failed, 5xx retried later and counted, 429 paused
 * for Retry-After and not counted, 401 pausing the key and not counted; a stop with a
 * request that never comes back releases the message to `queued` (nothing lost); a
 * failed allocation at each step of obx_worker_new ends cleanly. Assertions are on rows
 * and counters, never on how long anything took. A pause heard while a claim is outstanding
 * gives back what the claim brings of the paused channel (the pause fence).
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backoff.h"
#include "check.h"
#include "config.h"
#include "log.h"
#include "loop_http.h"
#include "mem.h"
#include "store_queue.h"
#include "worker.h"
#include "testdb.h"

static char path[256];

#define API_KEY "partoo-key-for-unit-tests"

struct fixture {
    struct event_base *base;
    struct obx_store *st;
    struct obx_storeq *q;
    struct obx_config cfg;
    int cfg_ok;
    struct stub_server stub;
    struct obx_worker *w;
};

/* A stub answering status, one queued message on channel, the worker's configuration. */
static int
fixture_start(struct fixture *f, int status, const char *channel, const char *const *kv)
{
    struct obx_msg m = {channel, "m-1", "b1", "c1", "bonjour", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result res;
    struct obx_store *wst = NULL;
    char url[80];

    memset(f, 0, sizeof *f);
    testdb_remove(path);
    f->base = event_base_new();
    if (!f->base || stub_start(&f->stub, f->base, status) != 0)
        return -1;
    f->stub.reply_body = "{\"status\":\"success\"}";
    if (obx_config_init(&f->cfg) != OBX_OK)
        return -1;
    f->cfg_ok = 1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/", f->stub.port);
    if (obx_config_set(&f->cfg, "partoo_base_url", url, OBX_SRC_FLAG, NULL) != OBX_OK ||
        obx_config_set(&f->cfg, "rate_limit", "0", OBX_SRC_FLAG, NULL) != OBX_OK)
        return -1;
    for (int i = 0; kv && kv[i]; i += 2)
        if (obx_config_set(&f->cfg, kv[i], kv[i + 1], OBX_SRC_FLAG, NULL) != OBX_OK)
            return -1;
    f->cfg.partoo_api_key = obx_strdup(API_KEY);
    if (obx_store_open(path, NULL, &f->st) != OBX_OK || obx_enqueue(f->st, &m, &res, NULL))
        return -1;
    if (obx_store_open(path, NULL, &wst) != OBX_OK)
        return -1;
    if (obx_storeq_new(f->base, wst, &f->q) != OBX_OK) {
        obx_store_free(wst);
        return -1;
    }
    return 0;
}

static void
on_drained(void *ctx)
{
    (*(int *)ctx)++;
}

static int
is_set(void *arg)
{
    return *(int *)arg != 0;
}

static void
fixture_stop(struct fixture *f)
{
    int drained = 0;

    if (f->w) {
        obx_worker_stop(f->w, 0, on_drained, &drained);
        run_until_cond(f->base, is_set, &drained);
    }
    if (f->q)
        obx_storeq_drain(f->q);
    obx_worker_free(f->w);
    obx_storeq_free(f->q);
    obx_store_free(f->st);
    stub_free(&f->stub);
    if (f->base)
        event_base_free(f->base);
    if (f->cfg_ok)
        obx_config_release(&f->cfg);
    testdb_remove(path);
}

/* The first attempt is recorded and the message has left `sending`. */
static int
attempt_recorded(void *arg)
{
    (void)arg;
    return testdb_int(path, "SELECT count(*) FROM attempts") >= 1 &&
           testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'sending'") == 0;
}

/* Runs one delivery against the stub answering status; 0 when its attempt is recorded. */
static int
deliver(struct fixture *f, int status, const char *channel, const char *const *kv)
{
    if (fixture_start(f, status, channel, kv) != 0 ||
        obx_worker_new(f->base, f->st, f->q, &f->cfg, &f->w) != OBX_OK)
        return -1;
    return run_until_cond(f->base, attempt_recorded, NULL) ? 0 : -1;
}

static int
test_accepted_awaits_confirmation(void)
{
    struct fixture f;
    struct obx_worker_stats s;
    TEST_BEGIN;

    CHECK_OK(deliver(&f, 200, "ch/1", NULL));
    CHECK_INT(f.stub.nseen, 1);
    CHECK_INT(f.stub.seen[0].method, EVHTTP_REQ_POST);
    CHECK_STR(f.stub.seen[0].uri, "/v2/custom-channels/ch%2F1/messages");
    CHECK_STR(f.stub.seen[0].api_key, API_KEY);
    CHECK_STR(f.stub.seen[0].content_type, "application/json");
    CHECK(strstr(f.stub.seen[0].body, "\"external_message_id\":\"m-1\""));
    CHECK(strstr(f.stub.seen[0].body, "\"content\":\"bonjour\""));
    CHECK(strstr(f.stub.seen[0].body, "\"sender_type\":\"Consumer\""));
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'accepted' AND attempts = 1 "
                         "AND last_http_status = 200 AND confirm_due_at_ms > accepted_at_ms"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM attempts WHERE http_status = 200 AND "
                               "outcome = 'accepted' AND response_excerpt LIKE '%success%'"),
              1);
    obx_worker_stats(f.w, &s);
    CHECK_INT(s.attempts, 1);
    CHECK_INT(s.accepted, 1);
    CHECK_INT(s.by_outcome[OBX_OUTCOME_ACCEPTED], 1);
end:
    fixture_stop(&f);
    TEST_END;
}

/* On a read-only channel no webhook confirms: nothing is awaited. */
static int
test_readonly_channel_awaits_nothing(void)
{
    static const char *const kv[] = {"readonly_channels", "other,ro", NULL};
    struct fixture f;
    TEST_BEGIN;

    CHECK_OK(deliver(&f, 200, "ro", kv));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'accepted' AND "
                               "confirm_due_at_ms IS NULL"),
              1);
end:
    fixture_stop(&f);
    TEST_END;
}

static int
test_4xx_fails(void)
{
    struct fixture f;
    struct obx_worker_stats s;
    TEST_BEGIN;

    CHECK_OK(deliver(&f, 400, "ch", NULL));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'failed' AND "
                               "last_http_status = 400 AND counted_attempts = 1"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM attempts WHERE outcome = 'fatal'"), 1);
    obx_worker_stats(f.w, &s);
    CHECK_INT(s.failed, 1);
    CHECK_INT(f.stub.nseen, 1);
end:
    fixture_stop(&f);
    TEST_END;
}

/* 5xx: queued again for later, the attempt counted. */
static int
test_5xx_retried_later(void)
{
    static const char *const kv[] = {"retry_base", "1m", "retry_cap", "1h", NULL};
    struct fixture f;
    struct obx_worker_stats s;
    TEST_BEGIN;

    CHECK_OK(deliver(&f, 503, "ch", kv));
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts = 1 "
                         "AND counted_attempts = 1 AND last_http_status = 503"),
              1);
    /* Full jitter within [0, retry_base]: due after the attempt, at most a minute later. */
    CHECK(testdb_int(path,
                     "SELECT o.next_attempt_at_ms - a.started_at_ms FROM outbox o JOIN attempts "
                     "a ON a.message_id = o.id") <= 60000 + 60000);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM attempts WHERE outcome = 'retry'"), 1);
    obx_worker_stats(f.w, &s);
    CHECK_INT(s.retried, 1);
    CHECK_INT(s.server_errors, 1);
end:
    fixture_stop(&f);
    TEST_END;
}

/* 429: not counted, due again no earlier than Retry-After, the key paused. */
static int
test_429_pauses_for_retry_after(void)
{
    struct fixture f;
    struct obx_worker_stats s;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 429, "ch", NULL));
    f.stub.retry_after = "120";
    CHECK_OK(obx_worker_new(f.base, f.st, f.q, &f.cfg, &f.w));
    CHECK(run_until_cond(f.base, attempt_recorded, NULL));
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts = 1 "
                         "AND counted_attempts = 0"),
              1);
    CHECK(testdb_int(path,
                     "SELECT o.next_attempt_at_ms - a.started_at_ms FROM outbox o JOIN attempts "
                     "a ON a.message_id = o.id") >= 120000);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM attempts WHERE outcome = 'rate_limited'"), 1);
    obx_worker_stats(f.w, &s);
    CHECK_INT(s.rate_limited, 1);
    CHECK_STR(s.paused_reason, "rate_limited");
end:
    fixture_stop(&f);
    TEST_END;
}

/* 401: the key is paused, the message waits (not counted). */
static int
test_401_pauses_the_key(void)
{
    struct fixture f;
    struct obx_worker_stats s;
    TEST_BEGIN;

    CHECK_OK(deliver(&f, 401, "ch", NULL));
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts = 1 "
                         "AND counted_attempts = 0"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM attempts WHERE outcome = 'auth'"), 1);
    obx_worker_stats(f.w, &s);
    CHECK_INT(s.auth_failures, 1);
    CHECK_STR(s.paused_reason, "auth");
    CHECK_INT(s.accepted + s.failed, 0);
end:
    fixture_stop(&f);
    TEST_END;
}

static int
stub_got_one(void *arg)
{
    return ((struct stub_server *)arg)->nseen >= 1;
}

/* A stop while Partoo never answers: after the timeout the message goes back to queued. */
static int
test_stop_releases_unanswered(void)
{
    struct fixture f;
    struct obx_worker_stats s;
    int drained = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 0, "ch", NULL)); /* the stub holds every request */
    CHECK_OK(obx_worker_new(f.base, f.st, f.q, &f.cfg, &f.w));
    CHECK(run_until_cond(f.base, stub_got_one, &f.stub));
    obx_worker_stats(f.w, &s);
    CHECK_INT(s.inflight, 1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'sending'"), 1);
    obx_worker_stop(f.w, 50, on_drained, &drained);
    CHECK(run_until_cond(f.base, is_set, &drained));
    obx_storeq_drain(f.q);
    CHECK_INT(drained, 1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'queued' AND "
                               "counted_attempts = 0"),
              1);
    obx_worker_free(f.w);
    f.w = NULL;
end:
    fixture_stop(&f);
    TEST_END;
}

static int
sending_is(void *arg)
{
    long long want = *(int *)arg;

    return testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'sending'") == want;
}

/*
 * A paused channel or tenant (scope): what is claimed ahead and not sent yet goes back to
 * `queued` at once; the request in flight finishes; other channels or tenants (other) are
 * left alone.
 */
static int
release_returns_claimed_ahead(const char *scope, const char *key, const char *other)
{
    static const char *const kv[] = {"max_inflight", "1", NULL};
    struct fixture f;
    struct obx_msg m2 = {"ch", "m-2", "b1", "c2", "deux", "Consumer", NULL, NULL, 0};
    struct obx_msg m3 = {"ch", "m-3", "b1", "c3", "trois", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result res;
    int three = 3, one = 1;
    char sql[200];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 0, "ch", kv)); /* the stub holds every request */
    CHECK_OK(obx_enqueue(f.st, &m2, &res, NULL));
    CHECK_OK(obx_enqueue(f.st, &m3, &res, NULL));
    CHECK_OK(obx_worker_new(f.base, f.st, f.q, &f.cfg, &f.w));
    /* One in flight; the other two claimed ahead (up to 2 x max_inflight wait ready). */
    CHECK(run_until_cond(f.base, stub_got_one, &f.stub));
    CHECK(run_until_cond(f.base, sending_is, &three));
    obx_worker_release_held(f.w, scope, other);
    obx_storeq_drain(f.q);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'sending'"), 3);
    /* As POST /v1/pause does: the pause is committed (claims skip the channel), then the
     * worker lets go of what it holds. */
    snprintf(sql, sizeof sql,
             "INSERT INTO pauses (scope, key, reason, by, paused_at_ms) "
             "VALUES ('%s', '%s', 'test', 'api', 0)",
             scope, key);
    CHECK_INT(testdb_exec(path, sql), SQLITE_OK);
    obx_worker_release_held(f.w, scope, key);
    CHECK(run_until_cond(f.base, sending_is, &one));
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts = 0"),
              2);
    CHECK_INT(f.stub.nseen, 1);
end:
    fixture_stop(&f);
    TEST_END;
}

static int
test_release_channel_returns_claimed_ahead(void)
{
    return release_returns_claimed_ahead("channel", "ch", "other");
}

/* The default lane's tenant is "default". */
static int
test_release_tenant_returns_claimed_ahead(void)
{
    return release_returns_claimed_ahead("tenant", "default", "acme");
}

/* A job that holds the store thread, inside its group, until opened. */
struct blocker {
    struct obx_storeq_job job;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
};

static enum obx_err
run_blocker(struct obx_store *st, void *arg)
{
    struct blocker *b = arg;

    (void)st;
    pthread_mutex_lock(&b->mu);
    while (!b->open)
        pthread_cond_wait(&b->cv, &b->mu);
    pthread_mutex_unlock(&b->mu);
    return OBX_OK;
}

static void
open_blocker(struct blocker *b)
{
    pthread_mutex_lock(&b->mu);
    b->open = 1;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/*
 * The race the pause fence closes: a claim job reads the outbox and commits before the pause
 * does, but the loop hears of the pause before the claim's result. The message it brings is
 * given back (`released: channel paused`), never sent. The claim is held behind a blocking
 * job until the worker has submitted it, then let run and commit while the loop is not run,
 * so that its done callback comes after the pause.
 */
static int
test_pause_fences_a_claim_in_flight(void)
{
    static const char *const kv[] = {"max_inflight", "1", NULL};
    struct fixture f;
    struct blocker b = {.job = {.run = run_blocker, .arg = &b},
                        .mu = PTHREAD_MUTEX_INITIALIZER,
                        .cv = PTHREAD_COND_INITIALIZER};
    int zero = 0, submitted = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "ch", kv));
    obx_storeq_submit(f.q, &b.job);
    submitted = 1;
    CHECK_OK(obx_worker_new(f.base, f.st, f.q, &f.cfg, &f.w));
    event_base_loop(f.base, EVLOOP_ONCE); /* the pump: its claim job waits behind b */
    open_blocker(&b);
    for (int i = 0; i < 500 && !sending_is(&(int){1}); i++)
        usleep(10000); /* the claim commits; its result waits for the loop */
    CHECK(sending_is(&(int){1}));
    CHECK_INT(testdb_exec(path, "INSERT INTO pauses (scope, key, reason, by, paused_at_ms) "
                                "VALUES ('channel', 'ch', 'test', 'api', 0)"),
              SQLITE_OK);
    obx_worker_release_held(f.w, "channel", "ch");
    CHECK(run_until_cond(f.base, sending_is, &zero));
    CHECK_INT(f.stub.nseen, 0);
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts = 0"),
              1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM transitions WHERE reason = "
                               "'released: channel paused'"),
              1);
end:
    if (submitted) {
        open_blocker(&b);
        obx_storeq_drain(f.q);
    }
    fixture_stop(&f);
    TEST_END;
}

static int
five_attempts(void *arg)
{
    (void)arg;
    return testdb_int(path, "SELECT count(*) FROM attempts") >= 5 &&
           testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'sending'") == 0;
}

/*
 * Partoo unreachable: each attempt is a transport error, retried and counted; after five
 * in a row the circuit breaker stops sending (it stays open or half-open: never closed
 * while nothing answers).
 */
static int
test_unreachable_opens_the_circuit(void)
{
    static const char *const kv[] = {"retry_base", "1m", "retry_cap", "1h", NULL};
    struct fixture f;
    struct obx_worker_stats s;
    char url[80];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "ch", kv));
    for (int i = 2; i <= 5; i++) {
        char ext[16], conv[16];
        struct obx_msg m = {"ch", ext, "b1", conv, "x", "Consumer", NULL, NULL, 0};
        enum obx_enqueue_result res;
        snprintf(ext, sizeof ext, "m-%d", i);
        snprintf(conv, sizeof conv, "c%d", i);
        CHECK_OK(obx_enqueue(f.st, &m, &res, NULL));
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v2", f.stub.port);
    stub_free(&f.stub); /* nothing listens there any more */
    CHECK_OK(obx_config_set(&f.cfg, "partoo_base_url", url, OBX_SRC_FLAG, NULL));
    CHECK_OK(obx_worker_new(f.base, f.st, f.q, &f.cfg, &f.w));
    CHECK(run_until_cond(f.base, five_attempts, NULL));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM attempts WHERE outcome <> 'transport' OR "
                               "http_status IS NOT NULL OR error IS NULL"),
              0);
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts = 1"),
              5);
    /* The failure that opens the breaker is an outage: it does not count (SPEC §3). */
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE counted_attempts = 0 AND "
                               "state_reason LIKE '%outage%'"),
              1);
    obx_worker_stats(f.w, &s);
    CHECK(s.transport_errors >= 5);
    CHECK(strcmp(s.circuit, "closed") != 0);
    CHECK_STR(s.paused_reason, "circuit_open");
end:
    fixture_stop(&f);
    TEST_END;
}

static int
test_new_allocation_failures(void)
{
    struct fixture f;
    enum obx_err err = OBX_ENOMEM;
    int failures = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 200, "ch", NULL));
    for (long n = 0; n < 50 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_worker_new(f.base, f.st, f.q, &f.cfg, &f.w);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK_INT(err, OBX_ENOMEM);
            CHECK(f.w == NULL);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    CHECK(run_until_cond(f.base, attempt_recorded, NULL));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'accepted'"), 1);
end:
    obx_mem_fail_after(-1);
    fixture_stop(&f);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"accepted_awaits_confirmation", test_accepted_awaits_confirmation},
        {"readonly_channel_awaits_nothing", test_readonly_channel_awaits_nothing},
        {"4xx_fails", test_4xx_fails},
        {"5xx_retried_later", test_5xx_retried_later},
        {"429_pauses_for_retry_after", test_429_pauses_for_retry_after},
        {"401_pauses_the_key", test_401_pauses_the_key},
        {"stop_releases_unanswered", test_stop_releases_unanswered},
        {"release_channel_returns_claimed_ahead", test_release_channel_returns_claimed_ahead},
        {"release_tenant_returns_claimed_ahead", test_release_tenant_returns_claimed_ahead},
        {"pause_fences_a_claim_in_flight", test_pause_fences_a_claim_in_flight},
        {"unreachable_opens_the_circuit", test_unreachable_opens_the_circuit},
        {"new_allocation_failures", test_new_allocation_failures},
        {NULL, NULL},
    };

    setenv("NO_PROXY", "127.0.0.1", 1);
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, stderr);
    snprintf(path, sizeof path, "/tmp/obx_test_worker_%d.db", (int)getpid());
    return test_run_table(tests, argc, argv);
}
