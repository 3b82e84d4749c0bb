/*
 * store_pg: enqueue, claim and finish on PostgreSQL (store_pg.h).
 *
 * A batch is one set-based statement over array parameters (or two), not a statement per
 * message. A call sends BEGIN, the fence, its statements and a sync through libpq's
 * pipeline mode, reads every result, and then commits or rolls back: two round trips
 * whatever the batch's size (an enqueue that meets a key already stored takes a third, for
 * SQL_ENQUEUED's check). The COMMIT waits for the results on purpose: one queued in the
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
#include "store_pg_dash.h"
#include "migrate_pg.h"
#include "msg.h"

#define PIPE_MAX 4 /* statements per call, each over a whole batch */
#define PARAMS_MAX 20

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

/* Runs inside the transaction after every result was taken: more work that depends on them. */
typedef enum obx_err (*then_fn)(void *ctx, struct obx_pg *pg);

/*
 * BEGIN; with a fence, its lease_check; the statements build() gives for 0..n-1 (n <=
 * PIPE_MAX), each result to take(); then(), when given; then COMMIT, or ROLLBACK after the
 * first failure. A send that fails means the connection is gone: the caller opens another.
 */
static enum obx_err
run_transaction_then(struct obx_pg *pg, const struct obx_pg_fence *fence, size_t n, build_fn build,
                     take_fn take, then_fn then, void *ctx)
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
    if (err == OBX_OK && then)
        err = then(ctx, pg);
    if (err == OBX_OK)
        return obx_pg_exec(pg, grouped ? "RELEASE SAVEPOINT obx_call" : "COMMIT");
    obx_pg_exec_quiet(pg, grouped ? "ROLLBACK TO SAVEPOINT obx_call; RELEASE SAVEPOINT obx_call"
                                  : "ROLLBACK");
    return err;
}

