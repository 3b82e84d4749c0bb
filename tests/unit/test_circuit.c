/* test_circuit: the outage breaker's transitions, the one-probe rule and the doubling. */
#include "circuit.h"

#include "check.h"

/* Records n failures at now_mono_ms. */
static void
fail_n(struct obx_circuit *c, int n, int64_t now_mono_ms)
{
    for (int i = 0; i < n; i++)
        obx_circuit_record(c, 0, now_mono_ms);
}

static int
test_init_defaults(void)
{
    struct obx_circuit c;
    TEST_BEGIN;

    obx_circuit_init(&c, 0, 0, 0);
    CHECK_INT(c.failure_threshold, 5);
    CHECK_INT(c.min_open_ms, 1000);
    CHECK_INT(c.max_open_ms, 30000);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    CHECK(obx_circuit_allow(&c, 0));
    CHECK(obx_circuit_allow(&c, 0)); /* CLOSED never limits */
    CHECK_INT(obx_circuit_wait_ms(&c, 0), 0);

    obx_circuit_init(&c, -1, -5, -5);
    CHECK_INT(c.failure_threshold, 5);
    CHECK_INT(c.min_open_ms, 1000);
    CHECK_INT(c.max_open_ms, 30000);

    obx_circuit_init(&c, 3, 5000, 2000); /* max below min is raised to it */
    CHECK_INT(c.failure_threshold, 3);
    CHECK_INT(c.min_open_ms, 5000);
    CHECK_INT(c.max_open_ms, 5000);
end:
    TEST_END;
}

static int
test_state_names(void)
{
    TEST_BEGIN;
    CHECK_STR(obx_circuit_state_name(OBX_CIRCUIT_CLOSED), "closed");
    CHECK_STR(obx_circuit_state_name(OBX_CIRCUIT_OPEN), "open");
    CHECK_STR(obx_circuit_state_name(OBX_CIRCUIT_HALF_OPEN), "half_open");
    CHECK_STR(obx_circuit_state_name((enum obx_circuit_state)42), "unknown");
end:
    TEST_END;
}

/* Failures must be consecutive: a success in between resets the count. */
static int
test_opens_at_threshold(void)
{
    struct obx_circuit c;
    TEST_BEGIN;

    obx_circuit_init(&c, 5, 1000, 30000);
    fail_n(&c, 4, 100);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    obx_circuit_record(&c, 1, 200);
    CHECK_INT(c.consecutive_failures, 0);
    fail_n(&c, 4, 300);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    CHECK(obx_circuit_allow(&c, 300));
    obx_circuit_record(&c, 0, 400); /* the fifth in a row */
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
    CHECK_INT(c.opened_at_mono_ms, 400);
    CHECK_INT(c.open_ms, 1000);
    CHECK(!obx_circuit_allow(&c, 400));
    CHECK_INT(obx_circuit_wait_ms(&c, 400), 1000);
    CHECK_INT(obx_circuit_wait_ms(&c, 1000), 400);
    CHECK(!obx_circuit_allow(&c, 1399));
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);

    obx_circuit_init(&c, 1, 1000, 30000); /* threshold 1: the first failure opens */
    obx_circuit_record(&c, 0, 0);
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
end:
    TEST_END;
}

/* When the open interval is over exactly one request (the probe) goes through. */
static int
test_one_probe(void)
{
    struct obx_circuit c;
    TEST_BEGIN;

    obx_circuit_init(&c, 2, 1000, 30000);
    fail_n(&c, 2, 0);
    CHECK(!obx_circuit_allow(&c, 999));
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
    CHECK_INT(obx_circuit_wait_ms(&c, 1000), 0);
    CHECK_INT(obx_circuit_wait_ms(&c, 5000), 0);
    CHECK(obx_circuit_allow(&c, 1000)); /* the probe */
    CHECK_INT(c.state, OBX_CIRCUIT_HALF_OPEN);
    CHECK(c.probe_in_flight);
    for (int i = 0; i < 100; i++)
        CHECK(!obx_circuit_allow(&c, 1000 + i * 1000));  /* nothing else while it flies */
    CHECK_INT(obx_circuit_wait_ms(&c, 1000), c.open_ms); /* a re-check hint */
    CHECK_STR(obx_circuit_state_name(c.state), "half_open");
end:
    TEST_END;
}

