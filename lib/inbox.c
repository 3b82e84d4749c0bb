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

struct obx_inbox {
    struct event_base *base;
    struct obx_store *st; /* the loop's connection: reads */
    struct obx_storeq *q; /* the store thread: writes (NULL: write through st) */
    const struct obx_config *cfg;
    struct obx_http *http;
    struct obx_rng rng;
    struct event *pump_ev;
    int inflight;
};

/* One relay request; the id and attempt number are all the callback needs. */
struct relay {
    struct obx_inbox *ib;
    int64_t id;
    int attempts;
    char partoo_message_id[OBX_PARTOO_ID_MAX + 1];
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
 * The relay's writes. In serve they go through the store thread and wait for its commit in
 * place: at most MAX_INFLIGHT replies move at a time, so the wait is rare and short.
 */
enum inbox_op_kind { OP_DELIVERED, OP_RETRY, OP_FAIL, OP_LEASE };

struct inbox_op {
    enum inbox_op_kind kind;
    int64_t id, at_ms, lease_ms;
    int status, give_up;
    const char *error;
};

static enum obx_err
run_inbox_op(struct obx_store *st, void *arg)
{
    struct inbox_op *o = arg;

    switch (o->kind) {
    case OP_DELIVERED: return obx_store_inbox_mark_delivered(st, o->id, o->status, o->at_ms);
    case OP_RETRY:
        return obx_store_inbox_mark_retry(st, o->id, o->status, o->error, o->at_ms, o->give_up);
    case OP_FAIL: return obx_store_inbox_fail(st, o->id, o->error);
    case OP_LEASE: return obx_store_inbox_lease_due(st, o->lease_ms, &o->id);
    }
    return OBX_EINVAL;
}

static enum obx_err
write_op(struct obx_inbox *ib, struct inbox_op *o)
{
    return ib->q ? obx_storeq_call(ib->q, run_inbox_op, o) : run_inbox_op(ib->st, o);
}

/* Records the relay's answer: delivered on 2xx, else due again after a backoff (or failed). */
static enum obx_err
record_result(struct obx_inbox *ib, const struct relay *r, const struct obx_http_result *res)
{
    int ok = res->status >= 200 && res->status < 300;
    int64_t now_ms = obx_now_ms(ib->st->clock), ra = -1, delay;
    int give_up = r->attempts + 1 >= ib->cfg->max_attempts;

    obx_log(ok ? OBX_LOG_INFO : OBX_LOG_WARN, "reply relayed",
            OBX_KS("partoo_message_id", r->partoo_message_id), OBX_KI("attempt", r->attempts + 1),
            OBX_KI("status", res->status), OBX_KI("duration_ms", res->duration_ms),
            OBX_KS("error", res->error));
    if (ok) {
        struct inbox_op o = {
            .kind = OP_DELIVERED, .id = r->id, .status = res->status, .at_ms = now_ms};
        return write_op(ib, &o);
    }
    if (res->retry_after && obx_backoff_parse_retry_after(res->retry_after, now_ms, &ra) != OBX_OK)
        ra = -1;
    delay = obx_backoff_next_delay_ms(&ib->rng, ib->cfg->retry_base_ms, ib->cfg->retry_cap_ms,
                                      r->attempts + 1, ra);
    struct inbox_op o = {.kind = OP_RETRY,
                         .id = r->id,
                         .status = res->status,
                         .error = res->error ? res->error : res->body,
                         .at_ms = now_ms + delay,
                         .give_up = give_up};
    return write_op(ib, &o);
}

static void
on_relayed(void *ctx, const struct obx_http_result *res)
{
    struct relay *r = ctx;
    struct obx_inbox *ib = r->ib;
    enum obx_err err = record_result(ib, r, res);

    if (err != OBX_OK)
        obx_log(OBX_LOG_ERROR, "cannot record a relay result; it will be relayed again",
                OBX_KS("error", obx_strerror(err)));
    ib->inflight--;
    obx_free(r);
    schedule(ib, 0);
}

/* A reply whose Partoo message id cannot be an Idempotency-Key: failed, never sent. */
static enum obx_err
fail_bad_id(struct obx_inbox *ib, const struct obx_inbox_row *row)
{
    obx_log(OBX_LOG_WARN, "reply not relayed: its partoo message id is not [A-Za-z0-9_-]{1,128}",
            OBX_KI("inbox_id", row->id));
    struct inbox_op o = {.kind = OP_FAIL,
                         .id = row->id,
                         .error = "partoo message id is not usable as an Idempotency-Key"};
    return write_op(ib, &o);
}

/* Posts one reply; the row's next_attempt_at_ms was pushed ahead as a lease. */
static enum obx_err
relay_one(struct obx_inbox *ib, const struct obx_inbox_row *row)
{
    struct relay *r;
    char idem[sizeof "Idempotency-Key: partoo-" + OBX_PARTOO_ID_MAX];
    const char *headers[2];
    struct obx_buf body;
    enum obx_err err;

    /* Reconcile only stores valid ids; a row from before that check (or written by hand)
     * is failed here rather than put into a header. */
    if (!obx_msg_partoo_id_valid(row->partoo_message_id))
        return fail_bad_id(ib, row);
    r = obx_calloc(1, sizeof *r);
    if (!r)
        return OBX_ENOMEM;
    r->ib = ib;
    r->id = row->id;
    r->attempts = row->attempts;
    snprintf(r->partoo_message_id, sizeof r->partoo_message_id, "%s", row->partoo_message_id);
    snprintf(idem, sizeof idem, "Idempotency-Key: partoo-%s", row->partoo_message_id);
    headers[0] = "Content-Type: application/json";
    headers[1] = idem;
    obx_buf_init(&body, 1024 * 1024);
    err = obx_view_inbox(&body, row);
    if (err == OBX_OK)
        err = obx_http_client_post(ib->http, ib->cfg->inbox_url, headers, 2, obx_buf_str(&body),
                                   body.len, on_relayed, r);
    obx_buf_release(&body);
    if (err != OBX_OK)
        obx_free(r);
    else
        ib->inflight++;
    return err;
}

/* Takes the next due reply and pushes its due time ahead (a lease surviving a crash). */
static enum obx_err
claim_one(struct obx_inbox *ib, int64_t *id)
{
    struct inbox_op o = {.kind = OP_LEASE,
                         .lease_ms = ib->cfg->connect_timeout_ms + ib->cfg->request_timeout_ms +
                                     10000};
    enum obx_err err = write_op(ib, &o);

    *id = err == OBX_OK ? o.id : 0;
    return err;
}

struct one_row {
    struct obx_inbox *ib;
    int64_t want;
    enum obx_err err;
};

static int
on_row(void *ctx, const struct obx_inbox_row *row)
{
    struct one_row *o = ctx;

    if (row->id == o->want)
        o->err = relay_one(o->ib, row);
    return 1;
}

static void
pump(struct obx_inbox *ib)
{
    int64_t id = 0, next = 0;

    if (!ib->cfg->inbox_url)
        return;
    while (ib->inflight < MAX_INFLIGHT) {
        struct one_row o = {ib, 0, OBX_OK};
        int due = 0;
        /* Ask the loop's own connection first: the lease waits for the store thread. */
        enum obx_err err = obx_store_inbox_any_due(ib->st, &due);
        obx_store_end_reads(ib->st);
        if (err != OBX_OK || !due)
            break;
        err = claim_one(ib, &id);
        if (err != OBX_OK || !id)
            break;
        o.want = id;
        err = obx_query_inbox(ib->st, id - 1, 1, 0, on_row, &o, &next);
        obx_store_end_reads(ib->st);
        if (err != OBX_OK || o.err != OBX_OK) {
            obx_log(OBX_LOG_ERROR, "cannot relay a reply",
                    OBX_KS("error", obx_strerror(err != OBX_OK ? err : o.err)));
            break;
        }
    }
    schedule(ib, POLL_MS);
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
