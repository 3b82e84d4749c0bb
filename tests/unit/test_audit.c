/*
 * Unit tests for lib/audit.c: the audit hash chain (audit.h). Sealing (every transition,
 * attempt and pause/resume once, in capped seals), verification (counts, the first broken seal
 * or legacy row named after a change, insertion or deletion), the keyed chain (key file
 * errors, key id, no key / another key / a changed segment record all refused, a key given for
 * a plain chain), the sliced verification (same verdict as the whole, a bad cursor refused, a
 * prune between slices restarts), legacy audit_log rows (sealed before the events, exported
 * with their hashes), the export (filters, unsealed rows without hash, stop), and allocation
 * failure in seal, verify and export (a clean OBX_ENOMEM, nothing half-sealed, no leak).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "audit.h"
#include "check.h"
#include "mem.h"
#include "store.h"
#include "store_dash.h"
#include "store_pg_audit.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

/* A store on db_path (fresh when fresh is 1) with the fake clock. */
static struct obx_store *
open_store(int fresh)
{
    struct obx_store *st = NULL;

    if (fresh) {
        snprintf(db_path, sizeof db_path, "/tmp/obx_test_audit_%d.db", (int)getpid());
        testdb_remove(db_path);
        obx_clock_fake_init(&fake, 1700000000000, 1000);
    }
    if (obx_store_open(db_path, NULL, &st) != OBX_OK)
        return NULL;
    st->clock = &fake.base;
    return st;
}

/* Writes a key file; returns its path (static per slot). */
static const char *
key_file(int slot, const char *content)
{
    static char paths[4][256];
    FILE *f;

    snprintf(paths[slot], sizeof paths[slot], "/tmp/obx_test_audit_%d.key%d", (int)getpid(), slot);
    f = fopen(paths[slot], "w");
    if (!f)
        return "/nonexistent";
    fputs(content, f);
    fclose(f);
    return paths[slot];
}

static void
remove_keys(void)
{
    for (int i = 0; i < 4; i++) {
        char p[256];
        snprintf(p, sizeof p, "/tmp/obx_test_audit_%d.key%d", (int)getpid(), i);
        unlink(p);
    }
}

/*
 * n messages on channel ch (ids <prefix>0..), each claimed and accepted: two transitions and
 * one attempt each. The clock moves 1 s per message.
 */
static int
deliver(struct obx_store *st, const char *ch, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char id[64], conv[64];
        struct obx_msg m = {ch, id, "b", conv, "hello", "Consumer", NULL, NULL, 0};
        struct obx_attempt a = {0};
        struct obx_claimed c;
        enum obx_enqueue_result r;
        enum obx_err res = OBX_OK;
        int got = 0;

        snprintf(id, sizeof id, "%s%d", prefix, i);
        snprintf(conv, sizeof conv, "conv-%s%d", prefix, i);
        if (obx_enqueue(st, &m, &r, NULL) != OBX_OK)
            return -1;
        if (obx_store_claim(st, 1, 60000, &c, &got) != OBX_OK || got != 1)
            return -1;
        a.message_id = c.id;
        a.lease_token = c.lease_token;
        a.started_at_ms = fake.now_ms;
        a.duration_ms = 5;
        a.http_status = 200;
        a.outcome = "accepted";
        a.next = OBX_NEXT_ACCEPTED;
        a.counted = 1;
        a.reason = "http 200";
        obx_store_claimed_release(&c);
        if (obx_store_finish(st, &a, 1, &res) != OBX_OK || res != OBX_OK)
            return -1;
        fake.now_ms += 1000;
    }
    return 0;
}

/* Seals until nothing is left; returns the events sealed (-1 on error), *calls the seals. */
static int64_t
seal_all(struct obx_store *st, int max, int *calls)
{
    int64_t total = 0, n = 0;

    *calls = 0;
    do {
        if (obx_audit_seal(st, max, &n) != OBX_OK)
            return -1;
        total += n;
        if (n)
            (*calls)++;
    } while (n && *calls < 1000);
    return total;
}

