/*
 * fuzz_retry_after: the Retry-After header parser (lib/backoff.c
 * obx_backoff_parse_retry_after).
 *
 * The input is the header value; it is copied into an exact allocation and
 * NUL-terminated, as libcurl hands header values over. Each value is parsed against
 * several wall clocks, from realistic ones to the extremes of int64 (the header
 * promises "whatever now_ms is"): 0, 2025, 2049/2050/2099 (the RFC 850 50-year
 * window around a century), -1, INT64_MIN and INT64_MAX.
 *
 * Besides ASan and UBSan (signed overflow, shifts), these properties from
 * lib/backoff.h are checked; a violation abort()s:
 *   - the result is OBX_OK or OBX_EINVAL, nothing else;
 *   - on OBX_OK the delay is within [0, OBX_BACKOFF_RETRY_AFTER_MAX_MS];
 *     on OBX_EINVAL it is 0;
 *   - delta-seconds do not depend on the clock: all clocks give the same answer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int64_t clocks_ms[] = {
    INT64_C(1735689600000), /* 2025-01-01T00:00:00Z */
    0,                      /* the epoch */
    INT64_C(2524607999000), /* 2049-12-31T23:59:59Z */
    INT64_C(2524608000000), /* 2050-01-01T00:00:00Z */
    INT64_C(4102444799000), /* 2099-12-31T23:59:59Z */
    -1,
    INT64_MIN,
    INT64_MAX,
};
#define N_CLOCKS (sizeof clocks_ms / sizeof clocks_ms[0])

static void
oracle_fail(const char *what, const char *value, int64_t now_ms, int64_t delay_ms)
{
    fprintf(stderr,
            "fuzz_retry_after: property violated: %s (value \"%s\", now_ms %lld, "
            "delay_ms %lld)\n",
            what, value, (long long)now_ms, (long long)delay_ms);
    abort();
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, NULL);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = malloc(size + 1);
    const char *p;
    int64_t first_delay = 0;
    enum obx_err first_err = OBX_OK;
    int delta_form;

    if (!value)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';
    p = value;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    delta_form = *p >= '0' && *p <= '9';
    for (size_t i = 0; i < N_CLOCKS; i++) {
        int64_t delay_ms = -12345; /* must be overwritten */
        enum obx_err err = obx_backoff_parse_retry_after(value, clocks_ms[i], &delay_ms);

        if (err != OBX_OK && err != OBX_EINVAL)
            oracle_fail("result is neither OBX_OK nor OBX_EINVAL", value, clocks_ms[i], delay_ms);
        if (err == OBX_OK && (delay_ms < 0 || delay_ms > OBX_BACKOFF_RETRY_AFTER_MAX_MS))
            oracle_fail("delay outside [0, 6 h]", value, clocks_ms[i], delay_ms);
        if (err == OBX_EINVAL && delay_ms != 0)
            oracle_fail("refused value left a non-zero delay", value, clocks_ms[i], delay_ms);
        if (i == 0) {
            first_err = err;
            first_delay = delay_ms;
        } else if (delta_form && (err != first_err || delay_ms != first_delay)) {
            oracle_fail("delta-seconds depend on the clock", value, clocks_ms[i], delay_ms);
        }
    }
    free(value);
    return 0;
}
