/*
 * metrics: Prometheus text exposition. Names follow the conventions: a unit
 * suffix in base units (_seconds, _bytes), _total for counters, one # HELP and
 * # TYPE line per family, label values escaped (\\, \", \n).
 */
#include "metrics.h"

#include <string.h>

#include "backoff.h"
#include "store_tenant_stats.h"

const double obx_metrics_hist_bounds_s[OBX_HIST_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                0.5,   1,    2.5,   5,    10};

const char *const obx_metrics_webhook_outcomes[7] = {
    "pending", "confirmed", "reply", "unmatched", "ignored", "unparsable", "other",
};

static const char *const inbox_states[4] = {"pending", "delivered", "acked", "failed"};

void
obx_metrics_histogram_observe(struct obx_histogram *h, double seconds)
{
    int i = 0;

    while (i < OBX_HIST_BUCKETS - 1 && seconds > obx_metrics_hist_bounds_s[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum_s += seconds;
}

static enum obx_err
family(struct obx_buf *b, const char *name, const char *type, const char *help)
{
    return obx_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/*
 * A label value with \, " and newline escaped, and bytes that are not UTF-8 (a channel
 * id written by plain SQL can hold anything) replaced by U+FFFD: one bad row must
 * not make every scrape unparsable.
 */
static enum obx_err
label_value(struct obx_buf *b, const char *v)
{
    const unsigned char *p = (const unsigned char *)v;
    size_t len = strlen(v), at = 0;
    enum obx_err err = OBX_OK;

    while (err == OBX_OK && at < len) {
        size_t n = obx_buf_utf8_char_len(p + at, len - at);
        if (n == 1 && (p[at] == '\\' || p[at] == '"'))
            err = obx_buf_printf(b, "\\%c", p[at]);
        else if (n == 1 && p[at] == '\n')
            err = obx_buf_puts(b, "\\n");
        else if (n)
            err = obx_buf_append(b, p + at, n);
        else
            err = obx_buf_puts(b, "\xef\xbf\xbd");
        at += n ? n : 1;
    }
    return err;
}

/* One gauge of 1 per held channel or tenant; no family at all without one (a family without
 * samples is not valid exposition). */
static enum obx_err
held_family(struct obx_buf *b, const char *name, const char *label, const char *help,
            const char *const *keys, size_t n)
{
    enum obx_err err = n ? family(b, name, "gauge", help) : OBX_OK;

    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        err = obx_buf_printf(b, "%s{%s=\"", name, label);
        if (err == OBX_OK)
            err = label_value(b, keys[i]);
        if (err == OBX_OK)
            err = obx_buf_puts(b, "\"} 1\n");
    }
    return err;
}

static enum obx_err
channel_sample(struct obx_buf *b, const char *name, const char *channel, const char *state,
               double value)
{
    enum obx_err err = obx_buf_printf(b, "%s{channel=\"", name);

    if (err == OBX_OK)
        err = label_value(b, channel);
    if (err == OBX_OK && state)
        err = obx_buf_printf(b, "\",state=\"%s", state);
    if (err == OBX_OK)
        err = obx_buf_printf(b, "\"} %.17g\n", value);
    return err;
}

static enum obx_err
render_messages(struct obx_buf *b, const struct obx_metrics_input *in)
{
    enum obx_err err = family(b, "outbox_messages", "gauge",
                              "Messages in the outbox by channel and state.");

    for (size_t i = 0; err == OBX_OK && i < in->nchannels; i++)
        for (int s = 0; err == OBX_OK && s < OBX_N_STATES; s++)
            err = channel_sample(b, "outbox_messages", in->channels[i].channel_id,
                                 obx_store_state_name(s), (double)in->channels[i].counts[s]);
    if (err == OBX_OK)
        err = family(b, "outbox_unconfirmed_messages", "gauge",
                     "Accepted messages still unconfirmed after max_resends re-sends.");
    for (size_t i = 0; err == OBX_OK && i < in->nchannels; i++)
        err = channel_sample(b, "outbox_unconfirmed_messages", in->channels[i].channel_id, NULL,
                             (double)in->channels[i].unconfirmed);
    if (err == OBX_OK)
        err = family(b, "outbox_oldest_queued_age_seconds", "gauge",
                     "Age of the oldest queued message per channel (0 when none).");
    for (size_t i = 0; err == OBX_OK && i < in->nchannels; i++) {
        int64_t oldest = in->channels[i].oldest_queued_at_ms;
        err = channel_sample(b, "outbox_oldest_queued_age_seconds", in->channels[i].channel_id,
                             NULL, oldest ? (double)(in->now_ms - oldest) / 1000.0 : 0);
    }
    return err;
}

static enum obx_err
render_attempts(struct obx_buf *b, const struct obx_metrics_input *in)
{
    enum obx_err err = family(b, "outbox_delivery_attempts_total", "counter",
                              "Delivery requests finished since start, by HTTP status "
                              "(0 = no answer).");

    for (int s = 0; err == OBX_OK && s < OBX_STATUS_SLOTS; s++)
        if (in->attempts_by_status[s])
            err = obx_buf_printf(b, "outbox_delivery_attempts_total{status=\"%d\"} %lld\n", s,
                                 (long long)in->attempts_by_status[s]);
    if (err == OBX_OK)
        err = family(b, "outbox_delivery_outcomes_total", "counter",
                     "Delivery requests finished since start, by outcome class.");
    for (int o = 0; err == OBX_OK && o <= OBX_OUTCOME_TRANSPORT; o++)
        err = obx_buf_printf(b, "outbox_delivery_outcomes_total{outcome=\"%s\"} %lld\n",
                             obx_backoff_outcome_name(o), (long long)in->attempts_by_outcome[o]);
    return err;
}

static enum obx_err
render_histogram(struct obx_buf *b, const struct obx_metrics_input *in)
{
    const struct obx_histogram *h = in->request_latency;
    const char *name = "outbox_delivery_request_duration_seconds";
    int64_t cumulative = 0;
    enum obx_err err = family(b, name, "histogram", "Duration of delivery requests to Partoo.");

    for (int i = 0; err == OBX_OK && i < OBX_HIST_BUCKETS; i++) {
        cumulative += h->counts[i];
        if (i < OBX_HIST_BUCKETS - 1)
            err = obx_buf_printf(b, "%s_bucket{le=\"%g\"} %lld\n", name,
                                 obx_metrics_hist_bounds_s[i], (long long)cumulative);
        else
            err = obx_buf_printf(b, "%s_bucket{le=\"+Inf\"} %lld\n", name, (long long)cumulative);
    }
    if (err == OBX_OK)
        err = obx_buf_printf(b, "%s_sum %.6f\n%s_count %lld\n", name, h->sum_s, name,
                             (long long)h->count);
    return err;
}

static enum obx_err
render_sender_state(struct obx_buf *b, const struct obx_metrics_input *in)
{
    static const char *const circuits[3] = {"closed", "open", "half_open"};
    static const char *const reasons[3] = {"auth", "rate_limited", "circuit_open"};
    enum obx_err err = family(b, "outbox_inflight_requests", "gauge",
                              "Delivery requests in flight.");

    if (err == OBX_OK)
        err = obx_buf_printf(b, "outbox_inflight_requests %d\n", in->inflight);
    if (err == OBX_OK)
        err = family(b, "outbox_circuit_state", "gauge",
                     "Circuit breaker towards Partoo: 1 for the current state.");
    for (int i = 0; err == OBX_OK && i < 3; i++)
        err = obx_buf_printf(b, "outbox_circuit_state{state=\"%s\"} %d\n", circuits[i],
                             in->circuit && strcmp(in->circuit, circuits[i]) == 0);
    if (err == OBX_OK)
        err = family(b, "outbox_sending_paused", "gauge",
                     "1 when sending is paused for the reason (auth, rate_limited, "
                     "circuit_open).");
    for (int i = 0; err == OBX_OK && i < 3; i++)
        err = obx_buf_printf(b, "outbox_sending_paused{reason=\"%s\"} %d\n", reasons[i],
                             in->paused_reason && strcmp(in->paused_reason, reasons[i]) == 0);
    if (err == OBX_OK)
        err = held_family(b, "outbox_channel_held", "channel",
                          "1 for each channel paused by outbox pause, POST /v1/pause or the "
                          "dashboard: its messages are held.",
                          in->held_channels, in->nheld);
    if (err == OBX_OK)
        err = held_family(b, "outbox_tenant_held", "tenant",
                          "1 for each tenant paused by outbox pause --tenant, POST /v1/pause or "
                          "the dashboard: the messages of all its channels are held.",
                          in->held_tenants, in->nheld_tenants);
    if (err == OBX_OK)
        err = family(b, "outbox_rate_limit_requests_per_second", "gauge",
                     "Configured pacing of requests per API key (0 = unlimited).");
    if (err == OBX_OK)
        err = obx_buf_printf(b, "outbox_rate_limit_requests_per_second %.6g\n",
                             in->rate_limit_per_s);
    return err;
}

const char *const obx_metrics_http_reasons[4] = {"too_large", "bad_request", "timeout",
                                                 "over_budget"};

static enum obx_err
counter(struct obx_buf *b, const char *name, const char *help, const char *label, const char *value,
        int64_t n, int with_header)
{
    enum obx_err err = with_header ? family(b, name, "counter", help) : OBX_OK;

    if (err == OBX_OK)
        err = label ? obx_buf_printf(b, "%s{%s=\"%s\"} %lld\n", name, label, value, (long long)n)
                    : obx_buf_printf(b, "%s %lld\n", name, (long long)n);
    return err;
}

static enum obx_err
render_listeners(struct obx_buf *b, const struct obx_metrics_input *in)
{
    const char *api = "outbox_api_messages_total", *wh = "outbox_webhook_requests_total";
    enum obx_err err = counter(b, "outbox_api_requests_total", "Producer API requests.", NULL, NULL,
                               in->api_requests, 1);

    if (err == OBX_OK)
        err = counter(b, "outbox_store_transactions_total",
                      "Transactions committed by the store thread (each one fsync, many jobs).",
                      NULL, NULL, in->store_groups - in->store_failed_groups, 1);
    if (err == OBX_OK)
        err = counter(b, "outbox_store_jobs_total",
                      "Units of work run by the store thread (claims, outcomes, enqueue and "
                      "webhook groups, periodic jobs).",
                      NULL, NULL, in->store_jobs, 1);
    if (err == OBX_OK)
        err = counter(b, "outbox_store_failed_transactions_total",
                      "Store thread transactions that could not be committed (every job in "
                      "them was told so and retries or answers 503).",
                      NULL, NULL, in->store_failed_groups, 1);

    if (err == OBX_OK)
        err = counter(b, api, "Messages enqueued over the API, by result.", "result", "accepted",
                      in->api_accepted, 1);
    if (err == OBX_OK)
        err = counter(b, api, NULL, "result", "duplicate", in->api_duplicates, 0);
    if (err == OBX_OK)
        err = counter(b, "outbox_api_write_failures_total",
                      "Enqueue requests answered 503/507 because the database could not be "
                      "written.",
                      NULL, NULL, in->api_write_failures, 1);
    if (err == OBX_OK)
        err = counter(b, wh, "Webhook requests by verification result.", "result", "stored",
                      in->wh_stored, 1);
    if (err == OBX_OK)
        err = counter(b, wh, NULL, "result", "duplicate", in->wh_duplicates, 0);
    if (err == OBX_OK)
        err = counter(b, wh, NULL, "result", "bad_signature", in->wh_bad_signature, 0);
    if (err == OBX_OK)
        err = counter(b, wh, NULL, "result", "rejected", in->wh_rejected_other + in->wh_too_large,
                      0);
    if (err == OBX_OK)
        err = counter(b, wh, NULL, "result", "unavailable", in->wh_write_failures, 0);
    if (err == OBX_OK)
        err = counter(b, "outbox_webhook_rejected_total",
                      "Webhook requests refused, by reason (Partoo does not retry them).", "reason",
                      "signature", in->wh_bad_signature, 1);
    if (err == OBX_OK)
        err = counter(b, "outbox_webhook_rejected_total", NULL, "reason", "too_large",
                      in->wh_too_large, 0);
    if (err == OBX_OK)
        err = counter(b, "outbox_webhook_rejected_total", NULL, "reason", "other",
                      in->wh_rejected_other, 0);
    if (err == OBX_OK)
        err = family(b, "outbox_http_rejected_total", "counter",
                     "Requests the HTTP layer answered itself (413, 400, 408, 503 over the body "
                     "budget), by listener and reason.");
    for (int l = 0; err == OBX_OK && l < 2; l++)
        for (int r = 0; err == OBX_OK && r < 4; r++)
            err = obx_buf_printf(b,
                                 "outbox_http_rejected_total{listener=\"%s\",reason=\"%s\"} "
                                 "%lld\n",
                                 l == 0 ? "api" : "webhook", obx_metrics_http_reasons[r],
                                 (long long)in->http_rejected[l][r]);
    return err;
}

static enum obx_err
render_tables(struct obx_buf *b, const struct obx_metrics_input *in)
{
    enum obx_err err = family(b, "outbox_webhook_events", "gauge",
                              "Stored webhook events by processing outcome.");

    for (int i = 0; err == OBX_OK && i < 7; i++)
        err = obx_buf_printf(b, "outbox_webhook_events{outcome=\"%s\"} %lld\n",
                             obx_metrics_webhook_outcomes[i],
                             (long long)in->webhook_events_by_outcome[i]);
    if (err == OBX_OK)
        err = family(b, "outbox_inbox_messages", "gauge", "Replies in the inbox by state.");
    for (int i = 0; err == OBX_OK && i < 4; i++)
        err = obx_buf_printf(b, "outbox_inbox_messages{state=\"%s\"} %lld\n", inbox_states[i],
                             (long long)in->inbox_by_state[i]);
    if (err == OBX_OK)
        err = family(b, "outbox_database_size_bytes", "gauge",
                     "Bytes of the outbox's database: SQLite's pages, or on PostgreSQL "
                     "the outbox schema's tables with their indexes.");
    if (err == OBX_OK)
        err = obx_buf_printf(b, "outbox_database_size_bytes %lld\n", (long long)in->db_bytes);
    if (err == OBX_OK)
        err = family(b, "outbox_wal_size_bytes", "gauge", "Size of the write-ahead log file.");
    if (err == OBX_OK)
        err = obx_buf_printf(b, "outbox_wal_size_bytes %lld\n", (long long)in->wal_bytes);
    if (err == OBX_OK)
        err = family(b, "outbox_process_start_time_seconds", "gauge",
                     "Start time of the process since the Unix epoch.");
    if (err == OBX_OK)
        err = obx_buf_printf(b, "outbox_process_start_time_seconds %.3f\n",
                             (double)in->start_time_ms / 1000.0);
    return err;
}

/*
 * The tenant label (SPEC §11), on what an operator alerts on only, since there may be
 * thousands of tenants: per tenant its backlog and failures (2 series), the requests it
 * sent (1) and, only while it is paused, why (1). Everything else stays per channel or
 * global. Names are [A-Za-z0-9._-]; label_value escapes anyway.
 */
static enum obx_err
tenant_sample(struct obx_buf *b, const char *name, const char *tenant, const char *label,
              const char *value, double v)
{
    enum obx_err err = obx_buf_printf(b, "%s{tenant=\"", name);

    if (err == OBX_OK)
        err = label_value(b, tenant);
    if (err == OBX_OK && label)
        err = obx_buf_printf(b, "\",%s=\"%s", label, value);
    if (err == OBX_OK)
        err = obx_buf_printf(b, "\"} %.17g\n", v);
    return err;
}

static enum obx_err
render_tenants(struct obx_buf *b, const struct obx_tenant_stats_set *s)
{
    enum obx_err err = OBX_OK;
    size_t npaused = 0;

    if (!s || s->n == 0) /* a family without samples is not valid exposition */
        return OBX_OK;
    err = family(b, "outbox_tenant_messages", "gauge",
                 "Messages per tenant in the states an operator alerts on (queued, failed).");
    for (size_t i = 0; err == OBX_OK && i < s->n; i++) {
        err = tenant_sample(b, "outbox_tenant_messages", s->v[i].name, "state", "queued",
                            (double)s->v[i].counts[OBX_ST_QUEUED]);
        if (err == OBX_OK)
            err = tenant_sample(b, "outbox_tenant_messages", s->v[i].name, "state", "failed",
                                (double)s->v[i].counts[OBX_ST_FAILED]);
        npaused += s->v[i].paused_reason[0] != 0;
    }
    if (err == OBX_OK)
        err = family(b, "outbox_tenant_requests_total", "counter",
                     "Delivery requests sent with the tenant's key since serve started.");
    for (size_t i = 0; err == OBX_OK && i < s->n; i++)
        err = tenant_sample(b, "outbox_tenant_requests_total", s->v[i].name, NULL, NULL,
                            (double)s->v[i].sent_total);
    if (err == OBX_OK && npaused)
        err = family(b, "outbox_tenant_paused", "gauge",
                     "1 for each tenant whose sending is paused, by reason (auth, "
                     "rate_limited, circuit_open, no_key); absent when it is not.");
    for (size_t i = 0; err == OBX_OK && i < s->n; i++)
        if (s->v[i].paused_reason[0])
            err = tenant_sample(b, "outbox_tenant_paused", s->v[i].name, "reason",
                                s->v[i].paused_reason, 1);
    return err;
}

enum obx_err
obx_metrics_render(struct obx_buf *b, const struct obx_metrics_input *in)
{
    enum obx_err err = render_messages(b, in);

    if (err == OBX_OK)
        err = render_attempts(b, in);
    if (err == OBX_OK)
        err = render_histogram(b, in);
    if (err == OBX_OK)
        err = render_sender_state(b, in);
    if (err == OBX_OK)
        err = render_listeners(b, in);
    if (err == OBX_OK)
        err = render_tables(b, in);
    if (err == OBX_OK)
        err = render_tenants(b, in->tenants);
    return err;
}
