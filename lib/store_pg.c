/*
 * store_pg: enqueue, claim and finish on PostgreSQL (store_pg.h).
 *
 * A batch is one set-based statement over array parameters (or two), not a statement per
 * message. A call sends BEGIN, the fence, its statements and a sync through libpq's
 * pipeline mode, reads every result, and then commits or rolls back: two round trips
 * whatever the batch's size. The COMMIT waits for the results on purpose: one queued in the
 * pipeline would commit even when taking a result failed here (out of memory).
 */
#include "store_pg.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "buf.h"
#include "clock.h"
#include "mem.h"
#include "migrate_pg.h"
#include "msg.h"

#define PIPE_MAX 4 /* statements per call, each over a whole batch */
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

static const char SQL_FENCE[] = "SELECT lease_check($1::text, $2::text, $3::bigint)";

/* The SQLSTATE lease_check raises (0002_nodes.sql). */
#define SQLSTATE_LEASE_LOST "OBX01"

static enum obx_err
result_error(struct obx_pg *pg, PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);

    obx_pg_set_error(pg, PQresultErrorMessage(r));
    return state && strcmp(state, SQLSTATE_LEASE_LOST) == 0 ? OBX_ECONFLICT : OBX_EDB;
}

/*
 * BEGIN; with a fence, its lease_check; the statements build() gives for 0..n-1 (n <=
 * PIPE_MAX), each result to take(); then COMMIT, or ROLLBACK after the first failure. A
 * send that fails means the connection is gone: the caller opens another.
 */
