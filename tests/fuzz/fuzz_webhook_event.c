/*
 * fuzz_webhook_event: the webhook event interpreter (lib/reconcile.c), which reads the
 * bodies lib/webhook.c stored after their signature was checked.
 *
 * One in-memory store per process (obx_store_open(":memory:"), migrated, fake clock).
 * Per input:
 *   1. reset: the tables reconcile reads or writes are emptied and a fixed set of
 *      messages is inserted again (ids restart at 1, so every input sees the same rows):
 *        1 ch-1/m-1 accepted    2 ch-1/m-2 sending    3 ch-2/m-1 accepted (m-1 is ambiguous
 *        without a channel)     4 ch-1/m-3 failed     5 ch-1/m-4 confirmed
 *        6 ch-ro/m-5 accepted (ch-ro is in readonly_channels)   7 ch-1/m-6 queued
 *   2. the input is cut at each SEP ("\n--\n", which no JSON text contains) into up to
 *      MAX_EVENTS bodies, which may hold any byte, NUL included, as a signed body may;
 *      each is stored as lib/webhook.c stores it: INSERT ... ON CONFLICT (body_sha256)
 *      DO NOTHING, the SHA-256 from obx_signature_sha256_hex;
 *   3. obx_reconcile_run(st, cfg, 500, &r), as lib/server.c runs it.
 *
 * Properties checked besides ASan/UBSan/LSan (abort() on violation):
 *   - obx_reconcile_run returns OBX_OK whatever the bodies say: an event that makes it fail
 *     would be retried forever and block every event behind it (SPEC: anything else "is
 *     kept and marked, never an error");
 *   - every stored event is processed exactly once: r.processed equals the rows inserted,
 *     none is left with processed_at_ms NULL, each has an outcome, and a second run
 *     processes nothing;
 *   - the Partoo message id is kept as Partoo sent it: when payload.message.id is a
 *     non-empty JSON string, webhook_events.partoo_message_id (and the inbox row of a
 *     reply) holds that exact string;
 *   - every inbox row's Partoo message id is 1..128 bytes of [A-Za-z0-9_-]
 *     (obx_msg_partoo_id_valid): lib/inbox.c puts it into the relay's Idempotency-Key
 *     header, where CR/LF would inject headers (issue 19 finding 5);
 *   - every text reconcile writes (event, inbox, outbox and transition columns) is valid
 *     UTF-8, as the JSON it came from is: these columns end up in JSON answers
 *     (GET /v1/inbox, `outbox show --json`, the audit export).
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "clock.h"
#include "config.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "msg.h"
#include "reconcile.h"
#include "signature.h"
#include "store.h"

#define MAX_EVENTS 4
#define SEP "\n--\n"                  /* between two event bodies in the input */
#define RECONCILE_BATCH 500           /* lib/server.c */
#define NOW_MS INT64_C(1735689600000) /* 2025-01-01T00:00:00Z */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct obx_store *st;
static struct obx_config cfg;
static struct obx_fake_clock fake_clock;

/* The reset, one statement each so that obx_db_stmt() prepares them once per process
 * (re-parsing them, triggers included, every run cost half of the time). */
static const char SQL_DEL_INBOX[] = "DELETE FROM inbox";
static const char SQL_DEL_EVENTS[] = "DELETE FROM webhook_events";
static const char SQL_DEL_ATTEMPTS[] = "DELETE FROM attempts";
static const char SQL_DEL_TRANSITIONS[] = "DELETE FROM transitions";
static const char SQL_DEL_AUDIT[] = "DELETE FROM audit_log";
static const char SQL_DEL_OUTBOX[] = "DELETE FROM outbox";
static const char SQL_FIXTURES[] =
    "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,"
    " content, sender_type, state, accepted_at_ms, confirm_due_at_ms, lease_token,"
    " lease_expires_at_ms) VALUES"
    " ('ch-1', 'm-1', 'biz-1', 'conv-1', 'hello', 'Consumer', 'accepted', 1735689000000,"
    "  1735689600000, NULL, NULL),"
    " ('ch-1', 'm-2', 'biz-1', 'conv-1', 'in flight', 'Consumer', 'sending', NULL, NULL, 42,"
    "  1735689660000),"
    " ('ch-2', 'm-1', 'biz-2', 'conv-2', 'same id, other channel', 'User', 'accepted',"
    "  1735689000000, 1735689600000, NULL, NULL),"
    " ('ch-1', 'm-3', 'biz-1', 'conv-3', 'dead letter', 'Consumer', 'failed', NULL, NULL, NULL,"
    "  NULL),"
    " ('ch-1', 'm-4', 'biz-1', 'conv-4', 'done', 'Consumer', 'confirmed', 1735689000000, NULL,"
    "  NULL, NULL),"
    " ('ch-ro', 'm-5', 'biz-3', 'conv-5', 'read-only channel', 'Consumer', 'accepted',"
    "  1735689000000, NULL, NULL, NULL),"
    " ('ch-1', 'm-6', 'biz-1', 'conv-6', 'waiting', 'User', 'queued', NULL, NULL, NULL, NULL)";
