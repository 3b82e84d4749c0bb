/*
 * test_store_pg: the delivery core of the store on PostgreSQL (lib/store_pg.c) against a
 * real server: enqueue's results (new, duplicate, conflict, invalid), claim (heads only,
 * priority, tenants, leases), finish (transitions, attempts, a lost lease, the next head),
 * retry and release. Needs OBX_TEST_PG_URI: tests/integration/test_store_pg.sh starts a
 * throwaway cluster and runs this with it. Each test works in a schema of its own.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include <event2/event.h>

#include "migrate_pg.h"
#include "store_pg_listen.h"
#include "store_pg_nodes.h"
#include "store.h"
#include "store_pg.h"
#include "store_tenant.h"

static struct obx_pg *
open_schema(const char *schema)
{
    struct obx_pg *pg = NULL;
    char msg[256], sql[128];
    const char *uri = getenv("OBX_TEST_PG_URI");

    if (!uri) {
        fprintf(stderr, "  OBX_TEST_PG_URI is not set (run tests/integration/test_store_pg.sh)\n");
        return NULL;
    }
    if (obx_pg_open(uri, schema, &pg, msg, sizeof msg) != OBX_OK) {
        fprintf(stderr, "  cannot open %s: %s\n", schema, msg);
        return NULL;
    }
    /* A fresh schema each run. */
    snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE; CREATE SCHEMA %s", schema, schema);
    if (obx_pg_exec(pg, sql) != OBX_OK || obx_migrate_pg_apply(pg, NULL, NULL) != OBX_OK) {
        fprintf(stderr, "  cannot migrate %s: %s\n", schema, obx_pg_errmsg(pg));
        obx_pg_free(pg);
        return NULL;
    }
    return pg;
}

static struct obx_msg
msg(const char *id, const char *conversation)
{
    struct obx_msg m = {"ch", id, "biz", conversation, "hello", "Consumer", NULL, NULL, 0};
    return m;
}

/* The first column of the first row of sql, as text (static buffer). */
static const char *
value(struct obx_pg *pg, const char *sql)
{
    static char out[256];
    long long v = 0;
    int found = 0;

    if (obx_pg_query_int(pg, sql, &v, &found) != OBX_OK || !found)
        return "?";
    snprintf(out, sizeof out, "%lld", v);
    return out;
}

static void
release_all(struct obx_claimed *c, int n)
{
    for (int i = 0; i < n; i++)
        obx_store_claimed_release(&c[i]);
}

static int
test_enqueue_results(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_enqueue");
    struct obx_enq_item it[4] = {{.msg = msg("m1", "c1")}, {.msg = msg("m2", "c1")}};

    CHECK(pg);
    CHECK_OK(obx_store_pg_enqueue_batch(pg, it, 2, NULL));
    CHECK_INT(it[0].err, OBX_OK);
    CHECK_INT(it[0].result, OBX_ENQ_ACCEPTED);
    CHECK(it[0].id > 0 && it[1].id > it[0].id);
    CHECK_STR(it[0].state, "queued");
    /* Again: a duplicate, the same id; changed content: a conflict; bad: invalid. */
    it[0].msg = msg("m1", "c1");
    it[1].msg = msg("m2", "c1");
    it[1].msg.content = "changed";
    it[2].msg = msg("", "c1");
    it[3].msg = msg("m3", "c2");
    CHECK_OK(obx_store_pg_enqueue_batch(pg, it, 4, NULL));
    CHECK_INT(it[0].err, OBX_OK);
    CHECK_INT(it[0].result, OBX_ENQ_DUPLICATE);
    CHECK_INT(it[1].err, OBX_ECONFLICT);
    CHECK_INT(it[2].err, OBX_EINVAL);
    CHECK_STR(it[2].fe.field, "external_message_id");
    CHECK_INT(it[3].err, OBX_OK);
    CHECK_INT(it[3].result, OBX_ENQ_ACCEPTED);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox"), "3");
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE content = 'changed'"), "0");
end:
    obx_pg_free(pg);
    TEST_END;
}

