/*
 * Unit tests for lib/msg.c: field validation against SPEC §10's limits, reading a
 * message object from JSON (producer API, JSON Lines), Partoo's request body and the
 * dedup comparison.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "json.h"
#include "msg.h"

static struct obx_msg
base_msg(void)
{
    struct obx_msg m = {"ch-1", "msg-1", "biz-1", "conv-1", "Hello", "Consumer", NULL, NULL, 0};
    return m;
}

/* A string of n copies of c (caller frees). */
static char *
repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    if (s) {
        memset(s, c, n);
        s[n] = '\0';
    }
    return s;
}

/* Validates m; returns 1 when the error has the given code and field (NULL: none expected). */
static int
fails_with(const struct obx_msg *m, const struct obx_msg_limits *lim, const char *code,
           const char *field)
{
    struct obx_field_error fe;
    enum obx_err err;

    memset(&fe, 0, sizeof fe);
    err = obx_msg_validate(m, lim, &fe);
    if (err != OBX_EINVAL || !fe.code || strcmp(fe.code, code) != 0 ||
        (field ? !fe.field || strcmp(fe.field, field) != 0 : fe.field != NULL) || !fe.message[0]) {
        fprintf(stderr, "  validate: err %d code %s field %s message '%s', expected %s/%s\n", err,
                fe.code ? fe.code : "(null)", fe.field ? fe.field : "(null)", fe.message, code,
                field ? field : "(null)");
        return 0;
    }
    return 1;
}

/* Offsets of the string fields of struct obx_msg with their names and requiredness. */
struct field {
    const char *name;
    size_t off;
    int required;
};

static const struct field fields[] = {
    {"channel_id", offsetof(struct obx_msg, channel_id), 1},
    {"external_message_id", offsetof(struct obx_msg, external_message_id), 1},
    {"business_id", offsetof(struct obx_msg, business_id), 1},
    {"external_conversation_id", offsetof(struct obx_msg, external_conversation_id), 1},
    {"content", offsetof(struct obx_msg, content), 1},
    {"sender_type", offsetof(struct obx_msg, sender_type), 1},
    {"consumer_name", offsetof(struct obx_msg, consumer_name), 0},
    {"consumer_image", offsetof(struct obx_msg, consumer_image), 0},
};
#define N_FIELDS (sizeof fields / sizeof fields[0])

static void
set_field(struct obx_msg *m, const struct field *f, const char *v)
{
    *(const char **)((char *)m + f->off) = v;
}

static int
test_validate_ok(void)
{
    TEST_BEGIN;
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_msg m = base_msg();
    struct obx_field_error fe;

    CHECK_INT(lim.max_id_bytes, 255);
    CHECK_INT(lim.max_name_bytes, 255);
    CHECK_INT(lim.max_image_bytes, 2048);
    CHECK_INT(lim.max_content_bytes, 65536);
    CHECK_OK(obx_msg_validate(&m, &lim, &fe));
    m.sender_type = "User";
    m.consumer_name = "Jöhn Doe";
    m.consumer_image = "https://example.com/a.png";
    m.priority = -5;
    CHECK_OK(obx_msg_validate(&m, &lim, &fe));
    /* Optional fields may be empty strings. */
    m.consumer_name = "";
    m.consumer_image = "";
    CHECK_OK(obx_msg_validate(&m, &lim, &fe));
end:
    TEST_END;
}

/* Every required field: missing (NULL) and empty are refused, naming the field. */
static int
test_validate_missing_and_empty(void)
{
    TEST_BEGIN;
    struct obx_msg_limits lim = obx_msg_limits_default();

    for (size_t i = 0; i < N_FIELDS; i++) {
        struct obx_msg m = base_msg();
        if (!fields[i].required)
            continue;
        set_field(&m, &fields[i], NULL);
        CHECK(fails_with(&m, &lim, "missing_field", fields[i].name));
        set_field(&m, &fields[i], "");
        CHECK(fails_with(&m, &lim, "invalid_value", fields[i].name));
    }
end:
    TEST_END;
}

