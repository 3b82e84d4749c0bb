/*
 * Unit tests of http_client against a stub server on 127.0.0.1 sharing the loop: the POST
 * arrives byte for byte with its headers; status, Retry-After and the first
 * OBX_HTTP_BODY_KEEP bytes of the answer come back; each callback runs exactly once, may
 * start the next request, and never runs after obx_http_client_free; no answer is a transport
 * error (status 0); a failed allocation in new or post is OBX_ENOMEM with no callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "http_client.h"
#include "loop_http.h"
#include "mem.h"

/* What one callback saw (the result's strings are copied: they are borrowed). */
struct outcome {
    size_t body_len;
    int64_t duration_ms;
    /* chaining: start this many more requests from the callback */
    struct obx_http *h;
    const char *url;
    int chain;
    int calls;
    int status;
    int has_error;
    char retry_after[64];
    char error[256];
    char body[OBX_HTTP_BODY_KEEP + 64];
};

static void
on_done(void *ctx, const struct obx_http_result *r)
{
    struct outcome *o = ctx;

    o->calls++;
    o->status = r->status;
    o->has_error = r->error != NULL;
    snprintf(o->error, sizeof o->error, "%s", r->error ? r->error : "");
    snprintf(o->body, sizeof o->body, "%s", r->body ? r->body : "(null)");
    o->body_len = strlen(o->body);
    snprintf(o->retry_after, sizeof o->retry_after, "%s", r->retry_after ? r->retry_after : "");
    o->duration_ms = r->duration_ms;
    if (o->chain > 0) {
        o->chain--;
        if (obx_http_client_post(o->h, o->url, NULL, 0, "again", 5, on_done, o) != OBX_OK)
            o->calls += 1000; /* seen as a failure below */
    }
}

static int
calls_at_least(void *arg)
{
    struct outcome *o = arg;

    return o->calls >= o->chain + 1 || o->calls >= 1000;
}

struct many {
    struct outcome *o;
    int n, want;
};

static int
all_called(void *arg)
{
    struct many *m = arg;
    int done = 0;

    for (int i = 0; i < m->n; i++)
        done += m->o[i].calls;
    return done >= m->want;
}

static int
stub_got_one(void *arg)
{
    return ((struct stub_server *)arg)->nseen >= 1;
}

static const struct obx_http_opts OPTS = {2000, 3000, 4, NULL, "obx-test/1"};

static int
test_post_roundtrip(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o = {0};
    static const char body[] = "{\"a\":1}\0tail"; /* 12 bytes, a NUL inside */
    const char *hdr[] = {"Authorization: Bearer k-123", "Content-Type: application/json"};
    char url[64];
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(stub_start(&s, base, 201));
    s.retry_after = "30";
    s.reply_body = "{\"id\":\"p-1\"}";
    CHECK_OK(obx_http_client_new(base, &OPTS, &h));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v2/messages?x=1", s.port);
    CHECK_OK(obx_http_client_post(h, url, hdr, 2, body, sizeof body - 1, on_done, &o));
    CHECK_INT(obx_http_client_inflight(h), 1);
    CHECK(run_until_cond(base, calls_at_least, &o));
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.status, 201);
    CHECK_INT(o.has_error, 0);
    CHECK_STR(o.body, "{\"id\":\"p-1\"}");
    CHECK_STR(o.retry_after, "30");
    CHECK(o.duration_ms >= 0);
    CHECK_INT(obx_http_client_inflight(h), 0);
    CHECK_INT(s.nseen, 1);
    CHECK_INT(s.seen[0].method, EVHTTP_REQ_POST);
    CHECK_STR(s.seen[0].uri, "/v2/messages?x=1");
    CHECK_STR(s.seen[0].authorization, "Bearer k-123");
    CHECK_STR(s.seen[0].content_type, "application/json");
    CHECK_INT(s.seen[0].len, sizeof body - 1);
    CHECK(memcmp(s.seen[0].body, body, sizeof body - 1) == 0);
end:
    obx_http_client_free(h);
    stub_free(&s);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* Only the first OBX_HTTP_BODY_KEEP bytes of an answer are kept; no Retry-After is NULL. */
