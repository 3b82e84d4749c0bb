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

#include "store_pg_dash.h"
#include "log.h"
#include "mem.h"
#include "retention.h"
#include "store_queue.h"

#define OBX_MODULE "cron"

#define TICK_MS 1000
/* A retention step in the loop delays every request that arrives meanwhile: keep it short. */
#define SERVE_RETENTION_STEP_MS 5
/*
 * During a pass the WAL is checkpointed every 1,000 pages instead of 10,000: a pass
 * writes the WAL fast, and a 40 MB checkpoint (run inside whichever commit crosses the
 * mark, often a producer's) stalls the loop for ~50 ms about once a second; 4 MB ones
 * take a few ms (docs/benchmarks.md, "Purge and retention").
 */
#define SERVE_RETENTION_WAL_PAGES 1000

/*
 * A job has up to three parts: prepare (loop thread; 0 = nothing to do this time), run
 * (store thread, through lib/store_queue.c: the database work; returns 1 when it has more
 * to do right away) and after (loop thread, once run's work is committed: logs, wakes the
 * worker). run only reads and writes its own slot; after reads the slot once run is done.
 */
struct slot;
typedef int (*prepare_fn)(struct obx_cron *c, struct slot *sl);
typedef int (*run_fn)(struct obx_store *st, struct slot *sl);
typedef void (*after_fn)(struct obx_cron *c, struct slot *sl);

struct job {
    const char *name;
    int64_t period_ms;
    int64_t first_ms;   /* delay before its first run */
    int while_stopping; /* keeps running after obx_cron_stop (while the worker drains) */
    int own_tx;         /* run opens its own transactions (checkpoints, retention steps) */
    int on_postgresql;  /* runs there too (the WAL guard is SQLite's alone) */
    prepare_fn prepare; /* may be NULL */
    run_fn run;         /* NULL: the job is loop work only */
    after_fn after;     /* may be NULL */
};

/* One job's state. While `busy`, the slot (except `busy` itself) belongs to the store thread. */
struct slot {
    struct obx_storeq_job sj;
    struct obx_cron *c;
    size_t idx;
    int busy; /* submitted, done callback not yet run */
    int more; /* run says: again right away */
    enum obx_err err;
    int64_t n1, n2;               /* run's counts */
    const struct obx_config *cfg; /* the configuration of this run (kept alive by server.c) */
    struct obx_wal_guard wal_before, wal_after;
};

static int prepare_confirmations(struct obx_cron *c, struct slot *sl);
static int run_confirmations(struct obx_store *st, struct slot *sl);
static void after_confirmations(struct obx_cron *c, struct slot *sl);
static int prepare_counts(struct obx_cron *c, struct slot *sl);
static int run_counts(struct obx_store *st, struct slot *sl);
static int run_leases(struct obx_store *st, struct slot *sl);
static void after_leases(struct obx_cron *c, struct slot *sl);
static int run_wal_guard(struct obx_store *st, struct slot *sl);
static void after_wal_guard(struct obx_cron *c, struct slot *sl);
static int prepare_retention(struct obx_cron *c, struct slot *sl);
static int run_retention(struct obx_store *st, struct slot *sl);
static void after_retention(struct obx_cron *c, struct slot *sl);
static void after_heartbeat(struct obx_cron *c, struct slot *sl);
static void after_heap_trim(struct obx_cron *c, struct slot *sl);

/* Every periodic job of serve. */
static const struct job jobs[] = {
    /* Overdue confirmations: re-send with the same key, or give up (unconfirmed). */
    {"confirmations", 1000, 1000, 0, 0, 1, prepare_confirmations, run_confirmations,
     after_confirmations},
    /* PostgreSQL: the dashboard's counts fold their deltas (0011_dashboard.sql). */
    {"counts", 1000, 1000, 0, 0, 1, prepare_counts, run_counts, NULL},
    /* Leases of requests that never came back (a lost transfer) return to the queue. */
    {"leases", 30000, 30000, 0, 0, 1, NULL, run_leases, after_leases},
    /* The WAL stays small when the disk is tight, and is checkpointed after a full disk. */
    {"wal_guard", 1000, 0, 1, 1, 0, NULL, run_wal_guard, after_wal_guard},
    /* Deletes what is older than `retention`, in short steps (lib/retention.c). */
    {"retention", 3600000, 60000, 0, 1, 1, prepare_retention, run_retention, after_retention},
    /* Pause and circuit state for `outbox status`. */
    {"heartbeat", 1000, 1000, 1, 0, 0, NULL, NULL, after_heartbeat},
    /* Free memory back to the system, so that RSS follows what is in use (lib/mem.h). */
    {"heap_trim", 1000, 1000, 1, 0, 1, NULL, NULL, after_heap_trim},
};
#define N_JOBS (sizeof jobs / sizeof jobs[0])

/* Loop thread, except what a busy slot's run touches: the slot, and the store thread's
 * own `wal` and `retention` (only ever used by run functions, one at a time). */
struct obx_cron {
    struct obx_cron_env env;
    struct event *tick_ev; /* persistent, TICK_MS */
    struct event *more_ev; /* one-shot: jobs with more to do */
    int64_t due_mono_ms[N_JOBS];
    struct slot slots[N_JOBS];
    int stopping;

