/*
 * store_pg_sealer: serve's audit sealer on PostgreSQL, a thread with a connection of its
 * own. On SQLite the sealer is one of cron's jobs on the store thread, which reads a local
 * file; on PostgreSQL that job fetched every new event over the network each second and
 * the store thread wrote no outcome meanwhile (22 % of the drain, docs/benchmarks.md). Here
 * sealing overlaps delivery. Every node runs one; they take turns (the sealers' lock,
 * store_pg_audit.c), so two never extend the chain from one seal.
 *
 * Shared state: `stopping` and the condition variable, under `lock`; everything else is the
 * thread's own (the loop only starts and stops it).
 */
#ifndef OBX_STORE_PG_SEALER_H
#define OBX_STORE_PG_SEALER_H

#include <stddef.h>

#include "outbox.h"

struct obx_store_pg_sealer;

/*
 * Connects (blocking: at start-up), takes audit_key_file's key when given (key_file may be
 * NULL), and starts the thread, which seals every second and again at once while a seal
 * was full. errmsg (n bytes) says why on failure; never the key.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_sealer_start(const char *uri, const char *schema,
                                                      const char *node, const char *key_file,
                                                      struct obx_store_pg_sealer **out,
                                                      char *errmsg, size_t n);

/* Stops the thread after the seal in progress (it commits or rolls back whole) and frees. */
void obx_store_pg_sealer_stop(struct obx_store_pg_sealer *s);

#endif
