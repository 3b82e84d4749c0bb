/*
 * Unit tests for lib/view.c: the JSON shapes of SPEC §9 (message, transition, attempt, stats,
 * inbox reply, the show document), exact text for given rows: nulls for absent values, times
 * RFC 3339 UTC with milliseconds, next_attempt_at only while queued, strings escaped; the
 * show document of a real message with its transitions and attempts; OBX_ENOTFOUND for an
 * unknown key; and allocation failure (every failure point is OBX_ENOMEM, no leak).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "mem.h"
#include "store.h"
#include "store_tenant.h"
#include "view.h"
#include "testdb.h"

static char db_path[256];
static struct obx_fake_clock fake;

static struct obx_store *
fresh_store(void)
{
    return testdb_fresh_store(db_path, sizeof db_path, "view", &fake, 1700000000000, 1000);
}

static struct obx_row
sample_row(void)
{
    struct obx_row r;

    memset(&r, 0, sizeof r);
    r.id = 42;
    r.msg.channel_id = "ch";
    r.msg.external_message_id = "m-1";
    r.msg.business_id = "b";
    r.msg.external_conversation_id = "conv";
    r.msg.content = "say \"hi\"\n";
    r.msg.sender_type = "Consumer";
    r.msg.priority = 3;
    r.state = "queued";
    r.attempts = 2;
    r.resends = 1;
    r.created_at_ms = 1700000000000;
    r.state_at_ms = 1700000000500;
    r.next_attempt_at_ms = 1700000001000;
    r.last_http_status = 503;
    r.last_error = "http 503";
    return r;
}

static int
test_message(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    struct obx_row r = sample_row();

    obx_buf_init(&b, 1 << 16);
    CHECK_OK(obx_view_message(&b, &r));
    CHECK_STR(obx_buf_str(&b),
              "{\"id\":42,\"channel_id\":\"ch\",\"tenant\":null,\"external_message_id\":\"m-1\","
              "\"business_id\":\"b\",\"external_conversation_id\":\"conv\","
              "\"content\":\"say \\\"hi\\\"\\n\",\"sender_type\":\"Consumer\","
              "\"consumer_name\":null,\"consumer_image\":null,\"priority\":3,"
              "\"state\":\"queued\",\"state_reason\":null,\"attempts\":2,\"resends\":1,"
              "\"created_at\":\"2023-11-14T22:13:20.000Z\","
              "\"state_changed_at\":\"2023-11-14T22:13:20.500Z\","
              "\"next_attempt_at\":\"2023-11-14T22:13:21.000Z\",\"accepted_at\":null,"
              "\"confirmed_at\":null,\"last_http_status\":503,\"last_error\":\"http 503\","
              "\"partoo_message_id\":null,\"partoo_status\":null,\"unconfirmed\":false}");
    /* Not queued: next_attempt_at is null whatever the column holds. */
    obx_buf_reset(&b);
    r.state = "accepted";
    r.accepted_at_ms = 1700000002000;
    r.last_http_status = 0;
    r.last_error = NULL;
    r.partoo_message_id = "777";
    r.partoo_status = "delivered";
    r.unconfirmed_at_ms = 5;
    r.msg.consumer_name = "Ann";
    r.tenant = "acme";
    CHECK_OK(obx_view_message(&b, &r));
    CHECK(strstr(obx_buf_str(&b), "\"channel_id\":\"ch\",\"tenant\":\"acme\","));
    CHECK(strstr(obx_buf_str(&b), "\"next_attempt_at\":null,"
                                  "\"accepted_at\":\"2023-11-14T22:13:22.000Z\","));
    CHECK(strstr(obx_buf_str(&b), "\"consumer_name\":\"Ann\","));
    CHECK(strstr(obx_buf_str(&b), "\"last_http_status\":null,\"last_error\":null,"
                                  "\"partoo_message_id\":\"777\",\"partoo_status\":\"delivered\","
                                  "\"unconfirmed\":true}"));
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
test_transition_attempt(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    struct obx_transition_row t = {1, 42, 1700000000000, NULL, "queued", "enqueued"};
    struct obx_attempt_row a = {2, 42, 1700000000001, 25, 0, "transport", "timeout", NULL};

    obx_buf_init(&b, 1 << 16);
    CHECK_OK(obx_view_transition(&b, &t));
    CHECK_STR(obx_buf_str(&b), "{\"at\":\"2023-11-14T22:13:20.000Z\",\"from\":null,"
                               "\"to\":\"queued\",\"reason\":\"enqueued\"}");
    obx_buf_reset(&b);
    CHECK_OK(obx_view_attempt(&b, &a));
    CHECK_STR(obx_buf_str(&b), "{\"started_at\":\"2023-11-14T22:13:20.001Z\",\"duration_ms\":25,"
                               "\"http_status\":null,\"outcome\":\"transport\","
                               "\"error\":\"timeout\",\"response_excerpt\":null}");
    obx_buf_reset(&b);
    a.http_status = 201;
    a.error = NULL;
    a.excerpt = "{\"id\":1}";
    CHECK_OK(obx_view_attempt(&b, &a));
    CHECK(strstr(obx_buf_str(&b), "\"http_status\":201,\"outcome\":\"transport\",\"error\":null,"
                                  "\"response_excerpt\":\"{\\\"id\\\":1}\"}"));
    obx_buf_reset(&b);
    CHECK_OK(obx_view_time_or_null(&b, 0));
    CHECK_OK(obx_view_str_or_null(&b, NULL));
    CHECK_OK(obx_view_str_or_null(&b, "x"));
    CHECK_STR(obx_buf_str(&b), "nullnull\"x\"");
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
test_stats(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    struct obx_channel_stats c[2];
    struct obx_view_stats_extra x = {10000, 12.25, NULL, 0, 3, 4};

    memset(c, 0, sizeof c);
    obx_buf_init(&b, 1 << 16);
    /* No channel at all. */
    CHECK_OK(obx_view_stats(&b, c, 0, &x));
    CHECK_STR(obx_buf_str(&b), "{\"counts\":{\"queued\":0,\"sending\":0,\"accepted\":0,"
                               "\"confirmed\":0,\"failed\":0,\"cancelled\":0},\"unconfirmed\":0,"
                               "\"oldest_queued_age_s\":0,\"send_rate_per_min\":12.2,"
                               "\"paused\":null,"
                               "\"webhooks_rejected\":{\"signature\":3,\"too_large\":4},"
                               "\"channels\":[]}");
    /* Two channels: totals summed, the oldest queued over all of them. */
    snprintf(c[0].channel_id, sizeof c[0].channel_id, "a");
    c[0].counts[OBX_ST_QUEUED] = 2;
    c[0].counts[OBX_ST_FAILED] = 1;
    c[0].oldest_queued_at_ms = 8000;
    c[0].unconfirmed = 1;
    c[0].confirmed_24h = 9;
    c[0].sent_last_min = 6;
    snprintf(c[0].last_error, sizeof c[0].last_error, "http 500");
    snprintf(c[1].channel_id, sizeof c[1].channel_id, "b\"");
    c[1].counts[OBX_ST_QUEUED] = 3;
    c[1].oldest_queued_at_ms = 7500;
    c[1].unconfirmed = 2;
    x.paused_reason = "rate_limited";
    x.paused_until_ms = 1700000000000;
    obx_buf_reset(&b);
    CHECK_OK(obx_view_stats(&b, c, 2, &x));
    CHECK_STR(obx_buf_str(&b),
              "{\"counts\":{\"queued\":5,\"sending\":0,\"accepted\":0,\"confirmed\":0,"
              "\"failed\":1,\"cancelled\":0},\"unconfirmed\":3,\"oldest_queued_age_s\":2.500,"
              "\"send_rate_per_min\":12.2,"
              "\"paused\":{\"reason\":\"rate_limited\",\"until\":\"2023-11-14T22:13:20.000Z\"},"
              "\"webhooks_rejected\":{\"signature\":3,\"too_large\":4},\"channels\":["
              "{\"channel_id\":\"a\",\"counts\":{\"queued\":2,\"sending\":0,\"accepted\":0,"
              "\"confirmed\":0,\"failed\":1,\"cancelled\":0},\"unconfirmed\":1,"
              "\"confirmed_24h\":9,\"oldest_queued_age_s\":2.000,\"send_rate_per_min\":6,"
              "\"paused\":{\"reason\":\"rate_limited\",\"until\":\"2023-11-14T22:13:20.000Z\"},"
              "\"last_error\":\"http 500\"},"
              "{\"channel_id\":\"b\\\"\",\"counts\":{\"queued\":3,\"sending\":0,\"accepted\":0,"
              "\"confirmed\":0,\"failed\":0,\"cancelled\":0},\"unconfirmed\":2,"
              "\"confirmed_24h\":0,\"oldest_queued_age_s\":2.500,\"send_rate_per_min\":0,"
              "\"paused\":{\"reason\":\"rate_limited\",\"until\":\"2023-11-14T22:13:20.000Z\"},"
              "\"last_error\":null}]}");
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
test_inbox(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    struct obx_inbox_row r;

    memset(&r, 0, sizeof r);
    r.id = 5;
    r.partoo_message_id = "pm-1";
    r.channel_id = "ch";
    r.external_conversation_id = "conv";
    r.partoo_conversation_id = "77";
    r.business_id = "b";
    r.sender_type = "User";
    r.sender_label = "Agent \u00e9";
    r.content_type = "TEXT";
    r.content = "hello\tthere";
    r.message_date = "2024-01-01T00:00:00Z";
    r.state = "delivered";
    r.attempts = 1;
    r.last_http_status = 204;
    r.received_at_ms = 1700000000000;
    r.delivered_at_ms = 1700000000123;
    obx_buf_init(&b, 1 << 16);
    CHECK_OK(obx_view_inbox(&b, &r));
    CHECK_STR(obx_buf_str(&b),
              "{\"id\":5,\"channel_id\":\"ch\",\"external_conversation_id\":\"conv\","
              "\"partoo_message_id\":\"pm-1\",\"partoo_conversation_id\":\"77\","
              "\"business_id\":\"b\",\"sender_type\":\"User\",\"sender_label\":\"Agent \u00e9\","
              "\"content_type\":\"TEXT\",\"content\":\"hello\\tthere\","
              "\"date\":\"2024-01-01T00:00:00Z\",\"received_at\":\"2023-11-14T22:13:20.000Z\","
              "\"state\":\"delivered\",\"attempts\":1,\"last_http_status\":204,"
              "\"last_error\":null,\"delivered_at\":\"2023-11-14T22:13:20.123Z\","
              "\"acked_at\":null}");
end:
    obx_buf_release(&b);
    TEST_END;
}

/* One message enqueued, sent once (503, retry), then sent and accepted. */
static int
make_history(struct obx_store *st)
{
    struct obx_msg m = {"ch", "m-1", "b", "conv", "hello", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result r;
    struct obx_claimed c;
    enum obx_err res = OBX_OK;
    int got = 0;

    if (obx_enqueue(st, &m, &r, NULL) != OBX_OK)
        return -1;
    for (int i = 0; i < 2; i++) {
        struct obx_attempt a = {0};
        if (obx_store_claim(st, 1, 60000, &c, &got) != OBX_OK || got != 1)
            return -1;
        a.message_id = c.id;
        a.lease_token = c.lease_token;
        a.started_at_ms = fake.now_ms;
        a.duration_ms = 12;
        a.http_status = i ? 200 : 503;
        a.outcome = i ? "accepted" : "retry";
        a.error = i ? NULL : "http 503";
        a.excerpt = i ? "{\"ok\":true}" : NULL;
        a.next = i ? OBX_NEXT_ACCEPTED : OBX_NEXT_RETRY;
        a.counted = 1;
        a.next_attempt_at_ms = fake.now_ms;
        a.reason = i ? "http 200" : "http 503";
        obx_store_claimed_release(&c);
        if (obx_store_finish(st, &a, 1, &res) != OBX_OK || res != OBX_OK)
            return -1;
        fake.now_ms += 1000;
    }
    return 0;
}

static int
ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

static int
test_message_document(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_buf b;
    const char *t;
    struct obx_msg m2 = {"ch", "m-2", "b", "conv2", "x", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result r;

    obx_buf_init(&b, 1 << 20);
    CHECK(st);
    CHECK_OK(make_history(st));
    CHECK_OK(obx_view_message_document(st, "ch", "m-1", &b));
    t = obx_buf_str(&b);
    CHECK(strncmp(
              t, "{\"id\":1,\"channel_id\":\"ch\",\"tenant\":null,\"external_message_id\":\"m-1\",",
              strlen("{\"id\":1,\"channel_id\":\"ch\",\"tenant\":null,"
                     "\"external_message_id\":\"m-1\",")) == 0);
    CHECK(strstr(t, "\"state\":\"accepted\""));
    CHECK(strstr(t, ",\"unconfirmed\":false,\"transitions\":[{\"at\":"));
    CHECK(strstr(t, "\"transitions\":[{\"at\":\"2023-11-14T22:13:20.000Z\",\"from\":\"queued\","
                    "\"to\":\"sending\",\"reason\":\"claimed\"},{"));
    CHECK(strstr(t, "\"from\":\"sending\",\"to\":\"queued\",\"reason\":\"http 503\"}"));
    CHECK(strstr(t, "\"from\":\"sending\",\"to\":\"accepted\",\"reason\":\"http 200\"}],"
                    "\"attempts_log\":[{\"started_at\":"));
    CHECK(strstr(t, "\"http_status\":503,\"outcome\":\"retry\",\"error\":\"http 503\""));
    CHECK(strstr(t, "\"http_status\":200,\"outcome\":\"accepted\",\"error\":null,"
                    "\"response_excerpt\":\"{\\\"ok\\\":true}\"}]}"));
    CHECK(t[strlen(t) - 1] == '}');
    /* Without attempts: an empty attempts_log. */
    CHECK_OK(obx_enqueue(st, &m2, &r, NULL));
    obx_buf_reset(&b);
    CHECK_OK(obx_view_message_document(st, "ch", "m-2", &b));
    t = obx_buf_str(&b);
    CHECK(ends_with(t, ",\"unconfirmed\":false,\"transitions\":[],\"attempts_log\":[]}"));
    /* Unknown key: OBX_ENOTFOUND, nothing appended. */
    obx_buf_reset(&b);
    CHECK_INT(obx_view_message_document(st, "ch", "nope", &b), OBX_ENOTFOUND);
    CHECK_INT(b.len, 0);
    CHECK_INT(obx_view_message_document(st, "other", "m-1", &b), OBX_ENOTFOUND);
end:
    obx_buf_release(&b);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* Every allocation point of the document and the stats: OBX_ENOMEM, no leak, no crash. */
static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_channel_stats c;
    struct obx_view_stats_extra x = {10000, 1, "auth", 20000, 0, 0};
    struct obx_row row = sample_row();
    struct obx_buf b;
    enum obx_err err = OBX_ENOMEM;
    long n;

    obx_buf_init(&b, 1 << 20);
    memset(&c, 0, sizeof c);
    snprintf(c.channel_id, sizeof c.channel_id, "a");
    CHECK(st);
    CHECK_OK(make_history(st));
    for (n = 0; n < 200; n++) {
        obx_buf_release(&b);
        obx_mem_fail_after(n);
        err = obx_view_message_document(st, "ch", "m-1", &b);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break;
        CHECK_INT(err, OBX_ENOMEM);
    }
    CHECK_OK(err);
    CHECK(n > 0);
    CHECK(strstr(obx_buf_str(&b), "\"attempts_log\":["));
    for (n = 0; n < 200; n++) {
        obx_buf_release(&b);
        obx_mem_fail_after(n);
        err = obx_view_stats(&b, &c, 1, &x);
        if (err == OBX_OK)
            err = obx_view_message(&b, &row);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break;
        CHECK_INT(err, OBX_ENOMEM);
    }
    CHECK_OK(err);
end:
    obx_mem_fail_after(-1);
    obx_buf_release(&b);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

/* The tenant view (SPEC §11): null for "the configured one", channels in order, no key. */
static int
test_tenant(void)
{
    TEST_BEGIN;
    struct obx_buf b;
    struct obx_tenant_channel ch[] = {{"c\"1", 0}, {"c2", 1}};
    struct obx_tenant_row t = {.name = "acme",
                               .key_fingerprint = "0123456789ab",
                               .key_sealed = 1,
                               .rate_limit_per_min = 290,
                               .created_at_ms = 1700000000000,
                               .updated_at_ms = 1700000000001,
                               .channels = ch,
                               .nchannels = 2};

    obx_buf_init(&b, 1 << 16);
    CHECK_OK(obx_view_tenant(&b, &t));
    CHECK_STR(obx_buf_str(&b),
              "{\"tenant\":\"acme\",\"key_fingerprint\":\"0123456789ab\",\"key_sealed\":true,"
              "\"rate_limit_per_min\":290,\"rate_burst\":null,\"partoo_base_url\":null,"
              "\"channels\":[{\"channel_id\":\"c\\\"1\",\"readonly\":false},"
              "{\"channel_id\":\"c2\",\"readonly\":true}],"
              "\"created_at\":\"2023-11-14T22:13:20.000Z\","
              "\"updated_at\":\"2023-11-14T22:13:20.001Z\"}");
    obx_buf_reset(&b);
    t.key_sealed = 0;
    t.rate_limit_per_min = 0.5;
    t.rate_burst = 3;
    t.partoo_base_url = "https://sandbox.example/v2";
    t.nchannels = 0;
    CHECK_OK(obx_view_tenant(&b, &t));
    CHECK(strstr(obx_buf_str(&b), "\"key_sealed\":false,\"rate_limit_per_min\":0.5,"
                                  "\"rate_burst\":3,"
                                  "\"partoo_base_url\":\"https://sandbox.example/v2\","
                                  "\"channels\":[],"));
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
enqueue_on(struct obx_store *st, const char *channel, const char *id)
{
    struct obx_msg m = {channel, id, "b", id, "hi", "Consumer", NULL, NULL, 0};
    enum obx_enqueue_result r;

    return obx_enqueue(st, &m, &r, NULL) == OBX_OK ? 0 : -1;
}

static enum obx_err
put_tenant(struct obx_store *st, const char *name, const struct obx_tenant_channel *ch, size_t n)
{
    struct obx_tenant_spec spec = {0};
    char conflict[256];
    int created = 0;

    spec.name = name;
    spec.api_key = "key";
    spec.channels = ch;
    spec.nchannels = n;
    return obx_store_tenant_put(st, &spec, OBX_TENANT_CREATE, NULL, &created, conflict,
                                sizeof conflict);
}

/* The tenants section (SPEC §11): counts per tenant from the kept per-channel counts, the
 * default tenant for unowned channels, the order (paused, backlog, name), each channel's
 * pause from its tenant (the unowned one named when there is no default key), the channel
 * cap, and what `status` reads back from serve's publication (malformed input ignored). */
static int
test_tenant_stats(void)
{
    TEST_BEGIN;
    struct obx_store *st = fresh_store();
    struct obx_tenant_channel acme[150], beta = {"ch-b", 0};
    char ids[150][16];
    struct obx_tenant_stats_set ts = {0};
    struct obx_channel_stats *c = NULL;
    struct obx_view_stats_extra x = {0};
    const struct obx_tenant_stats *t;
    char owners[4][OBX_TENANT_NAME_MAX + 1];
    struct obx_buf b;
    size_t n = 0;
    const char *out;
    enum obx_err err = OBX_OK;
    long k;

    obx_buf_init(&b, 1 << 20);
    CHECK(st);
    for (int i = 0; i < 150; i++) {
        snprintf(ids[i], sizeof ids[i], "ch-a%03d", i);
        acme[i].channel_id = ids[i];
        acme[i].readonly = 0;
    }
    CHECK_INT(enqueue_on(st, "ch-a000", "m1"), 0);
    CHECK_INT(enqueue_on(st, "ch-a001", "m2"), 0);
    CHECK_INT(enqueue_on(st, "ch-b", "m3"), 0);
    CHECK_INT(enqueue_on(st, "ch-free", "m4"), 0);
    CHECK_OK(put_tenant(st, "acme", acme, 150));
    CHECK_OK(put_tenant(st, "beta", &beta, 1));
    CHECK_OK(put_tenant(st, "idle", NULL, 0));
    CHECK_OK(obx_store_tenant_stats_collect(st, &ts));
    CHECK_INT(ts.n, 4);
    CHECK(ts.v[0].is_default);
    CHECK_INT(ts.v[0].counts[OBX_ST_QUEUED], 1);
    CHECK_INT(ts.v[0].nchannels, 1);
    CHECK_STR(ts.v[0].channels[0], "ch-free");
    CHECK((t = obx_store_tenant_stats_find(&ts, "acme")) != NULL);
    CHECK_INT(t->counts[OBX_ST_QUEUED], 2);
    CHECK_INT(t->nchannels, OBX_TENANT_STATS_CHANNELS_MAX);
    CHECK_INT(t->channels_truncated, 1);
    CHECK((t = obx_store_tenant_stats_find(&ts, "idle")) != NULL);
    CHECK_INT(t->counts[OBX_ST_QUEUED], 0);
    CHECK(obx_store_tenant_stats_find(&ts, "nobody") == NULL);

    /* Malformed publications change nothing; a valid one pauses the tenants it names. */
    obx_store_tenant_stats_apply_published(&ts, NULL);
    obx_store_tenant_stats_apply_published(&ts, "nonsense");
    obx_store_tenant_stats_apply_published(&ts, "[1,{\"tenant\":5},{\"tenant\":\"acme\"}]");
    for (size_t i = 0; i < ts.n; i++)
        CHECK_STR(ts.v[i].paused_reason, "");
    obx_store_tenant_stats_apply_published(
        &ts, "[{\"tenant\":\"acme\",\"reason\":\"auth\",\"until_ms\":1700000060000},"
             "{\"tenant\":\"default\",\"reason\":\"no_key\",\"until_ms\":0},"
             "{\"tenant\":\"ghost\",\"reason\":\"auth\",\"until_ms\":0}]");
    CHECK_INT(ts.v[0].no_key, 1);
    obx_store_tenant_stats_finish(&ts);
    CHECK_STR(ts.v[0].name, "acme");    /* paused, backlog 2 */
    CHECK_STR(ts.v[1].name, "default"); /* paused (no key), backlog 1 */
    CHECK_STR(ts.v[2].name, "beta");
    CHECK_STR(ts.v[3].name, "idle");

    CHECK_OK(obx_query_stats(st, &c, &n));
    CHECK_INT(n, 4); /* ch-a000, ch-a001, ch-b, ch-free */
    CHECK_OK(obx_store_tenant_stats_owners(st, c, n, owners[0]));
    CHECK_STR(owners[0], "acme");
    CHECK_STR(owners[2], "beta");
    CHECK_STR(owners[3], "");
    x.now_ms = fake.now_ms;
    x.tenants = &ts;
    x.channel_owners = owners[0];
    CHECK_OK(obx_view_stats(&b, c, n, &x));
    out = obx_buf_str(&b);
    CHECK(strstr(out, "\"channel_id\":\"ch-a000\""));
    CHECK(strstr(out, "\"paused\":{\"reason\":\"auth\",\"until\":\"2023-11-14T22:14:20.000Z\"}"));
    CHECK(strstr(out, "\"paused\":{\"reason\":\"no tenant owns channel ch-free and no default "
                      "API key is configured\",\"until\":null}"));
    CHECK(strstr(out, ",\"tenants\":[{\"tenant\":\"acme\",\"counts\":{\"queued\":2,"));
    CHECK(strstr(out, "\"channels_truncated\":true}"));
    CHECK(strstr(out, "{\"tenant\":\"idle\",\"counts\":{\"queued\":0,\"sending\":0,\"accepted\":0,"
                      "\"confirmed\":0,\"failed\":0,\"cancelled\":0},\"paused\":null,"
                      "\"send_rate_per_min\":0,\"rate_limit\":0,\"channels\":[]}"));
    CHECK(strstr(out, "],\"tenants_truncated\":false}"));
    CHECK(out[strlen(out) - 1] == '}');

    /* Every allocation of collect: OBX_ENOMEM and nothing leaked (ASan), then success. */
    obx_store_tenant_stats_release(&ts);
    for (k = 0; k < 1000; k++) {
        obx_mem_fail_after(k);
        err = obx_store_tenant_stats_collect(st, &ts);
        obx_mem_fail_after(-1);
        if (err == OBX_OK)
            break;
        CHECK_INT(err, OBX_ENOMEM);
        CHECK(ts.v == NULL);
    }
    CHECK_OK(err);
    CHECK(k > 0);
    CHECK_INT(ts.n, 4);
end:
    obx_mem_fail_after(-1);
    obx_free(c);
    obx_store_tenant_stats_release(&ts);
    obx_buf_release(&b);
    obx_store_free(st);
    testdb_remove(db_path);
    TEST_END;
}

static const struct test_case tests[] = {
    {"message", test_message},
    {"transition_attempt", test_transition_attempt},
    {"stats", test_stats},
    {"inbox", test_inbox},
    {"message_document", test_message_document},
    {"alloc_failure", test_alloc_failure},
    {"tenant", test_tenant},
    {"tenant_stats", test_tenant_stats},
    {NULL, NULL},
};

TEST_MAIN(tests)
