/*
 * Unit tests for lib/partoo_request.c: the URL (base URL's trailing slash, channel id
 * percent-encoded), the headers, the body's fields (/work/shared/partoo-api.md: exactly
 * Partoo's seven fields, nulls omitted; {} for the probe), that the key is wiped once
 * libcurl holds its copy, and that requests are timed on the client's (here fake) clock.
 */
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clock.h"
#include "http_client.h"
#include "json.h"
#include "partoo_request.h"

#define BASE "http://127.0.0.1:1/v2"

static struct obx_msg
full_msg(void)
{
    struct obx_msg m = {"ch-1",
                        "msg-1",
                        "biz-1",
                        "conv-1",
                        "Hello \"you\"",
                        "User",
                        "Jane Doe",
                        "https://img.example/j.png",
                        7};
    return m;
}

/* 1 when every one of n bytes at p is zero. */
static int
all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int
test_url(void)
{
    TEST_BEGIN;
    struct obx_msg m = full_msg();
    struct obx_partoo_request r;

    m.channel_id = "a b/..?#%\xC3\xA9~-_.Z9";
    CHECK_OK(obx_partoo_request_init(&r, BASE "/", "k", m.channel_id, &m));
    /* The trailing slash of the base goes; everything but unreserved characters is escaped,
     * so a channel id can never add a path segment, a query or a fragment. */
    CHECK_STR(r.url, BASE "/custom-channels/a%20b%2F..%3F%23%25%C3%A9~-_.Z9/messages");
    obx_partoo_request_release(&r);
    CHECK_OK(obx_partoo_request_init(&r, BASE, "k", "ch-1", &m));
    CHECK_STR(r.url, BASE "/custom-channels/ch-1/messages");
end:
    obx_partoo_request_release(&r);
    TEST_END;
}

static int
test_headers(void)
{
    TEST_BEGIN;
    struct obx_msg m = full_msg();
    struct obx_partoo_request r;

    CHECK_OK(obx_partoo_request_init(&r, BASE, "s3cret-key", "ch-1", &m));
    CHECK_STR(r.headers[0], "x-APIKey: s3cret-key");
    CHECK_STR(r.headers[1], "Content-Type: application/json");
    CHECK_STR(r.headers[2], "Expect:");
    CHECK_INT(OBX_PARTOO_REQUEST_NHEADERS, 3);
    obx_partoo_request_release(&r);
    /* No key configured: the header is sent empty (Partoo answers 401, an auth pause). */
    CHECK_OK(obx_partoo_request_init(&r, BASE, NULL, "ch-1", &m));
    CHECK_STR(r.headers[0], "x-APIKey: ");
end:
    obx_partoo_request_release(&r);
    TEST_END;
}

/* Checks that body is an object with exactly the named string members, with these values. */
static int
body_is(const char *body, size_t len, const char *const *kv, size_t nkv)
{
    obx_json *doc = NULL;
    int n = 0, ok = 1;

    if (obx_json_parse(body, len, len + 1, 4, &doc, NULL) != OBX_OK || !obx_json_is_object(doc)) {
        fprintf(stderr, "  body is not a JSON object: %s\n", body);
        ok = 0;
    }
    for (obx_json *c = ok ? obx_json_child(doc) : NULL; c; c = obx_json_next(c))
        n++;
    if (ok && n != (int)(nkv / 2)) {
        fprintf(stderr, "  body has %d members, expected %zu: %s\n", n, nkv / 2, body);
        ok = 0;
    }
    for (size_t i = 0; ok && i + 1 < nkv; i += 2) {
        const char *v = obx_json_string(obx_json_get(doc, kv[i]));
        if (!v || strcmp(v, kv[i + 1]) != 0) {
            fprintf(stderr, "  body member %s is %s, expected %s\n", kv[i], v ? v : "(absent)",
                    kv[i + 1]);
            ok = 0;
        }
    }
    obx_json_free(doc);
    return ok;
}

static int
test_body(void)
{
    TEST_BEGIN;
    struct obx_msg m = full_msg();
    struct obx_partoo_request r;
    static const char *const full[] = {"business_id",
                                       "biz-1",
                                       "external_conversation_id",
                                       "conv-1",
                                       "external_message_id",
                                       "msg-1",
                                       "content",
                                       "Hello \"you\"",
                                       "sender_type",
                                       "User",
                                       "consumer_name",
                                       "Jane Doe",
                                       "consumer_image",
                                       "https://img.example/j.png"};
    static const char *const minimal[] = {"business_id",
                                          "biz-1",
                                          "external_conversation_id",
                                          "conv-1",
                                          "external_message_id",
                                          "msg-1",
                                          "content",
                                          "Hello \"you\"",
                                          "sender_type",
                                          "Consumer"};

    /* All seven fields of Partoo's table; neither channel_id (in the URL) nor priority. */
    CHECK_OK(obx_partoo_request_init(&r, BASE, "k", m.channel_id, &m));
    CHECK_INT(r.body_len, strlen(r.body));
    CHECK(body_is(r.body, r.body_len, full, sizeof full / sizeof full[0]));
    obx_partoo_request_release(&r);
    /* The optional ones are omitted when null. */
    m.consumer_name = NULL;
    m.consumer_image = NULL;
    m.sender_type = "Consumer";
    CHECK_OK(obx_partoo_request_init(&r, BASE, "k", m.channel_id, &m));
    CHECK(body_is(r.body, r.body_len, minimal, sizeof minimal / sizeof minimal[0]));
    obx_partoo_request_release(&r);
    /* The doctor's probe: {} to its channel, with the same URL scheme and headers. */
    CHECK_OK(obx_partoo_request_init(&r, BASE, "k", "outbox-doctor-probe", NULL));
    CHECK_STR(r.body, "{}");
    CHECK_INT(r.body_len, 2);
    CHECK_STR(r.url, BASE "/custom-channels/outbox-doctor-probe/messages");
    CHECK_STR(r.headers[0], "x-APIKey: k");
end:
    obx_partoo_request_release(&r);
    TEST_END;
}