static int64_t
query_int(struct obx_store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t v = -1;

    if (sqlite3_prepare_v2(st->db->h, sql, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int
is_hex64(const char *h)
{
    return strlen(h) == 64 && strspn(h, "0123456789abcdef") == 64;
}

static int
test_use_key(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    char msg[300], id1[17];

    CHECK(st);
    CHECK_INT(obx_audit_use_key(st, "/nonexistent/audit.key", 1, msg, sizeof msg), OBX_ECONFIG);
    CHECK_STR(msg, "cannot read audit_key_file '/nonexistent/audit.key'");
    CHECK_INT(st->audit_keyed, 0);
    /* 15 bytes after trimming trailing blanks: too short. */
    CHECK_INT(obx_audit_use_key(st, key_file(0, "0123456789abcde \t\r\nsecond line\n"), 1, msg,
                                sizeof msg),
              OBX_ECONFIG);
    CHECK(strstr(msg, "the first line must hold at least 16 bytes"));
    CHECK(!strstr(msg, "0123456789abcde"));
    CHECK_INT(st->audit_keyed, 0);
    CHECK_INT(obx_audit_use_key(st, key_file(0, ""), 1, msg, sizeof msg), OBX_ECONFIG);
    /* Trailing blanks and the line end do not count: both files hold the same key. */
    CHECK_OK(obx_audit_use_key(st, key_file(1, "0123456789abcdef-key  \r\nignored\n"), 1, msg,
                               sizeof msg));
    CHECK_STR(msg, "");
    CHECK_INT(st->audit_keyed, 1);
    CHECK_INT(st->audit_key_start, 1);
    CHECK(strlen(st->audit_key_id) == 16 && strspn(st->audit_key_id, "0123456789abcdef") == 16);
    memcpy(id1, st->audit_key_id, sizeof id1);
    CHECK_OK(obx_audit_use_key(st, key_file(2, "0123456789abcdef-key"), 0, msg, sizeof msg));
    CHECK_STR(st->audit_key_id, id1);
    CHECK_INT(st->audit_key_start, 0);
    /* Another key, another id. */
    CHECK_OK(obx_audit_use_key(st, key_file(3, "0123456789abcdef-kez"), 0, msg, sizeof msg));
    CHECK(strcmp(st->audit_key_id, id1) != 0);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    remove_keys();
    TEST_END;
}

static int
test_seal_verify_plain(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    struct obx_audit_report r;
    int64_t n = -1;
    int created = 0, calls = 0;
    char head[65];

    CHECK(st);
    /* An empty chain verifies. */
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 0);
    CHECK_INT(r.head_id, 0);
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 0);
    CHECK_OK(deliver(st, "ch", "m", 3));
    CHECK_OK(obx_store_dash_pause(st, "channel", "ch", "maintenance", "cli", &created));
    CHECK_INT(created, 1);
    CHECK_OK(obx_store_dash_resume(st, "channel", "ch", "api"));
    /* Before the seal: 9 events and 2 actions wait. */
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.unsealed, 11);
    CHECK_INT(r.checked, 0);
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 11);
    CHECK_OK(obx_audit_seal(st, 100, &n)); /* nothing new */
    CHECK_INT(n, 0);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 11);
    CHECK_INT(r.seals, 1);
    CHECK_INT(r.unsealed, 0);
    CHECK_INT(r.keyed_from_id, 0);
    CHECK_STR(r.key_id, "");
    CHECK(r.head_id > 0);
    CHECK(is_hex64(r.head_hash));
    CHECK(strcmp(r.head_hash, OBX_AUDIT_GENESIS) != 0);
    memcpy(head, r.head_hash, sizeof head);
    /* Seals of at most 2 transitions, 2 attempts and 2 actions each. */
    CHECK_OK(deliver(st, "ch", "n", 4));
    CHECK_INT(seal_all(st, 2, &calls), 12);
    CHECK_INT(calls, 4);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 23);
    CHECK_INT(r.seals, 5);
    CHECK(strcmp(r.head_hash, head) != 0);
    CHECK_INT(query_int(st, "SELECT count(*) FROM audit_seals WHERE id > 0"), 5);
    /* The events were not copied anywhere: audit_log stays empty. */
    CHECK_INT(query_int(st, "SELECT count(*) FROM audit_log"), 0);
    /* Every message's sent hash is filled (32 bytes). */
    CHECK_INT(query_int(st, "SELECT count(*) FROM audit_messages WHERE length(sent_sha256) = 32"),
              7);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* Verifies and returns first_bad_id (-1 on error); *problem gets the report's text. */
