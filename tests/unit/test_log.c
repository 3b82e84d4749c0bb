/*
 * Unit tests for lib/log.c: level and format parsing, the threshold (a disabled level writes
 * nothing: a debug line holding a secret never reaches the sink at level info), the text and
 * JSON line formats, quoting and escaping (a value cannot forge a key or a second line), one
 * line per call, and a line that cannot be built (allocation failure, over the 64 KiB cap) is
 * dropped whole, never written half.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "log.h"
#include "mem.h"

#define OBX_MODULE "test"

/* The sink: an in-memory stream the tests read back. */
static char *sink_buf;
static size_t sink_len;
static FILE *sink;

static int
sink_open(enum obx_log_level level, enum obx_log_format format)
{
    sink_buf = NULL;
    sink_len = 0;
    sink = open_memstream(&sink_buf, &sink_len);
    if (!sink)
        return -1;
    obx_log_setup(level, format, sink);
    return 0;
}

/* What was written so far ("" when nothing). */
static const char *
sink_text(void)
{
    fflush(sink);
    return sink_buf ? sink_buf : "";
}

static void
sink_close(void)
{
    obx_log_setup(OBX_LOG_INFO, OBX_LOG_TEXT, NULL);
    if (sink)
        fclose(sink);
    sink = NULL;
    free(sink_buf);
    sink_buf = NULL;
}

/* The text after the timestamp: "level=..." (the time is the real clock's). */
static const char *
after_ts(const char *line)
{
    const char *p = strstr(line, " level=");
    return p ? p + 1 : "";
}

static int
count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static int
test_parse(void)
{
    TEST_BEGIN;
    CHECK_INT(obx_log_level_parse("debug"), OBX_LOG_DEBUG);
    CHECK_INT(obx_log_level_parse("info"), OBX_LOG_INFO);
    CHECK_INT(obx_log_level_parse("warn"), OBX_LOG_WARN);
    CHECK_INT(obx_log_level_parse("error"), OBX_LOG_ERROR);
    CHECK_INT(obx_log_level_parse("off"), OBX_LOG_OFF);
    CHECK_INT(obx_log_level_parse("INFO"), -1);
    CHECK_INT(obx_log_level_parse("warning"), -1);
    CHECK_INT(obx_log_level_parse(""), -1);
    CHECK_INT(obx_log_format_parse("text"), OBX_LOG_TEXT);
    CHECK_INT(obx_log_format_parse("json"), OBX_LOG_JSON);
    CHECK_INT(obx_log_format_parse("logfmt"), -1);
    CHECK_INT(obx_log_format_parse(""), -1);
end:
    TEST_END;
}

static int
test_threshold(void)
{
    TEST_BEGIN;
    const char *t;

    CHECK_OK(sink_open(OBX_LOG_INFO, OBX_LOG_TEXT));
    /* A debug line carrying a secret: disabled, so it is not even formatted. */
    obx_log(OBX_LOG_DEBUG, "request", OBX_KS("authorization", "Bearer s3cr3t-key"));
    obx_logf(OBX_LOG_DEBUG, "key %s", "s3cr3t-key");
    obx_log_write(OBX_LOG_DEBUG, "test", "direct", NULL, 0);
    CHECK_STR(sink_text(), "");
    obx_log(OBX_LOG_INFO, "shown");
    obx_log(OBX_LOG_ERROR, "also shown");
    t = sink_text();
    CHECK(strstr(t, "level=info mod=test msg=shown\n"));
    CHECK(strstr(t, "level=error mod=test msg=\"also shown\"\n"));
    CHECK_INT(count_char(t, '\n'), 2);
    CHECK(!strstr(t, "s3cr3t"));
    sink_close();

    /* error only; and off writes nothing at all, even for errors. */
    CHECK_OK(sink_open(OBX_LOG_ERROR, OBX_LOG_TEXT));
    obx_log(OBX_LOG_WARN, "hidden");
    obx_log(OBX_LOG_ERROR, "kept");
    CHECK_INT(count_char(sink_text(), '\n'), 1);
    sink_close();
    CHECK_OK(sink_open(OBX_LOG_OFF, OBX_LOG_TEXT));
    obx_log(OBX_LOG_ERROR, "hidden");
    obx_log_write(OBX_LOG_OFF, "test", "an OFF line is never a level", NULL, 0);
    CHECK_STR(sink_text(), "");
    sink_close();
    /* Debug shows everything. */
    CHECK_OK(sink_open(OBX_LOG_DEBUG, OBX_LOG_TEXT));
    obx_log(OBX_LOG_DEBUG, "dbg");
    CHECK(strstr(sink_text(), "level=debug mod=test msg=dbg\n"));
end:
    sink_close();
    TEST_END;
}

static int
test_text_format(void)
{
    TEST_BEGIN;
    const char *t;

    CHECK_OK(sink_open(OBX_LOG_INFO, OBX_LOG_TEXT));
    obx_log(OBX_LOG_WARN, "message accepted", OBX_KS("channel_id", "ch-1"), OBX_KI("attempt", 3),
            OBX_KI("neg", -42), OBX_KS("empty", ""), OBX_KS("none", NULL), OBX_KS("spaced", "a b"),
            OBX_KS("eq", "k=v"), OBX_KS("quote", "say \"hi\""));
    t = sink_text();
    CHECK(strncmp(t, "ts=", 3) == 0);
    /* RFC 3339 UTC with milliseconds: 2026-01-02T03:04:05.678Z */
    CHECK(strlen(t) > 27 && t[7] == '-' && t[13] == 'T' && t[26] == 'Z' && t[27] == ' ');
    CHECK_STR(after_ts(t), "level=warn mod=test msg=\"message accepted\" channel_id=ch-1 "
                           "attempt=3 neg=-42 empty=\"\" none=null spaced=\"a b\" eq=\"k=v\" "
                           "quote=\"say \\\"hi\\\"\"\n");
end:
    sink_close();
    TEST_END;
}

