/*
 * cron: serve's periodic jobs (see cron.h).
 *
 *   one persistent timer, every TICK_MS
 *     -> each job whose period has passed, and that is not in the middle of a pass,
 *        runs once
 *     -> a job that answers "more" runs again from a one-shot timer MORE_GAP_MS later
 *        (the loop serves requests in between) until it answers "done"
 *
 * Work that is not periodic stays with its owner and runs when work arrives: the
 * worker's claim -> pace -> send -> record pump, and the reconcile of newly stored
 * webhook events (server.c). Jobs that make messages sendable again (confirmation
 * timeouts, expired leases) wake the worker.
 */
#include "cron.h"

#include "audit.h"
#include "log.h"
#include "mem.h"
#include "retention.h"

#define OBX_MODULE "cron"

#define TICK_MS 1000
#define CRON_BUSY_MS 100 /* lock wait for jobs that run again anyway */
#define SEAL_BATCH 50000
/* A retention step in the loop delays every request that arrives meanwhile: keep it short. */
#define SERVE_RETENTION_STEP_MS 5
/*
 * During a pass the WAL is checkpointed every 1,000 pages instead of 10,000: a pass
 * writes the WAL fast, and a 40 MB checkpoint (run inside whichever commit crosses the
 * mark, often a producer's) stalls the loop for ~50 ms about once a second; 4 MB ones
 * take a few ms (docs/benchmarks.md, "Purge and retention").
 */
#define SERVE_RETENTION_WAL_PAGES 1000

/* A job returns 1 when it has more to do right away, 0 when its run is over. */
typedef int (*job_fn)(struct obx_cron *c);

struct job {
    const char *name;
    int64_t period_ms;
    int64_t first_ms;   /* delay before its first run */
    int while_stopping; /* keeps running after obx_cron_stop (while the worker drains) */
    job_fn run;
};

static int job_confirmations(struct obx_cron *c);
static int job_audit_seal(struct obx_cron *c);
static int job_leases(struct obx_cron *c);
static int job_wal_guard(struct obx_cron *c);
static int job_retention(struct obx_cron *c);
static int job_heartbeat(struct obx_cron *c);

/* Every periodic job of serve. */
static const struct job jobs[] = {
    /* Overdue confirmations: re-send with the same key, or give up (unconfirmed). */
    {"confirmations", 1000, 1000, 0, job_confirmations},
    /* Audit rows written since the last tick join the hash chain. */
    {"audit_seal", 1000, 1000, 0, job_audit_seal},
    /* Leases of requests that never came back (a lost transfer) return to the queue. */
    {"leases", 30000, 30000, 0, job_leases},
    /* The WAL stays small when the disk is tight, and is checkpointed after a full disk. */
    {"wal_guard", 1000, 0, 1, job_wal_guard},
    /* Deletes what is older than `retention`, in short steps (lib/retention.c). */
    {"retention", 3600000, 60000, 0, job_retention},
    /* Pause and circuit state for `outbox status`. */
    {"heartbeat", 1000, 1000, 1, job_heartbeat},
};
#define N_JOBS (sizeof jobs / sizeof jobs[0])

struct obx_cron {
    struct obx_cron_env env;
    struct event *tick_ev;          /* persistent, TICK_MS */
    struct event *more_ev;          /* one-shot, zero delay: jobs with more to do */
    int64_t due_mono_ms[N_JOBS];
    int more[N_JOBS];
    int stopping;

    struct obx_retention retention; /* the pass in progress, when more[retention] */
    int64_t retention_started_mono_ms;
    struct obx_wal_guard wal;       /* what the WAL guard decided last */
};

static int64_t
mono_now(void)
{
    return obx_mono_ms(obx_clock_real());
}

static const struct obx_config *
cfg_of(const struct obx_cron *c)
{
    return *c->env.cfg;
}

/* ---- the jobs ------------------------------------------------------------------------- */