static enum obx_err
run_transaction(struct obx_pg *pg, const struct obx_pg_fence *fence, size_t n, build_fn build,
                take_fn take, void *ctx)
{
    return run_transaction_then(pg, fence, n, build, take, NULL, ctx);
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
    " RETURNING id, state, channel_id, external_message_id";

/*
 * When the INSERT did not return every item's row, in the batch's order (a duplicate, a
 * conflict, a key twice in the batch), every item's row after it, in the batch's order: its id (new
 * or not), state, and whether its fields are the item's (a duplicate) or not (a conflict). LATERAL:
 * one probe of the key's unique index per item; as a join, the generic plan hashed a scan of the
 * whole outbox (0.85 ms for 8 items at 20,000 rows, and growing with the table). OFFSET 0 keeps the
 * planner from pulling the subquery up into that join: it did, whenever the outbox's statistics
 * said it was small (a new or truncated outbox not analysed yet), and the plan, cached for the
 * session, kept scanning as the table grew (the HTTP enqueue bench, 2026-12-07).
 */
static const char SQL_ENQUEUED[] =
    "SELECT u.ord, o.id, o.state, o.business_id = u.b AND o.external_conversation_id = u.conv"
    " AND o.content = u.content AND o.sender_type = u.sender"
    " AND o.consumer_name IS NOT DISTINCT FROM u.name"
    " AND o.consumer_image IS NOT DISTINCT FROM u.image AND o.priority = u.prio"
    " FROM " ENQ_UNNEST " WITH ORDINALITY AS u(ch, ext, b, conv, content, sender, name, image,"
    " prio, ord) CROSS JOIN LATERAL (SELECT * FROM outbox x WHERE x.channel_id = u.ch"
    " AND x.external_message_id = u.ext OFFSET 0) o"
    " ORDER BY u.ord";

struct enq_run {
    struct obx_enq_item *items;
    size_t *valid; /* index in items of the batch's k-th valid item */
    size_t nvalid;
    struct pg_stmt stmt; /* the arrays, the same for both statements */
    int64_t *inserted;   /* ids the INSERT returned, sorted */
    char *taken;         /* taken[k]: an item already got inserted[k] */
    int ninserted;
    int all_inserted; /* the INSERT returned every item's row, in order: no check needed */
};

static int
build_enqueue(void *ctx, size_t i, struct pg_stmt *s)
{
    struct enq_run *e = ctx;

    (void)i;
    *s = e->stmt;
    s->name = "obx_enqueue";
    return 1;
}

/*
 * Whether the INSERT's rows are the batch's valid items, one each, in order: then each
 * item's answer is in them. The order is checked, not assumed (PostgreSQL does not promise
 * RETURNING's order), and anything else takes the check of SQL_ENQUEUED.
 */
static int
returned_in_order(const struct enq_run *e, PGresult *r)
{
    if ((size_t)PQntuples(r) != e->nvalid)
        return 0;
    for (size_t k = 0; k < e->nvalid; k++) {
        const struct obx_msg *m = &e->items[e->valid[k]].msg;
        if (strcmp(PQgetvalue(r, (int)k, 2), m->channel_id) != 0 ||
            strcmp(PQgetvalue(r, (int)k, 3), m->external_message_id) != 0)
            return 0;
    }
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

    if (i == 0 && returned_in_order(e, r)) {
        for (int k = 0; k < rows; k++) {
            struct obx_enq_item *it = &e->items[e->valid[k]];
            it->id = col_int(r, k, 0);
            snprintf(it->state, sizeof it->state, "%s", PQgetvalue(r, k, 1));
        }
        e->all_inserted = 1;
        return OBX_OK;
    }
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

/* The check of SQL_ENQUEUED, in the INSERT's transaction, when its rows were not enough. */
static enum obx_err
check_enqueued(void *ctx, struct obx_pg *pg)
{
    struct enq_run *e = ctx;
    PGresult *r;
    enum obx_err err;

    if (e->all_inserted)
        return OBX_OK;
    r = PQexecPrepared(obx_pg_conn(pg), "obx_enqueued", e->stmt.nparams, e->stmt.vals, NULL, NULL,
                       0);
    if (!r) { /* no result at all: the connection's own message says why */
        obx_pg_set_error(pg, PQerrorMessage(obx_pg_conn(pg)));
        return OBX_EDB;
    }
    err = PQresultStatus(r) == PGRES_TUPLES_OK ? take_enqueue(e, 1, r) : result_error(pg, r);
    PQclear(r);
    return err;
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
        err = run_transaction_then(pg, NULL, 1, build_enqueue, take_enqueue, check_enqueued, &e);
    arrays_release(&a);
    obx_free(e.inserted);
    obx_free(e.taken);
    obx_free(e.valid);
    return err;
}

/* ---- fences ------------------------------------------------------------------------------- */

/*
 * The leases a claim or finish writes under, checked inside its one statement: `held` locks
 * (FOR SHARE, in tenant order) each lease named in $F that this node ($N) still holds, unexpired.
 * A node taking a tenant over updates its lease row, so it waits for this transaction, and
 * this statement, had it waited, sees the new holder and writes nothing for that tenant. A
 * row whose fence epoch is 0 is not checked (one node, no leases). lease_check
 * (0002_nodes.sql) is the same rule for one lease at a time.
 */
#define HELD_SQL(F, N)                                                    \
    "held AS MATERIALIZED (SELECT l.tenant, l.epoch FROM tenant_leases l" \
    " WHERE l.tenant = ANY(" F "::text[]) AND l.node = " N "::text"       \
    " AND l.expires_at_ms > outbox_now_ms() ORDER BY l.tenant FOR SHARE)"
#define HELD_BY(ROW)                                                                    \
    "(" ROW ".epoch = 0 OR EXISTS (SELECT 1 FROM held h WHERE h.tenant = " ROW ".fence" \
    " AND h.epoch = " ROW ".epoch))"

/* The lease key of tenant: "default" stands for the channels no tenant owns. */
static const char *
fence_key(const char *tenant)
{
    return tenant ? tenant : "default";
}

/* ---- claim -------------------------------------------------------------------------------- */

/*
 * The due heads of several tenants in one statement: for each want (tenant, how many, its
 * fence), up to that many heads in the order of the partial index outbox_claim, with FOR
 * UPDATE SKIP LOCKED so that two claimers (nodes, or a claim racing a producer's UPDATE)
 * take different rows. Returned in the wants' order, then priority, then oldest due. The
 * ORDER BY names the index's leading column, tenant, although it is constant: for `tenant
 * IS NULL` the planner does not know it, and without it sorted every due head of the
 * default tenant on each claim (EXPLAIN: a seq scan and a sort of 10,000 heads, 5 ms,
 * against an index range of 32 rows, 0.1 ms).
 */
#define CLAIM_DUE(TENANT_MATCH)                                                                \
    " SELECT d.id, w.ord FROM w CROSS JOIN LATERAL (SELECT id FROM outbox WHERE " TENANT_MATCH \
    " AND state = 'queued' AND head AND next_attempt_at_ms <= $2::bigint"                      \
    " AND NOT EXISTS (SELECT 1 FROM pauses p WHERE p.resumed_at_ms IS NULL"                    \
    "  AND ((p.scope = 'channel' AND p.key = outbox.channel_id)"                               \
    "   OR (p.scope = 'tenant' AND p.key = coalesce(outbox.tenant, 'default'))))"              \
    " ORDER BY tenant, priority DESC, next_attempt_at_ms, id LIMIT w.want"                     \
    " FOR UPDATE SKIP LOCKED) d"

/*
 * Time claimed message o was held since it was created, by pauses of its channel or of its
 * tenant, overlaps counted once (range_agg merges them): max_age does not count it (SPEC
 * §13). An interval is never reversed, even when o was stamped by a clock ahead of $2's.
 */
#define HELD_MS                                                                                     \
    " (SELECT coalesce(sum(upper(r) - lower(r)), 0) FROM unnest((SELECT"                            \
    "  range_agg(int8range(b.lo, greatest(b.lo, b.hi))) FROM (SELECT"                               \
    "  greatest(p.paused_at_ms, o.created_at_ms) AS lo,"                                            \
    "  least(coalesce(p.resumed_at_ms, $2::bigint), $2::bigint) AS hi FROM pauses p"                \
    "  WHERE ((p.scope = 'channel' AND p.key = o.channel_id)"                                       \
    "   OR (p.scope = 'tenant' AND p.key = coalesce(o.tenant, 'default')))"                         \
    "  AND p.paused_at_ms < $2::bigint AND coalesce(p.resumed_at_ms, $2::bigint) > o.created_at_ms" \
    " ) b)) r) AS held_ms"

/*
 * PROBE_BY_ID: the claim's UPDATE says `o.id = ANY (ARRAY(SELECT id FROM due))` beside its
 * join, so that the rows claimed are found by the primary key, one probe each. Without it
 * the session's generic plan, which cannot know how few rows a claim takes (it estimated
 * 344 for 32), hashed a scan of the whole outbox for each claim: 6.7 ms at 20,000 rows.
 * Measured 2026-12-07 (bench/pg_serve.sh's drain, 20,000 messages): PostgreSQL's CPU per
 * message delivered fell from 558 to 262 µs, the drain rose from ~1,600 to ~2,500 msg/s.
 * test_pg_plans counts the scans.
 */

/* clang-format off */
static const char SQL_CLAIM[] =
    "WITH " HELD_SQL("$6", "$7") ","
    " w AS MATERIALIZED (SELECT * FROM unnest($1::text[], $5::integer[], $6::text[],"
    " $8::bigint[]) WITH ORDINALITY AS w(tenant, want, fence, epoch, ord) WHERE " HELD_BY("w") "),"
    " due AS (" CLAIM_DUE("tenant = w.tenant") " WHERE w.tenant IS NOT NULL"
    " UNION ALL" CLAIM_DUE("tenant IS NULL") " WHERE w.tenant IS NULL),"
    " c AS (UPDATE outbox o SET state = 'sending', state_reason = 'claimed',"
    " state_at_ms = $2::bigint, lease_token = $3::bigint,"
    " lease_expires_at_ms = $2::bigint + $4::bigint FROM due WHERE o.id = due.id"
    " AND o.id = ANY (ARRAY(SELECT id FROM due))" /* PROBE_BY_ID */
    " RETURNING o.id, o.channel_id, o.external_message_id, o.business_id,"
    " o.external_conversation_id, o.content, o.sender_type, o.consumer_name,"
    " o.consumer_image, o.priority, o.attempts, o.counted_attempts, o.resends,"
    " o.created_at_ms, coalesce(o.accepted_at_ms, 0), o.tenant, o.next_attempt_at_ms,"
    " coalesce((SELECT tc.readonly::integer FROM tenant_channels tc"
    "  WHERE tc.channel_id = o.channel_id), -1) AS readonly, due.ord," HELD_MS ")"
    /* One row even when nothing was due: it says how many leases were held. */
    " SELECT c.*, h.n FROM (SELECT count(*) AS n FROM held) h LEFT JOIN c ON true"
    " ORDER BY c.ord, c.priority DESC, c.next_attempt_at_ms, c.id";
/* clang-format on */

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
    struct obx_claim_want *wants;
    size_t *want_of; /* the want of array element k (wants with nothing to ask are left out) */
    size_t nasked;
    struct obx_claimed *out;
    int max, n;
    int64_t held;
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
    for (int k = 0; k < PQntuples(r) && err == OBX_OK; k++) {
        struct obx_claimed *c = &cl->out[cl->n];
        int64_t ord = col_int(r, k, 18);
        cl->held = col_int(r, k, 20);
        if (PQgetisnull(r, k, 0) || cl->n == cl->max || ord < 1 || ord > (int64_t)cl->nasked)
            continue; /* the row of an empty claim */
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
        c->held_ms = col_int(r, k, 19);
        err = copy_claimed(r, k, c);
        if (err == OBX_OK) {
            struct obx_claim_want *w = &cl->wants[cl->want_of[ord - 1]];
            c->epoch = w->epoch;
            w->got++;
            cl->n++;
        }
    }
    return err;
}

/*
 * Claims for every want in one statement, under node's leases (wants[i].epoch; 0: none).
 * A want whose lease is lost gets nothing. *held: how many of the leases were held.
 */
static enum obx_err
claim_wants(struct obx_pg *pg, const char *node, struct obx_claim_want *wants, size_t nwants,
            int64_t lease_ms, struct obx_claimed *out, int *n, int64_t *held)
{
    struct claim_run cl = {.wants = wants, .out = out};
    struct arrays arr;
    enum obx_err err = obx_pg_prepare(pg, "obx_claim", SQL_CLAIM);

    *n = 0;
    *held = 0;
    for (size_t i = 0; i < nwants; i++) {
        wants[i].got = 0;
        if (wants[i].want > 0)
            cl.max += wants[i].want;
    }
    if (err != OBX_OK || cl.max == 0)
        return err;
    /* One token per claim: a finish names its message and this token, so a message claimed
     * again (after its lease ran out) cannot be finished by the earlier claim. */
    if (getrandom(&cl.token, sizeof cl.token, 0) != sizeof cl.token)
        return OBX_EIO;
    cl.token &= INT64_MAX;
    cl.want_of = obx_malloc(nwants * sizeof *cl.want_of);
    if (!cl.want_of)
        return OBX_ENOMEM;
    arrays_init(&arr, 4); /* tenant, want, fence, epoch */
    for (size_t i = 0; i < nwants && err == OBX_OK; i++) {
        if (wants[i].want <= 0)
            continue;
        cl.want_of[cl.nasked++] = i;
        err = obx_pg_array_text(&arr.col[0], wants[i].tenant);
        if (err == OBX_OK)
            err = obx_pg_array_int(&arr.col[1], wants[i].want, 0);
        if (err == OBX_OK)
            err = obx_pg_array_text(&arr.col[2], fence_key(wants[i].tenant));
        if (err == OBX_OK)
            err = obx_pg_array_int(&arr.col[3], wants[i].epoch, 0);
    }
    if (err == OBX_OK)
        err = arrays_params(&arr, &cl.stmt);
    if (err == OBX_OK) {
        cl.stmt.name = "obx_claim";
        cl.stmt.nparams = 8;
        cl.stmt.vals[7] = cl.stmt.vals[3]; /* $8 epochs */
        cl.stmt.vals[5] = cl.stmt.vals[2]; /* $6 fences */
        cl.stmt.vals[4] = cl.stmt.vals[1]; /* $5 wants */
        stmt_int(&cl.stmt, 1, obx_now_ms(obx_clock_real()));
        stmt_int(&cl.stmt, 2, cl.token);
        stmt_int(&cl.stmt, 3, lease_ms);
        cl.stmt.vals[6] = node;
        err = run_transaction(pg, NULL, 1, build_claim, take_claim, &cl);
    }
    arrays_release(&arr);
    obx_free(cl.want_of);
    if (err != OBX_OK) {
        /* Rolled back: nothing was claimed. */
        for (int i = 0; i < cl.n; i++)
            obx_store_claimed_release(&out[i]);
        for (size_t i = 0; i < nwants; i++)
            wants[i].got = 0;
        return err;
    }
    *n = cl.n;
    *held = cl.held;
    return OBX_OK;
}

/* ---- finish ------------------------------------------------------------------------------- */

/*
 * Every attempt and outcome of a batch in one statement, under the leases of its rows
 * (`held`): a row whose fence is lost writes nothing at all. For the others:
 * - each attempt made is recorded once (0004_attempt_once: writing a batch again after a
 *   lost COMMIT reply records nothing twice);
 * - each tenant's pacing (0002's tenant_pacing) is kept from its attempts: a 429's
 *   Retry-After (the retry time of a rate_limited attempt), whether the key was refused
 *   (any `auth` attempt: the batch's last word on it), the last send. A node that takes the
 *   tenant over starts from it (obx_store_pg_takeover) instead of a fresh bucket;
 * - the outcomes, with the rules of store.c's: f.next is the state the attempt leads to
 *   (accepted, failed or queued), f.made 1 when an attempt was made (0: a release). A
 *   confirmation that arrived while the request was in flight wins.
 * Returned: the ordinal of each outcome applied (a row whose lease token is no longer its
 * own is not: OBX_ECONFLICT), and one 0 per lease held.
 */
static const char SQL_FINISH[] = "WITH " HELD_SQL(
    "$16",
    "$18") ","
           " f AS MATERIALIZED (SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[],"
           " $4::text[], $5::integer[], $6::integer[], $7::integer[], $8::text[], $9::bigint[],"
           " $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::bigint[],"
           " $16::text[], $17::bigint[]) WITH ORDINALITY AS f(id, token, next, reason, made, counted,"
           " status, error, next_at, confirm_due, started, duration, outcome, excerpt, retry_at,"
           " fence, epoch, ord) WHERE " HELD_BY(
               "f") "),"
                    " a AS (INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome,"
                    " error, response_excerpt, lease_token) SELECT id, started, duration, status, outcome,"
                    " error, excerpt, token FROM f WHERE made = 1"
                    " ON CONFLICT (message_id, lease_token) DO NOTHING),"
                    " p AS (INSERT INTO tenant_pacing AS tp (tenant, paused_until_ms, auth_paused,"
                    " last_sent_at_ms, updated_at_ms)"
                    " SELECT fence, coalesce(max(retry_at) FILTER (WHERE outcome = 'rate_limited'), 0),"
                    " bool_or(outcome = 'auth'), max(started), $19::bigint FROM f"
                    " WHERE made = 1 AND epoch <> 0 GROUP BY fence"
                    " ON CONFLICT (tenant) DO UPDATE SET"
                    " paused_until_ms = greatest(tp.paused_until_ms, excluded.paused_until_ms),"
                    " auth_paused = excluded.auth_paused,"
                    " last_sent_at_ms = greatest(tp.last_sent_at_ms, excluded.last_sent_at_ms),"
                    " updated_at_ms = excluded.updated_at_ms),"
                    " u AS (UPDATE outbox o SET"
                    " state = CASE WHEN o.confirmed_at_ms IS NULL THEN f.next ELSE 'confirmed' END,"
                    " state_reason = CASE WHEN o.confirmed_at_ms IS NULL THEN f.reason"
                    "  ELSE f.reason || '; confirmed by an earlier webhook' END,"
                    " state_at_ms = $19::bigint,"
                    " accepted_at_ms = CASE WHEN f.next = 'accepted' THEN $19::bigint ELSE o.accepted_at_ms END,"
                    " attempts = o.attempts + f.made, counted_attempts = o.counted_attempts + f.counted,"
                    " last_http_status = CASE WHEN f.made = 1 THEN f.status ELSE o.last_http_status END,"
                    " last_error = CASE WHEN f.next = 'accepted' THEN NULL WHEN f.made = 1 THEN f.error"
                    "  ELSE o.last_error END,"
                    " next_attempt_at_ms = CASE WHEN f.next = 'queued' THEN f.next_at"
                    "  ELSE o.next_attempt_at_ms END,"
                    " confirm_due_at_ms = CASE WHEN f.next <> 'accepted' THEN o.confirm_due_at_ms"
                    "  WHEN o.confirmed_at_ms IS NULL THEN f.confirm_due END,"
                    " lease_token = NULL, lease_expires_at_ms = NULL"
                    " FROM f WHERE o.id = f.id AND o.state = 'sending' AND o.lease_token = f.token"
                    " RETURNING f.ord)"
                    " SELECT ord FROM u UNION ALL SELECT 0 FROM held";

struct finish_run {
    struct pg_stmt stmt;
    enum obx_err *results;
    size_t n;
    int64_t held;
};

static int
build_finish(void *ctx, size_t i, struct pg_stmt *s)
{
    struct finish_run *f = ctx;

    (void)i;
    *s = f->stmt;
    return 1;
}

static enum obx_err
take_finish(void *ctx, size_t i, PGresult *r)
{
    struct finish_run *f = ctx;

    (void)i;
    for (int k = 0; k < PQntuples(r); k++) {
        int64_t ord = col_int(r, k, 0);
        if (ord == 0)
            f->held++;
        else if (ord >= 1 && (size_t)ord <= f->n && f->results)
            f->results[ord - 1] = OBX_OK;
    }
    return OBX_OK;
}

static const char *
next_state(enum obx_next next)
{
    return next == OBX_NEXT_ACCEPTED ? "accepted" : next == OBX_NEXT_FAILED ? "failed" : "queued";
}

/* Appends attempt a's values, under fence (tenant, epoch), to the statement's arrays. */
static enum obx_err
add_outcome(struct arrays *f, const struct obx_attempt *a, const char *fence, int64_t epoch)
{
    int made = a->next != OBX_NEXT_RELEASE;
    enum obx_err err = obx_pg_array_int(&f->col[0], a->message_id, 0);

    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[1], a->lease_token, 0);
    if (err == OBX_OK)
        err = obx_pg_array_text(&f->col[2], next_state(a->next));
    if (err == OBX_OK)
        err = obx_pg_array_text(&f->col[3], a->reason ? a->reason : "");
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[4], made, 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[5], a->counted ? 1 : 0, 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[6], a->http_status, a->http_status == 0);
    if (err == OBX_OK)
        err = obx_pg_array_text(&f->col[7], a->error);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[8], a->next == OBX_NEXT_RETRY ? a->next_attempt_at_ms : 0,
                               0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[9], a->confirm_due_at_ms, a->confirm_due_at_ms == 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[10], a->started_at_ms, 0);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[11], a->duration_ms, 0);
    if (err == OBX_OK)
        err = obx_pg_array_text(&f->col[12], made ? (a->outcome ? a->outcome : "") : NULL);
    if (err == OBX_OK)
        err = obx_pg_array_text(&f->col[13], a->excerpt);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[14], a->next_attempt_at_ms, 0);
    if (err == OBX_OK)
        err = obx_pg_array_text(&f->col[15], fence);
    if (err == OBX_OK)
        err = obx_pg_array_int(&f->col[16], epoch, 0);
    return err;
}

