/*
 * Unit tests of api, the producer HTTP API, on 127.0.0.1 port 0 with a real store thread
 * behind it: the bearer token (401 + WWW-Authenticate; /healthz open; a non-loopback
 * address without a token refused); routing (404, 405 with Allow); POST /v1/messages
 * committed before its 202, a duplicate and a conflict (409), and every refusal answered
 * with the SPEC §5 error naming the field and nothing written (415, 413, invalid JSON,
 * missing or invalid fields, bad batches); per-item results of a batch; GET, retry and
 * cancel of one message; query parameters validated (limit, cursor, state); a write
 * failure answered 503; a failed allocation at each step of a POST answered 503 (and
 * nothing stored) or 202 (and stored), never left without an answer.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "check.h"
#include "config.h"
#include "log.h"
#include "loop_http.h"
#include "mem.h"
#include "store_queue.h"
#include "testdb.h"

static char path[256];

#define TOKEN "unit-test-token-0123456789abcdef"
#define MSG(ext, content)                                                                \
    "{\"channel_id\":\"ch\",\"external_message_id\":\"" ext "\",\"business_id\":\"b1\"," \
    "\"external_conversation_id\":\"c1\",\"content\":\"" content "\",\"sender_type\":"   \
    "\"Consumer\"}"

struct fixture {
    struct event_base *base;
    struct obx_store *st; /* the loop's, for reads */
    struct obx_storeq *q;
    struct obx_config cfg;
    int cfg_ok;
    struct obx_api *api;
    int port;
};

static int
fixture_start(struct fixture *f, const char *const *kv)
{
    struct obx_store *wst = NULL;

    memset(f, 0, sizeof *f);
    testdb_remove(path);
    if (obx_config_init(&f->cfg) != OBX_OK)
        return -1;
    f->cfg_ok = 1;
    if (obx_config_set(&f->cfg, "api_listen", "127.0.0.1:0", OBX_SRC_FLAG, NULL) != OBX_OK ||
        obx_config_set(&f->cfg, "api_token", TOKEN, OBX_SRC_FLAG, NULL) != OBX_OK)
        return -1;
    for (int i = 0; kv && kv[i]; i += 2)
        if (obx_config_set(&f->cfg, kv[i], kv[i + 1], OBX_SRC_FLAG, NULL) != OBX_OK)
            return -1;
    f->base = event_base_new();
    if (!f->base || obx_store_open(path, NULL, &wst) != OBX_OK)
        return -1;
    if (obx_storeq_new(f->base, wst, &f->q) != OBX_OK) {
        obx_store_free(wst);
        return -1;
    }
    if (obx_store_open(path, NULL, &f->st) != OBX_OK)
        return -1;
    if (obx_api_new(f->base, f->st, f->q, &f->cfg, NULL, 0, &f->api) != OBX_OK)
        return -1;
    f->port = obx_api_port(f->api);
    return f->port > 0 ? 0 : -1;
}

static void
fixture_stop(struct fixture *f)
{
    if (f->q)
        obx_storeq_drain(f->q);
    obx_api_free(f->api);
    obx_storeq_free(f->q);
    obx_store_free(f->st);
    if (f->base)
        event_base_free(f->base);
    if (f->cfg_ok)
        obx_config_release(&f->cfg);
    testdb_remove(path);
}

static const char BEARER[] = "Bearer " TOKEN;
static const char *const AUTH_JSON[] = {"Authorization", BEARER, "Content-Type", "application/json",
                                        NULL};
static const char *const AUTH[] = {"Authorization", BEARER, NULL};

static int
post(struct fixture *f, const char *p, const char *body, struct http_reply *r)
{
    return http_call(f->base, f->port, EVHTTP_REQ_POST, p, AUTH_JSON, body, body ? strlen(body) : 0,
                     r);
}

