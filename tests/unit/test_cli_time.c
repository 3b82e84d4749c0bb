/*
 * Unit tests for cli_parse_time (cmd/outbox/cli.c), the parser of --since/--until: RFC 3339
 * with an offset, durations, and malformed offsets. A short offset ("+1:2") once made the
 * parser step six bytes past the '+' whatever it had read, past the end of the string; the
 * buffer below puts a NUL right there, so that bug parses the value instead of refusing it
 * (and ASan reports the read on a heap copy).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../cmd/outbox/cli.h"
#include "check.h"

static int
test_rfc3339(void)
{
    TEST_BEGIN;
    int64_t ms = -1;

    CHECK_INT(cli_parse_time("2026-11-24T10:00:00Z", 0, &ms), 0);
    CHECK_INT(ms, INT64_C(1795514400000));
    CHECK_INT(cli_parse_time("2026-11-24T10:00:00.5Z", 0, &ms), 0);
    CHECK_INT(ms, INT64_C(1795514400500));
    CHECK_INT(cli_parse_time("2026-11-24T11:02:00+01:02", 0, &ms), 0);
    CHECK_INT(ms, INT64_C(1795514400000));
    CHECK_INT(cli_parse_time("2026-11-24T08:58:00-01:02", 0, &ms), 0);
    CHECK_INT(ms, INT64_C(1795514400000));
    CHECK_INT(cli_parse_time("24h", INT64_C(86400000) * 2, &ms), 0);
    CHECK_INT(ms, INT64_C(86400000));
end:
    TEST_END;
}

static int
test_short_offsets(void)
{
    TEST_BEGIN;
    static const char *const bad[] = {"2026-11-24T10:00:00+1:2",
                                      "2026-11-24T10:00:00+01:2",
                                      "2026-11-24T10:00:00+1:02",
                                      "2026-11-24T10:00:00+01",
                                      "2026-11-24T10:00:00+",
                                      "2026-11-24T10:00:00+01:02x",
                                      "2026-11-24T10:00:00+-1:02",
                                      "2026-11-24T10:00:00+ 1:02",
                                      "+1:2",
                                      NULL};
    int64_t ms = 0;

    for (const char *const *s = bad; *s; s++) {
        size_t n = strlen(*s);
        char buf[64];
        char *heap = malloc(n + 1);

        /* The string, its NUL, one byte, another NUL: an over-read of up to two bytes
           finds an end of string and would accept the value. */
        memset(buf, 0, sizeof buf);
        memcpy(buf, *s, n);
        buf[n + 1] = 'x';
        CHECK(heap != NULL);
        memcpy(heap, *s, n + 1);
        if (cli_parse_time(buf, 0, &ms) != -1 || cli_parse_time(heap, 0, &ms) != -1) {
            fprintf(stderr, "  accepted '%s'\n", *s);
            free(heap);
            CHECK(0);
        }
        free(heap);
    }
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"rfc3339", test_rfc3339},
    {"short_offsets", test_short_offsets},
    {NULL, NULL},
};

TEST_MAIN(tests)
