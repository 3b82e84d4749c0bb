/*
 * server: composes the daemon: one libevent loop holding the delivery worker, the
 * producer API and webhook listeners, the store thread every write goes through
 * (store_queue.h), the signals (SIGTERM/SIGINT drain and exit, SIGHUP reload) and the
 * single-instance lock.
 */
#ifndef OBX_SERVER_H
#define OBX_SERVER_H

#include "config.h"

/*
 * Loads a fresh configuration for SIGHUP into *out (initialised by the callee).
 * Returns OBX_OK, or an error after writing a message to err.
 */
typedef enum obx_err (*obx_reload_fn)(void *ctx, struct obx_config *out, struct obx_buf *err);

/*
 * Runs the daemon until SIGTERM/SIGINT, then drains and returns. cfg is moved
 * into the server (the caller must not release it). Returns OBX_OK on a clean
 * shutdown, or the start-up error after logging it.
 */
OBX_MUST_CHECK enum obx_err obx_server_run(struct obx_config *cfg, obx_reload_fn reload,
                                           void *reload_ctx);

#endif
