/* view: JSON rendering of rows. Writes with obx_buf; parses nothing. */
#include "view.h"

#include <stdio.h>
#include <string.h>

#include "clock.h"

enum obx_err
obx_view_str_or_null(struct obx_buf *b, const char *s)
{
    return s ? obx_buf_json_str(b, s) : obx_buf_puts(b, "null");
}

enum obx_err
obx_view_time_or_null(struct obx_buf *b, int64_t at_ms)
{
    char ts[40];

    if (!at_ms)
        return obx_buf_puts(b, "null");
    obx_clock_format_ms(at_ms, ts, sizeof ts);
    return obx_buf_printf(b, "\"%s\"", ts);
}

/* ,"name":<string or null> */
static enum obx_err
kv_str(struct obx_buf *b, const char *name, const char *v)
{
    enum obx_err err = obx_buf_printf(b, ",\"%s\":", name);

    return err == OBX_OK ? obx_view_str_or_null(b, v) : err;
}

static enum obx_err
kv_time(struct obx_buf *b, const char *name, int64_t at_ms)
{
    enum obx_err err = obx_buf_printf(b, ",\"%s\":", name);

    return err == OBX_OK ? obx_view_time_or_null(b, at_ms) : err;
}

static enum obx_err
kv_int_or_null(struct obx_buf *b, const char *name, int64_t v)
{
    return v ? obx_buf_printf(b, ",\"%s\":%lld", name, (long long)v)
             : obx_buf_printf(b, ",\"%s\":null", name);
}

enum obx_err
obx_view_message(struct obx_buf *b, const struct obx_row *r)
{
    enum obx_err err = obx_buf_printf(b, "{\"id\":%lld", (long long)r->id);

    if (err == OBX_OK)
        err = kv_str(b, "channel_id", r->msg.channel_id);
    if (err == OBX_OK)
        err = kv_str(b, "tenant", r->tenant);
    if (err == OBX_OK)
        err = kv_str(b, "external_message_id", r->msg.external_message_id);
    if (err == OBX_OK)
        err = kv_str(b, "business_id", r->msg.business_id);
    if (err == OBX_OK)
        err = kv_str(b, "external_conversation_id", r->msg.external_conversation_id);
    if (err == OBX_OK)
        err = kv_str(b, "content", r->msg.content);
    if (err == OBX_OK)
        err = kv_str(b, "sender_type", r->msg.sender_type);
    if (err == OBX_OK)
        err = kv_str(b, "consumer_name", r->msg.consumer_name);
    if (err == OBX_OK)
        err = kv_str(b, "consumer_image", r->msg.consumer_image);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"priority\":%lld", (long long)r->msg.priority);
    if (err == OBX_OK)
        err = kv_str(b, "state", r->state);
    if (err == OBX_OK)
        err = kv_str(b, "state_reason", r->state_reason);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"attempts\":%d", r->attempts);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"resends\":%d", r->resends);
    if (err == OBX_OK)
        err = kv_time(b, "created_at", r->created_at_ms);
    if (err == OBX_OK)
        err = kv_time(b, "state_changed_at", r->state_at_ms);
    if (err == OBX_OK)
        err = kv_time(b, "next_attempt_at",
                      strcmp(r->state, "queued") == 0 ? r->next_attempt_at_ms : 0);
    if (err == OBX_OK)
        err = kv_time(b, "accepted_at", r->accepted_at_ms);
    if (err == OBX_OK)
        err = kv_time(b, "confirmed_at", r->confirmed_at_ms);
    if (err == OBX_OK)
        err = kv_int_or_null(b, "last_http_status", r->last_http_status);
    if (err == OBX_OK)
        err = kv_str(b, "last_error", r->last_error);
    if (err == OBX_OK)
        err = kv_str(b, "partoo_message_id", r->partoo_message_id);
    if (err == OBX_OK)
        err = kv_str(b, "partoo_status", r->partoo_status);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"unconfirmed\":%s", r->unconfirmed_at_ms ? "true" : "false");
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

