/*
 * store_pg_dash: channel pauses on PostgreSQL (0010: tables pauses, and actions, the audit
 * events of pauses and resumes), as store_dash.c on SQLite, which hands its calls here for a
 * PostgreSQL store. A pause notifies every node (0010's trigger); the claim skips a paused
 * channel and returns the time a message was held (lib/store_pg.c).
 */
#ifndef OBX_STORE_PG_DASH_H
#define OBX_STORE_PG_DASH_H

#include "store_dash.h"

OBX_MUST_CHECK enum obx_err obx_store_pg_dash_pause(struct obx_store *st, const char *scope,
                                                    const char *key, const char *reason,
                                                    const char *by, int *created);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_resume(struct obx_store *st, const char *scope,
                                                     const char *key, const char *by);
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_pauses(struct obx_store *st, obx_pause_fn fn,
                                                     void *ctx);

/* The audit prune's deletion of actions behind a checkpoint (store_pg_audit.c). */
OBX_MUST_CHECK enum obx_err obx_store_pg_dash_prune_actions(struct obx_store *st, int64_t xact_upto,
                                                            int64_t x_upto, int max,
                                                            int64_t *deleted);

#endif
