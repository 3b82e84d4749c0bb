/* verify_pool: webhook signature checks off the event loop. See verify_pool.h. */
#include "verify_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"

#define OBX_MODULE "verify_pool"
#define MAX_THREADS 4

/* A FIFO of jobs linked through job->next. */
struct job_queue {
    struct obx_verify_job *head, *tail;
};

struct obx_verify_pool {
    pthread_mutex_t lock;      /* guards the queues and stopping */
    pthread_cond_t work;       /* signalled when todo gains a job or stopping is set */
    pthread_rwlock_t key_lock; /* read-held while verifying; written to swap the key */
    struct obx_verifier *verifier;
    struct job_queue todo, done;
    int stopping;
    int idle; /* workers waiting on work: submit signals only then */
    pthread_t threads[MAX_THREADS];
    int nthreads;
    int wake_fd[2]; /* workers write a byte when done goes from empty to not */
    struct event *wake_ev;
    obx_verify_done_fn done_fn;
    void *done_arg;
};

static void
queue_push(struct job_queue *q, struct obx_verify_job *job)
{
    job->next = NULL;
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
}

static struct obx_verify_job *
queue_pop(struct job_queue *q)
{
    struct obx_verify_job *job = q->head;

    if (job) {
        q->head = job->next;
        if (!q->head)
            q->tail = NULL;
        job->next = NULL;
    }
    return job;
}

/* Takes the whole queue, leaving it empty. */
static struct obx_verify_job *
queue_take(struct job_queue *q)
{
    struct obx_verify_job *all = q->head;

    q->head = q->tail = NULL;
    return all;
}

static void
verify(struct obx_verify_pool *p, struct obx_verify_job *job)
{
    int valid;

    pthread_rwlock_rdlock(&p->key_lock);
    valid = job->sig && obx_signature_verifier_check(p->verifier, job->body, job->len, job->sig);
    pthread_rwlock_unlock(&p->key_lock);
    if (!valid)
        job->verdict = OBX_VERIFY_FORGED;
    else if (obx_signature_sha256_hex(job->body, job->len, job->sha) != OBX_OK)
        job->verdict = OBX_VERIFY_NOMEM;
    else
        job->verdict = OBX_VERIFY_VALID;
}

static void
wake_loop(struct obx_verify_pool *p)
{
    char c = 1;

    /* A full pipe already holds a pending wake-up: EAGAIN loses nothing. */
    while (write(p->wake_fd[1], &c, 1) < 0 && errno == EINTR)
        ;
}

/*
 * Takes up to BATCH jobs per lock round and wakes the loop outside the lock: the
 * loop thread must never wait for the mutex while a worker is in a syscall.
 */
#define BATCH 16

static void *
worker_main(void *arg)
{
    struct obx_verify_pool *p = arg;
    struct obx_verify_job *batch[BATCH];
    int n, was_empty;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        p->idle++;
        while (!p->stopping && !p->todo.head)
            pthread_cond_wait(&p->work, &p->lock);
        p->idle--;
        if (p->stopping)
            break;
        for (n = 0; n < BATCH && p->todo.head; n++)
            batch[n] = queue_pop(&p->todo);
        pthread_mutex_unlock(&p->lock);

        for (int i = 0; i < n; i++)
            verify(p, batch[i]);

        pthread_mutex_lock(&p->lock);
        was_empty = p->done.head == NULL;
        for (int i = 0; i < n; i++)
            queue_push(&p->done, batch[i]);
        /* One byte per batch: the loop drains the whole done queue per wake-up. */
        if (was_empty) {
            pthread_mutex_unlock(&p->lock);
            wake_loop(p);
            pthread_mutex_lock(&p->lock);
        }
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Loop side: hands every finished job to done(), in the order they finished. */
static void
on_wake(evutil_socket_t fd, short what, void *arg)
{
    struct obx_verify_pool *p = arg;
    struct obx_verify_job *job, *next;
    char drain[64];

    (void)what;
    while (read(fd, drain, sizeof drain) > 0)
        ;
    pthread_mutex_lock(&p->lock);
    job = queue_take(&p->done);
    pthread_mutex_unlock(&p->lock);
    for (; job; job = next) {
        next = job->next;
        job->next = NULL;
        p->done_fn(job, p->done_arg);
    }
}

int
obx_verify_pool_default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    if (cpus <= 2)
        return 1;
    return cpus - 1 > MAX_THREADS ? MAX_THREADS : (int)(cpus - 1);
}