static enum obx_err
run_transaction(struct obx_pg *pg, const struct obx_pg_fence *fence, size_t n, build_fn build,
                take_fn take, void *ctx)
{
    PGconn *c = obx_pg_conn(pg);
    size_t idx[PIPE_MAX];
    int sent = 0, lead = fence ? 2 : 1; /* BEGIN and the fence come first */
    int grouped = obx_pg_in_group(pg);  /* a savepoint in the store thread's group instead */
    enum obx_err err = OBX_OK;

    if (n > PIPE_MAX)
        return OBX_EINVAL;
    if (fence && (err = obx_pg_prepare(pg, "obx_fence", SQL_FENCE)) != OBX_OK)
        return err;
    if (!PQenterPipelineMode(c)) {
        obx_pg_set_error(pg, PQerrorMessage(c));
        return OBX_EDB;
    }
    err = send_plain(c, grouped ? "SAVEPOINT obx_call" : "BEGIN");
    if (err == OBX_OK && fence) {
        char epoch[24];
        const char *vals[3] = {fence->tenant, fence->node, epoch};
        snprintf(epoch, sizeof epoch, "%lld", (long long)fence->epoch);
        if (!PQsendQueryPrepared(c, "obx_fence", 3, vals, NULL, NULL, 0))
            err = OBX_EDB;
    }
    for (size_t i = 0; i < n && err == OBX_OK; i++) {
        struct pg_stmt s;
        memset(&s, 0, sizeof s);
        if (!build(ctx, i, &s))
            continue;
        if (!PQsendQueryPrepared(c, s.name, s.nparams, s.vals, NULL, NULL, 0))
            err = OBX_EDB;
        idx[sent++] = i;
    }
    if (err == OBX_OK && !PQpipelineSync(c))
        err = OBX_EDB;
    if (err != OBX_OK) {
        obx_pg_set_error(pg, PQerrorMessage(c));
        return err;
    }
    /* Every result up to the sync is read, whatever failed, to leave the pipeline clean. */
    for (int k = -lead; k < sent; k++) {
        PGresult *r = next_result(c);
        ExecStatusType st = PQresultStatus(r);
        if (err == OBX_OK && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
            err = result_error(pg, r);
        else if (err == OBX_OK && k >= 0 && take)
            err = take(ctx, idx[k], r);
        PQclear(r);
    }
    PQclear(PQgetResult(c)); /* the sync's PGRES_PIPELINE_SYNC */
    PQexitPipelineMode(c);
    if (err == OBX_OK)
        return obx_pg_exec(pg, grouped ? "RELEASE SAVEPOINT obx_call" : "COMMIT");
    obx_pg_exec_quiet(pg, grouped ? "ROLLBACK TO SAVEPOINT obx_call; RELEASE SAVEPOINT obx_call"
                                  : "ROLLBACK");
    return err;
}

static int64_t
col_int(PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- array parameters --------------------------------------------------------------------- */

/*
 * A batch goes to the server as one statement over unnest($1::text[], ...): one row of work
 * per message instead of one statement each (measured: a statement costs the server more
 * than the row it writes). Each column is one array parameter (obx_pg_array_*).
 */
struct arrays {
    struct obx_buf col[PARAMS_MAX];
    int ncols;
};

static void
arrays_init(struct arrays *a, int ncols)
{
    a->ncols = ncols;
    for (int i = 0; i < ncols; i++)
        obx_buf_init(&a->col[i], (size_t)64 << 20);
}

static void
arrays_release(struct arrays *a)
{
    for (int i = 0; i < a->ncols; i++)
        obx_buf_release(&a->col[i]);
}

/* Closes every array and points s's parameters at them. */
static enum obx_err
arrays_params(struct arrays *a, struct pg_stmt *s)
{
    enum obx_err err = OBX_OK;

    for (int i = 0; i < a->ncols && err == OBX_OK; i++) {
        err = obx_pg_array_end(&a->col[i]);
        s->vals[i] = obx_buf_str(&a->col[i]);
    }
    s->nparams = a->ncols;
    return err;
}

/* ---- enqueue ------------------------------------------------------------------------------ */

#define ENQ_UNNEST                                                                               \
    "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]," \
    " $8::text[], $9::integer[])"

static const char SQL_ENQUEUE[] =
    "INSERT INTO outbox (channel_id, external_message_id, business_id,"
    " external_conversation_id, content, sender_type, consumer_name, consumer_image, priority)"
    " SELECT * FROM " ENQ_UNNEST " ON CONFLICT (channel_id, external_message_id) DO NOTHING"
    " RETURNING id";

/*
 * Every item's row after the INSERT, in the batch's order: its id (new or not), state, and
 * whether its fields are the item's (a duplicate) or not (a conflict). LATERAL: one probe of
 * the key's unique index per item; as a join, the generic plan hashed a scan of the whole
 * outbox (0.85 ms for 8 items at 20,000 rows, and growing with the table).
 */
static const char SQL_ENQUEUED[] =
    "SELECT u.ord, o.id, o.state, o.business_id = u.b AND o.external_conversation_id = u.conv"
    " AND o.content = u.content AND o.sender_type = u.sender"
    " AND o.consumer_name IS NOT DISTINCT FROM u.name"
    " AND o.consumer_image IS NOT DISTINCT FROM u.image AND o.priority = u.prio"
    " FROM " ENQ_UNNEST " WITH ORDINALITY AS u(ch, ext, b, conv, content, sender, name, image,"
    " prio, ord) CROSS JOIN LATERAL (SELECT * FROM outbox x WHERE x.channel_id = u.ch"
    " AND x.external_message_id = u.ext) o"
    " ORDER BY u.ord";

struct enq_run {
    struct obx_enq_item *items;
    size_t *valid; /* index in items of the batch's k-th valid item */
    size_t nvalid;
    struct pg_stmt stmt; /* the arrays, the same for both statements */
    int64_t *inserted;   /* ids the INSERT returned, sorted */
    char *taken;         /* taken[k]: an item already got inserted[k] */
    int ninserted;
};

static int
build_enqueue(void *ctx, size_t i, struct pg_stmt *s)
{
    struct enq_run *e = ctx;

    *s = e->stmt;
    s->name = i == 0 ? "obx_enqueue" : "obx_enqueued";
    return 1;
}

static int
cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static enum obx_err
take_enqueue(void *ctx, size_t i, PGresult *r)
{
    struct enq_run *e = ctx;
    int rows = PQntuples(r);

    if (i == 0) {
        e->inserted = obx_malloc(sizeof *e->inserted * (size_t)(rows ? rows : 1));
        e->taken = obx_calloc((size_t)(rows ? rows : 1), 1);
        if (!e->inserted || !e->taken)
            return OBX_ENOMEM;
        for (int k = 0; k < rows; k++)
            e->inserted[k] = col_int(r, k, 0);
        e->ninserted = rows;
        qsort(e->inserted, (size_t)rows, sizeof *e->inserted, cmp_id);
        return OBX_OK;
    }
    for (int k = 0; k < rows; k++) {
        int64_t ord = col_int(r, k, 0), id = col_int(r, k, 1);
        int64_t *hit = bsearch(&id, e->inserted, (size_t)e->ninserted, sizeof id, cmp_id);
        struct obx_enq_item *it;
        if (ord < 1 || (size_t)ord > e->nvalid)
            return OBX_EDB;
        it = &e->items[e->valid[ord - 1]];
        it->id = id;
        snprintf(it->state, sizeof it->state, "%s", PQgetvalue(r, k, 2));
        if (hit && !e->taken[hit - e->inserted]) {
            /* The first item with a key inserted it; a later one in the batch repeats it. */
            it->result = OBX_ENQ_ACCEPTED;
            e->taken[hit - e->inserted] = 1;
        } else if (strcmp(PQgetvalue(r, k, 3), "t") == 0) {
            it->result = OBX_ENQ_DUPLICATE;
        } else {
            it->err = OBX_ECONFLICT;
        }
    }
    return OBX_OK;
}

enum obx_err
obx_store_pg_enqueue_batch(struct obx_pg *pg, struct obx_enq_item *items, size_t n,
                           const struct obx_msg_limits *lim)
{
    struct obx_msg_limits dflt = obx_msg_limits_default();
    struct enq_run e = {.items = items};
    struct arrays a;
    enum obx_err err = obx_pg_prepare(pg, "obx_enqueue", SQL_ENQUEUE);

    if (err == OBX_OK)
        err = obx_pg_prepare(pg, "obx_enqueued", SQL_ENQUEUED);
    if (err != OBX_OK)
        return err;
    e.valid = obx_malloc(sizeof *e.valid * (n ? n : 1));
    if (!e.valid)
        return OBX_ENOMEM;
    arrays_init(&a, 9);
    for (size_t i = 0; i < n && err == OBX_OK; i++) {
        const struct obx_msg *m = &items[i].msg;
        items[i].id = 0;
        items[i].state[0] = '\0';
        items[i].result = OBX_ENQ_ACCEPTED;
        items[i].err = obx_msg_validate(m, lim ? lim : &dflt, &items[i].fe);
        if (items[i].err != OBX_OK)
            continue;
        e.valid[e.nvalid++] = i;
        err = obx_pg_array_text(&a.col[0], m->channel_id);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[1], m->external_message_id);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[2], m->business_id);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[3], m->external_conversation_id);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[4], m->content);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[5], m->sender_type);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[6], m->consumer_name);
        if (err == OBX_OK)
            err = obx_pg_array_text(&a.col[7], m->consumer_image);
        if (err == OBX_OK)
            err = obx_pg_array_int(&a.col[8], m->priority, 0);
    }
    if (err == OBX_OK)
        err = arrays_params(&a, &e.stmt);
    if (err == OBX_OK && e.nvalid > 0)
        err = run_transaction(pg, NULL, 2, build_enqueue, take_enqueue, &e);
    arrays_release(&a);
    obx_free(e.inserted);
    obx_free(e.taken);
    obx_free(e.valid);
    return err;
}