/* One batch repeating a key, and contents that need quoting in an array parameter. */
static int
test_enqueue_in_batch(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_batch");
    const char *odd = "say \"hi\", {x}\\ NULL\nline 2, \u00e9";
    struct obx_enq_item it[4] = {{.msg = msg("k1", "c1")},
                                 {.msg = msg("k1", "c1")},
                                 {.msg = msg("k1", "c1")},
                                 {.msg = msg("q1", "c2")}};
    struct obx_claimed c[4];
    int n = 0;

    CHECK(pg);
    it[2].msg.content = "other";
    it[3].msg.content = odd;
    it[3].msg.consumer_name = "NULL";
    CHECK_OK(obx_store_pg_enqueue_batch(pg, it, 4, NULL));
    CHECK_INT(it[0].err, OBX_OK);
    CHECK_INT(it[0].result, OBX_ENQ_ACCEPTED);
    CHECK_INT(it[1].err, OBX_OK);
    CHECK_INT(it[1].result, OBX_ENQ_DUPLICATE);
    CHECK_INT(it[1].id, it[0].id);
    CHECK_INT(it[2].err, OBX_ECONFLICT);
    CHECK_INT(it[3].result, OBX_ENQ_ACCEPTED);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox"), "2");
    CHECK_OK(obx_pg_exec(pg,
                         "UPDATE outbox SET state = 'cancelled' WHERE external_message_id = 'k1'"));
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 4, 60000, c, &n));
    CHECK_INT(n, 1);
    CHECK_STR(c[0].msg.content, odd);
    CHECK_STR(c[0].msg.consumer_name, "NULL"); /* the string, not SQL NULL */
    CHECK(c[0].msg.consumer_image == NULL);
    release_all(c, n);
end:
    obx_pg_free(pg);
    TEST_END;
}

static int
test_claim_and_finish(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_claim");
    struct obx_enq_item it[3] = {
        {.msg = msg("a1", "ca")}, {.msg = msg("a2", "ca")}, {.msg = msg("b1", "cb")}};
    struct obx_claimed c[8];
    struct obx_attempt at = {0};
    enum obx_err res[2];
    int n = 0;

    CHECK(pg);
    it[2].msg.priority = 5;
    CHECK_OK(obx_store_pg_enqueue_batch(pg, it, 3, NULL));
    /* Heads only, the higher priority first. */
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 8, 60000, c, &n));
    CHECK_INT(n, 2);
    CHECK_STR(c[0].msg.external_message_id, "b1");
    CHECK_STR(c[1].msg.external_message_id, "a1");
    CHECK_STR(c[1].msg.content, "hello");
    CHECK(c[1].msg.consumer_name == NULL);
    CHECK_INT(c[1].readonly, -1);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'sending'"), "2");
    /* Nothing more is due: a2 waits behind a1. */
    release_all(c, n);
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 8, 60000, c, &n));
    CHECK_INT(n, 0);
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 8, 60000, c,
                                &n)); /* claims nothing, keeps c empty */

    /* a1 accepted: an attempt row, the transitions, and a2 becomes the head. */
    at.message_id = it[0].id;
    at.lease_token = 0; /* set below from the row */
    CHECK_OK(obx_pg_exec(pg, "SELECT 1"));
    {
        long long token = 0;
        int found = 0;
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT lease_token FROM outbox WHERE id = %lld",
                 (long long)it[0].id);
        CHECK_OK(obx_pg_query_int(pg, sql, &token, &found));
        at.lease_token = token;
    }
    at.started_at_ms = 1000;
    at.duration_ms = 12;
    at.http_status = 200;
    at.outcome = "accepted";
    at.next = OBX_NEXT_ACCEPTED;
    at.counted = 1;
    at.reason = "http 200";
    at.confirm_due_at_ms = 99999;
    {
        struct obx_attempt two[2] = {at, at};
        two[1].lease_token = at.lease_token + 1; /* a lease that is not held */
        CHECK_OK(obx_store_pg_finish(pg, NULL, two, 2, res));
    }
    CHECK_INT(res[0], OBX_OK);
    CHECK_INT(res[1], OBX_ECONFLICT);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'accepted'"
                        " AND attempts = 1 AND last_http_status = 200 AND lease_token IS NULL"
                        " AND confirm_due_at_ms = 99999"),
              "1");
    CHECK_STR(value(pg, "SELECT count(*) FROM attempts"), "2"); /* both recorded */
    CHECK_STR(value(pg, "SELECT count(*) FROM transitions WHERE to_state IN ('sending',"
                        " 'accepted')"),
              "3");
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 8, 60000, c, &n));
    CHECK_INT(n, 1);
    CHECK_STR(c[0].msg.external_message_id, "a2");
    release_all(c, n);
