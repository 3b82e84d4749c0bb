/*
 * worker: claim -> pace -> send -> record -> transition.
 *
 * Gates, checked in this order before anything is claimed:
 *   auth pause   (401/403: the whole key waits; one probe every auth_probe_interval,
 *                 or a config reload, lifts it)
 *   circuit      (repeated 5xx/transport errors: no requests while open; one probe
 *                 when it half-opens)
 *   token bucket (rate_limit per key, no burst by default; a 429 pauses it for
 *                 Retry-After)
 * Only what can be sent right now is claimed, so a message never waits in
 * `sending` for a token.
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
 * While unthrottled, up to max_inflight messages wait claimed in `ready`, so a slot
 * that frees is refilled at once instead of after a claim's commit. The outcomes of one
 * loop turn go out as one finish job at the end of that turn (sharing a transaction with
 * whatever else the store thread has queued); several may be outstanding. While a write
 * fails (disk full, locked) nothing new is claimed and it is retried every second. At
 * most one claim job is outstanding.
 */
#include "worker.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "backoff.h"
#include "circuit.h"
#include "store_dash.h"
#include "http_client.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "partoo_request.h"
#include "ratelimit.h"
#include "store_queue.h"

#define OBX_MODULE "worker"

#define IDLE_POLL_MS 1000 /* rows inserted by other processes are seen this fast */
#define DEFAULT_RETRY_AFTER_MS 60000
#define CLAIM_MAX 128    /* messages per claim job */
#define PREFETCH_MAX 256 /* most messages kept claimed ahead of a free slot */
/*
 * A claimed message not sent within this goes back instead: its lease (connect + request
 * timeout + 60 s) must outlast the request that has not started yet, or lease recovery
 * could queue it again while it is being sent (a duplicate).
 */
#define READY_MAX_AGE_MS 30000

/* One message claimed for sending (ready, then in flight); owns its claimed message. */
struct inflight {
    struct obx_worker *w;
    struct obx_claimed c;
    int64_t claimed_mono_ms; /* when its claim committed (age limit in `ready`) */
    int64_t started_at_ms;
    int auth_probe;
    struct inflight *prev, *next;
};

/* An attempt waiting for the next flush; owns the strings the attempt points to. */
struct pending {
    struct obx_attempt a;
    char *error;
    char *excerpt;
    char reason[96];
    char channel_id[256];
    char external_message_id[256];
    int attempt_no;
};

/* The claim job: fills `out` on the store thread; the loop reads it in on_claimed. */
struct claim_job {
    struct obx_storeq_job job;
    struct obx_worker *w;
    int want;
    int64_t lease_ms;
    struct obx_claimed out[CLAIM_MAX];
    int n;
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
    struct event_base *base;      /* borrowed */
    struct obx_store *st;         /* borrowed; the loop's connection, for reads only */
    struct obx_storeq *q;         /* borrowed; every write goes through it */
    struct obx_clock *clock;      /* borrowed: st's, so a test that swaps it swaps both */
    const struct obx_config *cfg; /* borrowed; swapped by obx_worker_reload */
    struct obx_http *http;
    struct obx_ratelimit rl;
    struct obx_circuit circuit;
    struct obx_rng rng;

    struct event *pump_ev;   /* one-shot: run pump() */
    int64_t pump_at_mono_ms; /* when pump_ev fires; 0 = not scheduled */
    struct event *flush_ev;  /* one-shot: write pending outcomes */
    struct event *stop_ev;   /* shutdown deadline */

    struct inflight *inflight;           /* doubly linked */
    struct inflight *ready, *ready_tail; /* claimed, not yet sent (FIFO, via next) */
    struct pending *pending;
    size_t npending, cap_pending;
    struct claim_job claim;
    int64_t idle_until_mono_ms; /* the last claim found less than it wanted: poll then */
    struct finish_job *failed;  /* finish jobs whose commit failed: resubmitted in 1 s */
    int64_t auth_probe_at_mono_ms;
    int64_t rate_paused_until_ms; /* wall clock, for status only */
    void (*drained)(void *ctx);
    void *drained_ctx;

