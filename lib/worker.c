/*
 * worker: claim -> pace -> send -> record -> transition, for every tenant (SPEC §11).
 *
 * A lane is one tenant (the implicit tenant `default`, with the configured key, included):
 * its key, its base URL, its token bucket, its auth pause and the messages claimed for it.
 * Gates, checked per lane before anything of it is claimed:
 *   auth pause   (401/403: every lane with that key waits; one probe every
 *                 auth_probe_interval, or a new key, lifts it)
 *   circuit      (repeated 5xx/transport errors: no requests while open; one probe
 *                 when it half-opens; one breaker per Partoo base URL, so a sandbox
 *                 that is down does not stop the tenants sent to production)
 *   token bucket (the lane's rate_limit, no burst by default; a 429 pauses the lane for
 *                 Retry-After)
 * A lane is claimed for only when its next token is due within CLAIM_AHEAD_MS, so a
 * message waits in `sending` for its token at most that long, and a tenant whose budget
 * is spent holds no send slot: the max_inflight slots are shared by the lanes that can
 * send now, first come first served (`runnable`, a FIFO). A tenant's backlog is only ever
 * one claimed message ahead of its token, so it delays no other tenant.
 *
 * Lanes come from the tenant registry (lib/store_tenant.h). The worker reads its version
 * every second, and at once when this process changed it (obx_worker_tenants_changed):
 * a tenant added or changed while serve runs sends within a second.
 *
 * Periodic jobs (confirmation timeouts, expired leases, audit sealing, retention) are
 * not here: lib/cron.c runs them and wakes the worker with obx_worker_notify when they
 * made messages sendable again.
 *
 * The store work runs on the store thread (lib/store_queue.c), so the loop never waits
 * for a commit and the rounds overlap:
 *
 *   claim job ──▶ ready (claimed, leased) ──slot frees──▶ in flight ──answer──▶ pending
 *       ▲                                                                          │
 *       └──────── claimed again once the finish job's COMMIT is done ◀── finish job┘
 *
 * An unthrottled lane keeps up to max_inflight messages claimed ahead in its `ready`, so
 * a slot that frees is refilled at once instead of after a claim's commit. The outcomes
 * of one loop turn go out as one finish job at the end of that turn (sharing a
 * transaction with whatever else the store thread has queued); several may be
 * outstanding. While a write fails (disk full, locked) nothing new is claimed and it is
 * retried every second. Up to CLAIM_JOBS claim jobs are outstanding, each carrying some
 * of the lanes that want messages (a lane is in one at a time), each with its own share.
 */
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "backoff.h"
#include "circuit.h"
#include "store_dash.h"
#include "store_tenant.h"
#include "store_tenant_stats.h"
#include "http_client.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "partoo_request.h"
#include "ratelimit.h"
#include "secretbox.h"
#include "store_pg.h"
#include "store_pg_nodes.h"
#include "store_queue.h"

#define OBX_MODULE "worker"

#define IDLE_POLL_MS 1000     /* rows inserted by other processes are seen this fast */
#define REGISTRY_POLL_MS 1000 /* tenants changed by `outbox tenant` are seen this fast */
#define DEFAULT_RETRY_AFTER_MS 60000
#define CLAIM_MAX 128 /* messages per lane per claim job */
/*
 * Messages per claim job. Small, because a claim job holds the store thread and every
 * outcome's commit waits behind it: at 1,024 the send slots filled up with outcomes
 * waiting to be recorded and 2,000 paced tenants lost an eighth of their tokens
 * (docs/benchmarks.md, "Tenants").
 */
#define CLAIM_TOTAL_MAX 256
/*
 * Claim jobs outstanding at once. One at a time, the loop waited a commit between claims,
 * and 2,000 paced tenants (2,000 lane claims a second) queued for theirs; the store thread
 * runs them one after the other anyway, so more in flight only removes that wait.
 */
#define CLAIM_JOBS 4
#define CLAIM_LANES_MAX 512 /* lanes per claim job */
#define PREFETCH_MAX 256    /* most messages kept claimed ahead of a free slot */
#define CLAIM_AHEAD_MS 2000 /* a throttled lane is claimed for this long before its token */
#define WAKE_IDLE_MIN_MS 20 /* obx_worker_notify wakes idle lanes at most this often */
#define RATE_SLOTS 60       /* one-second buckets of a lane's send rate */
/*
 * A claimed message not sent within this goes back instead: its lease (connect + request
 * timeout + 60 s) must outlast the request that has not started yet, or lease recovery
 * could queue it again while it is being sent (a duplicate).
 */
#define READY_MAX_AGE_MS 30000
/* PostgreSQL: a lane whose hold ran out while its lease is still listed looks again. */
#define HOLD_RECHECK_MS 100
#define TAKEOVER_RETRY_MS 1000

struct lane;

/* The circuit breaker of one Partoo base URL, shared by the lanes sent there. */
struct breaker {
    char *base_url; /* owned; NULL: the configured partoo_base_url */
    struct obx_circuit c;
    struct breaker *next;
};

/* One message claimed for sending (ready, then in flight); owns its claimed message. */
struct inflight {
    struct obx_worker *w;
    struct lane *lane;
    struct obx_claimed c;
    int64_t claimed_mono_ms; /* when its claim committed (age limit in `ready`) */
    int64_t started_at_ms;
    int auth_probe;
    struct inflight *prev, *next;
};

/*
 * One tenant's delivery (see the top). Loop thread only. A lane dropped from the registry
 * is `gone`: it is freed once no claim, ready or in-flight message refers to it.
 */
struct lane {
    struct obx_worker *w;
    char name[OBX_TENANT_NAME_MAX + 1]; /* "" for the default tenant */
    char *api_key;                      /* owned (wiped); NULL: cannot send */
    const char *no_key;                 /* why api_key is NULL (static text) */
    char key_fingerprint[16];
    char *base_url;      /* owned; NULL: the configured partoo_base_url */
    struct breaker *br;  /* its base URL's breaker (owned by the worker) */
    double rate_per_min; /* as registered; 0: the configured rate_limit */
    int64_t burst;       /* as registered; 0: the configured rate_burst */
    struct obx_ratelimit rl;
    int64_t rate_paused_until_ms; /* wall clock, for status only */
    int auth_paused;
    int auth_probe_inflight;
    int64_t auth_probe_at_mono_ms;
    struct inflight *ready, *ready_tail; /* claimed, not yet sent (FIFO, via next) */
    int nready;
    int ninflight;
    int in_claim;               /* messages asked for in the outstanding claim job */
    int idle;                   /* its last claim found less than it wanted ... */
    int64_t idle_until_mono_ms; /* ... so it is asked again then (or when notified) */
    struct obx_claim_cursor rr;
    struct event *timer; /* kick at the next token, probe or poll */
    int64_t timer_at_mono_ms;
    int runnable, wanted, gone;
    int kept; /* apply_registry's mark: still registered */
    struct lane *run_next, *want_next;
    int64_t sent_total;
    int32_t rate_slots[RATE_SLOTS]; /* sends per second, ring indexed by second */
    int64_t rate_slot_sec;          /* the second rate_slots[.. % RATE_SLOTS] was last set */
    /*
     * PostgreSQL (several nodes): the lane sends only while this node holds its tenant's
     * lease (store_pg_nodes.h), and every write for it carries the lease's epoch.
     */
    int64_t epoch;              /* 0: not held here */
    int64_t hold_until_mono_ms; /* send nothing after this unless a beat renewed it */
    int taking_over;            /* the takeover job (requeue) runs: claim after it */
    struct event *takeover_ev;  /* retries a takeover job that failed */
};

/* A channel a tenant owns: which lane to wake when a message for it is queued. */
struct channel_ref {
    char *channel_id; /* owned */
    struct lane *lane;
};

/* An attempt waiting for the next flush; owns the strings the attempt points to. */
struct pending {
    struct obx_attempt a;
    char *error;
    char *excerpt;
    char reason[96];
    char channel_id[256];
    char external_message_id[256];
    char tenant[OBX_TENANT_NAME_MAX + 1];
    int attempt_no;
};

/* A claim job: fills `out` on the store thread; the loop reads it in on_claimed. */
struct claim_job {
    struct obx_storeq_job job;
    struct obx_worker *w;
    int busy; /* submitted, on_claimed not yet run */
    int64_t lease_ms;
    struct lane *lanes[CLAIM_LANES_MAX];
    struct obx_claim_want wants[CLAIM_LANES_MAX];
    size_t nlanes;
    int total_want;
    struct obx_claimed out[CLAIM_TOTAL_MAX];
    int n;
    uint64_t seq; /* the worker's claims_submitted when it was submitted */
};

/*
 * A channel or tenant paused while claim jobs were outstanding. Those claims may have read
 * the outbox before the pause committed: what they bring of it goes back instead of into
 * `ready`. Claims submitted after the pause was heard see its row (SPEC §13).
 */
#define PAUSE_FENCES_MAX 16
struct pause_fence {
    int tenant;        /* key names a tenant ("default": the configured key's), else a channel */
    char *key;         /* owned; NULL: everything (more pauses than fences at once) */
    uint64_t upto_seq; /* claims with seq <= this may predate the pause */
};

/* PostgreSQL: a lane's first job after its tenant's lease came to this node. */
struct takeover_job {
    struct obx_storeq_job job;
    struct lane *l;
    char tenant[OBX_TENANT_NAME_MAX + 1]; /* "" for the default tenant */
    int64_t epoch;
    int64_t requeued;
    struct obx_pg_pacing pacing; /* where the previous holder left the tenant's pacing */
};

/*
 * A breaker that opened or closed, written into the pacing of the tenants held here that
 * send through it (PostgreSQL, obx_store_pg_record_circuit). Nobody waits for it: the next
 * holder of one of them reads it at its takeover; a write that fails leaves the row as it
 * was, which costs the next holder no more than a breaker of its own would.
 */
struct circuit_job {
    struct obx_storeq_job job;
    int64_t open_until_ms; /* wall clock; 0: closed */
    size_t n;
    const char **tenants; /* point into names */
    int64_t *epochs;
    char (*names)[OBX_TENANT_NAME_MAX + 1];
};

/* A finish job: the outcomes it writes, moved out of obx_worker.pending. */
struct finish_job {
    struct obx_storeq_job job;
    struct obx_worker *w;
    struct pending *items;
    size_t n;
    struct obx_attempt *batch; /* n entries, pointing into items */
    enum obx_err *results;     /* n entries */
    int sent;                  /* items for requests that were made (not releases) */
    struct finish_job *next;   /* in obx_worker.failed */
};

/*
 * Everything here belongs to the loop thread, except the claim and finish jobs while
 * they are outstanding (claiming, nfinishing): those belong to the store thread then.
 */
struct obx_worker {
    struct event_base *base;          /* borrowed */
    struct obx_store *st;             /* borrowed; the loop's connection, for reads only */
    struct obx_storeq *q;             /* borrowed; every write goes through it */
    struct obx_clock *clock;          /* borrowed: st's, so a test that swaps it swaps both */
    struct obx_store_pg_nodes *nodes; /* borrowed; PostgreSQL: the leases this node holds */
    int ntakeovers;                   /* takeover jobs outstanding */
    int registry_busy;                /* PostgreSQL: a registry job is outstanding */
    int registry_failing;             /* ... and the last one failed (logged once) */
    const struct obx_config *cfg;     /* borrowed; swapped by obx_worker_reload */
    struct obx_http *http;
    struct breaker *breakers; /* one per base URL in use, kept until the worker goes */
    struct obx_rng rng;