/* Each limit: exactly at the limit passes, one byte more is too_long (bytes, not characters). */
static int
test_validate_lengths(void)
{
    TEST_BEGIN;
    struct obx_msg_limits lim = obx_msg_limits_default();
    char *at = NULL, *over = NULL, *utf8 = NULL;
    struct obx_field_error fe;

    for (size_t i = 0; i < N_FIELDS; i++) {
        struct obx_msg m = base_msg();
        size_t limit = strcmp(fields[i].name, "content") == 0          ? lim.max_content_bytes
                       : strcmp(fields[i].name, "consumer_name") == 0  ? lim.max_name_bytes
                       : strcmp(fields[i].name, "consumer_image") == 0 ? lim.max_image_bytes
                                                                       : lim.max_id_bytes;
        if (strcmp(fields[i].name, "sender_type") == 0)
            continue; /* an enum, checked below */
        at = repeat('a', limit);
        over = repeat('a', limit + 1);
        CHECK(at && over);
        set_field(&m, &fields[i], at);
        if (obx_msg_validate(&m, &lim, &fe) != OBX_OK)
            fprintf(stderr, "  %s at its limit %zu refused\n", fields[i].name, limit);
        CHECK_OK(obx_msg_validate(&m, &lim, &fe));
        set_field(&m, &fields[i], over);
        CHECK(fails_with(&m, &lim, "too_long", fields[i].name));
        free(at);
        free(over);
        at = over = NULL;
    }
    /* Limits count bytes: 128 two-byte characters (256 bytes) are over 255. */
    utf8 = malloc(257);
    CHECK(utf8);
    for (int i = 0; i < 128; i++)
        memcpy(utf8 + 2 * i, "\xc3\xa9", 2);
    utf8[256] = '\0';
    {
        struct obx_msg m = base_msg();
        m.business_id = utf8;
        CHECK(fails_with(&m, &lim, "too_long", "business_id"));
        utf8[254] = '\0'; /* 127 characters, 254 bytes */
        CHECK_OK(obx_msg_validate(&m, &lim, &fe));
    }
    /* The limits come from the struct, not from constants. */
    {
        struct obx_msg m = base_msg();
        struct obx_msg_limits small = lim;
        small.max_content_bytes = 5;
        m.content = "12345";
        CHECK_OK(obx_msg_validate(&m, &small, &fe));
        m.content = "123456";
        CHECK(fails_with(&m, &small, "too_long", "content"));
    }
end:
    free(at);
    free(over);
    free(utf8);
    TEST_END;
}

static int
test_validate_sender_type(void)
{
    TEST_BEGIN;
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_msg m = base_msg();
    static const char *const bad[] = {"Robot", "user",  "consumer", "USER",
                                      "User ", " User", "Users",    "Use"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m.sender_type = bad[i];
        CHECK(fails_with(&m, &lim, "invalid_value", "sender_type"));
    }
    m.sender_type = "UserUserUserUserUser"; /* long: still refused, naming the field */
    {
        struct obx_field_error fe;
        CHECK_INT(obx_msg_validate(&m, &lim, &fe), OBX_EINVAL);
        CHECK_STR(fe.field, "sender_type");
    }
end:
    TEST_END;
}

/* Invalid UTF-8 in any string field is refused, naming the field. */
static int
test_validate_utf8(void)
{
    TEST_BEGIN;
    struct obx_msg_limits lim = obx_msg_limits_default();
    static const char *const bad[] = {"ab\xc0\xafz", "\xed\xa0\x80", "x\xe2\x82",
                                      "\xf4\x90\x80\x80", "\xff"};

    for (size_t i = 0; i < N_FIELDS; i++) {
        if (strcmp(fields[i].name, "sender_type") == 0)
            continue;
        for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
            struct obx_msg m = base_msg();
            set_field(&m, &fields[i], bad[k]);
            CHECK(fails_with(&m, &lim, "invalid_utf8", fields[i].name));
        }
    }
