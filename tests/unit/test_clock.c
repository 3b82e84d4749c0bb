/*
 * test_clock: the real clock reads the system's wall and monotonic clocks and moves
 * forward; a fake clock reads what it was set to, moves only by hand, and its two
 * readings are independent; and the RFC 3339 formatting of epoch milliseconds.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "clock.h"

static int64_t
sys_ms(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Each reading lies between the system's readings taken just before and just after it. */
static int
test_real_reads_system(void)
{
    struct obx_clock *c = obx_clock_real();
    int64_t before, got, after;
    TEST_BEGIN;

    CHECK(c != NULL);
    CHECK(obx_clock_real() == c); /* one process-wide clock */
    before = sys_ms(CLOCK_REALTIME);
    got = obx_now_ms(c);
    after = sys_ms(CLOCK_REALTIME);
    CHECK(before <= got && got <= after);
    CHECK(got > 1600000000000LL); /* epoch milliseconds, not seconds */

    before = sys_ms(CLOCK_MONOTONIC);
    got = obx_mono_ms(c);
    after = sys_ms(CLOCK_MONOTONIC);
    CHECK(before <= got && got <= after);
end:
    TEST_END;
}

/* The monotonic reading never goes back and does move (the loop only waits for a tick). */
static int
test_real_moves_forward(void)
{
    struct obx_clock *c = obx_clock_real();
    int64_t first = obx_mono_ms(c), prev = first, wall = obx_now_ms(c), cur = first;
    int64_t guard = sys_ms(CLOCK_MONOTONIC) + 5000; /* stops a broken clock, asserts nothing */
    TEST_BEGIN;

    while (cur == first && sys_ms(CLOCK_MONOTONIC) < guard) {
        cur = obx_mono_ms(c);
        CHECK(cur >= prev);
        prev = cur;
    }
    CHECK(cur > first);
    CHECK(obx_now_ms(c) >= wall);
end:
    TEST_END;
}

/* A fake clock reads what it was given; each reading moves only when that field is set. */
static int
test_fake(void)
{
    struct obx_fake_clock fc;
    struct obx_clock *c = &fc.base;
    TEST_BEGIN;

    obx_clock_fake_init(&fc, 1700000000000LL, 42);
    CHECK_INT(obx_now_ms(c), 1700000000000LL);
    CHECK_INT(obx_mono_ms(c), 42);
    CHECK_INT(obx_now_ms(c), 1700000000000LL); /* reading does not move it */

    fc.now_ms += 1500; /* advance the wall clock only */
    CHECK_INT(obx_now_ms(c), 1700000001500LL);
    CHECK_INT(obx_mono_ms(c), 42);
    fc.mono_ms += 250; /* and the monotonic one only */
    CHECK_INT(obx_mono_ms(c), 292);
    CHECK_INT(obx_now_ms(c), 1700000001500LL);
    fc.now_ms -= 3600000; /* the wall clock may be set back (NTP); monotonic does not follow */
    CHECK_INT(obx_now_ms(c), 1699996401500LL);
    CHECK_INT(obx_mono_ms(c), 292);

    /* Init again: both readings reset; the real clock is another object, untouched. */
    obx_clock_fake_init(&fc, 0, 0);
    CHECK_INT(obx_now_ms(c), 0);
    CHECK_INT(obx_mono_ms(c), 0);
    CHECK(obx_now_ms(obx_clock_real()) > 1600000000000LL);
end:
    TEST_END;
}

static int
test_format(void)
{
    char out[32];
    TEST_BEGIN;

    obx_clock_format_ms(0, out, sizeof out);
    CHECK_STR(out, "1970-01-01T00:00:00.000Z");
    obx_clock_format_ms(1700000000123LL, out, sizeof out);
    CHECK_STR(out, "2023-11-14T22:13:20.123Z");
    obx_clock_format_ms(1709251199999LL, out, sizeof out); /* leap day, last millisecond */
    CHECK_STR(out, "2024-02-29T23:59:59.999Z");
    CHECK_INT(strlen(out), 24);
    obx_clock_format_ms(1709251199999LL, out, 25); /* the documented minimum */
    CHECK_STR(out, "2024-02-29T23:59:59.999Z");
    memset(out, 'x', sizeof out);
    obx_clock_format_ms(1709251199999LL, out, 11); /* truncated, still terminated */
    CHECK_STR(out, "2024-02-29");
    CHECK(out[11] == 'x');
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"real_reads_system", test_real_reads_system},
    {"real_moves_forward", test_real_moves_forward},
    {"fake", test_fake},
    {"format", test_format},
    {NULL, NULL},
};

TEST_MAIN(tests)