    struct lane *def;    /* the default tenant: the configured key */
    struct lane **lanes; /* the registry's tenants, sorted by name */
    size_t nlanes;
    struct channel_ref *channels; /* the registry's channels and their lanes, by id */
    size_t nchannels;
    struct lane *gone;        /* dropped lanes still referred to (via run_next) */
    int64_t registry_version; /* -1: not read yet */
    uint8_t sealing_key[OBX_SECRETBOX_KEY_BYTES];
    int has_sealing_key;
    struct lane *run_head, *run_tail;   /* lanes that can send now (FIFO) */
    struct lane *want_head, *want_tail; /* lanes that want a claim (FIFO) */
    int wake_idle;                      /* obx_worker_notify asked: wake idle lanes */
    int64_t woke_idle_mono_ms;

    struct event *pump_ev;     /* one-shot: run pump() */
    int64_t pump_at_mono_ms;   /* when pump_ev fires; 0 = not scheduled */
    struct event *flush_ev;    /* one-shot: write pending outcomes */
    struct event *stop_ev;     /* shutdown deadline */
    struct event *registry_ev; /* every REGISTRY_POLL_MS: the registry's version */

    struct inflight *inflight; /* doubly linked */
    struct pending *pending;
    size_t npending, cap_pending;
    struct claim_job claims[CLAIM_JOBS]; /* busy ones belong to the store thread */
    struct finish_job *failed;           /* finish jobs whose commit failed: resubmitted in 1 s */
    void (*drained)(void *ctx);
    void *drained_ctx;

    int ninflight;
    int nready;        /* over every lane */
    int unrecorded;    /* answered requests whose outcome is not committed yet */
    int flush_failing; /* the last flush failed: stop claiming */
    int claiming;      /* claim jobs outstanding */
    uint64_t claims_submitted;
    struct pause_fence fences[PAUSE_FENCES_MAX];
    int nfences;
    int nfinishing; /* finish jobs submitted, done not yet called */
    int stopping;

    struct obx_worker_stats stats;
};

static void pump(struct obx_worker *w);
static void start_flush(struct obx_worker *w);

static int64_t
mono_now(const struct obx_worker *w)
{
    return obx_mono_ms(w->clock);
}

static int64_t
wall_now(const struct obx_worker *w)
{
    return obx_now_ms(w->clock);
}

/* Arranges for pump() to run in delay_ms, unless it is already due sooner. */
static void
schedule_pump(struct obx_worker *w, int64_t delay_ms)
{
    int64_t at = mono_now(w) + (delay_ms > 0 ? delay_ms : 0);
    struct timeval tv;

    if (w->stopping)
        return;
    if (w->pump_at_mono_ms && w->pump_at_mono_ms <= at)
        return;
    w->pump_at_mono_ms = at;
    tv.tv_sec = delay_ms / 1000;
    tv.tv_usec = (delay_ms % 1000) * 1000;
    evtimer_add(w->pump_ev, &tv);
}

static void
on_pump(evutil_socket_t fd, short what, void *arg)
{
    struct obx_worker *w = arg;

    (void)fd;
    (void)what;
    w->pump_at_mono_ms = 0;
    pump(w);
}

/* ---- sending ---------------------------------------------------------------------- */

static void on_response(void *ctx, const struct obx_http_result *r);

static enum obx_err
send_one(struct obx_worker *w, struct inflight *inf)
{
    struct lane *l = inf->lane;
    struct obx_partoo_request req;
    enum obx_err err = obx_partoo_request_init(&req,
                                               l->base_url ? l->base_url : w->cfg->partoo_base_url,
                                               l->api_key, inf->c.msg.channel_id, &inf->c.msg);

    inf->started_at_ms = wall_now(w);
    if (err == OBX_OK)
        err = obx_partoo_request_post(&req, w->http, on_response, inf);
    obx_partoo_request_release(&req); /* wipes the key: libcurl holds the only copy */
    return err;
}

static void
link_inflight(struct obx_worker *w, struct inflight *inf)
{
    inf->next = w->inflight;
    if (w->inflight)
        w->inflight->prev = inf;
    w->inflight = inf;
    w->ninflight++;
}

static void
unlink_inflight(struct obx_worker *w, struct inflight *inf)
{
    if (inf->prev)
        inf->prev->next = inf->next;
    else
        w->inflight = inf->next;
    if (inf->next)
        inf->next->prev = inf->prev;
    w->ninflight--;
}

/* ---- recording outcomes ------------------------------------------------------------ */

static struct pending *
new_pending(struct obx_worker *w)
{
    if (w->npending == w->cap_pending) {
        size_t ncap = w->cap_pending ? w->cap_pending * 2 : 64;
        struct pending *p = obx_realloc(w->pending, ncap * sizeof *p);
        if (!p)
            return NULL;
        w->pending = p;
        w->cap_pending = ncap;
    }
    memset(&w->pending[w->npending], 0, sizeof w->pending[0]);
    return &w->pending[w->npending++];
}

static void
pending_release(struct pending *p)
{
    obx_free(p->error);
    obx_free(p->excerpt);
}

/* Queues the record of an attempt on claimed message c; copies what it keeps. */
static struct pending *
add_pending(struct obx_worker *w, const struct obx_claimed *c, enum obx_next next)
{
    struct pending *p = new_pending(w);

    if (!p)
        return NULL;
    p->a.message_id = c->id;
    p->a.lease_token = c->lease_token;
    p->a.epoch = c->epoch;
    p->a.next = next;
    if (next != OBX_NEXT_RELEASE)
        w->unrecorded++;
    p->attempt_no = c->attempts + 1;
    snprintf(p->tenant, sizeof p->tenant, "%s", c->tenant[0] ? c->tenant : "default");
    snprintf(p->channel_id, sizeof p->channel_id, "%s", c->msg.channel_id);
    snprintf(p->external_message_id, sizeof p->external_message_id, "%s",
             c->msg.external_message_id);
    return p;
}

static void
log_attempt(const struct pending *p)
{
    enum obx_log_level lvl = p->a.next == OBX_NEXT_FAILED ? OBX_LOG_WARN : OBX_LOG_INFO;

    if (p->a.next == OBX_NEXT_RELEASE)
        return;
    obx_log(lvl, "delivery attempt", OBX_KS("tenant", p->tenant),
            OBX_KS("channel_id", p->channel_id),
            OBX_KS("external_message_id", p->external_message_id), OBX_KI("attempt", p->attempt_no),
            OBX_KI("status", p->a.http_status), OBX_KI("duration_ms", p->a.duration_ms),
            OBX_KS("outcome", p->a.outcome),
            OBX_KS("next", p->a.next == OBX_NEXT_ACCEPTED ? "accepted"
                           : p->a.next == OBX_NEXT_FAILED ? "failed"
                                                          : "retry"),
            OBX_KS("error", p->a.error));
}

/* Everything is recorded after obx_worker_stop: tell the server. */
static void
maybe_drained(struct obx_worker *w)
{
    if (!w->stopping || w->ninflight || w->nready || w->npending || w->claiming || w->nfinishing ||
        w->ntakeovers || w->registry_busy || w->failed || !w->drained)
        return;
    void (*cb)(void *) = w->drained;
    w->drained = NULL;
    cb(w->drained_ctx);
}

/* Store thread: a finish job's transaction. */
static enum obx_err
run_finish(struct obx_store *st, void *arg)
{
    struct finish_job *f = arg;

    return obx_store_finish(st, f->batch, f->n, f->results);
}

static void
finish_job_free(struct finish_job *f)
{
    for (size_t i = 0; i < f->n; i++)
        pending_release(&f->items[i]);
    obx_free(f->items);
    obx_free(f->batch);
    obx_free(f->results);
    obx_free(f);
}

static struct lane *find_lane(struct lane **lanes, size_t n, const char *name);
static void kick(struct lane *l);
static void kick_all(struct obx_worker *w);

/* An idle lane looks again now (by its label: "default" is the default tenant). */
static void
wake_lane(struct obx_worker *w, const char *label)
{
    struct lane *l = strcmp(label, "default") == 0 ? w->def : find_lane(w->lanes, w->nlanes, label);

    if (l && l->idle) {
        l->idle = 0;
        kick(l);
    }
}

/* Loop thread: a finish job's outcomes are committed (or not). */
static void
on_finished(void *arg, enum obx_err err)
{
    struct finish_job *f = arg;
    struct obx_worker *w = f->w;

    w->nfinishing--;
    if (err != OBX_OK) {
        /* Nothing of it was written; keep the outcomes and write them again in a second. */
        if (!w->flush_failing)
            obx_log(OBX_LOG_ERROR, "cannot record delivery outcomes, will retry",
                    OBX_KS("error", obx_strerror(err)), OBX_KI("pending", f->n));
        w->flush_failing = 1;
        f->next = w->failed;
        w->failed = f;
        struct timeval tv = {1, 0};
        evtimer_add(w->flush_ev, &tv);
        return;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (f->results[i] == OBX_ECONFLICT)
            w->stats.lease_conflicts++;
        log_attempt(&f->items[i]);
    }
    w->unrecorded -= f->sent;
    if (w->flush_failing && !w->failed && !w->nfinishing) {
        obx_log(OBX_LOG_INFO, "delivery outcomes recorded again");
        w->flush_failing = 0;
        /* While it failed, pump gave the claimed messages back and claimed nothing: every
         * lane looks again now, waiting for no producer's notify. */
        kick_all(w);
    }
    /* Finished messages may have made their conversations' next messages claimable. */
    for (size_t i = 0; i < f->n; i++)
        wake_lane(w, f->items[i].tenant);
    finish_job_free(f);
    maybe_drained(w);
    pump(w);
}

/*
 * Moves the pending outcomes into a new finish job and submits it at once: several may be
 * outstanding, and they run in order. Submitting in the loop turn after the answers keeps
 * an outcome ahead of anything caused by it, e.g. the message_created webhook Partoo sends
 * once it has answered 200 (the webhook group is queued after the finish job).
 */
static void
submit_finish(struct obx_worker *w)
{
    struct finish_job *f = obx_calloc(1, sizeof *f);

    if (f) {
        f->batch = obx_calloc(w->npending, sizeof *f->batch);
        f->results = obx_calloc(w->npending, sizeof *f->results);
    }
    if (!f || !f->batch || !f->results) {
        if (f) {
            obx_free(f->batch);
            obx_free(f->results);
            obx_free(f);
        }
        struct timeval tv = {1, 0}; /* out of memory: the outcomes wait in pending */
        evtimer_add(w->flush_ev, &tv);
        return;
    }
    f->w = w;
    f->items = w->pending;
    f->n = w->npending;
    w->pending = NULL;
    w->npending = w->cap_pending = 0;
    for (size_t i = 0; i < f->n; i++) {
        f->sent += f->items[i].a.next != OBX_NEXT_RELEASE;
        f->batch[i] = f->items[i].a;
        /* a.reason may point into an entry that new_pending() has since moved */
        if (f->items[i].reason[0])
            f->batch[i].reason = f->items[i].reason;
        f->batch[i].fence_tenant = f->items[i].tenant;
    }
    f->job.run = run_finish;
    f->job.done = on_finished;
    f->job.arg = f;
    f->job.weight = (int64_t)f->n;
    w->nfinishing++;
    obx_storeq_submit(w->q, &f->job);
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
    struct obx_worker *w = arg;

    (void)fd;
    (void)what;
    while (w->failed) {
        /* The one-second retry of finish jobs whose commit failed. */
        struct finish_job *f = w->failed;
        w->failed = f->next;
        f->next = NULL;
        w->nfinishing++;
        obx_storeq_submit(w->q, &f->job);
    }
    if (w->npending)
        submit_finish(w);
    maybe_drained(w);
}