static int
test_long_answer_truncated(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o = {0};
    char *big = malloc(5001);
    char url[64];
    TEST_BEGIN;

    CHECK(base && big);
    memset(big, 'z', 5000);
    big[5000] = '\0';
    CHECK_OK(stub_start(&s, base, 500));
    s.reply_body = big;
    CHECK_OK(obx_http_client_new(base, &OPTS, &h));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    CHECK_OK(obx_http_client_post(h, url, NULL, 0, "", 0, on_done, &o));
    CHECK(run_until_cond(base, calls_at_least, &o));
    CHECK_INT(o.status, 500);
    CHECK_INT(o.body_len, OBX_HTTP_BODY_KEEP);
    CHECK_STR(o.retry_after, "");
    CHECK_INT(s.seen[0].len, 0);
end:
    obx_http_client_free(h);
    stub_free(&s);
    free(big);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* Nothing listening: status 0 and the transport's error. */
static int
test_connection_refused(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o = {0};
    char url[64];
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(stub_start(&s, base, 200));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    stub_free(&s); /* the port is closed now */
    CHECK_OK(obx_http_client_new(base, &OPTS, &h));
    CHECK_OK(obx_http_client_post(h, url, NULL, 0, "x", 1, on_done, &o));
    CHECK(run_until_cond(base, calls_at_least, &o));
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.status, 0);
    CHECK_INT(o.has_error, 1);
    CHECK(o.error[0] != '\0');
    CHECK_INT(obx_http_client_inflight(h), 0);
end:
    obx_http_client_free(h);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* A server that never answers: the request timeout ends it with status 0. */
static int
test_request_timeout(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o = {0};
    struct obx_http_opts opts = OPTS;
    char url[64];
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(stub_start(&s, base, 0)); /* holds every request */
    opts.request_timeout_ms = 300;
    CHECK_OK(obx_http_client_new(base, &opts, &h));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    CHECK_OK(obx_http_client_post(h, url, NULL, 0, "x", 1, on_done, &o));
    CHECK(run_until_cond(base, calls_at_least, &o));
    CHECK_INT(s.nseen, 1);
    CHECK_INT(o.status, 0);
    CHECK_INT(o.has_error, 1);
    CHECK(strstr(o.error, "imeout") || strstr(o.error, "imed out"));
end:
    obx_http_client_free(h);
    stub_free(&s);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* Freed with a request in flight: its callback never runs (ASan: nothing leaks). */
static int
test_free_abandons_inflight(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o = {0};
    char url[64];
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(stub_start(&s, base, 0));
    CHECK_OK(obx_http_client_new(base, &OPTS, &h));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    CHECK_OK(obx_http_client_post(h, url, NULL, 0, "x", 1, on_done, &o));
    CHECK_OK(obx_http_client_post(h, url, NULL, 0, "y", 1, on_done, &o));
    CHECK(run_until_cond(base, stub_got_one, &s));
    CHECK_INT(obx_http_client_inflight(h), 2);
    obx_http_client_free(h);
    h = NULL;
    for (int i = 0; i < 5; i++)
        event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
    CHECK_INT(o.calls, 0);
end:
    obx_http_client_free(h);
    stub_free(&s);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* Many at once (more than max_connections): one callback each; a callback may post again. */
static int
test_many_and_chained(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o[20];
    struct many m = {o, 20, 20};
    struct outcome c = {0};
    char url[64];
    TEST_BEGIN;

    memset(o, 0, sizeof o);
    CHECK(base);
    CHECK_OK(stub_start(&s, base, 202));
    CHECK_OK(obx_http_client_new(base, &OPTS, &h));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/m", s.port);
    for (int i = 0; i < 20; i++)
        CHECK_OK(obx_http_client_post(h, url, NULL, 0, "m", 1, on_done, &o[i]));
    CHECK_INT(obx_http_client_inflight(h), 20);
    CHECK(run_until_cond(base, all_called, &m));
    for (int i = 0; i < 20; i++) {
        CHECK_INT(o[i].calls, 1);
        CHECK_INT(o[i].status, 202);
    }
    CHECK_INT(s.nseen, 20);
    /* Three requests in a row, each started by the previous one's callback. */
    c.h = h;
    c.url = url;
    c.chain = 2;
    CHECK_OK(obx_http_client_post(h, url, NULL, 0, "c", 1, on_done, &c));
    m.o = &c;
    m.n = 1;
    m.want = 3;
    CHECK(run_until_cond(base, all_called, &m));
    CHECK_INT(c.calls, 3);
    CHECK_INT(s.nseen, 23);
    CHECK_INT(obx_http_client_inflight(h), 0);
end:
    obx_http_client_free(h);
    stub_free(&s);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* Each allocation of new and post failing in turn: OBX_ENOMEM, no callback, nothing held. */
static int
test_allocation_failures(void)
{
    struct event_base *base = event_base_new();
    struct stub_server s = {0};
    struct obx_http *h = NULL;
    struct outcome o = {0};
    const char *hdr[] = {"X-A: 1", "X-B: 2"};
    enum obx_err err = OBX_ENOMEM;
    int failures = 0;
    char url[64];
    TEST_BEGIN;

    CHECK(base);
    for (long n = 0; n < 50 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_http_client_new(base, &OPTS, &h);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK_INT(err, OBX_ENOMEM);
            CHECK(h == NULL);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures >= 2);
    CHECK_OK(stub_start(&s, base, 200));
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    err = OBX_ENOMEM;
    failures = 0;
    for (long n = 0; n < 50 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_http_client_post(h, url, hdr, 2, "body", 4, on_done, &o);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK_INT(err, OBX_ENOMEM);
            CHECK_INT(obx_http_client_inflight(h), 0);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures >= 2);
    CHECK(run_until_cond(base, calls_at_least, &o));
    CHECK_INT(o.calls, 1);
    CHECK_INT(o.status, 200);
    CHECK_INT(s.nseen, 1);
end:
    obx_mem_fail_after(-1);
    obx_http_client_free(h);
    stub_free(&s);
    if (base)
        event_base_free(base);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"post_roundtrip", test_post_roundtrip},
        {"long_answer_truncated", test_long_answer_truncated},
        {"connection_refused", test_connection_refused},
        {"request_timeout", test_request_timeout},
        {"free_abandons_inflight", test_free_abandons_inflight},
        {"many_and_chained", test_many_and_chained},
        {"allocation_failures", test_allocation_failures},
        {NULL, NULL},
    };

    setenv("NO_PROXY", "127.0.0.1", 1);
    return test_run_table(tests, argc, argv);
}