static int
get(struct fixture *f, const char *p, struct http_reply *r)
{
    return http_call(f->base, f->port, EVHTTP_REQ_GET, p, AUTH, NULL, 0, r);
}

/* The body is the SPEC §5 error with this code and field (NULL: "field":null). */
static int
is_error(const struct http_reply *r, const char *code, const char *field)
{
    char want[200];

    if (!r->body)
        return 0;
    snprintf(want, sizeof want, "{\"error\":{\"code\":\"%s\",\"message\":", code);
    if (strncmp(r->body, want, strlen(want)) != 0)
        return 0;
    if (field)
        snprintf(want, sizeof want, ",\"field\":\"%s\"}}", field);
    else
        snprintf(want, sizeof want, ",\"field\":null}}");
    return strlen(r->body) >= strlen(want) &&
           strcmp(r->body + strlen(r->body) - strlen(want), want) == 0;
}

static int
test_token_and_routing(void)
{
    struct fixture f;
    struct http_reply r = {0};
    static const char wrong_bearer[] = "Bearer " TOKEN "x";
    const char *wrong[] = {"Authorization", wrong_bearer, NULL};
    const char *basic[] = {"Authorization", "Basic " TOKEN, NULL};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/stats", NULL, NULL, 0, &r), 401);
    CHECK(is_error(&r, "unauthorized", NULL));
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/stats", wrong, NULL, 0, &r), 401);
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/stats", basic, NULL, 0, &r), 401);
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/stats", &r), 200);
    http_reply_release(&r);
    /* Open routes. */
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/healthz", NULL, NULL, 0, &r), 200);
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_GET, "/v1/auth", NULL, NULL, 0, &r), 200);
    http_reply_release(&r);
    /* A POST without the token writes nothing. */
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/v1/messages", AUTH_JSON + 2,
                        MSG("m0", "x"), strlen(MSG("m0", "x")), &r),
              401);
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 0);
    /* Routing. */
    CHECK_INT(get(&f, "/v2/nothing", &r), 404);
    CHECK(is_error(&r, "not_found", NULL));
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/pause", &r), 405);
    CHECK(is_error(&r, "method_not_allowed", NULL));
    http_reply_release(&r);
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_PUT, "/v1/messages", AUTH, NULL, 0, &r), 405);
    http_reply_release(&r);
    /* Metrics without a source: 404. */
    CHECK_INT(get(&f, "/metrics", &r), 404);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

static int
test_non_loopback_needs_token(void)
{
    struct obx_config cfg;
    struct event_base *base = event_base_new();
    struct obx_api *api = NULL;
    int cfg_ok = 0;
    TEST_BEGIN;

    CHECK(base);
    CHECK_OK(obx_config_init(&cfg));
    cfg_ok = 1;
    CHECK_OK(obx_config_set(&cfg, "api_listen", "0.0.0.0:0", OBX_SRC_FLAG, NULL));
    CHECK_INT(obx_api_new(base, NULL, NULL, &cfg, NULL, 0, &api), OBX_ECONFIG);
    CHECK(api == NULL);
end:
    if (cfg_ok)
        obx_config_release(&cfg);
    if (base)
        event_base_free(base);
    TEST_END;
}

static int
test_enqueue_dup_conflict(void)
{
    struct fixture f;
    struct http_reply r = {0};
    struct obx_api_stats s;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(post(&f, "/v1/messages", MSG("m1", "hello"), &r), 202);
    CHECK(strstr(r.body, "\"state\":\"queued\",\"duplicate\":false"));
    http_reply_release(&r);
    /* Committed before the 202. */
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE external_message_id = 'm1' AND "
                               "content = 'hello' AND state = 'queued'"),
              1);
    CHECK_INT(post(&f, "/v1/messages", MSG("m1", "hello"), &r), 202);
    CHECK(strstr(r.body, "\"duplicate\":true"));
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/messages", MSG("m1", "changed"), &r), 409);
    CHECK(is_error(&r, "conflict", "external_message_id"));
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 1);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE content = 'hello'"), 1);
    obx_api_stats(f.api, &s);
    CHECK_INT(s.messages_accepted, 1);
    CHECK_INT(s.messages_duplicate, 1);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* Every refused POST names what is wrong and writes nothing. */