/*
 * Records n attempts and outcomes in one statement. Each is written under its own fence
 * (a[i].fence_tenant, a[i].epoch), or all under `all` when given; node is the holder they
 * name. *held: how many of the leases were held.
 */
static enum obx_err
finish_attempts(struct obx_pg *pg, const char *node, const struct obx_pg_fence *all,
                const struct obx_attempt *a, size_t n, enum obx_err *results, int64_t *held)
{
    struct finish_run f = {.results = results, .n = n};
    struct arrays arr;
    enum obx_err err = obx_pg_prepare(pg, "obx_finish", SQL_FINISH);

    *held = 0;
    if (err != OBX_OK || n == 0)
        return err;
    arrays_init(&arr, 17);
    for (size_t i = 0; i < n && err == OBX_OK; i++) {
        if (results)
            results[i] = OBX_ECONFLICT; /* until the UPDATE returns it */
        err = add_outcome(&arr, &a[i], all ? all->tenant : fence_key(a[i].fence_tenant),
                          all ? all->epoch : a[i].epoch);
    }
    if (err == OBX_OK)
        err = arrays_params(&arr, &f.stmt);
    if (err == OBX_OK) {
        f.stmt.name = "obx_finish";
        f.stmt.nparams = 19;
        f.stmt.vals[17] = node;
        stmt_int(&f.stmt, 18, obx_now_ms(obx_clock_real()));
        err = run_transaction(pg, NULL, 1, build_finish, take_finish, &f);
    }
    arrays_release(&arr);
    if (err == OBX_OK)
        *held = f.held;
    return err;
}