static int
job_confirmations(struct obx_cron *c)
{
    const struct obx_config *cfg = cfg_of(c);
    int64_t resent = 0, given_up = 0;

    if (obx_store_confirm_timeouts(c->env.st, cfg->max_resends, &resent, &given_up) != OBX_OK)
        return 0;
    if (resent) {
        obx_log(OBX_LOG_WARN, "no confirmation in time; re-sending", OBX_KI("count", resent));
        obx_worker_notify(c->env.worker);
    }
    if (given_up)
        obx_log(OBX_LOG_WARN, "messages left unconfirmed after max_resends",
                OBX_KI("count", given_up), OBX_KI("max_resends", cfg->max_resends));
    return 0;
}

static int
job_audit_seal(struct obx_cron *c)
{
    int64_t n = 0;

    if (obx_audit_seal(c->env.st, SEAL_BATCH, &n) != OBX_OK)
        obx_log(OBX_LOG_WARN, "cannot seal the audit log; will retry");
    return 0;
}

static int
job_leases(struct obx_cron *c)
{
    int64_t n = 0;

    if (obx_store_recover(c->env.st, 0, &n) == OBX_OK && n) {
        obx_log(OBX_LOG_WARN, "expired leases returned to the queue", OBX_KI("count", n));
        obx_worker_notify(c->env.worker);
    }
    return 0;
}

static int
job_wal_guard(struct obx_cron *c)
{
    struct obx_wal_guard before = c->wal;
    enum obx_err err = obx_store_guard_wal(c->env.st, &c->wal);

    if (err != OBX_OK)
        return 0;
    if (c->wal.tight != before.tight)
        obx_log(c->wal.tight ? OBX_LOG_WARN : OBX_LOG_INFO,
                c->wal.tight ? "disk space is low; checkpointing the WAL early"
                             : "disk space is back; WAL checkpoints as usual",
                OBX_KI("free_bytes", c->wal.free_bytes), OBX_KI("wal_bytes", c->wal.wal_bytes),
                OBX_KI("wal_pages_limit", c->wal.autocheckpoint_pages));
    if (c->wal.checkpointed && !before.checkpointed)
        obx_log(OBX_LOG_INFO, "WAL checkpointed and truncated", OBX_KI("free_bytes",
                c->wal.free_bytes));
    return 0;
}

static int
current_readonly(void *ctx, const char *channel)
{
    return obx_config_channel_readonly(cfg_of(ctx), channel);
}

/* Caps the WAL checkpoint interval (0 = lifts the cap) and applies it at once. */
static void
set_wal_cap(struct obx_cron *c, int64_t pages)
{
    c->wal.cap_pages = pages;
    c->wal.autocheckpoint_pages = 0; /* makes the guard set the interval again */
    if (obx_store_guard_wal(c->env.st, &c->wal) != OBX_OK)
        obx_log(OBX_LOG_WARN, "cannot check the disk space of the database");
}

static int
job_retention(struct obx_cron *c)
{
    const struct obx_config *cfg = cfg_of(c);
    const struct obx_retention_counts *n = obx_retention_counts(&c->retention);
    size_t self = 0;
    enum obx_err err;
    int done = 0;

    while (jobs[self].run != job_retention)
        self++;
    if (!c->more[self]) {
        /* A new pass. retention = 0 keeps everything. */
        struct obx_retention_opts o;
        if (cfg->retention_ms <= 0)
            return 0;
        obx_retention_opts_for(cfg, obx_now_ms(obx_clock_real()), cfg->retention_ms, &o);
        o.batch_ms = SERVE_RETENTION_STEP_MS;
        /* A pass outlives a SIGHUP, which frees this configuration: ask the current one. */
        o.is_readonly = current_readonly;
        o.ctx = c;
        obx_retention_init(&c->retention, &o);
        c->retention_started_mono_ms = mono_now();
        obx_log(OBX_LOG_INFO, "retention pass started",
                OBX_KI("retention_ms", cfg->retention_ms));
        set_wal_cap(c, SERVE_RETENTION_WAL_PAGES);
    }
    err = obx_retention_step(c->env.st, &c->retention, &done);
    if (err != OBX_OK || done)
        set_wal_cap(c, 0);
    if (err != OBX_OK) {
        /* Everything done so far is committed; the next hourly pass finishes it. */
        obx_log(OBX_LOG_WARN, "retention stopped; the next pass continues",
                OBX_KS("error", obx_strerror(err)), OBX_KI("messages", n->messages),
                OBX_KI("transactions", n->steps));
        return 0;
    }
    if (!done)
        return 1;
    if (n->messages || n->replies || n->event_bodies || n->event_hashes || n->audit_rows)
        obx_log(OBX_LOG_INFO, "retention pass done", OBX_KI("messages", n->messages),
                OBX_KI("replies", n->replies), OBX_KI("webhook_bodies", n->event_bodies),
                OBX_KI("webhook_hashes", n->event_hashes), OBX_KI("audit_rows", n->audit_rows),
                OBX_KI("transactions", n->steps),
                OBX_KI("duration_ms", mono_now() - c->retention_started_mono_ms));
    return 0;
}