static int
test_post_refusals_name_the_field(void)
{
    static const char *const kv[] = {"max_body_bytes", "4096", "max_content_bytes", "16", NULL};
    static const struct {
        const char *body;
        int status;
        const char *code, *field;
    } cases[] = {
        {"{\"channel_id\":\"ch\"", 400, "invalid_json", NULL},
        {"[1,2]", 400, "invalid_type", NULL},
        {"{\"channel_id\":\"ch\",\"external_message_id\":\"m\",\"business_id\":\"b\","
         "\"external_conversation_id\":\"c\",\"sender_type\":\"Consumer\"}",
         400, "missing_field", "content"},
        {"{\"channel_id\":\"ch\",\"external_message_id\":\"m\",\"business_id\":\"b\","
         "\"external_conversation_id\":\"c\",\"content\":\"x\",\"sender_type\":\"Bot\"}",
         400, "invalid_value", "sender_type"},
        {"{\"channel_id\":\"ch\",\"external_message_id\":\"m\",\"business_id\":\"b\","
         "\"external_conversation_id\":\"c\",\"content\":\"x\",\"sender_type\":\"Consumer\","
         "\"priority\":\"high\"}",
         400, "invalid_type", "priority"},
        {"{\"channel_id\":\"ch\",\"external_message_id\":\"\",\"business_id\":\"b\","
         "\"external_conversation_id\":\"c\",\"content\":\"x\",\"sender_type\":\"Consumer\"}",
         400, "invalid_value", "external_message_id"},
        {MSG("m2", "this content is longer than sixteen bytes"), 400, NULL, "content"},
        {"{\"messages\":[]}", 400, "invalid_value", "messages"},
        {"{\"messages\":{}}", 400, "invalid_value", "messages"},
        {"{\"messages\":[" MSG("m3", "x") "],\"extra\":1}", 400, "invalid_value", "messages"},
    };
    struct fixture f;
    struct http_reply r = {0};
    const char *text[] = {"Authorization", BEARER, "Content-Type", "text/plain", NULL};
    char big[5000];
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, kv));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int st = post(&f, "/v1/messages", cases[i].body, &r);
        if (st != cases[i].status ||
            (cases[i].code && !is_error(&r, cases[i].code, cases[i].field)) ||
            (!cases[i].code && !strstr(r.body ? r.body : "", cases[i].field))) {
            fprintf(stderr, "  case %zu: %d %s\n", i, st, r.body ? r.body : "(no body)");
            CHECK(0);
        }
        http_reply_release(&r);
    }
    CHECK_INT(http_call(f.base, f.port, EVHTTP_REQ_POST, "/v1/messages", text, MSG("m4", "x"),
                        strlen(MSG("m4", "x")), &r),
              415);
    CHECK(is_error(&r, "unsupported_media_type", NULL));
    http_reply_release(&r);
    memset(big, ' ', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    big[0] = '{';
    big[sizeof big - 2] = '}';
    CHECK_INT(post(&f, "/v1/messages", big, &r), 413);
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 0);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* A batch: one result per item, in order; the valid ones are stored, the others named. */
static int
test_batch_results(void)
{
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(post(&f, "/v1/messages", MSG("k", "original"), &r), 202);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/messages",
                   "{\"messages\":[" MSG("b1", "one") ",{\"channel_id\":\"ch\"}," MSG(
                       "k", "different") "," MSG("b1", "one") "]}",
                   &r),
              202);
    CHECK(strstr(r.body, "{\"results\":[{\"id\":"));
    CHECK(strstr(r.body, "\"field\":\"messages[1].external_message_id\"}}") ||
          strstr(r.body, "\"field\":\"messages[1]."));
    CHECK(strstr(r.body, "\"code\":\"conflict\""));
    CHECK(strstr(r.body, "\"field\":\"messages[2].external_message_id\""));
    CHECK(strstr(r.body, "\"duplicate\":true"));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 2);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE external_message_id = 'k' AND "
                               "content = 'original'"),
              1);
    http_reply_release(&r);
    /* All invalid: answered at once, nothing stored. */
    CHECK_INT(post(&f, "/v1/messages", "{\"messages\":[{\"channel_id\":\"ch\"}]}", &r), 202);
    CHECK(strstr(r.body, "\"field\":\"messages[0]."));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 2);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

