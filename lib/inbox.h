/*
 * inbox: the replies written by Partoo users, and their delivery to the
 * producer's system.
 *
 *   pending --relay 2xx--> delivered --ack--> acked
 *      |  `--relay non-2xx: retry with backoff; max_attempts--> failed
 *      `--ack (pulled with GET /v1/inbox)--> acked
 *
 * With inbox_url set, the relay POSTs each reply as JSON with the header
 * `Idempotency-Key: partoo-<partoo message id>` and retries like message
 * delivery (full-jitter backoff, Retry-After floor). Without it, replies wait
 * to be pulled and acknowledged over the producer API.
 */
#ifndef OBX_INBOX_H
#define OBX_INBOX_H

#include <event2/event.h>

#include "config.h"
#include "store.h"

struct obx_inbox;

struct obx_storeq;

/*
 * Creates the relay (idle when cfg->inbox_url is NULL). st (read from), q (the store thread,
 * written through) and cfg are borrowed.
 */
OBX_MUST_CHECK enum obx_err obx_inbox_new(struct event_base *base, struct obx_store *st,
                                          struct obx_storeq *q, const struct obx_config *cfg,
                                          struct obx_inbox **out /* OUT */);
void obx_inbox_free(struct obx_inbox *ib);
void obx_inbox_reload(struct obx_inbox *ib, const struct obx_config *cfg);

/* New replies were stored: relay them now. */
void obx_inbox_notify(struct obx_inbox *ib);

/* Acknowledges a reply (pending or delivered -> acked). OBX_ENOTFOUND when absent. */
OBX_MUST_CHECK enum obx_err obx_inbox_ack(struct obx_store *st, int64_t id);

#endif
