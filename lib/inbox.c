/* inbox: relay of replies to inbox_url, and acknowledgement. State machine in inbox.h. */
#include "inbox.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "backoff.h"
#include "err.h"
#include "http_client.h"
#include "log.h"
#include "mem.h"
#include "msg.h"
#include "query.h"
#include "store_queue.h"
#include "store_inbox.h"
#include "view.h"

#define OBX_MODULE "inbox"

#define MAX_INFLIGHT 4
#define POLL_MS 1000

struct relay;

/* Threads: the loop's; the jobs it submits belong to the store thread until their done. */
struct obx_inbox {
    struct event_base *base;
    struct obx_store *st; /* the loop's: its clock (and its writes when q is NULL) */
    struct obx_storeq *q; /* the store thread: every read and write of the relay */
    const struct obx_config *cfg;
    struct obx_http *http;
    struct obx_rng rng;
    struct event *pump_ev;
    int leasing;          /* a lease job outstanding */
    int inflight;         /* replies posted whose result is not recorded yet */
    struct relay *relays; /* those replies */
};

/* One relay request; the id and attempt number are all the callback needs. */
struct relay {
    struct obx_inbox *ib;
    int64_t id;
    int attempts;
    char partoo_message_id[OBX_PARTOO_ID_MAX + 1];
    struct relay *next, **pprev; /* ib->relays */
};

static void pump(struct obx_inbox *ib);

static void
schedule(struct obx_inbox *ib, int64_t delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};

    evtimer_del(ib->pump_ev);
    evtimer_add(ib->pump_ev, &tv);
}

static void
on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pump(arg);
}

/*
 * The relay's store work goes through the store thread and is waited for by nobody: a
 * lease job takes the next due reply and builds its request there, a result job records
 * the answer. On PostgreSQL the loop has no connection at all; on SQLite the loop keeps
 * sending while the thread commits.
 */
struct lease_job {
    struct obx_storeq_job job;
    struct obx_inbox *ib;
    int64_t lease_ms;
    int64_t id; /* the reply leased; 0: none was due */
    int attempts;
    int bad_id; /* its Partoo id cannot be an Idempotency-Key: failed, not sent */
    char partoo_message_id[OBX_PARTOO_ID_MAX + 1];
    struct obx_buf body; /* the request, built on the store thread */
};

/* The result of one request, on its way to the store thread. */
struct result_job {
    struct obx_storeq_job job;
    struct relay *r;
    int delivered, status, give_up;
    int64_t at_ms; /* delivered: when; else due again then */
    char *error;
};

/* Hands a job to the store thread, or runs it here when there is none (the unit tests). */
static void
submit(struct obx_inbox *ib, struct obx_storeq_job *job)
{
    if (ib->q)
        obx_storeq_submit(ib->q, job);
    else
        job->done(job->arg, job->run(ib->st, job->arg));
}

static int
on_leased_row(void *ctx, const struct obx_inbox_row *row)
{
    struct lease_job *j = ctx;

    if (row->id != j->id)
        return 1; /* gone meanwhile (purged): nothing to send */
    j->attempts = row->attempts;
    if (!obx_msg_partoo_id_valid(row->partoo_message_id)) {
        /* Reconcile only stores valid ids; a row from before that check (or written by
         * hand) is failed rather than put into a header. */
        j->bad_id = 1;
        return 1;
    }
    snprintf(j->partoo_message_id, sizeof j->partoo_message_id, "%s", row->partoo_message_id);
    if (obx_view_inbox(&j->body, row) != OBX_OK)
        obx_buf_reset(&j->body); /* out of memory: nothing half-built is sent */
    return 1;
}

/* Store thread: takes the next due reply, pushes its due time ahead (a lease surviving a
 * crash) and builds its request. */
static enum obx_err
run_lease(struct obx_store *st, void *arg)
{
    struct lease_job *j = arg;
    int64_t next = 0;
    enum obx_err err = obx_store_inbox_lease_due(st, j->lease_ms, &j->id);
    int64_t id = j->id;

    if (err != OBX_OK || !id)
        return err;
    err = obx_query_inbox(st, id - 1, 1, 0, on_leased_row, j, &next);
    if (err == OBX_OK && j->bad_id)
        err = obx_store_inbox_fail(st, id, "partoo message id is not usable as an Idempotency-Key");
    if (err == OBX_OK && !j->bad_id && !j->body.len)
        j->id = 0; /* purged, or its document could not be built */
    return err;
}