static int
test_get_retry_cancel(void)
{
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    CHECK_INT(post(&f, "/v1/messages", MSG("g1", "hi"), &r), 202);
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/messages/ch/g1", &r), 200);
    CHECK(strstr(r.body, "\"external_message_id\":\"g1\""));
    CHECK(strstr(r.body, "\"state\":\"queued\""));
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/messages/ch/nope", &r), 404);
    CHECK(is_error(&r, "not_found", NULL));
    http_reply_release(&r);
    /* Only failed or accepted messages can be retried. */
    CHECK_INT(post(&f, "/v1/messages/ch/g1/retry", NULL, &r), 409);
    CHECK(is_error(&r, "invalid_state", "state"));
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/messages/ch/g1/cancel", NULL, &r), 200);
    CHECK(strstr(r.body, "\"state\":\"cancelled\""));
    http_reply_release(&r);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox WHERE state = 'cancelled'"), 1);
    CHECK_INT(post(&f, "/v1/messages/ch/g1/cancel", NULL, &r), 409);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/messages/ch/nope/cancel", NULL, &r), 404);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/inbox/12345/ack", NULL, &r), 404);
    CHECK(is_error(&r, "not_found", NULL));
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* Query parameters are validated and named. */
static int
test_query_parameters(void)
{
    static const struct {
        const char *path;
        const char *field;
    } bad[] = {
        {"/v1/messages?limit=0", "limit"},         {"/v1/messages?limit=abc", "limit"},
        {"/v1/messages?state=lost", "state"},      {"/v1/messages?cursor=-5", "cursor"},
        {"/v1/inbox?limit=1001", "limit"},         {"/v1/inbox?cursor=x", "cursor"},
        {"/v1/stats/history?range=year", "range"},
    };
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = get(&f, bad[i].path, &r);
        if (st != 400 || !is_error(&r, "invalid_value", bad[i].field)) {
            fprintf(stderr, "  %s: %d %s\n", bad[i].path, st, r.body ? r.body : "(no body)");
            CHECK(0);
        }
        http_reply_release(&r);
    }
    CHECK_INT(post(&f, "/v1/messages", MSG("q1", "a"), &r), 202);
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/messages", MSG("q2", "b"), &r), 202);
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/messages?limit=1", &r), 200);
    CHECK(strstr(r.body, "\"external_message_id\":\"q2\""));
    CHECK(strstr(r.body, "\"external_message_id\":\"q1\"") == NULL);
    CHECK(strstr(r.body, "\"next_cursor\":\"") != NULL);
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/inbox", &r), 200);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* POST /v1/pause and /v1/resume: the body is checked and named; the pause is committed. */
static int
test_pause_resume(void)
{
    static const struct {
        const char *body;
        const char *code, *field;
    } bad[] = {
        {"{}", "missing_field", "channel_id"},
        {"{\"channel_id\":\"\"}", "invalid_value", "channel_id"},
        {"{\"channel_id\":7}", "invalid_value", "channel_id"},
        {"{\"channel_id\":\"ch\",\"tenant\":\"t1\"}", "invalid_value", "tenant"},
        {"{\"channel_id\":\"ch\",\"reason\":[]}", "invalid_value", "reason"},
        {"[\"ch\"]", "invalid_json", NULL},
    };
    struct fixture f;
    struct http_reply r = {0};
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = post(&f, "/v1/pause", bad[i].body, &r);
        if (st != 400 || !is_error(&r, bad[i].code, bad[i].field)) {
            fprintf(stderr, "  %s: %d %s\n", bad[i].body, st, r.body ? r.body : "(no body)");
            CHECK(0);
        }
        http_reply_release(&r);
    }
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM pauses"), 0);
    CHECK_INT(post(&f, "/v1/pause", "{\"channel_id\":\"ch\",\"reason\":\"maintenance\"}", &r), 200);
    CHECK_STR(r.body, "{\"scope\":\"channel\",\"channel_id\":\"ch\",\"paused\":true,"
                      "\"changed\":true}");
    http_reply_release(&r);
    CHECK_INT(testdb_int(path,
                         "SELECT count(*) FROM pauses WHERE key = 'ch' AND reason = 'maintenance' "
                         "AND resumed_at_ms IS NULL"),
              1);
    /* Idempotent. */
    CHECK_INT(post(&f, "/v1/pause", "{\"channel_id\":\"ch\"}", &r), 200);
    CHECK(strstr(r.body, "\"changed\":false"));
    http_reply_release(&r);
    CHECK_INT(get(&f, "/v1/stats", &r), 200);
    CHECK(strstr(r.body, "\"ch\""));
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/resume", "{\"channel_id\":\"ch\"}", &r), 200);
    CHECK(strstr(r.body, "\"paused\":false,\"changed\":true"));
    http_reply_release(&r);
    CHECK_INT(post(&f, "/v1/resume", "{\"channel_id\":\"ch\"}", &r), 200);
    CHECK(strstr(r.body, "\"changed\":false"));
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM pauses WHERE resumed_at_ms IS NULL"), 0);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* at_ms as RFC 3339 with milliseconds, shifted to the offset off_min (minutes), plus tail. */
static void
rfc3339(int64_t at_ms, int off_min, const char *tail, char *out, size_t n)
{
    time_t secs = (time_t)((at_ms + (int64_t)off_min * 60000) / 1000);
    struct tm tm;
    char zone[32];

    gmtime_r(&secs, &tm);
    if (off_min)
        snprintf(zone, sizeof zone, "%%2B%02d:%02d", off_min / 60, off_min % 60);
    else
        snprintf(zone, sizeof zone, "Z");
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%s%s", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(at_ms % 1000), tail, zone);
}

