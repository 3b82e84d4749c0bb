/*
 * test_store_api: the store interface's contract, written only against the interface
 * (lib/outbox.h, lib/store*.h, lib/query.h, lib/audit.h): no SQL, no sqlite3_* call, no look
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
#include "store_audit.h"
#include "store_dash.h"
#include "store_file.h"
#include "store_inbox.h"
#include "store_query.h"
#include "store_tx.h"

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
    struct obx_msg m = {.channel_id = "ch",
                        .external_message_id = ext,
                        .business_id = "b",
                        .external_conversation_id = conv,
                        .content = "hello",
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
    struct obx_attempt a = {.message_id = c->id,
                            .lease_token = c->lease_token,
                            .started_at_ms = 1,
                            .duration_ms = 2,
                            .http_status = 200,
                            .outcome = "accepted",
                            .next = OBX_NEXT_ACCEPTED,
                            .counted = 1,
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
    obx_store_claimed_release(&c[0]);
    CHECK_OK(obx_store_claim(st, 4, 60000, c, &n));
    CHECK_INT(n, 1);
    CHECK_STR(c[0].msg.external_message_id, "d2");
    obx_store_claimed_release(&c[0]);
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
    obx_store_claimed_release(&c[0]);
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
    obx_store_claimed_release(&c[0]);
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

/* Inbox rows by Partoo message id, as obx_query_inbox lists them (acked included). */
struct replies {
    int n;
    char state[4][16];
    int attempts[4];
};

static int
on_reply(void *ctx, const struct obx_inbox_row *r)
{
    struct replies *x = ctx;

    if (x->n < 4) {
        snprintf(x->state[x->n], sizeof x->state[0], "%s", r->state);
        x->attempts[x->n] = r->attempts;
    }
    x->n++;
    return 0;
}

static enum obx_err
replies(struct obx_store *st, struct replies *x)
{
    int64_t next = 0;

    memset(x, 0, sizeof *x);
    return obx_store_query_replies(st, 0, 10, 1, on_reply, x, &next);
}

/*
 * Webhook events: stored once per body, listed while uninterpreted, marked, then their body
 * and row purged once nothing needs them.
 */
static int
test_webhook_events(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("events");
    static const char body[] = "{\"type\":\"other\"}";
    static const char *const names[] = {"pending", "ignored", "other"};
    struct obx_stored_event ev[4];
    struct obx_batch_limit lim = {100, 0};
    int64_t id = 0, id2 = -1, counts[3], cursor = 0, bodies = 0, hashes = 0;
    size_t n = 0;
    int backlog = -1, more = -1;

    memset(ev, 0, sizeof ev);
    CHECK(st);
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "aa", body, sizeof body - 1, 1000, &id));
    CHECK(id > 0);
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "aa", body, sizeof body - 1, 1001, &id2));
    CHECK_INT(id2, 0); /* the same body again: a replay, nothing stored */
    CHECK_OK(obx_store_inbox_has_backlog(st, &backlog));
    CHECK_INT(backlog, 1);
    CHECK_OK(obx_store_inbox_pending_events(st, 4, ev, &n));
    CHECK_INT(n, 1);
    CHECK_INT(ev[0].id, id);
    CHECK_INT(ev[0].len, sizeof body - 1);
    CHECK_STR(ev[0].body, body);
    CHECK_OK(obx_store_inbox_mark_event(st, id, "other", "", "ignored"));
    CHECK_OK(obx_store_inbox_has_backlog(st, &backlog));
    CHECK_INT(backlog, 0);
    CHECK_OK(obx_store_query_event_outcomes(st, names, 3, counts));
    CHECK_INT(counts[0], 0);
    CHECK_INT(counts[1], 1);
    /* Body retention past, hash retention not yet: the body goes, the replay guard stays. */
    CHECK_OK(obx_store_inbox_purge_events_batch(st, 5000, 500, &lim, &cursor, &bodies, &hashes,
                                                &more));
    CHECK_INT(bodies, 1);
    CHECK_INT(hashes, 0);
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "aa", body, sizeof body - 1, 1002, &id2));
    CHECK_INT(id2, 0);
    cursor = 0;
    CHECK_OK(obx_store_inbox_purge_events_batch(st, 5000, 5000, &lim, &cursor, &bodies, &hashes,
                                                &more));
    CHECK_INT(hashes, 1);
    CHECK_OK(obx_query_webhook_outcomes(st, names, 3, counts));
    CHECK_INT(counts[1], 0);
