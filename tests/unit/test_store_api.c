/*
 * test_store_api: the store interface's contract, written only against the interface
 * (lib/outbox.h, lib/store.h, lib/query.h, lib/audit.h): no SQL, no sqlite3_* call, no look
 * inside struct obx_store. A second backend (PostgreSQL, issue 13) runs this file unchanged
 * by giving another backend_open().
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "check.h"
#include "mem.h"
#include "query.h"
#include "store.h"

static char path[256];

/* The backend under test: a fresh, empty store. */
static struct obx_store *
backend_open(const char *tag)
{
    struct obx_store *st = NULL;
    const char *sfx[] = {"", "-wal", "-shm"};
    char p[300];

    snprintf(path, sizeof path, "/tmp/obx_test_store_api_%s_%d.db", tag, (int)getpid());
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
    return obx_store_open(path, NULL, &st) == OBX_OK ? st : NULL;
}

static void
backend_close(struct obx_store *st)
{
    const char *sfx[] = {"", "-wal", "-shm"};
    char p[300];

    obx_store_free(st);
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s%s", path, sfx[i]);
        unlink(p);
    }
}

static struct obx_msg
msg(const char *conv, const char *ext)
{
    struct obx_msg m = {.channel_id = "ch", .external_message_id = ext, .business_id = "b",
                        .external_conversation_id = conv, .content = "hello",
                        .sender_type = "User"};
    return m;
}

/* What obx_query_get reports about one message. */
struct seen {
    char state[16];
    int transitions, attempts;
    char last_to[16];
};

static int
on_row(void *ctx, const struct obx_row *r)
{
    struct seen *s = ctx;
    snprintf(s->state, sizeof s->state, "%s", r->state);
    return 0;
}

static int
on_tr(void *ctx, const struct obx_transition_row *t)
{
    struct seen *s = ctx;
    s->transitions++;
    snprintf(s->last_to, sizeof s->last_to, "%s", t->to_state);
    return 0;
}

static int
on_at(void *ctx, const struct obx_attempt_row *a)
{
    struct seen *s = ctx;
    (void)a;
    s->attempts++;
    return 0;
}

static enum obx_err
get(struct obx_store *st, const char *ext, struct seen *s)
{
    memset(s, 0, sizeof *s);
    return obx_query_get(st, "ch", ext, on_row, on_tr, on_at, s);
}

static struct obx_attempt
accepted(const struct obx_claimed *c)
{
    struct obx_attempt a = {.message_id = c->id, .lease_token = c->lease_token,
                            .started_at_ms = 1, .duration_ms = 2, .http_status = 200,
                            .outcome = "accepted", .next = OBX_NEXT_ACCEPTED, .counted = 1,
                            .reason = "http 200"};
    return a;
}

/* Enqueue: new, identical duplicate, conflicting duplicate, invalid. */
static int
test_enqueue(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("enqueue");
    struct obx_msg m = msg("c", "e1");
    enum obx_enqueue_result r;
    int64_t id = 0, id2 = 0;

    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m, &r, &id));
    CHECK_INT(r, OBX_ENQ_ACCEPTED);
    CHECK(id > 0);
    CHECK_OK(obx_enqueue(st, &m, &r, &id2));
    CHECK_INT(r, OBX_ENQ_DUPLICATE);
    CHECK_INT(id2, id);
    m.content = "other";
    CHECK_INT(obx_enqueue(st, &m, &r, NULL), OBX_ECONFLICT);
    m = msg("c", "e2");
    m.sender_type = "Robot";
    CHECK_INT(obx_enqueue(st, &m, &r, NULL), OBX_EINVAL);
end:
    backend_close(st);
    TEST_END;
}

/*
 * Claim, record the outcome, confirm: one conversation is delivered in order (the second
 * message is claimable only once the first left the queue), and every transition and
 * attempt is recorded.
 */
static int
test_claim_finish_confirm(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("deliver");
    struct obx_msg m1 = msg("c", "d1"), m2 = msg("c", "d2");
    struct obx_claimed c[4];
    struct obx_attempt a;
    struct seen s;
    enum obx_enqueue_result r;
    enum obx_err res = OBX_OK;
    int n = 0;

    memset(c, 0, sizeof c);
    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m1, &r, NULL));
    CHECK_OK(obx_enqueue(st, &m2, &r, NULL));
    CHECK_OK(obx_store_claim(st, 4, 60000, c, &n));
    CHECK_INT(n, 1); /* d2 waits behind d1 */
    CHECK_STR(c[0].msg.external_message_id, "d1");
    a = accepted(&c[0]);
    CHECK_OK(obx_store_finish(st, &a, 1, &res));
    CHECK_OK(res);
    obx_claimed_release(&c[0]);
    CHECK_OK(obx_store_claim(st, 4, 60000, c, &n));
    CHECK_INT(n, 1);
    CHECK_STR(c[0].msg.external_message_id, "d2");
    obx_claimed_release(&c[0]);
    CHECK_OK(obx_store_confirm(st, "ch", "d1", "p-1", "delivered", "webhook"));
    CHECK_OK(get(st, "d1", &s));
    CHECK_STR(s.state, "confirmed");
    CHECK_INT(s.transitions, 3); /* queued>sending>accepted>confirmed */
    CHECK_STR(s.last_to, "confirmed");
    CHECK_INT(s.attempts, 1);
    CHECK_INT(obx_store_confirm(st, "ch", "nope", "p-2", "delivered", "webhook"), OBX_ENOTFOUND);