/* 1 when GET /v1/messages?<param>=<value> lists the message t1, 0 when not, -1 on error. */
static int
listed(struct fixture *f, const char *param, const char *value)
{
    struct http_reply r = {0};
    char p[256];
    int found;

    snprintf(p, sizeof p, "/v1/messages?%s=%s", param, value);
    if (get(f, p, &r) != 200) {
        fprintf(stderr, "  %s: %d %s\n", p, r.status, r.body ? r.body : "(no body)");
        http_reply_release(&r);
        return -1;
    }
    found = strstr(r.body, "\"external_message_id\":\"t1\"") != NULL;
    http_reply_release(&r);
    return found;
}

/*
 * created_after (inclusive) and created_before (exclusive) are RFC 3339 times: the offset
 * is applied, a fraction past the millisecond rounds up for created_before only, and every
 * malformed value is a 400 naming the parameter.
 */
static int
test_created_window(void)
{
    static const char *const bad[] = {
        "yesterday",
        "2026-11-24",
        "2026-11-24T05:48:33",
        "2026-11-24T05:48:33.Z",
        "2026-11-24T05:48:33%2B2:00",
        "2026-11-24T05:48:33%2B24:00",
        "2026-11-24T05:48:33%2B01:60",
        "2026-11-24T05:48:33Zjunk",
        "1970-01-01T00:00:00Z",
        "2026-11-24T05:48:33.0000000000000000000000000000001Z",
    };
    struct fixture f;
    struct http_reply r = {0};
    char t[128];
    int64_t at;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int k = 0; k < 2; k++) {
            const char *name = k ? "created_before" : "created_after";
            char p[200];
            snprintf(p, sizeof p, "/v1/messages?%s=%s", name, bad[i]);
            int st = get(&f, p, &r);
            if (st != 400 || !is_error(&r, "invalid_value", name)) {
                fprintf(stderr, "  %s: %d %s\n", p, st, r.body ? r.body : "(no body)");
                CHECK(0);
            }
            http_reply_release(&r);
        }
    }
    CHECK_INT(post(&f, "/v1/messages", MSG("t1", "x"), &r), 202);
    http_reply_release(&r);
    at = testdb_int(path, "SELECT created_at_ms FROM outbox WHERE external_message_id = 't1'");
    CHECK(at > 0);
    rfc3339(at, 0, "", t, sizeof t);
    CHECK_INT(listed(&f, "created_after", t), 1);
    CHECK_INT(listed(&f, "created_before", t), 0);
    rfc3339(at + 1, 0, "", t, sizeof t);
    CHECK_INT(listed(&f, "created_after", t), 0);
    CHECK_INT(listed(&f, "created_before", t), 1);
    /* Past the millisecond: created_before rounds up, created_after down. */
    rfc3339(at, 0, "9", t, sizeof t);
    CHECK_INT(listed(&f, "created_after", t), 1);
    CHECK_INT(listed(&f, "created_before", t), 1);
    rfc3339(at, 0, "0", t, sizeof t);
    CHECK_INT(listed(&f, "created_before", t), 0);
    /* The same instants written at +05:30. */
    rfc3339(at, 330, "", t, sizeof t);
    CHECK_INT(listed(&f, "created_after", t), 1);
    CHECK_INT(listed(&f, "created_before", t), 0);
    rfc3339(at + 1, 330, "", t, sizeof t);
    CHECK_INT(listed(&f, "created_after", t), 0);
    CHECK_INT(listed(&f, "created_before", t), 1);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/* A failed commit answers 503 with nothing stored; the next one works again. */
