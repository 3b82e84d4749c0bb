/* test_backoff: the retry table, the PRNG, jittered delays and Retry-After parsing. */
#include "backoff.h"

#include <limits.h>

#include "check.h"

/* Sun, 10 Mar 2024 12:00:00 GMT */
#define NOW_2024_MS INT64_C(1710072000000)
/* Sun, 06 Nov 1994 08:49:37 GMT, the RFC 9110 example */
#define RFC_EXAMPLE_MS INT64_C(784111777000)
#define SIX_HOURS_MS (6 * 3600 * INT64_C(1000))

/* ---- classification ---------------------------------------------------------------------- */

static int
test_classify_table(void)
{
    static const struct {
        int status;
        enum obx_outcome want;
    } cases[] = {
        {0, OBX_OUTCOME_TRANSPORT},      {100, OBX_OUTCOME_RETRY},    {199, OBX_OUTCOME_RETRY},
        {200, OBX_OUTCOME_ACCEPTED},     {201, OBX_OUTCOME_ACCEPTED}, {299, OBX_OUTCOME_ACCEPTED},
        {300, OBX_OUTCOME_RETRY},        {304, OBX_OUTCOME_RETRY},    {399, OBX_OUTCOME_RETRY},
        {400, OBX_OUTCOME_FATAL},        {401, OBX_OUTCOME_AUTH},     {402, OBX_OUTCOME_FATAL},
        {403, OBX_OUTCOME_AUTH},         {404, OBX_OUTCOME_FATAL},    {407, OBX_OUTCOME_FATAL},
        {408, OBX_OUTCOME_RETRY},        {409, OBX_OUTCOME_FATAL},    {413, OBX_OUTCOME_FATAL},
        {415, OBX_OUTCOME_FATAL},        {422, OBX_OUTCOME_FATAL},    {424, OBX_OUTCOME_FATAL},
        {425, OBX_OUTCOME_RETRY},        {426, OBX_OUTCOME_FATAL},    {428, OBX_OUTCOME_FATAL},
        {429, OBX_OUTCOME_RATE_LIMITED}, {430, OBX_OUTCOME_FATAL},    {499, OBX_OUTCOME_FATAL},
        {500, OBX_OUTCOME_RETRY},        {502, OBX_OUTCOME_RETRY},    {503, OBX_OUTCOME_RETRY},
        {504, OBX_OUTCOME_RETRY},        {599, OBX_OUTCOME_RETRY},    {600, OBX_OUTCOME_RETRY},
        {-1, OBX_OUTCOME_RETRY},         {99, OBX_OUTCOME_RETRY},     {INT_MAX, OBX_OUTCOME_RETRY},
    };
    TEST_BEGIN;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum obx_outcome got = obx_backoff_classify(cases[i].status);

        if (got != cases[i].want)
            fprintf(stderr, "  status %d\n", cases[i].status);
        CHECK_STR(obx_backoff_outcome_name(got), obx_backoff_outcome_name(cases[i].want));
    }
end:
    TEST_END;
}

static int
test_outcome_names(void)
{
    TEST_BEGIN;
    CHECK_STR(obx_backoff_outcome_name(OBX_OUTCOME_ACCEPTED), "accepted");
    CHECK_STR(obx_backoff_outcome_name(OBX_OUTCOME_FATAL), "fatal");
    CHECK_STR(obx_backoff_outcome_name(OBX_OUTCOME_AUTH), "auth");
    CHECK_STR(obx_backoff_outcome_name(OBX_OUTCOME_RATE_LIMITED), "rate_limited");
    CHECK_STR(obx_backoff_outcome_name(OBX_OUTCOME_RETRY), "retry");
    CHECK_STR(obx_backoff_outcome_name(OBX_OUTCOME_TRANSPORT), "transport");
    CHECK_STR(obx_backoff_outcome_name((enum obx_outcome)42), "unknown");
end:
    TEST_END;
}

/* ---- PRNG -------------------------------------------------------------------------------- */