end:
    obx_store_inbox_events_release(ev, n);
    backend_close(st);
    TEST_END;
}

/*
 * Replies: inserted once per Partoo message id, leased when due (and not again while the
 * lease holds), retried, delivered, acknowledged, failed, purged.
 */
static int
test_inbox_replies(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("inbox");
    struct obx_new_reply nr = {.partoo_message_id = "p1",
                               .channel_id = "ch",
                               .partoo_conversation_id = "",
                               .sender_type = "User",
                               .content_type = "TEXT",
                               .content = "hi"};
    struct obx_batch_limit lim = {100, 0};
    struct replies x;
    int64_t id = -1, id2 = -1, counts[4], cursor = 0, deleted = 0;
    int added = -1, more = -1;

    CHECK(st);
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "bb", "{}", 2, 1000, &nr.event_id));
    CHECK_OK(obx_store_inbox_add_reply(st, &nr, &added));
    CHECK_INT(added, 1);
    CHECK_OK(obx_store_inbox_add_reply(st, &nr, &added));
    CHECK_INT(added, 0); /* the same reply again */
    nr.partoo_message_id = "p2";
    CHECK_OK(obx_store_inbox_add_reply(st, &nr, &added));
    CHECK_INT(added, 1);
    CHECK_OK(obx_store_tx_end(st, OBX_OK));
    CHECK_OK(obx_store_inbox_lease_due(st, 60000, &id));
    CHECK(id > 0);
    CHECK_OK(obx_store_inbox_lease_due(st, 60000, &id2));
    CHECK(id2 > 0 && id2 != id);
    CHECK_OK(obx_store_inbox_lease_due(st, 60000, &id2));
    CHECK_INT(id2, 0); /* both leased */
    CHECK_OK(obx_store_inbox_mark_retry(st, id, 503, "unavailable", 0, 0));
    CHECK_OK(obx_store_inbox_lease_due(st, 60000, &id2));
    CHECK_INT(id2, id); /* due again */
    CHECK_OK(obx_store_inbox_mark_delivered(st, id, 200, 1000));
    CHECK_OK(obx_store_inbox_fail(st, id + 1, "bad id"));
    CHECK_OK(replies(st, &x));
    CHECK_INT(x.n, 2);
    CHECK_STR(x.state[0], "delivered");
    CHECK_INT(x.attempts[0], 2);
    CHECK_STR(x.state[1], "failed");
    CHECK_INT(x.attempts[1], 0);
    CHECK_OK(obx_store_inbox_ack(st, id));
    CHECK_INT(obx_store_inbox_ack(st, id + 100), OBX_ENOTFOUND);
    CHECK_OK(obx_store_query_reply_states(st, counts));
    CHECK_INT(counts[2], 1); /* acked */
    CHECK_INT(counts[3], 1); /* failed */
    CHECK_OK(obx_store_inbox_purge_replies_batch(st, INT64_MAX, &lim, &cursor, &deleted, &more));
    CHECK_INT(deleted, 1); /* the acked one; a failed reply stays */
    CHECK_OK(replies(st, &x));
    CHECK_INT(x.n, 1);
end:
    backend_close(st);
    TEST_END;
}

/* What the store's reads report, gathered by the callbacks below. */
struct reads {
    int states;       /* (channel, state) rows */
    int64_t queued;   /* of channel "ch" */
    int64_t accepted; /* of channel "ch" */
    int64_t sent;     /* sends counted for "ch" */
    int keys;         /* service_state keys */
    char value[32];   /* of key "k1" */
};