end:
    TEST_END;
}

/* ---- from_json ------------------------------------------------------------------- */

/* Parses doc and reads a message from it; *docp keeps the document (strings borrow it). */
static enum obx_err
from_json(const char *doc, const char *url_channel, obx_json **docp, struct obx_msg *m,
          struct obx_field_error *fe)
{
    struct obx_msg_limits lim = obx_msg_limits_default();
    enum obx_err err;

    memset(fe, 0, sizeof *fe);
    *docp = NULL;
    err = obx_json_parse(doc, strlen(doc), 1 << 20, 32, docp, NULL);
    if (err != OBX_OK) {
        fprintf(stderr, "  test document does not parse: %s\n", doc);
        return OBX_EDB;
    }
    return obx_msg_from_json(*docp, url_channel, &lim, m, fe);
}

/* Reads doc and expects an error with code and field (field NULL: whole object). */
static int
json_fails(const char *doc, const char *url_channel, const char *code, const char *field)
{
    obx_json *d = NULL;
    struct obx_msg m;
    struct obx_field_error fe;
    enum obx_err err = from_json(doc, url_channel, &d, &m, &fe);
    int ok = err == OBX_EINVAL && fe.code && strcmp(fe.code, code) == 0 &&
             (field ? fe.field && strcmp(fe.field, field) == 0 : fe.field == NULL) &&
             m.channel_id == NULL && m.content == NULL;

    if (!ok)
        fprintf(stderr, "  %s\n    -> err %d code %s field %s ('%s'), expected %s/%s\n", doc, err,
                fe.code ? fe.code : "(null)", fe.field ? fe.field : "(null)", fe.message, code,
                field ? field : "(null)");
    obx_json_free(d);
    return ok;
}

#define FULL_BODY                                                                                \
    "\"external_message_id\":\"m1\",\"business_id\":\"b1\",\"external_conversation_id\":\"c1\"," \
    "\"content\":\"Hi\",\"sender_type\":\"User\""

static int
test_from_json_ok(void)
{
    TEST_BEGIN;
    obx_json *d = NULL;
    struct obx_msg m;
    struct obx_field_error fe;

    CHECK_OK(from_json("{\"channel_id\":\"ch\"," FULL_BODY ",\"consumer_name\":\"Ann\","
                       "\"consumer_image\":\"https://x/y.png\",\"priority\":7}",
                       NULL, &d, &m, &fe));
    CHECK_STR(m.channel_id, "ch");
    CHECK_STR(m.external_message_id, "m1");
    CHECK_STR(m.business_id, "b1");
    CHECK_STR(m.external_conversation_id, "c1");
    CHECK_STR(m.content, "Hi");
    CHECK_STR(m.sender_type, "User");
    CHECK_STR(m.consumer_name, "Ann");
    CHECK_STR(m.consumer_image, "https://x/y.png");
    CHECK_INT(m.priority, 7);
    /* Strings are borrowed from the document. */
    CHECK(m.content == obx_json_string(obx_json_get(d, "content")));
    obx_json_free(d);
    d = NULL;
    /* Optional members absent or null: NULL; priority absent or null: 0; negative ok. */
    CHECK_OK(from_json("{\"channel_id\":\"ch\"," FULL_BODY "}", NULL, &d, &m, &fe));
    CHECK(m.consumer_name == NULL);
    CHECK(m.consumer_image == NULL);
    CHECK_INT(m.priority, 0);
    obx_json_free(d);
    d = NULL;
    CHECK_OK(from_json("{\"channel_id\":\"ch\"," FULL_BODY ",\"consumer_name\":null,"
                       "\"consumer_image\":null,\"priority\":null}",
                       NULL, &d, &m, &fe));
    CHECK(m.consumer_name == NULL);
    CHECK(m.consumer_image == NULL);
    CHECK_INT(m.priority, 0);
    obx_json_free(d);
    d = NULL;
    CHECK_OK(from_json("{\"priority\":-3,\"channel_id\":\"ch\"," FULL_BODY "}", NULL, &d, &m, &fe));
    CHECK_INT(m.priority, -3);
    obx_json_free(d);
    d = NULL;
    CHECK_OK(from_json("{\"priority\":2.0,\"channel_id\":\"ch\"," FULL_BODY "}", NULL, &d, &m,
                       &fe));
    CHECK_INT(m.priority, 2);
end:
    obx_json_free(d);
    TEST_END;
}