/* ---- claim -------------------------------------------------------------------------------- */

/*
 * The due heads in the order of the partial index outbox_claim, returned in that order
 * (an UPDATE's RETURNING has none); FOR UPDATE SKIP LOCKED so that two claimers (nodes, or
 * a claim racing a producer's UPDATE) take different rows. The ORDER BY names the index's
 * leading column, tenant, although one claim reads one tenant: for `tenant IS NULL` the
 * planner does not know the column is constant, and without it sorted every due head of
 * the default tenant on each claim (EXPLAIN: a seq scan and a sort of 10,000 heads, 5 ms,
 * against an index range of 32 rows, 0.1 ms).
 */
#define CLAIM_SQL(TENANT_MATCH)                                                         \
    "WITH c AS (UPDATE outbox o SET state = 'sending', state_reason = 'claimed',"       \
    " state_at_ms = $2::bigint, lease_token = $3::bigint,"                              \
    " lease_expires_at_ms = $2::bigint + $4::bigint"                                    \
    " FROM (SELECT id FROM outbox WHERE " TENANT_MATCH " AND state = 'queued' AND head" \
    " AND next_attempt_at_ms <= $2::bigint"                                             \
    " ORDER BY tenant, priority DESC, next_attempt_at_ms, id LIMIT $5::integer"         \
    " FOR UPDATE SKIP LOCKED) due WHERE o.id = due.id"                                  \
    " RETURNING o.id, o.channel_id, o.external_message_id, o.business_id,"              \
    " o.external_conversation_id, o.content, o.sender_type, o.consumer_name,"           \
    " o.consumer_image, o.priority, o.attempts, o.counted_attempts, o.resends,"         \
    " o.created_at_ms, coalesce(o.accepted_at_ms, 0), o.tenant, o.next_attempt_at_ms,"  \
    " coalesce((SELECT tc.readonly::integer FROM tenant_channels tc"                    \
    "  WHERE tc.channel_id = o.channel_id), -1) AS readonly)"                           \
    " SELECT * FROM c ORDER BY priority DESC, next_attempt_at_ms, id"

static const char SQL_CLAIM_TENANT[] = CLAIM_SQL("tenant = $1::text");
static const char SQL_CLAIM_DEFAULT[] = CLAIM_SQL("tenant IS NULL AND $1::text IS NULL");

/* Row i's strings (columns 1..8). */
static enum obx_err
copy_claimed(PGresult *r, int row, struct obx_claimed *c)
{
    const char *v[8];
    size_t len[8];

    for (int i = 0; i < 8; i++) {
        v[i] = PQgetisnull(r, row, i + 1) ? NULL : PQgetvalue(r, row, i + 1);
        len[i] = (size_t)PQgetlength(r, row, i + 1);
    }
    return obx_store_claimed_copy_strings(c, v, len);
}

struct claim_run {
    struct pg_stmt stmt;
    int64_t token;
    int max;
    struct obx_claimed *out;
    int n;
};

static int
build_claim(void *ctx, size_t i, struct pg_stmt *s)
{
    struct claim_run *cl = ctx;

    (void)i;
    *s = cl->stmt; /* its numbers stay in cl->stmt, which outlives the send */
    return 1;
}

