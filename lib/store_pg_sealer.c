/* store_pg_sealer: the audit sealer's thread on PostgreSQL (store_pg_sealer.h). */
#define OBX_MODULE "audit"
#include "store_pg_sealer.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "audit.h"
#include "log.h"
#include "mem.h"
#include "pg.h"
#include "store_pg.h"

/* Events per seal before the next one follows at once (cron's SEAL_BATCH on SQLite). */
#define SEAL_BATCH 4000
#define SEAL_EVERY_MS 1000

struct obx_store_pg_sealer {
    pthread_t thread;
    struct obx_store *st; /* the thread's own */
    pthread_mutex_t lock; /* guards stopping */
    pthread_cond_t cond;  /* signalled on stop */
    int stopping;
};

/* One seal; 1 when it was full (more to seal at once). */
static int
seal_once(struct obx_store_pg_sealer *s, int *warned)
{
    int64_t sealed = 0;
    enum obx_err err = obx_pg_revive(s->st->pg);

    if (err == OBX_OK)
        err = obx_audit_seal(s->st, SEAL_BATCH, &sealed);
    if (err != OBX_OK && !*warned)
        obx_log(OBX_LOG_WARN, "cannot seal the audit log; will retry",
                OBX_KS("error", obx_strerror(err)));
    *warned = err != OBX_OK;
    return err == OBX_OK && sealed >= SEAL_BATCH;
}

static void *
sealer_thread(void *arg)
{
    struct obx_store_pg_sealer *s = arg;
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

enum obx_err
obx_store_pg_sealer_start(const char *uri, const char *schema, const char *node,
                          const char *key_file, struct obx_store_pg_sealer **out, char *errmsg,
                          size_t n)
{
    struct obx_store_pg_sealer *s = obx_calloc(1, sizeof *s);
    enum obx_err err;

    *out = NULL;
    if (!s)
        return OBX_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    err = obx_store_pg_open_store(uri, schema, node, 1, &s->st, errmsg, n);
    /* serve may start the keyed segment (audit.h); the check is server.c's. */
    if (err == OBX_OK && key_file)
        err = obx_audit_use_key(s->st, key_file, 1, errmsg, n);
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

void
obx_store_pg_sealer_stop(struct obx_store_pg_sealer *s)
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