static void
start_flush(struct obx_worker *w)
{
    struct timeval now = {0, 0};

    /* A zero timeout runs after the events of this loop turn: their outcomes share it. */
    if (!evtimer_pending(w->flush_ev, NULL))
        evtimer_add(w->flush_ev, &now);
}

/* ---- deciding ---------------------------------------------------------------------- */

/* 5xx, 408 and no answer mean "Partoo or the network is down" for the breaker. */
static int
reachable(int status)
{
    return status != 0 && status != 408 && status < 500;
}

/* Age toward max_age: time its channel or tenant was paused (held) does not count (SPEC §13). */
static int64_t
age_ms(struct obx_worker *w, const struct inflight *inf, int64_t now_ms)
{
    int64_t age = now_ms - inf->c.created_at_ms, held = 0;

    if (obx_store_pg_in_use(w->st))
        return age - inf->c.held_ms; /* the claim counted it: the loop does not read there */
    if (age >= w->cfg->max_age_ms &&
        obx_store_dash_held_ms(w->st, inf->c.msg.channel_id, inf->c.tenant, inf->c.created_at_ms,
                               now_ms, &held) == OBX_OK)
        age -= held;
    obx_store_end_reads(w->st); /* the loop's connection must not keep an old snapshot */
    return age;
}

static void
decide_retry(struct obx_worker *w, const struct inflight *inf, struct pending *p,
             int64_t retry_after_ms, int64_t now_ms)
{
    const struct obx_config *cfg = w->cfg;
    int counted = inf->lane->br->c.state == OBX_CIRCUIT_CLOSED;
    int tries = inf->c.counted_attempts + counted;

    p->a.counted = counted;
    if (cfg->max_age_ms && age_ms(w, inf, now_ms) >= cfg->max_age_ms) {
        p->a.next = OBX_NEXT_FAILED;
        snprintf(p->reason, sizeof p->reason, "max age exceeded after %s", p->a.outcome);
    } else if (counted && tries >= cfg->max_attempts) {
        p->a.next = OBX_NEXT_FAILED;
        snprintf(p->reason, sizeof p->reason, "max attempts (%d) reached", tries);
    } else if (!counted) {
        /* Outage: the breaker paces the probes; be due again as soon as it closes. */
        p->a.next_attempt_at_ms = now_ms;
        snprintf(p->reason, sizeof p->reason, "retry after outage (%s)", p->a.outcome);
    } else {
        int64_t delay = obx_backoff_next_delay_ms(&w->rng, cfg->retry_base_ms, cfg->retry_cap_ms,
                                                  tries, retry_after_ms);
        p->a.next_attempt_at_ms = now_ms + delay;
        snprintf(p->reason, sizeof p->reason, "retry in %lldms (%s)", (long long)delay,
                 p->a.outcome);
    }
    if (p->a.next == OBX_NEXT_RETRY)
        w->stats.retried++;
}

static void release_lane_ready(struct lane *l, const char *why);
static void breaker_record(struct obx_worker *w, struct breaker *b, int success);

static const char *
lane_label(const struct lane *l)
{
    return l->name[0] ? l->name : "default";
}

/* A 401/403 pauses every lane that uses the same key, and no other (SPEC §11). */
static void
pause_for_auth(struct obx_worker *w, struct lane *hit, int status)
{
    int64_t probe_at = mono_now(w) + w->cfg->auth_probe_interval_ms;
    size_t i = 0;

    for (struct lane *l = w->def; l; l = i < w->nlanes ? w->lanes[i++] : NULL) {
        if (l != hit && (!l->api_key || !hit->api_key || strcmp(l->api_key, hit->api_key) != 0))
            continue;
        if (!l->auth_paused)
            obx_log(OBX_LOG_ERROR,
                    "partoo rejected the api key; sending for this tenant paused until its "
                    "key changes or the next probe",
                    OBX_KS("tenant", lane_label(l)), OBX_KS("key_fingerprint", l->key_fingerprint),
                    OBX_KI("status", status),
                    OBX_KI("probe_in_ms", w->cfg->auth_probe_interval_ms));
        l->auth_paused = 1;
        l->auth_probe_at_mono_ms = probe_at;
        release_lane_ready(l, "released while sending is paused");
        kick(l);
    }
}

static int64_t
retry_after_ms(const struct obx_http_result *r, int64_t now_ms)
{
    int64_t ms = -1;

    if (r->retry_after && obx_backoff_parse_retry_after(r->retry_after, now_ms, &ms) != OBX_OK)
        ms = -1;
    return ms;
}

/* Applies SPEC §3's outcome rules to one answer. */
static void
decide(struct obx_worker *w, struct inflight *inf, const struct obx_http_result *r,
       struct pending *p)
{
    enum obx_outcome o = obx_backoff_classify(r->status);
    int64_t now_ms = wall_now(w), ra = retry_after_ms(r, now_ms);

    p->a.outcome = obx_backoff_outcome_name(o);
    p->a.counted = 1;
    switch (o) {
    case OBX_OUTCOME_ACCEPTED:
        p->a.next = OBX_NEXT_ACCEPTED;
        /* Bidirectional channels wait for the message_created webhook (SPEC §3). The
         * owning tenant's flag decides; readonly_channels decides for the others. */
        if (inf->c.readonly == 0 ||
            (inf->c.readonly < 0 && !obx_config_channel_readonly(w->cfg, inf->c.msg.channel_id)))
            p->a.confirm_due_at_ms = now_ms + w->cfg->confirm_timeout_ms;
        snprintf(p->reason, sizeof p->reason, "accepted (http %d)", r->status);
        w->stats.accepted++;
        break;
    case OBX_OUTCOME_FATAL:
        p->a.next = OBX_NEXT_FAILED;
        snprintf(p->reason, sizeof p->reason, "rejected (http %d)", r->status);
        break;
    case OBX_OUTCOME_AUTH:
        p->a.counted = 0;
        p->a.next_attempt_at_ms = now_ms;
        snprintf(p->reason, sizeof p->reason, "api key rejected (http %d)", r->status);
        w->stats.auth_failures++;
        pause_for_auth(w, inf->lane, r->status);
        break;
    case OBX_OUTCOME_RATE_LIMITED:
        p->a.counted = 0;
        if (ra < 0)
            ra = DEFAULT_RETRY_AFTER_MS;
        p->a.next_attempt_at_ms = now_ms + ra;
        snprintf(p->reason, sizeof p->reason, "rate limited for %lldms (http 429)", (long long)ra);
        obx_ratelimit_pause_until(&inf->lane->rl, mono_now(w) + ra);
        inf->lane->rate_paused_until_ms = now_ms + ra;
        w->stats.rate_limited++;
        break;
    case OBX_OUTCOME_RETRY:
    case OBX_OUTCOME_TRANSPORT:
        if (o == OBX_OUTCOME_TRANSPORT)
            w->stats.transport_errors++;
        else
            w->stats.server_errors++;
        decide_retry(w, inf, p, ra, now_ms);
        break;
    }
    if (p->a.next == OBX_NEXT_FAILED)
        w->stats.failed++;
}

static void
on_response(void *ctx, const struct obx_http_result *r)
{
    struct inflight *inf = ctx;
    struct obx_worker *w = inf->w;
    struct pending *p;

    struct lane *l = inf->lane;

    unlink_inflight(w, inf);
    l->ninflight--;
    w->stats.attempts++;
    if (r->status >= 0 && r->status < OBX_STATUS_SLOTS)
        w->stats.by_status[r->status]++;
    w->stats.by_outcome[obx_backoff_classify(r->status)]++;
    obx_metrics_histogram_observe(&w->stats.latency, (double)r->duration_ms / 1000.0);
    breaker_record(w, l->br, reachable(r->status));
    if (inf->auth_probe) {
        l->auth_probe_inflight = 0;
        if (obx_backoff_classify(r->status) != OBX_OUTCOME_AUTH && l->auth_paused) {
            l->auth_paused = 0;
            obx_log(OBX_LOG_INFO, "api key accepted again; sending resumed",
                    OBX_KS("tenant", lane_label(l)));
        }
    }
    p = add_pending(w, &inf->c, OBX_NEXT_RETRY);
    if (p) {
        p->a.started_at_ms = inf->started_at_ms;
        p->a.duration_ms = r->duration_ms;
        p->a.http_status = r->status;
        decide(w, inf, r, p);
        if (r->error) {
            p->error = obx_strdup(r->error);
        } else if (r->status >= 300) {
            char e[256];
            snprintf(e, sizeof e, "http %d: %.200s", r->status, r->body);
            p->error = obx_strdup(e);
        }
        p->excerpt = r->body[0] ? obx_strdup(r->body) : NULL;
        p->a.error = p->error;
        p->a.excerpt = p->excerpt;
        p->a.reason = p->reason;
    } else {
        /* Out of memory: the lease will expire and the message will be sent again. */
        obx_log(OBX_LOG_ERROR, "cannot record an attempt: out of memory");
    }
    obx_store_claimed_release(&inf->c);
    obx_free(inf);
    start_flush(w);
    kick(l);
    pump(w); /* a slot is free: send the next ready message now */
}

/* ---- breakers --------------------------------------------------------------------------- */

/*
 * The breaker of base_url (NULL: the configured one), made on first use. Out of memory,
 * the configured URL's breaker stands in: a shared breaker only pauses more, never less.
 */
static struct breaker *
breaker_for(struct obx_worker *w, const char *base_url)
{
    struct breaker *b;

    for (b = w->breakers; b; b = b->next)
        if ((b->base_url == NULL && base_url == NULL) ||
            (b->base_url && base_url && strcmp(b->base_url, base_url) == 0))
            return b;
    b = obx_calloc(1, sizeof *b);
    if (b && base_url && !(b->base_url = obx_strdup(base_url))) {
        obx_free(b);
        b = NULL;
    }
    if (!b)
        return base_url ? breaker_for(w, NULL) : w->breakers;
    obx_circuit_init(&b->c, OBX_CIRCUIT_DEFAULT_THRESHOLD, OBX_CIRCUIT_DEFAULT_MIN_OPEN_MS,
                     OBX_CIRCUIT_DEFAULT_MAX_OPEN_MS);
    b->next = w->breakers;
    w->breakers = b;
    return b;
}

static enum obx_err
run_circuit(struct obx_store *st, void *arg)
{
    struct circuit_job *j = arg;

    return obx_store_pg_record_circuit(st, j->tenants, j->epochs, j->n, j->open_until_ms);
}

static void
on_circuit(void *arg, enum obx_err err)
{
    struct circuit_job *j = arg;

    (void)err;
    obx_free(j->tenants);
    obx_free(j->epochs);
    obx_free(j->names);
    obx_free(j);
}