static int
test_from_json_errors(void)
{
    TEST_BEGIN;
    /* Not an object. */
    CHECK(json_fails("[1,2]", NULL, "invalid_type", NULL));
    CHECK(json_fails("\"text\"", NULL, "invalid_type", NULL));
    /* Unknown member: not echoed as the field (it could be anything). */
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"colour\":\"red\"}", NULL,
                     "unknown_field", NULL));
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"Content\":\"x\"}", NULL,
                     "unknown_field", NULL));
    /* Repeated member. */
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"content\":\"again\"}", NULL,
                     "duplicate_field", "content"));
    CHECK(json_fails("{\"priority\":1,\"channel_id\":\"ch\"," FULL_BODY ",\"priority\":1}", NULL,
                     "duplicate_field", "priority"));
    /* Wrong types: a number, a bool, an object where a string belongs. */
    CHECK(json_fails("{\"channel_id\":5,\"external_message_id\":\"m1\",\"business_id\":\"b1\","
                     "\"external_conversation_id\":\"c1\",\"content\":\"Hi\","
                     "\"sender_type\":\"User\"}",
                     NULL, "invalid_type", "channel_id"));
    CHECK(json_fails("{\"channel_id\":\"ch\",\"external_message_id\":12,\"business_id\":\"b1\","
                     "\"external_conversation_id\":\"c1\",\"content\":\"Hi\","
                     "\"sender_type\":\"User\"}",
                     NULL, "invalid_type", "external_message_id"));
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"consumer_name\":true}", NULL,
                     "invalid_type", "consumer_name"));
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"consumer_image\":{}}", NULL,
                     "invalid_type", "consumer_image"));
    /* null is fine for an optional member, not for a required one. */
    CHECK(json_fails("{\"channel_id\":\"ch\",\"external_message_id\":\"m1\",\"business_id\":null,"
                     "\"external_conversation_id\":\"c1\",\"content\":\"Hi\","
                     "\"sender_type\":\"User\"}",
                     NULL, "invalid_type", "business_id"));
    /* A required member absent. */
    CHECK(json_fails("{\"channel_id\":\"ch\",\"external_message_id\":\"m1\",\"business_id\":\"b\","
                     "\"external_conversation_id\":\"c1\",\"sender_type\":\"User\"}",
                     NULL, "missing_field", "content"));
    CHECK(json_fails("{" FULL_BODY "}", NULL, "missing_field", "channel_id"));
    /* Priority: an integer or null. */
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"priority\":1.5}", NULL,
                     "invalid_value", "priority"));
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"priority\":\"1\"}", NULL,
                     "invalid_type", "priority"));
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"priority\":true}", NULL,
                     "invalid_type", "priority"));
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY ",\"priority\":1e300}", NULL,
                     "invalid_value", "priority"));
    /* The values are validated too. */
    CHECK(json_fails("{\"channel_id\":\"ch\",\"external_message_id\":\"m1\",\"business_id\":\"b1\","
                     "\"external_conversation_id\":\"c1\",\"content\":\"Hi\","
                     "\"sender_type\":\"Bot\"}",
                     NULL, "invalid_value", "sender_type"));
    CHECK(json_fails("{\"channel_id\":\"ch\",\"external_message_id\":\"m1\",\"business_id\":\"b1\","
                     "\"external_conversation_id\":\"c1\",\"content\":\"\","
                     "\"sender_type\":\"User\"}",
                     NULL, "invalid_value", "content"));