static void
result_job_free(struct result_job *rj)
{
    obx_free(rj->error);
    obx_free(rj);
}

static enum obx_err
run_result(struct obx_store *st, void *arg)
{
    struct result_job *rj = arg;

    if (rj->delivered)
        return obx_store_inbox_mark_delivered(st, rj->r->id, rj->status, rj->at_ms);
    return obx_store_inbox_mark_retry(st, rj->r->id, rj->status, rj->error, rj->at_ms, rj->give_up);
}

static void
relay_unlink(struct relay *r)
{
    struct obx_inbox *ib = r->ib;

    *r->pprev = r->next;
    if (r->next)
        r->next->pprev = r->pprev;
    ib->inflight--;
    obx_free(r);
}

/* Loop thread: the answer is recorded (or not: the lease ends and it is relayed again). */
static void
on_result(void *arg, enum obx_err err)
{
    struct result_job *rj = arg;
    struct obx_inbox *ib = rj->r->ib;

    if (err != OBX_OK)
        obx_log(OBX_LOG_ERROR, "cannot record a relay result; it will be relayed again",
                OBX_KS("error", obx_strerror(err)));
    relay_unlink(rj->r);
    result_job_free(rj);
    schedule(ib, 0);
}

/* The relay's answer: delivered on 2xx, else due again after a backoff (or failed). */
static void
on_relayed(void *ctx, const struct obx_http_result *res)
{
    struct relay *r = ctx;
    struct obx_inbox *ib = r->ib;
    struct result_job *rj = obx_calloc(1, sizeof *rj);
    int ok = res->status >= 200 && res->status < 300;
    int64_t now_ms = obx_now_ms(ib->st->clock), ra = -1;
    const char *error = res->error ? res->error : res->body;

    obx_log(ok ? OBX_LOG_INFO : OBX_LOG_WARN, "reply relayed",
            OBX_KS("partoo_message_id", r->partoo_message_id), OBX_KI("attempt", r->attempts + 1),
            OBX_KI("status", res->status), OBX_KI("duration_ms", res->duration_ms),
            OBX_KS("error", res->error));
    if (!rj || (!ok && error && !(rj->error = obx_strdup(error)))) {
        obx_log(OBX_LOG_ERROR, "cannot record a relay result; it will be relayed again",
                OBX_KS("error", obx_strerror(OBX_ENOMEM)));
        if (rj)
            result_job_free(rj);
        relay_unlink(r);
        schedule(ib, POLL_MS);
        return;
    }
    rj->r = r;
    rj->delivered = ok;
    rj->status = res->status;
    rj->at_ms = now_ms;
    if (!ok) {
        if (res->retry_after &&
            obx_backoff_parse_retry_after(res->retry_after, now_ms, &ra) != OBX_OK)
            ra = -1;
        rj->at_ms = now_ms + obx_backoff_next_delay_ms(&ib->rng, ib->cfg->retry_base_ms,
                                                       ib->cfg->retry_cap_ms, r->attempts + 1, ra);
        rj->give_up = r->attempts + 1 >= ib->cfg->max_attempts;
    }
    rj->job.run = run_result;
    rj->job.done = on_result;
    rj->job.arg = rj;
    submit(ib, &rj->job);
}