static int64_t
bad_id(struct obx_store *st, char *problem, size_t n)
{
    struct obx_audit_report r;

    if (obx_audit_verify(st, &r) != OBX_OK)
        return -1;
    snprintf(problem, n, "%s", r.problem);
    return r.first_bad_id;
}

static int
test_tamper_detected(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    char why[200];
    int64_t n = 0, first_seal, second_seal;
    int created = 0;

    CHECK(st);
    CHECK_OK(deliver(st, "ch", "m", 2));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    first_seal = query_int(st, "SELECT max(id) FROM audit_seals");
    CHECK_OK(deliver(st, "ch", "n", 2));
    CHECK_OK(obx_store_dash_pause(st, "channel", "ch", "r", "cli", &created));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    second_seal = query_int(st, "SELECT max(id) FROM audit_seals");
    CHECK(second_seal > first_seal);
    CHECK_INT(bad_id(st, why, sizeof why), 0);

    /* A transition of the first seal changed: the first seal is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE transitions SET reason = 'forged' WHERE id = 2"));
    CHECK_INT(bad_id(st, why, sizeof why), first_seal);
    CHECK(strncmp(why, "seal ", 5) == 0);
    CHECK(strstr(why, "changed"));
    CHECK_OK(obx_db_exec(st->db, "UPDATE transitions SET reason = 'http 200' WHERE id = 2"));
    CHECK_INT(bad_id(st, why, sizeof why), 0);
    /* An attempt of the second seal changed. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE attempts SET http_status = 202 WHERE id = 4"));
    CHECK_INT(bad_id(st, why, sizeof why), second_seal);
    CHECK_OK(obx_db_exec(st->db, "UPDATE attempts SET http_status = 200 WHERE id = 4"));
    /* The content sent changed after the seal (the sent hash no longer matches). */
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_messages SET sent_sha256 = zeroblob(32) "
                                 "WHERE message_id = 3"));
    CHECK_INT(bad_id(st, why, sizeof why), second_seal);
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_messages SET sent_sha256 = NULL "
                                 "WHERE message_id = 3"));
    /* An action removed: its seal no longer counts its events. */
    CHECK_OK(obx_db_exec(st->db, "DELETE FROM actions"));
    CHECK_INT(bad_id(st, why, sizeof why), second_seal);
    /* A seal's stored hash changed. */
    st = (obx_store_free(st), open_store(1));
    CHECK(st);
    CHECK_OK(deliver(st, "ch", "m", 1));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_seals SET hash = substr(hash, 2) || '0' "
                                 "WHERE id = (SELECT max(id) FROM audit_seals)"));
    CHECK_INT(bad_id(st, why, sizeof why), query_int(st, "SELECT max(id) FROM audit_seals"));
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_keyed_chain(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1), *other = NULL;
    struct obx_audit_report r;
    const char *k1 = key_file(0, "the-first-audit-key-0123456789\n");
    const char *k2 = key_file(1, "the-other-audit-key-0123456789\n");
    char msg[300], why[200], id1[17];
    int64_t n = 0, from;

    CHECK(st);
    /* Plain events first, then the key: the keyed segment starts at the next seal. */
    CHECK_OK(deliver(st, "ch", "p", 1));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 3);
    CHECK_OK(obx_audit_use_key(st, k1, 1, msg, sizeof msg));
    memcpy(id1, st->audit_key_id, sizeof id1);
    CHECK_OK(obx_audit_check_key(st, msg, sizeof msg)); /* plain chain: any key may start */
    CHECK_OK(obx_audit_seal(st, 100, &n));              /* starts the segment, nothing to seal */
    CHECK_INT(n, 0);
    from = query_int(st, "SELECT from_id FROM audit_chain_modes WHERE mode = 'hmac-sha256'");
    CHECK(from > 0);
    CHECK_OK(deliver(st, "ch", "k", 2));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 6);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 9);
    CHECK_INT(r.keyed_from_id, from);
    CHECK_STR(r.key_id, id1);
    CHECK_OK(obx_audit_check_key(st, msg, sizeof msg));
    CHECK_STR(msg, "");

    /* Without the key: the keyed segment cannot be verified, sealed or started over. */
    other = open_store(0);
    CHECK(other);
    CHECK_OK(obx_audit_verify(other, &r));
    CHECK_INT(r.first_bad_id, from);
    CHECK(strstr(r.problem, "verifying it needs the key"));
    CHECK_INT(obx_audit_check_key(other, msg, sizeof msg), OBX_ECONFIG);
    CHECK(strstr(msg, "the audit chain is keyed (key id "));
    CHECK(strstr(msg, id1));
    CHECK_OK(deliver(other, "ch", "u", 1));
    CHECK_INT(obx_audit_seal(other, 100, &n), OBX_ECONFIG);
    CHECK_INT(n, 0);
    CHECK_INT(query_int(other, "SELECT count(*) FROM audit_chain_modes"), 1);
    /* With another key: refused and named. */
    CHECK_OK(obx_audit_use_key(other, k2, 1, msg, sizeof msg));
    CHECK_INT(obx_audit_check_key(other, msg, sizeof msg), OBX_ECONFIG);
    CHECK(strstr(msg, "but the audit chain is keyed with key id"));
    CHECK_INT(obx_audit_seal(other, 100, &n), OBX_ECONFIG);
    CHECK_OK(obx_audit_verify(other, &r));
    CHECK_INT(r.first_bad_id, from);
    CHECK(strstr(r.problem, "is not the one the chain is keyed with"));
    /* The CLI with the right key (start_segment 0) continues the segment. */
    CHECK_OK(obx_audit_use_key(other, k1, 0, msg, sizeof msg));
    CHECK_OK(obx_audit_seal(other, 100, &n));
    CHECK_INT(n, 3);
    CHECK_OK(obx_audit_verify(other, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 12);
    /* The segment's record moved (or its mac changed): caught. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_chain_modes SET from_id = from_id + 1 "
                                 "WHERE mode = 'hmac-sha256'"));
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, from + 1);
    CHECK(strstr(r.problem, "record of the keyed segment was changed"));
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_chain_modes SET from_id = from_id - 1 "
                                 "WHERE mode = 'hmac-sha256'"));
    /* A plain segment after the keyed one: refused. */
    CHECK_OK(obx_db_exec(st->db, "INSERT INTO audit_chain_modes (from_id, mode, created_at_ms) "
                                 "VALUES (100000, 'sha256', 0)"));
    CHECK_INT(bad_id(st, why, sizeof why), 100000);
    CHECK(strstr(why, "goes back from keyed to plain"));
    CHECK_OK(obx_db_exec(st->db, "DELETE FROM audit_chain_modes WHERE from_id = 100000"));
    /* The keyed record removed to pass the chain off as plain: a key given still fails. */
    CHECK_OK(obx_db_exec(st->db, "DELETE FROM audit_chain_modes"));
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 1);
    CHECK(strstr(r.problem, "a key is given but no row is sealed with it"));