enum obx_err
obx_store_pg_claim(struct obx_pg *pg, const struct obx_pg_fence *fence, const char *tenant, int max,
                   int64_t lease_ms, struct obx_claimed *out, int *n)
{
    struct obx_claim_want want = {tenant, NULL, max, 0, fence ? fence->epoch : 0};
    int64_t held = 0;
    enum obx_err err;

    *n = 0;
    if (max <= 0)
        return OBX_OK;
    err = claim_wants(pg, fence ? fence->node : NULL, &want, 1, lease_ms, out, n, &held);
    if (err == OBX_OK && fence && held == 0) {
        obx_pg_set_error(pg, "lease lost");
        return OBX_ECONFLICT; /* nothing was claimed */
    }
    return err;
}

enum obx_err
obx_store_pg_finish(struct obx_pg *pg, const struct obx_pg_fence *fence,
                    const struct obx_attempt *a, size_t n, enum obx_err *results)
{
    int64_t held = 0;
    enum obx_err err = finish_attempts(pg, fence ? fence->node : NULL, fence, a, n, results, &held);

    if (err == OBX_OK && fence && n > 0 && held == 0) {
        obx_pg_set_error(pg, "lease lost");
        return OBX_ECONFLICT; /* nothing was written */
    }
    return err;
}