static int
job_heartbeat(struct obx_cron *c)
{
    if (c->env.heartbeat)
        c->env.heartbeat(c->env.heartbeat_ctx);
    return 0;
}

/* ---- the scheduler -------------------------------------------------------------------- */

static int
runnable(const struct obx_cron *c, size_t i)
{
    return !c->stopping || jobs[i].while_stopping;
}

static void
run_job(struct obx_cron *c, size_t i)
{
    obx_store_set_busy_timeout(c->env.st, CRON_BUSY_MS);
    c->more[i] = jobs[i].run(c);
}

/*
 * A job with more to do runs again MORE_GAP_MS later, not at once: a request needs a
 * few loop turns (read, commit, answer), and with back-to-back steps each turn would
 * wait for a whole step. The gap lets a request that arrived during a step finish
 * before the next one starts (docs/benchmarks.md, "Purge and retention").
 */
#define MORE_GAP_MS 5

static void
arm_more(struct obx_cron *c)
{
    struct timeval now = {0, MORE_GAP_MS * 1000};

    for (size_t i = 0; i < N_JOBS; i++) {
        if (c->more[i] && runnable(c, i)) {
            evtimer_add(c->more_ev, &now);
            return;
        }
    }
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct obx_cron *c = arg;
    int64_t now = mono_now();

    (void)fd;
    (void)what;
    for (size_t i = 0; i < N_JOBS; i++) {
        if (!runnable(c, i) || c->more[i] || now < c->due_mono_ms[i])
            continue;
        c->due_mono_ms[i] = now + jobs[i].period_ms;
        run_job(c, i);
    }
    arm_more(c);
}

static void
on_more(evutil_socket_t fd, short what, void *arg)
{
    struct obx_cron *c = arg;

    (void)fd;
    (void)what;
    for (size_t i = 0; i < N_JOBS; i++)
        if (c->more[i] && runnable(c, i))
            run_job(c, i);
    arm_more(c);
}

enum obx_err
obx_cron_new(struct event_base *base, const struct obx_cron_env *env, struct obx_cron **out)
{
    struct timeval tick = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    struct obx_cron *c;
    int64_t now = mono_now();

    *out = NULL;
    c = obx_calloc(1, sizeof *c);
    if (!c)
        return OBX_ENOMEM;
    c->env = *env;
    for (size_t i = 0; i < N_JOBS; i++)
        c->due_mono_ms[i] = now + jobs[i].first_ms;
    c->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, c);
    c->more_ev = evtimer_new(base, on_more, c);
    if (!c->tick_ev || !c->more_ev || event_add(c->tick_ev, &tick) != 0) {
        obx_cron_free(c);
        return OBX_ENOMEM;
    }
    /* Jobs due at once (the WAL guard: a disk may be nearly full at start-up) run now. */
    on_tick(-1, 0, c);
    *out = c;
    return OBX_OK;
}

void
obx_cron_stop(struct obx_cron *c)
{
    if (c)
        c->stopping = 1;
}

void
obx_cron_free(struct obx_cron *c)
{
    if (!c)
        return;
    if (c->tick_ev)
        event_free(c->tick_ev);
    if (c->more_ev)
        event_free(c->more_ev);
    obx_free(c);
}
