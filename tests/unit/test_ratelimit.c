/* test_ratelimit: token bucket pacing, pauses and reloads, on a simulated monotonic clock. */
#include "ratelimit.h"

#include <math.h>

#include "check.h"

#define RATE_290_PER_MIN (290.0 / 60.0)
#define TEN_MIN_MS (10 * 60 * INT64_C(1000))
#define WINDOW_MS (60 * INT64_C(1000))
#define MAX_TAKES 4000

/* Largest number of instants in any window [t, t + WINDOW_MS) of the sorted times[0..n). */
static int
max_in_window(const int64_t *times, int n)
{
    int best = 0, j = 0;

    for (int i = 0; i < n; i++) {
        while (j < n && times[j] < times[i] + WINDOW_MS)
            j++;
        if (j - i > best)
            best = j - i;
    }
    return best;
}

/* 290/min, burst 1; a caller that polls every millisecond and takes as soon as allowed. */
static int
test_window_290_stepping(void)
{
    static int64_t times[MAX_TAKES];
    struct obx_ratelimit rl;
    int n = 0;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, RATE_290_PER_MIN, 1, 0);
    for (int64_t t = 0; t < TEN_MIN_MS; t++) {
        int64_t w = obx_ratelimit_wait_ms(&rl, t);
        int taken = obx_ratelimit_take(&rl, t);

        CHECK_INT(w == 0, taken);               /* wait_ms says 0 exactly when take succeeds */
        CHECK(obx_ratelimit_take(&rl, t) == 0); /* burst 1: never two at once */
        if (taken) {
            CHECK(n < MAX_TAKES);
            times[n++] = t;
        }
    }
    if (max_in_window(times, n) > 291 || n < 2871 || n > 2929)
        fprintf(stderr, "  stepping: %d taken in 10 min, at most %d in 60 s\n", n,
                max_in_window(times, n));
    CHECK(max_in_window(times, n) <= 291);
    CHECK(n >= 2871 && n <= 2929); /* within 1% of 2900 */
end:
    TEST_END;
}

/* The same caller, but it sleeps exactly wait_ms between tokens: the take must then succeed. */
static int
test_window_290_jumping(void)
{
    static int64_t times[MAX_TAKES];
    struct obx_ratelimit rl;
    int64_t t = 5000; /* any origin */
    int n = 0;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, RATE_290_PER_MIN, 1, t);
    while (t < 5000 + TEN_MIN_MS) {
        int64_t w = obx_ratelimit_wait_ms(&rl, t);

        CHECK(w >= 0 && w <= 207);
        t += w;
        if (t >= 5000 + TEN_MIN_MS)
            break;
        CHECK(obx_ratelimit_take(&rl, t));
        CHECK(n < MAX_TAKES);
        times[n++] = t;
    }
    if (max_in_window(times, n) > 291 || n < 2871 || n > 2929)
        fprintf(stderr, "  jumping: %d taken in 10 min, at most %d in 60 s\n", n,
                max_in_window(times, n));
    CHECK(max_in_window(times, n) <= 291);
    CHECK(n >= 2871 && n <= 2929);
end:
    TEST_END;
}

/* Rate 0 is unlimited, but still honours a pause. */
static int
test_unlimited(void)
{
    struct obx_ratelimit rl;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, 0, 1, 0);
    for (int i = 0; i < 100000; i++)
        CHECK(obx_ratelimit_take(&rl, 0));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 0), 0);
    CHECK(!obx_ratelimit_paused(&rl, 0));

    obx_ratelimit_pause_until(&rl, 5000);
    CHECK(obx_ratelimit_paused(&rl, 1));
    CHECK(!obx_ratelimit_take(&rl, 1));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 1000), 4000);
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 4999), 1);
    CHECK(!obx_ratelimit_take(&rl, 4999));
    CHECK(!obx_ratelimit_paused(&rl, 5000));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 5000), 0);
    for (int i = 0; i < 1000; i++)
        CHECK(obx_ratelimit_take(&rl, 5000));

    /* negative and NaN rates are unlimited too; a burst below 1 is 1 */
    obx_ratelimit_init(&rl, -3.0, 0, 0);
    for (int i = 0; i < 100; i++)
        CHECK(obx_ratelimit_take(&rl, 0));
    obx_ratelimit_init(&rl, NAN, -4, 0);
    for (int i = 0; i < 100; i++)
        CHECK(obx_ratelimit_take(&rl, 0));
end:
    TEST_END;
}