static int
on_state_row(void *ctx, const struct obx_channel_state_row *r)
{
    struct reads *x = ctx;

    x->states++;
    if (strcmp(r->channel_id, "ch") == 0 && strcmp(r->state, "queued") == 0)
        x->queued = r->count;
    if (strcmp(r->channel_id, "ch") == 0 && strcmp(r->state, "accepted") == 0)
        x->accepted = r->count;
    return 0;
}

static int
on_sent_row(void *ctx, const char *channel_id, int64_t n)
{
    struct reads *x = ctx;

    if (strcmp(channel_id, "ch") == 0)
        x->sent = n;
    return 0;
}

static int
on_key(void *ctx, const char *key, const char *value, int64_t at_ms)
{
    struct reads *x = ctx;

    (void)at_ms;
    x->keys++;
    if (strcmp(key, "k1") == 0)
        snprintf(x->value, sizeof x->value, "%s", value ? value : "");
    return 0;
}

/*
 * The reads behind the views: a page of messages, one message with its history, counts per
 * channel and state, sends, the last failure, service state and the database size.
 */
static int
test_store_reads(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("reads");
    struct obx_msg m1 = msg("c1", "r1"), m2 = msg("c2", "r2");
    struct obx_list_query q = {.limit = 1};
    struct obx_claimed c[2];
    struct obx_attempt a[2];
    const char *keys[] = {"k1", "k2"}, *values[] = {"v1", NULL};
    char err[64];
    struct reads x;
    struct seen s;
    enum obx_enqueue_result r;
    enum obx_err res[2];
    int64_t next = -1, count = -1, bytes = 0;
    int n = 0, status = -1, found = -1;

    memset(c, 0, sizeof c);
    memset(&x, 0, sizeof x);
    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m1, &r, NULL));
    CHECK_OK(obx_enqueue(st, &m2, &r, NULL));
    CHECK_OK(obx_store_query_last_failure(st, "ch", err, sizeof err, &status, &found));
    CHECK_INT(found, 0);
    CHECK_OK(obx_store_claim(st, 2, 60000, c, &n));
    CHECK_INT(n, 2);
    a[0] = accepted(&c[0]);
    a[0].started_at_ms = obx_now_ms(obx_clock_real());
    a[1] = accepted(&c[1]);
    a[1].http_status = 500;
    a[1].outcome = "http_5xx";
    a[1].error = "server error";
    a[1].next = OBX_NEXT_RETRY;
    a[1].next_attempt_at_ms = 0;
    a[1].reason = "http 500";
    CHECK_OK(obx_store_finish(st, a, 2, res));
    /* Newest first, one per page: r2, then r1, then the end. */
    memset(&s, 0, sizeof s);
    CHECK_OK(obx_store_query_messages(st, &q, on_row, &s, &next));
    CHECK_STR(s.state, "queued");
    CHECK(next > 0);
    q.before_id = next;
    CHECK_OK(obx_store_query_messages(st, &q, on_row, &s, &next));
    CHECK_STR(s.state, "accepted");
    memset(&s, 0, sizeof s);
    CHECK_OK(obx_store_query_message(st, "ch", "r1", on_row, on_tr, on_at, &s));
    CHECK_STR(s.state, "accepted");
    CHECK_INT(s.transitions, 2);
    CHECK_INT(s.attempts, 1);
    CHECK_INT(obx_store_query_message(st, "ch", "none", on_row, NULL, NULL, &s), OBX_ENOTFOUND);
    CHECK_OK(obx_store_query_channel_states(st, 0, on_state_row, &x));
    CHECK_INT(x.states, 2);
    CHECK_INT(x.queued, 1);
    CHECK_INT(x.accepted, 1);
    CHECK_OK(obx_store_query_sent_by_channel(st, 0, on_sent_row, &x));
    CHECK_INT(x.sent, 1);
    CHECK_OK(obx_store_query_count_accepted_since(st, 0, &count));
    CHECK_INT(count, 1);
    CHECK_OK(obx_store_query_last_failure(st, "ch", err, sizeof err, &status, &found));
    CHECK_INT(found, 1);
    CHECK_STR(err, "server error");
    CHECK_INT(status, 500);
    CHECK_OK(obx_store_publish_state(st, keys, values, 2));
    CHECK_OK(obx_store_query_service_state(st, on_key, &x));
    CHECK_INT(x.keys, 2);
    CHECK_STR(x.value, "v1");
    CHECK_OK(obx_store_query_db_bytes(st, &bytes));
    CHECK(bytes > 0);