static int
test_rng_deterministic(void)
{
    struct obx_rng a, b, z;
    int differ = 0;
    TEST_BEGIN;

    obx_backoff_rng_seed(&a, 42);
    obx_backoff_rng_seed(&b, 42);
    obx_backoff_rng_seed(&z, 0);
    CHECK(z.s[0] | z.s[1] | z.s[2] | z.s[3]); /* seed 0 still gives a usable state */
    for (int i = 0; i < 1000; i++)
        CHECK(obx_backoff_rng_next(&a) == obx_backoff_rng_next(&b));
    obx_backoff_rng_seed(&b, 43);
    for (int i = 0; i < 10; i++)
        differ += obx_backoff_rng_next(&a) != obx_backoff_rng_next(&b);
    CHECK(differ >= 9);
    CHECK(obx_backoff_rng_next(&z) != 0 || obx_backoff_rng_next(&z) != 0);
end:
    TEST_END;
}

static int
test_rng_uniform(void)
{
    enum { N = 70000, K = 7 };
    struct obx_rng r;
    int hist[K] = {0};
    TEST_BEGIN;

    obx_backoff_rng_seed(&r, 1);
    CHECK_INT(obx_backoff_rng_uniform(&r, 0), 0);
    CHECK_INT(obx_backoff_rng_uniform(&r, -5), 0);
    for (int i = 0; i < N; i++) {
        int64_t v = obx_backoff_rng_uniform(&r, K - 1);

        CHECK(v >= 0 && v <= K - 1);
        hist[v]++;
    }
    for (int k = 0; k < K; k++)
        CHECK(hist[k] > N / K * 9 / 10 && hist[k] < N / K * 11 / 10);
    for (int i = 0; i < 1000; i++) {
        int64_t v = obx_backoff_rng_uniform(&r, INT64_MAX);
        int64_t w = obx_backoff_rng_uniform(&r, 1);

        CHECK(v >= 0);
        CHECK(w == 0 || w == 1);
    }
    /* No modulo bias: with range 3 * 2^61, a plain x % range would put 3/4 of the draws
     * below 2^62 instead of 2/3. */
    {
        int below = 0;

        for (int i = 0; i < 30000; i++)
            below += obx_backoff_rng_uniform(&r, 3 * (INT64_C(1) << 61) - 1) < (INT64_C(1) << 62);
        CHECK(below > 30000 * 65 / 100 && below < 30000 * 69 / 100);
    }
end:
    TEST_END;
}

/* ---- delays ------------------------------------------------------------------------------ */

static int
test_delay_bounds_and_mean(void)
{
    enum { DRAWS = 20000 };
    const int64_t base_ms = 1000, cap_ms = 60000;
    struct obx_rng r;
    TEST_BEGIN;

    obx_backoff_rng_seed(&r, 7);
    for (int attempt = 1; attempt <= 12; attempt++) {
        int64_t ceiling = base_ms << (attempt - 1);
        int64_t max_seen = 0;
        double sum = 0, mean;

        if (ceiling > cap_ms)
            ceiling = cap_ms;
        for (int i = 0; i < DRAWS; i++) {
            int64_t d = obx_backoff_delay_ms(&r, base_ms, cap_ms, attempt);

            CHECK(d >= 0);
            CHECK(d <= ceiling);
            sum += (double)d;
            if (d > max_seen)
                max_seen = d;
        }
        mean = sum / DRAWS;
        if (mean < 0.47 * (double)ceiling || mean > 0.53 * (double)ceiling)
            fprintf(stderr, "  attempt %d mean %.1f ceiling %" PRId64 "\n", attempt, mean, ceiling);
        CHECK(mean > 0.47 * (double)ceiling && mean < 0.53 * (double)ceiling);
        CHECK(max_seen > ceiling * 95 / 100); /* the whole range is used */
    }
end:
    TEST_END;
}

