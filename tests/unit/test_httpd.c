/*
 * Unit tests of httpd, the listeners' shared layer, on 127.0.0.1 port 0: listen strings
 * and the loopback test; path segments (percent-decoded, an encoded NUL or too many
 * refused), query parameters, JSON Content-Type; bounded bodies (obx_httpd_body and
 * evhttp's own 413, rewritten to the SPEC §5 JSON error with the listener's message and
 * counted); a malformed request answered 400 in JSON; the error document's exact shape;
 * and obx_httpd_new failing cleanly at each allocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "httpd.h"
#include "loop_http.h"
#include "mem.h"

/* A request /hold left unanswered, for the test to answer. */
static struct evhttp_request *held;

/* The test's router: /error answers an error; anything else echoes what httpd parsed. */
static void
on_request(struct evhttp_request *req, void *arg)
{
    char *seg[4] = {0};
    int n = obx_httpd_path_segments(req, seg, 4);
    const char *maxh = evhttp_find_header(evhttp_request_get_input_headers(req), "X-Max");
    char *q = obx_httpd_query_param(req, "q");
    char *body = NULL;
    size_t len = 0;
    enum obx_err err;
    struct obx_buf b;

    (void)arg;
    if (n == 1 && strcmp(seg[0], "error") == 0) {
        obx_httpd_error(req, 422, "invalid_field", "a \"quoted\" message", "content.text");
        goto out;
    }
    if (n == 1 && strcmp(seg[0], "hold") == 0) {
        obx_httpd_hold(req);
        held = req;
        goto out;
    }
    if (n == 1 && strcmp(seg[0], "nofield") == 0) {
        obx_httpd_error(req, 404, "not_found", "no such route", NULL);
        goto out;
    }
    err = obx_httpd_body(req, maxh ? (size_t)atoi(maxh) : 1 << 20, &body, &len);
    obx_buf_init(&b, 4096);
    if (obx_buf_printf(&b, "{\"n\":%d,\"seg\":[", n) != OBX_OK)
        abort();
    for (int i = 0; i < n; i++)
        if ((i && obx_buf_puts(&b, ",") != OBX_OK) || obx_buf_json_str(&b, seg[i]) != OBX_OK)
            abort();
    if (obx_buf_printf(&b, "],\"q\":") != OBX_OK ||
        (q ? obx_buf_json_str(&b, q) : obx_buf_puts(&b, "null")) != OBX_OK ||
        obx_buf_printf(&b, ",\"json\":%d,\"body\":\"%s\",\"len\":%zu,\"null\":%d}",
                       obx_httpd_is_json(req), obx_strerror(err), len,
                       body ? body[len] == '\0' : -1) != OBX_OK)
        abort();
    obx_httpd_reply_json(req, 200, &b);
    obx_buf_release(&b);
out:
    if (n > 0)
        obx_httpd_free_segments(seg, n);
    obx_free(q);
    obx_free(body);
}

struct fixture {
    struct event_base *base;
    struct obx_httpd *h;
    int port;
};

static int
fixture_start(struct fixture *f, size_t max_body)
{
    struct obx_httpd_limits lim = {.max_body_bytes = max_body,
                                   .body_limit_message = "the body exceeds test_max_body"};

    memset(f, 0, sizeof *f);
    f->base = event_base_new();
    if (!f->base || obx_httpd_new(f->base, "127.0.0.1:0", &lim, &f->h, &f->port) != OBX_OK)
        return -1;
    evhttp_set_gencb(obx_httpd_evhttp(f->h), on_request, NULL);
    return f->port > 0 ? 0 : -1;
}

static void
fixture_stop(struct fixture *f)
{
    obx_httpd_free(f->h);
    if (f->base)
        event_base_free(f->base);
}

static int
test_listen_strings(void)
{
    struct event_base *base = event_base_new();
    struct obx_httpd_limits lim = {.max_body_bytes = 100};
    struct obx_httpd *h = NULL;
    int port = -1;
    TEST_BEGIN;

    CHECK(base);
    CHECK_INT(obx_httpd_new(base, "127.0.0.1", &lim, &h, &port), OBX_ECONFIG);
    CHECK_INT(obx_httpd_new(base, "127.0.0.1:65536", &lim, &h, &port), OBX_ECONFIG);
    CHECK_INT(obx_httpd_new(base, "127.0.0.1:80x", &lim, &h, &port), OBX_ECONFIG);
    CHECK_INT(obx_httpd_new(base, "[::1:80", &lim, &h, &port), OBX_ECONFIG);
    CHECK(h == NULL);
    /* 192.0.2.1 (TEST-NET-1) is no address of this host: the bind fails. */
    CHECK_INT(obx_httpd_new(base, "192.0.2.1:0", &lim, &h, &port), OBX_EIO);
    CHECK(h == NULL);
    CHECK_INT(obx_httpd_is_loopback("127.0.0.1:8787"), 1);
    CHECK_INT(obx_httpd_is_loopback("127.3.2.1:1"), 1);
    CHECK_INT(obx_httpd_is_loopback("[::1]:8787"), 1);
    CHECK_INT(obx_httpd_is_loopback("[::ffff:127.0.0.1]:1"), 1);
    CHECK_INT(obx_httpd_is_loopback("0.0.0.0:8787"), 0);
    CHECK_INT(obx_httpd_is_loopback("10.1.2.3:8787"), 0);
    CHECK_INT(obx_httpd_is_loopback("[::]:8787"), 0);
    CHECK_INT(obx_httpd_is_loopback("127.0.0.1"), 0);
    CHECK_INT(obx_httpd_is_loopback("127.0.0.1:-1"), 0);
end:
    obx_httpd_free(h);
    if (base)
        event_base_free(base);
    TEST_END;
}