static enum obx_err
take_claim(void *ctx, size_t i, PGresult *r)
{
    struct claim_run *cl = ctx;
    enum obx_err err = OBX_OK;

    (void)i;
    for (int k = 0; k < PQntuples(r) && cl->n < cl->max && err == OBX_OK; k++) {
        struct obx_claimed *c = &cl->out[cl->n];
        memset(c, 0, sizeof *c);
        c->id = col_int(r, k, 0);
        c->lease_token = cl->token;
        c->msg.priority = col_int(r, k, 9);
        c->attempts = (int)col_int(r, k, 10);
        c->counted_attempts = (int)col_int(r, k, 11);
        c->resends = (int)col_int(r, k, 12);
        c->created_at_ms = col_int(r, k, 13);
        c->accepted_at_ms = col_int(r, k, 14);
        if (!PQgetisnull(r, k, 15))
            snprintf(c->tenant, sizeof c->tenant, "%s", PQgetvalue(r, k, 15));
        c->readonly = (int)col_int(r, k, 17); /* -1: no tenant owns it */
        err = copy_claimed(r, k, c);
        if (err == OBX_OK)
            cl->n++;
    }
    return err;
}

enum obx_err
obx_store_pg_claim(struct obx_pg *pg, const struct obx_pg_fence *fence, const char *tenant, int max,
                   int64_t lease_ms, struct obx_claimed *out, int *n)
{
    const char *name = tenant ? "obx_claim_tenant" : "obx_claim_default";
    enum obx_err err = obx_pg_prepare(pg, name, tenant ? SQL_CLAIM_TENANT : SQL_CLAIM_DEFAULT);
    struct claim_run cl = {.max = max, .out = out};

    *n = 0;
    if (err != OBX_OK || max <= 0)
        return err;
    /* One token per claim: a finish names its message and this token, so a message claimed
     * again (after its lease ran out) cannot be finished by the earlier claim. */
    if (getrandom(&cl.token, sizeof cl.token, 0) != sizeof cl.token)
        return OBX_EIO;
    cl.token &= INT64_MAX;
    cl.stmt.name = name;
    cl.stmt.nparams = 5;
    cl.stmt.vals[0] = tenant;
    stmt_int(&cl.stmt, 1, obx_now_ms(obx_clock_real()));
    stmt_int(&cl.stmt, 2, cl.token);
    stmt_int(&cl.stmt, 3, lease_ms);
    stmt_int(&cl.stmt, 4, max);
    err = run_transaction(pg, fence, 1, build_claim, take_claim, &cl);
    if (err != OBX_OK) {
        /* Rolled back: nothing was claimed. */
        for (int i = 0; i < cl.n; i++)
            obx_store_claimed_release(&out[i]);
        return err;
    }
    *n = cl.n;
    return OBX_OK;
}

/* ---- finish ------------------------------------------------------------------------------- */

static const char SQL_ATTEMPTS[] =
    "INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome, error,"
    " response_excerpt, lease_token) SELECT * FROM unnest($1::bigint[], $2::bigint[],"
    " $3::bigint[], $4::integer[], $5::text[], $6::text[], $7::text[], $8::bigint[])"
    " ON CONFLICT (message_id, lease_token) DO NOTHING";

/*
 * Every outcome in one UPDATE, with the rules of store.c's three: f.next is the state the
 * attempt leads to (accepted, failed or queued), f.made 1 when an attempt was made (0: a
 * release). A confirmation that arrived while the request was in flight wins. A row whose
 * lease is no longer held is not returned: its item gets OBX_ECONFLICT.
 */
static const char SQL_OUTCOMES[] =
    "UPDATE outbox o SET"
    " state = CASE WHEN o.confirmed_at_ms IS NULL THEN f.next ELSE 'confirmed' END,"
    " state_reason = CASE WHEN o.confirmed_at_ms IS NULL THEN f.reason"
    "  ELSE f.reason || '; confirmed by an earlier webhook' END,"
    " state_at_ms = $11::bigint,"
    " accepted_at_ms = CASE WHEN f.next = 'accepted' THEN $11::bigint ELSE o.accepted_at_ms END,"
    " attempts = o.attempts + f.made, counted_attempts = o.counted_attempts + f.counted,"
    " last_http_status = CASE WHEN f.made = 1 THEN f.status ELSE o.last_http_status END,"
    " last_error = CASE WHEN f.next = 'accepted' THEN NULL WHEN f.made = 1 THEN f.error"
    "  ELSE o.last_error END,"
    " next_attempt_at_ms = CASE WHEN f.next = 'queued' THEN f.next_at"
    "  ELSE o.next_attempt_at_ms END,"
    " confirm_due_at_ms = CASE WHEN f.next <> 'accepted' THEN o.confirm_due_at_ms"
    "  WHEN o.confirmed_at_ms IS NULL THEN f.confirm_due END,"
    " lease_token = NULL, lease_expires_at_ms = NULL"
    " FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::integer[],"
    " $6::integer[], $7::integer[], $8::text[], $9::bigint[], $10::bigint[]) WITH ORDINALITY"
    " AS f(id, token, next, reason, made, counted, status, error, next_at, confirm_due, ord)"
    " WHERE o.id = f.id AND o.state = 'sending' AND o.lease_token = f.token"
    " RETURNING f.ord";

/*
 * The tenant's pacing state (0002's tenant_pacing), kept from the attempts a fenced finish
 * records, in its transaction: a 429's Retry-After (the retry time of a rate_limited
 * attempt), whether the key was refused (the run's last word on it: any `auth` attempt),
 * and the last send. A node that takes the tenant over starts from it (obx_store_pg_takeover)
 * instead of a fresh bucket: it neither sends into a pause nor bursts.
 */
