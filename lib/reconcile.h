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
    int replies;    /* new inbox rows */
    int unmatched;  /* carried an external id we do not have (or an ambiguous one) */
    int ignored;    /* other types, echoes of non-ours, read-only channels, ... */
    int unparsable;
};

/*
 * Processes up to max unprocessed events, oldest first, in one transaction.
 * cfg is read for readonly_channels and JSON limits. *r (may be NULL) is
 * filled only on success.
 */
OBX_MUST_CHECK enum obx_err obx_reconcile_run(struct obx_store *st, const struct obx_config *cfg,
                                              int max,
                                              struct obx_reconcile_result *r /* OUT */);

#endif