/* Loop thread: a reply is leased (or none was due): post it, and look for the next. */
static void
on_leased(void *arg, enum obx_err err)
{
    struct lease_job *j = arg;
    struct obx_inbox *ib = j->ib;
    const char *headers[2];
    char idem[sizeof "Idempotency-Key: partoo-" + OBX_PARTOO_ID_MAX];
    struct relay *r = NULL;

    ib->leasing = 0;
    if (err != OBX_OK)
        obx_log(OBX_LOG_ERROR, "cannot relay a reply", OBX_KS("error", obx_strerror(err)));
    else if (j->bad_id)
        obx_log(OBX_LOG_WARN,
                "reply not relayed: its partoo message id is not [A-Za-z0-9_-]{1,128}",
                OBX_KI("inbox_id", j->id));
    if (err != OBX_OK || !j->id || j->bad_id) {
        schedule(ib, err == OBX_OK && j->bad_id ? 0 : POLL_MS);
        obx_buf_release(&j->body);
        obx_free(j);
        return;
    }
    r = obx_calloc(1, sizeof *r);
    if (r) {
        r->ib = ib;
        r->id = j->id;
        r->attempts = j->attempts;
        snprintf(r->partoo_message_id, sizeof r->partoo_message_id, "%s", j->partoo_message_id);
        snprintf(idem, sizeof idem, "Idempotency-Key: partoo-%s", j->partoo_message_id);
        headers[0] = "Content-Type: application/json";
        headers[1] = idem;
        err = obx_http_client_post(ib->http, ib->cfg->inbox_url, headers, 2, obx_buf_str(&j->body),
                                   j->body.len, on_relayed, r);
    }
    if (!r || err != OBX_OK) {
        /* Its lease ends and it is relayed again then. */
        obx_log(OBX_LOG_ERROR, "cannot relay a reply",
                OBX_KS("error", obx_strerror(r ? err : OBX_ENOMEM)));
        obx_free(r);
        schedule(ib, POLL_MS);
    } else {
        /* Listed so that obx_inbox_free can free what never got an answer. */
        r->next = ib->relays;
        if (r->next)
            r->next->pprev = &r->next;
        r->pprev = &ib->relays;
        ib->relays = r;
        ib->inflight++;
        schedule(ib, 0);
    }
    obx_buf_release(&j->body);
    obx_free(j);
}

static void
pump(struct obx_inbox *ib)
{
    struct lease_job *j;

    if (!ib->cfg->inbox_url || ib->leasing || ib->inflight >= MAX_INFLIGHT)
        return; /* on_leased and on_result call again */
    j = obx_calloc(1, sizeof *j);
    if (!j) {
        schedule(ib, POLL_MS);
        return;
    }
    j->ib = ib;
    j->lease_ms = ib->cfg->connect_timeout_ms + ib->cfg->request_timeout_ms + 10000;
    obx_buf_init(&j->body, 1024 * 1024);
    j->job.run = run_lease;
    j->job.done = on_leased;
    j->job.arg = j;
    ib->leasing = 1;
    submit(ib, &j->job);
}

enum obx_err
obx_inbox_new(struct event_base *base, struct obx_store *st, struct obx_storeq *q,
              const struct obx_config *cfg, struct obx_inbox **out)
{
    struct obx_http_opts ho = {cfg->connect_timeout_ms, cfg->request_timeout_ms, MAX_INFLIGHT,
                               cfg->ca_file, NULL};
    struct obx_inbox *ib;
    uint64_t seed = 0;
    enum obx_err err;

    *out = NULL;
    ib = obx_calloc(1, sizeof *ib);
    if (!ib)
        return OBX_ENOMEM;
    ib->base = base;
    ib->st = st;
    ib->q = q;
    ib->cfg = cfg;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)obx_now_ms(st->clock);
    obx_backoff_rng_seed(&ib->rng, seed);
    err = obx_http_client_new(base, &ho, &ib->http);
    ib->pump_ev = evtimer_new(base, on_pump, ib);
    if (err == OBX_OK && !ib->pump_ev)
        err = OBX_ENOMEM;
    if (err != OBX_OK) {
        obx_inbox_free(ib);
        return err;
    }
    schedule(ib, 0);
    *out = ib;
    return OBX_OK;
}

void
obx_inbox_free(struct obx_inbox *ib)
{
    if (!ib)
        return;
    /* Abandoned relays keep their lease; they are relayed again after it (at-least-once). */
    obx_http_client_free(ib->http);
    while (ib->relays) {
        struct relay *r = ib->relays;
        ib->relays = r->next;
        obx_free(r);
    }
    if (ib->pump_ev)
        event_free(ib->pump_ev);
    obx_free(ib);
}

void
obx_inbox_reload(struct obx_inbox *ib, const struct obx_config *cfg)
{
    ib->cfg = cfg;
    schedule(ib, 0);
}

void
obx_inbox_notify(struct obx_inbox *ib)
{
    schedule(ib, 0);
}

enum obx_err
obx_inbox_ack(struct obx_store *st, int64_t id)
{
    return obx_store_inbox_ack(st, id);
}