static const char SQL_PACING[] =
    "INSERT INTO tenant_pacing (tenant, paused_until_ms, auth_paused, last_sent_at_ms,"
    " updated_at_ms)"
    " SELECT $1::text, coalesce(max(a.next_at) FILTER (WHERE a.outcome = 'rate_limited'), 0),"
    " bool_or(a.outcome = 'auth'), max(a.started), $4::bigint"
    " FROM unnest($2::text[], $3::bigint[], $5::bigint[]) AS a(outcome, started, next_at)"
    " HAVING count(*) > 0"
    " ON CONFLICT (tenant) DO UPDATE SET"
    " paused_until_ms = greatest(tenant_pacing.paused_until_ms, excluded.paused_until_ms),"
    " auth_paused = excluded.auth_paused,"
    " last_sent_at_ms = greatest(tenant_pacing.last_sent_at_ms, excluded.last_sent_at_ms),"
    " updated_at_ms = excluded.updated_at_ms";

struct finish_run {
    struct pg_stmt attempts, outcomes, pacing;
    int has_attempts, has_pacing;
    enum obx_err *results;
    size_t n;
};

static int
build_finish(void *ctx, size_t i, struct pg_stmt *s)
{
    struct finish_run *f = ctx;

    if ((i == 0 && !f->has_attempts) || (i == 2 && (!f->has_attempts || !f->has_pacing)))
        return 0;
    *s = i == 0 ? f->attempts : i == 1 ? f->outcomes : f->pacing;
    s->name = i == 0 ? "obx_attempts" : i == 1 ? "obx_outcomes" : "obx_pacing";
    return 1;
}

static enum obx_err
take_finish(void *ctx, size_t i, PGresult *r)
{
    struct finish_run *f = ctx;

    if (i != 1 || !f->results)
        return OBX_OK;
    for (int k = 0; k < PQntuples(r); k++) {
        int64_t ord = col_int(r, k, 0);
        if (ord >= 1 && (size_t)ord <= f->n)
            f->results[ord - 1] = OBX_OK;
    }
    return OBX_OK;
}

static const char *
next_state(enum obx_next next)
{
    return next == OBX_NEXT_ACCEPTED ? "accepted" : next == OBX_NEXT_FAILED ? "failed" : "queued";
}

/* Appends attempt a's values to the two statements' arrays. */
static enum obx_err
add_outcome(struct arrays *at, struct arrays *out, const struct obx_attempt *a)
{
    int made = a->next != OBX_NEXT_RELEASE;
    enum obx_err err = OBX_OK;

    if (made) {
        err = obx_pg_array_int(&at->col[0], a->message_id, 0);
        if (err == OBX_OK)
            err = obx_pg_array_int(&at->col[1], a->started_at_ms, 0);
        if (err == OBX_OK)
            err = obx_pg_array_int(&at->col[2], a->duration_ms, 0);
        if (err == OBX_OK)
            err = obx_pg_array_int(&at->col[3], a->http_status, a->http_status == 0);
        if (err == OBX_OK)
            err = obx_pg_array_text(&at->col[4], a->outcome ? a->outcome : "");
        if (err == OBX_OK)
            err = obx_pg_array_text(&at->col[5], a->error);
        if (err == OBX_OK)
            err = obx_pg_array_text(&at->col[6], a->excerpt);
        if (err == OBX_OK)
            err = obx_pg_array_int(&at->col[7], a->lease_token, 0);
    }
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[0], a->message_id, 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[1], a->lease_token, 0);
    if (err == OBX_OK)
        err = obx_pg_array_text(&out->col[2], next_state(a->next));
    if (err == OBX_OK)
        err = obx_pg_array_text(&out->col[3], a->reason ? a->reason : "");
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[4], made, 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[5], a->counted ? 1 : 0, 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[6], a->http_status, a->http_status == 0);
    if (err == OBX_OK)
        err = obx_pg_array_text(&out->col[7], a->error);
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[8], a->next == OBX_NEXT_RETRY ? a->next_attempt_at_ms : 0,
                               0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&out->col[9], a->confirm_due_at_ms, a->confirm_due_at_ms == 0);
    return err;
}