/* PostgreSQL: b opened or closed; the tenants held here that send through it remember it. */
static void
share_breaker(struct obx_worker *w, struct breaker *b)
{
    struct circuit_job *j;
    size_t cap = w->nlanes + 1;
    int64_t now_mono = mono_now(w);

    if (!w->nodes || !(j = obx_calloc(1, sizeof *j)))
        return;
    j->tenants = obx_calloc(cap, sizeof *j->tenants);
    j->epochs = obx_calloc(cap, sizeof *j->epochs);
    j->names = obx_calloc(cap, sizeof *j->names);
    if (!j->tenants || !j->epochs || !j->names) {
        on_circuit(j, OBX_ENOMEM);
        return;
    }
    for (size_t i = 0; i < cap; i++) {
        const struct lane *l = i == 0 ? w->def : w->lanes[i - 1];
        if (l->br != b || !l->epoch)
            continue;
        snprintf(j->names[j->n], sizeof j->names[j->n], "%s", lane_label(l));
        j->tenants[j->n] = j->names[j->n];
        j->epochs[j->n++] = l->epoch;
    }
    if (!j->n) {
        on_circuit(j, OBX_OK);
        return;
    }
    if (b->c.state == OBX_CIRCUIT_OPEN)
        j->open_until_ms = wall_now(w) + (b->c.open_until_mono_ms - now_mono);
    j->job.run = run_circuit;
    j->job.done = on_circuit;
    j->job.arg = j;
    obx_storeq_submit(w->q, &j->job);
}

/* Records an answer (or none); when the breaker closes again, its lanes look at once. On
 * PostgreSQL each opening and closing is shared with the next holder of its tenants. */
static void
breaker_record(struct obx_worker *w, struct breaker *b, int success)
{
    enum obx_circuit_state was = b->c.state;

    obx_circuit_record(&b->c, success, mono_now(w));
    if (b->c.state != was && b->c.state != OBX_CIRCUIT_HALF_OPEN)
        share_breaker(w, b);
    if (was == OBX_CIRCUIT_CLOSED || b->c.state != OBX_CIRCUIT_CLOSED)
        return;
    if (w->def->br == b)
        kick(w->def);
    for (size_t i = 0; i < w->nlanes; i++)
        if (w->lanes[i]->br == b)
            kick(w->lanes[i]);
}

/* ---- lanes ---------------------------------------------------------------------------- */

static double
lane_rate_per_s(const struct obx_worker *w, const struct lane *l)
{
    return l->rate_per_min > 0 ? l->rate_per_min / 60.0 : w->cfg->rate_limit_per_s;
}

static int64_t
lane_burst(const struct obx_worker *w, const struct lane *l)
{
    return l->burst > 0 ? l->burst : w->cfg->rate_burst;
}

static int
lane_throttled(const struct obx_worker *w, const struct lane *l)
{
    return lane_rate_per_s(w, l) > 0;
}

static void
on_lane_timer(evutil_socket_t fd, short what, void *arg)
{
    struct lane *l = arg;

    (void)fd;
    (void)what;
    l->timer_at_mono_ms = 0;
    kick(l);
    pump(l->w);
}

/* Kicks the lane in delay_ms, unless a kick is already due sooner. */
static void
lane_set_timer(struct lane *l, int64_t delay_ms)
{
    struct obx_worker *w = l->w;
    int64_t at = mono_now(w) + (delay_ms > 0 ? delay_ms : 0);
    struct timeval tv;

    if (l->timer_at_mono_ms && l->timer_at_mono_ms <= at)
        return;
    if (!l->timer) {
        l->timer = evtimer_new(w->base, on_lane_timer, l);
        if (!l->timer) {
            schedule_pump(w, delay_ms); /* out of memory: the 1 s poll kicks it instead */
            return;
        }
    }
    l->timer_at_mono_ms = at;
    tv.tv_sec = delay_ms / 1000;
    tv.tv_usec = (delay_ms % 1000) * 1000;
    evtimer_add(l->timer, &tv);
}

static void
push_runnable(struct lane *l)
{
    struct obx_worker *w = l->w;

    if (l->runnable)
        return;
    l->runnable = 1;
    l->run_next = NULL;
    if (w->run_tail)
        w->run_tail->run_next = l;
    else
        w->run_head = l;
    w->run_tail = l;
}

static void
push_wanted(struct lane *l)
{
    struct obx_worker *w = l->w;

    if (l->wanted)
        return;
    l->wanted = 1;
    l->want_next = NULL;
    if (w->want_tail)
        w->want_tail->want_next = l;
    else
        w->want_head = l;
    w->want_tail = l;
}

static int
prefetch_depth(const struct obx_worker *w)
{
    int64_t depth = 2 * w->cfg->max_inflight;

    return depth < PREFETCH_MAX ? (int)depth : PREFETCH_MAX;
}

/*
 * How many messages the lane should be claimed for now. A throttled lane keeps what its
 * tokens will send in the next CLAIM_AHEAD_MS claimed (at least one), and asks again once
 * half of that is sent: at 290/min that is a claim of five messages a second, instead of
 * one claim job per message, and a claim may take a second before the lane runs dry.
 */
static int
lane_want(const struct obx_worker *w, const struct lane *l)
{
    int64_t ahead;
    int want;

    if (l->auth_paused)
        return l->nready ? 0 : 1; /* a probe */
    if (lane_throttled(w, l)) {
        ahead = (int64_t)(lane_rate_per_s(w, l) * CLAIM_AHEAD_MS / 1000.0);
        if (ahead < 1)
            ahead = 1;
        if (ahead > CLAIM_MAX)
            ahead = CLAIM_MAX;
        return l->nready * 2 > ahead ? 0 : (int)ahead - l->nready;
    }
    want = prefetch_depth(w) - l->nready;
    return want < CLAIM_MAX ? want : CLAIM_MAX;
}

/*
 * PostgreSQL: whether this node may send for the lane now: it holds the tenant's lease,
 * the takeover job is done, and the last beat that renewed the lease is recent enough
 * (store_pg_nodes.h: a node paused past its lease stops by its own clock). Always 1 on
 * SQLite (one node).
 */
static int
lane_holds(struct obx_worker *w, struct lane *l, int64_t now)
{
    if (!w->nodes)
        return 1;
    if (!l->epoch || l->taking_over)
        return 0;
    if (now < l->hold_until_mono_ms)
        return 1;
    l->hold_until_mono_ms = obx_store_pg_nodes_until(w->nodes, l->name[0] ? l->name : "default",
                                                     l->epoch);
    return now < l->hold_until_mono_ms;
}

/*
 * Decides what the lane needs next: a send slot (runnable), a claim (wanted), or a timer
 * for its next token, probe or poll. Cheap and idempotent: called whenever anything about
 * the lane changed.
 */
static void
kick(struct lane *l)
{
    struct obx_worker *w = l->w;
    int64_t now = mono_now(w), wait = 0;

    if (l->gone || w->stopping || !l->api_key)
        return;
    if (!lane_holds(w, l, now)) {
        /* Held but not renewed in time (a late beat): look again shortly. Not held: the
         * nodes callback kicks it when it comes. */
        if (l->epoch && !l->taking_over)
            lane_set_timer(l, HOLD_RECHECK_MS);
        return;
    }
    if (obx_circuit_wait_ms(&l->br->c, now) > 0) {
        lane_set_timer(l, obx_circuit_wait_ms(&l->br->c, now));
        return;
    }
    if (l->auth_paused) {
        if (l->auth_probe_inflight)
            return;
        if (now < l->auth_probe_at_mono_ms) {
            lane_set_timer(l, l->auth_probe_at_mono_ms - now);
            return;
        }
    } else if (lane_throttled(w, l)) {
        wait = obx_ratelimit_wait_ms(&l->rl, now);
    }
    if (l->ready) {
        if (wait == 0)
            push_runnable(l);
        else
            lane_set_timer(l, wait);
    }
    if (l->in_claim || lane_want(w, l) <= 0)
        return;
    if (l->idle) {
        if (now < l->idle_until_mono_ms) {
            lane_set_timer(l, l->idle_until_mono_ms - now);
            return;
        }
        l->idle = 0;
    }
    if (wait > CLAIM_AHEAD_MS) {
        lane_set_timer(l, wait - CLAIM_AHEAD_MS);
        return;
    }
    push_wanted(l);
}

static struct inflight *
pop_ready(struct lane *l)
{
    struct inflight *inf = l->ready;

    l->ready = inf->next;
    if (!l->ready)
        l->ready_tail = NULL;
    inf->next = NULL;
    l->nready--;
    l->w->nready--;
    return inf;
}

static void
push_ready(struct lane *l, struct inflight *inf)
{
    inf->next = NULL;
    if (l->ready_tail)
        l->ready_tail->next = inf;
    else
        l->ready = inf;
    l->ready_tail = inf;
    l->nready++;
    l->w->nready++;
}

/* Counts one send in the lane's per-second ring (send_rate_per_min). */
static void
count_send(struct lane *l, int64_t now_mono)
{
    int64_t sec = now_mono / 1000;

    if (sec != l->rate_slot_sec) {
        int64_t from = sec - l->rate_slot_sec > RATE_SLOTS ? sec - RATE_SLOTS : l->rate_slot_sec;
        for (int64_t t = from + 1; t <= sec; t++)
            l->rate_slots[t % RATE_SLOTS] = 0;
        l->rate_slot_sec = sec;
    }
    l->rate_slots[sec % RATE_SLOTS]++;
    l->sent_total++;
}

static int64_t
send_rate_per_min(const struct lane *l, int64_t now_mono)
{
    int64_t sec = now_mono / 1000, sum = 0;

    if (sec - l->rate_slot_sec >= RATE_SLOTS)
        return 0;
    for (int64_t t = sec - RATE_SLOTS + 1; t <= sec; t++)
        if (t <= l->rate_slot_sec && t > l->rate_slot_sec - RATE_SLOTS)
            sum += l->rate_slots[((t % RATE_SLOTS) + RATE_SLOTS) % RATE_SLOTS];
    return sum;
}

/* Sends one ready message; its lane's token (if throttled) is already taken. */
static void
start_claimed(struct obx_worker *w, struct inflight *inf, int64_t now_mono)
{
    enum obx_err err;

    obx_circuit_allow(&inf->lane->br->c, now_mono);
    link_inflight(w, inf);
    inf->lane->ninflight++;
    count_send(inf->lane, now_mono);
    err = send_one(w, inf);
    if (err != OBX_OK) {
        /* Could not even start. Releasing it untouched would claim it again at once, for
         * ever, ahead of the rest of its business: record a counted attempt instead (no
         * request was made; http_status 0 and the error say so). A body that cannot be
         * built fails the message now; anything else (out of memory, libcurl refusing the
         * handle) is retried with the usual backoff and ends at max_attempts. */
        struct pending *p;
        char e[128];
        unlink_inflight(w, inf);
        inf->lane->ninflight--;
        /* No request went out, so there is no probe answer to wait for: let the next go. */
        inf->lane->br->c.probe_in_flight = 0;
        if (inf->auth_probe)
            inf->lane->auth_probe_inflight = 0;
        p = add_pending(w, &inf->c, OBX_NEXT_RETRY);
        if (p) {
            int64_t now_ms = wall_now(w);
            snprintf(e, sizeof e, "request not sent: %s", obx_strerror(err));
            p->error = obx_strdup(e);
            p->a.error = p->error;
            p->a.started_at_ms = inf->started_at_ms ? inf->started_at_ms : now_ms;
            p->a.reason = p->reason;
            if (err == OBX_ETOOBIG || err == OBX_EINVAL) {
                p->a.outcome = obx_backoff_outcome_name(OBX_OUTCOME_FATAL);
                p->a.counted = 1;
                p->a.next = OBX_NEXT_FAILED;
                snprintf(p->reason, sizeof p->reason, "request could not be built (%s)",
                         obx_strerror(err));
                w->stats.failed++;
            } else {
                p->a.outcome = obx_backoff_outcome_name(OBX_OUTCOME_TRANSPORT);
                decide_retry(w, inf, p, -1, now_ms);
                if (p->a.next == OBX_NEXT_FAILED)
                    w->stats.failed++;
            }
        }
        obx_store_claimed_release(&inf->c);
        obx_free(inf);
        start_flush(w);
    }
}

