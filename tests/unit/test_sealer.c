/*
 * Unit tests of the audit sealer on SQLite (lib/sealer.c) and of the three steps of a seal
 * it runs (audit.h): prepare and finish on the writer, the chain on another connection.
 *
 * - The thread seals what the store thread wrote, beside it: every event sealed, the sent
 *   content hashed, and the chain verifies.
 * - A seal made between prepare and finish (retention seals before it prunes) wins: finish
 *   then adds nothing, where a second seal of the same range would fork the chain.
 * - Events written after prepare are left to the next seal: the chain read on the other
 *   connection stops at prepare's range.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "check.h"
#include "clock.h"
#include "log.h"
#include "sealer.h"
#include "store_queue.h"
#include "testdb.h"

#define T0 1800000000000LL
#define UNSEALED                                                     \
    "SELECT ((SELECT max(id) FROM transitions) >"                    \
    " (SELECT coalesce(max(transitions_upto), 0) FROM audit_seals))" \
    " + ((SELECT max(id) FROM attempts) > (SELECT coalesce(max(attempts_upto), 0) FROM audit_seals))"

static char path[256];

static struct obx_store *
fresh(struct obx_fake_clock *fc, int messages)
{
    struct obx_store *st = testdb_fresh_store(path, sizeof path, "sealer", fc, T0, 1000);
    char id[32];

    for (int i = 0; st && i < messages; i++) {
        snprintf(id, sizeof id, "m%d", i);
        if (testdb_deliver(st, id, T0, 0) != 0) {
            obx_store_free(st);
            return NULL;
        }
    }
    return st;
}

static int
verifies(void)
{
    struct obx_store *st = NULL;
    struct obx_audit_report r;
    int ok;

    if (obx_store_open(path, NULL, &st) != OBX_OK)
        return 0;
    ok = obx_audit_verify(st, &r) == OBX_OK && r.first_bad_id == 0 && r.unsealed == 0;
    if (!ok)
        fprintf(stderr, "  verify: first bad %lld, unsealed %lld\n", (long long)r.first_bad_id,
                (long long)r.unsealed);
    obx_store_free(st);
    return ok;
}

static int
test_thread_seals_beside_the_store_thread(void)
{
    struct obx_fake_clock fc;
    struct obx_store *st = fresh(&fc, 30);
    struct event_base *base = event_base_new();
    struct obx_storeq *q = NULL;
    struct obx_sealer *s = NULL;
    char msg[256];
    TEST_BEGIN;

    CHECK(st != NULL && base != NULL);
    CHECK_INT(testdb_int(path, UNSEALED), 2);
    CHECK_OK(obx_storeq_new(base, st, &q));
    st = NULL; /* the store thread's */
    CHECK_OK(obx_sealer_start_sqlite(path, q, NULL, &s, msg, sizeof msg));
    for (int i = 0; i < 500 && testdb_int(path, UNSEALED) != 0; i++)
        usleep(10000);
    CHECK_INT(testdb_int(path, UNSEALED), 0);
    obx_sealer_stop(s);
    s = NULL;
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM audit_messages WHERE sent_sha256 IS NULL"), 0);
    CHECK_INT(testdb_int(path, "SELECT sum(events) FROM audit_seals"), 90);
    CHECK(verifies());
end:
    obx_sealer_stop(s);
    if (q)
        obx_storeq_free(q);
    obx_store_free(st);
    if (base)
        event_base_free(base);
    testdb_remove(path);
    TEST_END;
}

static int
test_seal_between_prepare_and_finish_wins(void)
{
    struct obx_fake_clock fc;
    struct obx_store *st = fresh(&fc, 5), *reader = NULL;
    struct obx_audit_seal_plan p;
    int64_t sealed = -1;
    TEST_BEGIN;

    CHECK(st != NULL);
    CHECK_OK(obx_store_open(path, NULL, &reader));
    CHECK_OK(obx_audit_seal_prepare(st, 1000, &p));
    CHECK(p.any);
    CHECK_OK(obx_audit_seal(st, 1000, &sealed)); /* e.g. retention's, before its prune */
    CHECK_INT(sealed, 15);
    CHECK_OK(obx_audit_seal_chain(reader, &p));
    CHECK_INT(p.next.events, 15);
    CHECK_OK(obx_audit_seal_finish(st, &p, &sealed));
    CHECK_INT(sealed, 0);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM audit_seals WHERE id > 0"), 1);
    CHECK(verifies());
end:
    obx_store_free(reader);
    obx_store_free(st);
    testdb_remove(path);
    TEST_END;
}

static int
test_events_after_prepare_wait_for_the_next_seal(void)
{
    struct obx_fake_clock fc;
    struct obx_store *st = fresh(&fc, 4), *reader = NULL;
    struct obx_audit_seal_plan p;
    int64_t sealed = -1;
    TEST_BEGIN;

    CHECK(st != NULL);
    CHECK_OK(obx_store_open(path, NULL, &reader));
    CHECK_OK(obx_audit_seal_prepare(st, 1000, &p));
    CHECK_INT(testdb_deliver(st, "late", T0, 0), 0); /* committed before the chain is read */
    CHECK_OK(obx_audit_seal_chain(reader, &p));
    CHECK_OK(obx_audit_seal_finish(st, &p, &sealed));
    CHECK_INT(sealed, 12);
    CHECK_INT(testdb_int(path, UNSEALED), 2);
    CHECK_OK(obx_audit_seal(st, 1000, &sealed));
    CHECK_INT(sealed, 3);
    CHECK(verifies());
end:
    obx_store_free(reader);
    obx_store_free(st);
    testdb_remove(path);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"thread_seals_beside_the_store_thread", test_thread_seals_beside_the_store_thread},
        {"seal_between_prepare_and_finish_wins", test_seal_between_prepare_and_finish_wins},
        {"events_after_prepare_wait_for_the_next_seal",
         test_events_after_prepare_wait_for_the_next_seal},
        {NULL, NULL},
    };

    obx_log_setup(OBX_LOG_ERROR, OBX_LOG_TEXT, stderr);
    return test_run_table(tests, argc, argv);
}