end:
    obx_store_free(other);
    obx_store_free(st);
    testdb_remove(db_path);
    remove_keys();
    TEST_END;
}

/* A keyed chain's rows are HMACs: recomputed as plain SHA-256 they do not match. */
static int
test_keyed_hashes_need_key(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    struct obx_audit_report r;
    char msg[300];
    int64_t n = 0;

    CHECK(st);
    CHECK_OK(obx_audit_use_key(st, key_file(0, "a-key-of-enough-length-123\n"), 1, msg,
                               sizeof msg));
    CHECK_OK(deliver(st, "ch", "k", 1));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 3);
    /* Drop the segment record and the key: the seal's hash is not the plain one. */
    CHECK_OK(obx_db_exec(st->db, "DELETE FROM audit_chain_modes"));
    st->audit_keyed = 0;
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK(r.first_bad_id > 0);
    CHECK(strncmp(r.problem, "seal ", 5) == 0);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    remove_keys();
    TEST_END;
}

static int
test_verify_slices(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    struct obx_audit_report whole, r;
    struct obx_audit_cursor c;
    int calls = 0, done = 0, slices = 0;
    int64_t n = 0;

    CHECK(st);
    CHECK_OK(deliver(st, "ch", "m", 5));
    CHECK_INT(seal_all(st, 1, &calls), 15);
    CHECK_INT(calls, 10); /* one transition per seal: 10 of them, the attempts alongside */
    CHECK_OK(deliver(st, "ch", "u", 1)); /* 3 events left unsealed */
    CHECK_OK(obx_audit_verify(st, &whole));
    CHECK_INT(whole.first_bad_id, 0);
    CHECK_INT(whole.unsealed, 3);
    memset(&c, 0, sizeof c);
    do {
        CHECK_OK(obx_audit_verify_slice(st, 2, 0, &c, &r, &done));
        slices++;
        if (!done)
            CHECK(r.checked < whole.checked);
    } while (!done && slices < 100);
    CHECK_INT(slices, 5); /* 2 seals per slice */
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, whole.checked);
    CHECK_INT(r.seals, whole.seals);
    CHECK_INT(r.unsealed, 3);
    CHECK_INT(r.head_id, whole.head_id);
    CHECK_STR(r.head_hash, whole.head_hash);
    /* Run again from the finished cursor: nothing new, same verdict. */
    CHECK_OK(obx_audit_verify_slice(st, 2, 0, &c, &r, &done));
    CHECK_INT(done, 1);
    CHECK_STR(r.head_hash, whole.head_hash);
    /* A time budget alone also finishes (at least one seal per call). */
    memset(&c, 0, sizeof c);
    slices = 0;
    do {
        CHECK_OK(obx_audit_verify_slice(st, 0, 60000, &c, &r, &done));
        slices++;
    } while (!done && slices < 100);
    CHECK_INT(r.checked, whole.checked);
    /* A cursor whose hash is not 64 hex digits is refused. */
    c.started = 1;
    snprintf(c.hash, sizeof c.hash, "not-a-hash");
    CHECK_INT(obx_audit_verify_slice(st, 2, 0, &c, &r, &done), OBX_EINVAL);
    /* A change ahead of the cursor is found by a later slice. */
    memset(&c, 0, sizeof c);
    CHECK_OK(obx_audit_verify_slice(st, 1, 0, &c, &r, &done));
    CHECK_INT(done, 0);
    CHECK_OK(obx_db_exec(st->db, "UPDATE attempts SET duration_ms = 6 WHERE id = 4"));
    do {
        CHECK_OK(obx_audit_verify_slice(st, 1, 0, &c, &r, &done));
    } while (!done);
    CHECK(r.first_bad_id > 0);
    CHECK_INT(r.first_bad_id, query_int(st, "SELECT min(id) FROM audit_seals WHERE "
                                            "attempts_upto >= 4 AND id > 0"));
    CHECK_OK(obx_db_exec(st->db, "UPDATE attempts SET duration_ms = 5 WHERE id = 4"));

    /* Pruned between two slices past the cursor: the next slice starts at the checkpoint. */
    memset(&c, 0, sizeof c);
    CHECK_OK(obx_audit_verify_slice(st, 1, 0, &c, &r, &done));
    CHECK_INT(done, 0);
    {
        struct obx_audit_prune p;
        int more = 1;
        memset(&p, 0, sizeof p);
        while (more)
            CHECK_OK(obx_audit_prune_scan(st, 1700000003000, 10, &p, &more));
        CHECK(p.upto_id > c.last_id);
        more = 1;
        while (more)
            CHECK_OK(obx_audit_prune_batch(st, &p, 100, &n, &more));
    }
    CHECK_OK(obx_audit_verify(st, &whole));
    CHECK_INT(whole.first_bad_id, 0);
    CHECK(whole.checked < 15);
    do {
        CHECK_OK(obx_audit_verify_slice(st, 1, 0, &c, &r, &done));
    } while (!done);
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, whole.checked);
    CHECK_STR(r.head_hash, whole.head_hash);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* Collected export rows. */
