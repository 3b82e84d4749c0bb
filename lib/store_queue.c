/*
 * store_queue: the store thread (see store_queue.h).
 *
 *   loop thread                        store thread
 *   -----------                        ------------
 *   submit(job) ──▶ todo ──────────▶  take every queued job
 *                  (mutex)             BEGIN IMMEDIATE
 *                                        per job: SAVEPOINT, run(st), RELEASE | ROLLBACK TO
 *                                      COMMIT            (one fsync for the whole group)
 *   done(job)  ◀── done ◀─────────────  hand the jobs back, wake the loop (eventfd)
 *
 * While the thread commits one group, the loop keeps working and queueing the next, which
 * is what pipelines delivery: outcomes of one round are written while the next round is
 * in flight. A job that fails rolls back its own savepoint only; a COMMIT that fails (disk
 * full, lock held elsewhere) fails every job of the group, and each owner retries or
 * answers 503 as it did when it committed by itself.
 *
 * Jobs flagged OBX_STOREQ_OWN_TX (retention steps, WAL checkpoints) manage their own
 * transactions and run between groups, in submission order.
 */
#include "store_queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "pg.h"

#define OBX_MODULE "store_queue"

/*
 * How long a group's BEGIN waits for another process's write lock (the CLI, a producer's
 * own SQL). Off the loop, waiting costs no request anything but its own latency.
 */
#define GROUP_BUSY_MS 1000

struct obx_storeq {
    struct obx_store *st;    /* owned by the store thread once started */
    struct event_base *base; /* the loop's */
    struct event *wake_ev;   /* loop side of wake_fd */
    int wake_fd;             /* eventfd: the thread says "done has jobs" */
    pthread_t thread;
    int started;

    /* Everything below is guarded by `lock`. */
    pthread_mutex_t lock;
    pthread_cond_t work_cv; /* todo has jobs, or stop */
    pthread_cond_t idle_cv; /* a batch finished (drain and sync callers wait on it) */
    struct obx_storeq_job *todo, *todo_tail; /* submitted, not yet taken */
    struct obx_storeq_job *done, *done_tail; /* run, waiting for the loop */
    int busy;                                /* the thread is running a batch it took */
    int stop;
    struct obx_storeq_stats stats;
};

/* ---- the store thread ------------------------------------------------------------------ */

/* Runs one job at a new savepoint; its writes stay only if it succeeded. */
static enum obx_err
run_in_savepoint(struct obx_store *st, struct obx_storeq_job *j)
{
    enum obx_err err = obx_db_begin(st->db);

    if (err == OBX_OK)
        err = obx_db_end(st->db, j->run(st, j->arg));
    return err;
}

/*
 * Runs jobs from j up to (not including) the next OWN_TX job in one transaction; returns
 * that next job. Sets every job's err: its own result, or the group's failure.
 */
static struct obx_storeq_job *
run_group(struct obx_storeq *q, struct obx_storeq_job *first, int64_t *njobs, int *failed)
{
    struct obx_db *db = q->st->db;
    struct obx_storeq_job *j, *end;
    enum obx_err err;

    if (db->in_tx)
        obx_db_abort(db); /* a job that left a level open must not swallow this group */
    err = obx_db_begin(db);
    for (j = first; j && !(j->flags & OBX_STOREQ_OWN_TX); j = j->next) {
        (*njobs)++;
        if (err != OBX_OK) {
            j->err = err;
            continue;
        }
        j->err = run_in_savepoint(q->st, j);
        /* Some errors (disk full, I/O) make SQLite end the whole transaction itself:
         * what the jobs before this one wrote is gone too. A job that left a level of
         * its own open would turn the group's COMMIT into a RELEASE: fail the group. */
        if (!obx_db_tx_alive(db) || db->in_tx != 1)
            err = j->err != OBX_OK ? j->err : OBX_EDB;
    }
    end = j;
    if (err == OBX_OK)
        err = obx_db_commit(db);
    else
        obx_db_abort(db);
    *failed = err != OBX_OK;
    if (err != OBX_OK) {
        for (j = first; j != end; j = j->next)
            if (j->err == OBX_OK)
                j->err = err;
    }
    return end;
}

/*
 * PostgreSQL: the same group commit, of jobs up to OBX_STOREQ_PG_GROUP_WEIGHT conversations
 * (the rest go in the next group). A connection lost meanwhile is opened again first; a
 * group that finds none fails (and each job's owner tries again, as after a failed commit).
 * Each store_pg call works at a savepoint of the group's transaction (pg.h).
 */
