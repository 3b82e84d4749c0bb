/*
 * store_pg: enqueue, claim and finish on PostgreSQL (store_pg.h).
 *
 * Every call runs its statements in one transaction through libpq's pipeline mode: the
 * statements of a chunk go out together and their results are read after one sync, so a
 * batch of 256 finishes costs one round trip per chunk instead of 512. Chunks stay small
 * because libpq in blocking mode writes the whole chunk before it reads: a chunk whose
 * results fill the socket buffers while the server still waits to send would stall both.
 */
#include "store_pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "clock.h"
#include "mem.h"
#include "msg.h"

#define PIPE_CHUNK 256 /* statements per sync */
#define PARAMS_MAX 12

/* ---- the pipeline runner ------------------------------------------------------------------ */

/* One statement to send: a prepared name and its parameters as text (NULL = SQL NULL). */
struct pg_stmt {
    const char *name;
    int nparams;
    const char *vals[PARAMS_MAX];
    char num[PARAMS_MAX][24]; /* room for numbers formatted into vals */
};

static void
stmt_int(struct pg_stmt *s, int i, int64_t v)
{
    snprintf(s->num[i], sizeof s->num[i], "%lld", (long long)v);
    s->vals[i] = s->num[i];
}

/* Fills the statement for index i, or returns 0 to send none for it. */
typedef int (*build_fn)(void *ctx, size_t i, struct pg_stmt *s);
/* Takes the result of index i's statement. */
typedef enum obx_err (*take_fn)(void *ctx, size_t i, PGresult *r);

/* Reads one statement's result (and the NULL that ends it). */
static PGresult *
next_result(PGconn *c)
{
    PGresult *r = PQgetResult(c), *extra;

    while (r && (extra = PQgetResult(c)) != NULL)
        PQclear(extra); /* cannot happen for one statement; keep the first */
    return r;
}

static enum obx_err
send_plain(PGconn *c, const char *sql)
{
    return PQsendQueryParams(c, sql, 0, NULL, NULL, NULL, NULL, 0) ? OBX_OK : OBX_EDB;
}

/*
 * BEGIN; the statements build() gives for 0..n-1, each result to take(); COMMIT. Chunks of
 * PIPE_CHUNK statements each end with a sync. The first failure rolls everything back.
 */
static enum obx_err
run_transaction(struct obx_pg *pg, size_t n, build_fn build, take_fn take, void *ctx)
{
    PGconn *c = obx_pg_conn(pg);
    enum obx_err err = OBX_OK;
    size_t i = 0;
    int begun = 0, committed = 0;

    if (!PQenterPipelineMode(c)) {
        obx_pg_set_error(pg, PQerrorMessage(c));
        return OBX_EDB;
    }
    while (err == OBX_OK && !committed) {
        size_t idx[PIPE_CHUNK];
        int sent = 0, has_begin = 0, has_commit = 0;
        struct pg_stmt s;

        if (!begun) {
            err = send_plain(c, "BEGIN");
            has_begin = begun = 1;
        }
        while (err == OBX_OK && i < n && sent < PIPE_CHUNK) {
            memset(&s, 0, sizeof s);
            if (build(ctx, i, &s)) {
                if (!PQsendQueryPrepared(c, s.name, s.nparams, s.vals, NULL, NULL, 0))
                    err = OBX_EDB;
                idx[sent++] = i;
            }
            i++;
        }
        if (err == OBX_OK && i == n) {
            err = send_plain(c, "COMMIT");
            has_commit = 1;
        }
        if (err == OBX_OK && !PQpipelineSync(c))
            err = OBX_EDB;
        if (err != OBX_OK) {
            obx_pg_set_error(pg, PQerrorMessage(c));
            break;
        }
        /* Every result up to the sync is read, whatever failed, to leave the pipeline clean. */
        for (int k = -has_begin; k < sent + has_commit; k++) {
            PGresult *r = next_result(c);
            ExecStatusType st = PQresultStatus(r);
            if (err == OBX_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                obx_pg_set_error(pg, PQresultErrorMessage(r));
                err = OBX_EDB;
            } else if (err == OBX_OK && k >= 0 && k < sent && take) {
                err = take(ctx, idx[k], r);
            }
            PQclear(r);
        }
        PQclear(PQgetResult(c)); /* the sync's PGRES_PIPELINE_SYNC */
        committed = has_commit && err == OBX_OK;
    }
    PQexitPipelineMode(c);
    if (err != OBX_OK)
        obx_pg_exec_quiet(pg, "ROLLBACK");
    return err;
}