/*
 * Held open until another node's breaker would have probed (a takeover on PostgreSQL): no
 * request before then, then one probe; a failed probe waits twice the rest; a later opening
 * of its own and a probe in flight are kept.
 */
static int
test_hold_until(void)
{
    struct obx_circuit c;
    TEST_BEGIN;

    obx_circuit_init(&c, 5, 1000, 30000);
    obx_circuit_hold_until(&c, 500, 1000); /* already over: nothing */
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    obx_circuit_hold_until(&c, 9000, 1000);
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
    CHECK_INT(obx_circuit_wait_ms(&c, 1000), 8000);
    CHECK(!obx_circuit_allow(&c, 8999));
    CHECK(obx_circuit_allow(&c, 9000)); /* the probe */
    obx_circuit_hold_until(&c, 20000, 9001);
    CHECK_INT(c.state, OBX_CIRCUIT_HALF_OPEN);
    obx_circuit_record(&c, 0, 9100);
    CHECK_INT(c.open_ms, 16000);
    obx_circuit_hold_until(&c, 12000, 9200); /* earlier than its own: kept */
    CHECK_INT(obx_circuit_wait_ms(&c, 9100), 16000);
    obx_circuit_record(&c, 1, 9300);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
end:
    TEST_END;
}

/* Each failed probe reopens for twice as long, up to max_open_ms; opened_at stays put. */
static int
test_failed_probes_double(void)
{
    static const int64_t want_open_ms[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
    struct obx_circuit c;
    int64_t t = 100;
    TEST_BEGIN;

    obx_circuit_init(&c, 5, 1000, 30000);
    fail_n(&c, 5, t);
    for (size_t i = 0; i < sizeof(want_open_ms) / sizeof(want_open_ms[0]); i++) {
        CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
        CHECK_INT(c.open_ms, want_open_ms[i]);
        CHECK_INT(obx_circuit_wait_ms(&c, t), want_open_ms[i]);
        CHECK(!obx_circuit_allow(&c, t + want_open_ms[i] - 1));
        t += want_open_ms[i];
        CHECK(obx_circuit_allow(&c, t));
        CHECK(!obx_circuit_allow(&c, t));
        t += 250; /* the probe takes a while, then fails */
        obx_circuit_record(&c, 0, t);
        CHECK_INT(c.opened_at_mono_ms, 100); /* the outage started at 100 */
        CHECK(!c.probe_in_flight);
    }

    /* a max that is not a power-of-two multiple of min is reached exactly */
    obx_circuit_init(&c, 1, 1000, 2500);
    obx_circuit_record(&c, 0, 0);
    CHECK_INT(c.open_ms, 1000);
    CHECK(obx_circuit_allow(&c, 1000));
    obx_circuit_record(&c, 0, 1000);
    CHECK_INT(c.open_ms, 2000);
    CHECK(obx_circuit_allow(&c, 3000));
    obx_circuit_record(&c, 0, 3000);
    CHECK_INT(c.open_ms, 2500);
    CHECK(obx_circuit_allow(&c, 5500));
    obx_circuit_record(&c, 0, 5500);
    CHECK_INT(c.open_ms, 2500);
    CHECK_INT(obx_circuit_wait_ms(&c, 5500), 2500);
end:
    TEST_END;
}

/* A successful probe closes and resets everything: the next outage starts from scratch. */
static int
test_probe_success_closes(void)
{
    struct obx_circuit c;
    TEST_BEGIN;

    obx_circuit_init(&c, 3, 1000, 30000);
    fail_n(&c, 3, 0);
    CHECK(obx_circuit_allow(&c, 1000));
    obx_circuit_record(&c, 0, 1100); /* open_ms 2000, until 3100 */
    CHECK(obx_circuit_allow(&c, 3100));
    obx_circuit_record(&c, 0, 3200); /* open_ms 4000, until 7200 */
    CHECK_INT(c.open_ms, 4000);
    CHECK(obx_circuit_allow(&c, 7200));
    obx_circuit_record(&c, 1, 7300);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    CHECK_INT(c.consecutive_failures, 0);
    CHECK_INT(c.open_ms, 1000);
    CHECK(!c.probe_in_flight);
    CHECK_INT(c.opened_at_mono_ms, 0);
    CHECK(obx_circuit_allow(&c, 7300));
    CHECK(obx_circuit_allow(&c, 7300));
    CHECK_INT(obx_circuit_wait_ms(&c, 7300), 0);

    fail_n(&c, 2, 8000); /* the count starts from 0 again */
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    obx_circuit_record(&c, 0, 8000);
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
    CHECK_INT(c.open_ms, 1000); /* not 8000: the doubling was reset */
    CHECK_INT(c.opened_at_mono_ms, 8000);
    CHECK_INT(obx_circuit_wait_ms(&c, 8000), 1000);
end:
    TEST_END;
}

/* Answers to requests started before the breaker opened. */
static int
test_late_results(void)
{
    struct obx_circuit c;
    TEST_BEGIN;

    obx_circuit_init(&c, 5, 1000, 30000);
    fail_n(&c, 5, 0);    /* OPEN until 1000 */
    fail_n(&c, 10, 500); /* more failures from before: no extension, no doubling */
    CHECK_INT(c.state, OBX_CIRCUIT_OPEN);
    CHECK_INT(c.open_until_mono_ms, 1000);
    CHECK_INT(c.open_ms, 1000);
    CHECK_INT(obx_circuit_wait_ms(&c, 500), 500);
    obx_circuit_record(&c, 1, 600); /* Partoo answered after all: it is reachable */
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    CHECK(obx_circuit_allow(&c, 600));

    /* a late success while the probe flies closes too, and the probe's answer then
     * lands on a CLOSED breaker as an ordinary result */
    fail_n(&c, 5, 2000);
    CHECK(obx_circuit_allow(&c, 3000));
    CHECK_INT(c.state, OBX_CIRCUIT_HALF_OPEN);
    obx_circuit_record(&c, 1, 3100);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    CHECK(!c.probe_in_flight);
    obx_circuit_record(&c, 0, 3200);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
    CHECK_INT(c.consecutive_failures, 1);

    /* a 429 or 4xx is a success for the breaker: the caller passes success = 1 */
    obx_circuit_init(&c, 2, 1000, 30000);
    obx_circuit_record(&c, 0, 0);
    obx_circuit_record(&c, 1, 0);
    obx_circuit_record(&c, 0, 0);
    CHECK_INT(c.state, OBX_CIRCUIT_CLOSED);
end:
    TEST_END;
}

/* A long outage: the breaker probes every max_open_ms, never more often. */
static int
test_long_outage_probe_rate(void)
{
    struct obx_circuit c;
    int probes = 0;
    TEST_BEGIN;

    obx_circuit_init(&c, 5, 1000, 30000);
    for (int64_t t = 0; t < 24 * 3600 * INT64_C(1000); t += 100) {
        if (!obx_circuit_allow(&c, t))
            continue;
        if (c.state == OBX_CIRCUIT_HALF_OPEN)
            probes++;
        obx_circuit_record(&c, 0, t + 50); /* everything times out quickly */
    }
    /* 1+2+4+8+16 s of warm-up, then one probe per 30 s (plus 50 ms per probe) */
    CHECK(probes > 24 * 3600 / 31 && probes <= 24 * 3600 / 30 + 5);
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"init_defaults", test_init_defaults},
    {"state_names", test_state_names},
    {"opens_at_threshold", test_opens_at_threshold},
    {"one_probe", test_one_probe},
    {"hold_until", test_hold_until},
    {"failed_probes_double", test_failed_probes_double},
    {"probe_success_closes", test_probe_success_closes},
    {"late_results", test_late_results},
    {"long_outage_probe_rate", test_long_outage_probe_rate},
    {NULL, NULL},
};

TEST_MAIN(tests)
