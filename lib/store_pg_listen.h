/*
 * store_pg_listen: serve's ear on PostgreSQL (SPEC §12: a producer's committed INSERT is
 * seen within 1 s). A connection of its own LISTENs on "<schema>.outbox", which the
 * schema's trigger notifies at every COMMIT that inserted rows (never for a rolled-back
 * one), and the event loop reads it without blocking. When the connection drops, the
 * callback runs (the caller claims at once: what was notified meanwhile is lost) and the
 * listener connects again every second; the caller's own polling covers that gap.
 * Loop thread only.
 */
#ifndef OBX_STORE_PG_LISTEN_H
#define OBX_STORE_PG_LISTEN_H

#include <event2/event.h>

#include "outbox.h"

struct obx_store_pg_listen;

/* Rows may have been committed (or the listener reconnected): look for due messages. */
typedef void (*obx_store_pg_listen_fn)(void *ctx);

/*
 * A channel or a tenant (scope OBX_PAUSE_CHANNEL or OBX_PAUSE_TENANT) was paused on some
 * node (0010's and 0012's trigger): give back what was claimed ahead for it. scope and key
 * NULL: the listener is back after a while away and may have missed pauses: look up the
 * open ones (the claim skipped them all along; only what was claimed ahead may still go).
 */
typedef void (*obx_store_pg_pause_fn)(void *ctx, const char *scope, const char *key);

/*
 * Connects (blocking: call it at start-up), LISTENs, and watches the connection on base.
 * uri and schema are copied. On failure errmsg gets libpq's reason.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_listen_new(struct event_base *base, const char *uri,
                                                    const char *schema, obx_store_pg_listen_fn fn,
                                                    obx_store_pg_pause_fn pause_fn, void *ctx,
                                                    struct obx_store_pg_listen **out /* OUT */,
                                                    char *errmsg, size_t n);
void obx_store_pg_listen_free(struct obx_store_pg_listen *l);

/* Notifications received since start (for tests and stats). */
int64_t obx_store_pg_listen_count(const struct obx_store_pg_listen *l);

#endif