/* A value cannot start a new line or add a key: control bytes are escaped inside quotes. */
static int
test_text_injection(void)
{
    TEST_BEGIN;
    const char *t;

    CHECK_OK(sink_open(OBX_LOG_INFO, OBX_LOG_TEXT));
    obx_log(OBX_LOG_INFO, "x", OBX_KS("v", "ok\nts=0 level=error mod=api msg=forged api_key=k"),
            OBX_KS("tab", "a\tb\r"));
    t = sink_text();
    CHECK_INT(count_char(t, '\n'), 1);
    CHECK_STR(after_ts(t), "level=info mod=test msg=x "
                           "v=\"ok\\nts=0 level=error mod=api msg=forged api_key=k\" "
                           "tab=\"a\\tb\\r\"\n");
end:
    sink_close();
    TEST_END;
}

static int
test_json_format(void)
{
    TEST_BEGIN;
    const char *t, *p;

    CHECK_OK(sink_open(OBX_LOG_INFO, OBX_LOG_JSON));
    obx_log(OBX_LOG_ERROR, "line1\nline2", OBX_KS("s", "q\"\\"), OBX_KI("n", 9000000000LL),
            OBX_KS("none", NULL), OBX_KS("ctl", "\x01"));
    t = sink_text();
    CHECK(strncmp(t, "{\"ts\":\"", 7) == 0);
    p = strstr(t, "\",\"level\":");
    CHECK(p);
    CHECK_STR(p, "\",\"level\":\"error\",\"mod\":\"test\",\"msg\":\"line1\\nline2\","
                 "\"s\":\"q\\\"\\\\\",\"n\":9000000000,\"none\":null,\"ctl\":\"\\u0001\"}\n");
end:
    sink_close();
    TEST_END;
}

static int
test_writef(void)
{
    TEST_BEGIN;

    CHECK_OK(sink_open(OBX_LOG_INFO, OBX_LOG_TEXT));
    obx_logf(OBX_LOG_INFO, "%d messages in %s", 12, "ch");
    CHECK_STR(after_ts(sink_text()), "level=info mod=test msg=\"12 messages in ch\"\n");
end:
    sink_close();
    TEST_END;
}

/* A line over the 64 KiB cap cannot be built: nothing is written rather than a cut line. */
static int
test_too_long_dropped(void)
{
    TEST_BEGIN;
    char *big = malloc(70 * 1024);

    CHECK(big);
    memset(big, 'a', 70 * 1024 - 1);
    big[70 * 1024 - 1] = '\0';
    CHECK_OK(sink_open(OBX_LOG_INFO, OBX_LOG_TEXT));
    obx_log(OBX_LOG_INFO, "big", OBX_KS("v", big));
    CHECK_STR(sink_text(), "");
    obx_log(OBX_LOG_INFO, "after");
    CHECK(strstr(sink_text(), "msg=after\n"));
end:
    sink_close();
    free(big);
    TEST_END;
}

/* The cap reached at a key (the message filled the line): dropped in both formats. */
static int
test_cap_at_key(void)
{
    TEST_BEGIN;
    size_t n = 64 * 1024 - 80;
    char *msg = malloc(n + 1);

    CHECK(msg);
    memset(msg, 'm', n);
    msg[n] = '\0';
    for (int f = 0; f < 2; f++) {
        char key[100];
        memset(key, 'k', sizeof key - 1);
        key[sizeof key - 1] = '\0';
        CHECK_OK(sink_open(OBX_LOG_INFO, f ? OBX_LOG_JSON : OBX_LOG_TEXT));
        obx_log_write(OBX_LOG_INFO, "test", msg, &OBX_KI(key, 1), 1);
        CHECK_STR(sink_text(), "");
        obx_log_write(OBX_LOG_INFO, "test", msg, NULL, 0); /* without the key it fits */
        CHECK(strlen(sink_text()) > n);
        sink_close();
    }
end:
    sink_close();
    free(msg);
    TEST_END;
}

/* Allocation n fails: either the whole line or nothing, never a partial line; no leak. */
static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    long n;
    int done = 0;

    for (n = 0; n < 100 && !done; n++) {
        const char *t;
        CHECK_OK(sink_open(OBX_LOG_INFO, n % 2 ? OBX_LOG_JSON : OBX_LOG_TEXT));
        obx_mem_fail_after(n);
        obx_log(OBX_LOG_INFO, "alloc", OBX_KS("k", "a value with spaces"), OBX_KI("i", 1));
        obx_logf(OBX_LOG_INFO, "f %d", 2);
        obx_mem_fail_after(-1);
        t = sink_text();
        /* Lines written are whole lines. */
        CHECK(t[0] == '\0' || t[strlen(t) - 1] == '\n');
        done = count_char(t, '\n') == 2;
        if (t[0])
            CHECK(strstr(t, "alloc") || strstr(t, "f 2"));
        sink_close();
    }
    CHECK(done);
    CHECK(n > 1);
end:
    obx_mem_fail_after(-1);
    sink_close();
    TEST_END;
}

static const struct test_case tests[] = {
    {"parse", test_parse},
    {"threshold", test_threshold},
    {"text_format", test_text_format},
    {"text_injection", test_text_injection},
    {"json_format", test_json_format},
    {"writef", test_writef},
    {"too_long_dropped", test_too_long_dropped},
    {"cap_at_key", test_cap_at_key},
    {"alloc_failure", test_alloc_failure},
    {NULL, NULL},
};

TEST_MAIN(tests)