/* Starts full; a burst drains; wait_ms rounds up to a whole ms that is enough. */
static int
test_burst_and_rounding(void)
{
    struct obx_ratelimit rl;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, 1.0, 3, 0);
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(!obx_ratelimit_take(&rl, 0));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 0), 1000);
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 400), 600);
    CHECK(!obx_ratelimit_take(&rl, 999));
    CHECK(obx_ratelimit_take(&rl, 1000));
    /* a long idle refills to burst, not beyond */
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(!obx_ratelimit_take(&rl, 100000));

    obx_ratelimit_init(&rl, 3.0, 1, 0); /* 333.33 ms per token */
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 0), 334);
    CHECK(!obx_ratelimit_take(&rl, 333));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 333), 1);
    CHECK(obx_ratelimit_take(&rl, 334));

    /* (1 - 0.184) * 1000 / 2 is 408.00000000000006 in doubles: still 408, not 409, and
     * waiting those 408 ms is enough for take() */
    obx_ratelimit_init(&rl, 2.0, 1, 0);
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 92), 408);
    CHECK(obx_ratelimit_take(&rl, 500));

    /* time going backwards grants nothing */
    obx_ratelimit_init(&rl, 1.0, 1, 10000);
    CHECK(obx_ratelimit_take(&rl, 10000));
    CHECK(!obx_ratelimit_take(&rl, 5000));
    CHECK(!obx_ratelimit_take(&rl, 10999));
    CHECK(obx_ratelimit_take(&rl, 11000));
end:
    TEST_END;
}

/* A pause blocks, ends on time, and the first request after it goes alone. */
static int
test_pause_blocks_then_one_alone(void)
{
    struct obx_ratelimit rl;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, RATE_290_PER_MIN, 5, 0); /* full: 5 tokens */
    obx_ratelimit_pause_until(&rl, 10000);
    CHECK(obx_ratelimit_paused(&rl, 0));
    CHECK(obx_ratelimit_paused(&rl, 9999));
    CHECK(!obx_ratelimit_paused(&rl, 10000));
    CHECK(!obx_ratelimit_take(&rl, 0));
    CHECK(!obx_ratelimit_take(&rl, 5000));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 5000), 5000);
    CHECK(!obx_ratelimit_take(&rl, 9999));
    CHECK(obx_ratelimit_take(&rl, 10000));
    CHECK(!obx_ratelimit_take(&rl, 10000)); /* no burst right after the pause */
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 10000), 207);
    CHECK(obx_ratelimit_take(&rl, 10207));
    CHECK(!obx_ratelimit_paused(&rl, 10207));
    /* after the pause the bucket refills to burst again */
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(!obx_ratelimit_take(&rl, 100000));
end:
    TEST_END;
}

/* Of two pauses the later end wins, whatever the order they come in. */
static int
test_pause_keeps_later(void)
{
    struct obx_ratelimit rl;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, 0, 1, 0);
    obx_ratelimit_pause_until(&rl, 20000);
    obx_ratelimit_pause_until(&rl, 15000);
    CHECK(obx_ratelimit_paused(&rl, 17000));
    CHECK(!obx_ratelimit_take(&rl, 17000));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 17000), 3000);
    obx_ratelimit_pause_until(&rl, 25000);
    CHECK(obx_ratelimit_paused(&rl, 24999));
    CHECK(!obx_ratelimit_take(&rl, 24999));
    CHECK(obx_ratelimit_take(&rl, 25000));
    /* a pause that is already over only empties the bucket (nothing to empty when unlimited) */
    obx_ratelimit_pause_until(&rl, 1000);
    CHECK(!obx_ratelimit_paused(&rl, 25000));
    CHECK(obx_ratelimit_take(&rl, 25000));
end:
    TEST_END;
}

