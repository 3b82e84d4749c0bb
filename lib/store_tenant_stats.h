/*
 * store_tenant_stats: the tenants section of `status --json`, GET /v1/stats and /metrics
 * (SPEC §11). Reads only: per-tenant message counts come from the kept per-channel counts
 * (state_counts) joined with tenant_channels, never from a COUNT over outbox, so the cost
 * grows with channels, not messages. A channel no tenant owns counts for the implicit
 * tenant "default". Pause and send rate are not in the database: serve takes them from its
 * worker, `status` from what serve publishes (obx_store_tenant_stats_publishable) and from
 * the attempts of the last minute.
 */
#ifndef OBX_STORE_TENANT_STATS_H
#define OBX_STORE_TENANT_STATS_H

#include "buf.h"
#include "query.h"
#include "store.h"
#include "store_tenant.h"

#define OBX_TENANT_STATS_MAX 1000         /* tenants in one stats document (by backlog) */
#define OBX_TENANT_STATS_CHANNELS_MAX 100 /* channels listed per tenant in it */
#define OBX_TENANT_STATS_PUBLISH_MAX 8192 /* bytes of the paused tenants serve publishes */

/*
 * The service_state key under which serve publishes its paused tenants for `status`, a JSON
 * array [{"tenant","reason","until_ms"}] of at most OBX_TENANT_STATS_PUBLISH_MAX bytes (the
 * tenants that do not fit are left out), written when the set of names and reasons changes
 * and with the heartbeat.
 */
#define OBX_STATE_TENANTS_PAUSED "tenants_paused"

struct obx_tenant_stats {
    char name[OBX_TENANT_NAME_MAX + 1];
    int is_default;
    int64_t counts[6];         /* indexed by enum obx_state */
    double rate_limit_per_min; /* the registered one, 0 = the configured one */
    /* filled by the caller (worker or published state), not by the store: */
    int64_t send_rate_per_min;
    int64_t sent_total;      /* requests sent since serve started (serve only) */
    char paused_reason[32];  /* "" = not paused */
    int64_t paused_until_ms; /* 0 = unknown */
    int no_key;              /* the default tenant has no key (paused "no_key") */
    char **channels;         /* owned channels (default: unowned ones with messages), sorted */
    size_t nchannels;
    int channels_truncated; /* more than OBX_TENANT_STATS_CHANNELS_MAX */
};

struct obx_tenant_stats_set {
    struct obx_tenant_stats *v; /* the default tenant first until obx_..._finish sorts */
    size_t n;
    int by_name; /* v[0] the default tenant, the others by name (collect, until finish) */
};

/*
 * Every tenant of the registry and the default one (v[0]), with counts, registered pace
 * and channels. Release with obx_store_tenant_stats_release.
 */
OBX_MUST_CHECK enum obx_err obx_store_tenant_stats_collect(
    struct obx_store *st, struct obx_tenant_stats_set *out /* OUT */);

void obx_store_tenant_stats_release(struct obx_tenant_stats_set *s);

/* The tenant named, or NULL. */
const struct obx_tenant_stats *obx_store_tenant_stats_find(const struct obx_tenant_stats_set *s,
                                                           const char *name);

/*
 * Drops the default tenant when it neither has a key nor serves a channel (it does not
 * exist then), and sorts: paused first, then by backlog (queued + sending), then by name.
 */
void obx_store_tenant_stats_finish(struct obx_tenant_stats_set *s);

/*
 * The owner of each channel of c (n entries): tenant[i] gets the tenant's name, or "" for
 * a channel no tenant owns. tenant is n * (OBX_TENANT_NAME_MAX + 1) bytes.
 */
OBX_MUST_CHECK enum obx_err obx_store_tenant_stats_owners(struct obx_store *st,
                                                          const struct obx_channel_stats *c,
                                                          size_t n, char *tenant /* OUT */);

/* Applies a published array to s (tenants it does not name are not paused). */
void obx_store_tenant_stats_apply_published(struct obx_tenant_stats_set *s, const char *json);

#endif