static int
test_write_failure_answers_503(void)
{
    struct fixture f;
    struct http_reply r = {0};
    struct obx_api_stats s;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    /* The store thread's statements no longer find their table. */
    CHECK_INT(testdb_exec(path, "ALTER TABLE outbox RENAME TO outbox_gone"), SQLITE_OK);
    CHECK_INT(post(&f, "/v1/messages", MSG("w1", "x"), &r), 503);
    CHECK(is_error(&r, "unavailable", NULL));
    http_reply_release(&r);
    obx_api_stats(f.api, &s);
    CHECK_INT(s.write_failures, 1);
    CHECK_INT(testdb_exec(path, "ALTER TABLE outbox_gone RENAME TO outbox"), SQLITE_OK);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 0);
    CHECK_INT(post(&f, "/v1/messages", MSG("w1", "x"), &r), 202);
    CHECK_INT(testdb_int(path, "SELECT count(*) FROM outbox"), 1);
end:
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

/*
 * A failed allocation at each step of a POST (single and batch): every request gets an
 * answer, 202 exactly when its message was stored, else 503, and nothing leaks.
 */
static int
test_post_allocation_failures(void)
{
    struct fixture f;
    struct http_reply r = {0};
    char body[600], sql[200], ext[32];
    int ok = 0, refused = 0, late = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    for (long n = 0; n < 60; n++) {
        int batch = n % 2;
        snprintf(ext, sizeof ext, "oom%ld", n);
        snprintf(body, sizeof body,
                 "%s{\"channel_id\":\"ch\",\"external_message_id\":\"%s\","
                 "\"business_id\":\"b1\",\"external_conversation_id\":\"c1\","
                 "\"content\":\"x\",\"sender_type\":\"Consumer\"}%s",
                 batch ? "{\"messages\":[" : "", ext, batch ? "]}" : "");
        /* Allocations fail for a few loop turns (a commit put off for want of memory
         * is retried on a timer), then memory comes back; every request is answered. */
        struct evhttp_connection *conn = http_begin(f.base, f.port, EVHTTP_REQ_POST, "/v1/messages",
                                                    AUTH_JSON, body, strlen(body), &r);
        obx_mem_fail_after(n / 2);
        http_run_turns(f.base, &r.done, 20);
        obx_mem_fail_after(-1);
        int status = http_finish(f.base, conn, &r);
        snprintf(sql, sizeof sql, "SELECT count(*) FROM outbox WHERE external_message_id = '%s'",
                 ext);
        if (status == 202 && !(batch && strstr(r.body, "\"error\""))) {
            ok++;
            CHECK_INT(testdb_int(path, sql), 1);
        } else if (status == 500) {
            /* Committed, but the answer could not be built: the producer retries with
             * the same key, which is deduplicated. */
            late++;
            CHECK_INT(testdb_int(path, sql), 1);
        } else {
            refused++;
            if (status != 503)
                fprintf(stderr, "  n=%ld batch=%d: %d %s\n", n, batch, status,
                        r.body ? r.body : "(no body)");
            CHECK_INT(status, 503);
            CHECK_INT(testdb_int(path, sql), 0);
        }
        http_reply_release(&r);
    }
    CHECK(ok > 0);
    CHECK(refused > 0);
    CHECK(ok + refused + late == 60);
end:
    obx_mem_fail_after(-1);
    http_reply_release(&r);
    fixture_stop(&f);
    TEST_END;
}

