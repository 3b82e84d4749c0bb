/*
 * store_pg_import: moves a SQLite outbox into an empty PostgreSQL schema (`outbox migrate-to`,
 * SPEC §12): every message with its id, state and counters, its transitions and attempts,
 * the pauses (in force and past) and their audit events, the audit chain (seals,
 * checkpoints, keyed segments, legacy rows and each message's sent hash), the webhook
 * events, the replies and the tenants, in one PostgreSQL transaction of COPYs. It is the one writer
 * of every table of that schema for the length of that transaction, into a schema nothing else uses
 * yet; the tables' owners (docs/architecture.md) write them from then on.
 *
 * Before it commits, it verifies the moved audit chain on PostgreSQL and compares the head
 * with the source's: the same last row and hash, the same number of events, or nothing is
 * committed. Left behind: what is derived or passing (SQLite's counts and per-minute stats,
 * serve's state), and the conversations' links, which become PostgreSQL's places in line
 * (head and conv_seq) in the same order.
 */
#ifndef OBX_STORE_PG_IMPORT_H
#define OBX_STORE_PG_IMPORT_H

#include "audit.h"
#include "store.h"

/* Rows moved, per table. */
struct obx_store_pg_import_counts {
    int64_t messages, transitions, attempts, actions, pauses;
    int64_t seals, legacy_rows, audit_messages;
    int64_t webhook_events, replies, tenants, tenant_channels;
};

/*
 * Moves src (SQLite, read in one snapshot) into dst (PostgreSQL, its schema migrated and
 * empty: no message, event, pause, seal, webhook event, reply or tenant, and no node alive).
 * src_report: obx_audit_verify's verdict on src, which must verify and have no unsealed
 * row; the chain moved must verify on dst to the same head. On an error nothing is written
 * and errmsg (n bytes) says why: OBX_ECONFLICT (dst not empty, a node alive, or src's
 * chain not sealed), OBX_EINVAL (the chains differ), else the database's error.
 */
OBX_MUST_CHECK enum obx_err obx_store_pg_import(struct obx_store *src, struct obx_store *dst,
                                                const struct obx_audit_report *src_report,
                                                struct obx_store_pg_import_counts *out,
                                                char *errmsg, size_t n);

#endif