end:
    obx_store_claimed_release(&c[0]);
    obx_store_claimed_release(&c[1]);
    backend_close(st);
    TEST_END;
}

static void
on_copied(void *ctx, int64_t done, int64_t total)
{
    int64_t *last = ctx;

    *last = done <= total ? done : -1;
}

/*
 * The file as the operator tools see it: opened as it is, checked, its schema version read,
 * copied from one snapshot into a file that holds the same messages.
 */
static int
test_store_file(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("file"), *f = NULL, *copy = NULL;
    struct obx_msg m = msg("c", "f1");
    enum obx_enqueue_result r;
    char dest[300], err[512];
    int ok = 0, problems = -1, version = 0, snap_version = -1;
    int64_t pages = 0, done = 0, n = 0;

    snprintf(dest, sizeof dest, "%s.copy", path);
    unlink(dest);
    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m, &r, NULL));
    CHECK(obx_store_file_open("/nonexistent/dir/x.db", &f, err, sizeof err) != OBX_OK);
    CHECK(f == NULL);
    CHECK(err[0]);
    CHECK_OK(obx_store_file_open(path, &f, err, sizeof err));
    CHECK_OK(obx_store_file_quick_check(f, &ok, &problems, err, sizeof err));
    CHECK_INT(ok, 1);
    CHECK_INT(problems, 0);
    CHECK_OK(obx_store_file_schema_version(f, &version));
    CHECK(version > 0);
    CHECK_OK(obx_store_file_snapshot(f, &snap_version));
    CHECK_INT(snap_version, version);
    CHECK_OK(obx_store_file_copy(f, dest, 0600, 2, 10, on_copied, &done, &pages, err, sizeof err));
    CHECK(pages > 0);
    CHECK_INT(done, pages);
    CHECK_OK(obx_store_tx_read_end(f));
    CHECK_OK(obx_store_file_open(dest, &copy, err, sizeof err));
    CHECK_OK(obx_store_file_count_messages(copy, &n));
    CHECK_INT(n, 1);
    CHECK_OK(obx_store_file_schema_version(copy, &version));
    CHECK_INT(version, snap_version);
end:
    obx_store_free(copy);
    obx_store_free(f);
    unlink(dest);
    backend_close(st);
    TEST_END;
}

/* What the chain's reads saw. */
struct chain_seen {
    int events, transitions, attempts;
    int seals;
    int64_t last_seal_events;
    char last_seal_hash[65];
};

static int
on_event(void *ctx, const struct obx_audit_row *r)
{
    struct chain_seen *x = ctx;

    x->events++;
    x->transitions += strcmp(r->kind, "transition") == 0;
    x->attempts += strcmp(r->kind, "attempt") == 0;
    return 0;
}

static int
on_seal(void *ctx, const struct obx_audit_seal *s)
{
    struct chain_seen *x = ctx;

    x->seals++;
    x->last_seal_events = s->events;
    snprintf(x->last_seal_hash, sizeof x->last_seal_hash, "%s", s->hash);
    return 0;
}

static enum obx_err
fake_digest(void *ctx, const void *data, size_t len, unsigned char out[32])
{
    (void)ctx;
    (void)data;
    memset(out, (int)(len & 0xff), 32);
    return OBX_OK;
}

/*
 * The audit trail's rows: an attempt appended, the events of a range in chain order, a seal
 * added and read back, the next row id, a keyed mode, and a checkpoint after a prune.
 */
