/*
 * Unit tests for lib/buf.c: the cap is enforced (an append that would cross it is refused
 * whole), printf grows the buffer, JSON string escaping, take() semantics, and the
 * Nth-allocation failure sweep (curl torture style): every failure point returns
 * OBX_ENOMEM or OBX_OK, never crashes, never leaks (run under ASan/LSan).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "mem.h"

static int
test_append_and_str(void)
{
    TEST_BEGIN;
    struct obx_buf b;

    obx_buf_init(&b, 1024);
    CHECK_STR(obx_buf_str(&b), "");
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
    CHECK_OK(obx_buf_append(&b, "abc", 3));
    CHECK_OK(obx_buf_puts(&b, "def"));
    CHECK_OK(obx_buf_append(&b, "xyz", 0));
    CHECK_STR(obx_buf_str(&b), "abcdef");
    CHECK_INT(b.len, 6);
    CHECK_INT(b.data[b.len], '\0');
    /* Binary bytes are kept; the length is the byte count, not strlen. */
    CHECK_OK(obx_buf_append(&b, "\0q", 2));
    CHECK_INT(b.len, 8);
    CHECK_INT(b.data[7], 'q');
    CHECK_INT(b.data[8], '\0');
    obx_buf_reset(&b);
    CHECK_INT(b.len, 0);
    CHECK_STR(obx_buf_str(&b), "");
    CHECK(b.data != NULL); /* reset keeps the allocation */
    CHECK_OK(obx_buf_puts(&b, "again"));
    CHECK_STR(obx_buf_str(&b), "again");
end:
    obx_buf_release(&b);
    TEST_END;
}

/* The cap: an append that would cross max is refused whole and leaves the content as it was. */
static int
test_cap_enforced(void)
{
    TEST_BEGIN;
    struct obx_buf b;

    obx_buf_init(&b, 10);
    CHECK_OK(obx_buf_puts(&b, "12345678"));
    CHECK_INT(obx_buf_puts(&b, "abc"), OBX_ETOOBIG);
    CHECK_STR(obx_buf_str(&b), "12345678");
    CHECK_INT(b.len, 8);
    CHECK_INT(obx_buf_printf(&b, "%d", 123), OBX_ETOOBIG);
    CHECK_STR(obx_buf_str(&b), "12345678");
    CHECK_INT(obx_buf_append(&b, "zzzzzzzzzzzzzzzzzzzz", SIZE_MAX / 2), OBX_ETOOBIG);
    CHECK_STR(obx_buf_str(&b), "12345678");
    /* Exactly max is allowed; one more byte is not; nothing at all still is. */
    CHECK_OK(obx_buf_puts(&b, "9A"));
    CHECK_INT(b.len, 10);
    CHECK_STR(obx_buf_str(&b), "123456789A");
    CHECK_INT(obx_buf_puts(&b, "B"), OBX_ETOOBIG);
    CHECK_OK(obx_buf_puts(&b, ""));
    CHECK_OK(obx_buf_printf(&b, "%s", ""));
    CHECK_STR(obx_buf_str(&b), "123456789A");
    /* A JSON string that does not fit is refused and never pushes len over max. */
    obx_buf_reset(&b);
    CHECK_INT(obx_buf_json_str(&b, "0123456789"), OBX_ETOOBIG);
    CHECK(b.len <= 10);
    /* max 0: only empty appends. */
    obx_buf_release(&b);
    obx_buf_init(&b, 0);
    CHECK_INT(obx_buf_puts(&b, "x"), OBX_ETOOBIG);
    CHECK_OK(obx_buf_puts(&b, ""));
    CHECK_STR(obx_buf_str(&b), "");
end:
    obx_buf_release(&b);
    TEST_END;
}

/* printf grows the buffer across many reallocations and formats exactly like snprintf. */
static int
test_printf_growth(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    char expect[64];
    size_t want = 0;
    char *big = malloc(10001);

    obx_buf_init(&b, 1 << 20);
    CHECK(big);
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(expect, sizeof expect, "[%d:%s:%05x]", i, i % 2 ? "odd" : "even", i);
        CHECK_OK(obx_buf_printf(&b, "[%d:%s:%05x]", i, i % 2 ? "odd" : "even", i));
        CHECK_INT(memcmp(b.data + want, expect, (size_t)n), 0);
        want += (size_t)n;
        CHECK_INT(b.len, want);
        CHECK_INT(strlen(b.data), want);
    }
    CHECK(b.cap > b.len);
    /* One printf much larger than the current capacity. */
    memset(big, 'x', 10000);
    big[10000] = '\0';
    obx_buf_reset(&b);
    CHECK_OK(obx_buf_printf(&b, "<%s>", big));
    CHECK_INT(b.len, 10002);
    CHECK_INT(b.data[0], '<');
    CHECK_INT(b.data[10001], '>');
    CHECK_INT(b.data[10002], '\0');
end:
    free(big);
    obx_buf_release(&b);
    TEST_END;
}

static int
json_is(const char *in, const char *expect)
{
    struct obx_buf b;
    int ok;

    obx_buf_init(&b, 4096);
    ok = obx_buf_json_str(&b, in) == OBX_OK && strcmp(obx_buf_str(&b), expect) == 0;
    if (!ok)
        fprintf(stderr, "  json_str: got %s, expected %s\n", obx_buf_str(&b), expect);
    obx_buf_release(&b);
    return ok;
}