enum obx_err
obx_store_pg_finish(struct obx_pg *pg, const struct obx_pg_fence *fence,
                    const struct obx_attempt *a, size_t n, enum obx_err *results)
{
    struct finish_run f = {.results = results, .n = n, .has_pacing = fence != NULL};
    struct arrays at, out, pace;
    char now[24];
    enum obx_err err = obx_pg_prepare(pg, "obx_attempts", SQL_ATTEMPTS);

    if (err == OBX_OK)
        err = obx_pg_prepare(pg, "obx_outcomes", SQL_OUTCOMES);
    if (err == OBX_OK && fence)
        err = obx_pg_prepare(pg, "obx_pacing", SQL_PACING);
    if (err != OBX_OK)
        return err;
    arrays_init(&at, 8);
    arrays_init(&out, 11);
    arrays_init(&pace, 3);
    for (size_t i = 0; i < n && err == OBX_OK; i++) {
        if (results)
            results[i] = OBX_ECONFLICT; /* until the UPDATE returns it */
        f.has_attempts |= a[i].next != OBX_NEXT_RELEASE;
        err = add_outcome(&at, &out, &a[i]);
        if (err == OBX_OK && fence && a[i].next != OBX_NEXT_RELEASE) {
            err = obx_pg_array_text(&pace.col[0], a[i].outcome ? a[i].outcome : "");
            if (err == OBX_OK)
                err = obx_pg_array_int(&pace.col[1], a[i].started_at_ms, 0);
            if (err == OBX_OK)
                err = obx_pg_array_int(&pace.col[2], a[i].next_attempt_at_ms, 0);
        }
    }
    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(obx_clock_real()));
    if (err == OBX_OK && fence) {
        /* $1 tenant, $2 outcomes, $3 starts, $4 now, $5 retry times */
        err = arrays_params(&pace, &f.pacing);
        f.pacing.vals[4] = f.pacing.vals[2];
        f.pacing.vals[2] = f.pacing.vals[1];
        f.pacing.vals[1] = f.pacing.vals[0];
        f.pacing.vals[0] = fence->tenant;
        f.pacing.vals[3] = now;
        f.pacing.nparams = 5;
    }
    /* $11: now, one value for the whole batch (not an array). */
    if (err == OBX_OK)
        err = obx_buf_printf(&out.col[10], "%lld", (long long)obx_now_ms(obx_clock_real()));
    if (err == OBX_OK)
        err = arrays_params(&at, &f.attempts);
    out.ncols = 10;
    if (err == OBX_OK)
        err = arrays_params(&out, &f.outcomes);
    f.outcomes.vals[10] = obx_buf_str(&out.col[10]);
    f.outcomes.nparams = 11;
    out.ncols = 11;
    if (err == OBX_OK && n > 0)
        err = run_transaction(pg, fence, 3, build_finish, take_finish, &f);
    arrays_release(&at);
    arrays_release(&out);
    arrays_release(&pace);
    return err;
}

/* ---- takeover ----------------------------------------------------------------------------- */

static const char SQL_REQUEUE_TENANT[] =
    "UPDATE outbox SET state = 'queued', state_reason = 'sent again: its node lost the lease',"
    " state_at_ms = $2::bigint, lease_token = NULL, lease_expires_at_ms = NULL"
    " WHERE state = 'sending' AND tenant IS NOT DISTINCT FROM $1::text";

static const char SQL_PACING_OF[] =
    "SELECT paused_until_ms, auth_paused, last_sent_at_ms FROM tenant_pacing"
    " WHERE tenant = $1::text";

struct requeue_run {
    struct pg_stmt stmt, pacing;
    int64_t count;
    struct obx_pg_pacing *out;
};

static int
build_requeue(void *ctx, size_t i, struct pg_stmt *s)
{
    struct requeue_run *rq = ctx;

    *s = i == 0 ? rq->stmt : rq->pacing;
    return 1;
}

static enum obx_err
take_requeue(void *ctx, size_t i, PGresult *r)
{
    struct requeue_run *rq = ctx;

    if (i == 0) {
        rq->count = strtoll(PQcmdTuples(r), NULL, 10);
    } else if (PQntuples(r) == 1) {
        rq->out->paused_until_ms = col_int(r, 0, 0);
        rq->out->auth_paused = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        rq->out->last_sent_at_ms = col_int(r, 0, 2);
    }
    return OBX_OK;
}

enum obx_err
obx_store_pg_requeue_tenant(struct obx_pg *pg, const struct obx_pg_fence *fence, const char *tenant,
                            int64_t *count, struct obx_pg_pacing *pacing)
{
    struct obx_pg_pacing ignored = {0, 0, 0};
    struct requeue_run rq = {.out = pacing ? pacing : &ignored};
    enum obx_err err = obx_pg_prepare(pg, "obx_requeue_tenant", SQL_REQUEUE_TENANT);

    if (count)
        *count = 0;
    memset(rq.out, 0, sizeof *rq.out);
    if (err == OBX_OK)
        err = obx_pg_prepare(pg, "obx_pacing_of", SQL_PACING_OF);
    if (err != OBX_OK)
        return err;
    rq.stmt.name = "obx_requeue_tenant";
    rq.stmt.nparams = 2;
    rq.stmt.vals[0] = tenant;
    stmt_int(&rq.stmt, 1, obx_now_ms(obx_clock_real()));
    rq.pacing.name = "obx_pacing_of";
    rq.pacing.nparams = 1;
    rq.pacing.vals[0] = fence ? fence->tenant : tenant ? tenant : "default";
    err = run_transaction(pg, fence, 2, build_requeue, take_requeue, &rq);
    if (err == OBX_OK && count)
        *count = rq.count;
    return err;
}

enum obx_err
obx_store_pg_takeover(struct obx_store *st, const char *tenant, int64_t epoch, int64_t *count,
                      struct obx_pg_pacing *pacing)
{
    struct obx_pg_fence fence = {tenant ? tenant : "default", st->node, epoch};