    /* Store thread's (run functions only). */
    struct obx_retention retention;    /* the pass in progress */
    int retention_new_pass;            /* set by prepare_retention before the first step */
    struct obx_wal_guard wal;          /* what the WAL guard decided last */
    int64_t retention_started_mono_ms; /* loop's */
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
prepare_confirmations(struct obx_cron *c, struct slot *sl)
{
    sl->n1 = cfg_of(c)->max_resends; /* in: for run */
    return 1;
}

static int
run_confirmations(struct obx_store *st, struct slot *sl)
{
    int64_t max_resends = sl->n1;

    sl->n1 = sl->n2 = 0;
    sl->err = obx_store_confirm_timeouts(st, max_resends, &sl->n1, &sl->n2);
    return 0;
}

static void
after_confirmations(struct obx_cron *c, struct slot *sl)
{
    if (sl->err != OBX_OK)
        return;
    if (sl->n1) {
        obx_log(OBX_LOG_WARN, "no confirmation in time; re-sending", OBX_KI("count", sl->n1));
        obx_worker_notify(c->env.worker);
    }
    if (sl->n2)
        obx_log(OBX_LOG_WARN, "messages left unconfirmed after max_resends",
                OBX_KI("count", sl->n2), OBX_KI("max_resends", cfg_of(c)->max_resends));
}

/* SQLite keeps its counts as rows change: nothing to fold there. */
static int
prepare_counts(struct obx_cron *c, struct slot *sl)
{
    (void)sl;
    return c->env.postgresql;
}

static int
run_counts(struct obx_store *st, struct slot *sl)
{
    sl->err = obx_store_pg_dash_compact(st);
    return 0;
}

static int
run_leases(struct obx_store *st, struct slot *sl)
{
    sl->n1 = 0;
    sl->err = obx_store_recover(st, 0, &sl->n1);
    return 0;
}

static void
after_leases(struct obx_cron *c, struct slot *sl)
{
    if (sl->err == OBX_OK && sl->n1) {
        obx_log(OBX_LOG_WARN, "expired leases returned to the queue", OBX_KI("count", sl->n1));
        obx_worker_notify(c->env.worker);
    }
}

static int
run_wal_guard(struct obx_store *st, struct slot *sl)
{
    struct obx_cron *c = sl->c;

    sl->wal_before = c->wal;
    sl->err = obx_store_guard_wal(st, &c->wal);
    sl->wal_after = c->wal;
    return 0;
}

static void
after_wal_guard(struct obx_cron *c, struct slot *sl)
{
    const struct obx_wal_guard *before = &sl->wal_before, *now = &sl->wal_after;

    (void)c;
    if (sl->err != OBX_OK)
        return;
    if (now->tight != before->tight)
        obx_log(now->tight ? OBX_LOG_WARN : OBX_LOG_INFO,
                now->tight ? "disk space is low; checkpointing the WAL early"
                           : "disk space is back; WAL checkpoints as usual",
                OBX_KI("free_bytes", now->free_bytes), OBX_KI("wal_bytes", now->wal_bytes),
                OBX_KI("wal_pages_limit", now->autocheckpoint_pages));
    if (now->checkpointed && !before->checkpointed)
        obx_log(OBX_LOG_INFO, "WAL checkpointed and truncated",
                OBX_KI("free_bytes", now->free_bytes));
}

/* Store thread: read-only channels of the configuration this step was started with. */
static int
step_readonly(void *ctx, const char *channel)
{
    const struct slot *sl = ctx;

    return obx_config_channel_readonly(sl->cfg, channel);
}

/* Caps the WAL checkpoint interval (0 = lifts the cap) and applies it at once. */
static void
set_wal_cap(struct obx_store *st, struct obx_cron *c, int64_t pages)
{
    c->wal.cap_pages = pages;
    c->wal.autocheckpoint_pages = 0; /* makes the guard set the interval again */
    if (obx_store_guard_wal(st, &c->wal) != OBX_OK)
        return; /* the next wal_guard run tries again */
}

static int
prepare_retention(struct obx_cron *c, struct slot *sl)
{
    const struct obx_config *cfg = cfg_of(c);

    /* A pass outlives a SIGHUP: each step uses the configuration current when it starts. */
    sl->cfg = cfg;
    if (sl->more)
        return 1;
    /* A new pass. retention = 0 keeps everything. */
    if (cfg->retention_ms <= 0)
        return 0;
    struct obx_retention_opts o;
    obx_retention_opts_for(cfg, obx_now_ms(obx_clock_real()), cfg->retention_ms, &o);
    o.batch_ms = SERVE_RETENTION_STEP_MS;
    /* NULL stays NULL: whether accepted is walked is decided with the pass's configuration. */
    if (o.is_readonly)
        o.is_readonly = step_readonly;
    o.ctx = sl;
    obx_retention_init(&c->retention, &o); /* the store thread is not using it: no pass */
    c->retention_new_pass = 1;
    c->retention_started_mono_ms = mono_now();
    obx_log(OBX_LOG_INFO, "retention pass started", OBX_KI("retention_ms", cfg->retention_ms));
    return 1;
}

static int
run_retention(struct obx_store *st, struct slot *sl)
{
    struct obx_cron *c = sl->c;
    int done = 0;

    /* SQLite's WAL is capped during a pass; PostgreSQL checkpoints its own WAL. */
    if (c->retention_new_pass && !c->env.postgresql) {
        c->retention_new_pass = 0;
        set_wal_cap(st, c, SERVE_RETENTION_WAL_PAGES);
    }
    sl->err = obx_retention_step(st, &c->retention, &done);
    if ((sl->err != OBX_OK || done) && !c->env.postgresql)
        set_wal_cap(st, c, 0);
    return sl->err == OBX_OK && !done;
}

static void
after_retention(struct obx_cron *c, struct slot *sl)
{
    const struct obx_retention_counts *n = obx_retention_counts(&c->retention);

    if (sl->err != OBX_OK) {
        /* Everything done so far is committed; the next hourly pass finishes it. */
        obx_log(OBX_LOG_WARN, "retention stopped; the next pass continues",
                OBX_KS("error", obx_strerror(sl->err)), OBX_KI("messages", n->messages),
                OBX_KI("transactions", n->steps));
        return;
    }
    if (sl->more)
        return;
    if (n->messages || n->replies || n->event_bodies || n->event_hashes || n->audit_rows)
        obx_log(OBX_LOG_INFO, "retention pass done", OBX_KI("messages", n->messages),
                OBX_KI("replies", n->replies), OBX_KI("webhook_bodies", n->event_bodies),
                OBX_KI("webhook_hashes", n->event_hashes), OBX_KI("audit_rows", n->audit_rows),
                OBX_KI("transactions", n->steps),
                OBX_KI("duration_ms", mono_now() - c->retention_started_mono_ms));
}

static void
after_heartbeat(struct obx_cron *c, struct slot *sl)
{
    (void)sl;
    if (c->env.heartbeat)
        c->env.heartbeat(c->env.heartbeat_ctx);
}

static void
after_heap_trim(struct obx_cron *c, struct slot *sl)
{
    (void)c;
    (void)sl;
    obx_mem_trim();
}

/* ---- the scheduler -------------------------------------------------------------------- */

static int
runnable(const struct obx_cron *c, size_t i)
{
    if (c->env.postgresql && !jobs[i].on_postgresql)
        return 0;
    return !c->stopping || jobs[i].while_stopping;
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
    struct timeval gap = {0, MORE_GAP_MS * 1000};

    for (size_t i = 0; i < N_JOBS; i++) {
        /* busy first: a busy slot's `more` is the store thread's until it is done */
        if (!c->slots[i].busy && c->slots[i].more && runnable(c, i)) {
            evtimer_add(c->more_ev, &gap);
            return;
        }
    }
}

/* Store thread. */
static enum obx_err
run_slot(struct obx_store *st, void *arg)
{
    struct slot *sl = arg;

    sl->more = jobs[sl->idx].run(st, sl);
    return sl->err;
}

/* Loop thread: the run is committed (or failed). */
static void
on_slot_done(void *arg, enum obx_err err)
{
    struct slot *sl = arg;
    struct obx_cron *c = sl->c;

    sl->busy = 0;
    if (err != OBX_OK && sl->err == OBX_OK)
        sl->err = err; /* the group's commit failed */
    if (sl->err != OBX_OK)
        sl->more = 0;
    if (jobs[sl->idx].after)
        jobs[sl->idx].after(c, sl);
    arm_more(c);
}

static void
start_job(struct obx_cron *c, size_t i)
{
    struct slot *sl = &c->slots[i];

    if (sl->busy)
        return;
    if (jobs[i].prepare && !jobs[i].prepare(c, sl)) {
        sl->more = 0;
        return;
    }
    if (!jobs[i].run) {
        sl->more = 0;
        if (jobs[i].after)
            jobs[i].after(c, sl);
        return;
    }
    sl->err = OBX_OK;
    sl->busy = 1;
    obx_storeq_submit(c->env.q, &sl->sj);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct obx_cron *c = arg;
    int64_t now = mono_now();

    (void)fd;
    (void)what;
    for (size_t i = 0; i < N_JOBS; i++) {
        if (!runnable(c, i) || c->slots[i].busy || c->slots[i].more || now < c->due_mono_ms[i])
            continue;
        c->due_mono_ms[i] = now + jobs[i].period_ms;
        start_job(c, i);
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
        if (!c->slots[i].busy && c->slots[i].more && runnable(c, i))
            start_job(c, i);
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
    for (size_t i = 0; i < N_JOBS; i++) {
        c->due_mono_ms[i] = now + jobs[i].first_ms;
        c->slots[i].c = c;
        c->slots[i].idx = i;
        c->slots[i].sj.run = run_slot;
        c->slots[i].sj.done = on_slot_done;
        c->slots[i].sj.arg = &c->slots[i];
        c->slots[i].sj.flags = jobs[i].own_tx ? OBX_STOREQ_OWN_TX : 0;
    }
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