static int
test_wipe_key(void)
{
    TEST_BEGIN;
    struct obx_msg m = full_msg();
    struct obx_partoo_request r;
    const char *key;
    size_t n;

    CHECK_OK(obx_partoo_request_init(&r, BASE, "s3cret-key", "ch-1", &m));
    key = r.headers[0];
    n = strlen(key);
    obx_partoo_request_wipe_key(&r);
    CHECK(all_zero(key, n));
end:
    obx_partoo_request_release(&r);
    TEST_END;
}

static void
on_done(void *ctx, const struct obx_http_result *res)
{
    *(int *)ctx = res->status == 0 && res->error ? 1 : -1;
}

/* Posting hands the key to libcurl and wipes ours at once, before the loop even runs. */
static int
test_post_wipes_key(void)
{
    TEST_BEGIN;
    struct obx_msg m = full_msg();
    struct obx_partoo_request r;
    struct event_base *base = event_base_new();
    struct obx_http_opts o = {2000, 2000, 1, NULL, NULL};
    struct obx_http *h = NULL;
    const char *key;
    size_t n;
    int done = 0;

    memset(&r, 0, sizeof r);
    CHECK(base);
    CHECK_OK(obx_http_client_new(base, &o, &h));
    CHECK_OK(obx_partoo_request_init(&r, BASE, "s3cret-key", "ch-1", &m));
    key = r.headers[0];
    n = strlen(key);
    CHECK_OK(obx_partoo_request_post(&r, h, on_done, &done));
    CHECK(all_zero(key, n));
    /* Port 1 on loopback refuses the connection: a transport error, no answer. */
    while (!done)
        CHECK(event_base_loop(base, EVLOOP_ONCE) >= 0);
    CHECK_INT(done, 1);
end:
    obx_partoo_request_release(&r);
    obx_http_client_free(h);
    if (base)
        event_base_free(base);
    TEST_END;
}

struct timed {
    int done;
    int64_t duration_ms;
};

static void
on_timed(void *ctx, const struct obx_http_result *res)
{
    struct timed *t = ctx;

    t->done = 1;
    t->duration_ms = res->duration_ms;
}

/*
 * A request is timed on the client's clock, so a fake one makes its duration exact: 1234 ms
 * pass on the fake monotonic clock between the POST and its (refused) answer, whatever the
 * real clock did. The wall clock is another reading and must not be used for it.
 */
static int
test_duration_on_fake_clock(void)
{
    TEST_BEGIN;
    struct obx_msg m = full_msg();
    struct obx_partoo_request r;
    struct obx_fake_clock fc;
    struct event_base *base = event_base_new();
    struct obx_http_opts o = {2000, 2000, 1, NULL, NULL, &fc.base};
    struct obx_http *h = NULL;
    struct timed t = {0, -1};

    memset(&r, 0, sizeof r);
    obx_clock_fake_init(&fc, INT64_C(1700000000000), 5000);
    CHECK(base);
    CHECK_OK(obx_http_client_new(base, &o, &h));
    CHECK_OK(obx_partoo_request_init(&r, BASE, "k", "ch-1", &m));
    CHECK_OK(obx_partoo_request_post(&r, h, on_timed, &t));
    fc.mono_ms += 1234;
    fc.now_ms -= 60000; /* the wall clock stepped back: no effect on a duration */
    while (!t.done)
        CHECK(event_base_loop(base, EVLOOP_ONCE) >= 0);
    CHECK_INT(t.duration_ms, 1234);
end:
    obx_partoo_request_release(&r);
    obx_http_client_free(h);
    if (base)
        event_base_free(base);
    TEST_END;
}

static int
test_probe_unreachable(void)
{
    TEST_BEGIN;
    struct obx_http_opts o = {2000, 2000, 1, NULL, NULL};
    char error[256];
    int status = -1;

    CHECK_OK(obx_partoo_request_probe(BASE, "k", "outbox-doctor-probe", &o, &status, error,
                                      sizeof error));
    CHECK_INT(status, 0);
    CHECK(error[0] != '\0');
    CHECK(strstr(error, "s3cret") == NULL);
end:
    TEST_END;
}

static const struct test_case tests[] = {
    {"url", test_url},
    {"headers", test_headers},
    {"body", test_body},
    {"wipe_key", test_wipe_key},
    {"post_wipes_key", test_post_wipes_key},
    {"duration_on_fake_clock", test_duration_on_fake_clock},
    {"probe_unreachable", test_probe_unreachable},
    {NULL, NULL},
};

TEST_MAIN(tests)
