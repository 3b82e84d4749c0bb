/*
 * reconcile: interprets stored webhook events (SPEC §4), after they were
 * committed and answered:
 *   - message_created / message_updated carrying one of our keys -> the message is
 *     confirmed with Partoo's id and status (obx_store_confirm);
 *   - a message by a Partoo user (sender_type User, no external id) in a
 *     conversation of a bidirectional custom channel -> a reply in the inbox;
 *   - anything else (echo without a match, other types, unknown fields) is kept
 *     and marked, never an error.
 * Because it works from the stored row, a crash between the 200 and this step
 * loses nothing: pending events are processed at the next start.
 */
#ifndef OBX_RECONCILE_H
#define OBX_RECONCILE_H

#include "config.h"
#include "store.h"

struct obx_reconcile_result {
    int processed;
    int confirmed;
    int replies;   /* new inbox rows */
    int unmatched; /* carried an external id we do not have (or an ambiguous one) */
    int ignored;   /* other types, echoes of non-ours, read-only channels, ... */
    int unparsable;
};

/* One stored event: its row id and raw body (borrowed). */
struct obx_reconcile_event {
    int64_t id;
    const char *body;
    size_t len;
};

/*
 * Processes up to max unprocessed events, oldest first, in one transaction.
 * cfg is read for readonly_channels and JSON limits. *r (may be NULL) is
 * filled only on success.
 */
OBX_MUST_CHECK enum obx_err obx_reconcile_run(struct obx_store *st, const struct obx_config *cfg,
                                              int max, struct obx_reconcile_result *r /* OUT */);

/*
 * Interprets the given stored, unprocessed events inside the caller's open
 * transaction, adding to *r. On error the caller rolls back (to a savepoint): the
 * events stay unprocessed for obx_reconcile_run.
 */
OBX_MUST_CHECK enum obx_err obx_reconcile_events(struct obx_store *st, const struct obx_config *cfg,
                                                 const struct obx_reconcile_event *ev, size_t n,
                                                 struct obx_reconcile_result *r /* IN/OUT */);

/*
 * *backlog = 1 when some stored event is still unprocessed. Newer events are
 * interpreted inline only when there is none, so events are applied in the order
 * they were stored.
 */
OBX_MUST_CHECK enum obx_err obx_reconcile_has_backlog(struct obx_store *st, int *backlog /* OUT */);

#endif