struct rows {
    int n, stop_after;
    int64_t id[64];
    char kind[64][16];
    char channel[64][32];
    char prev[64][65];
    char hash[64][65]; /* "" when not sealed */
};

static int
on_entry(void *ctx, const struct obx_audit_entry *e)
{
    struct rows *r = ctx;

    if (r->n < 64) {
        r->id[r->n] = e->id;
        snprintf(r->kind[r->n], sizeof r->kind[r->n], "%s", e->kind);
        snprintf(r->channel[r->n], sizeof r->channel[r->n], "%s", e->channel_id);
        snprintf(r->prev[r->n], sizeof r->prev[r->n], "%s", e->prev_hash ? e->prev_hash : "");
        snprintf(r->hash[r->n], sizeof r->hash[r->n], "%s", e->hash ? e->hash : "");
    }
    r->n++;
    return r->stop_after && r->n >= r->stop_after;
}

/*
 * Three audit_log rows as a schema-7 database left them, ids 1..3, with the seals' ids
 * continuing after them (as 0009_lean_audit sets it).
 */
static enum obx_err
add_legacy_rows(struct obx_store *st)
{
    return obx_db_exec(
        st->db,
        "INSERT INTO audit_log (id, at_ms, kind, channel_id, external_message_id, record) VALUES"
        " (1, 1600000000000, 'transition', 'old', 'o1', '{\"message_id\":1,\"to\":\"queued\"}'),"
        " (2, 1600000001000, 'attempt', 'old', 'o1', '{\"message_id\":1,\"http_status\":200}'),"
        " (3, 1600000002000, 'transition', 'old2', 'o2', '{\"message_id\":2,\"to\":\"sent\"}');"
        "UPDATE sqlite_sequence SET seq = 3 WHERE name = 'audit_seals';");
}