enum obx_err
obx_view_transition(struct obx_buf *b, const struct obx_transition_row *t)
{
    enum obx_err err = obx_buf_puts(b, "{\"at\":");

    if (err == OBX_OK)
        err = obx_view_time_or_null(b, t->at_ms);
    if (err == OBX_OK)
        err = kv_str(b, "from", t->from_state);
    if (err == OBX_OK)
        err = kv_str(b, "to", t->to_state);
    if (err == OBX_OK)
        err = kv_str(b, "reason", t->reason);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

enum obx_err
obx_view_attempt(struct obx_buf *b, const struct obx_attempt_row *a)
{
    enum obx_err err = obx_buf_puts(b, "{\"started_at\":");

    if (err == OBX_OK)
        err = obx_view_time_or_null(b, a->started_at_ms);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"duration_ms\":%lld", (long long)a->duration_ms);
    if (err == OBX_OK)
        err = kv_int_or_null(b, "http_status", a->http_status);
    if (err == OBX_OK)
        err = kv_str(b, "outcome", a->outcome);
    if (err == OBX_OK)
        err = kv_str(b, "error", a->error);
    if (err == OBX_OK)
        err = kv_str(b, "response_excerpt", a->excerpt);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

static enum obx_err
counts_json(struct obx_buf *b, const int64_t *counts)
{
    enum obx_err err = obx_buf_puts(b, "{");

    for (int s = 0; err == OBX_OK && s < OBX_N_STATES; s++)
        err = obx_buf_printf(b, "%s\"%s\":%lld", s ? "," : "", obx_store_state_name(s),
                             (long long)counts[s]);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

static enum obx_err
age_json(struct obx_buf *b, int64_t oldest_ms, int64_t now_ms)
{
    if (!oldest_ms)
        return obx_buf_puts(b, "0");
    return obx_buf_printf(b, "%.3f", (double)(now_ms - oldest_ms) / 1000.0);
}

static enum obx_err
paused_json(struct obx_buf *b, const struct obx_view_stats_extra *x)
{
    enum obx_err err;

    if (!x->paused_reason)
        return obx_buf_puts(b, "null");
    err = obx_buf_puts(b, "{\"reason\":");
    if (err == OBX_OK)
        err = obx_buf_json_str(b, x->paused_reason);
    if (err == OBX_OK)
        err = kv_time(b, "until", x->paused_until_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

static enum obx_err
paused_as(struct obx_buf *b, const char *reason, int64_t until_ms)
{
    struct obx_view_stats_extra p = {0};

    p.paused_reason = reason;
    p.paused_until_ms = until_ms;
    return paused_json(b, &p);
}

/*
 * A channel's pause: its tenant's (SPEC §11). A channel no tenant owns while the default
 * tenant has no key waits `queued`; the reason names the channel so that an operator sees
 * which one to give a tenant.
 */
static enum obx_err
channel_paused_json(struct obx_buf *b, const struct obx_channel_stats *c, size_t i,
                    const struct obx_view_stats_extra *x)
{
    const char *owner;
    const struct obx_tenant_stats *t;
    char why[512];

    if (!x->channel_owners || !x->tenants)
        return paused_json(b, x);
    owner = x->channel_owners + i * (OBX_TENANT_NAME_MAX + 1);
    t = obx_store_tenant_stats_find(x->tenants, owner[0] ? owner : "default");
    if (!t || !t->paused_reason[0])
        return obx_buf_puts(b, "null");
    if (t->is_default && t->no_key) {
        snprintf(why, sizeof why, "no tenant owns channel %s and no default API key is configured",
                 c->channel_id);
        return paused_as(b, why, 0);
    }
    return paused_as(b, t->paused_reason, t->paused_until_ms);
}

static enum obx_err
tenant_json(struct obx_buf *b, const struct obx_tenant_stats *t)
{
    enum obx_err err = obx_buf_puts(b, "{\"tenant\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, t->name);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"counts\":");
    if (err == OBX_OK)
        err = counts_json(b, t->counts);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"paused\":");
    if (err == OBX_OK)
        err = t->paused_reason[0] ? paused_as(b, t->paused_reason, t->paused_until_ms)
                                  : obx_buf_puts(b, "null");
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"send_rate_per_min\":%lld,\"rate_limit\":%.17g",
                             (long long)t->send_rate_per_min, t->rate_limit_per_min);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"channels\":[");
    for (size_t k = 0; err == OBX_OK && k < t->nchannels; k++) {
        if (k)
            err = obx_buf_puts(b, ",");
        if (err == OBX_OK)
            err = obx_buf_json_str(b, t->channels[k]);
    }
    if (err == OBX_OK)
        err = obx_buf_puts(b, t->channels_truncated ? "],\"channels_truncated\":true}" : "]}");
    return err;
}

/* "tenants":[...] (the first OBX_TENANT_STATS_MAX, in the set's order) and whether cut. */
static enum obx_err
tenants_json(struct obx_buf *b, const struct obx_tenant_stats_set *s)
{
    size_t n = s->n < OBX_TENANT_STATS_MAX ? s->n : OBX_TENANT_STATS_MAX;
    enum obx_err err = obx_buf_puts(b, ",\"tenants\":[");

    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        if (i)
            err = obx_buf_puts(b, ",");
        if (err == OBX_OK)
            err = tenant_json(b, &s->v[i]);
    }
    if (err == OBX_OK)
        err = obx_buf_printf(b, "],\"tenants_truncated\":%s", n < s->n ? "true" : "false");
    return err;
}