static int
make_wake_pipe(int fd[2])
{
    if (pipe(fd) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        if (fcntl(fd[i], F_SETFL, O_NONBLOCK) != 0 || fcntl(fd[i], F_SETFD, FD_CLOEXEC) != 0) {
            close(fd[0]);
            close(fd[1]);
            return -1;
        }
    }
    return 0;
}

enum obx_err
obx_verify_pool_new(struct event_base *base, int threads, struct obx_verifier *v,
                    obx_verify_done_fn done, void *arg, struct obx_verify_pool **out)
{
    struct obx_verify_pool *p;

    *out = NULL;
    p = obx_calloc(1, sizeof *p);
    if (!p) {
        obx_signature_verifier_free(v);
        return OBX_ENOMEM;
    }
    p->verifier = v;
    p->done_fn = done;
    p->done_arg = arg;
    p->wake_fd[0] = p->wake_fd[1] = -1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_rwlock_init(&p->key_lock, NULL);
    if (make_wake_pipe(p->wake_fd) != 0) {
        p->wake_fd[0] = p->wake_fd[1] = -1;
        obx_verify_pool_free(p);
        return OBX_EIO;
    }
    p->wake_ev = event_new(base, p->wake_fd[0], EV_READ | EV_PERSIST, on_wake, p);
    if (!p->wake_ev || event_add(p->wake_ev, NULL) != 0) {
        obx_verify_pool_free(p);
        return OBX_ENOMEM;
    }
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    for (; p->nthreads < threads; p->nthreads++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, worker_main, p) != 0) {
            obx_log(OBX_LOG_ERROR, "cannot start a signature verification thread");
            obx_verify_pool_free(p);
            return OBX_ENOMEM;
        }
    }
    *out = p;
    return OBX_OK;
}

void
obx_verify_pool_free(struct obx_verify_pool *p)
{
    struct obx_verify_job *job, *next;

    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);

    /* Workers are gone: finished jobs first (their verdicts stand), then the rest. */
    for (job = queue_take(&p->done); job; job = next) {
        next = job->next;
        p->done_fn(job, p->done_arg);
    }
    for (job = queue_take(&p->todo); job; job = next) {
        next = job->next;
        job->verdict = OBX_VERIFY_CANCELLED;
        p->done_fn(job, p->done_arg);
    }
    if (p->wake_ev)
        event_free(p->wake_ev);
    if (p->wake_fd[0] >= 0) {
        close(p->wake_fd[0]);
        close(p->wake_fd[1]);
    }
    obx_signature_verifier_free(p->verifier);
    pthread_rwlock_destroy(&p->key_lock);
    pthread_cond_destroy(&p->work);
    pthread_mutex_destroy(&p->lock);
    obx_free(p);
}

void
obx_verify_pool_submit(struct obx_verify_pool *p, struct obx_verify_job *job)
{
    pthread_mutex_lock(&p->lock);
    queue_push(&p->todo, job);
    /* A busy worker comes back for more by itself; waking costs the loop a syscall. */
    if (p->idle)
        pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
}

void
obx_verify_pool_set_verifier(struct obx_verify_pool *p, struct obx_verifier *v)
{
    struct obx_verifier *old;

    pthread_rwlock_wrlock(&p->key_lock);
    old = p->verifier;
    p->verifier = v;
    pthread_rwlock_unlock(&p->key_lock);
    obx_signature_verifier_free(old);
}

void
obx_verify_pool_job_free(struct obx_verify_job *job)
{
    if (!job)
        return;
    obx_free(job->body);
    obx_free(job->sig);
    obx_free(job);
}