static int
test_legacy_rows(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    struct obx_audit_report r;
    struct rows x;
    char why[200];
    int64_t n = 0;

    memset(&x, 0, sizeof x);
    CHECK(st);
    CHECK_OK(add_legacy_rows(st));
    CHECK_OK(deliver(st, "ch", "m", 1));
    /* The legacy rows are sealed first, two at a time; the events only once they all are. */
    CHECK_OK(obx_audit_seal(st, 2, &n));
    CHECK_INT(n, 2);
    CHECK_INT(query_int(st, "SELECT count(*) FROM audit_log WHERE hash IS NULL"), 1);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 2);
    CHECK_INT(r.unsealed, 1 + 3);
    /* The last legacy row, then (fewer than max legacy rows: none left) the events. */
    CHECK_OK(obx_audit_seal(st, 2, &n));
    CHECK_INT(n, 1 + 3);
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 0);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 6);
    CHECK_INT(r.seals, 4); /* three legacy rows and one seal */
    CHECK_INT(r.head_id, 4);

    /* The export: legacy rows first, each chained onto the one before, then the events. */
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 6);
    CHECK_INT(x.id[0], 1);
    CHECK_STR(x.kind[1], "attempt");
    CHECK_STR(x.channel[2], "old2");
    CHECK_STR(x.prev[0], OBX_AUDIT_GENESIS);
    CHECK_STR(x.prev[1], x.hash[0]);
    CHECK_STR(x.prev[2], x.hash[1]);
    CHECK_STR(x.prev[3], x.hash[2]); /* the events go on from the last legacy row */
    CHECK_STR(x.channel[3], "ch");
    CHECK(is_hex64(x.hash[5]));
    CHECK_STR(x.hash[5], r.head_hash);
    /* A window that holds the legacy rows only, and a channel filter. */
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_audit_export(st, 1600000001000, 1600000002001, NULL, on_entry, &x));
    CHECK_INT(x.n, 2);
    CHECK_INT(x.id[0], 2);
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, "old", on_entry, &x));
    CHECK_INT(x.n, 2);
    /* Stopped by the callback inside the legacy rows. */
    memset(&x, 0, sizeof x);
    x.stop_after = 1;
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 1);

    /* A legacy row changed: that row is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_log SET record = '{}' WHERE id = 2"));
    CHECK_INT(bad_id(st, why, sizeof why), 2);
    CHECK(strstr(why, "hash mismatch"));
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_log SET record = "
                                 "'{\"message_id\":1,\"http_status\":200}' WHERE id = 2"));
    CHECK_INT(bad_id(st, why, sizeof why), 0);
    /* A hash removed in the middle: the sealed row after it is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_log SET hash = NULL WHERE id = 2"));
    CHECK_INT(bad_id(st, why, sizeof why), 3);
    CHECK_STR(why, "sealed row after an unsealed one");
    /* Two legacy rows unsealed: the seal after them is named. */
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_log SET hash = NULL WHERE id = 3"));
    CHECK_INT(bad_id(st, why, sizeof why), 4);
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_legacy_last_unsealed(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    char why[200];
    int64_t n = 0;

    CHECK(st);
    CHECK_OK(add_legacy_rows(st));
    CHECK_OK(deliver(st, "ch", "m", 1));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(bad_id(st, why, sizeof why), 0);
    CHECK_OK(obx_db_exec(st->db, "UPDATE audit_log SET hash = NULL WHERE id = 3"));
    CHECK_INT(bad_id(st, why, sizeof why), 4);
    CHECK_STR(why, "sealed row after an unsealed one");
end:
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static int
test_export_events(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1), *other = NULL;
    struct rows x;
    char msg[300];
    int64_t n = 0, t0;

    memset(&x, 0, sizeof x);
    CHECK(st);
    t0 = fake.now_ms;
    CHECK_OK(deliver(st, "a", "m", 2));
    CHECK_OK(deliver(st, "b", "m", 1));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 9);
    CHECK_OK(deliver(st, "a", "u", 1)); /* not sealed yet */
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 12);
    CHECK_STR(x.prev[0], OBX_AUDIT_GENESIS);
    for (int i = 1; i < 9; i++)
        CHECK_STR(x.prev[i], x.hash[i - 1]);
    CHECK(is_hex64(x.hash[8]));
    CHECK_STR(x.hash[9], "");
    CHECK_STR(x.prev[9], "");
    CHECK_STR(x.hash[11], "");
    /* Channel filter. */
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, "b", on_entry, &x));
    CHECK_INT(x.n, 3);
    CHECK_STR(x.channel[0], "b");
    /* Time window: the first message's events only (at t0). */
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_audit_export(st, t0, t0 + 1, NULL, on_entry, &x));
    CHECK_INT(x.n, 3);
    /* Stop early, in the sealed part and in the unsealed part. */
    memset(&x, 0, sizeof x);
    x.stop_after = 2;
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 2);
    memset(&x, 0, sizeof x);
    x.stop_after = 10;
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 10);

    /* A keyed segment exported without the key: rows without hashes. */
    CHECK_OK(obx_audit_use_key(st, key_file(0, "export-test-key-0123456789\n"), 1, msg,
                               sizeof msg));
    CHECK_OK(obx_audit_seal(st, 100, &n)); /* the segment starts with the 3 waiting events */
    CHECK_INT(n, 3);
    CHECK_OK(deliver(st, "a", "k", 1));
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 3);
    other = open_store(0);
    CHECK(other);
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_audit_export(other, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 15);
    CHECK(is_hex64(x.hash[8]));
    CHECK_STR(x.hash[9], "");
    CHECK_STR(x.hash[14], "");
    /* With the key they have them. */
    memset(&x, 0, sizeof x);
    CHECK_OK(obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x));
    CHECK_INT(x.n, 15);
    CHECK(is_hex64(x.hash[14]));
    CHECK_STR(x.prev[9], x.hash[8]);
