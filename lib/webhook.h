/*
 * webhook: the listener Partoo posts events to (webhook_listen, path
 * /webhooks/partoo[/<webhook_path_secret>]), separate from the producer API
 * because it is the one exposed to the internet (behind a TLS proxy).
 *
 * Order of checks, before anything is parsed or stored: path (404), method
 * (405), required header (401), body size (413), Ed25519 signature of the raw
 * body (401). A verified event is committed once (dedup by SHA-256 of the body)
 * and only then answered 200; a database error answers 503 so Partoo retries.
 * The signature is checked on worker threads (lib/verify_pool.c), everything
 * else on the loop. Events are interpreted (lib/reconcile.c) from what was
 * stored: in the storing transaction when nothing older waits, else later by
 * obx_reconcile_run; a failed interpretation never costs the event.
 */
#ifndef OBX_WEBHOOK_H
#define OBX_WEBHOOK_H

#include <event2/event.h>

#include "config.h"
#include "httpd.h"
#include "reconcile.h"
#include "store.h"

struct obx_webhook;

struct obx_webhook_stats {
    int64_t received;   /* requests on the listener */
    int64_t stored;     /* new events committed */
    int64_t duplicates; /* verified, byte-identical to a stored one */
    int64_t rejected_signature;
    int64_t rejected_too_large;  /* 413: over webhook_max_body_bytes */
    int64_t rejected_other;      /* path, method, header; malformed, late or shed (HTTP layer) */
    int64_t write_failures;      /* answered 503 */
    struct obx_httpd_stats http; /* what the HTTP layer answered itself (counted above too) */
};

/*
 * Called after each commit that stored new events: r holds what was interpreted
 * in that transaction; leftover = 1 when stored events still await
 * obx_reconcile_run.
 */
typedef void (*obx_webhook_stored_fn)(void *ctx, const struct obx_reconcile_result *r,
                                      int leftover);

struct obx_storeq;

/*
 * Listens on cfg->webhook_listen (at most max_connections open connections, 0: the
 * httpd default, bodies up to cfg->webhook_max_body_bytes), calling stored after each
 * commit that stored new events. q (the store thread) and cfg are borrowed.
 * OBX_ECONFIG for an unusable public key.
 */

OBX_MUST_CHECK enum obx_err obx_webhook_new(struct event_base *base, struct obx_storeq *q,
                                            const struct obx_config *cfg, size_t max_connections,
                                            obx_webhook_stored_fn stored, void *ctx,
                                            struct obx_webhook **out /* OUT */);
void obx_webhook_free(struct obx_webhook *wh);

/* New configuration: the key may change; an invalid key keeps the old one (logged). */
void obx_webhook_reload(struct obx_webhook *wh, const struct obx_config *cfg);

int obx_webhook_port(const struct obx_webhook *wh);
void obx_webhook_stats(const struct obx_webhook *wh, struct obx_webhook_stats *out /* OUT */);

#endif