    int ninflight;
    int nready;
    int unrecorded;    /* answered requests whose outcome is not committed yet */
    int flush_failing; /* the last flush failed: stop claiming */
    int claiming;      /* claim job outstanding */
    int nfinishing;    /* finish jobs submitted, done not yet called */
    int auth_paused;
    int auth_probe_inflight;
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
    struct obx_partoo_request req;
    enum obx_err err = obx_partoo_request_init(&req, w->cfg->partoo_base_url,
                                               w->cfg->partoo_api_key, inf->c.msg.channel_id,
                                               &inf->c.msg);

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
    p->a.next = next;
    if (next != OBX_NEXT_RELEASE)
        w->unrecorded++;
    p->attempt_no = c->attempts + 1;
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
    obx_log(lvl, "delivery attempt", OBX_KS("channel_id", p->channel_id),
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
        w->failed || !w->drained)
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
    finish_job_free(f);
    if (w->flush_failing && !w->failed && !w->nfinishing) {
        obx_log(OBX_LOG_INFO, "delivery outcomes recorded again");
        w->flush_failing = 0;
    }
    /* Finished messages may have made their conversations' next messages claimable. */
    w->idle_until_mono_ms = 0;
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
    }
    f->job.run = run_finish;
    f->job.done = on_finished;
    f->job.arg = f;
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

/* Age toward max_age: time its channel was paused (held) does not count (SPEC §13). */
static int64_t
age_ms(struct obx_worker *w, const struct inflight *inf, int64_t now_ms)
{
    int64_t age = now_ms - inf->c.created_at_ms, held = 0;

    if (age >= w->cfg->max_age_ms &&
        obx_store_dash_held_ms(w->st, inf->c.msg.channel_id, inf->c.created_at_ms, now_ms, &held) ==
            OBX_OK)
        age -= held;
    obx_store_end_reads(w->st); /* the loop's connection must not keep an old snapshot */
    return age;
}