    if (count)
        *count = 0;
    if (!st->pg)
        return OBX_EINVAL;
    return obx_store_pg_requeue_tenant(st->pg, &fence, tenant, count, pacing);
}

enum obx_err
obx_store_pg_ping(struct obx_pg *pg)
{
    long long one = 0;
    int found = 0;

    return obx_pg_query_int(pg, "SELECT 1", &one, &found);
}

/* ---- struct obx_store on PostgreSQL ------------------------------------------------------- */

enum obx_err
obx_store_pg_open_store(const char *uri, const char *schema, const char *node, int connect,
                        struct obx_store **out, char *errmsg, size_t n)
{
    struct obx_store *st = obx_calloc(1, sizeof *st);
    enum obx_err err = OBX_OK;
    int version = 0;

    *out = NULL;
    if (!st || !(st->node = obx_strdup(node))) {
        obx_free(st);
        return OBX_ENOMEM;
    }
    st->clock = obx_clock_real();
    st->pg_loop = !connect;
    if (connect)
        err = obx_pg_open(uri, schema, &st->pg, errmsg, n);
    if (connect && err == OBX_OK) {
        err = obx_migrate_pg_version(st->pg, &version);
        if (err != OBX_OK)
            snprintf(errmsg, n, "%s", obx_pg_errmsg(st->pg));
        else if (version != obx_migrate_pg_latest()) {
            snprintf(errmsg, n,
                     "schema '%s' is at version %d, this binary needs %d: run `outbox migrate`"
                     " (or the newer binary)",
                     schema, version, obx_migrate_pg_latest());
            err = OBX_ESCHEMA;
        }
    }
    if (err != OBX_OK) {
        obx_store_free(st);
        return err;
    }
    *out = st;
    return OBX_OK;
}

int
obx_store_pg_in_use(const struct obx_store *st)
{
    return st->pg != NULL || st->pg_loop;
}

enum obx_err
obx_store_pg_claim_tenants(struct obx_store *st, struct obx_claim_want *wants, size_t nwants,
                           int64_t lease_ms, struct obx_claimed *out, int *n)
{
    int total = 0;
    enum obx_err err = OBX_OK;

    *n = 0;
    if (!st->pg)
        return OBX_EINVAL;
    for (size_t i = 0; i < nwants; i++)
        wants[i].got = 0;
    for (size_t i = 0; i < nwants && err == OBX_OK; i++) {
        struct obx_pg_fence fence = {wants[i].tenant ? wants[i].tenant : "default", st->node,
                                     wants[i].epoch};
        int got = 0;
        err = obx_store_pg_claim(st->pg, wants[i].epoch ? &fence : NULL, wants[i].tenant,
                                 wants[i].want, lease_ms, out + total, &got);
        if (err == OBX_ECONFLICT) {
            err = OBX_OK; /* that tenant's lease is lost: nothing for it; the others go on */
            continue;
        }
        for (int k = 0; k < got; k++)
            out[total + k].epoch = wants[i].epoch;
        wants[i].got = got;
        total += got;
    }
    if (err != OBX_OK) {
        /* Each tenant's claim committed on its own: what was claimed before the failure
         * stays `sending` until recovered; the caller drops it (as SQLite's rollback). */
        for (int k = 0; k < total; k++)
            obx_store_claimed_release(&out[k]);
        for (size_t i = 0; i < nwants; i++)
            wants[i].got = 0;
        return err;
    }
    *n = total;
    return OBX_OK;
}

static int
same_fence(const struct obx_attempt *a, const struct obx_attempt *b)
{
    const char *x = a->fence_tenant ? a->fence_tenant : "",
               *y = b->fence_tenant ? b->fence_tenant : "";

    return a->epoch == b->epoch && strcmp(x, y) == 0;
}

enum obx_err
obx_store_pg_finish_fenced(struct obx_store *st, const struct obx_attempt *a, size_t n,
                           enum obx_err *results)
{
    struct obx_attempt *run = NULL;
    enum obx_err *res = NULL, err = OBX_OK;
    size_t *idx = NULL;
    char *done = NULL;

    if (!st->pg)
        return OBX_EINVAL;
    if (n == 0)
        return OBX_OK;
    run = obx_malloc(n * sizeof *run);
    res = obx_malloc(n * sizeof *res);
    idx = obx_malloc(n * sizeof *idx);
    done = obx_calloc(n, 1);
    if (!run || !res || !idx || !done)
        err = OBX_ENOMEM;
    /* Runs of one fence, in the order of their first attempt. */
    for (size_t i = 0; i < n && err == OBX_OK; i++) {
        struct obx_pg_fence fence = {a[i].fence_tenant ? a[i].fence_tenant : "default", st->node,
                                     a[i].epoch};
        size_t m = 0;
        if (done[i])
            continue;
        for (size_t k = i; k < n; k++)
            if (!done[k] && same_fence(&a[i], &a[k])) {
                done[k] = 1;
                idx[m] = k;
                run[m++] = a[k];
            }
        /* A failure after earlier runs committed makes the caller write them all again:
         * harmless, an attempt is written once (0004_attempt_once) and the outcomes'
         * guarded UPDATE matches no finished row. */
        err = obx_store_pg_finish(st->pg, a[i].epoch ? &fence : NULL, run, m, res);
        if (err == OBX_ECONFLICT) {
            for (size_t k = 0; k < m; k++)
                res[k] = OBX_ECONFLICT;
            err = OBX_OK;
        }
        for (size_t k = 0; k < m && err == OBX_OK && results; k++)
            results[idx[k]] = res[k];
    }
    obx_free(run);
    obx_free(res);
    obx_free(idx);
    obx_free(done);
    return err;
}