static int
test_segments_query_and_json(void)
{
    struct fixture f;
    struct http_reply r = {0};
    const char *json[] = {"Content-Type", "application/json; charset=utf-8", NULL};
    const char *text[] = {"Content-Type", "application/jsonx", NULL};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 1024));
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/a%2Fb/%C3%A9?q=hello%20world&z=1",
                        NULL, NULL, 0, &r),
              200);
    CHECK(strstr(r.content_type, "application/json") == r.content_type);
    CHECK(strstr(r.body, "\"n\":3,\"seg\":[\"v1\",\"a/b\",\"\xc3\xa9\"],\"q\":\"hello world\""));
    CHECK(strstr(r.body, "\"json\":0"));
    http_reply_release(&r);
    /* A trailing slash adds no segment; no query: no parameter. */
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/x/", json, NULL, 0, &r), 200);
    CHECK(strstr(r.body, "\"n\":2,\"seg\":[\"v1\",\"x\"],\"q\":null,\"json\":1"));
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/", text, NULL, 0, &r), 200);
    CHECK(strstr(r.body, "\"n\":0,\"seg\":[],\"q\":null,\"json\":0"));
    http_reply_release(&r);
    /* An encoded NUL, or more segments than asked for: no segments at all. */
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/a%00b", NULL, NULL, 0, &r), 200);
    CHECK(strstr(r.body, "\"n\":-1,\"seg\":[]"));
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/a/b/c/d/e", NULL, NULL, 0, &r), 200);
    CHECK(strstr(r.body, "\"n\":-1,\"seg\":[]"));
    http_reply_release(&r);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* The SPEC §5 error document, escaped, with and without a field. */
static int
test_error_json_shape(void)
{
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 1024));
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/error", NULL, "x", 1, &r), 422);
    CHECK_STR(r.body, "{\"error\":{\"code\":\"invalid_field\",\"message\":\"a \\\"quoted\\\" "
                      "message\",\"field\":\"content.text\"}}");
    CHECK_STR(r.content_type, "application/json");
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/nofield", NULL, NULL, 0, &r), 404);
    CHECK_STR(r.body,
              "{\"error\":{\"code\":\"not_found\",\"message\":\"no such route\",\"field\":null}}");
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* Bodies: copied whole and NUL-terminated up to the limit; over it, 413 in JSON. */
static int
test_body_bounds(void)
{
    struct fixture f;
    struct http_reply r = {0};
    struct obx_httpd_stats s;
    char body[101];
    const char *max10[] = {"X-Max", "10", NULL};
    TEST_BEGIN;

    memset(body, 'b', sizeof body);
    CHECK_OK(fixture_start(&f, 100));
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/in", NULL, body, 100, &r), 200);
    CHECK(strstr(r.body, "\"body\":\"ok\",\"len\":100,\"null\":1"));
    http_reply_release(&r);
    /* obx_httpd_body's own cap, below the listener's. */
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/in", max10, body, 11, &r), 200);
    CHECK(strstr(r.body, "\"len\":0,\"null\":-1"));
    CHECK(strstr(r.body, "\"body\":\"ok\"") == NULL);
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/in", max10, body, 10, &r), 200);
    CHECK(strstr(r.body, "\"body\":\"ok\",\"len\":10"));
    http_reply_release(&r);
    /* Over the listener's limit: evhttp's 413, as our JSON with the listener's message. */
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/in", NULL, body, 101, &r), 413);
    CHECK(strstr(r.content_type, "application/json") == r.content_type);
    CHECK(strstr(r.body, "\"message\":\"the body exceeds test_max_body\""));
    http_reply_release(&r);
    obx_httpd_stats(f.h, &s);
    CHECK_INT(s.too_large, 1);
    CHECK_INT(s.bad_request, 0);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* A request line evhttp cannot parse: 400, as JSON, counted; the listener carries on. */
static int
test_malformed_request_is_json_400(void)
{
    static const char junk[] = "NOT A REQUEST\r\n\r\n";
    static const char unknown[] = "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n";
    struct fixture f;
    struct obx_httpd_stats s;
    char *got = NULL;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, 100));
    got = raw_call(f.base, f.port, junk, sizeof junk - 1);
    CHECK(got);
    CHECK(strncmp(got, "HTTP/1.1 400 ", 13) == 0);
    CHECK(strstr(got, "Content-Type: application/json"));
    CHECK(strstr(got, "{\"error\":{\"code\":"));
    CHECK(strstr(got, "<html") == NULL);
    free(got);
    got = raw_call(f.base, f.port, unknown, sizeof unknown - 1);
    CHECK(got);
    CHECK(strncmp(got, "HTTP/1.1 4", 10) == 0 || strncmp(got, "HTTP/1.1 5", 10) == 0);
    CHECK(strstr(got, "{\"error\":{\"code\":"));
    obx_httpd_stats(f.h, &s);
    CHECK_INT(s.bad_request, 2);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/still/up", NULL, NULL, 0, NULL), 200);