static void
decide_retry(struct obx_worker *w, const struct inflight *inf, struct pending *p,
             int64_t retry_after_ms, int64_t now_ms)
{
    const struct obx_config *cfg = w->cfg;
    int counted = w->circuit.state == OBX_CIRCUIT_CLOSED;
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

static void
pause_for_auth(struct obx_worker *w, int status)
{
    if (!w->auth_paused)
        obx_log(OBX_LOG_ERROR,
                "partoo rejected the api key; sending paused until a config "
                "reload (SIGHUP) or the next probe",
                OBX_KI("status", status), OBX_KI("probe_in_ms", w->cfg->auth_probe_interval_ms));
    w->auth_paused = 1;
    w->auth_probe_at_mono_ms = mono_now(w) + w->cfg->auth_probe_interval_ms;
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
        /* Bidirectional channels wait for the message_created webhook (SPEC §3). */
        if (!obx_config_channel_readonly(w->cfg, inf->c.msg.channel_id))
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
        pause_for_auth(w, r->status);
        break;
    case OBX_OUTCOME_RATE_LIMITED:
        p->a.counted = 0;
        if (ra < 0)
            ra = DEFAULT_RETRY_AFTER_MS;
        p->a.next_attempt_at_ms = now_ms + ra;
        snprintf(p->reason, sizeof p->reason, "rate limited for %lldms (http 429)", (long long)ra);
        obx_ratelimit_pause_until(&w->rl, mono_now(w) + ra);
        w->rate_paused_until_ms = now_ms + ra;
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

    unlink_inflight(w, inf);
    w->stats.attempts++;
    if (r->status >= 0 && r->status < OBX_STATUS_SLOTS)
        w->stats.by_status[r->status]++;
    w->stats.by_outcome[obx_backoff_classify(r->status)]++;
    obx_metrics_histogram_observe(&w->stats.latency, (double)r->duration_ms / 1000.0);
    obx_circuit_record(&w->circuit, reachable(r->status), mono_now(w));
    if (inf->auth_probe) {
        w->auth_probe_inflight = 0;
        if (obx_backoff_classify(r->status) != OBX_OUTCOME_AUTH && w->auth_paused) {
            w->auth_paused = 0;
            obx_log(OBX_LOG_INFO, "api key accepted again; sending resumed");
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
    pump(w); /* a slot is free: send the next ready message now */
}

/* ---- pumping ------------------------------------------------------------------------ */

/*
 * How many messages may be claimed now (0 = none), and when to look again
 * (*retry_ms, -1 = when an in-flight request ends). Sets *probe for a single probe.
 */
static int
allowance(struct obx_worker *w, int64_t now_mono, int64_t *retry_ms, int *auth_probe)
{
    /*
     * A request whose answer is not committed yet still counts: were the process killed,
     * its message would be sent again. So at most max_inflight messages are ever sent
     * without a committed outcome, which bounds the duplicates of a crash (SPEC §3).
     */
    int capacity = (int)w->cfg->max_inflight - w->ninflight - w->unrecorded;
    int64_t wait;

    *retry_ms = -1;
    *auth_probe = 0;
    if (capacity <= 0 || w->flush_failing)
        return 0;
    if (w->auth_paused) {
        if (w->auth_probe_inflight)
            return 0;
        if (now_mono < w->auth_probe_at_mono_ms) {
            *retry_ms = w->auth_probe_at_mono_ms - now_mono;
            return 0;
        }
        *auth_probe = 1;
        capacity = 1;
    }
    wait = obx_circuit_wait_ms(&w->circuit, now_mono);
    if (wait > 0) {
        *retry_ms = wait;
        return 0;
    }
    if (w->circuit.state != OBX_CIRCUIT_CLOSED)
        capacity = 1; /* the half-open probe */
    if (w->cfg->rate_limit_per_s > 0) {
        wait = obx_ratelimit_wait_ms(&w->rl, now_mono);
        if (wait > 0) {
            *retry_ms = wait;
            return 0;
        }
        capacity = 1; /* one token at a time: never claim what cannot be sent now */
    }
    return capacity;
}

static void
start_claimed(struct obx_worker *w, struct inflight *inf, int64_t now_mono)
{
    enum obx_err err;

    if (w->cfg->rate_limit_per_s > 0)
        obx_ratelimit_take(&w->rl, now_mono);
    obx_circuit_allow(&w->circuit, now_mono);
    link_inflight(w, inf);
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
        /* No request went out, so there is no probe answer to wait for: let the next go. */
        w->circuit.probe_in_flight = 0;
        if (inf->auth_probe)
            w->auth_probe_inflight = 0;
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

/* 1 when nothing but free slots limits sending: then messages are claimed ahead. */
static int
unthrottled(const struct obx_worker *w)
{
    return w->cfg->rate_limit_per_s <= 0 && !w->auth_paused &&
           w->circuit.state == OBX_CIRCUIT_CLOSED && !w->flush_failing;
}

static int
prefetch_depth(const struct obx_worker *w)
{
    int64_t depth = 2 * w->cfg->max_inflight;

    return depth < PREFETCH_MAX ? (int)depth : PREFETCH_MAX;
}

static struct inflight *
pop_ready(struct obx_worker *w)
{
    struct inflight *inf = w->ready;

    w->ready = inf->next;
    if (!w->ready)
        w->ready_tail = NULL;
    inf->next = NULL;
    w->nready--;
    return inf;
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

/* Gives every claimed, unsent message back (a gate closed, or shutdown). */
static void
release_ready(struct obx_worker *w, const char *why)
{
    while (w->ready)
        release_one(w, pop_ready(w), why);
}

/* Store thread: the claim job. */
static enum obx_err
run_claim(struct obx_store *st, void *arg)
{
    struct claim_job *c = &((struct obx_worker *)arg)->claim;

    c->n = 0;
    return obx_store_claim(st, c->want, c->lease_ms, c->out, &c->n);
}

/* Loop thread: the claimed messages are leased and committed; they join `ready`. */
static void
on_claimed(void *arg, enum obx_err err)
{
    struct obx_worker *w = arg;
    struct claim_job *c = &w->claim;
    int64_t now_mono = mono_now(w);

    w->claiming = 0;
    if (err != OBX_OK) {
        /* Not committed: the leases do not exist; drop what run_claim filled in. */
        for (int i = 0; i < c->n; i++)
            obx_store_claimed_release(&c->out[i]);
        obx_log(OBX_LOG_WARN, "cannot claim messages", OBX_KS("error", obx_strerror(err)));
        w->idle_until_mono_ms = mono_now(w) + IDLE_POLL_MS;
        schedule_pump(w, IDLE_POLL_MS);
        maybe_drained(w); /* a stop may have been waiting for this claim only */
        return;
    }
    for (int i = 0; i < c->n; i++) {
        struct inflight *inf = obx_calloc(1, sizeof *inf);
        if (!inf) {
            struct pending *p = add_pending(w, &c->out[i], OBX_NEXT_RELEASE);
            if (p)
                p->a.reason = "out of memory";
            obx_store_claimed_release(&c->out[i]);
            start_flush(w);
            continue;
        }
        inf->w = w;
        inf->c = c->out[i]; /* now owned by the ready record */
        inf->claimed_mono_ms = now_mono;
        if (w->ready_tail)
            w->ready_tail->next = inf;
        else
            w->ready = inf;
        w->ready_tail = inf;
        w->nready++;
    }
    if (c->n < c->want) {
        /* Nothing more is due: poll for rows written elsewhere, unless woken sooner. */
        w->idle_until_mono_ms = mono_now(w) + IDLE_POLL_MS;
        schedule_pump(w, IDLE_POLL_MS);
    }
    if (w->stopping) {
        release_ready(w, "released at shutdown");
        return;
    }
    pump(w);
}

/*
 * Sends ready messages while the gates allow, then asks the store thread for more: what
 * the free slots can take, plus (unthrottled) enough to keep max_inflight ready.
 */
static void
pump(struct obx_worker *w)
{
    int64_t now_mono, retry_ms = -1, lease_ms;
    int capacity = 0, probe, want;

    if (w->stopping)
        return;
    for (;;) {
        now_mono = mono_now(w);
        capacity = allowance(w, now_mono, &retry_ms, &probe);
        if (capacity <= 0 || !w->ready)
            break;
        struct inflight *inf = pop_ready(w);
        if (now_mono - inf->claimed_mono_ms > READY_MAX_AGE_MS) {
            release_one(w, inf, "released: claimed too long ago");
            continue;
        }
        inf->auth_probe = probe;
        if (probe)
            w->auth_probe_inflight = 1;
        start_claimed(w, inf, now_mono);
    }
    if (capacity <= 0 && w->ready && (retry_ms >= 0 || w->flush_failing || w->auth_paused)) {
        /* A gate (auth pause, breaker, rate limit, outcomes that cannot be written) holds
         * sending back for a while: the claimed messages go back rather than sit in
         * `sending` past their lease. Full slots alone keep them. */
        release_ready(w, "released while sending is paused");
    }
    if (retry_ms >= 0)
        schedule_pump(w, retry_ms);
    if (w->claiming || w->flush_failing)
        return;
    if (w->idle_until_mono_ms && now_mono < w->idle_until_mono_ms) {
        schedule_pump(w, w->idle_until_mono_ms - now_mono);
        return;
    }
    want = capacity > 0 ? capacity : 0;
    if (unthrottled(w))
        want += prefetch_depth(w) - w->nready;
    if (want <= 0)
        return;
    if (want > CLAIM_MAX)
        want = CLAIM_MAX;
    lease_ms = w->cfg->connect_timeout_ms + w->cfg->request_timeout_ms + 60000;
    w->idle_until_mono_ms = 0;
    w->claim.want = want;
    w->claim.lease_ms = lease_ms;
    w->claiming = 1;
    obx_storeq_submit(w->q, &w->claim.job);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

enum obx_err
obx_worker_new(struct event_base *base, struct obx_store *st, struct obx_storeq *q,
               const struct obx_config *cfg, struct obx_worker **out)
{
    struct obx_http_opts ho = {cfg->connect_timeout_ms, cfg->request_timeout_ms, cfg->max_inflight,
                               cfg->ca_file, NULL};
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
    w->claim.w = w;
    w->claim.job.run = run_claim;
    w->claim.job.done = on_claimed;
    w->claim.job.arg = w;

    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)wall_now(w);
    obx_backoff_rng_seed(&w->rng, seed);
    obx_ratelimit_init(&w->rl, cfg->rate_limit_per_s, cfg->rate_burst, mono_now(w));
    obx_circuit_init(&w->circuit, 5, 1000, 30000);
    ho.clock = w->clock;
    err = obx_http_client_new(base, &ho, &w->http);
    w->pump_ev = evtimer_new(base, on_pump, w);
    w->flush_ev = evtimer_new(base, on_flush, w);
    if (err == OBX_OK && (!w->pump_ev || !w->flush_ev))
        err = OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_worker_free(w);
        return err;
    }
    schedule_pump(w, 0);
    *out = w;
    return OBX_OK;
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
    while (w->ready) {
        struct inflight *inf = pop_ready(w);
        obx_store_claimed_release(&inf->c);
        obx_free(inf);
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
    obx_free(w);
}

void
obx_worker_release_channel(struct obx_worker *w, const char *channel_id)
{
    struct inflight *keep = NULL, *keep_tail = NULL;

    while (w->ready) {
        struct inflight *inf = pop_ready(w);
        if (strcmp(inf->c.msg.channel_id, channel_id) == 0) {
            release_one(w, inf, "released: channel paused");
            continue;
        }
        if (keep_tail)
            keep_tail->next = inf;
        else
            keep = inf;
        keep_tail = inf;
        w->nready++; /* pop_ready counted it out */
    }
    w->ready = keep;
    w->ready_tail = keep_tail;
}

void
obx_worker_notify(struct obx_worker *w)
{
    w->idle_until_mono_ms = 0;
    schedule_pump(w, 0);
}

void
obx_worker_reload(struct obx_worker *w, const struct obx_config *cfg)
{
    w->cfg = cfg;
    obx_ratelimit_set_rate(&w->rl, cfg->rate_limit_per_s, cfg->rate_burst, mono_now(w));
    if (w->auth_paused) {
        /* Probe right away with the (maybe corrected) key. */
        w->auth_probe_at_mono_ms = mono_now(w);
        obx_log(OBX_LOG_INFO, "configuration reloaded; probing the api key again");
    }
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
    /* Claimed but unsent messages go back now; a claim still running does the same with
     * its messages when it comes back (on_claimed). */
    release_ready(w, "released at shutdown");
    maybe_drained(w);
    w->stop_ev = evtimer_new(w->base, on_stop_deadline, w);
    if (w->stop_ev)
        evtimer_add(w->stop_ev, &tv);
}

void
obx_worker_stats(const struct obx_worker *w, struct obx_worker_stats *out)
{
    int64_t now_ms = wall_now(w), now_mono = mono_now(w);

    *out = w->stats;
    out->inflight = w->ninflight;
    out->circuit = obx_circuit_state_name(w->circuit.state);
    out->paused_reason = NULL;
    out->paused_until_ms = 0;
    if (w->auth_paused) {
        out->paused_reason = "auth";
        out->paused_until_ms = now_ms + (w->auth_probe_at_mono_ms - now_mono);
    } else if (w->circuit.state != OBX_CIRCUIT_CLOSED) {
        out->paused_reason = "circuit_open";
        out->paused_until_ms = now_ms + obx_circuit_wait_ms(&w->circuit, now_mono);
    } else if (obx_ratelimit_paused(&w->rl, now_mono)) {
        out->paused_reason = "rate_limited";
        out->paused_until_ms = w->rate_paused_until_ms;
    }
}
