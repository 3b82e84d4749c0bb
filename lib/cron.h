/*
 * cron: every periodic job of serve, in one table driven by one timer (like redis's
 * serverCron). The table is in cron.c; each job states its period there.
 *
 * A job's database work runs on the store thread (lib/store_queue.c); its logging and
 * waking run on the loop once that work is committed. A job with more to do than fits in
 * one short run (retention) says so, and runs again a few milliseconds later.
 */
#ifndef OBX_CRON_H
#define OBX_CRON_H

#include <event2/event.h>

#include "config.h"
#include "store.h"
#include "worker.h"

/* What the jobs work on; everything is borrowed and must outlive the cron. */
struct obx_storeq;

struct obx_cron_env {
    struct obx_storeq *q;          /* the store thread: every job's database work */
    struct obx_config *const *cfg; /* the server's current configuration (follows reloads) */
    struct obx_worker *worker;     /* woken when a job made messages sendable again */
    void (*heartbeat)(void *ctx);  /* publishes serve's state for `outbox status` */
    void *heartbeat_ctx;
    int postgresql; /* only the jobs that run on PostgreSQL so far: confirmations, leases */
};

struct obx_cron;

OBX_MUST_CHECK enum obx_err obx_cron_new(struct event_base *base, const struct obx_cron_env *env,
                                         struct obx_cron **out /* OUT, caller frees */);
/* Stops every job (at shutdown: nothing new starts while the worker drains). */
void obx_cron_stop(struct obx_cron *c);
void obx_cron_free(struct obx_cron *c);

#endif
