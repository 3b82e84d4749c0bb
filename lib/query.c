/*
 * query: read-only views of the outbox (list, show, stats, the inbox, /metrics counts). The
 * reads are store_query's; what is built from them (per-channel statistics, the webhook
 * rejection counters) is here.
 */
#include "query.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "store_query.h"

enum obx_err
obx_query_list(struct obx_store *st, const struct obx_list_query *q, obx_row_fn fn, void *ctx,
               int64_t *next_cursor)
{
    return obx_store_query_messages(st, q, fn, ctx, next_cursor);
}

enum obx_err
obx_query_get(struct obx_store *st, const char *channel_id, const char *external_message_id,
              obx_row_fn row_fn, obx_transition_fn tr_fn, obx_attempt_fn at_fn, void *ctx)
{
    return obx_store_query_message(st, channel_id, external_message_id, row_fn, tr_fn, at_fn, ctx);
}

/* ---- stats ---------------------------------------------------------------------------- */

/* The channels being built, sorted by channel id (the store returns them in that order). */
struct stats_build {
    struct obx_channel_stats *arr;
    size_t n, cap;
    enum obx_err err;
};

/* Appends (or finds the last) channel entry; the rows come sorted by channel. */
static struct obx_channel_stats *
channel_entry(struct stats_build *b, const char *channel)
{
    if (b->n && strcmp(b->arr[b->n - 1].channel_id, channel) == 0)
        return &b->arr[b->n - 1];
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 8;
        struct obx_channel_stats *p = obx_realloc(b->arr, ncap * sizeof *p);
        if (!p)
            return NULL;
        b->arr = p;
        b->cap = ncap;
    }
    memset(&b->arr[b->n], 0, sizeof *b->arr);
    snprintf(b->arr[b->n].channel_id, sizeof b->arr[b->n].channel_id, "%s", channel);
    return &b->arr[b->n++];
}

static int
on_channel_state(void *ctx, const struct obx_channel_state_row *r)
{
    struct stats_build *b = ctx;
    struct obx_channel_stats *c = channel_entry(b, r->channel_id);
    int state = obx_store_state_parse(r->state);

    if (!c) {
        b->err = OBX_ENOMEM;
        return 1;
    }
    if (state >= 0)
        c->counts[state] = r->count;
    if (state == OBX_ST_QUEUED)
        c->oldest_queued_at_ms = r->oldest_created_at_ms;
    if (state == OBX_ST_ACCEPTED)
        c->unconfirmed = r->unconfirmed;
    if (state == OBX_ST_CONFIRMED)
        c->confirmed_24h = r->confirmed_since;
    return 0;
}

/* Adds one channel's sends of the last minute (channels are sorted: binary search). */
static int
on_sent(void *ctx, const char *channel_id, int64_t n)
{
    struct stats_build *b = ctx;
    size_t lo = 0, hi = b->n;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int cmp = strcmp(b->arr[mid].channel_id, channel_id);
        if (cmp == 0) {
            b->arr[mid].sent_last_min = n;
            break;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* The channel's last error; best effort (a failed read leaves it empty, as before). */
static void
fill_last_error(struct obx_store *st, struct obx_channel_stats *c)
{
    char e[sizeof c->last_error];
    int status = 0, found = 0;

    if (obx_store_query_last_failure(st, c->channel_id, e, sizeof e, &status, &found) != OBX_OK ||
        !found)
        return;
    if (e[0])
        snprintf(c->last_error, sizeof c->last_error, "%s", e);
    else if (status)
        snprintf(c->last_error, sizeof c->last_error, "http %d", status);
}

enum obx_err
obx_query_stats(struct obx_store *st, struct obx_channel_stats **out, size_t *n)
{
    int64_t now_ms = obx_now_ms(st->clock);
    struct stats_build b = {NULL, 0, 0, OBX_OK};
    enum obx_err err;

    *out = NULL;
    *n = 0;
    err = obx_store_query_channel_states(st, now_ms - 24 * 3600 * 1000LL, on_channel_state, &b);
    if (err == OBX_OK)
        err = b.err;
    for (size_t i = 0; err == OBX_OK && i < b.n; i++)
        fill_last_error(st, &b.arr[i]);
    if (err == OBX_OK)
        err = obx_store_query_sent_by_channel(st, now_ms - 60000, on_sent, &b);
    if (err != OBX_OK) {
        obx_free(b.arr);
        return err;
    }
    *out = b.arr;
    *n = b.n;
    return OBX_OK;
}

enum obx_err
obx_query_count_accepted_since(struct obx_store *st, int64_t since_ms, int64_t *out)
{
    return obx_store_query_count_accepted_since(st, since_ms, out);
}

/* ---- inbox ------------------------------------------------------------------------------- */

enum obx_err
obx_query_inbox(struct obx_store *st, int64_t after_id, int limit, int include_acked,
                obx_inbox_fn fn, void *ctx, int64_t *next_cursor)
{
    return obx_store_query_replies(st, after_id, limit, include_acked, fn, ctx, next_cursor);
}

/* ---- counts for /metrics ---------------------------------------------------------------- */

enum obx_err
obx_query_inbox_counts(struct obx_store *st, int64_t out[4])
{
    return obx_store_query_reply_states(st, out);
}

enum obx_err
obx_query_webhook_outcomes(struct obx_store *st, const char *const *names, int n, int64_t *out)
{
    return obx_store_query_event_outcomes(st, names, n, out);
}

enum obx_err
obx_query_db_bytes(struct obx_store *st, int64_t *out)
{
    return obx_store_query_db_bytes(st, out);
}

/* ---- service state ----------------------------------------------------------------------- */

enum obx_err
obx_query_service_state(struct obx_store *st, obx_state_fn fn, void *ctx)
{
    return obx_store_query_service_state(st, fn, ctx);
}

static int
on_rejection_state(void *ctx, const char *key, const char *value, int64_t updated_at_ms)
{
    int64_t *out = ctx;

    (void)updated_at_ms;
    if (!value)
        return 0;
    if (strcmp(key, OBX_STATE_WEBHOOKS_REJECTED_SIGNATURE) == 0)
        out[0] = strtoll(value, NULL, 10);
    else if (strcmp(key, OBX_STATE_WEBHOOKS_REJECTED_TOO_LARGE) == 0)
        out[1] = strtoll(value, NULL, 10);
    return 0;
}

enum obx_err
obx_query_webhook_rejections(struct obx_store *st, int64_t *bad_signature, int64_t *too_large)
{
    int64_t v[2] = {0, 0};
    enum obx_err err = obx_query_service_state(st, on_rejection_state, v);

    *bad_signature = 0;
    *too_large = 0;
    if (err == OBX_OK) {
        *bad_signature = v[0];
        *too_large = v[1];
    }
    return err;
}