end:
    obx_store_free(other);
    obx_store_free(st);
    testdb_remove(db_path);
    remove_keys();
    TEST_END;
}

static int
count_export(struct obx_store *st, int *n)
{
    struct rows x;
    enum obx_err err;

    memset(&x, 0, sizeof x);
    err = obx_audit_export(st, 0, INT64_MAX, NULL, on_entry, &x);
    *n = x.n;
    return err;
}

/*
 * Allocation n fails during seal, verify and export: each returns an error (never OBX_OK
 * with a partial result); a failed seal leaves nothing sealed (its transaction is rolled
 * back), so the chain still verifies and the next seal takes everything.
 */
static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    struct obx_store *st = open_store(1);
    struct obx_audit_report r;
    char msg[300];
    int64_t n = 0;
    enum obx_err err = OBX_ENOMEM;
    int failures = 0, rows = 0;
    long i;

    CHECK(st);
    CHECK_OK(add_legacy_rows(st));
    CHECK_OK(obx_audit_use_key(st, key_file(0, "alloc-test-key-0123456789\n"), 1, msg, sizeof msg));
    CHECK_OK(deliver(st, "ch", "m", 2));
    for (i = 0; i < 1000; i++) {
        obx_mem_fail_after(i);
        err = obx_audit_seal(st, 100, &n);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break; /* the run got through */
        CHECK(err != OBX_OK);
        CHECK_INT(n, 0);
        CHECK_INT(query_int(st, "SELECT count(*) FROM audit_log WHERE hash IS NOT NULL"), 0);
        failures++;
    }
    CHECK(failures > 0);
    CHECK_INT(n, 9); /* the 3 legacy rows and the 6 events, all in the one seal that worked */
    CHECK_OK(obx_audit_seal(st, 100, &n));
    CHECK_INT(n, 0);
    CHECK_OK(obx_audit_verify(st, &r));
    CHECK_INT(r.first_bad_id, 0);
    CHECK_INT(r.checked, 9);
    for (i = 0, failures = 0; i < 1000; i++) {
        struct obx_audit_report v;
        obx_mem_fail_after(i);
        err = obx_audit_verify(st, &v);
        obx_mem_fail_after(-1);
        if (err == OBX_OK) {
            CHECK_INT(v.first_bad_id, 0);
            CHECK_INT(v.checked, 9);
            break;
        }
        CHECK_INT(err, OBX_ENOMEM);
        failures++;
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    for (i = 0, failures = 0; i < 1000; i++) {
        obx_mem_fail_after(i);
        err = count_export(st, &rows);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break;
        CHECK(err != OBX_OK);
        failures++;
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    CHECK_INT(rows, 9);
end:
    obx_mem_fail_after(-1);
    obx_store_free(st);
    testdb_remove(db_path);
    remove_keys();
    TEST_END;
}

/*
 * On PostgreSQL the records are written by obx_store_pg_audit_json_object, which must give
 * SQLite's json_object() text byte for byte, or a chain moved from one backend to the other
 * would not verify: every byte alone, then random strings of the bytes that matter.
 */
static int
json_object_is_sqlites(sqlite3 *db, const char *v, const char *n)
{
    sqlite3_stmt *s = NULL;
    struct obx_buf b;
    struct obx_store_pg_audit_member m[4] = {
        {"text", v, 0}, {"number", n, 1}, {"null", NULL, 0}, {"k\"ey\n", "", 0}};
    int same = 0;

    obx_buf_init(&b, 1 << 16);
    if (sqlite3_prepare_v2(db,
                           "SELECT json_object('text', ?1, 'number', ?2, 'null', NULL,"
                           " 'k\"ey' || char(10), '')",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_bind_text(s, 1, v, -1, SQLITE_STATIC) == SQLITE_OK &&
        sqlite3_bind_int64(s, 2, strtoll(n, NULL, 10)) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW && obx_store_pg_audit_json_object(&b, m, 4) == OBX_OK)
        same = strcmp((const char *)sqlite3_column_text(s, 0), obx_buf_str(&b)) == 0;
    if (!same)
        fprintf(stderr, "  differs for \"%s\": sqlite %s, ours %s\n", v,
                s ? (const char *)sqlite3_column_text(s, 0) : "?", obx_buf_str(&b));
    sqlite3_finalize(s);
    obx_buf_release(&b);
    return same;
}

static int
test_pg_records_as_sqlite(void)
{
    TEST_BEGIN;
    static const char alphabet[] = "a\"\\/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9\xe2\x80\xa8 {}:,";
    sqlite3 *db = NULL;
    char v[32];

    CHECK_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
    for (int c = 1; c < 256; c++) {
        v[0] = (char)c;
        v[1] = '\0';
        CHECK(json_object_is_sqlites(db, v, "-42"));
    }
    srand(7);
    for (int i = 0; i < 2000; i++) {
        int len = rand() % 30;
        for (int k = 0; k < len; k++)
            v[k] = alphabet[rand() % (int)(sizeof alphabet - 1)];
        v[len] = '\0';
        CHECK(json_object_is_sqlites(db, v, "1700000000000"));
    }
end:
    sqlite3_close(db);
    TEST_END;
}

static const struct test_case tests[] = {
    {"use_key", test_use_key},
    {"seal_verify_plain", test_seal_verify_plain},
    {"tamper_detected", test_tamper_detected},
    {"keyed_chain", test_keyed_chain},
    {"keyed_hashes_need_key", test_keyed_hashes_need_key},
    {"verify_slices", test_verify_slices},
    {"legacy_rows", test_legacy_rows},
    {"legacy_last_unsealed", test_legacy_last_unsealed},
    {"export_events", test_export_events},
    {"alloc_failure", test_alloc_failure},
    {"pg_records_as_sqlite", test_pg_records_as_sqlite},
    {NULL, NULL},
};

TEST_MAIN(tests)
