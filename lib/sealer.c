/* sealer: serve's audit sealer, a thread of its own (sealer.h). */
#define OBX_MODULE "audit"
#include "sealer.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "log.h"
#include "mem.h"
#include "pg.h"
#include "store.h"
#include "store_pg.h"
#include "store_queue.h"

/*
 * Events per seal before the next one follows at once. A busy drain writes ~35,000 audit
 * rows a second; sealing them in one step held the store thread (and every commit behind
 * it) for 100-250 ms, long enough to fill every send slot and cost 2,000 paced tenants a
 * tenth of their tokens.
 */
#define SEAL_BATCH 4000
#define SEAL_EVERY_MS 1000
/* The SQLite reader's page cache: it reads the tables' newest pages. */
#define READER_CACHE_KIB 1024

struct obx_sealer {
    pthread_t thread;
    struct obx_store *st; /* the thread's own: PostgreSQL, its connection; SQLite, a reader */
    struct obx_storeq *q; /* SQLite: the store thread, which writes the seals; else NULL */
    pthread_mutex_t lock; /* guards stopping */
    pthread_cond_t cond;  /* signalled on stop */
    int stopping;
};

/* ---- SQLite: prepare and finish on the store thread, the chain here ------------------- */

struct seal_step {
    struct obx_audit_seal_plan plan;
    int64_t sealed;
};

static enum obx_err
run_prepare(struct obx_store *st, void *arg)
{
    struct seal_step *x = arg;

    return obx_audit_seal_prepare(st, SEAL_BATCH, &x->plan);
}

static enum obx_err
run_finish(struct obx_store *st, void *arg)
{
    struct seal_step *x = arg;

    return obx_audit_seal_finish(st, &x->plan, &x->sealed);
}

static enum obx_err
seal_sqlite(struct obx_sealer *s, int64_t *sealed)
{
    struct seal_step x;
    enum obx_err err;

    memset(&x, 0, sizeof x);
    err = obx_storeq_call(s->q, run_prepare, &x);
    /* The store thread committed prepare: this connection's next read sees it. */
    if (err == OBX_OK && x.plan.any)
        err = obx_audit_seal_chain(s->st, &x.plan);
    obx_store_end_reads(s->st);
    /* Nothing new (an idle outbox, each second): finish has nothing to write. */
    if (err == OBX_OK && x.plan.any)
        err = obx_storeq_call(s->q, run_finish, &x);
    else if (err == OBX_OK)
        x.sealed = x.plan.sealed;
    *sealed = err == OBX_OK ? x.sealed : 0;
    return err;
}

/* ---- the thread -------------------------------------------------------------------------- */

/* One seal; 1 when it was full (more to seal at once). */
static int
seal_once(struct obx_sealer *s, int *warned)
{
    int64_t sealed = 0;
    enum obx_err err;

    if (s->q) {
        err = seal_sqlite(s, &sealed);
    } else {
        err = obx_pg_revive(s->st->pg);
        if (err == OBX_OK)
            err = obx_audit_seal(s->st, SEAL_BATCH, &sealed);
    }
    if (err != OBX_OK && !*warned)
        obx_log(OBX_LOG_WARN, "cannot seal the audit log; will retry",
                OBX_KS("error", obx_strerror(err)));
    *warned = err != OBX_OK;
    return err == OBX_OK && sealed >= SEAL_BATCH;
}

static void *
sealer_thread(void *arg)
{
    struct obx_sealer *s = arg;
    int warned = 0;

    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec until;
        int more;
        pthread_mutex_unlock(&s->lock);
        more = seal_once(s, &warned);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += SEAL_EVERY_MS / 1000;
        pthread_mutex_lock(&s->lock);
        while (!more && !s->stopping && pthread_cond_timedwait(&s->cond, &s->lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* Takes the key into s->st and starts the thread; frees s on failure. */
static enum obx_err
start(struct obx_sealer *s, enum obx_err err, const char *key_file, int may_start,
      struct obx_sealer **out, char *errmsg, size_t n)
{
    if (err == OBX_OK && key_file)
        err = obx_audit_use_key(s->st, key_file, may_start, errmsg, n);
    if (err == OBX_OK && pthread_create(&s->thread, NULL, sealer_thread, s) != 0) {
        snprintf(errmsg, n, "cannot start the sealer's thread");
        err = OBX_ENOMEM;
    }
    if (err != OBX_OK) {
        obx_store_free(s->st);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        obx_free(s);
        return err;
    }
    *out = s;
    return OBX_OK;
}

static struct obx_sealer *
sealer_new(void)
{
    struct obx_sealer *s = obx_calloc(1, sizeof *s);

    if (s) {
        pthread_mutex_init(&s->lock, NULL);
        pthread_cond_init(&s->cond, NULL);
    }
    return s;
}

enum obx_err
obx_sealer_start_pg(const char *uri, const char *schema, const char *node, const char *key_file,
                    struct obx_sealer **out, char *errmsg, size_t n)
{
    struct obx_sealer *s = sealer_new();
    enum obx_err err;

    *out = NULL;
    if (!s)
        return OBX_ENOMEM;
    err = obx_store_pg_open_store(uri, schema, node, 1, &s->st, errmsg, n);
    /* serve may start the keyed segment (audit.h); the check is server.c's. */
    return start(s, err, key_file, 1, out, errmsg, n);
}

enum obx_err
obx_sealer_start_sqlite(const char *path, struct obx_storeq *q, const char *key_file,
                        struct obx_sealer **out, char *errmsg, size_t n)
{
    struct obx_store_opts o = {
        .no_migrate = 1, .cache_kib = READER_CACHE_KIB, .busy_timeout_ms = 1000};
    struct obx_sealer *s = sealer_new();
    enum obx_err err;

    *out = NULL;
    if (!s)
        return OBX_ENOMEM;
    s->q = q;
    err = obx_store_open(path, &o, &s->st);
    if (err == OBX_OK)
        err = obx_store_forbid_writes(s->st);
    if (err != OBX_OK)
        snprintf(errmsg, n, "cannot open the database: %s", obx_strerror(err));
    /* Only the writer starts the keyed segment (in prepare); this store chains with it. */
    return start(s, err, key_file, 0, out, errmsg, n);
}

void
obx_sealer_stop(struct obx_sealer *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    obx_store_free(s->st);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    obx_free(s);
}
