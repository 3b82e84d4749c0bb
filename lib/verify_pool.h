/*
 * verify_pool: Ed25519 verification of webhook bodies on worker threads.
 *
 * Verifying a signature costs 70-130 µs of CPU, more than everything else the
 * webhook listener does for an event put together. Done on the event loop it
 * capped the listener near one core's worth of verifications; here the loop
 * only hands the body over and later gets the verdict back, so verification
 * runs on the other cores and the loop stays free for HTTP and SQLite.
 *
 * Life of a job (every arrow is a hand-off of ownership):
 *
 *     loop: obx_verify_pool_submit ──> todo queue ──> worker thread verifies,
 *           hashes the body ──> done queue ──> wake-up pipe ──> loop: done()
 *
 * done() always runs on the loop thread, once per submitted job, and owns the
 * job from then on. Threads never touch libevent or SQLite: only the two
 * queues, under one mutex.
 */
#ifndef OBX_VERIFY_POOL_H
#define OBX_VERIFY_POOL_H

#include <event2/event.h>
#include <stddef.h>

#include "outbox.h"
#include "signature.h"

enum obx_verify_verdict {
    OBX_VERIFY_VALID = 0, /* signature good; sha holds the body's SHA-256 */
    OBX_VERIFY_FORGED,    /* missing, malformed or wrong signature */
    OBX_VERIFY_NOMEM,     /* OpenSSL could not allocate while hashing */
    OBX_VERIFY_CANCELLED, /* the pool was freed before the job ran */
};

/* One request's worth of work. The pool never looks at ctx. */
struct obx_verify_job {
    struct obx_verify_job *next; /* private to the pool */
    void *ctx;                   /* the caller's (the evhttp request) */
    char *body;                  /* owned by the job's owner */
    size_t len;
    char *sig;                       /* the header value, copied; NULL when absent */
    enum obx_verify_verdict verdict; /* OUT, set before done() */
    char sha[65];                    /* OUT, when verdict is VALID */
};

typedef void (*obx_verify_done_fn)(struct obx_verify_job *job, void *arg);

struct obx_verify_pool;

/*
 * Starts threads (>= 1) workers verifying with v, which the pool takes over
 * (also on failure). done(job, arg) is called on base's thread.
 */
OBX_MUST_CHECK enum obx_err obx_verify_pool_new(struct event_base *base, int threads,
                                                struct obx_verifier *v, obx_verify_done_fn done,
                                                void *arg, struct obx_verify_pool **out /* OUT */);

/*
 * Stops and joins the workers. Jobs not yet handed back go to done() with
 * OBX_VERIFY_CANCELLED, from within this call.
 */
void obx_verify_pool_free(struct obx_verify_pool *p);

/* Queues job (the pool owns it until done()). Never blocks on a verification. */
void obx_verify_pool_submit(struct obx_verify_pool *p, struct obx_verify_job *job);

/*
 * Replaces the key (the pool takes v over). Waits for verifications running
 * under the old key, then frees it; jobs not started yet use v.
 */
void obx_verify_pool_set_verifier(struct obx_verify_pool *p, struct obx_verifier *v);

/* A sensible worker count for this machine: the online CPUs minus the loop's, 1 to 4. */
int obx_verify_pool_default_threads(void);

/* Frees a job and everything it owns. NULL is fine. */
void obx_verify_pool_job_free(struct obx_verify_job *job);

#endif
