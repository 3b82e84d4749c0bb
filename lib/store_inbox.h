/*
 * store_inbox: the store's part for what Partoo sends us (SPEC §4): the webhook_events
 * table (verified bodies, then how reconcile interpreted them) and the inbox table (the
 * replies, and their relay to inbox_url). This module is the only writer of both tables
 * (docs/architecture.md, "Who owns which table"):
 *
 *   webhook_events: stored (obx_store_inbox_add_webhook_event) -> interpreted
 *                   (obx_store_inbox_mark_event) -> body dropped, then row deleted
 *                   (obx_store_inbox_purge_events_batch)
 *   inbox:          inserted pending (obx_store_inbox_add_reply) -> leased, delivered,
 *                   retried or failed (obx_store_inbox_lease_due, _mark_delivered,
 *                   _mark_retry, _fail) -> acked (obx_store_inbox_ack) -> purged
 *                   (obx_store_inbox_purge_replies_batch)
 *
 * obx_store_inbox_add_webhook_event, obx_store_inbox_purge_replies_batch and
 * obx_store_inbox_purge_events_batch are declared in store.h (their callers include it).
 * Writes run inside the caller's transaction when one is open (SQLite's autocommit
 * otherwise), except the purges, which open their own.
 */
#ifndef OBX_STORE_INBOX_H
#define OBX_STORE_INBOX_H

#include "store.h"

/* ---- webhook_events ----------------------------------------------------------------------- */

/* One stored, uninterpreted event: its row id and a copy of its raw body (owned). */
struct obx_stored_event {
    int64_t id;
    char *body; /* NUL-terminated copy; NULL for an empty body */
    size_t len;
};

/*
 * Copies up to max uninterpreted events, oldest first, into out (room for max); *n gets how
 * many. The copies are the caller's (obx_store_inbox_events_release), so the events can be
 * interpreted and marked while nothing of the read is still open.
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_pending_events(struct obx_store *st, int max,
                                                           struct obx_stored_event *out /* OUT */,
                                                           size_t *n /* OUT */);
/* Frees the bodies of n events filled by obx_store_inbox_pending_events. */
void obx_store_inbox_events_release(struct obx_stored_event *ev, size_t n);

/* *backlog = 1 when some stored event is not interpreted yet. */
OBX_MUST_CHECK enum obx_err obx_store_inbox_has_backlog(struct obx_store *st,
                                                        int *backlog /* OUT */);

/*
 * Marks event id interpreted now: its type and Partoo message id (NULL or "" = none) as
 * read from the body, and the outcome (confirmed, reply, unmatched, ignored, unparsable).
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_mark_event(struct obx_store *st, int64_t id,
                                                       const char *event_type,
                                                       const char *partoo_message_id,
                                                       const char *outcome);

/* ---- inbox -------------------------------------------------------------------------------- */

/* A reply read from an event (borrowed strings; NULL = absent, "" ids are stored as NULL). */
struct obx_new_reply {
    const char *partoo_message_id; /* required: the reply's key */
    int64_t event_id;              /* the webhook_events row it came from */
    const char *channel_id;
    const char *external_conversation_id;
    const char *partoo_conversation_id;
    const char *business_id;
    const char *sender_type;
    const char *sender_label;
    const char *content_type;
    const char *content;
    const char *message_date;
};

/*
 * Inserts a pending reply received now. *added = 0 when a reply with the same Partoo message
 * id is there already (a repeated event: nothing written).
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_add_reply(struct obx_store *st,
                                                      const struct obx_new_reply *r,
                                                      int *added /* OUT */);


/*
 * Takes the next due pending reply (due now or earlier, oldest due first) and pushes its due
 * time lease_ms ahead: a lease that survives a crash (the reply is relayed again after it).
 * *id = 0 when none is due.
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_lease_due(struct obx_store *st, int64_t lease_ms,
                                                      int64_t *id /* OUT */);

/* A pending reply was relayed (2xx, http_status) at at_ms: delivered, attempts + 1. */
OBX_MUST_CHECK enum obx_err obx_store_inbox_mark_delivered(struct obx_store *st, int64_t id,
                                                           int http_status, int64_t at_ms);

/*
 * A relay of a pending reply failed (http_status 0 = no answer; error: why): attempts + 1,
 * due again at next_attempt_at_ms, or failed when give_up.
 */
OBX_MUST_CHECK enum obx_err obx_store_inbox_mark_retry(struct obx_store *st, int64_t id,
                                                       int http_status, const char *error,
                                                       int64_t next_attempt_at_ms, int give_up);

/* A pending reply that can never be relayed: failed with reason, no attempt counted. */
OBX_MUST_CHECK enum obx_err obx_store_inbox_fail(struct obx_store *st, int64_t id,
                                                 const char *reason);

/* Acknowledges a reply (pending or delivered -> acked, now). OBX_ENOTFOUND when absent. */
OBX_MUST_CHECK enum obx_err obx_store_inbox_ack(struct obx_store *st, int64_t id);

#endif
