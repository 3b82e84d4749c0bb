/*
 * store_pg_nodes: this node's place among several `serve` processes on one PostgreSQL
 * database (SPEC §12; the SQL is migrations/postgresql/0002_nodes.sql). A thread of its own,
 * with a connection of its own, beats every beat_ms (node_beat) and spreads the tenants over
 * the live nodes (lease_rebalance); the loop learns what this node holds from
 * obx_store_pg_nodes_held, and is woken (the callback, on the loop) when that changed. The
 * event loop never waits for these round trips.
 *
 * A held tenant comes with its fencing epoch, for every write made for it
 * (struct obx_pg_fence), and with the monotonic time until which this node may still send
 * for it: the beat's start + node_lease - beat_ms. A node paused past that (SIGSTOP, a
 * stalled disk) stops sending by its own clock before another node can have taken over,
 * and the database refuses what it still tries to record.
 */
#ifndef OBX_STORE_PG_NODES_H
#define OBX_STORE_PG_NODES_H

#include <event2/event.h>

#include "outbox.h"

struct obx_store_pg_nodes;

struct obx_store_pg_nodes_opts {
    const char *uri, *schema; /* copied */
    const char *node;         /* this node's name (node_name), copied */
    int64_t lease_ms;         /* node_lease */
    int64_t beat_ms;          /* how often; 0: lease_ms / 3 */
};

/* One tenant this node holds. */
struct obx_store_pg_held {
    char tenant[65];
    int64_t epoch;
    int64_t until_mono_ms; /* send for it only before this (obx_mono_ms of the real clock) */
};

typedef void (*obx_store_pg_nodes_fn)(void *ctx);

/*
 * Starts the thread; the first beat happens at once. fn(ctx) runs on base's loop whenever
 * what this node holds changed. errmsg gets why it could not start.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_nodes_new(struct event_base *base,
                                                   const struct obx_store_pg_nodes_opts *o,
                                                   obx_store_pg_nodes_fn fn, void *ctx,
                                                   struct obx_store_pg_nodes **out /* OUT */,
                                                   char *errmsg, size_t n);

/* The tenants to spread over the nodes ("default" for the configured key); copied, used
 * from the next beat on. */
OBX_MUST_CHECK enum obx_err obx_store_pg_nodes_set_tenants(struct obx_store_pg_nodes *nd,
                                                           const char *const *tenants,
                                                           size_t count);

/* Copies up to max of the tenants held now into out; returns how many it holds. */
size_t obx_store_pg_nodes_held(struct obx_store_pg_nodes *nd,
                               struct obx_store_pg_held *out /* OUT, max */, size_t max);

/*
 * Until when this node may send for tenant under epoch (obx_mono_ms of the real clock), as
 * of the last beat that renewed it; 0 when it no longer holds it under that epoch. A beat
 * that renews a lease does not call the callback: a sender whose deadline passed asks here.
 */
int64_t obx_store_pg_nodes_until(struct obx_store_pg_nodes *nd, const char *tenant, int64_t epoch);

/*
 * Stops the thread. leave = 1: gives the tenants back at once (node_leave), for a clean
 * stop; 0: they move once the lease runs out, as after a crash.
 */
void obx_store_pg_nodes_free(struct obx_store_pg_nodes *nd, int leave);

#endif