static struct obx_storeq_job *
run_group_pg(struct obx_storeq *q, struct obx_storeq_job *first, int64_t *njobs, int *failed)
{
    struct obx_pg *pg = q->st->pg;
    struct obx_storeq_job *j, *end;
    enum obx_err err = obx_pg_revive(pg);
    int64_t weight = 0;

    if (err == OBX_OK)
        err = obx_pg_group_begin(pg);
    for (j = first; j && !(j->flags & OBX_STOREQ_OWN_TX); j = j->next) {
        int64_t w = j->weight > 0 ? j->weight : 1;
        if (j != first && weight + w > OBX_STOREQ_PG_GROUP_WEIGHT)
            break;
        weight += w;
        (*njobs)++;
        j->err = err != OBX_OK ? err : j->run(q->st, j->arg);
    }
    end = j;
    if (err == OBX_OK)
        err = obx_pg_group_commit(pg);
    else if (obx_pg_in_group(pg))
        obx_pg_group_abort(pg);
    *failed = err != OBX_OK;
    for (j = first; err != OBX_OK && j != end; j = j->next)
        if (j->err == OBX_OK)
            j->err = err;
    return end;
}

static void
run_batch(struct obx_storeq *q, struct obx_storeq_job *batch, struct obx_storeq_stats *s)
{
    struct obx_storeq_job *j = batch;

    while (j) {
        if (!q->st->db && (j->flags & OBX_STOREQ_OWN_TX)) {
            /* A read of the API: outside every group, so it sees only what is committed. */
            j->err = obx_pg_revive(q->st->pg);
            if (j->err == OBX_OK)
                j->err = j->run(q->st, j->arg);
            s->jobs++;
            j = j->next;
            continue;
        }
        if (!q->st->db) {
            int64_t n = 0;
            int failed = 0;
            j = run_group_pg(q, j, &n, &failed);
            s->groups++;
            s->failed_groups += failed;
            s->jobs += n;
            if (n > s->max_group)
                s->max_group = n;
            continue;
        }
        if (j->flags & OBX_STOREQ_OWN_TX) {
            j->err = j->run(q->st, j->arg);
            if (q->st->db->in_tx && j->err == OBX_OK)
                j->err = OBX_EDB; /* it promised to end its own transactions */
            if (q->st->db->in_tx)
                obx_db_abort(q->st->db);
            s->jobs++;
            j = j->next;
            continue;
        }
        int64_t n = 0;
        int failed = 0;
        j = run_group(q, j, &n, &failed);
        s->groups++;
        s->failed_groups += failed;
        s->jobs += n;
        if (n > s->max_group)
            s->max_group = n;
    }
}

