/*
 * store_pg_inbox: Partoo's webhooks on PostgreSQL (issue 15): the store calls of serve's
 * webhook path (lib/webhook.c, lib/reconcile.c) and of the reply relay (lib/inbox.c), with
 * the items and results of their SQLite counterparts (store_inbox.h, which hands its calls
 * here for a PostgreSQL store), on the tables of migrations/postgresql/0006_webhooks.
 * The confirmation itself, a write of outbox, is store_pg.c's (obx_store_pg_confirm), the
 * readonly flag store_pg_tenant.c's.
 */
#ifndef OBX_STORE_PG_INBOX_H
#define OBX_STORE_PG_INBOX_H

#include "store_inbox.h"

OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_add_event(struct obx_store *st, const char *sha256,
                                                         const void *body, size_t len,
                                                         int64_t received_at_ms,
                                                         int64_t *id /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_pending_events(
    struct obx_store *st, int max, struct obx_stored_event *out /* OUT */, size_t *n /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_has_backlog(struct obx_store *st,
                                                           int *backlog /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_mark_event(struct obx_store *st, int64_t id,
                                                          const char *event_type,
                                                          const char *partoo_message_id,
                                                          const char *outcome);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_add_reply(struct obx_store *st,
                                                         const struct obx_new_reply *r,
                                                         int *added /* OUT */);

/* The relay of replies (lib/inbox.c), as their SQLite counterparts in store_inbox.h. */
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_lease_due(struct obx_store *st, int64_t lease_ms,
                                                         int64_t *id /* OUT */);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_mark_delivered(struct obx_store *st, int64_t id,
                                                              int http_status, int64_t at_ms);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_mark_retry(struct obx_store *st, int64_t id,
                                                          int http_status, const char *error,
                                                          int64_t next_attempt_at_ms, int give_up);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_fail(struct obx_store *st, int64_t id,
                                                    const char *reason);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_ack(struct obx_store *st, int64_t id);

/*
 * Retention's batches on PostgreSQL (store_inbox.h's purge_replies_batch and
 * purge_events_batch: the same rules), each one transaction of one statement over up to rows
 * rows after *cursor, which moves past them.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_purge_replies(struct obx_store *st,
                                                             int64_t before_ms, int rows,
                                                             int64_t *cursor, int64_t *deleted,
                                                             int *more);
OBX_MUST_CHECK enum obx_err obx_store_pg_inbox_purge_events(struct obx_store *st, int64_t before_ms,
                                                            int64_t hashes_before_ms, int rows,
                                                            int64_t *cursor, int64_t *bodies,
                                                            int64_t *hashes, int *more);

#endif