end:
    TEST_END;
}

/* channel_id comes from the URL (producer API) or from the body (JSON Lines), never both. */
static int
test_from_json_channel_by_url(void)
{
    TEST_BEGIN;
    obx_json *d = NULL;
    struct obx_msg m;
    struct obx_field_error fe;

    CHECK_OK(from_json("{" FULL_BODY "}", "url-channel", &d, &m, &fe));
    CHECK_STR(m.channel_id, "url-channel");
    CHECK_STR(m.external_message_id, "m1");
    CHECK(json_fails("{\"channel_id\":\"ch\"," FULL_BODY "}", "url-channel", "unknown_field",
                     "channel_id"));
    /* Even when it agrees with the URL. */
    CHECK(json_fails("{\"channel_id\":\"url-channel\"," FULL_BODY "}", "url-channel",
                     "unknown_field", "channel_id"));
    /* The URL value is validated like any other. */
    CHECK(json_fails("{" FULL_BODY "}", "", "invalid_value", "channel_id"));
end:
    obx_json_free(d);
    TEST_END;
}

/* ---- Partoo body ---------------------------------------------------------------------- */

static int
body_is(const struct obx_msg *m, const char *expect)
{
    struct obx_buf b;
    int ok;

    obx_buf_init(&b, 1 << 20);
    ok = obx_msg_partoo_body(m, &b) == OBX_OK && strcmp(obx_buf_str(&b), expect) == 0;
    if (!ok)
        fprintf(stderr, "  body: %s\n  want: %s\n", obx_buf_str(&b), expect);
    obx_buf_release(&b);
    return ok;
}

static int
test_partoo_body(void)
{
    TEST_BEGIN;
    struct obx_msg m = base_msg();
    struct obx_buf b;
    obx_json *doc = NULL;

    obx_buf_init(&b, 1 << 20);
    /* No channel_id, no priority; consumer_name and consumer_image omitted when NULL. */
    m.priority = 9;
    CHECK(body_is(&m, "{\"business_id\":\"biz-1\",\"external_conversation_id\":\"conv-1\","
                      "\"external_message_id\":\"msg-1\",\"content\":\"Hello\","
                      "\"sender_type\":\"Consumer\"}"));
    m.consumer_name = "Ann Example";
    m.consumer_image = "https://cdn.example.com/ann.png";
    CHECK(body_is(&m, "{\"business_id\":\"biz-1\",\"external_conversation_id\":\"conv-1\","
                      "\"external_message_id\":\"msg-1\",\"content\":\"Hello\","
                      "\"sender_type\":\"Consumer\",\"consumer_name\":\"Ann Example\","
                      "\"consumer_image\":\"https://cdn.example.com/ann.png\"}"));
    m.consumer_name = NULL;
    CHECK(body_is(&m, "{\"business_id\":\"biz-1\",\"external_conversation_id\":\"conv-1\","
                      "\"external_message_id\":\"msg-1\",\"content\":\"Hello\","
                      "\"sender_type\":\"Consumer\","
                      "\"consumer_image\":\"https://cdn.example.com/ann.png\"}"));
    /* Escaping: quotes, backslashes, newlines, tabs, other control characters; UTF-8 as is. */
    m = base_msg();
    m.content = "He said \"hi\"\nline 2\ttab\\ \x01\x1f caf\xc3\xa9";
    m.consumer_name = "O\"Brien";
    CHECK(body_is(&m, "{\"business_id\":\"biz-1\",\"external_conversation_id\":\"conv-1\","
                      "\"external_message_id\":\"msg-1\","
                      "\"content\":\"He said \\\"hi\\\"\\nline 2\\ttab\\\\ "
                      "\\u0001\\u001f caf\xc3\xa9\","
                      "\"sender_type\":\"Consumer\",\"consumer_name\":\"O\\\"Brien\"}"));
    /* And the body is JSON that reads back to the same fields. */
    CHECK_OK(obx_msg_partoo_body(&m, &b));
    CHECK_OK(obx_json_parse(b.data, b.len, 1 << 20, 4, &doc, NULL));
    CHECK_STR(obx_json_string(obx_json_get(doc, "content")), m.content);
    CHECK_STR(obx_json_string(obx_json_get(doc, "consumer_name")), m.consumer_name);
    CHECK(obx_json_get(doc, "consumer_image") == NULL);
    CHECK(obx_json_get(doc, "channel_id") == NULL);
    CHECK(obx_json_get(doc, "priority") == NULL);
    /* A buffer too small for the body refuses it. */
    obx_buf_release(&b);
    obx_buf_init(&b, 20);
    CHECK_INT(obx_msg_partoo_body(&m, &b), OBX_ETOOBIG);
end:
    obx_json_free(doc);
    obx_buf_release(&b);
    TEST_END;
}

