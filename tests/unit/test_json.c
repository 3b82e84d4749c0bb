/*
 * Unit tests for lib/json.c: the bounds put on untrusted documents (size, depth,
 * UTF-8, NUL characters, trailing data) and the typed getters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "check.h"
#include "json.h"

#define MAX_BYTES (1024 * 1024)
#define MAX_DEPTH 32

/* Parses n bytes with the default limits; returns the error, *e gets the reason. */
static enum obx_err
parse_n(const char *s, size_t n, struct obx_json_error *e)
{
    obx_json *doc = NULL;
    enum obx_err err;

    memset(e, 0, sizeof *e);
    err = obx_json_parse(s, n, MAX_BYTES, MAX_DEPTH, &doc, e);
    if ((err == OBX_OK) != (doc != NULL)) {
        fprintf(stderr, "  parse returned %d with doc %p\n", err, (void *)doc);
        err = OBX_EDB; /* a contract violation no test expects */
    }
    obx_json_free(doc);
    return err;
}

static enum obx_err
parse(const char *s, struct obx_json_error *e)
{
    return parse_n(s, strlen(s), e);
}

/*
 * Nesting: depth levels of arrays ([[[]]]) or objects ({"a":{"a":0}}): the result has
 * exactly depth levels. Caller frees.
 */
static char *
nested(int depth, int obj)
{
    char *s = malloc((size_t)depth * 6 + 2), *p = s;

    if (!s)
        return NULL;
    for (int i = 0; i < depth; i++) {
        if (obj) {
            memcpy(p, "{\"a\":", 5);
            p += 5;
        } else {
            *p++ = '[';
        }
    }
    if (obj)
        *p++ = '0';
    for (int i = 0; i < depth; i++)
        *p++ = obj ? '}' : ']';
    *p = '\0';
    return s;
}

static int
test_size_limit(void)
{
    TEST_BEGIN;
    const char *doc = "{\"a\":\"0123456789\"}"; /* 18 bytes */
    obx_json *j = NULL;
    struct obx_json_error e;

    memset(&e, 0, sizeof e);
    CHECK_INT(obx_json_parse(doc, strlen(doc), 17, MAX_DEPTH, &j, &e), OBX_ETOOBIG);
    CHECK(j == NULL);
    CHECK_STR(e.code, "too_large");
    CHECK(e.message[0] != '\0');
    CHECK_OK(obx_json_parse(doc, strlen(doc), 18, MAX_DEPTH, &j, &e));
    CHECK(j != NULL);
    obx_json_free(j);
    j = NULL;
    /* The error struct is optional. */
    CHECK_INT(obx_json_parse(doc, strlen(doc), 1, MAX_DEPTH, &j, NULL), OBX_ETOOBIG);
    CHECK_INT(obx_json_parse("nope", 4, 100, MAX_DEPTH, &j, NULL), OBX_EINVAL);
    CHECK(j == NULL);
end:
    obx_json_free(j);
    TEST_END;
}

static int
test_depth_limit(void)
{
    TEST_BEGIN;
    char *at = nested(MAX_DEPTH, 0), *over = nested(MAX_DEPTH + 1, 0);
    char *oat = nested(MAX_DEPTH, 1), *oover = nested(MAX_DEPTH + 1, 1);
    char *huge = nested(5000, 0);
    struct obx_json_error e;
    obx_json *j = NULL;

    CHECK(at && over && oat && oover && huge);
    CHECK_OK(parse(at, &e));
    CHECK_INT(parse(over, &e), OBX_EINVAL);
    CHECK_STR(e.code, "too_deep");
    CHECK_OK(parse(oat, &e));
    CHECK_INT(parse(oover, &e), OBX_EINVAL);
    CHECK_STR(e.code, "too_deep");
    /* Far too deep is refused too (whatever layer notices first). */
    CHECK_INT(parse(huge, &e), OBX_EINVAL);
    /* Scalars have depth 0; an empty container has depth 1. */
    CHECK_OK(obx_json_parse("1", 1, 100, 0, &j, &e));
    obx_json_free(j);
    j = NULL;
    CHECK_INT(obx_json_parse("[]", 2, 100, 0, &j, &e), OBX_EINVAL);
    CHECK_OK(obx_json_parse("[]", 2, 100, 1, &j, &e));
    obx_json_free(j);
    j = NULL;
    /* Depth is the deepest branch, not the number of containers. */
    CHECK_OK(obx_json_parse("[[1],[2],{\"a\":[]}]", 18, 100, 3, &j, &e));
    obx_json_free(j);
    j = NULL;
    CHECK_INT(obx_json_parse("[[1],[2],{\"a\":[[]]}]", 20, 100, 3, &j, &e), OBX_EINVAL);
end:
    obx_json_free(j);
    free(at);
    free(over);
    free(oat);
    free(oover);
    free(huge);
    TEST_END;
}