static void
wake_loop(struct obx_storeq *q)
{
    uint64_t one = 1;

    /* EAGAIN: the counter is full, i.e. the loop has a wake-up pending anyway. */
    while (write(q->wake_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void *
store_thread(void *arg)
{
    struct obx_storeq *q = arg;

    for (;;) {
        struct obx_storeq_job *batch, *j, *next;
        struct obx_storeq_stats s = {0};
        int wake = 0;

        pthread_mutex_lock(&q->lock);
        while (!q->todo && !q->stop)
            pthread_cond_wait(&q->work_cv, &q->lock);
        if (!q->todo && q->stop) {
            pthread_mutex_unlock(&q->lock);
            break;
        }
        batch = q->todo;
        q->todo = q->todo_tail = NULL;
        q->busy = 1;
        pthread_mutex_unlock(&q->lock);

        run_batch(q, batch, &s);

        pthread_mutex_lock(&q->lock);
        q->stats.groups += s.groups;
        q->stats.jobs += s.jobs;
        q->stats.failed_groups += s.failed_groups;
        if (s.max_group > q->stats.max_group)
            q->stats.max_group = s.max_group;
        for (j = batch; j; j = next) {
            next = j->next;
            j->next = NULL;
            if (j->sync_done == -1) {
                /* obx_storeq_call waits for it on idle_cv; once set, j may be gone. */
                j->sync_done = 1;
                continue;
            }
            if (!q->done)
                wake = 1;
            if (q->done_tail)
                q->done_tail->next = j;
            else
                q->done = j;
            q->done_tail = j;
        }
        q->busy = 0;
        pthread_cond_broadcast(&q->idle_cv);
        pthread_mutex_unlock(&q->lock);
        if (wake)
            wake_loop(q);
    }
    return NULL;
}

/* ---- the loop's side ---------------------------------------------------------------------- */

static struct obx_storeq_job *
take_done(struct obx_storeq *q)
{
    struct obx_storeq_job *list;

    pthread_mutex_lock(&q->lock);
    list = q->done;
    q->done = q->done_tail = NULL;
    pthread_mutex_unlock(&q->lock);
    return list;
}

static void
call_done(struct obx_storeq_job *list)
{
    while (list) {
        struct obx_storeq_job *next = list->next;
        /* The callback may free or resubmit the job: read next first. */
        if (list->done)
            list->done(list->arg, list->err);
        list = next;
    }
}

static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct obx_storeq *q = arg;
    uint64_t n;

    (void)what;
    while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
        ;
    call_done(take_done(q));
}

static void
submit(struct obx_storeq *q, struct obx_storeq_job *job, int sync)
{
    job->next = NULL;
    job->err = OBX_OK;
    job->sync_done = sync ? -1 : 0;
    pthread_mutex_lock(&q->lock);
    if (q->todo_tail)
        q->todo_tail->next = job;
    else
        q->todo = job;
    q->todo_tail = job;
    pthread_cond_signal(&q->work_cv);
    pthread_mutex_unlock(&q->lock);
}

void
obx_storeq_submit(struct obx_storeq *q, struct obx_storeq_job *job)
{
    submit(q, job, 0);
}

enum obx_err
obx_storeq_call(struct obx_storeq *q, obx_storeq_run_fn run, void *arg)
{
    struct obx_storeq_job job = {.run = run, .arg = arg};

    submit(q, &job, 1);
    pthread_mutex_lock(&q->lock);
    while (job.sync_done != 1)
        pthread_cond_wait(&q->idle_cv, &q->lock);
    pthread_mutex_unlock(&q->lock);
    return job.err;
}

void
obx_storeq_drain(struct obx_storeq *q)
{
    for (;;) {
        struct obx_storeq_job *list;

        pthread_mutex_lock(&q->lock);
        while (q->todo || q->busy)
            pthread_cond_wait(&q->idle_cv, &q->lock);
        list = q->done;
        q->done = q->done_tail = NULL;
        pthread_mutex_unlock(&q->lock);
        if (!list)
            return;
        call_done(list); /* may submit more: go round again */
    }
}

void
obx_storeq_stats(struct obx_storeq *q, struct obx_storeq_stats *out)
{
    pthread_mutex_lock(&q->lock);
    *out = q->stats;
    pthread_mutex_unlock(&q->lock);
}

enum obx_err
obx_storeq_new(struct event_base *base, struct obx_store *st, struct obx_storeq **out)
{
    struct obx_storeq *q = obx_calloc(1, sizeof *q);

    *out = NULL;
    if (!q) {
        obx_store_free(st);
        return OBX_ENOMEM;
    }
    q->st = st;
    q->base = base;
    q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->work_cv, NULL);
    pthread_cond_init(&q->idle_cv, NULL);
    if (q->wake_fd >= 0)
        q->wake_ev = event_new(base, q->wake_fd, EV_READ | EV_PERSIST, on_wake, q);
    if (!q->wake_ev || event_add(q->wake_ev, NULL) != 0) {
        obx_storeq_free(q);
        return OBX_ENOMEM;
    }
    obx_store_set_busy_timeout(st, GROUP_BUSY_MS);
    if (pthread_create(&q->thread, NULL, store_thread, q) != 0) {
        obx_storeq_free(q);
        return OBX_ENOMEM;
    }
    q->started = 1;
    *out = q;
    return OBX_OK;
}

void
obx_storeq_free(struct obx_storeq *q)
{
    if (!q)
        return;
    if (q->started) {
        obx_storeq_drain(q);
        pthread_mutex_lock(&q->lock);
        q->stop = 1;
        pthread_cond_signal(&q->work_cv);
        pthread_mutex_unlock(&q->lock);
        pthread_join(q->thread, NULL);
    }
    if (q->wake_ev)
        event_free(q->wake_ev);
    if (q->wake_fd >= 0)
        close(q->wake_fd);
    pthread_cond_destroy(&q->idle_cv);
    pthread_cond_destroy(&q->work_cv);
    pthread_mutex_destroy(&q->lock);
    obx_store_free(q->st);
    obx_free(q);
}
