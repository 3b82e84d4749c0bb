/*
 * Unit tests for lib/metrics.c: histogram buckets (upper bounds inclusive, +Inf last), the
 * exposition text (one HELP/TYPE per family, cumulative buckets, label values escaped and
 * non-UTF-8 replaced, no empty held family), and the allocation-failure sweep: every failure
 * point returns OBX_ENOMEM, never a partial OBX_OK, and frees what it held (ASan/LSan).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "check.h"
#include "mem.h"
#include "metrics.h"

/* A minimal input: no channels, zeroed counters, an empty histogram. */
struct fixture {
    struct obx_metrics_input in;
    int64_t by_status[OBX_STATUS_SLOTS];
    int64_t by_outcome[6];
    struct obx_histogram hist;
    struct obx_channel_stats ch[2];
};

static void
fixture_init(struct fixture *f)
{
    memset(f, 0, sizeof *f);
    f->in.attempts_by_status = f->by_status;
    f->in.attempts_by_outcome = f->by_outcome;
    f->in.request_latency = &f->hist;
    f->in.circuit = "closed";
}

/* Number of lines of text that equal line exactly. */
static int
count_lines(const char *text, const char *line)
{
    size_t n = strlen(line);
    int c = 0;

    for (const char *p = text; (p = strstr(p, line)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            c++;
    return c;
}

static int
has_line(const char *text, const char *line)
{
    return count_lines(text, line) == 1;
}

static int
test_histogram_buckets(void)
{
    TEST_BEGIN;
    struct obx_histogram h;

    memset(&h, 0, sizeof h);
    obx_metrics_histogram_observe(&h, 0);      /* first bucket: le 0.005 */
    obx_metrics_histogram_observe(&h, 0.005);  /* the bound itself belongs to its bucket */
    obx_metrics_histogram_observe(&h, 0.0051); /* next bucket: le 0.01 */
    obx_metrics_histogram_observe(&h, 10);     /* last finite bucket */
    obx_metrics_histogram_observe(&h, 10.5);   /* +Inf */
    obx_metrics_histogram_observe(&h, 1e9);    /* +Inf */
    CHECK_INT(h.counts[0], 2);
    CHECK_INT(h.counts[1], 1);
    CHECK_INT(h.counts[OBX_HIST_BUCKETS - 2], 1);
    CHECK_INT(h.counts[OBX_HIST_BUCKETS - 1], 2);
    CHECK_INT(h.count, 6);
    CHECK(h.sum_s > 1e9 + 20.5101 - 1e-3 && h.sum_s < 1e9 + 20.5101 + 1e-3);
end:
    TEST_END;
}

static int
test_render_histogram_cumulative(void)
{
    TEST_BEGIN;
    struct fixture f;
    struct obx_buf b;
    const char *t;

    fixture_init(&f);
    obx_buf_init(&b, 1 << 20);
    obx_metrics_histogram_observe(&f.hist, 0.003);
    obx_metrics_histogram_observe(&f.hist, 0.2);
    obx_metrics_histogram_observe(&f.hist, 0.2);
    obx_metrics_histogram_observe(&f.hist, 60);
    CHECK_OK(obx_metrics_render(&b, &f.in));
    t = obx_buf_str(&b);
    CHECK(has_line(t, "# TYPE outbox_delivery_request_duration_seconds histogram"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_bucket{le=\"0.005\"} 1"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_bucket{le=\"0.1\"} 1"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_bucket{le=\"0.25\"} 3"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_bucket{le=\"10\"} 3"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_bucket{le=\"+Inf\"} 4"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_sum 60.403000"));
    CHECK(has_line(t, "outbox_delivery_request_duration_seconds_count 4"));
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
test_render_channels_and_states(void)
{
    TEST_BEGIN;
    struct fixture f;
    struct obx_buf b;
    const char *t;

    fixture_init(&f);
    obx_buf_init(&b, 1 << 20);
    snprintf(f.ch[0].channel_id, sizeof f.ch[0].channel_id, "a\"b\\c\nd");
    f.ch[0].counts[OBX_ST_QUEUED] = 7;
    f.ch[0].counts[OBX_ST_FAILED] = 2;
    f.ch[0].oldest_queued_at_ms = 1000;
    f.ch[0].unconfirmed = 3;
    /* A channel id written by plain SQL: 0xff is not UTF-8, é (c3 a9) is. */
    snprintf(f.ch[1].channel_id, sizeof f.ch[1].channel_id, "x\xff\xc3\xa9");
    f.in.channels = f.ch;
    f.in.nchannels = 2;
    f.in.now_ms = 3500;
    f.by_status[200] = 5;
    f.by_status[503] = 1;
    f.by_outcome[OBX_OUTCOME_ACCEPTED] = 5;
    f.by_outcome[OBX_OUTCOME_RETRY] = 1;
    CHECK_OK(obx_metrics_render(&b, &f.in));
    t = obx_buf_str(&b);
    CHECK(has_line(t, "# HELP outbox_messages Messages in the outbox by channel and state."));
    CHECK(has_line(t, "# TYPE outbox_messages gauge"));
    CHECK(has_line(t, "outbox_messages{channel=\"a\\\"b\\\\c\\nd\",state=\"queued\"} 7"));
    CHECK(has_line(t, "outbox_messages{channel=\"a\\\"b\\\\c\\nd\",state=\"failed\"} 2"));
    CHECK(has_line(t, "outbox_messages{channel=\"a\\\"b\\\\c\\nd\",state=\"sending\"} 0"));
    CHECK(has_line(t, "outbox_messages{channel=\"x\xef\xbf\xbd\xc3\xa9\",state=\"queued\"} 0"));
    CHECK(has_line(t, "outbox_unconfirmed_messages{channel=\"a\\\"b\\\\c\\nd\"} 3"));
    CHECK(has_line(t, "outbox_oldest_queued_age_seconds{channel=\"a\\\"b\\\\c\\nd\"} 2.5"));
    CHECK(has_line(t, "outbox_oldest_queued_age_seconds{channel=\"x\xef\xbf\xbd\xc3\xa9\"} 0"));
    /* Only statuses seen are listed; every outcome is. */
    CHECK(has_line(t, "outbox_delivery_attempts_total{status=\"200\"} 5"));
    CHECK(has_line(t, "outbox_delivery_attempts_total{status=\"503\"} 1"));
    CHECK(!strstr(t, "outbox_delivery_attempts_total{status=\"0\"}"));
    CHECK(has_line(t, "outbox_delivery_outcomes_total{outcome=\"accepted\"} 5"));
    CHECK(has_line(t, "outbox_delivery_outcomes_total{outcome=\"transport\"} 0"));
    /* One HELP and one TYPE per family, whatever the number of samples. */
    CHECK_INT(count_lines(t, "# TYPE outbox_messages gauge"), 1);
    CHECK(!strstr(t, "\xff"));
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
test_render_sender_state_and_held(void)
{
    TEST_BEGIN;
    struct fixture f;
    struct obx_buf b;
    const char *held[2] = {"ch-1", "q\"uote"};
    const char *t;

    fixture_init(&f);
    obx_buf_init(&b, 1 << 20);
    f.in.circuit = "half_open";
    f.in.paused_reason = "rate_limited";
    f.in.inflight = 4;
    f.in.rate_limit_per_s = 2.5;
    CHECK_OK(obx_metrics_render(&b, &f.in));
    t = obx_buf_str(&b);
    CHECK(has_line(t, "outbox_inflight_requests 4"));
    CHECK(has_line(t, "outbox_circuit_state{state=\"closed\"} 0"));
    CHECK(has_line(t, "outbox_circuit_state{state=\"half_open\"} 1"));
    CHECK(has_line(t, "outbox_sending_paused{reason=\"rate_limited\"} 1"));
    CHECK(has_line(t, "outbox_sending_paused{reason=\"auth\"} 0"));
    CHECK(has_line(t, "outbox_rate_limit_requests_per_second 2.5"));
    /* No channel held: no family at all (a family without samples is invalid). */
    CHECK(!strstr(t, "outbox_channel_held"));

    obx_buf_reset(&b);
    f.in.circuit = NULL;
    f.in.paused_reason = NULL;
    f.in.held_channels = held;
    f.in.nheld = 2;
    CHECK_OK(obx_metrics_render(&b, &f.in));
    t = obx_buf_str(&b);
    CHECK(has_line(t, "outbox_circuit_state{state=\"closed\"} 0"));
    CHECK(has_line(t, "outbox_circuit_state{state=\"open\"} 0"));
    CHECK(has_line(t, "outbox_sending_paused{reason=\"circuit_open\"} 0"));
    CHECK(has_line(t, "# TYPE outbox_channel_held gauge"));
    CHECK(has_line(t, "outbox_channel_held{channel=\"ch-1\"} 1"));
    CHECK(has_line(t, "outbox_channel_held{channel=\"q\\\"uote\"} 1"));
end:
    obx_buf_release(&b);
    TEST_END;
}

static int
test_render_listeners_and_tables(void)
{
    TEST_BEGIN;
    struct fixture f;
    struct obx_buf b;
    const char *t;

    fixture_init(&f);
    obx_buf_init(&b, 1 << 20);
    f.in.api_requests = 10;
    f.in.api_accepted = 6;
    f.in.api_duplicates = 2;
    f.in.api_write_failures = 1;
    f.in.store_groups = 9;
    f.in.store_failed_groups = 2;
    f.in.store_jobs = 30;
    f.in.wh_stored = 4;
    f.in.wh_bad_signature = 3;
    f.in.wh_rejected_other = 1;
    f.in.wh_too_large = 2;
    f.in.wh_write_failures = 5;
    f.in.http_rejected[0][0] = 11;
    f.in.http_rejected[1][3] = 12;
    f.in.webhook_events_by_outcome[1] = 8;
    f.in.webhook_events_by_outcome[6] = 9;
    f.in.inbox_by_state[2] = 13;
    f.in.db_bytes = 4096;
    f.in.wal_bytes = 8192;
    f.in.start_time_ms = 1700000000123;
    CHECK_OK(obx_metrics_render(&b, &f.in));
    t = obx_buf_str(&b);
    CHECK(has_line(t, "outbox_api_requests_total 10"));
    /* Committed transactions exclude the failed ones. */
    CHECK(has_line(t, "outbox_store_transactions_total 7"));
    CHECK(has_line(t, "outbox_store_failed_transactions_total 2"));
    CHECK(has_line(t, "outbox_store_jobs_total 30"));
    CHECK(has_line(t, "outbox_api_messages_total{result=\"accepted\"} 6"));
    CHECK(has_line(t, "outbox_api_messages_total{result=\"duplicate\"} 2"));
    CHECK_INT(count_lines(t, "# TYPE outbox_api_messages_total counter"), 1);
    CHECK(has_line(t, "outbox_api_write_failures_total 1"));
    CHECK(has_line(t, "outbox_webhook_requests_total{result=\"stored\"} 4"));
    CHECK(has_line(t, "outbox_webhook_requests_total{result=\"bad_signature\"} 3"));
    /* rejected = other + too large */
    CHECK(has_line(t, "outbox_webhook_requests_total{result=\"rejected\"} 3"));
    CHECK(has_line(t, "outbox_webhook_requests_total{result=\"unavailable\"} 5"));
    CHECK(has_line(t, "outbox_webhook_rejected_total{reason=\"too_large\"} 2"));
    CHECK(has_line(t, "outbox_http_rejected_total{listener=\"api\",reason=\"too_large\"} 11"));
    CHECK(has_line(t, "outbox_http_rejected_total{listener=\"webhook\",reason=\"over_budget\"} "
                      "12"));
    CHECK(has_line(t, "outbox_http_rejected_total{listener=\"webhook\",reason=\"timeout\"} 0"));
    CHECK(has_line(t, "outbox_webhook_events{outcome=\"confirmed\"} 8"));
    CHECK(has_line(t, "outbox_webhook_events{outcome=\"other\"} 9"));
    CHECK(has_line(t, "outbox_inbox_messages{state=\"acked\"} 13"));
    CHECK(has_line(t, "outbox_database_size_bytes 4096"));
    CHECK(has_line(t, "outbox_wal_size_bytes 8192"));
    CHECK(has_line(t, "outbox_process_start_time_seconds 1700000000.123"));
    /* The whole text ends with a newline and has no blank line. */
    CHECK(b.len > 0 && t[b.len - 1] == '\n');
    CHECK(!strstr(t, "\n\n"));
end:
    obx_buf_release(&b);
    TEST_END;
}

/* The buffer's cap: a render that does not fit is refused, never cut silently. */
static int
test_render_too_big(void)
{
    TEST_BEGIN;
    struct fixture f;
    struct obx_buf b;

    fixture_init(&f);
    obx_buf_init(&b, 512);
    CHECK_INT(obx_metrics_render(&b, &f.in), OBX_ETOOBIG);
    CHECK(b.len <= 512);
end:
    obx_buf_release(&b);
    TEST_END;
}

/*
 * Allocation n fails: the render returns OBX_ENOMEM (never OBX_OK with a partial text) and
 * the buffer is released without leaks. Returns 1 when it got through (n was large enough).
 */
static int
alloc_pass(long n, int *bad)
{
    struct fixture f;
    struct obx_buf b;
    const char *held[1] = {"h"};
    enum obx_err err;

    fixture_init(&f);
    snprintf(f.ch[0].channel_id, sizeof f.ch[0].channel_id, "c");
    f.in.channels = f.ch;
    f.in.nchannels = 1;
    f.in.held_channels = held;
    f.in.nheld = 1;
    obx_buf_init(&b, 1 << 20);
    obx_mem_fail_after(n);
    err = obx_metrics_render(&b, &f.in);
    obx_mem_fail_after(-1);
    obx_buf_release(&b);
    if (err != OBX_OK && err != OBX_ENOMEM)
        *bad = 1;
    return err == OBX_OK;
}

static int
test_alloc_failure(void)
{
    TEST_BEGIN;
    int bad = 0;
    long n;

    for (n = 0; n < 1000; n++)
        if (alloc_pass(n, &bad))
            break;
    CHECK_INT(bad, 0);
    CHECK(n > 0 && n < 1000); /* some allocation failed first, and it finished in the end */
end:
    obx_mem_fail_after(-1);
    TEST_END;
}

static const struct test_case tests[] = {
    {"histogram_buckets", test_histogram_buckets},
    {"render_histogram_cumulative", test_render_histogram_cumulative},
    {"render_channels_and_states", test_render_channels_and_states},
    {"render_sender_state_and_held", test_render_sender_state_and_held},
    {"render_listeners_and_tables", test_render_listeners_and_tables},
    {"render_too_big", test_render_too_big},
    {"alloc_failure", test_alloc_failure},
    {NULL, NULL},
};

TEST_MAIN(tests)