static int
test_audit_rows(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("audit_rows");
    struct obx_msg m = msg("c", "ar1");
    struct obx_audit_seal none, last, seal;
    struct obx_audit_mode modes[4];
    struct obx_attempt a = {.started_at_ms = 5,
                            .duration_ms = 1,
                            .http_status = 503,
                            .outcome = "http_5xx",
                            .error = "busy"};
    struct chain_seen x;
    struct seen s;
    enum obx_enqueue_result r;
    char hash[65], prune_hash[65];
    int64_t id = 0, t = 0, next_id = 0, upto = 0, removed = 0;
    int n = -1, found = -1, more = -1;

    memset(&x, 0, sizeof x);
    memset(&none, 0, sizeof none);
    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m, &r, &id));
    a.message_id = id;
    CHECK_OK(obx_store_cancel(st, "ch", "ar1", "test")); /* one transition */
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_store_audit_add_attempt(st, &a));
    CHECK_OK(obx_store_tx_end(st, OBX_OK));
    CHECK_OK(get(st, "ar1", &s));
    CHECK_INT(s.attempts, 1);
    CHECK_OK(obx_store_audit_last_seal(st, &last));
    CHECK_OK(obx_store_audit_next_seal(st, &last, 1000, &seal, &n));
    CHECK_INT(n, 1);
    CHECK(seal.t_upto > 0 && seal.a_upto > 0);
    CHECK_INT(seal.x_upto, 0);
    CHECK_INT(seal.id, last.id + 1);
    CHECK_OK(obx_store_audit_events(st, &last, &seal, on_event, &x));
    CHECK_INT(x.events, 2);
    CHECK_INT(x.transitions, 1);
    CHECK_INT(x.attempts, 1);
    CHECK_OK(obx_store_audit_count_events_after(st, &none, &t));
    CHECK_INT(t, 2);
    /* Seal by hand: sent hashes first, then the seal row, read back as the last one. */
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_store_audit_fill_sent_hashes(st, fake_digest, NULL));
    seal.events = 2;
    seal.at_ms = 5;
    snprintf(seal.hash, sizeof seal.hash, "%064d", 7);
    CHECK_OK(obx_store_audit_add_seal(st, &seal));
    CHECK_OK(obx_store_tx_end(st, OBX_OK));
    CHECK_OK(obx_store_audit_last_seal(st, &last));
    CHECK_STR(last.hash, seal.hash);
    CHECK_INT(last.t_upto, seal.t_upto);
    CHECK_OK(obx_store_audit_count_events_after(st, &last, &t));
    CHECK_INT(t, 0);
    CHECK_OK(obx_store_audit_seals(st, 0, on_seal, &x));
    CHECK(x.seals >= 1);
    CHECK_INT(x.last_seal_events, 2);
    CHECK_STR(x.last_seal_hash, seal.hash);
    /* A fresh store has no legacy rows and no checkpoint. */
    CHECK_OK(obx_store_audit_last_legacy_hash(st, hash, &found));
    CHECK_INT(found, 0);
    CHECK_OK(obx_store_audit_last_checkpoint(st, &upto, hash, &found));
    CHECK_INT(found, 0);
    CHECK_OK(obx_store_audit_seal_legacy(st, 10, NULL, NULL, &n));
    CHECK_INT(n, 0);
    x.events = 0;
    CHECK_OK(obx_store_audit_legacy_rows(st, 0, on_event, &x));
    CHECK_OK(obx_store_audit_export_legacy(st, 0, INT64_MAX, NULL, "0", on_event, &x));
    CHECK_INT(x.events, 0);
    /* Keyed from the next row on. */
    CHECK_OK(obx_store_audit_next_row_id(st, &next_id));
    CHECK_INT(next_id, last.id + 1);
    CHECK_OK(obx_store_audit_add_keyed_mode(st, next_id, "0123456789abcdef", "mac"));
    CHECK_OK(obx_store_audit_modes(st, modes, 4, &n));
    CHECK_INT(n, 1);
    CHECK_INT(modes[0].keyed, 1);
    CHECK_INT(modes[0].from_id, next_id);
    CHECK_INT(obx_store_audit_modes(st, modes, 0, &n), OBX_ECONFIG);
    /* Prune up to the seal: the checkpoint takes its hash; the message is gone, its events go. */
    CHECK_OK(obx_store_purge_batch(st, &(struct obx_purge_opts){.before_ms = INT64_MAX},
                                   OBX_ST_CANCELLED, &(struct obx_batch_limit){100, 0}, &upto,
                                   &removed, &more));
    CHECK_INT(removed, 1);
    upto = 0;
    prune_hash[0] = '\0';
    CHECK_OK(obx_store_audit_prune_scan(st, INT64_MAX, 100, &upto, prune_hash, &more));
    CHECK_INT(upto, last.id);
    CHECK_STR(prune_hash, seal.hash);
    CHECK_OK(obx_store_audit_prune_batch(st, upto, prune_hash, 100, &removed, &more));
    CHECK_INT(removed, 2);
    CHECK_OK(obx_store_audit_last_checkpoint(st, &t, hash, &found));
    CHECK_INT(found, 1);
    CHECK_INT(t, last.id);
    CHECK_STR(hash, seal.hash);