/* A pause shorter than the pacing interval does not let a request through early. */
static int
test_short_pause_keeps_pacing(void)
{
    struct obx_ratelimit rl;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, RATE_290_PER_MIN, 1, 0);
    CHECK(obx_ratelimit_take(&rl, 0)); /* the request that gets a 429 with Retry-After: 0 */
    obx_ratelimit_pause_until(&rl, 50);
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 0), 207);
    CHECK(!obx_ratelimit_take(&rl, 50));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 50), 157);
    CHECK(!obx_ratelimit_take(&rl, 206));
    CHECK(obx_ratelimit_take(&rl, 207));

    /* a pause with a rate: wait for its end, then for the token still missing */
    obx_ratelimit_init(&rl, 1.0, 1, 0);
    CHECK(obx_ratelimit_take(&rl, 0));
    obx_ratelimit_pause_until(&rl, 300);
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 0), 1000);
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 300), 700);
    CHECK(!obx_ratelimit_take(&rl, 999));
    CHECK(obx_ratelimit_take(&rl, 1000));

    /* a pause that is already over still empties the bucket */
    obx_ratelimit_init(&rl, 1.0, 5, 0);
    obx_ratelimit_pause_until(&rl, 0);
    CHECK(!obx_ratelimit_paused(&rl, 0));
    CHECK(!obx_ratelimit_take(&rl, 0));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 0), 1000);
    CHECK(obx_ratelimit_take(&rl, 1000));
end:
    TEST_END;
}

/* A long 429 pause under a steady caller: still at most 291 in any minute. */
static int
test_pauses_keep_window(void)
{
    static int64_t times[MAX_TAKES];
    struct obx_ratelimit rl;
    int n = 0;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, RATE_290_PER_MIN, 1, 0);
    for (int64_t t = 0; t < TEN_MIN_MS; t++) {
        if (t % 37000 == 36999)
            obx_ratelimit_pause_until(&rl, t + (t / 37000) % 3 * 400); /* 0, 400, 800 ms */
        if (obx_ratelimit_take(&rl, t)) {
            CHECK(n < MAX_TAKES);
            times[n++] = t;
        }
    }
    CHECK(max_in_window(times, n) <= 291);
end:
    TEST_END;
}

/* Reload: tokens earned so far are kept (clamped), the pause is kept. */
static int
test_set_rate(void)
{
    struct obx_ratelimit rl;
    TEST_BEGIN;

    obx_ratelimit_init(&rl, 1.0, 10, 0);
    for (int i = 0; i < 10; i++)
        CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(!obx_ratelimit_take(&rl, 0));
    obx_ratelimit_set_rate(&rl, 2.0, 10, 1000); /* 1 token earned at the old rate */
    CHECK(obx_ratelimit_take(&rl, 1000));
    CHECK(!obx_ratelimit_take(&rl, 1000));
    CHECK_INT(obx_ratelimit_wait_ms(&rl, 1000), 500); /* the new rate */
    CHECK(obx_ratelimit_take(&rl, 1500));

    /* a smaller burst clamps the tokens */
    obx_ratelimit_init(&rl, 1.0, 10, 0);
    obx_ratelimit_set_rate(&rl, 1.0, 2, 0);
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(!obx_ratelimit_take(&rl, 0));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(obx_ratelimit_take(&rl, 100000));
    CHECK(!obx_ratelimit_take(&rl, 100000));

    /* the pause survives a reload */
    obx_ratelimit_init(&rl, 1.0, 1, 0);
    obx_ratelimit_pause_until(&rl, 5000);
    obx_ratelimit_set_rate(&rl, 100.0, 1, 1000);
    CHECK(obx_ratelimit_paused(&rl, 4000));
    CHECK(!obx_ratelimit_take(&rl, 4000));
    CHECK(obx_ratelimit_take(&rl, 5000));
    CHECK(!obx_ratelimit_take(&rl, 5000));

    /* unlimited -> limited starts full; limited -> unlimited lets everything through */
    obx_ratelimit_init(&rl, 0, 1, 0);
    for (int i = 0; i < 50; i++)
        CHECK(obx_ratelimit_take(&rl, 0));
    obx_ratelimit_set_rate(&rl, 1.0, 3, 0);
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(obx_ratelimit_take(&rl, 0));
    CHECK(!obx_ratelimit_take(&rl, 0));
    obx_ratelimit_set_rate(&rl, 0, 3, 0);
    for (int i = 0; i < 50; i++)
        CHECK(obx_ratelimit_take(&rl, 0));
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"window_290_stepping", test_window_290_stepping},
    {"window_290_jumping", test_window_290_jumping},
    {"unlimited", test_unlimited},
    {"burst_and_rounding", test_burst_and_rounding},
    {"pause_blocks_then_one_alone", test_pause_blocks_then_one_alone},
    {"pause_keeps_later", test_pause_keeps_later},
    {"short_pause_keeps_pacing", test_short_pause_keeps_pacing},
    {"pauses_keep_window", test_pauses_keep_window},
    {"set_rate", test_set_rate},
    {NULL, NULL},
};

TEST_MAIN(tests)