static int
test_delay_huge_attempts(void)
{
    static const int attempts[] = {31, 32, 61, 62, 63, 64, 65, 127, 1000, INT_MAX - 1, INT_MAX};
    struct obx_rng r;
    TEST_BEGIN;

    obx_backoff_rng_seed(&r, 99);
    for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
        for (int k = 0; k < 200; k++) {
            int64_t d = obx_backoff_delay_ms(&r, 1000, 300000, attempts[i]);
            int64_t e = obx_backoff_delay_ms(&r, 1, INT64_MAX, attempts[i]);
            int64_t f = obx_backoff_delay_ms(&r, INT64_MAX / 2, INT64_MAX, attempts[i]);

            CHECK(d >= 0 && d <= 300000);
            CHECK(e >= 0);
            CHECK(f >= 0);
        }
    }
    /* the ceiling is exact right below the cap: 1 << 62 fits in INT64_MAX */
    for (int k = 0; k < 200; k++)
        CHECK(obx_backoff_delay_ms(&r, 1, INT64_MAX, 63) <= INT64_C(1) << 62);
end:
    TEST_END;
}

static int
test_delay_edges(void)
{
    struct obx_rng r;
    TEST_BEGIN;

    obx_backoff_rng_seed(&r, 5);
    for (int k = 0; k < 500; k++) {
        CHECK(obx_backoff_delay_ms(&r, 1000, 60000, 0) <= 1000); /* attempt < 1 is 1 */
        CHECK(obx_backoff_delay_ms(&r, 1000, 60000, -7) <= 1000);
        CHECK(obx_backoff_delay_ms(&r, 1000, 60000, 1) <= 1000);
        CHECK(obx_backoff_delay_ms(&r, 1000, 60000, 2) <= 2000);
        CHECK(obx_backoff_delay_ms(&r, 5000, 3000, 1) <= 3000); /* base above the cap */
    }
    CHECK_INT(obx_backoff_delay_ms(&r, 0, 60000, 5), 0);
    CHECK_INT(obx_backoff_delay_ms(&r, -10, 60000, 5), 0);
    CHECK_INT(obx_backoff_delay_ms(&r, 1000, 0, 5), 0);
    CHECK_INT(obx_backoff_delay_ms(&r, 1000, -1, 5), 0);
end:
    TEST_END;
}

static int
test_next_delay_floor(void)
{
    struct obx_rng r, a, b;
    int above_floor_seen = 0;
    TEST_BEGIN;

    obx_backoff_rng_seed(&r, 11);
    for (int k = 0; k < 2000; k++) {
        int64_t d;

        d = obx_backoff_next_delay_ms(&r, 1000, 60000, 1, -1);
        CHECK(d >= 0 && d <= 1000);
        d = obx_backoff_next_delay_ms(&r, 1000, 60000, 1, 0);
        CHECK(d >= 0 && d <= 1000);
        d = obx_backoff_next_delay_ms(&r, 1000, 60000, 1, 5000); /* floor above the ceiling */
        CHECK_INT(d, 5000);
        d = obx_backoff_next_delay_ms(&r, 1000, 60000, 1, 500); /* floor inside the range */
        CHECK(d >= 500 && d <= 1000);
        above_floor_seen += d > 500;
        d = obx_backoff_next_delay_ms(&r, 1000, 2000, 30, 3 * 3600 * 1000); /* above the cap */
        CHECK_INT(d, 3 * 3600 * 1000);
    }
    CHECK(above_floor_seen > 100); /* jitter still applies above the floor */
    /* without a floor it is exactly the jittered delay */
    obx_backoff_rng_seed(&a, 3);
    obx_backoff_rng_seed(&b, 3);
    for (int k = 0; k < 100; k++)
        CHECK(obx_backoff_next_delay_ms(&a, 250, 10000, 4, -1) ==
              obx_backoff_delay_ms(&b, 250, 10000, 4));
end:
    TEST_END;
}

/* ---- Retry-After ------------------------------------------------------------------------- */

