/*
 * Unit tests of store_queue, the store thread: jobs queued while the thread is busy share
 * one transaction (group commit); a failing job rolls back only its own writes; a group
 * whose transaction SQLite ended fails every job in it; done callbacks come back on the
 * loop thread in submission order, only after COMMIT; obx_storeq_call waits for its commit;
 * drain runs what is left. Written against the store interface, as a second backend would run it.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mem.h"
#include "query.h"
#include "store.h"
#include "store_queue.h"
#include "testdb.h"

static char path[256];

static struct obx_store *
open_store(void)
{
    struct obx_store *st = NULL;

    return obx_store_open(path, NULL, &st) == OBX_OK ? st : NULL;
}

/* A job writes service_state[key] = value; fail makes it return an error afterwards. */
struct job {
    struct obx_storeq_job sj;
    char key[32];
    int fail;            /* return OBX_EINVAL after writing */
    int end_tx;          /* roll back the whole transaction, as SQLite does on a full disk */
    atomic_int *gate;    /* wait until *gate != 0 before running (keeps the thread busy) */
    atomic_int *started; /* set when run begins (the thread is inside this job) */
    int *order;          /* done appends its index here */
    int *ndone;
    int idx;
    enum obx_err err;
    int called;
};

static enum obx_err
run_job(struct obx_store *st, void *arg)
{
    struct job *j = arg;
    const char *keys[1] = {j->key};
    const char *values[1] = {"v"};
    enum obx_err err;

    if (j->started)
        atomic_store(j->started, 1);
    while (j->gate && !atomic_load(j->gate))
        usleep(1000);
    err = obx_store_publish_state(st, keys, values, 1);
    if (err == OBX_OK && j->end_tx)
        obx_db_abort(st->db);
    return err == OBX_OK && j->fail ? OBX_EINVAL : err;
}

static void
on_job_done(void *arg, enum obx_err err)
{
    struct job *j = arg;

    j->err = err;
    j->called++;
    j->order[(*j->ndone)++] = j->idx;
}

static void
init_job(struct job *j, int idx, int *order, int *ndone)
{
    memset(j, 0, sizeof *j);
    snprintf(j->key, sizeof j->key, "k%d", idx);
    j->idx = idx;
    j->order = order;
    j->ndone = ndone;
    j->sj.run = run_job;
    j->sj.done = on_job_done;
    j->sj.arg = j;
}

/* 1 when service_state has key, read through another connection (so: committed). */
struct find {
    const char *key;
    int found;
};

static int
on_state(void *ctx, const char *key, const char *value, int64_t at_ms)
{
    struct find *f = ctx;

    (void)value;
    (void)at_ms;
    if (strcmp(key, f->key) == 0)
        f->found = 1;
    return 0;
}

static int
committed(const char *key)
{
    struct obx_store *rd = open_store();
    struct find f = {key, 0};

    if (!rd)
        return -1;
    if (obx_query_service_state(rd, on_state, &f) != OBX_OK)
        f.found = -1;
    obx_store_free(rd);
    return f.found;
}