end:
    backend_close(st);
    TEST_END;
}

/* A lease token fences: an outcome under a lost lease changes no state. */
static int
test_lease_fences(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("lease");
    struct obx_msg m = msg("c", "l1");
    struct obx_claimed c[1];
    struct obx_attempt a;
    struct seen s;
    enum obx_enqueue_result r;
    enum obx_err res = OBX_OK;
    int n = 0;

    memset(c, 0, sizeof c);
    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m, &r, NULL));
    CHECK_OK(obx_store_claim(st, 1, 60000, c, &n));
    CHECK_INT(n, 1);
    a = accepted(&c[0]);
    a.lease_token = c[0].lease_token + 1;
    CHECK_OK(obx_store_finish(st, &a, 1, &res));
    CHECK_INT(res, OBX_ECONFLICT);
    CHECK_OK(get(st, "l1", &s));
    CHECK_STR(s.state, "sending");
end:
    obx_claimed_release(&c[0]);
    backend_close(st);
    TEST_END;
}

/* Operator actions: cancel only a queued message, retry only a failed or accepted one. */
static int
test_cancel_retry(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("ops");
    struct obx_msg m1 = msg("c1", "o1"), m2 = msg("c2", "o2");
    struct seen s;
    enum obx_enqueue_result r;

    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m1, &r, NULL));
    CHECK_OK(obx_enqueue(st, &m2, &r, NULL));
    CHECK_OK(obx_store_cancel(st, "ch", "o1", NULL));
    CHECK_INT(obx_store_cancel(st, "ch", "o1", NULL), OBX_ECONFLICT);
    CHECK_INT(obx_store_cancel(st, "ch", "zz", NULL), OBX_ENOTFOUND);
    CHECK_INT(obx_store_retry(st, "ch", "o2", NULL), OBX_ECONFLICT); /* still queued */
    CHECK_OK(get(st, "o1", &s));
    CHECK_STR(s.state, "cancelled");
    CHECK_INT(s.transitions, 1);
end:
    backend_close(st);
    TEST_END;
}

/* The audit trail over the same activity seals and verifies, and a second seal adds nothing. */
static int
test_audit_chain(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("audit");
    struct obx_msg m = msg("c", "a1");
    struct obx_claimed c[1];
    struct obx_attempt a;
    struct obx_audit_report rep;
    enum obx_enqueue_result r;
    enum obx_err res = OBX_OK;
    int64_t sealed = 0;
    int n = 0;

    memset(c, 0, sizeof c);
    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m, &r, NULL));
    CHECK_OK(obx_store_claim(st, 1, 60000, c, &n));
    CHECK_INT(n, 1);
    a = accepted(&c[0]);
    CHECK_OK(obx_store_finish(st, &a, 1, &res));
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_INT(sealed, 3); /* two transitions, one attempt */
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_INT(sealed, 0);
    CHECK_OK(obx_audit_verify(st, &rep));
    CHECK_INT(rep.first_bad_id, 0);
    CHECK_INT(rep.checked, 3);
    CHECK_INT(rep.unsealed, 0);
end:
    obx_claimed_release(&c[0]);
    backend_close(st);
    TEST_END;
}

/* Listing and statistics see what was enqueued. */
static int
test_list_stats(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("list");
    struct obx_msg m1 = msg("c1", "s1"), m2 = msg("c2", "s2");
    struct obx_list_query q = {.state = "queued", .limit = 10};
    struct obx_channel_stats *cs = NULL;
    struct seen s;
    enum obx_enqueue_result r;
    int64_t next = -1;
    size_t ns = 0;

    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m1, &r, NULL));
    CHECK_OK(obx_enqueue(st, &m2, &r, NULL));
    memset(&s, 0, sizeof s);
    CHECK_OK(obx_query_list(st, &q, on_row, &s, &next));
    CHECK_STR(s.state, "queued");
    CHECK_INT(next, 0);
    CHECK_OK(obx_query_stats(st, &cs, &ns));
    CHECK_INT(ns, 1);
end:
    obx_free(cs);
    backend_close(st);
    TEST_END;
}

static const struct test_case tests[] = {
    {"enqueue", test_enqueue},
    {"claim_finish_confirm", test_claim_finish_confirm},
    {"lease_fences", test_lease_fences},
    {"cancel_retry", test_cancel_retry},
    {"audit_chain", test_audit_chain},
    {"list_stats", test_list_stats},
    {NULL, NULL},
};

TEST_MAIN(tests)