struct ra_case {
    const char *value;
    int64_t now_ms;
    int64_t want_ms; /* -1: OBX_EINVAL */
};

static int
run_ra_cases(const struct ra_case *cases, size_t n)
{
    TEST_BEGIN;

    for (size_t i = 0; i < n; i++) {
        int64_t got = 12345;
        enum obx_err err = obx_backoff_parse_retry_after(cases[i].value, cases[i].now_ms, &got);

        if ((cases[i].want_ms < 0) != (err != OBX_OK) ||
            (cases[i].want_ms >= 0 && got != cases[i].want_ms))
            fprintf(stderr, "  \"%s\": err %d, %" PRId64 " ms\n",
                    cases[i].value ? cases[i].value : "(null)", (int)err, got);
        if (cases[i].want_ms < 0) {
            CHECK_INT(err, OBX_EINVAL);
            CHECK_INT(got, 0);
        } else {
            CHECK_INT(err, OBX_OK);
            CHECK_INT(got, cases[i].want_ms);
        }
    }
end:
    TEST_END;
}

static int
test_retry_after_seconds(void)
{
    static const struct ra_case cases[] = {
        {"120", NOW_2024_MS, 120000},
        {"0", NOW_2024_MS, 0},
        {"1", NOW_2024_MS, 1000},
        {"007", NOW_2024_MS, 7000},
        {"  7\t", NOW_2024_MS, 7000},
        {"30\r\n", NOW_2024_MS, 30000},
        {"21599", NOW_2024_MS, 21599000},
        {"21600", NOW_2024_MS, SIX_HOURS_MS},
        {"21601", NOW_2024_MS, SIX_HOURS_MS},
        {"99999999999", NOW_2024_MS, SIX_HOURS_MS},
        {"9223372036854775", NOW_2024_MS, SIX_HOURS_MS}, /* INT64_MAX / 1000 s still fits */
        {"9223372036854776", NOW_2024_MS, -1},           /* one more overflows ms */
        {"99999999999999999999999", NOW_2024_MS, -1},
    };

    return run_ra_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static int
test_retry_after_dates(void)
{
    static const struct ra_case cases[] = {
        /* the three forms of RFC 9110's example, 10 s ahead */
        {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS - 10000, 10000},
        {"Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE_MS - 10000, 10000},
        {"Sun Nov  6 08:49:37 1994", RFC_EXAMPLE_MS - 10000, 10000},
        {"Sun Nov 06 08:49:37 1994", RFC_EXAMPLE_MS - 10000, 10000},
        {"  Sun, 06 Nov 1994 08:49:37 GMT  ", RFC_EXAMPLE_MS - 10000, 10000},
        {"sun, 06 NOV 1994 08:49:37 GMT", RFC_EXAMPLE_MS - 10000, 10000},
        {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS - 10250, 10250}, /* ms of now count */
        {"Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE_MS, 0},
        {"Sun, 10 Mar 2024 12:02:00 GMT", NOW_2024_MS, 120000},
        {"Sun, 10 Mar 2024 18:00:00 GMT", NOW_2024_MS, SIX_HOURS_MS},
        {"Sun, 10 Mar 2024 19:00:00 GMT", NOW_2024_MS, SIX_HOURS_MS}, /* 7 h: clamped */
        {"Fri, 31 Dec 9999 23:59:59 GMT", NOW_2024_MS, SIX_HOURS_MS},
        {"Sun, 10 Mar 2024 12:00:59 GMT", NOW_2024_MS, 59000},
        {"Sun, 10 Mar 2024 11:59:59 GMT", NOW_2024_MS, 0}, /* past: 0 */
        {"Sun, 06 Nov 1994 08:49:37 GMT", NOW_2024_MS, 0},
        {"Thu, 29 Feb 2024 00:00:00 GMT", NOW_2024_MS, 0}, /* a leap day is a date */
        {"Sat, 09 Mar 2024 23:59:60 GMT", NOW_2024_MS, 0}, /* a leap second too */
        {"Sat Mar  9 12:00:00 2024", NOW_2024_MS, 0},
        {"Sun Mar 10 12:00:30 2024", NOW_2024_MS, 30000},
        /* RFC 850 two-digit years: never more than 50 years ahead of now (2024) */
        {"Sunday, 10-Mar-24 12:01:00 GMT", NOW_2024_MS, 60000},
        {"Sunday, 10-Mar-74 12:00:00 GMT", NOW_2024_MS, SIX_HOURS_MS}, /* 2074 */
        {"Sunday, 10-Mar-75 12:00:00 GMT", NOW_2024_MS, 0},            /* 1975 */
        {"Sunday, 10-Mar-99 12:00:00 GMT", NOW_2024_MS, 0},            /* 1999 */
        {"Sunday, 10-Mar-00 12:00:00 GMT", NOW_2024_MS, 0},            /* 2000 */
        /* the weekday is not checked against the date */
        {"Mon, 10 Mar 2024 12:00:10 GMT", NOW_2024_MS, 10000},
    };

    return run_ra_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static int
test_retry_after_junk(void)
{
    static const struct ra_case cases[] = {
        {NULL, NOW_2024_MS, -1},
        {"", NOW_2024_MS, -1},
        {"   ", NOW_2024_MS, -1},
        {"-1", NOW_2024_MS, -1},
        {"+5", NOW_2024_MS, -1},
        {"1.5", NOW_2024_MS, -1},
        {"12a", NOW_2024_MS, -1},
        {"a12", NOW_2024_MS, -1},
        {"1 2", NOW_2024_MS, -1},
        {"0x10", NOW_2024_MS, -1},
        {"1e3", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 08:49:37 UTC", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 08:49:37", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 08:49:37 GMT x", NOW_2024_MS, -1},
        {"Sun, 6 Nov 1994 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 06 Nov 94 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 06 November 1994 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 06 Foo 1994 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 8:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 31 Feb 2024 08:49:37 GMT", NOW_2024_MS, -1},
        {"Wed, 29 Feb 2023 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 31 Apr 2024 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 00 Nov 1994 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 24:00:00 GMT", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 08:60:00 GMT", NOW_2024_MS, -1},
        {"Sun, 06 Nov 1994 08:49:61 GMT", NOW_2024_MS, -1},
        {"Funday, 06-Nov-94 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sunday, 06 Nov 1994 08:49:37 GMT", NOW_2024_MS, -1}, /* long name, IMF body */
        {"Sun, 06-Nov-94 08:49:37 GMT", NOW_2024_MS, -1},      /* short name, RFC 850 body */
        {"Sunday, 06-Nov-1994 08:49:37 GMT", NOW_2024_MS, -1},
        {"Sun Nov   6 08:49:37 1994", NOW_2024_MS, -1},
        {"Sun Nov 6 08:49:37 1994", NOW_2024_MS, -1},
        {"Sun Nov  6 08:49:37 94", NOW_2024_MS, -1},
        {"Sun Nov  6 08:49:37 1994 GMT", NOW_2024_MS, -1},
        {"Sun", NOW_2024_MS, -1},
        {"Sun,", NOW_2024_MS, -1},
        {"GMT", NOW_2024_MS, -1},
    };

    return run_ra_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static const struct test_case tests[] = {
    {"classify_table", test_classify_table},
    {"outcome_names", test_outcome_names},
    {"rng_deterministic", test_rng_deterministic},
    {"rng_uniform", test_rng_uniform},
    {"delay_bounds_and_mean", test_delay_bounds_and_mean},
    {"delay_huge_attempts", test_delay_huge_attempts},
    {"delay_edges", test_delay_edges},
    {"next_delay_floor", test_next_delay_floor},
    {"retry_after_seconds", test_retry_after_seconds},
    {"retry_after_dates", test_retry_after_dates},
    {"retry_after_junk", test_retry_after_junk},
    {NULL, NULL},
};

TEST_MAIN(tests)
