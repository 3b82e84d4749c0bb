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
#include "view.h"

#define OBX_MODULE "inbox"

#define MAX_INFLIGHT 4
#define POLL_MS 1000

struct obx_inbox {
    struct event_base *base;
    struct obx_store *st;
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

static const char SQL_DELIVERED[] =
    "UPDATE inbox SET state = 'delivered', delivered_at_ms = ?2, attempts = attempts + 1,"
    " last_http_status = ?3, last_error = NULL WHERE id = ?1 AND state = 'pending'";

static const char SQL_RETRY[] =
    "UPDATE inbox SET attempts = attempts + 1, last_http_status = NULLIF(?3, 0),"
    " last_error = ?4, next_attempt_at_ms = ?5,"
    " state = CASE WHEN ?6 THEN 'failed' ELSE state END WHERE id = ?1 AND state = 'pending'";

static enum obx_err
record_result(struct obx_inbox *ib, const struct relay *r, const struct obx_http_result *res)
{
    int ok = res->status >= 200 && res->status < 300;
    sqlite3_stmt *s = obx_db_stmt(ib->st->db, ok ? SQL_DELIVERED : SQL_RETRY);
    int64_t now_ms = obx_now_ms(ib->st->clock), ra = -1, delay;
    int give_up = r->attempts + 1 >= ib->cfg->max_attempts;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, r->id);
    sqlite3_bind_int64(s, 2, now_ms);
    sqlite3_bind_int(s, 3, res->status);
    if (!ok) {
        if (res->retry_after &&
            obx_backoff_parse_retry_after(res->retry_after, now_ms, &ra) != OBX_OK)
            ra = -1;
        delay = obx_backoff_next_delay_ms(&ib->rng, ib->cfg->retry_base_ms,
                                          ib->cfg->retry_cap_ms, r->attempts + 1, ra);
        obx_db_bind_text(s, 4, res->error ? res->error : res->body);
        sqlite3_bind_int64(s, 5, now_ms + delay);
        sqlite3_bind_int(s, 6, give_up);
    }
    obx_log(ok ? OBX_LOG_INFO : OBX_LOG_WARN, "reply relayed",
            OBX_KS("partoo_message_id", r->partoo_message_id), OBX_KI("attempt", r->attempts + 1),
            OBX_KI("status", res->status), OBX_KI("duration_ms", res->duration_ms),
            OBX_KS("error", res->error));
    return obx_db_step_done(s);
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

static const char SQL_FAIL_BAD_ID[] =
    "UPDATE inbox SET state = 'failed', last_error = ?2 WHERE id = ?1 AND state = 'pending'";

/* A reply whose Partoo message id cannot be an Idempotency-Key: failed, never sent. */
static enum obx_err
fail_bad_id(struct obx_inbox *ib, const struct obx_inbox_row *row)
{
    sqlite3_stmt *s = obx_db_stmt(ib->st->db, SQL_FAIL_BAD_ID);

    if (!s)
        return OBX_EDB;
    obx_log(OBX_LOG_WARN, "reply not relayed: its partoo message id is not [A-Za-z0-9_-]{1,128}",
            OBX_KI("inbox_id", row->id));
    sqlite3_bind_int64(s, 1, row->id);
    obx_db_bind_text(s, 2, "partoo message id is not usable as an Idempotency-Key");
    return obx_db_step_done(s);
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
        err = obx_http_post(ib->http, ib->cfg->inbox_url, headers, 2, obx_buf_str(&body),
                            body.len, on_relayed, r);
    obx_buf_release(&body);
    if (err != OBX_OK)
        obx_free(r);
    else
        ib->inflight++;
    return err;
}

static const char SQL_DUE[] =
    "SELECT id FROM inbox WHERE state = 'pending' AND next_attempt_at_ms <= ?1"
    " ORDER BY next_attempt_at_ms, id LIMIT 1";
static const char SQL_LEASE[] = "UPDATE inbox SET next_attempt_at_ms = ?2 WHERE id = ?1";

/* Takes the next due reply and pushes its due time ahead (a lease surviving a crash). */
static enum obx_err
claim_one(struct obx_inbox *ib, int64_t *id)
{
    sqlite3_stmt *due = obx_db_stmt(ib->st->db, SQL_DUE);
    sqlite3_stmt *lease = obx_db_stmt(ib->st->db, SQL_LEASE);
    int64_t now_ms = obx_now_ms(ib->st->clock);
    enum obx_err err;
    int rc;

    *id = 0;
    if (!due || !lease)
        return OBX_EDB;
    sqlite3_bind_int64(due, 1, now_ms);
    rc = sqlite3_step(due);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(due, 0);
    sqlite3_reset(due);
    if (rc != SQLITE_ROW)
        return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
    sqlite3_bind_int64(lease, 1, *id);
    sqlite3_bind_int64(lease, 2,
                       now_ms + ib->cfg->connect_timeout_ms + ib->cfg->request_timeout_ms + 10000);
    err = obx_db_step_done(lease);
    if (err != OBX_OK)
        *id = 0;
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
        enum obx_err err = claim_one(ib, &id);
        if (err != OBX_OK || !id)
            break;
        o.want = id;
        err = obx_query_inbox(ib->st, id - 1, 1, 0, on_row, &o, &next);
        if (err != OBX_OK || o.err != OBX_OK) {
            obx_log(OBX_LOG_ERROR, "cannot relay a reply",
                    OBX_KS("error", obx_strerror(err != OBX_OK ? err : o.err)));
            break;
        }
    }
    schedule(ib, POLL_MS);
}

enum obx_err
obx_inbox_new(struct event_base *base, struct obx_store *st, const struct obx_config *cfg,
              struct obx_inbox **out)
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
    ib->cfg = cfg;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)obx_now_ms(st->clock);
    obx_rng_seed(&ib->rng, seed);
    err = obx_http_new(base, &ho, &ib->http);
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
    obx_http_free(ib->http);
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

static const char SQL_ACK[] =
    "UPDATE inbox SET state = 'acked', acked_at_ms = coalesce(acked_at_ms, ?2)"
    " WHERE id = ?1";

enum obx_err
obx_inbox_ack(struct obx_store *st, int64_t id)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ACK);
    enum obx_err err;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, obx_now_ms(st->clock));
    err = obx_db_step_done(s);
    if (err == OBX_OK && sqlite3_changes(st->db->h) == 0)
        err = OBX_ENOTFOUND;
    return err;
}
