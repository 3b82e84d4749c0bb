/*
 * view: renders store rows as JSON (SPEC §9 shapes), shared by the CLI's --json
 * output and the producer API so both speak exactly the same format.
 */
#ifndef OBX_VIEW_H
#define OBX_VIEW_H

#include "buf.h"
#include "query.h"
#include "store_pg.h"
#include "store_tenant.h"
#include "store_tenant_stats.h"

/* Appends a message object (SPEC §9 field names, times RFC 3339 UTC with ms). */
OBX_MUST_CHECK enum obx_err obx_view_message(struct obx_buf *b, const struct obx_row *r);
OBX_MUST_CHECK enum obx_err obx_view_transition(struct obx_buf *b,
                                                const struct obx_transition_row *t);
OBX_MUST_CHECK enum obx_err obx_view_attempt(struct obx_buf *b, const struct obx_attempt_row *a);

/* Extra figures for the stats document that the store does not know. */
struct obx_view_stats_extra {
    int64_t now_ms;
    double send_rate_per_min;
    const char *paused_reason; /* NULL = not paused */
    int64_t paused_until_ms;
    int64_t webhooks_rejected_signature; /* since serve started (obx_query_webhook_rejections) */
    int64_t webhooks_rejected_too_large;
    /* SPEC §11: the tenants (finished: obx_store_tenant_stats_finish), NULL = no section, and
     * each channel's owner (obx_store_tenant_stats_owners), NULL = every channel shows the
     * top-level pause. With owners a channel shows its tenant's pause. */
    const struct obx_tenant_stats_set *tenants;
    const char *channel_owners;
};

/* Appends the `status --json` / GET /v1/stats document. */
OBX_MUST_CHECK enum obx_err obx_view_stats(struct obx_buf *b, const struct obx_channel_stats *c,
                                           size_t n, const struct obx_view_stats_extra *x);

/*
 * Appends the full document of one message (SPEC §9: the message plus its
 * `transitions` and `attempts_log` arrays). OBX_ENOTFOUND when absent.
 */
OBX_MUST_CHECK enum obx_err obx_view_message_document(struct obx_store *st, const char *channel_id,
                                                      const char *external_message_id,
                                                      struct obx_buf *b);

/* Appends an inbox reply (also the body relayed to inbox_url). */
OBX_MUST_CHECK enum obx_err obx_view_inbox(struct obx_buf *b, const struct obx_inbox_row *r);

/* Appends a JSON string or null. */
OBX_MUST_CHECK enum obx_err obx_view_str_or_null(struct obx_buf *b, const char *s);
/* Appends an RFC 3339 time string, or null for 0. */
OBX_MUST_CHECK enum obx_err obx_view_time_or_null(struct obx_buf *b, int64_t at_ms);

/*
 * Appends a tenant (SPEC §11): {"tenant","key_fingerprint","key_sealed","rate_limit_per_min",
 * "rate_burst","partoo_base_url","channels":[{"channel_id","readonly"}],"created_at",
 * "updated_at"}; null stands for "the configured one". Never the key: the row has none.
 * Shared by `outbox tenant ls --json` and /v1/tenants.
 */
OBX_MUST_CHECK enum obx_err obx_view_tenant(struct obx_buf *b, const struct obx_tenant_row *t);

/*
 * Appends a serve node of a PostgreSQL outbox (SPEC §12): {"name","live","beat_age_ms",
 * "tenants":[{"tenant","epoch"}]}. Shared by `outbox status --json` and /v1/nodes.
 */
OBX_MUST_CHECK enum obx_err obx_view_node(struct obx_buf *b, const struct obx_store_pg_node_row *n);

#endif