end:
    obx_pg_free(pg);
    TEST_END;
}

static int
test_retry_release_tenants(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_retry");
    struct obx_enq_item it[2] = {{.msg = msg("r1", "cr")}, {.msg = msg("t1", "ct")}};
    struct obx_claimed c[4];
    struct obx_attempt at = {0};
    enum obx_err res;
    int n = 0;

    CHECK(pg);
    CHECK_OK(obx_store_pg_enqueue_batch(pg, it, 2, NULL));
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET tenant = 'acme' WHERE external_message_id = 't1'"));
    /* The default lane sees only r1; acme's sees only t1. */
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 4, 60000, c, &n));
    CHECK_INT(n, 1);
    CHECK_STR(c[0].msg.external_message_id, "r1");
    at.message_id = c[0].id;
    at.lease_token = c[0].lease_token;
    release_all(c, n);
    CHECK_OK(obx_store_pg_claim(pg, NULL, "acme", 4, 60000, c, &n));
    CHECK_INT(n, 1);
    CHECK_STR(c[0].msg.external_message_id, "t1");
    CHECK_STR(c[0].tenant, "acme");
    release_all(c, n);
    /* A retry an hour away: queued, not due. */
    at.started_at_ms = 1000;
    at.http_status = 503;
    at.outcome = "retry";
    at.error = "http 503";
    at.next = OBX_NEXT_RETRY;
    at.counted = 1;
    at.reason = "http 503";
    at.next_attempt_at_ms = (int64_t)4102444800000; /* 2100 */
    CHECK_OK(obx_store_pg_finish(pg, NULL, &at, 1, &res));
    CHECK_INT(res, OBX_OK);
    CHECK_STR(value(pg, "SELECT attempts FROM outbox WHERE external_message_id = 'r1'"
                        " AND state = 'queued' AND last_error = 'http 503'"),
              "1");
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 4, 60000, c, &n));
    CHECK_INT(n, 0);
    /* Due now, claimed, then released (shutdown): queued again, no attempt counted. */
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET next_attempt_at_ms = 0"));
    CHECK_OK(obx_store_pg_claim(pg, NULL, NULL, 4, 60000, c, &n));
    CHECK_INT(n, 1);
    at.lease_token = c[0].lease_token;
    at.next = OBX_NEXT_RELEASE;
    at.counted = 0;
    at.reason = "released";
    release_all(c, n);
    CHECK_OK(obx_store_pg_finish(pg, NULL, &at, 1, &res));
    CHECK_INT(res, OBX_OK);
    CHECK_STR(value(pg, "SELECT attempts FROM outbox WHERE external_message_id = 'r1'"
                        " AND state = 'queued' AND head"),
              "1");
    CHECK_STR(value(pg, "SELECT count(*) FROM attempts"), "1"); /* none for the release */
end:
    obx_pg_free(pg);
    TEST_END;
}

/*
 * Fencing: node A claims for tenant acme under its lease; once the lease is B's (a higher
 * epoch), A's finish and A's next claim write nothing and say the lease is lost.
 */
