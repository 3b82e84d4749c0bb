/*
 * sealer: serve's audit sealer, a thread with a database connection of its own, so that
 * sealing overlaps delivery instead of pausing the store thread.
 *
 * On PostgreSQL the thread seals on its own connection (obx_audit_seal): fetching every new
 * event over the network each second on the store thread stopped outcomes meanwhile (22 % of
 * the drain, docs/benchmarks.md). Every node runs one; they take turns (the sealers' lock,
 * store_pg_audit.c), so two never extend the chain from one seal.
 *
 * On SQLite the store thread is the one writer, so it does a seal's two short writes
 * (obx_audit_seal_prepare and _finish, as jobs it is handed); the thread reads and hashes
 * the events between them on a read-only connection of its own (WAL: it never waits for
 * the writer). That was ~9 % of the store thread with 2,000 tenants.
 *
 * Shared state: `stopping` and the condition variable, under `lock`; everything else is the
 * thread's own (the loop only starts and stops it).
 */
#ifndef OBX_SEALER_H
#define OBX_SEALER_H

#include <stddef.h>

#include "outbox.h"

struct obx_sealer;
struct obx_storeq;

/*
 * PostgreSQL: connects (blocking: at start-up), takes audit_key_file's key when given
 * (key_file may be NULL), and starts the thread, which seals every second and again at once
 * while a seal was full. errmsg (n bytes) says why on failure; never the key.
 */
OBX_MUST_CHECK enum obx_err obx_sealer_start_pg(const char *uri, const char *schema,
                                                const char *node, const char *key_file,
                                                struct obx_sealer **out, char *errmsg, size_t n);
/*
 * SQLite: opens a read-only connection to path, takes the key likewise, and starts the
 * thread, which hands prepare and finish to q's store thread. Stop it before freeing q.
 */
OBX_MUST_CHECK enum obx_err obx_sealer_start_sqlite(const char *path, struct obx_storeq *q,
                                                    const char *key_file, struct obx_sealer **out,
                                                    char *errmsg, size_t n);
/* Stops the thread after the seal in progress (it commits or rolls back whole) and frees. */
void obx_sealer_stop(struct obx_sealer *s);

#endif