/* Gives one claimed, unsent message back: recorded as a release (no attempt). */
static void
release_one(struct obx_worker *w, struct inflight *inf, const char *why)
{
    struct pending *p = add_pending(w, &inf->c, OBX_NEXT_RELEASE);

    if (p) {
        snprintf(p->reason, sizeof p->reason, "%s", why);
        p->a.reason = p->reason;
    }
    obx_store_claimed_release(&inf->c);
    obx_free(inf);
    start_flush(w);
}

static void
release_lane_ready(struct lane *l, const char *why)
{
    while (l->ready)
        release_one(l->w, pop_ready(l), why);
}

/* Gives every claimed, unsent message back (a gate closed, or shutdown). */
static void
release_ready(struct obx_worker *w, const char *why)
{
    release_lane_ready(w->def, why);
    for (size_t i = 0; i < w->nlanes; i++)
        release_lane_ready(w->lanes[i], why);
}

/* Store thread: the claim job. */
static enum obx_err
run_claim(struct obx_store *st, void *arg)
{
    struct claim_job *c = arg;

    c->n = 0;
    return obx_store_claim_tenants(st, c->wants, c->nlanes, c->lease_ms, c->out, &c->n);
}

static void lane_free(struct lane *l);

/* Frees the dropped lanes that nothing refers to any more. */
static void
sweep_gone(struct obx_worker *w)
{
    struct lane **pp = &w->gone;

    while (*pp) {
        struct lane *l = *pp;
        if (l->ninflight || l->in_claim || l->nready || l->taking_over) {
            pp = &l->run_next;
            continue;
        }
        *pp = l->run_next;
        lane_free(l);
    }
}

/* The name a tenant pause gives lane l's tenant. */
static const char *
lane_pause_key(const struct lane *l)
{
    return l->name[0] ? l->name : "default";
}

/* Why c, brought by claim seq, goes back: it may have been read before a pause of its
 * channel or lane. NULL: it may go. */
static const char *
fenced(const struct obx_worker *w, uint64_t seq, const struct lane *l, const struct obx_claimed *c)
{
    for (int i = 0; i < w->nfences; i++) {
        const struct pause_fence *f = &w->fences[i];
        if (seq > f->upto_seq)
            continue;
        if (!f->key || strcmp(f->key, f->tenant ? lane_pause_key(l) : c->msg.channel_id) == 0)
            return f->tenant ? "released: tenant paused" : "released: channel paused";
    }
    return NULL;
}

/* Fences whose claims have all come back are done with. */
static void
drop_passed_fences(struct obx_worker *w)
{
    uint64_t oldest = UINT64_MAX; /* the oldest claim still outstanding */
    int kept = 0;

    for (int i = 0; i < CLAIM_JOBS; i++)
        if (w->claims[i].busy && w->claims[i].seq < oldest)
            oldest = w->claims[i].seq;
    for (int i = 0; i < w->nfences; i++) {
        if (w->fences[i].upto_seq < oldest)
            obx_free(w->fences[i].key);
        else
            w->fences[kept++] = w->fences[i];
    }
    w->nfences = kept;
}

/* Claims outstanding now may bring messages of the channel or tenant key although it is
 * paused. */
static void
add_pause_fence(struct obx_worker *w, int tenant, const char *key)
{
    struct pause_fence *f;

    drop_passed_fences(w);
    if (!w->claiming)
        return;
    if (w->nfences == PAUSE_FENCES_MAX) {
        /* Too many pauses within one claim's time: fence everything instead. */
        for (int i = 0; i < w->nfences; i++)
            obx_free(w->fences[i].key);
        w->nfences = 0;
        key = NULL;
    }
    f = &w->fences[w->nfences];
    f->tenant = tenant;
    f->key = key ? obx_strdup(key) : NULL; /* NULL on ENOMEM: everything */
    f->upto_seq = w->claims_submitted;
    w->nfences++;
}

/* Loop thread: the claimed messages are leased and committed; they join their lanes. */
static void
on_claimed(void *arg, enum obx_err err)
{
    struct claim_job *c = arg;
    struct obx_worker *w = c->w;
    int64_t now_mono = mono_now(w);
    int k = 0;

    w->claiming--;
    c->busy = 0;
    if (err != OBX_OK) {
        /* Not committed: the leases do not exist; drop what run_claim filled in. */
        for (int i = 0; i < c->n; i++)
            obx_store_claimed_release(&c->out[i]);
        obx_log(OBX_LOG_WARN, "cannot claim messages", OBX_KS("error", obx_strerror(err)));
    }
    for (size_t j = 0; j < c->nlanes; j++) {
        struct lane *l = c->lanes[j];
        int got = err == OBX_OK ? c->wants[j].got : 0;
        l->in_claim = 0;
        for (int i = 0; i < got; i++, k++) {
            struct inflight *inf = l->gone || w->stopping ? NULL : obx_calloc(1, sizeof *inf);
            if (!inf) {
                struct pending *p = add_pending(w, &c->out[k], OBX_NEXT_RELEASE);
                if (p)
                    p->a.reason = l->gone       ? "released: tenant removed"
                                  : w->stopping ? "released at shutdown"
                                                : "out of memory";
                obx_store_claimed_release(&c->out[k]);
                start_flush(w);
                continue;
            }
            inf->w = w;
            inf->lane = l;
            inf->c = c->out[k]; /* now owned by the ready record */
            inf->claimed_mono_ms = now_mono;
            const char *why = fenced(w, c->seq, l, &inf->c);
            if (why)
                release_one(w, inf, why);
            else
                push_ready(l, inf);
        }
        if (got < c->wants[j].want) {
            /* Nothing more is due: poll for rows written elsewhere, unless woken sooner. */
            l->idle = 1;
            l->idle_until_mono_ms = now_mono + IDLE_POLL_MS;
        }
        kick(l);
    }
    c->nlanes = 0;
    drop_passed_fences(w);
    sweep_gone(w);
    maybe_drained(w); /* a stop may have been waiting for this claim only */
    pump(w);
}

/* Builds and submits one claim job from the lanes that want messages. */
static void
submit_claim(struct obx_worker *w)
{
    struct claim_job *c = NULL;

    for (int i = 0; i < CLAIM_JOBS && !c; i++)
        if (!w->claims[i].busy)
            c = &w->claims[i];
    if (!c)
        return;
    c->nlanes = 0;
    c->total_want = 0;
    while (w->want_head && c->nlanes < CLAIM_LANES_MAX) {
        struct lane *l = w->want_head;
        int want = lane_want(w, l);
        if (want > CLAIM_TOTAL_MAX - c->total_want)
            break; /* the next job takes it */
        w->want_head = l->want_next;
        if (!w->want_head)
            w->want_tail = NULL;
        l->wanted = 0;
        if (l->gone || want <= 0 || l->in_claim || !l->api_key)
            continue;
        if (!lane_holds(w, l, mono_now(w))) {
            kick(l); /* its hold ran out since it asked: kick's timer looks again */
            continue;
        }
        l->in_claim = want;
        c->lanes[c->nlanes] = l;
        c->wants[c->nlanes] = (struct obx_claim_want){l->name[0] ? l->name : NULL, &l->rr, want, 0,
                                                      l->epoch};
        c->nlanes++;
        c->total_want += want;
    }
    if (!c->nlanes)
        return;
    c->lease_ms = w->cfg->connect_timeout_ms + w->cfg->request_timeout_ms + 60000;
    /* run_claim sets it, but a group that fails before its jobs run (BEGIN, a lost
     * connection) never calls run: on_claimed must not see the last claim's count, whose
     * messages the lanes own now. */
    c->n = 0;
    c->busy = 1;
    c->seq = ++w->claims_submitted;
    w->claiming++;
    obx_storeq_submit(w->q, &c->job);
}

/* Every lane looks again now, the idle ones too. */
static void
kick_all(struct obx_worker *w)
{
    w->def->idle = 0;
    kick(w->def);
    for (size_t i = 0; i < w->nlanes; i++) {
        w->lanes[i]->idle = 0;
        kick(w->lanes[i]);
    }
}

/* obx_worker_notify asked: idle lanes look again (at most every WAKE_IDLE_MIN_MS). */
static void
wake_idle_lanes(struct obx_worker *w, int64_t now)
{
    if (!w->wake_idle)
        return;
    if (now - w->woke_idle_mono_ms < WAKE_IDLE_MIN_MS) {
        schedule_pump(w, WAKE_IDLE_MIN_MS - (now - w->woke_idle_mono_ms));
        return;
    }
    w->wake_idle = 0;
    w->woke_idle_mono_ms = now;
    kick_all(w);
}

/*
 * Hands the free send slots to the runnable lanes, one message each in turn, then asks
 * the store thread for the messages the lanes want.
 */
static void
pump(struct obx_worker *w)
{
    /*
     * A request whose answer is not committed yet still counts: were the process killed,
     * its message would be sent again. So at most max_inflight messages are ever sent
     * without a committed outcome, which bounds the duplicates of a crash (SPEC §3).
     */
    int capacity = (int)w->cfg->max_inflight - w->ninflight - w->unrecorded;
    int64_t now = mono_now(w);

    if (w->stopping)
        return;
    wake_idle_lanes(w, now);
    if (w->flush_failing) {
        /* Outcomes cannot be written: claimed messages go back rather than sit in
         * `sending` past their lease. */
        release_ready(w, "released while sending is paused");
        return;
    }
    while (capacity > 0 && w->run_head) {
        struct lane *l = w->run_head;
        struct inflight *inf;
        int probe = 0;
        w->run_head = l->run_next;
        if (!w->run_head)
            w->run_tail = NULL;
        l->runnable = 0;
        if (l->gone)
            continue;
        if (!l->ready) {
            kick(l); /* given back meanwhile (release_ready): it may want a claim instead */
            continue;
        }
        if (!lane_holds(w, l, now)) {
            kick(l); /* sets the timer that looks again; puts nothing back here */
            continue;
        }
        if (obx_circuit_wait_ms(&l->br->c, now) > 0) {
            /* Its base URL is down: what it claimed goes back; a timer brings it back. */
            release_lane_ready(l, "released while sending is paused");
            kick(l);
            continue;
        }
        if (l->auth_paused) {
            if (l->auth_probe_inflight || now < l->auth_probe_at_mono_ms) {
                kick(l);
                continue;
            }
            probe = 1;
        } else if (lane_throttled(w, l) && !obx_ratelimit_take(&l->rl, now)) {
            kick(l); /* its token is not there yet: a timer brings it back */
            continue;
        }
        inf = pop_ready(l);
        if (now - inf->claimed_mono_ms > READY_MAX_AGE_MS) {
            release_one(w, inf, "released: claimed too long ago");
            kick(l);
            continue;
        }
        inf->auth_probe = probe;
        if (probe)
            l->auth_probe_inflight = 1;
        start_claimed(w, inf, now);
        capacity--;
        kick(l); /* a half-open breaker now waits for its probe: kick sets a timer */
    }
    while (w->claiming < CLAIM_JOBS && w->want_head)
        submit_claim(w);
}