static int
test_utf8_validator(void)
{
    TEST_BEGIN;
    /* Valid: ASCII, 2/3/4-byte forms, the edges around the surrogates and U+10FFFF. */
    static const char *const good[] = {
        "",
        "plain",
        "\xc3\xa9",
        "\xe2\x82\xac",
        "\xf0\x9f\x98\x80",
        "\xc2\x80",
        "\xdf\xbf",
        "\xe0\xa0\x80",
        "\xed\x9f\xbf",
        "\xee\x80\x80",
        "\xef\xbf\xbf",
        "\xf0\x90\x80\x80",
        "\xf4\x8f\xbf\xbf",
    };
    static const char *const bad[] = {
        "\xc0\xaf",         /* overlong '/' (2 bytes) */
        "\xc1\xbf",         /* overlong (2 bytes) */
        "\xe0\x80\xaf",     /* overlong (3 bytes) */
        "\xe0\x9f\xbf",     /* overlong U+07FF */
        "\xf0\x80\x80\xaf", /* overlong (4 bytes) */
        "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
        "\xed\xa0\x80",     /* U+D800, a surrogate */
        "\xed\xbf\xbf",     /* U+DFFF */
        "\xf4\x90\x80\x80", /* U+110000 */
        "\xf5\x80\x80\x80", /* lead byte past U+10FFFF */
        "\xff",
        "\xfe",
        "\x80",
        "\xbf",
        "\xe2\x82",     /* truncated */
        "\xf0\x9f\x98", /* truncated */
        "\xc3",         /* truncated */
        "a\xc3(",       /* bad continuation */
        "\xe2\x28\xa1", /* bad continuation */
    };

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        if (!obx_buf_utf8_valid(good[i], strlen(good[i])))
            fprintf(stderr, "  good[%zu] refused\n", i);
        CHECK(obx_buf_utf8_valid(good[i], strlen(good[i])));
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (obx_buf_utf8_valid(bad[i], strlen(bad[i])))
            fprintf(stderr, "  bad[%zu] accepted\n", i);
        CHECK(!obx_buf_utf8_valid(bad[i], strlen(bad[i])));
    }
    /* The length is honoured: a sequence cut by len is truncated even if bytes follow. */
    CHECK(!obx_buf_utf8_valid("\xe2\x82\xac", 2));
    CHECK(obx_buf_utf8_valid("\xe2\x82\xac\xff", 3));
end:
    TEST_END;
}

/* Invalid UTF-8 anywhere in a document (string, key) is refused with invalid_utf8. */
static int
test_invalid_utf8_documents(void)
{
    TEST_BEGIN;
    static const char *const docs[] = {
        "\"\xc0\xaf\"",                 /* overlong */
        "\"\xe0\x80\xaf\"",             /* overlong, 3 bytes */
        "\"\xed\xa0\x80\"",             /* surrogate */
        "\"\xe2\x82\"",                 /* truncated inside the string */
        "{\"a\":\"\xf4\x90\x80\x80\"}", /* > U+10FFFF */
        "{\"\xff\":1}",                 /* in a key */
        "[\"ok\",\"\xf0\x9f\x98\"]",    /* truncated 4-byte */
    };
    struct obx_json_error e;

    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        CHECK_INT(parse(docs[i], &e), OBX_EINVAL);
        CHECK_STR(e.code, "invalid_utf8");
    }
    /* Truncated at the very end of the document. */
    CHECK_INT(parse_n("\"a\"\xe2\x82", 5, &e), OBX_EINVAL);
    CHECK_STR(e.code, "invalid_utf8");
    /* Valid multi-byte text parses and comes back byte for byte. */
    CHECK_OK(parse("{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}", &e));
    /* A lone surrogate escape is not a character either; a proper pair is. */
    CHECK_INT(parse("\"\\ud800\"", &e), OBX_EINVAL);
    CHECK_INT(parse("\"\\udc00\"", &e), OBX_EINVAL);
    CHECK_OK(parse("\"\\ud83d\\ude00\"", &e));