static int
test_fencing(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_fence");
    struct obx_enq_item it[2] = {{.msg = msg("f1", "cf")}, {.msg = msg("f2", "cg")}};
    struct obx_pg_fence a = {"acme", "A", 0};
    struct obx_claimed c[4];
    struct obx_attempt at = {0};
    enum obx_err res;
    int n = 0;

    CHECK(pg);
    CHECK_OK(obx_store_pg_enqueue_batch(pg, it, 2, NULL));
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET tenant = 'acme'"));
    CHECK_OK(obx_pg_exec(pg, "SELECT count(*) FROM node_beat('A', 60000)"));
    CHECK_OK(obx_pg_exec(pg, "SELECT count(*) FROM lease_rebalance('A', ARRAY['acme'], 60000)"));
    a.epoch = atoll(value(pg, "SELECT epoch FROM tenant_leases WHERE tenant = 'acme'"));
    CHECK_INT(a.epoch, 1);
    CHECK_OK(obx_store_pg_claim(pg, &a, "acme", 1, 60000, c, &n));
    CHECK_INT(n, 1);
    at.message_id = c[0].id;
    at.lease_token = c[0].lease_token;
    release_all(c, n);
    /* B takes the tenant over (as lease_rebalance does once A's lease ran out). */
    CHECK_OK(obx_pg_exec(pg, "UPDATE tenant_leases SET node = 'B', epoch = epoch + 1"));
    at.started_at_ms = 1000;
    at.http_status = 200;
    at.outcome = "accepted";
    at.next = OBX_NEXT_ACCEPTED;
    at.counted = 1;
    at.reason = "http 200";
    CHECK_INT(obx_store_pg_finish(pg, &a, &at, 1, &res), OBX_ECONFLICT);
    CHECK(strstr(obx_pg_errmsg(pg), "lease lost") != NULL);
    CHECK_STR(value(pg, "SELECT count(*) FROM attempts"), "0");
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'sending'"), "1");
    CHECK_INT(obx_store_pg_claim(pg, &a, "acme", 4, 60000, c, &n), OBX_ECONFLICT);
    CHECK_INT(n, 0);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'sending'"), "1");
    /* The same finish under B's lease goes through. */
    a.node = "B";
    a.epoch++;
    CHECK_OK(obx_store_pg_finish(pg, &a, &at, 1, &res));
    CHECK_INT(res, OBX_OK);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'accepted'"), "1");
end:
    obx_pg_free(pg);
    TEST_END;
}

/* The listener: nothing for a rolled-back INSERT, a call within the loop's next turns for a
 * committed one, and nothing for an INSERT into another schema's outbox. */
struct heard {
    int calls;
    struct event_base *base;
};

static void
on_heard(void *ctx)
{
    struct heard *h = ctx;

    h->calls++;
    event_base_loopbreak(h->base);
}

/* Runs the loop until the callback or ms have passed. */
static void
listen_for(struct event_base *base, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
}

static int
test_listen(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_listen"), *other = open_schema("t_listen_other");
    struct event_base *base = event_base_new();
    struct heard h = {0, base};
    struct obx_store_pg_listen *l = NULL;
    char msg[256];
    const char *ins = "INSERT INTO outbox (channel_id, external_message_id, business_id,"
                      " external_conversation_id, content, sender_type)"
                      " VALUES ('ch', 'n1', 'b', 'c', 'x', 'User')";

    CHECK(pg && other && base);
    CHECK_OK(obx_store_pg_listen_new(base, getenv("OBX_TEST_PG_URI"), "t_listen", on_heard, NULL,
                                     &h, &l, msg, sizeof msg));
    CHECK_OK(obx_pg_exec(pg, "BEGIN"));
    CHECK_OK(obx_pg_exec(pg, ins));
    CHECK_OK(obx_pg_exec(pg, "ROLLBACK"));
    CHECK_OK(obx_pg_exec(other, ins)); /* another schema, another channel */
    listen_for(base, 300);
    CHECK_INT(h.calls, 0);
    CHECK_OK(obx_pg_exec(pg, ins));
    listen_for(base, 5000);
    CHECK_INT(h.calls, 1);
    CHECK_INT(obx_store_pg_listen_count(l), 1);
end:
    obx_store_pg_listen_free(l);
    if (base)
        event_base_free(base);
    obx_pg_free(pg);
    obx_pg_free(other);
    TEST_END;
}