/* ---- tenants ---------------------------------------------------------------------------- */

static void
lane_set_key(struct lane *l, const char *key, const char *fingerprint)
{
    if (l->api_key)
        obx_secretbox_free_plain(l->api_key);
    l->api_key = key ? obx_strdup(key) : NULL;
    snprintf(l->key_fingerprint, sizeof l->key_fingerprint, "%s", fingerprint ? fingerprint : "");
}

static struct lane *
lane_new(struct obx_worker *w, const char *name)
{
    struct lane *l = obx_calloc(1, sizeof *l);

    if (!l)
        return NULL;
    l->w = w;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->rate_slot_sec = mono_now(w) / 1000;
    obx_ratelimit_init(&l->rl, w->cfg->rate_limit_per_s, w->cfg->rate_burst, mono_now(w));
    l->br = breaker_for(w, NULL);
    return l;
}

static void
lane_free(struct lane *l)
{
    if (!l)
        return;
    if (l->api_key)
        obx_secretbox_free_plain(l->api_key);
    obx_free(l->base_url);
    if (l->timer)
        event_free(l->timer);
    if (l->takeover_ev)
        event_free(l->takeover_ev);
    obx_free(l);
}

/* Applies a pace, key or base URL that may have changed. */
static void
lane_configure(struct lane *l, const char *key, const char *fingerprint, const char *no_key,
               double rate_per_min, int64_t burst, const char *base_url)
{
    struct obx_worker *w = l->w;
    int key_changed = (key == NULL) != (l->api_key == NULL) ||
                      (key && l->api_key && strcmp(key, l->api_key) != 0);

    if (key_changed)
        lane_set_key(l, key, fingerprint);
    l->no_key = l->api_key ? NULL : key ? "out of memory" : no_key;
    /* Without a key nothing of it can be sent: what it claimed goes back to `queued` now
     * rather than wait in `sending` for its lease to expire. */
    if (!l->api_key)
        release_lane_ready(l, "released: the tenant has no usable key");
    if ((base_url == NULL) != (l->base_url == NULL) ||
        (base_url && strcmp(base_url, l->base_url) != 0)) {
        obx_free(l->base_url);
        l->base_url = base_url ? obx_strdup(base_url) : NULL;
    }
    l->br = breaker_for(w, l->base_url);
    l->rate_per_min = rate_per_min;
    l->burst = burst;
    obx_ratelimit_set_rate(&l->rl, lane_rate_per_s(w, l), lane_burst(w, l), mono_now(w));
    if (key_changed && l->auth_paused) {
        /* Probe right away with the (maybe corrected) key. */
        l->auth_probe_at_mono_ms = mono_now(w);
        obx_log(OBX_LOG_INFO, "the tenant's api key changed; probing it",
                OBX_KS("tenant", lane_label(l)));
    }
    l->idle = 0;
    kick(l);
}

static int
lane_cmp(const void *a, const void *b)
{
    return strcmp((*(struct lane *const *)a)->name, (*(struct lane *const *)b)->name);
}

static struct lane *
find_lane(struct lane **lanes, size_t n, const char *name)
{
    struct lane key, *kp = &key, **hit;

    if (n == 0)
        return NULL; /* lanes may be NULL: bsearch must not get it (UBSan) */
    snprintf(key.name, sizeof key.name, "%s", name);
    hit = bsearch(&kp, lanes, n, sizeof *lanes, lane_cmp);
    return hit ? *hit : NULL;
}

/* Removes l from the runnable and wanted lists (a lane leaving). */
static void
unlist(struct obx_worker *w, struct lane *l)
{
    struct lane **pp, *prev = NULL;

    for (pp = &w->run_head; *pp; prev = *pp, pp = &(*pp)->run_next)
        if (*pp == l) {
            *pp = l->run_next;
            if (w->run_tail == l)
                w->run_tail = prev;
            break;
        }
    prev = NULL;
    for (pp = &w->want_head; *pp; prev = *pp, pp = &(*pp)->want_next)
        if (*pp == l) {
            *pp = l->want_next;
            if (w->want_tail == l)
                w->want_tail = prev;
            break;
        }
    l->runnable = l->wanted = 0;
}

static void
free_channels(struct obx_worker *w)
{
    for (size_t i = 0; i < w->nchannels; i++)
        obx_free(w->channels[i].channel_id);
    obx_free(w->channels);
    w->channels = NULL;
    w->nchannels = 0;
}

static int
channel_ref_cmp(const void *a, const void *b)
{
    return strcmp(((const struct channel_ref *)a)->channel_id,
                  ((const struct channel_ref *)b)->channel_id);
}

struct channel_load {
    struct obx_worker *w;
    struct channel_ref *v;
    size_t n, cap;
    enum obx_err err;
};

static int
collect_channels(void *ctx, const struct obx_tenant_row *t)
{
    struct channel_load *cl = ctx;
    struct lane *l = find_lane(cl->w->lanes, cl->w->nlanes, t->name);

    for (size_t i = 0; l && i < t->nchannels; i++) {
        if (cl->n == cl->cap) {
            size_t ncap = cl->cap ? cl->cap * 2 : 64;
            struct channel_ref *v = obx_realloc(cl->v, ncap * sizeof *v);
            if (!v) {
                cl->err = OBX_ENOMEM;
                return 1;
            }
            cl->v = v;
            cl->cap = ncap;
        }
        cl->v[cl->n].lane = l;
        cl->v[cl->n].channel_id = obx_strdup(t->channels[i].channel_id);
        if (!cl->v[cl->n].channel_id) {
            cl->err = OBX_ENOMEM;
            return 1;
        }
        cl->n++;
    }
    return 0;
}

/* The channel -> lane map that obx_worker_notify_channel looks in. */
static enum obx_err
load_channels(struct obx_worker *w)
{
    struct channel_load cl = {w, NULL, 0, 0, OBX_OK};
    enum obx_err err = obx_store_tenant_list(w->st, NULL, collect_channels, &cl);

    if (err == OBX_OK)
        err = cl.err;
    free_channels(w);
    w->channels = cl.v;
    w->nchannels = cl.n;
    if (w->nchannels)
        qsort(w->channels, w->nchannels, sizeof *w->channels, channel_ref_cmp);
    return err;
}

static void publish_tenants(struct obx_worker *w);

/*
 * Makes the lanes match the registry at version (its tenants t, n of them, which this frees):
 * new ones start, changed ones change, removed go.
 */
static enum obx_err
apply_tenants(struct obx_worker *w, int64_t version, struct obx_tenant_conf *t, size_t n)
{
    struct lane **lanes;
    size_t loaded = 0;
    enum obx_err err = OBX_OK;

    lanes = obx_calloc(n ? n : 1, sizeof *lanes);
    if (!lanes) {
        obx_store_tenant_conf_free(t, n);
        return OBX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct lane *l = find_lane(w->lanes, w->nlanes, t[i].name);
        if (l) {
            l->kept = 1; /* not dropped below */
        } else {
            l = lane_new(w, t[i].name);
            if (!l) {
                err = OBX_ENOMEM;
                loaded = n;
                n = i;
                break;
            }
            obx_log(OBX_LOG_INFO, "tenant added", OBX_KS("tenant", t[i].name),
                    OBX_KS("key_fingerprint", t[i].key_fingerprint));
        }
        lanes[i] = l;
    }
    /* Lanes no longer registered go; the others were marked above. */
    for (size_t i = 0; i < w->nlanes; i++) {
        struct lane *l = w->lanes[i];
        if (l->kept) {
            l->kept = 0;
            continue;
        }
        obx_log(OBX_LOG_INFO, "tenant removed", OBX_KS("tenant", l->name));
        l->gone = 1;
        unlist(w, l);
        release_lane_ready(l, "released: tenant removed");
        if (l->timer)
            evtimer_del(l->timer);
        l->run_next = w->gone;
        w->gone = l;
    }
    for (size_t i = 0; i < n; i++) {
        lane_configure(lanes[i], t[i].api_key, t[i].key_fingerprint, t[i].key_error,
                       t[i].rate_limit_per_min, t[i].rate_burst, t[i].partoo_base_url);
    }
    obx_free(w->lanes);
    w->lanes = lanes;
    w->nlanes = n;
    obx_store_tenant_conf_free(t, loaded ? loaded : n);
    /* PostgreSQL: no channel map (it would be a read on the loop); a producer's COMMIT
     * wakes every idle lane there (store_pg_listen). */
    if (err == OBX_OK && !w->nodes)
        err = load_channels(w);
    if (err == OBX_OK)
        w->registry_version = version;
    sweep_gone(w);
    publish_tenants(w);
    schedule_pump(w, 0);
    return err;
}

/* Reads the registry on the loop's connection (SQLite) and applies it when it changed. */
static enum obx_err
apply_registry(struct obx_worker *w)
{
    struct obx_tenant_conf *t = NULL;
    size_t n = 0;
    int64_t version = 0;
    enum obx_err err = obx_store_tenant_version(w->st, &version);

    if (err == OBX_OK && version == w->registry_version)
        return OBX_OK;
    if (err == OBX_OK)
        err = obx_store_tenant_load(w->st, w->has_sealing_key ? w->sealing_key : NULL, &t, &n);
    if (err != OBX_OK) {
        obx_log(OBX_LOG_WARN, "cannot read the tenant registry",
                OBX_KS("error", obx_strerror(err)));
        return err;
    }
    return apply_tenants(w, version, t, n);
}

/*
 * PostgreSQL: the registry is read on the store thread (the loop never waits on the
 * network), and applied when its version changed.
 */
struct registry_job {
    struct obx_storeq_job job;
    struct obx_worker *w;
    int64_t known, version;
    uint8_t sealing_key[OBX_SECRETBOX_KEY_BYTES];
    int has_sealing_key;
    int loaded;
    struct obx_tenant_conf *t;
    size_t n;
};

static enum obx_err
run_registry(struct obx_store *st, void *arg)
{
    struct registry_job *j = arg;
    enum obx_err err = obx_store_tenant_version(st, &j->version);

    if (err == OBX_OK && j->version != j->known) {
        err = obx_store_tenant_load(st, j->has_sealing_key ? j->sealing_key : NULL, &j->t, &j->n);
        j->loaded = err == OBX_OK;
    }
    return err;
}

static void
on_registry(void *arg, enum obx_err err)
{
    struct registry_job *j = arg;
    struct obx_worker *w = j->w;

    w->registry_busy = 0;
    /* Once per outage: it is tried every second. */
    if (err != OBX_OK && !w->registry_failing)
        obx_log(OBX_LOG_WARN, "cannot read the tenant registry, will retry",
                OBX_KS("error", obx_strerror(err)));
    else if (err == OBX_OK && w->registry_failing)
        obx_log(OBX_LOG_INFO, "the tenant registry is read again");
    w->registry_failing = err != OBX_OK;
    if (j->loaded && err == OBX_OK && !w->stopping)
        (void)apply_tenants(w, j->version, j->t, j->n); /* frees j->t */
    else
        obx_store_tenant_conf_free(j->t, j->n);
    explicit_bzero(j->sealing_key, sizeof j->sealing_key);
    obx_free(j);
    maybe_drained(w);
}