static const char *const reset_sql[] = {SQL_DEL_INBOX,       SQL_DEL_EVENTS, SQL_DEL_ATTEMPTS,
                                        SQL_DEL_TRANSITIONS, SQL_DEL_AUDIT,  SQL_DEL_OUTBOX,
                                        SQL_FIXTURES};

static const char SQL_STORE_EVENT[] =
    "INSERT INTO webhook_events (body_sha256, received_at_ms, body) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (body_sha256) DO NOTHING";

static const char SQL_EVENT_STATE[] =
    "SELECT processed_at_ms IS NOT NULL, outcome, partoo_message_id,"
    " (SELECT partoo_message_id FROM inbox WHERE event_id = webhook_events.id)"
    " FROM webhook_events WHERE body_sha256 = ?1";

/* Every text column reconcile may write, one value per row (NULLs skipped). */
static const char SQL_WRITTEN_TEXT[] =
    "SELECT event_type FROM webhook_events UNION ALL SELECT partoo_message_id FROM webhook_events"
    " UNION ALL SELECT outcome FROM webhook_events"
    " UNION ALL SELECT partoo_message_id FROM outbox UNION ALL SELECT partoo_status FROM outbox"
    " UNION ALL SELECT state_reason FROM outbox UNION ALL SELECT reason FROM transitions"
    " UNION ALL SELECT partoo_message_id FROM inbox UNION ALL SELECT channel_id FROM inbox"
    " UNION ALL SELECT external_conversation_id FROM inbox"
    " UNION ALL SELECT partoo_conversation_id FROM inbox UNION ALL SELECT business_id FROM inbox"
    " UNION ALL SELECT sender_type FROM inbox UNION ALL SELECT sender_label FROM inbox"
    " UNION ALL SELECT content_type FROM inbox UNION ALL SELECT content FROM inbox"
    " UNION ALL SELECT message_date FROM inbox";

static void
oracle_fail(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_webhook_event: property violated: %s%s%s\n", what, detail ? ": " : "",
            detail ? detail : "");
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct obx_store_opts opts = {0};

    (void)argc;
    (void)argv;
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, NULL);
    if (obx_config_init(&cfg) != OBX_OK ||
        obx_config_set(&cfg, "readonly_channels", "ch-ro, ch-ro2", OBX_SRC_FLAG, NULL) != OBX_OK)
        oracle_fail("cannot set up the configuration", NULL);
    opts.synchronous_normal = 1;
    if (obx_store_open(":memory:", &opts, &st) != OBX_OK)
        oracle_fail("cannot open the in-memory store", NULL);
    obx_clock_fake_init(&fake_clock, NOW_MS, 0);
    st->clock = &fake_clock.base;
    return 0;
}

/* What reconcile should record as Partoo's id: the exact string, when the id is one and
 * fits (an id of 256 bytes or more is documented to leave the event ignored, unstored). */
static char *
string_id_of(const char *body, size_t len)
{
    obx_json *doc = NULL;
    const char *id;
    char *copy = NULL;

    if (obx_json_parse(body, len, (size_t)cfg.max_body_bytes, (int)cfg.max_json_depth, &doc,
                       NULL) != OBX_OK)
        return NULL;
    id = obx_json_string(obx_json_get(obx_json_get(obx_json_get(doc, "payload"), "message"), "id"));
    if (id && *id && strlen(id) < 256)
        copy = strdup(id);
    obx_json_free(doc);
    return copy;
}