end:
    backend_close(st);
    TEST_END;
}

/*
 * The dashboard's bulk cancel and retry over a filter: bounded per call, oldest first, each
 * call going on where the last one stopped; retry takes only failed or accepted messages.
 */
static int
test_bulk_actions(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("bulk");
    struct obx_msg m1 = msg("c1", "b1"), m2 = msg("c2", "b2"), m3 = msg("c3", "b3");
    struct obx_store_dash_filter f = {.state = "queued", .channel_id = "ch"};
    struct seen s;
    enum obx_enqueue_result r;
    int64_t touched = -1;

    CHECK(st);
    CHECK_OK(obx_enqueue(st, &m1, &r, NULL));
    CHECK_OK(obx_enqueue(st, &m2, &r, NULL));
    CHECK_OK(obx_enqueue(st, &m3, &r, NULL));
    CHECK_OK(obx_store_dash_bulk(st, &f, 0, 2, "cancelled in bulk", &touched));
    CHECK_INT(touched, 2);
    CHECK_OK(get(st, "b2", &s));
    CHECK_STR(s.state, "cancelled");
    CHECK_OK(get(st, "b3", &s));
    CHECK_STR(s.state, "queued");
    CHECK_OK(obx_store_dash_bulk(st, &f, 0, 2, "cancelled in bulk", &touched));
    CHECK_INT(touched, 1);
    CHECK_OK(obx_store_dash_bulk(st, &f, 0, 2, "cancelled in bulk", &touched));
    CHECK_INT(touched, 0);
    f.state = "cancelled"; /* not a state a retry takes */
    CHECK_OK(obx_store_dash_bulk(st, &f, 1, 10, "retried in bulk", &touched));
    CHECK_INT(touched, 0);
    CHECK_OK(get(st, "b3", &s));
    CHECK_STR(s.state, "cancelled");
    CHECK_INT(s.transitions, 1);
end:
    backend_close(st);
    TEST_END;
}

/*
 * The audit prune deletes the actions (pauses, resumes) its checkpoint's seal covers, at most
 * max_rows per batch, and keeps the ones after the seal.
 */