/* ---- confirmation (the webhook path; store_pg_inbox.h has the rest of it) --------------- */

enum obx_err
obx_store_pg_confirm(struct obx_store *st, const char *channel_id, const char *external_message_id,
                     const char *partoo_message_id, const char *partoo_status, const char *reason)
{
    char now[24];
    const char *vals[6] = {channel_id, external_message_id, partoo_message_id, partoo_status, now,
                           reason};
    long long matched;
    PGresult *r;

    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    /*
     * The key's row, or (channel_id NULL) the one row with that external id when there is
     * exactly one. A confirmation that arrives while the message is still sending is kept
     * in confirmed_at_ms: its outcome's write makes it confirmed (SQL_OUTCOMES above).
     */
    r = obx_pg_run(st->pg,
                   "WITH m AS (SELECT id FROM outbox WHERE external_message_id = $2"
                   "  AND ($1::text IS NULL OR channel_id = $1) LIMIT 2),"
                   " one AS (SELECT id FROM m WHERE (SELECT count(*) FROM m) = 1),"
                   " u AS (UPDATE outbox o SET partoo_message_id = $3, partoo_status = $4,"
                   "  confirmed_at_ms = coalesce(o.confirmed_at_ms, $5::bigint),"
                   "  confirm_due_at_ms = NULL, unconfirmed_at_ms = NULL,"
                   "  state_reason = CASE WHEN o.state IN ('accepted', 'failed', 'queued')"
                   "   THEN $6 ELSE o.state_reason END,"
                   "  state_at_ms = CASE WHEN o.state IN ('accepted', 'failed', 'queued')"
                   "   THEN $5::bigint ELSE o.state_at_ms END,"
                   "  state = CASE WHEN o.state IN ('accepted', 'failed', 'queued')"
                   "   THEN 'confirmed' ELSE o.state END"
                   "  FROM one WHERE o.id = one.id RETURNING o.id)"
                   " SELECT (SELECT count(*) FROM m), (SELECT count(*) FROM u)",
                   6, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    matched = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return matched == 0 ? OBX_ENOTFOUND : matched > 1 ? OBX_ECONFLICT : OBX_OK;
}

/* ---- status ------------------------------------------------------------------------------- */

const char *const obx_store_pg_state_names[OBX_PG_STATES] = {"queued",    "sending", "accepted",
                                                             "confirmed", "failed",  "cancelled"};

static const char SQL_STATE_COUNTS[] = "SELECT state, count(*) FROM outbox GROUP BY state";

static const char SQL_NODES[] =
    "SELECT n.name, n.expires_at_ms > outbox_now_ms(), outbox_now_ms() - n.beat_at_ms,"
    " coalesce((SELECT string_agg(l.tenant || ':' || l.epoch, ',' ORDER BY l.tenant)"
    "  FROM tenant_leases l WHERE l.node = n.name AND l.expires_at_ms > outbox_now_ms()), '')"
    " FROM nodes n ORDER BY 2 DESC, n.name";

enum obx_err
obx_store_pg_status(struct obx_pg *pg, int64_t counts[OBX_PG_STATES], obx_store_pg_node_fn on_node,
                    void *ctx)
{
    PGconn *c = obx_pg_conn(pg);
    PGresult *r = PQexec(c, SQL_STATE_COUNTS);
    enum obx_err err = OBX_OK;

    memset(counts, 0, sizeof(int64_t) * OBX_PG_STATES);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        obx_pg_set_error(pg, PQresultErrorMessage(r));
        PQclear(r);
        return OBX_EDB;
    }
    for (int i = 0; i < PQntuples(r); i++)
        for (int k = 0; k < OBX_PG_STATES; k++)
            if (strcmp(PQgetvalue(r, i, 0), obx_store_pg_state_names[k]) == 0)
                counts[k] = col_int(r, i, 1);
    PQclear(r);
    r = PQexec(c, SQL_NODES);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        obx_pg_set_error(pg, PQresultErrorMessage(r));
        err = OBX_EDB;
    }
    for (int i = 0; err == OBX_OK && i < PQntuples(r); i++) {
        struct obx_store_pg_node_row n = {PQgetvalue(r, i, 0),
                                          strcmp(PQgetvalue(r, i, 1), "t") == 0, col_int(r, i, 2),
                                          PQgetvalue(r, i, 3)};
        if (on_node(ctx, &n))
            break;
    }
    PQclear(r);
    return err;
}