/* ---- enqueue ------------------------------------------------------------------------------ */

static const char SQL_ENQUEUE[] =
    "INSERT INTO outbox (channel_id, external_message_id, business_id,"
    " external_conversation_id, content, sender_type, consumer_name, consumer_image, priority)"
    " VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text,"
    " $9::integer) ON CONFLICT (channel_id, external_message_id) DO NOTHING RETURNING id";

/* The row a key already has, to tell a duplicate (identical fields) from a conflict. */
static const char SQL_EXISTING[] =
    "SELECT id, state, business_id = $3::text AND external_conversation_id = $4::text"
    " AND content = $5::text AND sender_type = $6::text"
    " AND consumer_name IS NOT DISTINCT FROM $7::text"
    " AND consumer_image IS NOT DISTINCT FROM $8::text AND priority = $9::integer"
    " FROM outbox WHERE channel_id = $1::text AND external_message_id = $2::text";

struct enq_run {
    struct obx_enq_item *items;
    int second_pass; /* 0: the INSERTs; 1: the keys that were there already */
};

static int
build_enqueue(void *ctx, size_t i, struct pg_stmt *s)
{
    struct enq_run *e = ctx;
    struct obx_enq_item *it = &e->items[i];
    const struct obx_msg *m = &it->msg;

    if (it->err != OBX_OK || (e->second_pass && it->id != 0))
        return 0;
    s->name = e->second_pass ? "obx_existing" : "obx_enqueue";
    s->nparams = 9;
    s->vals[0] = m->channel_id;
    s->vals[1] = m->external_message_id;
    s->vals[2] = m->business_id;
    s->vals[3] = m->external_conversation_id;
    s->vals[4] = m->content;
    s->vals[5] = m->sender_type;
    s->vals[6] = m->consumer_name;
    s->vals[7] = m->consumer_image;
    stmt_int(s, 8, m->priority);
    return 1;
}

static enum obx_err
take_enqueue(void *ctx, size_t i, PGresult *r)
{
    struct enq_run *e = ctx;
    struct obx_enq_item *it = &e->items[i];

    if (!e->second_pass) {
        if (PQntuples(r) == 1) {
            it->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            it->result = OBX_ENQ_ACCEPTED;
            snprintf(it->state, sizeof it->state, "queued");
        }
        return OBX_OK;
    }
    if (PQntuples(r) != 1)
        return OBX_EDB; /* the key vanished between the two passes (a purge): retry */
    it->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    snprintf(it->state, sizeof it->state, "%s", PQgetvalue(r, 0, 1));
    if (strcmp(PQgetvalue(r, 0, 2), "t") == 0)
        it->result = OBX_ENQ_DUPLICATE;
    else
        it->err = OBX_ECONFLICT;
    return OBX_OK;
}

enum obx_err
obx_store_pg_enqueue_batch(struct obx_pg *pg, struct obx_enq_item *items, size_t n,
                           const struct obx_msg_limits *lim)
{
    struct obx_msg_limits dflt = obx_msg_limits_default();
    struct enq_run e = {items, 0};
    enum obx_err err = obx_pg_prepare(pg, "obx_enqueue", SQL_ENQUEUE);
    int again = 0;

    if (err == OBX_OK)
        err = obx_pg_prepare(pg, "obx_existing", SQL_EXISTING);
    if (err != OBX_OK)
        return err;
    for (size_t i = 0; i < n; i++) {
        items[i].id = 0;
        items[i].state[0] = '\0';
        items[i].result = OBX_ENQ_ACCEPTED;
        items[i].err = obx_msg_validate(&items[i].msg, lim ? lim : &dflt, &items[i].fe);
    }
    err = run_transaction(pg, n, build_enqueue, take_enqueue, &e);
    for (size_t i = 0; err == OBX_OK && i < n; i++)
        again |= items[i].err == OBX_OK && items[i].id == 0;
    if (err == OBX_OK && again) {
        e.second_pass = 1;
        err = run_transaction(pg, n, build_enqueue, take_enqueue, &e);
    }
    return err;
}