static void
submit_registry(struct obx_worker *w)
{
    struct registry_job *j;

    if (w->registry_busy || w->stopping)
        return;
    j = obx_calloc(1, sizeof *j);
    if (!j)
        return; /* the next poll tries again */
    j->w = w;
    j->known = w->registry_version;
    j->has_sealing_key = w->has_sealing_key;
    memcpy(j->sealing_key, w->sealing_key, sizeof j->sealing_key);
    j->job.run = run_registry;
    j->job.done = on_registry;
    j->job.arg = j;
    w->registry_busy = 1;
    obx_storeq_submit(w->q, &j->job);
}

/* Looks at the registry's version now: on the loop (SQLite) or the store thread (PostgreSQL). */
static void
refresh_registry(struct obx_worker *w)
{
    if (w->stopping)
        return;
    if (obx_store_pg_in_use(w->st))
        submit_registry(w);
    else
        (void)apply_registry(w); /* a failure is logged and tried again in a second */
}

static void
on_registry_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refresh_registry(arg);
}

void
obx_worker_tenants_changed(struct obx_worker *w)
{
    refresh_registry(w);
}

/* The configured key, pace and base URL make the default tenant; the sealing key opens
 * the registry's sealed keys. */
static void
configure_default(struct obx_worker *w)
{
    struct obx_buf err;
    char fp[OBX_SECRETBOX_FINGERPRINT_LEN + 1] = "";

    if (w->cfg->partoo_api_key)
        obx_secretbox_fingerprint(w->cfg->partoo_api_key, strlen(w->cfg->partoo_api_key), fp);
    lane_configure(w->def, w->cfg->partoo_api_key, fp,
                   "no default API key (OUTBOX_PARTOO_API_KEY or partoo_api_key_file)", 0, 0, NULL);
    w->has_sealing_key = 0;
    explicit_bzero(w->sealing_key, sizeof w->sealing_key);
    if (!w->cfg->secrets_key_file)
        return;
    obx_buf_init(&err, 512);
    if (obx_secretbox_load_key(w->cfg->secrets_key_file, w->sealing_key, &err) == OBX_OK)
        w->has_sealing_key = 1;
    else
        obx_log(OBX_LOG_ERROR, "cannot load secrets_key_file; sealed tenant keys stay closed",
                OBX_KS("error", obx_buf_str(&err)));
    obx_buf_release(&err);
}

/* ---- several nodes (PostgreSQL) --------------------------------------------------------- */

static void submit_takeover(struct lane *l);

/* Store thread: what the tenant's previous holder left in `sending` goes back to `queued`. */
static enum obx_err
run_takeover(struct obx_store *st, void *arg)
{
    struct takeover_job *t = arg;

    return obx_store_pg_takeover(st, t->tenant[0] ? t->tenant : NULL, t->epoch, &t->requeued,
                                 &t->pacing);
}

static void
on_takeover_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    submit_takeover(arg);
}

/*
 * The lane starts where the previous holder left the tenant: an empty bucket (its first send
 * waits for a token, so a takeover never bursts), the rest of a 429's Retry-After, an
 * auth pause that waits for its probe, and a breaker open as long as the previous holder's.
 */
static void
apply_pacing(struct obx_worker *w, struct lane *l, const struct obx_pg_pacing *p)
{
    int64_t now_ms = wall_now(w), now_mono = mono_now(w);
    int64_t pause = p->paused_until_ms > now_ms ? p->paused_until_ms - now_ms : 0;

    obx_ratelimit_pause_until(&l->rl, pause ? now_mono + pause : 0);
    if (pause)
        l->rate_paused_until_ms = p->paused_until_ms;
    /* The previous holder's breaker for this base URL was open: no probe before its own. */
    if (p->circuit_open_until_ms > now_ms)
        obx_circuit_hold_until(&l->br->c, now_mono + (p->circuit_open_until_ms - now_ms), now_mono);
    if (p->auth_paused && !l->auth_paused) {
        l->auth_paused = 1;
        l->auth_probe_at_mono_ms = now_mono + w->cfg->auth_probe_interval_ms;
        obx_log(OBX_LOG_WARN, "taken over with the key refused; sending waits for the next probe",
                OBX_KS("tenant", lane_label(l)),
                OBX_KI("probe_in_ms", w->cfg->auth_probe_interval_ms));
    }
}

/* Loop thread: the lane may claim now, unless the lease moved on meanwhile. */
static void
on_takeover(void *arg, enum obx_err err)
{
    struct takeover_job *t = arg;
    struct lane *l = t->l;
    struct obx_worker *w = l->w;

    w->ntakeovers--;
    /* A job of an older epoch leaves the flag to the newer epoch's job (apply_hold submitted
     * it): the lane must not claim before that one has queued the orphans again. */
    if (l->epoch == t->epoch || !l->epoch)
        l->taking_over = 0;
    if (l->epoch == t->epoch && !w->stopping) {
        if (err == OBX_OK) {
            apply_pacing(w, l, &t->pacing);
            obx_log(OBX_LOG_INFO, "sending for a tenant", OBX_KS("tenant", lane_label(l)),
                    OBX_KI("epoch", l->epoch), OBX_KI("requeued", t->requeued),
                    OBX_KI("paused_until_ms", t->pacing.paused_until_ms));
            l->idle = 0;
            kick(l);
        } else {
            /*
             * The database is away, or refused the lease (OBX_ECONFLICT: the beat that gave
             * it is already out of date). Try again while this epoch is still ours; the
             * next beat changes it if the lease is lost, and apply_hold takes it from there.
             * Without a retry the lane would wait here for ever: nothing else kicks it.
             */
            struct timeval tv = {TAKEOVER_RETRY_MS / 1000, 0};
            obx_log(OBX_LOG_WARN, "cannot take a tenant over, will retry",
                    OBX_KS("tenant", lane_label(l)), OBX_KS("error", obx_strerror(err)));
            l->taking_over = 1;
            if (!l->takeover_ev)
                l->takeover_ev = evtimer_new(w->base, on_takeover_retry, l);
            if (l->takeover_ev)
                evtimer_add(l->takeover_ev, &tv);
        }
    }
    obx_free(t);
    maybe_drained(w);
    pump(w);
}

static void
submit_takeover(struct lane *l)
{
    struct obx_worker *w = l->w;
    struct takeover_job *t;

    l->taking_over = 0;
    if (l->takeover_ev)
        evtimer_del(
            l->takeover_ev); /* a retry of an older epoch's takeover: this one replaces it */
    if (!l->epoch || w->stopping)
        return;
    t = obx_calloc(1, sizeof *t);
    if (!t) {
        l->epoch = 0; /* out of memory: not held, as far as sending goes */
        return;
    }
    t->l = l;
    snprintf(t->tenant, sizeof t->tenant, "%s", l->name);
    t->epoch = l->epoch;
    t->job.run = run_takeover;
    t->job.done = on_takeover;
    t->job.arg = t;
    l->taking_over = 1;
    w->ntakeovers++;
    obx_storeq_submit(w->q, &t->job);
}

/* Brings one lane in line with what this node holds now. */
static void
apply_hold(struct lane *l, const struct obx_store_pg_held *held, size_t n)
{
    const char *label = l->name[0] ? l->name : "default";
    const struct obx_store_pg_held *h = NULL;

    for (size_t i = 0; i < n && !h; i++)
        if (strcmp(held[i].tenant, label) == 0)
            h = &held[i];
    if (h && h->epoch == l->epoch) {
        l->hold_until_mono_ms = h->until_mono_ms;
        return;
    }
    if (l->epoch) {
        obx_log(OBX_LOG_WARN, "lease lost: stop sending for a tenant", OBX_KS("tenant", label),
                OBX_KI("epoch", l->epoch));
        /* Written under the old epoch, these releases are refused: the next holder queues
         * the messages again itself. */
        release_lane_ready(l, "released: lease lost");
    }
    l->epoch = h ? h->epoch : 0;
    l->hold_until_mono_ms = h ? h->until_mono_ms : 0;
    if (h)
        submit_takeover(l);
}

/*
 * PostgreSQL: the tenants the nodes spread among themselves are the registry's and the
 * default; after a change, the lanes learn what this node holds of them.
 */
static void
publish_tenants(struct obx_worker *w)
{
    const char **names;

    if (!w->nodes)
        return;
    names = obx_calloc(w->nlanes + 1, sizeof *names);
    if (!names)
        return; /* the next registry change tries again */
    names[0] = "default";
    for (size_t i = 0; i < w->nlanes; i++)
        names[i + 1] = w->lanes[i]->name;
    if (obx_store_pg_nodes_set_tenants(w->nodes, names, w->nlanes + 1) != OBX_OK)
        obx_log(OBX_LOG_WARN, "cannot hand the tenants to the node thread");
    obx_free(names);
    obx_worker_nodes_changed(w);
}

void
obx_worker_nodes_changed(struct obx_worker *w)
{
    struct obx_store_pg_held *held;
    size_t n, max = w->nlanes + 1;

    if (!w->nodes)
        return;
    held = obx_calloc(max, sizeof *held);
    if (!held)
        return; /* the next change tries again; what is held stays bounded by its lease */
    n = obx_store_pg_nodes_held(w->nodes, held, max);
    if (n > max)
        n = max; /* tenants the registry no longer has: no lane sends for them */
    apply_hold(w->def, held, n);
    for (size_t i = 0; i < w->nlanes; i++)
        apply_hold(w->lanes[i], held, n);
    obx_free(held);
    pump(w);
}

void
obx_worker_use_nodes(struct obx_worker *w, struct obx_store_pg_nodes *nodes)
{
    w->nodes = nodes;
    publish_tenants(w);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

enum obx_err
obx_worker_new(struct event_base *base, struct obx_store *st, struct obx_storeq *q,
               const struct obx_config *cfg, struct obx_worker **out)
{
    struct obx_http_opts ho = {cfg->connect_timeout_ms, cfg->request_timeout_ms, cfg->max_inflight,
                               cfg->ca_file, NULL};
    struct timeval every = {REGISTRY_POLL_MS / 1000, (REGISTRY_POLL_MS % 1000) * 1000};
    struct obx_worker *w;
    uint64_t seed = 0;
    enum obx_err err;

    *out = NULL;
    w = obx_calloc(1, sizeof *w);
    if (!w)
        return OBX_ENOMEM;
    w->base = base;
    w->st = st;
    w->q = q;
    w->clock = st->clock;
    w->cfg = cfg;
    w->registry_version = -1;
    for (int i = 0; i < CLAIM_JOBS; i++) {
        w->claims[i].w = w;
        w->claims[i].job.run = run_claim;
        w->claims[i].job.done = on_claimed;
        w->claims[i].job.arg = &w->claims[i];
    }

    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)wall_now(w);
    obx_backoff_rng_seed(&w->rng, seed);
    ho.clock = w->clock;
    err = obx_http_client_new(base, &ho, &w->http);
    w->pump_ev = evtimer_new(base, on_pump, w);
    w->flush_ev = evtimer_new(base, on_flush, w);
    w->registry_ev = event_new(base, -1, EV_PERSIST, on_registry_poll, w);
    w->breakers = NULL;
    (void)breaker_for(w, NULL); /* the configured URL's: first, so it is the fallback */
    w->def = lane_new(w, "");
    if (err == OBX_OK &&
        (!w->pump_ev || !w->flush_ev || !w->registry_ev || !w->def || !w->breakers))
        err = OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_worker_free(w);
        return err;
    }
    configure_default(w);
    if (cfg->partoo_api_key && !w->def->api_key)
        err = OBX_ENOMEM;
    if (err == OBX_OK && !obx_store_pg_in_use(st) && apply_registry(w) == OBX_ENOMEM)
        err = OBX_ENOMEM; /* other failures are logged; the poll tries again */
    if (err != OBX_OK) {
        obx_worker_free(w);
        return err;
    }
    if (!cfg->partoo_api_key)
        obx_log(OBX_LOG_WARN,
                "no default Partoo API key (OUTBOX_PARTOO_API_KEY or "
                "partoo_api_key_file): only the channels of tenants are sent",
                OBX_KI("tenants", (int64_t)w->nlanes));
    event_add(w->registry_ev, &every);
    if (obx_store_pg_in_use(st))
        submit_registry(w); /* PostgreSQL: read on the store thread */
    schedule_pump(w, 0);
    *out = w;
    return OBX_OK;
}