static int
test_json_str_escaping(void)
{
    TEST_BEGIN;
    struct obx_buf b;

    obx_buf_init(&b, 4096);
    CHECK(json_is("", "\"\""));
    CHECK(json_is("plain text", "\"plain text\""));
    CHECK(json_is("say \"hi\"", "\"say \\\"hi\\\"\""));
    CHECK(json_is("back\\slash", "\"back\\\\slash\""));
    CHECK(json_is("a\nb\rc\td", "\"a\\nb\\rc\\td\""));
    CHECK(json_is("\x01\x08\x0c\x1f", "\"\\u0001\\u0008\\u000c\\u001f\""));
    /* Not control characters: DEL, slash and UTF-8 pass through unchanged. */
    CHECK(json_is("\x7f/é€😀", "\"\x7f/é€😀\""));
    /* Plain text is copied in runs between the escapes: runs at either end, escapes back to
     * back, and an invalid byte (a lone continuation byte, a truncated sequence at the end)
     * replaced by U+FFFD with the text around it kept. */
    CHECK(json_is("\"abc\"def\\", "\"\\\"abc\\\"def\\\\\""));
    CHECK(json_is("\n\n", "\"\\n\\n\""));
    CHECK(json_is("ab\x80"
                  "cd",
                  "\"ab\xef\xbf\xbd"
                  "cd\""));
    CHECK(json_is("é\xc3", "\"é\xef\xbf\xbd\""));
    CHECK(json_is("\xff\"€", "\"\xef\xbf\xbd\\\"€\""));
    /* Appends after existing content. */
    CHECK_OK(obx_buf_puts(&b, "{\"k\":"));
    CHECK_OK(obx_buf_json_str(&b, "v\""));
    CHECK_OK(obx_buf_puts(&b, "}"));
    CHECK_STR(obx_buf_str(&b), "{\"k\":\"v\\\"\"}");
end:
    obx_buf_release(&b);
    TEST_END;
}

/* take() moves the bytes out and leaves an empty, reusable buffer. */
static int
test_take(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    char *s = NULL, *e = NULL;

    obx_buf_init(&b, 100);
    CHECK_OK(obx_buf_puts(&b, "owned"));
    s = obx_buf_take(&b);
    CHECK_STR(s, "owned");
    CHECK(b.data == NULL);
    CHECK_INT(b.len, 0);
    CHECK_INT(b.cap, 0);
    CHECK_STR(obx_buf_str(&b), "");
    CHECK_INT(b.max, 100); /* the cap survives */
    /* An empty buffer gives an owned "" (never NULL unless out of memory). */
    e = obx_buf_take(&b);
    CHECK_STR(e, "");
    /* Reusable, and independent of the string taken. */
    CHECK_OK(obx_buf_puts(&b, "next"));
    CHECK_STR(obx_buf_str(&b), "next");
    CHECK_STR(s, "owned");
    obx_buf_release(&b);
    obx_buf_release(&b); /* twice is harmless */
    obx_buf_release(NULL);
end:
    obx_free(s);
    obx_free(e);
    obx_buf_release(&b);
    TEST_END;
}

/*
 * One pass of work under a failing allocator: every call must answer OK or ENOMEM and
 * an append that failed must leave the content unchanged. Returns -1 on a contract
 * violation, else the number of ENOMEM answers seen.
 */
static int
alloc_failure_pass(void)
{
    struct obx_buf b;
    char before[512];
    int enomem = 0, bad = 0;
    char *taken = NULL;

    obx_buf_init(&b, 1 << 16);
    for (int i = 0; i < 40 && !bad; i++) {
        enum obx_err err;
        snprintf(before, sizeof before, "%s", obx_buf_str(&b));
        switch (i % 4) {
        case 0: err = obx_buf_puts(&b, "0123456789abcdef0123456789abcdef"); break;
        case 1: err = obx_buf_printf(&b, "<%d:%s>", i, "printf-growth-text"); break;
        case 2: err = obx_buf_json_str(&b, "q\"\n\x01"); break;
        default: err = obx_buf_append(&b, "zz", 2); break;
        }
        if (err == OBX_ENOMEM) {
            enomem++;
            /* append/printf are all-or-nothing; json_str may leave a prefix (not checked). */
            if (i % 4 != 2 && strcmp(before, obx_buf_str(&b)) != 0)
                bad = 1;
        } else if (err != OBX_OK) {
            bad = 1;
        }
    }
    taken = obx_buf_take(&b);
    if (!taken)
        enomem++;
    else if (strlen(taken) > (1 << 16))
        bad = 1;
    obx_free(taken);
    taken = obx_buf_take(&b); /* empty: allocates "" */
    if (!taken)
        enomem++;
    obx_free(taken);
    obx_buf_release(&b);
    return bad ? -1 : enomem;
}

static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    int n, r = 0;

    for (n = 0; n < 10000; n++) {
        obx_mem_fail_after(n);
        r = alloc_failure_pass();
        obx_mem_fail_after(-1);
        if (r < 0)
            fprintf(stderr, "  contract broken with allocation %d failing\n", n);
        CHECK(r >= 0);
        if (r == 0)
            break; /* enough allocations succeeded: every failure point was visited */
    }
    CHECK(n > 2); /* the sweep really made allocations fail */
    CHECK_INT(r, 0);
end:
    obx_mem_fail_after(-1);
    TEST_END;
}

static const struct test_case tests[] = {
    {"append_and_str", test_append_and_str},
    {"cap_enforced", test_cap_enforced},
    {"printf_growth", test_printf_growth},
    {"json_str_escaping", test_json_str_escaping},
    {"take", test_take},
    {"alloc_failure", test_alloc_failure},
    {NULL, NULL},
};

TEST_MAIN(tests)