static enum obx_err
channel_json(struct obx_buf *b, const struct obx_channel_stats *c, size_t i,
             const struct obx_view_stats_extra *x)
{
    enum obx_err err = obx_buf_puts(b, "{\"channel_id\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, c->channel_id);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"counts\":");
    if (err == OBX_OK)
        err = counts_json(b, c->counts);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"unconfirmed\":%lld", (long long)c->unconfirmed);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"confirmed_24h\":%lld", (long long)c->confirmed_24h);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"oldest_queued_age_s\":");
    if (err == OBX_OK)
        err = age_json(b, c->oldest_queued_at_ms, x->now_ms);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"send_rate_per_min\":%lld", (long long)c->sent_last_min);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"paused\":");
    if (err == OBX_OK)
        err = channel_paused_json(b, c, i, x);
    if (err == OBX_OK)
        err = kv_str(b, "last_error", c->last_error[0] ? c->last_error : NULL);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

enum obx_err
obx_view_stats(struct obx_buf *b, const struct obx_channel_stats *c, size_t n,
               const struct obx_view_stats_extra *x)
{
    int64_t total[OBX_N_STATES] = {0}, oldest = 0, unconfirmed = 0;
    enum obx_err err;

    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < OBX_N_STATES; s++)
            total[s] += c[i].counts[s];
        unconfirmed += c[i].unconfirmed;
        if (c[i].oldest_queued_at_ms && (!oldest || c[i].oldest_queued_at_ms < oldest))
            oldest = c[i].oldest_queued_at_ms;
    }
    err = obx_buf_puts(b, "{\"counts\":");
    if (err == OBX_OK)
        err = counts_json(b, total);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"unconfirmed\":%lld", (long long)unconfirmed);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"oldest_queued_age_s\":");
    if (err == OBX_OK)
        err = age_json(b, oldest, x->now_ms);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"send_rate_per_min\":%.1f", x->send_rate_per_min);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"paused\":");
    if (err == OBX_OK)
        err = paused_json(b, x);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"webhooks_rejected\":{\"signature\":%lld,\"too_large\":%lld}",
                             (long long)x->webhooks_rejected_signature,
                             (long long)x->webhooks_rejected_too_large);
    if (err == OBX_OK)
        err = obx_buf_puts(b, ",\"channels\":[");
    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        if (i)
            err = obx_buf_puts(b, ",");
        if (err == OBX_OK)
            err = channel_json(b, &c[i], i, x);
    }
    if (err == OBX_OK)
        err = obx_buf_puts(b, "]");
    if (err == OBX_OK && x->tenants)
        err = tenants_json(b, x->tenants);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

/* Builds the show/GET document while obx_query_get walks the row and its logs. */
struct doc_ctx {
    struct obx_buf *b;
    int ntr, nat;
    enum obx_err err;
};

static int
doc_row(void *ctx, const struct obx_row *r)
{
    struct doc_ctx *d = ctx;

    d->err = obx_view_message(d->b, r);
    if (d->err == OBX_OK) {
        /* Reopen the object to append the two arrays. */
        d->b->len--;
        d->b->data[d->b->len] = '\0';
        d->err = obx_buf_puts(d->b, ",\"transitions\":[");
    }
    return d->err != OBX_OK;
}

static int
doc_transition(void *ctx, const struct obx_transition_row *t)
{
    struct doc_ctx *d = ctx;

    if (d->ntr++)
        d->err = obx_buf_puts(d->b, ",");
    if (d->err == OBX_OK)
        d->err = obx_view_transition(d->b, t);
    return d->err != OBX_OK;
}

static int
doc_attempt(void *ctx, const struct obx_attempt_row *a)
{
    struct doc_ctx *d = ctx;

    d->err = obx_buf_puts(d->b, d->nat++ ? "," : "],\"attempts_log\":[");
    if (d->err == OBX_OK)
        d->err = obx_view_attempt(d->b, a);
    return d->err != OBX_OK;
}

enum obx_err
obx_view_message_document(struct obx_store *st, const char *channel_id,
                          const char *external_message_id, struct obx_buf *b)
{
    struct doc_ctx d = {b, 0, 0, OBX_OK};
    enum obx_err err = obx_query_get(st, channel_id, external_message_id, doc_row, doc_transition,
                                     doc_attempt, &d);

    if (err == OBX_OK)
        err = d.err;
    if (err == OBX_OK)
        err = obx_buf_puts(b, d.nat ? "]}" : "],\"attempts_log\":[]}");
    return err;
}