end:
    TEST_END;
}

/* A NUL character would silently truncate the C string: it must be refused. */
static int
test_nul_refused(void)
{
    TEST_BEGIN;
    struct obx_json_error e;
    obx_json *j = NULL;

    CHECK_INT(parse("\"\\u0000\"", &e), OBX_EINVAL);
    CHECK_STR(e.code, "invalid_json");
    CHECK_INT(parse("{\"a\":\"x\\u0000y\"}", &e), OBX_EINVAL);
    CHECK_INT(parse("{\"a\\u0000b\":1}", &e), OBX_EINVAL);
    /* An escaped backslash followed by "u0000" is six ordinary characters. */
    CHECK_OK(obx_json_parse("\"\\\\u0000\"", 9, 100, 4, &j, &e));
    CHECK_STR(obx_json_string(j), "\\u0000");
    obx_json_free(j);
    j = NULL;
    /* ... but an escaped backslash then a real \u0000 escape is refused. */
    CHECK_INT(parse("\"\\\\\\u0000\"", &e), OBX_EINVAL);
    /* Other \u escapes are fine. */
    CHECK_OK(obx_json_parse("\"\\u0041\\u00e9\"", 14, 100, 4, &j, &e));
    CHECK_STR(obx_json_string(j), "A\xc3\xa9");
    obx_json_free(j);
    j = NULL;
end:
    obx_json_free(j);
    TEST_END;
}

/*
 * A raw NUL byte inside a string: cJSON copies it into valuestring, so the C string
 * ends there and the rest of the value is silently dropped ("hello\0world" would be
 * enqueued as "hello"). It must be refused like \u0000.
 */
static int
test_raw_nul_byte_refused(void)
{
    TEST_BEGIN;
    struct obx_json_error e;

    CHECK_INT(parse_n("\"ab\0cd\"", 7, &e), OBX_EINVAL);
    CHECK_INT(parse_n("{\"content\":\"hello\0world\"}", 25, &e), OBX_EINVAL);
end:
    TEST_END;
}

static int
test_trailing_data(void)
{
    TEST_BEGIN;
    struct obx_json_error e;

    CHECK_INT(parse("{} x", &e), OBX_EINVAL);
    CHECK_STR(e.code, "invalid_json");
    CHECK_INT(parse("{}}", &e), OBX_EINVAL);
    CHECK_INT(parse("1 2", &e), OBX_EINVAL);
    CHECK_INT(parse("{}{}", &e), OBX_EINVAL);
    CHECK_INT(parse("[1],", &e), OBX_EINVAL);
    CHECK_OK(parse("{} \n\t\r ", &e));
    CHECK_OK(parse(" \n{\"a\":1}\n", &e));
    /* len bounds the document: bytes after it are not looked at. */
    CHECK_OK(parse_n("{}garbage", 2, &e));
    /* Malformed and empty documents. */
    CHECK_INT(parse("", &e), OBX_EINVAL);
    CHECK_INT(parse("   ", &e), OBX_EINVAL);
    CHECK_INT(parse("{\"a\":}", &e), OBX_EINVAL);
    CHECK_INT(parse("{\"a\" 1}", &e), OBX_EINVAL);
    CHECK_INT(parse("\"unterminated", &e), OBX_EINVAL);
end:
    TEST_END;
}

/* A NUL byte is not whitespace: a NUL then garbage after the value is trailing data. */
static int
test_trailing_nul_byte_refused(void)
{
    TEST_BEGIN;
    struct obx_json_error e;

    CHECK_INT(parse_n("{} \0garbage", 11, &e), OBX_EINVAL);
    CHECK_INT(parse_n("[1] \0[2]", 8, &e), OBX_EINVAL);
end:
    TEST_END;
}

