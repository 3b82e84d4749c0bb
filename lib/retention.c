/* retention: one bounded, resumable deletion pass (phases drawn in retention.h). */
#include "retention.h"

#include <stdint.h>
#include <string.h>

#include "store_tenant.h"


enum phase { PH_MESSAGES = 0, PH_REPLIES, PH_EVENTS, PH_SEAL, PH_PRUNE_SCAN, PH_PRUNE, PH_DONE };

/* The terminal states, in the order their messages are visited. */
static const enum obx_state purge_states[] = {OBX_ST_CONFIRMED, OBX_ST_CANCELLED, OBX_ST_FAILED,
                                              OBX_ST_ACCEPTED};
#define N_PURGE_STATES (int)(sizeof purge_states / sizeof purge_states[0])

void
obx_retention_init(struct obx_retention *r, const struct obx_retention_opts *o)
{
    memset(r, 0, sizeof *r);
    r->o = *o;
    if (r->o.batch_rows <= 0)
        r->o.batch_rows = OBX_RETENTION_BATCH_ROWS;
    if (r->o.batch_ms == 0)
        r->o.batch_ms = OBX_RETENTION_BATCH_MS;
    r->phase = PH_MESSAGES;
}

static int
cfg_readonly(void *ctx, const char *channel)
{
    return obx_config_channel_readonly(ctx, channel);
}

void
obx_retention_opts_for(const struct obx_config *cfg, int64_t now_ms, int64_t age_ms,
                       struct obx_retention_opts *out)
{
    int64_t keep_hashes = cfg->webhook_hash_retention_ms;

    memset(out, 0, sizeof *out);
    out->before_ms = now_ms - age_ms;
    out->hashes_before_ms = INT64_MIN; /* webhook_hash_retention = 0: keep them forever */
    if (keep_hashes > 0)
        out->hashes_before_ms = now_ms - (keep_hashes > age_ms ? keep_hashes : age_ms);
    /* No readonly_channels: only a tenant's read-only channel can make accepted terminal. */
    out->is_readonly = cfg->nreadonly_channel_ids ? cfg_readonly : NULL;
    /* The callback only reads the configuration; the cast keeps the ctx signature. */
    out->ctx = (void *)(uintptr_t)cfg;
}

const struct obx_retention_counts *
obx_retention_counts(const struct obx_retention *r)
{
    return &r->n;
}

/* Moves to the next phase (or the next message state) with a fresh cursor. */
static void
advance(struct obx_retention *r)
{
    r->cursor = 0;
    if (r->phase == PH_MESSAGES && ++r->state_idx < N_PURGE_STATES)
        return;
    r->phase++;
}

/*
 * Whether the accepted walk can delete anything: accepted is terminal only on a read-only
 * channel. Without one (no readonly_channels, no tenant's read-only channel) the walk would
 * read every accepted message to delete none; with webhooks off or late, that is every
 * message sent lately, and it cost a busy serve 8 % of its deliveries for as long as the
 * pass ran (docs/benchmarks.md, "Retention's walk over accepted messages").
 */
static enum obx_err
accepted_can_go(struct obx_store *st, const struct obx_retention *r, int *can)
{
    *can = 1;
    if (r->o.is_readonly)
        return OBX_OK;
    return obx_store_tenant_any_readonly(st, can);
}

enum obx_err
obx_retention_step(struct obx_store *st, struct obx_retention *r, int *done)
{
    struct obx_batch_limit lim = {r->o.batch_rows, 0};
    struct obx_purge_opts po = {r->o.before_ms, r->o.include_failed, r->o.is_readonly, r->o.ctx};
    int64_t a = 0, b = 0;
    int more = 0;
    enum obx_err err = OBX_OK;

    *done = 0;
    if (r->o.batch_ms > 0)
        lim.until_mono_ms = obx_mono_ms(obx_clock_real()) + r->o.batch_ms;
    switch (r->phase) {
    case PH_MESSAGES:
        if (purge_states[r->state_idx] == OBX_ST_ACCEPTED && r->cursor == 0) {
            int can = 1;
            if ((err = accepted_can_go(st, r, &can)) != OBX_OK)
                return err;
            if (!can)
                break; /* more = 0: on to the replies */
        }
        err = obx_store_purge_batch(st, &po, purge_states[r->state_idx], &lim, &r->cursor, &a,
                                    &more);
        r->n.messages += a;
        break;
    case PH_REPLIES:
        err = obx_store_inbox_purge_replies_batch(st, r->o.before_ms, &lim, &r->cursor, &a, &more);
        r->n.replies += a;
        break;
    case PH_EVENTS:
        err = obx_store_inbox_purge_events_batch(st, r->o.before_ms, r->o.hashes_before_ms, &lim,
                                                 &r->cursor, &a, &b, &more);
        r->n.event_bodies += a;
        r->n.event_hashes += b;
        break;
    case PH_SEAL:
        err = obx_audit_seal(st, r->o.batch_rows, &a);
        r->n.audit_sealed += a;
        more = a == r->o.batch_rows;
        break;
    case PH_PRUNE_SCAN:
        /* Audit rows are read and deleted by id range, cheaper per row than a message
         * and its cascade: a step takes more of them for the same time. */
        err = obx_audit_prune_scan(st, r->o.before_ms, r->o.batch_rows * 4, &r->prune, &more);
        break;
    case PH_PRUNE:
        err = obx_audit_prune_batch(st, &r->prune, r->o.batch_rows * 4, &a, &more);
        r->n.audit_rows += a;
        break;
    default: *done = 1; return OBX_OK;
    }
    if (err != OBX_OK)
        return err;
    r->n.steps++;
    if (!more)
        advance(r);
    *done = r->phase == PH_DONE;
    return OBX_OK;
}