/* ---- periodic jobs (lib/cron.c) ----------------------------------------------------------- */

/*
 * Accepted messages whose confirmation is overdue: re-sent (queued again, at the end of
 * their conversation's line: 0001's outbox_line_change) while resends < max_resends, given
 * up on (unconfirmed) after. Two nodes running it at once update each row once: the second
 * waits for the first's row lock and then finds the row changed.
 */
enum obx_err
obx_store_pg_confirm_timeouts(struct obx_store *st, int64_t max_resends, int64_t *resent,
                              int64_t *unconfirmed)
{
    char now[24], max[24];
    const char *vals[2] = {now, max};
    PGresult *r;

    *resent = *unconfirmed = 0;
    if (!st->pg)
        return OBX_EINVAL;
    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    snprintf(max, sizeof max, "%lld", (long long)max_resends);
    r = obx_pg_run(st->pg,
                   "WITH given_up AS (UPDATE outbox SET unconfirmed_at_ms = $1::bigint,"
                   "  confirm_due_at_ms = NULL WHERE state = 'accepted'"
                   "  AND confirm_due_at_ms <= $1::bigint AND resends >= $2::bigint RETURNING 1),"
                   " resent AS (UPDATE outbox SET state = 'queued', state_at_ms = $1::bigint,"
                   "  next_attempt_at_ms = 0, state_reason = 'no confirmation in time; re-sending',"
                   "  resends = resends + 1, confirm_due_at_ms = NULL WHERE state = 'accepted'"
                   "  AND confirm_due_at_ms <= $1::bigint AND resends < $2::bigint RETURNING 1)"
                   " SELECT (SELECT count(*) FROM resent), (SELECT count(*) FROM given_up)",
                   2, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    *resent = col_int(r, 0, 0);
    *unconfirmed = col_int(r, 0, 1);
    PQclear(r);
    return OBX_OK;
}

/*
 * Messages claimed and never finished whose lease ran out (a claim whose COMMIT committed
 * but whose answer was lost; a request that never came back): queued again. all: every
 * `sending` row (serve's start on SQLite; not used on PostgreSQL, where the other nodes'
 * claims are live).
 */
enum obx_err
obx_store_pg_recover(struct obx_store *st, int all, int64_t *count)
{
    char now[24];
    const char *vals[2] = {now, all ? "t" : "f"};
    PGresult *r;

    if (count)
        *count = 0;
    if (!st->pg)
        return OBX_EINVAL;
    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    r = obx_pg_run(
        st->pg,
        "UPDATE outbox SET state = 'queued', state_at_ms = $1::bigint,"
        " state_reason = CASE WHEN $2::boolean THEN 'recovered after restart'"
        "  ELSE 'lease expired' END, lease_token = NULL, lease_expires_at_ms = NULL"
        " WHERE state = 'sending' AND ($2::boolean OR lease_expires_at_ms <= $1::bigint)",
        2, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    if (count)
        *count = strtoll(PQcmdTuples(r), NULL, 10);
    PQclear(r);
    return OBX_OK;
}

/* ---- an operator's retry or cancel ------------------------------------------------------ */

/*
 * SQLite's SQL_RETRY and SQL_CANCEL (lib/store.c), and whether the key exists, in one
 * statement. The line is the schema's: a message queued again goes to the back of its
 * conversation, a cancelled head hands over to the next (0001's triggers).
 */
static const char SQL_RETRY_KEY[] =
    "WITH changed AS (UPDATE outbox SET state = 'queued', state_reason = $4,"
    "  state_at_ms = $3::bigint, next_attempt_at_ms = 0, counted_attempts = 0, resends = 0,"
    "  unconfirmed_at_ms = NULL, confirm_due_at_ms = NULL"
    "  WHERE channel_id = $1 AND external_message_id = $2 AND state IN ('failed', 'accepted')"
    "  RETURNING 1)"
    " SELECT (SELECT count(*) FROM changed), EXISTS (SELECT 1 FROM outbox"
    "  WHERE channel_id = $1 AND external_message_id = $2)";
static const char SQL_CANCEL_KEY[] =
    "WITH changed AS (UPDATE outbox SET state = 'cancelled', state_reason = $4,"
    "  state_at_ms = $3::bigint"
    "  WHERE channel_id = $1 AND external_message_id = $2 AND state = 'queued' RETURNING 1)"
    " SELECT (SELECT count(*) FROM changed), EXISTS (SELECT 1 FROM outbox"
    "  WHERE channel_id = $1 AND external_message_id = $2)";

enum obx_err
obx_store_pg_transition_by_key(struct obx_store *st, int retry, const char *channel_id,
                               const char *external_message_id, const char *reason)
{
    char now[24];
    const char *vals[4] = {channel_id, external_message_id, now, reason};
    enum obx_err err;
    PGresult *r;

    if (!st->pg)
        return OBX_EINVAL;
    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    err = obx_pg_tx_begin(st->pg);
    if (err != OBX_OK)
        return err;
    r = obx_pg_run(st->pg, retry ? SQL_RETRY_KEY : SQL_CANCEL_KEY, 4, vals, NULL, NULL);
    if (!r)
        err = OBX_EDB;
    else if (col_int(r, 0, 0) == 0)
        err = strcmp(PQgetvalue(r, 0, 1), "t") == 0 ? OBX_ECONFLICT : OBX_ENOTFOUND;
    PQclear(r);
    return obx_pg_tx_end(st->pg, err);
}

/* SQLite's SQL_RETRY_FAILED: every failed message (of a channel) queued again. */
enum obx_err
obx_store_pg_retry_failed(struct obx_store *st, const char *channel_id, int64_t *count)
{
    char now[24];
    const char *vals[2] = {now, channel_id};

    *count = 0;
    if (!st->pg)
        return OBX_EINVAL;
    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    return obx_pg_tx_change(st->pg,
                            "UPDATE outbox SET state = 'queued', state_reason = 'retried by"
                            " operator', state_at_ms = $1::bigint, next_attempt_at_ms = 0,"
                            " counted_attempts = 0, resends = 0, unconfirmed_at_ms = NULL,"
                            " confirm_due_at_ms = NULL"
                            " WHERE state = 'failed' AND ($2::text IS NULL OR channel_id = $2)",
                            2, vals, count);
}

/* ---- retention -------------------------------------------------------------------------- */

enum obx_err
obx_store_pg_purge_candidates(struct obx_store *st, const char *state, int64_t after_id, int rows,
                              obx_store_pg_candidate_fn fn, void *ctx, int64_t *last, int *scanned)
{
    char after[24], lim[24];
    const char *vals[3] = {state, after, lim};
    PGresult *r;

    *last = after_id;
    *scanned = 0;
    if (!st->pg)
        return OBX_EINVAL;
    snprintf(after, sizeof after, "%lld", (long long)after_id);
    snprintf(lim, sizeof lim, "%d", rows);
    /* outbox_state (state, id): a short range per batch, as on SQLite. */
    r = obx_pg_run(st->pg,
                   "SELECT id, channel_id, state_at_ms, created_at_ms FROM outbox WHERE state = $1"
                   " AND id > $2::bigint ORDER BY id LIMIT $3::bigint",
                   3, vals, NULL, NULL);
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++) {
        if (fn(ctx, col_int(r, i, 0), PQgetvalue(r, i, 1), col_int(r, i, 2), col_int(r, i, 3)))
            break;
        *last = col_int(r, i, 0);
        (*scanned)++;
    }
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_delete_messages(struct obx_store *st, const char *ids, const char *state,
                             int64_t *deleted)
{
    const char *vals[2] = {ids, state};

    *deleted = 0;
    if (!st->pg)
        return OBX_EINVAL;
    /* Still in that state: a retry in between keeps it. */
    return obx_pg_tx_change(st->pg,
                            "DELETE FROM outbox WHERE id = ANY($1::bigint[]) AND state = $2", 2,
                            vals, deleted);
}

/* The dashboard's bulk actions: SQLite's SQL_BULK_RETRY and SQL_BULK_CANCEL, by filter. */
enum obx_err
obx_store_pg_bulk_transition(struct obx_store *st, const struct obx_store_dash_filter *f, int retry,
                             int max, int64_t now_ms, const char *reason, int64_t *touched)
{
    char v[4][24], limit[24], now[24];
    const char *vals[10];

    *touched = 0;
    obx_store_pg_dash_filter_params(f, v, vals);
    snprintf(limit, sizeof limit, "%d", max);
    snprintf(now, sizeof now, "%lld", (long long)now_ms);
    vals[7] = limit;
    vals[8] = now;
    vals[9] = reason;
    return obx_pg_tx_change(
        st->pg,
        retry ? "UPDATE outbox SET state = 'queued', state_reason = $10,"
                " state_at_ms = $9::bigint, next_attempt_at_ms = 0, counted_attempts = 0,"
                " resends = 0, unconfirmed_at_ms = NULL, confirm_due_at_ms = NULL"
                " WHERE id IN (SELECT id FROM outbox WHERE " OBX_STORE_PG_DASH_FILTER
                " ORDER BY id LIMIT $8::bigint) AND state IN ('failed', 'accepted')"
              : "UPDATE outbox SET state = 'cancelled', state_reason = $10,"
                " state_at_ms = $9::bigint"
                " WHERE id IN (SELECT id FROM outbox WHERE " OBX_STORE_PG_DASH_FILTER
                " ORDER BY id LIMIT $8::bigint) AND state = 'queued'",
        10, vals, touched);
}

/* ---- takeover ----------------------------------------------------------------------------- */

static const char SQL_REQUEUE_TENANT[] =
    "UPDATE outbox SET state = 'queued', state_reason = 'sent again: its node lost the lease',"
    " state_at_ms = $2::bigint, lease_token = NULL, lease_expires_at_ms = NULL"
    " WHERE state = 'sending' AND tenant IS NOT DISTINCT FROM $1::text";

static const char SQL_PACING_OF[] =
    "SELECT paused_until_ms, auth_paused, last_sent_at_ms, circuit_open_until_ms"
    " FROM tenant_pacing WHERE tenant = $1::text";

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
        rq->out->circuit_open_until_ms = col_int(r, 0, 3);
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

/*
 * The circuit of one Partoo base URL as this node's breaker left it, in the pacing of each
 * tenant it holds and sends there ($1 the tenants, $2 their epochs): open until $3 (wall
 * clock; 0: closed). Only under the lease: a node that lost a tenant writes nothing for it.
 * In tenant order, as the finish upserts these rows.
 */
static const char SQL_CIRCUIT[] =
    "INSERT INTO tenant_pacing AS tp (tenant, circuit_open_until_ms, updated_at_ms)"
    " SELECT l.tenant, $3::bigint, outbox_now_ms()"
    " FROM unnest($1::text[], $2::bigint[]) AS f(tenant, epoch)"
    " JOIN tenant_leases l ON l.tenant = f.tenant AND l.epoch = f.epoch AND l.node = $4::text"
    " AND l.expires_at_ms > outbox_now_ms() ORDER BY l.tenant"
    " ON CONFLICT (tenant) DO UPDATE SET circuit_open_until_ms = excluded.circuit_open_until_ms,"
    " updated_at_ms = excluded.updated_at_ms";

enum obx_err
obx_store_pg_record_circuit(struct obx_store *st, const char *const *tenants, const int64_t *epochs,
                            size_t n, int64_t open_until_ms)
{
    struct obx_buf names, ep;
    char until[24];
    const char *vals[4];
    int64_t changed = 0;
    enum obx_err err = OBX_OK;

    if (!st->pg)
        return OBX_EINVAL;
    obx_buf_init(&names, (size_t)1 << 20);
    obx_buf_init(&ep, (size_t)1 << 20);
    for (size_t i = 0; i < n && err == OBX_OK; i++) {
        err = obx_pg_array_text(&names, tenants[i]);
        if (err == OBX_OK)
            err = obx_pg_array_int(&ep, epochs[i], 0);
    }
    if (err == OBX_OK)
        err = obx_pg_array_end(&names);
    if (err == OBX_OK)
        err = obx_pg_array_end(&ep);
    snprintf(until, sizeof until, "%lld", (long long)open_until_ms);
    vals[0] = obx_buf_str(&names);
    vals[1] = obx_buf_str(&ep);
    vals[2] = until;
    vals[3] = st->node;
    if (err == OBX_OK)
        err = obx_pg_tx_change(st->pg, SQL_CIRCUIT, 4, vals, &changed);
    obx_buf_release(&names);
    obx_buf_release(&ep);
    return err;
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
    int64_t held = 0;

    *n = 0;
    if (!st->pg)
        return OBX_EINVAL;
    return claim_wants(st->pg, st->node, wants, nwants, lease_ms, out, n, &held);
}

enum obx_err
obx_store_pg_finish_fenced(struct obx_store *st, const struct obx_attempt *a, size_t n,
                           enum obx_err *results)
{
    int64_t held = 0;

    if (!st->pg)
        return OBX_EINVAL;
    return finish_attempts(st->pg, st->node, NULL, a, n, results, &held);
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
    PGresult *r = PQexec(obx_pg_conn(pg), SQL_STATE_COUNTS);

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
    return obx_store_pg_list_nodes(pg, on_node, ctx);
}

enum obx_err
obx_store_pg_list_nodes(struct obx_pg *pg, obx_store_pg_node_fn on_node, void *ctx)
{
    PGresult *r = PQexec(obx_pg_conn(pg), SQL_NODES);
    enum obx_err err = OBX_OK;

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

int
obx_store_pg_held_next(const char **p, char *name, size_t n, int64_t *epoch)
{
    const char *s = *p, *colon = NULL;
    size_t len;

    if (!*s)
        return 0;
    len = strcspn(s, ",");
    for (size_t i = 0; i < len; i++) /* the last ':'; a tenant's name has none (0005) */
        if (s[i] == ':')
            colon = s + i;
    snprintf(name, n, "%.*s", (int)(colon ? (size_t)(colon - s) : len), s);
    *epoch = colon ? strtoll(colon + 1, NULL, 10) : 0;
    *p = s + len + (s[len] == ',');
    return 1;
}

enum obx_err
obx_store_pg_list_nodes_of(struct obx_store *st, obx_store_pg_node_fn on_node, void *ctx)
{
    return st->pg ? obx_store_pg_list_nodes(st->pg, on_node, ctx) : OBX_OK;
}