/* Checks how the event with this digest was recorded. */
static void
check_event(const char *sha, const char *body, size_t len)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_EVENT_STATE);
    const char *outcome, *stored_id, *inbox_id;
    char *want;

    if (!s)
        oracle_fail("cannot prepare the event query", obx_db_errmsg(st->db));
    obx_db_bind_text(s, 1, sha);
    if (sqlite3_step(s) != SQLITE_ROW)
        oracle_fail("stored event not found", sha);
    if (sqlite3_column_int(s, 0) != 1)
        oracle_fail("event left unprocessed", sha);
    outcome = (const char *)sqlite3_column_text(s, 1);
    if (!outcome || !*outcome)
        oracle_fail("processed event without an outcome", sha);
    inbox_id = (const char *)sqlite3_column_text(s, 3);
    if (inbox_id && !obx_msg_partoo_id_valid(inbox_id))
        oracle_fail("an inbox row holds a Partoo id unfit for a header", inbox_id);
    want = string_id_of(body, len);
    if (want && strcmp(outcome, "unparsable") != 0) {
        stored_id = (const char *)sqlite3_column_text(s, 2);
        inbox_id = (const char *)sqlite3_column_text(s, 3);
        if (!stored_id || strcmp(stored_id, want) != 0)
            oracle_fail("webhook_events.partoo_message_id is not Partoo's id", want);
        if (inbox_id && strcmp(inbox_id, want) != 0)
            oracle_fail("inbox.partoo_message_id is not Partoo's id", want);
    }
    free(want);
    sqlite3_reset(s);
}

static void
check_written_text(void)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_WRITTEN_TEXT);
    int rc;

    if (!s)
        oracle_fail("cannot prepare the text query", obx_db_errmsg(st->db));
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        const char *t = (const char *)sqlite3_column_text(s, 0);
        if (t && !obx_buf_utf8_valid(t, (size_t)sqlite3_column_bytes(s, 0)))
            oracle_fail("reconcile wrote text that is not valid UTF-8", t);
        rc = sqlite3_step(s);
    }
    if (rc != SQLITE_DONE)
        oracle_fail("text query failed", obx_db_errmsg(st->db));
    sqlite3_reset(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *bodies[MAX_EVENTS];
    size_t lens[MAX_EVENTS];
    char shas[MAX_EVENTS][65];
    struct obx_reconcile_result r;
    int n = 0, inserted = 0;
    enum obx_err err;

    /* One transaction for the reset and the stored events: fewer journals to allocate. */
    if (obx_db_begin(st->db) != OBX_OK)
        oracle_fail("cannot begin", obx_db_errmsg(st->db));
    for (size_t i = 0; i < sizeof reset_sql / sizeof reset_sql[0]; i++) {
        sqlite3_stmt *s = obx_db_stmt(st->db, reset_sql[i]);
        if (!s || obx_db_step_done(s) != OBX_OK)
            oracle_fail("cannot reset the store", obx_db_errmsg(st->db));
    }
    while (n < MAX_EVENTS) {
        const char *sep = n + 1 < MAX_EVENTS ? memmem(p, (size_t)(end - p), SEP, 4) : NULL;
        bodies[n] = p;
        lens[n] = (size_t)((sep ? sep : end) - p);
        n++;
        if (!sep)
            break;
        p = sep + 4;
    }
    for (int i = 0; i < n; i++) {
        sqlite3_stmt *s = obx_db_stmt(st->db, SQL_STORE_EVENT);
        if (!s || obx_signature_sha256_hex(bodies[i], lens[i], shas[i]) != OBX_OK)
            oracle_fail("cannot prepare the event insert", obx_db_errmsg(st->db));
        obx_db_bind_text(s, 1, shas[i]);
        sqlite3_bind_int64(s, 2, NOW_MS);
        /* A zero-length blob must still be a blob, not NULL (body is NOT NULL). */
        sqlite3_bind_blob(s, 3, lens[i] ? bodies[i] : "", (int)lens[i], SQLITE_STATIC);
        if (obx_db_step_done(s) != OBX_OK)
            oracle_fail("cannot store the event", obx_db_errmsg(st->db));
        inserted += sqlite3_changes(st->db->h);
    }
    if (obx_db_commit(st->db) != OBX_OK)
        oracle_fail("cannot commit", obx_db_errmsg(st->db));

    err = obx_reconcile_run(st, &cfg, RECONCILE_BATCH, &r);
    if (err != OBX_OK)
        oracle_fail("obx_reconcile_run failed", obx_strerror(err));
    if (r.processed != inserted)
        oracle_fail("not every stored event was processed", NULL);
    for (int i = 0; i < n; i++)
        check_event(shas[i], bodies[i], lens[i]);
    check_written_text();
    err = obx_reconcile_run(st, &cfg, RECONCILE_BATCH, &r);
    if (err != OBX_OK || r.processed != 0)
        oracle_fail("a second run found work", obx_strerror(err));
    return 0;
}