/* ---- claim -------------------------------------------------------------------------------- */

/*
 * The due heads in the order of the partial index outbox_claim; FOR UPDATE SKIP LOCKED so
 * that two claimers (nodes, or a claim racing a producer's UPDATE) take different rows.
 */
#define CLAIM_SQL(TENANT_MATCH)                                                                  \
    "UPDATE outbox o SET state = 'sending', state_reason = 'claimed', state_at_ms = $2::bigint," \
    " lease_token = $3::bigint, lease_expires_at_ms = $2::bigint + $4::bigint"                   \
    " FROM (SELECT id FROM outbox WHERE " TENANT_MATCH " AND state = 'queued' AND head"          \
    " AND next_attempt_at_ms <= $2::bigint"                                                      \
    " ORDER BY priority DESC, next_attempt_at_ms, id LIMIT $5::integer"                          \
    " FOR UPDATE SKIP LOCKED) c WHERE o.id = c.id"                                               \
    " RETURNING o.id, o.channel_id, o.external_message_id, o.business_id,"                       \
    " o.external_conversation_id, o.content, o.sender_type, o.consumer_name,"                    \
    " o.consumer_image, o.priority, o.attempts, o.counted_attempts, o.resends,"                  \
    " o.created_at_ms, coalesce(o.accepted_at_ms, 0), o.tenant"

static const char SQL_CLAIM_TENANT[] = CLAIM_SQL("tenant = $1::text");
static const char SQL_CLAIM_DEFAULT[] = CLAIM_SQL("tenant IS NULL AND $1::text IS NULL");

/* Copies row i's strings (columns 1..8) into one block owned by c, as the SQLite claim. */
static enum obx_err
copy_claimed(PGresult *r, int row, struct obx_claimed *c)
{
    const char **fields[8] = {
        &c->msg.channel_id,    &c->msg.external_message_id,
        &c->msg.business_id,   &c->msg.external_conversation_id,
        &c->msg.content,       &c->msg.sender_type,
        &c->msg.consumer_name, &c->msg.consumer_image,
    };
    size_t total = 0, off = 0;

    for (int i = 0; i < 8; i++)
        total += (size_t)PQgetlength(r, row, i + 1) + 1;
    c->strings = obx_malloc(total);
    if (!c->strings)
        return OBX_ENOMEM;
    for (int i = 0; i < 8; i++) {
        size_t len = (size_t)PQgetlength(r, row, i + 1);
        if (PQgetisnull(r, row, i + 1)) {
            *fields[i] = NULL;
            continue;
        }
        memcpy(c->strings + off, PQgetvalue(r, row, i + 1), len + 1);
        *fields[i] = c->strings + off;
        off += len + 1;
    }
    return OBX_OK;
}