enum obx_err
obx_view_inbox(struct obx_buf *b, const struct obx_inbox_row *r)
{
    enum obx_err err = obx_buf_printf(b, "{\"id\":%lld", (long long)r->id);

    if (err == OBX_OK)
        err = kv_str(b, "channel_id", r->channel_id);
    if (err == OBX_OK)
        err = kv_str(b, "external_conversation_id", r->external_conversation_id);
    if (err == OBX_OK)
        err = kv_str(b, "partoo_message_id", r->partoo_message_id);
    if (err == OBX_OK)
        err = kv_str(b, "partoo_conversation_id", r->partoo_conversation_id);
    if (err == OBX_OK)
        err = kv_str(b, "business_id", r->business_id);
    if (err == OBX_OK)
        err = kv_str(b, "sender_type", r->sender_type);
    if (err == OBX_OK)
        err = kv_str(b, "sender_label", r->sender_label);
    if (err == OBX_OK)
        err = kv_str(b, "content_type", r->content_type);
    if (err == OBX_OK)
        err = kv_str(b, "content", r->content);
    if (err == OBX_OK)
        err = kv_str(b, "date", r->message_date);
    if (err == OBX_OK)
        err = kv_time(b, "received_at", r->received_at_ms);
    if (err == OBX_OK)
        err = kv_str(b, "state", r->state);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"attempts\":%d", r->attempts);
    if (err == OBX_OK)
        err = kv_int_or_null(b, "last_http_status", r->last_http_status);
    if (err == OBX_OK)
        err = kv_str(b, "last_error", r->last_error);
    if (err == OBX_OK)
        err = kv_time(b, "delivered_at", r->delivered_at_ms);
    if (err == OBX_OK)
        err = kv_time(b, "acked_at", r->acked_at_ms);
    if (err == OBX_OK)
        err = obx_buf_puts(b, "}");
    return err;
}

/* ,"channels":[{"channel_id":..,"readonly":..},...] */
static enum obx_err
tenant_channels(struct obx_buf *b, const struct obx_tenant_row *t)
{
    enum obx_err err = obx_buf_puts(b, ",\"channels\":[");

    for (size_t i = 0; err == OBX_OK && i < t->nchannels; i++) {
        err = obx_buf_puts(b, i ? ",{\"channel_id\":" : "{\"channel_id\":");
        if (err == OBX_OK)
            err = obx_buf_json_str(b, t->channels[i].channel_id);
        if (err == OBX_OK)
            err = obx_buf_printf(b, ",\"readonly\":%s}",
                                 t->channels[i].readonly ? "true" : "false");
    }
    return err == OBX_OK ? obx_buf_puts(b, "]") : err;
}

enum obx_err
obx_view_tenant(struct obx_buf *b, const struct obx_tenant_row *t)
{
    enum obx_err err = obx_buf_puts(b, "{\"tenant\":");

    /* The key itself is not in the row: only what may be shown of it. */
    if (err == OBX_OK)
        err = obx_buf_json_str(b, t->name);
    if (err == OBX_OK)
        err = kv_str(b, "key_fingerprint", t->key_fingerprint);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"key_sealed\":%s", t->key_sealed ? "true" : "false");
    if (err == OBX_OK)
        err = t->rate_limit_per_min > 0
                  ? obx_buf_printf(b, ",\"rate_limit_per_min\":%.10g", t->rate_limit_per_min)
                  : obx_buf_puts(b, ",\"rate_limit_per_min\":null");
    if (err == OBX_OK)
        err = kv_int_or_null(b, "rate_burst", t->rate_burst);
    if (err == OBX_OK)
        err = kv_str(b, "partoo_base_url", t->partoo_base_url);
    if (err == OBX_OK)
        err = tenant_channels(b, t);
    if (err == OBX_OK)
        err = kv_time(b, "created_at", t->created_at_ms);
    if (err == OBX_OK)
        err = kv_time(b, "updated_at", t->updated_at_ms);
    return err == OBX_OK ? obx_buf_puts(b, "}") : err;
}

enum obx_err
obx_view_node(struct obx_buf *b, const struct obx_store_pg_node_row *n)
{
    const char *p = n->held;
    char name[OBX_TENANT_NAME_MAX + 1];
    int64_t epoch;
    enum obx_err err = obx_buf_puts(b, "{\"name\":");

    if (err == OBX_OK)
        err = obx_buf_json_str(b, n->name);
    if (err == OBX_OK)
        err = obx_buf_printf(b, ",\"live\":%s,\"beat_age_ms\":%lld,\"tenants\":[",
                             n->live ? "true" : "false", (long long)n->beat_age_ms);
    for (int k = 0; err == OBX_OK && obx_store_pg_held_next(&p, name, sizeof name, &epoch); k++) {
        err = obx_buf_puts(b, k ? ",{\"tenant\":" : "{\"tenant\":");
        if (err == OBX_OK)
            err = obx_buf_json_str(b, name);
        if (err == OBX_OK)
            err = obx_buf_printf(b, ",\"epoch\":%lld}", (long long)epoch);
    }
    return err == OBX_OK ? obx_buf_puts(b, "]}") : err;
}