/* ---- dedup comparison ------------------------------------------------------------------ */

static int
test_msg_same(void)
{
    TEST_BEGIN;
    struct obx_msg a = base_msg(), b = base_msg();
    char copy[16];

    CHECK(obx_msg_same(&a, &b));
    /* Compared by content, not by pointer. */
    snprintf(copy, sizeof copy, "%s", a.content);
    b.content = copy;
    CHECK(obx_msg_same(&a, &b));
    /* Any string field differing makes them different. */
    for (size_t i = 0; i < N_FIELDS; i++) {
        b = base_msg();
        set_field(&b, &fields[i], "different");
        CHECK(!obx_msg_same(&a, &b));
        CHECK(!obx_msg_same(&b, &a));
    }
    /* Optional fields: NULL equals NULL, but NULL is not "". */
    b = base_msg();
    b.consumer_name = "";
    CHECK(!obx_msg_same(&a, &b));
    CHECK(!obx_msg_same(&b, &a));
    a.consumer_name = "";
    CHECK(obx_msg_same(&a, &b));
    /* Priority counts. */
    a = base_msg();
    b = base_msg();
    b.priority = 1;
    CHECK(!obx_msg_same(&a, &b));
    a.priority = 1;
    CHECK(obx_msg_same(&a, &b));
end:
    TEST_END;
}

/* The worst case of JSON escaping in every field still fits obx_msg_partoo_body_max(). */
static int
test_partoo_body_max(void)
{
    TEST_BEGIN;
    static char ctl[4097], bad[4097];
    struct obx_msg m = base_msg();
    struct obx_buf b;

    memset(ctl, 0x01, sizeof ctl - 1);
    memset(bad, 0xff, sizeof bad - 1);
    m.consumer_name = ctl;
    m.consumer_image = bad;
    for (size_t i = 0; i < 6; i++)
        set_field(&m, &fields[i], i % 2 ? ctl : "\"\\\"\\");
    obx_buf_init(&b, obx_msg_partoo_body_max(&m));
    CHECK_OK(obx_msg_partoo_body(&m, &b));
    CHECK(b.len > 6 * 4096);
    obx_buf_release(&b);
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"validate_ok", test_validate_ok},
    {"validate_missing_and_empty", test_validate_missing_and_empty},
    {"validate_lengths", test_validate_lengths},
    {"validate_sender_type", test_validate_sender_type},
    {"validate_utf8", test_validate_utf8},
    {"from_json_ok", test_from_json_ok},
    {"from_json_errors", test_from_json_errors},
    {"from_json_channel_by_url", test_from_json_channel_by_url},
    {"partoo_body", test_partoo_body},
    {"msg_same", test_msg_same},
    {"partoo_body_max", test_partoo_body_max},
    {NULL, NULL},
};

TEST_MAIN(tests)