static void
on_nodes(void *ctx)
{
    (void)ctx;
}

/* Polls until node holds want tenants or seconds pass; returns what it holds. */
static size_t
wait_held(struct obx_store_pg_nodes *nd, size_t want, int seconds, struct obx_store_pg_held *out)
{
    size_t n = 0;

    for (int i = 0; i < seconds * 20; i++) {
        n = obx_store_pg_nodes_held(nd, out, 8);
        if (n == want)
            break;
        usleep(50000);
    }
    return n;
}

/*
 * Two node threads share four tenants; one stops without leaving (as a killed node) and the
 * other takes its tenants, under higher epochs, once its lease ran out; a clean leave frees
 * everything at once.
 */
static int
test_nodes(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_nodes");
    struct event_base *base = event_base_new();
    struct obx_store_pg_nodes *a = NULL, *b = NULL;
    struct obx_store_pg_nodes_opts o = {getenv("OBX_TEST_PG_URI"), "t_nodes", "A", 1500, 250};
    const char *tenants[] = {"t1", "t2", "t3", "t4"};
    struct obx_store_pg_held ha[8], hb[8];
    char msg[256];
    int64_t before;

    CHECK(pg && base);
    CHECK_OK(obx_store_pg_nodes_new(base, &o, on_nodes, NULL, &a, msg, sizeof msg));
    o.node = "B";
    CHECK_OK(obx_store_pg_nodes_new(base, &o, on_nodes, NULL, &b, msg, sizeof msg));
    CHECK_OK(obx_store_pg_nodes_set_tenants(a, tenants, 4));
    CHECK_OK(obx_store_pg_nodes_set_tenants(b, tenants, 4));
    CHECK_INT(wait_held(a, 2, 10, ha), 2);
    CHECK_INT(wait_held(b, 2, 10, hb), 2);
    CHECK(strcmp(ha[0].tenant, hb[0].tenant) != 0 && strcmp(ha[1].tenant, hb[0].tenant) != 0);
    CHECK(ha[0].until_mono_ms > 0);
    before = ha[0].epoch;
    /* A stops beating, as a killed node: B takes its two once its lease ran out. */
    obx_store_pg_nodes_free(a, 0);
    a = NULL;
    CHECK_INT(wait_held(b, 4, 10, hb), 4);
    for (int i = 0; i < 4; i++)
        if (strcmp(hb[i].tenant, ha[0].tenant) == 0)
            CHECK_INT(hb[i].epoch, before + 1);
    /* B leaves cleanly: nothing is held. */
    obx_store_pg_nodes_free(b, 1);
    b = NULL;
    CHECK_STR(value(pg, "SELECT count(*) FROM tenant_leases WHERE node IS NOT NULL"), "0");
    CHECK_STR(value(pg, "SELECT count(*) FROM nodes"), "1"); /* A, dead, kept a day */
end:
    obx_store_pg_nodes_free(a, 0);
    obx_store_pg_nodes_free(b, 0);
    if (base)
        event_base_free(base);
    obx_pg_free(pg);
    TEST_END;
}

/*
 * struct obx_store on PostgreSQL, as serve's store thread uses it (store.c dispatches to
 * store_pg): an unmigrated schema is refused; a claim over two tenants fences each with its
 * epoch; once one lease is lost, that tenant's outcomes are refused (OBX_ECONFLICT) and the
 * other's written, in the same call; writing the outcomes again (a lost reply to a COMMIT)
 * records no attempt twice; the takeover queues again what is left in `sending`.
 */