/* Runs the loop until n done callbacks came back (bounded: 10 s). */
static void
run_until(struct event_base *base, const int *ndone, int n)
{
    for (int i = 0; i < 10000 && *ndone < n; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
}

#define N 40

static int
test_group_commit(void)
{
    struct event_base *base = event_base_new();
    struct obx_storeq *q = NULL;
    struct obx_storeq_stats s;
    static struct job jobs[N];
    int order[N], ndone = 0;
    atomic_int gate = 0, started = 0;
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(obx_storeq_new(base, open_store(), &q));
    for (int i = 0; i < N; i++)
        init_job(&jobs[i], i, order, &ndone);
    jobs[0].gate = &gate; /* the thread is busy with job 0 while 1..N-1 are queued */
    jobs[0].started = &started;
    jobs[7].fail = 1;
    obx_storeq_submit(q, &jobs[0].sj);
    for (int i = 0; i < 10000 && !atomic_load(&started); i++)
        usleep(1000);
    for (int i = 1; i < N; i++)
        obx_storeq_submit(q, &jobs[i].sj);
    atomic_store(&gate, 1);
    run_until(base, &ndone, N);
    CHECK_INT(ndone, N);
    for (int i = 0; i < N; i++) {
        CHECK_INT(jobs[i].called, 1);
        CHECK_INT(order[i], i); /* done in submission order */
        CHECK_INT(jobs[i].err, i == 7 ? OBX_EINVAL : OBX_OK);
    }
    obx_storeq_stats(q, &s);
    CHECK_INT(s.jobs, N);
    CHECK_INT(s.max_group, N - 1); /* everything queued behind job 0 shared one commit */
    CHECK_INT(s.groups, 2);
    CHECK_INT(committed("k3"), 1);
    CHECK_INT(committed("k7"), 0); /* the failed job's own write was rolled back */
    CHECK_INT(committed("k8"), 1);
end:
    obx_storeq_free(q);
    if (base)
        event_base_free(base);
    testdb_remove(path);
    TEST_END;
}

static int
test_broken_transaction_fails_the_group(void)
{
    struct event_base *base = event_base_new();
    struct obx_storeq *q = NULL;
    static struct job jobs[4];
    int order[8], ndone = 0; /* 4 jobs, then one more */
    atomic_int gate = 0;
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(obx_storeq_new(base, open_store(), &q));
    for (int i = 0; i < 4; i++)
        init_job(&jobs[i], i, order, &ndone);
    jobs[0].gate = &gate;
    jobs[2].end_tx = 1; /* ends the transaction under jobs 1 and 3 too */
    for (int i = 0; i < 4; i++)
        obx_storeq_submit(q, &jobs[i].sj);
    atomic_store(&gate, 1);
    run_until(base, &ndone, 4);
    CHECK_INT(ndone, 4);
    /* Job 0 ran alone (the thread took it before the others were queued), or with them. */
    for (int i = 1; i < 4; i++)
        CHECK(jobs[i].err != OBX_OK);
    CHECK_INT(committed("k1"), 0); /* told it failed, and indeed not written */
    CHECK_INT(committed("k3"), 0);
    /* The thread carries on with a fresh transaction. */
    init_job(&jobs[1], 11, order, &ndone);
    obx_storeq_submit(q, &jobs[1].sj);
    run_until(base, &ndone, 5);
    CHECK_INT(jobs[1].err, OBX_OK);
    CHECK_INT(committed("k11"), 1);
end:
    obx_storeq_free(q);
    if (base)
        event_base_free(base);
    testdb_remove(path);
    TEST_END;
}

static enum obx_err
run_write_sync(struct obx_store *st, void *arg)
{
    const char *keys[1] = {arg};
    const char *values[1] = {"v"};

    return obx_store_publish_state(st, keys, values, 1);
}

static int
test_call_waits_for_commit_and_drain_runs_the_rest(void)
{
    struct event_base *base = event_base_new();
    struct obx_storeq *q = NULL;
    static struct job jobs[3];
    int order[3], ndone = 0;
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(obx_storeq_new(base, open_store(), &q));
    CHECK_OK(obx_storeq_call(q, run_write_sync, "sync"));
    CHECK_INT(committed("sync"), 1); /* visible to another connection at return */
    for (int i = 0; i < 3; i++) {
        init_job(&jobs[i], 20 + i, order, &ndone);
        obx_storeq_submit(q, &jobs[i].sj);
    }
    obx_storeq_drain(q); /* no loop turn: drain itself calls the done callbacks */
    CHECK_INT(ndone, 3);
    CHECK_INT(committed("k22"), 1);
end:
    obx_storeq_free(q);
    if (base)
        event_base_free(base);
    testdb_remove(path);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"group_commit", test_group_commit},
        {"broken_transaction_fails_the_group", test_broken_transaction_fails_the_group},
        {"call_waits_for_commit_and_drain_runs_the_rest",
         test_call_waits_for_commit_and_drain_runs_the_rest},
        {NULL, NULL},
    };

    snprintf(path, sizeof path, "/tmp/obx_test_store_queue_%d.db", (int)getpid());
    testdb_remove(path);
    return test_run_table(tests, argc, argv);
}
