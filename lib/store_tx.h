/*
 * store_tx: transactions over the store for modules that group several store calls into
 * one unit (reconcile, audit) without reaching into the database below it.
 */
#ifndef OBX_STORE_TX_H
#define OBX_STORE_TX_H

#include "store.h"

/* Starts a write transaction (the write lock up front, so busy shows at the start). */
OBX_MUST_CHECK enum obx_err obx_store_tx_begin(struct obx_store *st);

/*
 * Ends the write transaction by how its work went: commits when err is OBX_OK (and returns
 * the commit's result), rolls back otherwise (and returns err).
 */
OBX_MUST_CHECK enum obx_err obx_store_tx_end(struct obx_store *st, enum obx_err err);

/* Starts a read transaction: the reads until obx_store_tx_read_end see one snapshot. */
OBX_MUST_CHECK enum obx_err obx_store_tx_read_begin(struct obx_store *st);

/* Ends a read transaction (nothing to lose: only whether it could be ended is returned). */
OBX_MUST_CHECK enum obx_err obx_store_tx_read_end(struct obx_store *st);

/*
 * A savepoint inside the open write transaction: work after it can be undone alone (e.g. a
 * webhook's interpretation, while the stored events commit). One level.
 */
OBX_MUST_CHECK enum obx_err obx_store_tx_savepoint(struct obx_store *st);

/*
 * Ends the savepoint by how the work after it went: kept when err is OBX_OK, undone
 * otherwise. Returns OBX_OK when the savepoint was ended as asked (either way), else the
 * savepoint's own error (then the whole transaction should be rolled back).
 */
OBX_MUST_CHECK enum obx_err obx_store_tx_savepoint_end(struct obx_store *st, enum obx_err err);

#endif