static int
test_new_allocation_failures(void)
{
    struct fixture f;
    struct obx_api *api = NULL;
    enum obx_err err = OBX_ENOMEM;
    int failures = 0;
    TEST_BEGIN;

    CHECK_OK(fixture_start(&f, NULL));
    for (long n = 0; n < 50 && err != OBX_OK; n++) {
        obx_mem_fail_after(n);
        err = obx_api_new(f.base, f.st, f.q, &f.cfg, NULL, 0, &api);
        obx_mem_fail_after(-1);
        if (err != OBX_OK) {
            CHECK_INT(err, OBX_ENOMEM);
            CHECK(api == NULL);
            failures++;
        }
    }
    CHECK_OK(err);
    CHECK(failures > 0);
    CHECK_INT(http_call(f.base, obx_api_port(api), EVHTTP_REQ_GET, "/healthz", NULL, NULL, 0, NULL),
              200);
end:
    obx_mem_fail_after(-1);
    obx_api_free(api);
    fixture_stop(&f);
    TEST_END;
}

int
main(int argc, char **argv)
{
    static const struct test_case tests[] = {
        {"token_and_routing", test_token_and_routing},
        {"non_loopback_needs_token", test_non_loopback_needs_token},
        {"enqueue_dup_conflict", test_enqueue_dup_conflict},
        {"post_refusals_name_the_field", test_post_refusals_name_the_field},
        {"batch_results", test_batch_results},
        {"get_retry_cancel", test_get_retry_cancel},
        {"query_parameters", test_query_parameters},
        {"created_window", test_created_window},
        {"pause_resume", test_pause_resume},
        {"write_failure_answers_503", test_write_failure_answers_503},
        {"post_allocation_failures", test_post_allocation_failures},
        {"new_allocation_failures", test_new_allocation_failures},
        {NULL, NULL},
    };

    obx_log_setup(OBX_LOG_OFF, OBX_LOG_TEXT, stderr);
    snprintf(path, sizeof path, "/tmp/obx_test_api_%d.db", (int)getpid());
    return test_run_table(tests, argc, argv);
}