end:
    free(got);
    fixture_stop(&f);
    TEST_END;
}

static int
is_held(void *arg)
{
    (void)arg;
    return held != NULL;
}

static int
closed(void *arg)
{
    return ((struct raw_conn *)arg)->x.done;
}

static int
got_reply(void *arg)
{
    struct raw_conn *c = arg;

    return c->x.done || evbuffer_search(c->x.got, "\r\n\r\n", 4, NULL).pos >= 0;
}

/*
 * Memory before authentication is bounded per listener (80 KiB here): a whole 60 KB
 * request waiting for its answer counts, so a second client sending 50 KB of an
 * unfinished body crosses the budget and gets a JSON 503 and the close. Once the first
 * is answered its bytes no longer count: the next large request is served.
 */
static int
test_body_budget_sheds(void)
{
    static const char head[] = "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n";
    struct obx_httpd_limits lim = {.max_body_bytes = 64 * 1024, .body_budget_bytes = 1};
    struct event_base *base = event_base_new();
    struct obx_httpd *h = NULL;
    struct obx_httpd_stats s;
    struct raw_conn a = {0}, b = {0};
    struct obx_buf ok;
    char *body = malloc(60000), *got = NULL;
    int port = 0;
    TEST_BEGIN;

    held = NULL;
    obx_buf_init(&ok, 64);
    CHECK(base && body);
    memset(body, 'b', 60000);
    CHECK_OK(obx_httpd_new(base, "127.0.0.1:0", &lim, &h, &port));
    evhttp_set_gencb(obx_httpd_evhttp(h), on_request, NULL);
    CHECK_OK(raw_open(&a, base, port));
    raw_send(&a, head, sizeof head - 1);
    raw_send(&a, body, 60000);
    CHECK(run_until_cond(base, is_held, NULL));
    CHECK_OK(raw_open(&b, base, port));
    raw_send(&b, head, sizeof head - 1);
    raw_send(&b, body, 50000);
    CHECK(run_until_cond(base, closed, &b));
    got = raw_got(&b);
    CHECK(got);
    CHECK(strncmp(got, "HTTP/1.1 503 ", 13) == 0);
    CHECK(strstr(got, "Retry-After: 1"));
    CHECK(strstr(got, "{\"error\":{\"code\":\"unavailable\""));
    obx_httpd_stats(h, &s);
    CHECK_INT(s.shed, 1);
    /* The held request is answered; its bytes leave the budget. */
    CHECK_OK(obx_buf_puts(&ok, "{}"));
    obx_httpd_reply_json(held, 200, &ok);
    held = NULL;
    CHECK(run_until_cond(base, got_reply, &a));
    free(got);
    got = raw_got(&a);
    CHECK(got && strncmp(got, "HTTP/1.1 200 ", 13) == 0);
    CHECK_INT(http_call(base, port, EVHTTP_REQ_POST, "/in", NULL, body, 60000, NULL), 200);
    obx_httpd_stats(h, &s);
    CHECK_INT(s.shed, 1);
end:
    free(got);
    free(body);
    obx_buf_release(&ok);
    raw_close(&a);
    raw_close(&b);
    obx_httpd_free(h);
    if (base)
        event_base_free(base);
    TEST_END;
}

/* Each allocation of obx_httpd_new failing in turn: an error and nothing held. */
static int
test_new_allocation_failures(void)
{
    struct event_base *base = event_base_new();
    struct obx_httpd_limits lim = {.max_body_bytes = 100};
    struct obx_httpd *h = NULL;
    enum obx_err err = OBX_ENOMEM;
    int failures = 0, port = 0;
    TEST_BEGIN;

    CHECK(base);
    for (long n = 0; n < 50 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_httpd_new(base, "127.0.0.1:0", &lim, &h, &port);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK_INT(err, OBX_ENOMEM);
            CHECK(h == NULL);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures >= 1);
    evhttp_set_gencb(obx_httpd_evhttp(h), on_request, NULL);
    CHECK_INT(http_call(base, port, EVHTTP_REQ_GET, "/ok", NULL, NULL, 0, NULL), 200);
end:
    obx_mem_fail_after(-1);
    obx_httpd_free(h);
    if (base)
        event_base_free(base);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"listen_strings", test_listen_strings},
        {"segments_query_and_json", test_segments_query_and_json},
        {"error_json_shape", test_error_json_shape},
        {"body_bounds", test_body_bounds},
        {"malformed_request_is_json_400", test_malformed_request_is_json_400},
        {"body_budget_sheds", test_body_budget_sheds},
        {"new_allocation_failures", test_new_allocation_failures},
        {NULL, NULL},
    };

    return test_run_table(tests, argc, argv);
}