static int
test_serve_store(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_serve");
    struct obx_store *st = NULL, *bad = NULL;
    struct obx_enq_item it[4] = {{.msg = msg("s1", "ca")},
                                 {.msg = msg("s2", "cb")},
                                 {.msg = msg("s3", "cc")},
                                 {.msg = msg("s4", "cd")}};
    struct obx_claim_want w[2] = {{"acme", NULL, 2, 0, 0}, {"beta", NULL, 2, 0, 0}};
    struct obx_claimed c[4];
    struct obx_attempt at[4];
    enum obx_err res[4];
    char errmsg[512];
    int64_t requeued = -1;
    struct obx_pg_pacing pacing;
    int n = 0;

    CHECK(pg);
    CHECK_INT(obx_store_pg_open_store(getenv("OBX_TEST_PG_URI"), "t_never", "A", 1, &bad, errmsg,
                                      sizeof errmsg),
              OBX_ESCHEMA);
    CHECK(strstr(errmsg, "outbox migrate") != NULL);
    CHECK_OK(obx_store_pg_open_store(getenv("OBX_TEST_PG_URI"), "t_serve", "A", 1, &st, errmsg,
                                     sizeof errmsg));
    CHECK(obx_store_pg_in_use(st));
    CHECK_OK(obx_store_enqueue_batch(st, it, 4, NULL));
    CHECK_INT(it[3].result, OBX_ENQ_ACCEPTED);
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET tenant = CASE WHEN external_message_id IN"
                             " ('s1', 's2') THEN 'acme' ELSE 'beta' END"));
    CHECK_OK(obx_pg_exec(pg, "SELECT count(*) FROM node_beat('A', 60000)"));
    CHECK_OK(obx_pg_exec(pg,
                         "SELECT count(*) FROM lease_rebalance('A', ARRAY['acme','beta'], 60000)"));
    w[0].epoch = atoll(value(pg, "SELECT epoch FROM tenant_leases WHERE tenant = 'acme'"));
    w[1].epoch = atoll(value(pg, "SELECT epoch FROM tenant_leases WHERE tenant = 'beta'"));
    CHECK_INT(w[0].epoch, 1);
    CHECK_OK(obx_store_claim_tenants(st, w, 2, 60000, c, &n));
    CHECK_INT(n, 4);
    CHECK_INT(w[0].got, 2);
    CHECK_INT(w[1].got, 2);
    CHECK_INT(c[0].epoch, 1);
    for (int i = 0; i < 4; i++) {
        memset(&at[i], 0, sizeof at[i]);
        at[i].message_id = c[i].id;
        at[i].lease_token = c[i].lease_token;
        at[i].started_at_ms = 1000;
        at[i].http_status = 200;
        at[i].outcome = "accepted";
        at[i].next = OBX_NEXT_ACCEPTED;
        at[i].counted = 1;
        at[i].reason = "http 200";
        at[i].fence_tenant = i < 2 ? "acme" : "beta";
        at[i].epoch = c[i].epoch;
    }
    release_all(c, 4);
    /* acme goes to node B. */
    CHECK_OK(obx_pg_exec(pg, "UPDATE tenant_leases SET node = 'B', epoch = epoch + 1"
                             " WHERE tenant = 'acme'"));
    CHECK_OK(obx_store_finish(st, at, 4, res));
    CHECK_INT(res[0], OBX_ECONFLICT);
    CHECK_INT(res[1], OBX_ECONFLICT);
    CHECK_INT(res[2], OBX_OK);
    CHECK_INT(res[3], OBX_OK);
    CHECK_STR(value(pg, "SELECT count(*) FROM attempts"), "2");
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'accepted'"), "2");
    /* Written again, as after a reply lost on the way back: nothing twice. */
    CHECK_OK(obx_store_finish(st, at + 2, 2, res));
    CHECK_INT(res[0], OBX_ECONFLICT);
    CHECK_STR(value(pg, "SELECT count(*) FROM attempts"), "2");
    /* A claim for acme under the lost epoch gets nothing, beta's goes on. */
    CHECK_OK(obx_store_claim_tenants(st, w, 1, 60000, c, &n));
    CHECK_INT(n, 0);
    /* The takeover, by B's store, of what A left in `sending`. */
    obx_store_free(st);
    st = NULL;
    CHECK_OK(obx_store_pg_open_store(getenv("OBX_TEST_PG_URI"), "t_serve", "B", 1, &st, errmsg,
                                     sizeof errmsg));
    CHECK_INT(obx_store_pg_takeover(st, "acme", 1, &requeued, &pacing), OBX_ECONFLICT);
    CHECK_OK(obx_store_pg_takeover(st, "acme", 2, &requeued, &pacing));
    CHECK_INT(requeued, 2);
    CHECK_INT(pacing.paused_until_ms, 0); /* A's outcomes for acme were refused: none kept */
    CHECK_INT(pacing.last_sent_at_ms, 0);
    /* beta moves to B too; B's takeover starts from the pacing A's attempts left. */
    CHECK_OK(obx_pg_exec(pg, "UPDATE tenant_leases SET node = 'B', epoch = epoch + 1"
                             " WHERE tenant = 'beta'"));
    CHECK_OK(obx_store_pg_takeover(st, "beta", 2, &requeued, &pacing));
    CHECK_INT(requeued, 0);
    CHECK_INT(pacing.last_sent_at_ms, 1000);
    CHECK_INT(pacing.paused_until_ms, 0);
    CHECK_INT(pacing.auth_paused, 0);
    /* B gets a 429 for beta (retry at 5000): the pause is kept for whoever takes over next. */
    it[0].msg = msg("s5", "ce");
    CHECK_OK(obx_store_enqueue_batch(st, it, 1, NULL));
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET tenant = 'beta' WHERE external_message_id = 's5'"));
    w[1].epoch = 2;
    CHECK_OK(obx_store_claim_tenants(st, w + 1, 1, 60000, c, &n));
    CHECK_INT(n, 1);
    at[0].message_id = c[0].id;
    at[0].lease_token = c[0].lease_token;
    at[0].started_at_ms = 2000;
    at[0].http_status = 429;
    at[0].outcome = "rate_limited";
    at[0].next = OBX_NEXT_RETRY;
    at[0].next_attempt_at_ms = 5000;
    at[0].fence_tenant = "beta";
    at[0].epoch = 2;
    obx_store_claimed_release(&c[0]);
    CHECK_OK(obx_store_finish(st, at, 1, res));
    CHECK_INT(res[0], OBX_OK);
    CHECK_OK(obx_store_pg_takeover(st, "beta", 2, &requeued, &pacing));
    CHECK_INT(pacing.paused_until_ms, 5000);
    CHECK_INT(pacing.last_sent_at_ms, 2000);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE state = 'queued' AND tenant = 'acme'"),
              "2");