static int
test_getters(void)
{
    TEST_BEGIN;
    static const char doc[] =
        "{\"s\":\"text\",\"n\":-12.5,\"i\":42,\"t\":true,\"f\":false,\"z\":null,"
        "\"arr\":[1,\"two\",null],\"obj\":{\"k\":\"v\"},\"Case\":1}";
    obx_json *j = NULL, *v, *c;
    const char *names[16];
    int count = 0;

    CHECK_OK(obx_json_parse(doc, strlen(doc), MAX_BYTES, MAX_DEPTH, &j, NULL));
    CHECK(obx_json_is_object(j));
    CHECK(!obx_json_is_array(j));
    v = obx_json_get(j, "s");
    CHECK(obx_json_is_string(v));
    CHECK_STR(obx_json_string(v), "text");
    CHECK(!obx_json_is_number(v));
    v = obx_json_get(j, "n");
    CHECK(obx_json_is_number(v));
    CHECK(obx_json_number(v) == -12.5);
    CHECK(obx_json_string(v) == NULL); /* not a string */
    CHECK(obx_json_number(obx_json_get(j, "i")) == 42.0);
    CHECK(obx_json_is_bool(obx_json_get(j, "t")));
    CHECK(obx_json_is_true(obx_json_get(j, "t")));
    CHECK(obx_json_is_bool(obx_json_get(j, "f")));
    CHECK(!obx_json_is_true(obx_json_get(j, "f")));
    CHECK(obx_json_is_null(obx_json_get(j, "z")));
    CHECK(!obx_json_is_null(obx_json_get(j, "s")));
    /* Member names are case-sensitive; a missing member is NULL. */
    CHECK(obx_json_get(j, "Case") != NULL);
    CHECK(obx_json_get(j, "case") == NULL);
    CHECK(obx_json_get(j, "S") == NULL);
    CHECK(obx_json_get(j, "missing") == NULL);
    /* Arrays. */
    v = obx_json_get(j, "arr");
    CHECK(obx_json_is_array(v));
    CHECK_INT(obx_json_array_size(v), 3);
    c = obx_json_child(v);
    CHECK(obx_json_number(c) == 1.0);
    c = obx_json_next(c);
    CHECK_STR(obx_json_string(c), "two");
    c = obx_json_next(c);
    CHECK(obx_json_is_null(c));
    CHECK(obx_json_next(c) == NULL);
    CHECK_STR(obx_json_string(obx_json_get(obx_json_get(j, "obj"), "k")), "v");
    /* Iterating an object gives the members in document order, with their names. */
    for (c = obx_json_child(j); c && count < 16; c = obx_json_next(c))
        names[count++] = obx_json_name(c);
    CHECK_INT(count, 9);
    CHECK_STR(names[0], "s");
    CHECK_STR(names[6], "arr");
    CHECK_STR(names[8], "Case");
    /* NULL in, nothing out. */
    CHECK(obx_json_get(NULL, "s") == NULL);
    CHECK(obx_json_string(NULL) == NULL);
    CHECK(obx_json_child(NULL) == NULL);
    CHECK(obx_json_next(NULL) == NULL);
    CHECK(obx_json_name(NULL) == NULL);
    CHECK_INT(obx_json_array_size(NULL), 0);
    CHECK(!obx_json_is_object(NULL));
    CHECK(!obx_json_is_string(NULL));
    CHECK(!obx_json_is_null(NULL));
    CHECK(!obx_json_is_true(NULL));
    CHECK(obx_json_number(NULL) == 0.0);
    obx_json_free(NULL);
end:
    obx_json_free(j);
    TEST_END;
}

static const struct test_case tests[] = {
    {"size_limit", test_size_limit},
    {"depth_limit", test_depth_limit},
    {"utf8_validator", test_utf8_validator},
    {"invalid_utf8_documents", test_invalid_utf8_documents},
    {"nul_refused", test_nul_refused},
    {"raw_nul_byte_refused", test_raw_nul_byte_refused},
    {"trailing_data", test_trailing_data},
    {"trailing_nul_byte_refused", test_trailing_nul_byte_refused},
    {"getters", test_getters},
    {NULL, NULL},
};

TEST_MAIN(tests)