static void
free_lane_messages(struct lane *l)
{
    while (l->ready) {
        struct inflight *inf = pop_ready(l);
        obx_store_claimed_release(&inf->c);
        obx_free(inf);
    }
}

void
obx_worker_free(struct obx_worker *w)
{
    if (!w)
        return;
    obx_http_client_free(w->http); /* abandons requests: their messages' leases expire */
    while (w->inflight) {
        struct inflight *inf = w->inflight;
        unlink_inflight(w, inf);
        obx_store_claimed_release(&inf->c);
        obx_free(inf);
    }
    if (w->def)
        free_lane_messages(w->def);
    lane_free(w->def);
    for (size_t i = 0; i < w->nlanes; i++) {
        free_lane_messages(w->lanes[i]);
        lane_free(w->lanes[i]);
    }
    obx_free(w->lanes);
    free_channels(w);
    while (w->gone) {
        struct lane *l = w->gone;
        w->gone = l->run_next;
        free_lane_messages(l);
        lane_free(l);
    }
    for (size_t i = 0; i < w->npending; i++)
        pending_release(&w->pending[i]);
    obx_free(w->pending);
    while (w->failed) {
        struct finish_job *f = w->failed;
        w->failed = f->next;
        finish_job_free(f);
    }
    if (w->pump_ev)
        event_free(w->pump_ev);
    if (w->flush_ev)
        event_free(w->flush_ev);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->registry_ev)
        event_free(w->registry_ev);
    while (w->breakers) {
        struct breaker *b = w->breakers;
        w->breakers = b->next;
        obx_free(b->base_url);
        obx_free(b);
    }
    for (int i = 0; i < w->nfences; i++)
        obx_free(w->fences[i].key);
    explicit_bzero(w->sealing_key, sizeof w->sealing_key);
    obx_free(w);
}

static void
release_lane_channel(struct lane *l, const char *channel_id)
{
    struct inflight *keep = NULL, *keep_tail = NULL;
    int n = 0;

    while (l->ready) {
        struct inflight *inf = pop_ready(l);
        if (strcmp(inf->c.msg.channel_id, channel_id) == 0) {
            release_one(l->w, inf, "released: channel paused");
            continue;
        }
        if (keep_tail)
            keep_tail->next = inf;
        else
            keep = inf;
        keep_tail = inf;
        n++;
    }
    l->ready = keep;
    l->ready_tail = keep_tail;
    l->nready = n;
    l->w->nready += n; /* pop_ready counted them out */
}

void
obx_worker_release_held(struct obx_worker *w, const char *scope, const char *key)
{
    int tenant = strcmp(scope, OBX_PAUSE_TENANT) == 0;

    add_pause_fence(w, tenant, key);
    if (!tenant) {
        release_lane_channel(w->def, key);
        for (size_t i = 0; i < w->nlanes; i++)
            release_lane_channel(w->lanes[i], key);
        return;
    }
    if (strcmp(lane_pause_key(w->def), key) == 0)
        release_lane_ready(w->def, "released: tenant paused");
    for (size_t i = 0; i < w->nlanes; i++)
        if (strcmp(lane_pause_key(w->lanes[i]), key) == 0)
            release_lane_ready(w->lanes[i], "released: tenant paused");
}

void
obx_worker_notify_channel(struct obx_worker *w, const char *channel_id)
{
    struct channel_ref key = {(char *)channel_id, NULL};
    struct channel_ref *hit = w->nchannels ? bsearch(&key, w->channels, w->nchannels,
                                                     sizeof *w->channels, channel_ref_cmp)
                                           : NULL;
    struct lane *l = hit ? hit->lane : w->def;

    if (l->idle) {
        l->idle = 0;
        kick(l);
        schedule_pump(w, 0);
    }
}

void
obx_worker_notify(struct obx_worker *w)
{
    w->wake_idle = 1;
    schedule_pump(w, 0);
}

void
obx_worker_reload(struct obx_worker *w, const struct obx_config *cfg)
{
    w->cfg = cfg;
    configure_default(w);
    if (w->def->auth_paused) {
        /* Probe right away with the (maybe corrected) key. */
        w->def->auth_probe_at_mono_ms = mono_now(w);
        obx_log(OBX_LOG_INFO, "configuration reloaded; probing the api key again");
    }
    /* Lanes that inherit the configured pace follow it; sealed keys may open now. */
    w->registry_version = -1;
    (void)apply_registry(w);
    kick(w->def);
    schedule_pump(w, 0);
}

/* The shutdown deadline: give up on what is still in flight, release it, flush. */
static void
on_stop_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct obx_worker *w = arg;
    int released = 0;

    (void)fd;
    (void)what;
    while (w->inflight) {
        struct inflight *inf = w->inflight;
        struct pending *p = add_pending(w, &inf->c, OBX_NEXT_RELEASE);
        if (p) {
            snprintf(p->reason, sizeof p->reason, "released at shutdown");
            p->a.reason = p->reason;
        }
        unlink_inflight(w, inf);
        inf->lane->ninflight--;
        obx_store_claimed_release(&inf->c);
        obx_free(inf);
        released++;
    }
    /* Their transfers are abandoned with the client. */
    obx_http_client_free(w->http);
    w->http = NULL;
    if (released)
        obx_log(OBX_LOG_WARN, "shutdown timeout: released in-flight messages",
                OBX_KI("count", released));
    start_flush(w);
    maybe_drained(w);
}

void
obx_worker_stop(struct obx_worker *w, int64_t timeout_ms, void (*drained)(void *ctx), void *ctx)
{
    /* Give up on in-flight requests a little before the deadline, so that releasing
     * them, the last commit and the exit itself still fit in shutdown_timeout. */
    int64_t margin = timeout_ms / 5 < 250 ? timeout_ms / 5 : 250;
    int64_t give_up_ms = timeout_ms - margin;
    struct timeval tv = {give_up_ms / 1000, (give_up_ms % 1000) * 1000};

    w->stopping = 1;
    w->drained = drained;
    w->drained_ctx = ctx;
    evtimer_del(w->pump_ev);
    evtimer_del(w->registry_ev);
    /* Claimed but unsent messages go back now; a claim still running does the same with
     * its messages when it comes back (on_claimed). */
    release_ready(w, "released at shutdown");
    maybe_drained(w);
    w->stop_ev = evtimer_new(w->base, on_stop_deadline, w);
    if (w->stop_ev)
        evtimer_add(w->stop_ev, &tv);
}

/* Why the lane does not send now, if it does not (static text), and until when. */
static const char *
lane_paused(const struct lane *l, int64_t now_ms, int64_t now_mono, int64_t *until_ms)
{
    *until_ms = 0;
    if (!l->api_key)
        return "no_key";
    if (l->auth_paused) {
        *until_ms = now_ms + (l->auth_probe_at_mono_ms - now_mono);
        return "auth";
    }
    if (l->br->c.state != OBX_CIRCUIT_CLOSED) {
        *until_ms = now_ms + obx_circuit_wait_ms(&l->br->c, now_mono);
        return "circuit_open";
    }
    if (obx_ratelimit_paused(&l->rl, now_mono)) {
        *until_ms = l->rate_paused_until_ms;
        return "rate_limited";
    }
    return NULL;
}

void
obx_worker_stats(const struct obx_worker *w, struct obx_worker_stats *out)
{
    int64_t now_ms = wall_now(w), now_mono = mono_now(w);
    const char *why;

    *out = w->stats;
    out->inflight = w->ninflight;
    out->circuit = obx_circuit_state_name(w->def->br->c.state);
    why = lane_paused(w->def, now_ms, now_mono, &out->paused_until_ms);
    /* With tenants, a default tenant without a key is normal, not a pause. */
    if (why && strcmp(why, "no_key") == 0)
        why = w->nlanes ? NULL : "no_key";
    out->paused_reason = why;
    if (!why)
        out->paused_until_ms = 0;
    out->tenants = (int64_t)w->nlanes;
}

static void
fill_tenant(const struct obx_worker *w, const struct lane *l, int64_t now_ms, int64_t now_mono,
            struct obx_worker_tenant *t)
{
    memset(t, 0, sizeof *t);
    t->name = lane_label(l);
    t->is_default = l == w->def;
    t->key_fingerprint = l->key_fingerprint;
    t->no_key = l->api_key ? NULL : l->no_key;
    t->paused_reason = lane_paused(l, now_ms, now_mono, &t->paused_until_ms);
    t->rate_limit_per_min = lane_rate_per_s(w, l) * 60.0;
    t->rate_burst = lane_burst(w, l);
    t->send_rate_per_min = send_rate_per_min(l, now_mono);
    t->sent = l->sent_total;
    t->inflight = l->ninflight;
    t->ready = l->nready;
    t->base_url = l->base_url;
    t->held_elsewhere = w->nodes && !l->epoch;
}

void
obx_worker_tenants(const struct obx_worker *w, obx_worker_tenant_fn fn, void *ctx)
{
    int64_t now_ms = wall_now(w), now_mono = mono_now(w);
    struct obx_worker_tenant t;

    fill_tenant(w, w->def, now_ms, now_mono, &t);
    if (fn(ctx, &t))
        return;
    for (size_t i = 0; i < w->nlanes; i++) {
        fill_tenant(w, w->lanes[i], now_ms, now_mono, &t);
        if (fn(ctx, &t))
            return;
    }
}

/* Copies each lane's pause, pace and send rate into the stats of its tenant (SPEC §11). */
static int
fill_stats_of(void *ctx, const struct obx_worker_tenant *t)
{
    struct obx_tenant_stats_set *s = ctx;
    const struct obx_tenant_stats *found = obx_store_tenant_stats_find(s, t->name);
    struct obx_tenant_stats *x;

    if (!found || found->is_default != t->is_default)
        return 0; /* added after the stats were read: shown next time */
    x = &s->v[found - s->v];
    x->send_rate_per_min = t->send_rate_per_min;
    x->sent_total = t->sent;
    x->rate_limit_per_min = t->rate_limit_per_min;
    x->no_key = t->is_default && t->no_key != NULL;
    if (t->held_elsewhere)
        return 0; /* its pause as its node recorded it (read with the stats) */
    snprintf(x->paused_reason, sizeof x->paused_reason, "%s",
             t->paused_reason ? t->paused_reason : "");
    x->paused_until_ms = t->paused_reason ? t->paused_until_ms : 0;
    return 0;
}

void
obx_worker_tenant_stats(const struct obx_worker *w, struct obx_tenant_stats_set *s)
{
    obx_worker_tenants(w, fill_stats_of, s);
}
