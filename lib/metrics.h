/*
 * metrics: the only module that formats the Prometheus text exposition (format
 * 0.0.4). Other modules keep plain counters in their own structs (STYLE 20); the
 * daemon gathers them into a struct obx_metrics_input and calls
 * obx_metrics_render() for GET /metrics.
 */
#ifndef OBX_METRICS_H
#define OBX_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "query.h"

/* A latency histogram with fixed buckets (seconds); the last bucket is +Inf. */
#define OBX_HIST_BUCKETS 12
extern const double obx_metrics_hist_bounds_s[OBX_HIST_BUCKETS - 1];

struct obx_histogram {
    int64_t counts[OBX_HIST_BUCKETS]; /* per bucket, not cumulative */
    int64_t count;
    double sum_s;
};

void obx_metrics_histogram_observe(struct obx_histogram *h, double seconds);

/* HTTP status codes counted individually; 0 = no answer. */
#define OBX_STATUS_SLOTS 600

struct obx_tenant_stats_set;

/* Everything /metrics shows. Pointers are borrowed for the duration of the call. */
struct obx_metrics_input {
    const struct obx_channel_stats *channels; /* per channel and state, from the database */
    size_t nchannels;
    int64_t now_ms;
    int64_t start_time_ms; /* process start */
    int64_t db_bytes, wal_bytes;
    int64_t inbox_by_state[4];            /* pending, delivered, acked, failed */
    int64_t webhook_events_by_outcome[7]; /* see obx_metrics_webhook_outcomes */
    const char *const *held_channels;     /* channels paused (held), SPEC §13 */
    size_t nheld;
    const char *const *held_tenants; /* tenants paused (held) */
    size_t nheld_tenants;
    /* delivery (worker) */
    const int64_t *attempts_by_status;  /* OBX_STATUS_SLOTS entries */
    const int64_t *attempts_by_outcome; /* 6 entries, enum obx_outcome order */
    const struct obx_histogram *request_latency;
    int inflight;
    const char *circuit;       /* closed, open, half_open */
    const char *paused_reason; /* NULL, auth, rate_limited, circuit_open */
    double rate_limit_per_s;
    /* producer API */
    int64_t api_requests, api_accepted, api_duplicates, api_commits, api_write_failures;
    int64_t store_groups, store_jobs, store_failed_groups; /* the store thread (store_queue.h) */
    /* webhook listener */
    int64_t wh_received, wh_stored, wh_duplicates, wh_bad_signature, wh_rejected_other,
        wh_write_failures, wh_too_large;
    /* errors the HTTP layer answered itself: [api, webhook][obx_metrics_http_reasons] */
    int64_t http_rejected[2][4];
    /* per tenant (SPEC §11), finished (store_tenant_stats.h); NULL = none */
    const struct obx_tenant_stats_set *tenants;
};

/* too_large, bad_request, timeout, over_budget: the index order of http_rejected[i]. */
extern const char *const obx_metrics_http_reasons[4];

/* Outcome names of webhook_events, the index order of webhook_events_by_outcome. */
extern const char *const obx_metrics_webhook_outcomes[7];

/* Appends the whole exposition to b. */
OBX_MUST_CHECK enum obx_err obx_metrics_render(struct obx_buf *b,
                                               const struct obx_metrics_input *in);

#endif