static int64_t
col_int(PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

enum obx_err
obx_store_pg_claim(struct obx_pg *pg, const char *tenant, int max, int64_t lease_ms,
                   struct obx_claimed *out, int *n)
{
    const char *name = tenant ? "obx_claim_tenant" : "obx_claim_default";
    enum obx_err err = obx_pg_prepare(pg, name, tenant ? SQL_CLAIM_TENANT : SQL_CLAIM_DEFAULT);
    struct pg_stmt s;
    int64_t token;
    PGresult *r;
    int rows;

    *n = 0;
    if (err != OBX_OK || max <= 0)
        return err;
    /* One token per claim: a finish names its message and this token, so a message claimed
     * again (after its lease ran out) cannot be finished by the earlier claim. */
    if (getrandom(&token, sizeof token, 0) != sizeof token)
        return OBX_EIO;
    token &= INT64_MAX;
    memset(&s, 0, sizeof s);
    s.vals[0] = tenant;
    stmt_int(&s, 1, obx_now_ms(obx_clock_real()));
    stmt_int(&s, 2, token);
    stmt_int(&s, 3, lease_ms);
    stmt_int(&s, 4, max);
    r = PQexecPrepared(obx_pg_conn(pg), name, 5, s.vals, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        obx_pg_set_error(pg, PQresultErrorMessage(r));
        PQclear(r);
        return OBX_EDB;
    }
    rows = PQntuples(r);
    for (int i = 0; i < rows && i < max && err == OBX_OK; i++) {
        struct obx_claimed *c = &out[i];
        memset(c, 0, sizeof *c);
        c->id = col_int(r, i, 0);
        c->lease_token = token;
        c->msg.priority = col_int(r, i, 9);
        c->attempts = (int)col_int(r, i, 10);
        c->counted_attempts = (int)col_int(r, i, 11);
        c->resends = (int)col_int(r, i, 12);
        c->created_at_ms = col_int(r, i, 13);
        c->accepted_at_ms = col_int(r, i, 14);
        if (!PQgetisnull(r, i, 15))
            snprintf(c->tenant, sizeof c->tenant, "%s", PQgetvalue(r, i, 15));
        c->readonly = -1; /* tenant channels are not on PostgreSQL yet */
        err = copy_claimed(r, i, c);
        if (err == OBX_OK)
            (*n)++;
    }
    PQclear(r);
    if (err != OBX_OK) {
        /* The rows stay `sending` until their lease runs out and they are claimed again. */
        for (int i = 0; i < *n; i++)
            obx_store_claimed_release(&out[i]);
        *n = 0;
    }
    return err;
}

/* ---- finish ------------------------------------------------------------------------------- */

static const char SQL_ATTEMPT[] =
    "INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome, error,"
    " response_excerpt) VALUES ($1::bigint, $2::bigint, $3::bigint, $4::integer, $5::text,"
    " $6::text, $7::text)";

/* As store.c's: a confirmation that arrived while the request was in flight wins. */
static const char SQL_TO_ACCEPTED[] =
    "UPDATE outbox SET"
    " state = CASE WHEN confirmed_at_ms IS NULL THEN 'accepted' ELSE 'confirmed' END,"
    " state_reason = CASE WHEN confirmed_at_ms IS NULL THEN $4::text"
    "  ELSE $4::text || '; confirmed by an earlier webhook' END,"
    " state_at_ms = $3::bigint, accepted_at_ms = $3::bigint, attempts = attempts + 1,"
    " counted_attempts = counted_attempts + $5::integer, last_http_status = $6::integer,"
    " last_error = NULL, lease_token = NULL, lease_expires_at_ms = NULL,"
    " confirm_due_at_ms = CASE WHEN confirmed_at_ms IS NULL THEN $7::bigint END"
    " WHERE id = $1::bigint AND state = 'sending' AND lease_token = $2::bigint";

static const char SQL_TO_FAILED[] =
    "UPDATE outbox SET"
    " state = CASE WHEN confirmed_at_ms IS NULL THEN 'failed' ELSE 'confirmed' END,"
    " state_reason = CASE WHEN confirmed_at_ms IS NULL THEN $4::text"
    "  ELSE $4::text || '; confirmed by an earlier webhook' END, state_at_ms = $3::bigint,"
    " attempts = attempts + 1, counted_attempts = counted_attempts + $5::integer,"
    " last_http_status = $6::integer, last_error = $7::text, lease_token = NULL,"
    " lease_expires_at_ms = NULL"
    " WHERE id = $1::bigint AND state = 'sending' AND lease_token = $2::bigint";

/* $8 = 1 when an attempt was made (retry), 0 for a release. */
static const char SQL_TO_QUEUED[] =
    "UPDATE outbox SET"
    " state = CASE WHEN confirmed_at_ms IS NULL THEN 'queued' ELSE 'confirmed' END,"
    " state_reason = CASE WHEN confirmed_at_ms IS NULL THEN $4::text"
    "  ELSE $4::text || '; confirmed by an earlier webhook' END, state_at_ms = $3::bigint,"
    " attempts = attempts + $8::integer, counted_attempts = counted_attempts + $5::integer,"
    " last_http_status = CASE WHEN $8::integer = 1 THEN $6::integer ELSE last_http_status END,"
    " last_error = CASE WHEN $8::integer = 1 THEN $7::text ELSE last_error END,"
    " next_attempt_at_ms = $9::bigint, lease_token = NULL, lease_expires_at_ms = NULL"
    " WHERE id = $1::bigint AND state = 'sending' AND lease_token = $2::bigint";

struct finish_run {
    const struct obx_attempt *a;
    enum obx_err *results;
    int64_t now_ms;
};

/* Index 2k is attempt k's attempt row (none for a release), 2k+1 its transition. */
static int
build_finish(void *ctx, size_t i, struct pg_stmt *s)
{
    struct finish_run *f = ctx;
    const struct obx_attempt *a = &f->a[i / 2];

    if (i % 2 == 0) {
        if (a->next == OBX_NEXT_RELEASE)
            return 0;
        s->name = "obx_attempt";
        s->nparams = 7;
        stmt_int(s, 0, a->message_id);
        stmt_int(s, 1, a->started_at_ms);
        stmt_int(s, 2, a->duration_ms);
        if (a->http_status)
            stmt_int(s, 3, a->http_status);
        s->vals[4] = a->outcome ? a->outcome : "";
        s->vals[5] = a->error;
        s->vals[6] = a->excerpt;
        return 1;
    }
    stmt_int(s, 0, a->message_id);
    stmt_int(s, 1, a->lease_token);
    stmt_int(s, 2, f->now_ms);
    s->vals[3] = a->reason ? a->reason : "";
    stmt_int(s, 4, a->counted ? 1 : 0);
    if (a->http_status)
        stmt_int(s, 5, a->http_status);
    switch (a->next) {
    case OBX_NEXT_ACCEPTED:
        s->name = "obx_to_accepted";
        s->nparams = 7;
        if (a->confirm_due_at_ms)
            stmt_int(s, 6, a->confirm_due_at_ms);
        break;
    case OBX_NEXT_FAILED:
        s->name = "obx_to_failed";
        s->nparams = 7;
        s->vals[6] = a->error;
        break;
    default:
        s->name = "obx_to_queued";
        s->nparams = 9;
        s->vals[6] = a->error;
        stmt_int(s, 7, a->next == OBX_NEXT_RETRY ? 1 : 0);
        stmt_int(s, 8, a->next == OBX_NEXT_RETRY ? a->next_attempt_at_ms : 0);
        break;
    }
    return 1;
}

static enum obx_err
take_finish(void *ctx, size_t i, PGresult *r)
{
    struct finish_run *f = ctx;

    if (i % 2 == 1 && f->results)
        f->results[i / 2] = strcmp(PQcmdTuples(r), "1") == 0 ? OBX_OK : OBX_ECONFLICT;
    return OBX_OK;
}

enum obx_err
obx_store_pg_finish(struct obx_pg *pg, const struct obx_attempt *a, size_t n, enum obx_err *results)
{
    struct finish_run f = {a, results, obx_now_ms(obx_clock_real())};
    static const struct {
        const char *name, *sql;
    } stmts[] = {{"obx_attempt", SQL_ATTEMPT},
                 {"obx_to_accepted", SQL_TO_ACCEPTED},
                 {"obx_to_failed", SQL_TO_FAILED},
                 {"obx_to_queued", SQL_TO_QUEUED}};
    enum obx_err err = OBX_OK;

    for (size_t i = 0; i < sizeof stmts / sizeof stmts[0] && err == OBX_OK; i++)
        err = obx_pg_prepare(pg, stmts[i].name, stmts[i].sql);
    if (err != OBX_OK)
        return err;
    return run_transaction(pg, 2 * n, build_finish, take_finish, &f);
}