static int
test_audit_prune_actions(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("prune_actions");
    struct obx_audit_seal none, last, seal;
    char prune_hash[65];
    int64_t upto = 0, removed = 0, n = 0;
    int created = 0, more = -1;

    memset(&none, 0, sizeof none);
    CHECK(st);
    CHECK_OK(obx_store_dash_pause(st, OBX_PAUSE_CHANNEL, "ch", "maintenance", "test", &created));
    CHECK_INT(created, 1);
    CHECK_OK(obx_store_dash_resume(st, OBX_PAUSE_CHANNEL, "ch", "test"));
    /* Seal the two actions by hand; a third action comes after the seal. */
    CHECK_OK(obx_store_audit_last_seal(st, &last));
    CHECK_OK(obx_store_audit_next_seal(st, &last, 1000, &seal, &created));
    CHECK_INT(created, 1);
    CHECK_INT(seal.x_upto, 2);
    seal.events = 2;
    seal.at_ms = 5;
    snprintf(seal.hash, sizeof seal.hash, "%064d", 7);
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_store_audit_add_seal(st, &seal));
    CHECK_OK(obx_store_tx_end(st, OBX_OK));
    CHECK_OK(obx_store_audit_last_seal(st, &last));
    CHECK_OK(obx_store_dash_pause(st, OBX_PAUSE_CHANNEL, "ch2", "later", "test", &created));
    CHECK_OK(obx_store_audit_count_events_after(st, &none, &n));
    CHECK_INT(n, 3);
    prune_hash[0] = '\0';
    CHECK_OK(obx_store_audit_prune_scan(st, INT64_MAX, 100, &upto, prune_hash, &more));
    CHECK_INT(upto, last.id);
    CHECK_OK(obx_store_audit_prune_batch(st, upto, prune_hash, 1, &removed, &more));
    CHECK_INT(removed, 1);
    CHECK_INT(more, 1);
    CHECK_OK(obx_store_audit_count_events_after(st, &none, &n));
    CHECK_INT(n, 2);
    CHECK_OK(obx_store_audit_prune_batch(st, upto, prune_hash, 100, &removed, &more));
    CHECK_INT(removed, 1);
    CHECK_INT(more, 0);
    CHECK_OK(obx_store_audit_count_events_after(st, &none, &n));
    CHECK_INT(n, 1); /* the action after the seal stays */
end:
    backend_close(st);
    TEST_END;
}

/* Transactions: a savepoint undoes its own work only; a rolled-back transaction writes nothing. */
static int
test_transactions(void)
{
    TEST_BEGIN;
    struct obx_store *st = backend_open("tx");
    int64_t id = -1, counts[3];
    static const char *const names[] = {"pending", "ignored", "other"};

    CHECK(st);
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "t1", "{}", 2, 1, &id));
    CHECK_OK(obx_store_tx_savepoint(st));
    CHECK_OK(obx_store_inbox_mark_event(st, id, "x", NULL, "ignored"));
    CHECK_OK(obx_store_tx_savepoint_end(st, OBX_EINVAL)); /* undone: still pending */
    CHECK_OK(obx_store_tx_savepoint(st));
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "t2", "{ }", 3, 1, &id));
    CHECK_OK(obx_store_tx_savepoint_end(st, OBX_OK)); /* kept */
    CHECK_OK(obx_store_tx_end(st, OBX_OK));
    CHECK_OK(obx_store_query_event_outcomes(st, names, 3, counts));
    CHECK_INT(counts[0], 2);
    CHECK_INT(counts[1], 0);
    CHECK_OK(obx_store_tx_begin(st));
    CHECK_OK(obx_store_inbox_add_webhook_event(st, "t3", "[]", 2, 1, &id));
    CHECK_INT(obx_store_tx_end(st, OBX_EINVAL), OBX_EINVAL); /* rolled back */
    CHECK_OK(obx_store_tx_read_begin(st));
    CHECK_OK(obx_store_query_event_outcomes(st, names, 3, counts));
    CHECK_OK(obx_store_tx_read_end(st));
    CHECK_INT(counts[0], 2);
end:
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
    {"webhook_events", test_webhook_events},
    {"inbox_replies", test_inbox_replies},
    {"store_reads", test_store_reads},
    {"store_file", test_store_file},
    {"audit_rows", test_audit_rows},
    {"transactions", test_transactions},
    {"bulk_actions", test_bulk_actions},
    {"audit_prune_actions", test_audit_prune_actions},
    {NULL, NULL},
};

TEST_MAIN(tests)