end:
    obx_store_free(bad);
    obx_store_free(st);
    obx_pg_free(pg);
    TEST_END;
}

/*
 * serve's periodic jobs on PostgreSQL: an accepted message whose confirmation is overdue is
 * re-sent (queued again, resends + 1) until max_resends, then given up on (unconfirmed);
 * a claim whose lease ran out without an outcome returns to the queue, a live one stays.
 */
static int
test_periodic_jobs(void)
{
    TEST_BEGIN;
    struct obx_pg *pg = open_schema("t_periodic");
    struct obx_store *st = NULL;
    struct obx_enq_item it[3] = {
        {.msg = msg("p1", "ca")}, {.msg = msg("p2", "cb")}, {.msg = msg("p3", "cc")}};
    char errmsg[512];
    int64_t resent = -1, unconfirmed = -1, recovered = -1;
    struct obx_tenant_channel ro = {"ro", 1};
    struct obx_tenant_spec t = {.name = "acme", .api_key = "k", .channels = &ro, .nchannels = 1};
    int any = -1, created = 0, more = 1;
    struct obx_purge_opts po = {.before_ms = 1000};
    struct obx_batch_limit lim = {100, 0};
    int64_t cursor = 0, deleted = 0;

    CHECK(pg);
    CHECK_OK(obx_store_pg_open_store(getenv("OBX_TEST_PG_URI"), "t_periodic", "A", 1, &st, errmsg,
                                     sizeof errmsg));
    CHECK_OK(obx_store_enqueue_batch(st, it, 3, NULL));
    /* p1: accepted, confirmation overdue, never re-sent; p2: the same, re-sent twice
     * already; p3: claimed long ago (lease over). */
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET state = 'accepted', accepted_at_ms = 1,"
                             " confirm_due_at_ms = 1 WHERE external_message_id = 'p1';"
                             " UPDATE outbox SET state = 'accepted', accepted_at_ms = 1,"
                             " confirm_due_at_ms = 1, resends = 2 WHERE external_message_id = 'p2';"
                             " UPDATE outbox SET state = 'sending', lease_token = 7,"
                             " lease_expires_at_ms = 1 WHERE external_message_id = 'p3'"));
    CHECK_OK(obx_store_confirm_timeouts(st, 2, &resent, &unconfirmed));
    CHECK_INT(resent, 1);
    CHECK_INT(unconfirmed, 1);
    CHECK_STR(value(pg, "SELECT resends * 10 + head::integer FROM outbox"
                        " WHERE external_message_id = 'p1' AND state = 'queued'"),
              "11"); /* queued again, the head of its conversation */
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE external_message_id = 'p2'"
                        " AND state = 'accepted' AND unconfirmed_at_ms IS NOT NULL"
                        " AND confirm_due_at_ms IS NULL"),
              "1");
    CHECK_OK(obx_store_confirm_timeouts(st, 2, &resent, &unconfirmed));
    CHECK_INT(resent + unconfirmed, 0); /* each once */
    CHECK_OK(obx_store_recover(st, 0, &recovered));
    CHECK_INT(recovered, 1);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox WHERE external_message_id = 'p3'"
                        " AND state = 'queued' AND lease_token IS NULL AND head"),
              "1");
    /* A live lease stays. */
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET state = 'sending', lease_token = 8,"
                             " lease_expires_at_ms = outbox_now_ms() + 60000"
                             " WHERE external_message_id = 'p3'"));
    CHECK_OK(obx_store_recover(st, 0, &recovered));
    CHECK_INT(recovered, 0);
    /* A retention walk ends at the first message created after the cut: p1 and p2 are
     * old (created and cancelled at 1 ms), p3 young; one batch takes the two and stops. */
    CHECK_OK(obx_pg_exec(pg, "UPDATE outbox SET state = 'cancelled', state_at_ms = 1,"
                             " created_at_ms = 1, lease_token = NULL"
                             " WHERE external_message_id IN ('p1', 'p2');"
                             " UPDATE outbox SET state = 'cancelled', state_at_ms = 5000,"
                             " created_at_ms = 5000, lease_token = NULL"
                             " WHERE external_message_id = 'p3'"));
    CHECK_OK(obx_store_purge_batch(st, &po, OBX_ST_CANCELLED, &lim, &cursor, &deleted, &more));
    CHECK_INT(deleted, 2);
    CHECK_INT(more, 0);
    CHECK_INT(cursor,
              atoll(value(pg, "SELECT id FROM outbox WHERE external_message_id = 'p3'")) - 1);
    CHECK_STR(value(pg, "SELECT count(*) FROM outbox"), "1");
    /* Retention walks accepted messages only once a tenant has a read-only channel. */
    CHECK_OK(obx_store_tenant_any_readonly(st, &any));
    CHECK_INT(any, 0);
    CHECK_OK(obx_store_tenant_put(st, &t, OBX_TENANT_CREATE, NULL, &created, NULL, 0));
    CHECK_OK(obx_store_tenant_any_readonly(st, &any));
    CHECK_INT(any, 1);
end:
    obx_store_free(st);
    obx_pg_free(pg);
    TEST_END;
}

static const struct test_case tests[] = {
    {"enqueue_results", test_enqueue_results},
    {"enqueue_in_batch", test_enqueue_in_batch},
    {"claim_and_finish", test_claim_and_finish},
    {"retry_release_tenants", test_retry_release_tenants},
    {"fencing", test_fencing},
    {"listen", test_listen},
    {"nodes", test_nodes},
    {"serve_store", test_serve_store},
    {"periodic_jobs", test_periodic_jobs},
    {NULL, NULL},
};

TEST_MAIN(tests)
