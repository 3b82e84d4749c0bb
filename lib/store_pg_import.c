/* store_pg_import: a SQLite outbox into an empty PostgreSQL schema (store_pg_import.h). */
#include "store_pg_import.h"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "pg.h"
#include "store_tx.h"

/* Blobs go to bytea in its hex form ('\x' then the digits; NULL stays NULL). */
#define HEX(col) "CASE WHEN " col " IS NULL THEN NULL ELSE '\\x' || lower(hex(" col ")) END"

/*
 * A conversation's line on SQLite is a chain of links (outbox.prev_id, from the head); on
 * PostgreSQL it is the order of conv_seq, with `head` on the first. The unfinished messages
 * are numbered in line order (linked ones by their depth in the chain, then those a
 * producer's INSERT left unlinked, by id) after every id, so that the line keeps its order
 * and the numbers PostgreSQL gives later come after them.
 */
static const char SQL_OUTBOX[] =
    "WITH RECURSIVE line(id, depth) AS ("
    "  SELECT id, 0 FROM outbox WHERE state IN ('queued', 'sending') AND head = 1"
    "  UNION ALL SELECT o.id, l.depth + 1 FROM line l JOIN outbox o ON o.prev_id = l.id"
    "  WHERE o.state IN ('queued', 'sending') AND o.head = 0),"
    " place AS (SELECT o.id,"
    "  row_number() OVER (PARTITION BY o.channel_id, o.external_conversation_id"
    "                     ORDER BY l.depth IS NULL, l.depth, o.id) AS rank,"
    "  row_number() OVER (ORDER BY o.channel_id, o.external_conversation_id, l.depth IS NULL,"
    "                     l.depth, o.id) AS seq"
    "  FROM outbox o LEFT JOIN line l ON l.id = o.id WHERE o.state IN ('queued', 'sending'))"
    " SELECT o.id, o.channel_id, o.external_message_id, o.business_id,"
    " o.external_conversation_id, o.content, o.sender_type, o.consumer_name, o.consumer_image,"
    " o.priority, o.state, o.state_reason, o.state_at_ms, o.attempts, o.counted_attempts,"
    " o.next_attempt_at_ms, o.lease_token, o.lease_expires_at_ms, o.created_at_ms,"
    " o.accepted_at_ms, o.confirmed_at_ms, o.resends, o.last_http_status, o.last_error,"
    " o.partoo_message_id, o.partoo_status, o.unconfirmed_at_ms, o.confirm_due_at_ms, o.tenant,"
    " coalesce(p.rank = 1, 0),"
    " CASE WHEN p.id IS NULL THEN o.id ELSE (SELECT max(id) FROM outbox) + p.seq END"
    " FROM outbox o LEFT JOIN place p ON p.id = o.id ORDER BY o.id";

/* One table: what to read from SQLite, in the COPY's column order, and where it goes. */
struct table_move {
    const char *select;
    const char *copy;
    long count; /* offset of its counter in struct obx_store_pg_import_counts; -1: none */
};

#define COUNT(f) ((long)offsetof(struct obx_store_pg_import_counts, f))

/* In dependency order (inbox rows name their webhook event). Events keep their ids and get
 * xact 0: the seals brought cover them by id (0009_audit.sql). */
static const struct table_move tables[] = {
    {"SELECT name, " HEX(
         "api_key") ", key_sealed, key_fingerprint, rate_limit_per_min,"
                    " rate_burst, partoo_base_url, created_at_ms, updated_at_ms FROM tenants",
     "COPY tenants (name, api_key, key_sealed, key_fingerprint, rate_limit_per_min, rate_burst,"
     " partoo_base_url, created_at_ms, updated_at_ms) FROM STDIN",
     COUNT(tenants)},
    {"SELECT channel_id, tenant, readonly FROM tenant_channels",
     "COPY tenant_channels (channel_id, tenant, readonly) FROM STDIN", COUNT(tenant_channels)},
    {SQL_OUTBOX,
     "COPY outbox (id, channel_id, external_message_id, business_id, external_conversation_id,"
     " content, sender_type, consumer_name, consumer_image, priority, state, state_reason,"
     " state_at_ms, attempts, counted_attempts, next_attempt_at_ms, lease_token,"
     " lease_expires_at_ms, created_at_ms, accepted_at_ms, confirmed_at_ms, resends,"
     " last_http_status, last_error, partoo_message_id, partoo_status, unconfirmed_at_ms,"
     " confirm_due_at_ms, tenant, head, conv_seq) FROM STDIN",
     COUNT(messages)},
    {"SELECT id, message_id, at_ms, from_state, to_state, reason, '0' FROM transitions"
     " ORDER BY id",
     "COPY transitions (id, message_id, at_ms, from_state, to_state, reason, xact) FROM STDIN",
     COUNT(transitions)},
    {"SELECT id, message_id, started_at_ms, duration_ms, http_status, outcome, error,"
     " response_excerpt, '0' FROM attempts ORDER BY id",
     "COPY attempts (id, message_id, started_at_ms, duration_ms, http_status, outcome, error,"
     " response_excerpt, xact) FROM STDIN",
     COUNT(attempts)},
    {"SELECT id, scope, key, reason, by, paused_at_ms, resumed_at_ms FROM pauses ORDER BY id",
     "COPY pauses (id, scope, key, reason, by, paused_at_ms, resumed_at_ms) FROM STDIN",
     COUNT(pauses)},
    {"SELECT id, at_ms, action, scope, key, reason, by, '0' FROM actions ORDER BY id",
     "COPY actions (id, at_ms, action, scope, key, reason, by, xact) FROM STDIN", COUNT(actions)},
    {"SELECT message_id, channel_id, external_message_id, " HEX(
         "sent_sha256") " FROM audit_messages",
     "COPY audit_messages (message_id, channel_id, external_message_id, sent_sha256) FROM STDIN",
     COUNT(audit_messages)},
    /* The schema's own base row (id 0) stands for SQLite's when that one is id 0 too. */
    {"SELECT id, transitions_upto, attempts_upto, actions_upto, '0', events, at_ms, hash"
     " FROM audit_seals WHERE id <> 0 ORDER BY id",
     "COPY audit_seals (id, transitions_upto, attempts_upto, actions_upto, xact_upto, events,"
     " at_ms, hash) FROM STDIN",
     COUNT(seals)},
    {"SELECT id, upto_id, hash, created_at_ms FROM audit_checkpoints",
     "COPY audit_checkpoints (id, upto_id, hash, created_at_ms) FROM STDIN", -1},
    {"SELECT id, from_id, mode, key_id, mac, created_at_ms FROM audit_chain_modes",
     "COPY audit_chain_modes (id, from_id, mode, key_id, mac, created_at_ms) FROM STDIN", -1},
    {"SELECT id, at_ms, kind, channel_id, external_message_id, record, hash FROM audit_log"
     " ORDER BY id",
     "COPY audit_log (id, at_ms, kind, channel_id, external_message_id, record, hash) FROM STDIN",
     COUNT(legacy_rows)},
    {"SELECT id, body_sha256, received_at_ms, " HEX(
         "body") ", event_type, partoo_message_id,"
                 " processed_at_ms, outcome FROM webhook_events ORDER BY id",
     "COPY webhook_events (id, body_sha256, received_at_ms, body, event_type, partoo_message_id,"
     " processed_at_ms, outcome) FROM STDIN",
     COUNT(webhook_events)},
    {"SELECT id, partoo_message_id, event_id, channel_id, external_conversation_id,"
     " partoo_conversation_id, business_id, sender_type, sender_label, content_type, content,"
     " message_date, received_at_ms, state, attempts, next_attempt_at_ms, last_http_status,"
     " last_error, delivered_at_ms, acked_at_ms FROM inbox ORDER BY id",
     "COPY inbox (id, partoo_message_id, event_id, channel_id, external_conversation_id,"
     " partoo_conversation_id, business_id, sender_type, sender_label, content_type, content,"
     " message_date, received_at_ms, state, attempts, next_attempt_at_ms, last_http_status,"
     " last_error, delivered_at_ms, acked_at_ms) FROM STDIN",
     COUNT(replies)},
};
#define N_TABLES (sizeof tables / sizeof tables[0])

/* The sequences that give ids after the move: past every id moved (and every conv_seq). */
static const char SQL_SEQUENCES[] =
    "SELECT setval('outbox_id_seq', greatest((SELECT max(id) FROM outbox),"
    "              (SELECT max(conv_seq) FROM outbox), 1));"
    "SELECT setval(pg_get_serial_sequence(t, 'id'), m) FROM (VALUES"
    " ('transitions', (SELECT max(id) FROM transitions)),"
    " ('attempts', (SELECT max(id) FROM attempts)),"
    " ('actions', (SELECT max(id) FROM actions)),"
    " ('pauses', (SELECT max(id) FROM pauses)),"
    " ('webhook_events', (SELECT max(id) FROM webhook_events)),"
    " ('inbox', (SELECT max(id) FROM inbox)),"
    " ('audit_checkpoints', (SELECT max(id) FROM audit_checkpoints)),"
    " ('audit_chain_modes', (SELECT max(id) FROM audit_chain_modes))) AS s(t, m)"
    " WHERE m IS NOT NULL";

/* What must hold on PostgreSQL before anything is moved: 0 = nothing there, no node alive. */
static const char SQL_DST_IN_USE[] =
    "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM transitions)"
    " + (SELECT count(*) FROM attempts) + (SELECT count(*) FROM actions)"
    " + (SELECT count(*) FROM pauses)"
    " + (SELECT count(*) FROM audit_seals WHERE id <> 0) + (SELECT count(*) FROM audit_log)"
    " + (SELECT count(*) FROM webhook_events) + (SELECT count(*) FROM inbox)"
    " + (SELECT count(*) FROM tenants) + (SELECT count(*) FROM tenant_channels),"
    " (SELECT count(*) FROM nodes WHERE expires_at_ms > outbox_now_ms())";

/* Copies one table; *rows counts what was sent. */
static enum obx_err
move_table(struct obx_store *src, struct obx_store *dst, const struct table_move *t,
           struct obx_buf *b, int64_t *rows)
{
    sqlite3_stmt *s = obx_db_stmt(src->db, t->select);
    enum obx_err err = s ? obx_pg_copy_begin(dst->pg, t->copy) : OBX_EDB;
    int rc = SQLITE_DONE;

    *rows = 0;
    if (!s || err != OBX_OK)
        return err;
    while (err == OBX_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *v[32];
        int n = sqlite3_column_count(s);
        for (int i = 0; i < n && i < 32; i++)
            v[i] = (const char *)sqlite3_column_text(s, i);
        err = obx_pg_copy_row(dst->pg, b, n < 32 ? n : 32, v);
        (*rows)++;
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = OBX_EDB;
    return obx_pg_copy_end(dst->pg, b, err);
}

/* Refuses a destination in use and a source that cannot be moved as it is. */
static enum obx_err
check_both(struct obx_store *dst, const struct obx_audit_report *r, char *errmsg, size_t n)
{
    PGresult *res = obx_pg_run(dst->pg, SQL_DST_IN_USE, 0, NULL, NULL, NULL);

    if (!res) {
        snprintf(errmsg, n, "%s", obx_pg_errmsg(dst->pg));
        return OBX_EDB;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "0") != 0)
        snprintf(errmsg, n,
                 "the PostgreSQL schema is not empty (%s rows of messages, events, "
                 "seals, webhook events, replies or tenants): move into a new schema",
                 PQgetvalue(res, 0, 0));
    else if (strcmp(PQgetvalue(res, 0, 1), "0") != 0)
        snprintf(errmsg, n, "%s serve node(s) run on the PostgreSQL schema: stop them first",
                 PQgetvalue(res, 0, 1));
    PQclear(res);
    if (errmsg[0])
        return OBX_ECONFLICT;
    if (r->first_bad_id || r->unsealed)
        snprintf(errmsg, n, "the SQLite outbox's audit chain %s: nothing moved",
                 r->first_bad_id ? "does not verify" : "has rows not sealed yet");
    return errmsg[0] ? OBX_ECONFLICT : OBX_OK;
}

/* The moved chain, verified on PostgreSQL, must end where the source's ends. */
static enum obx_err
check_chain(struct obx_store *dst, const struct obx_audit_report *src, char *errmsg, size_t n)
{
    struct obx_audit_report r;
    enum obx_err err = obx_audit_verify(dst, &r);

    if (err != OBX_OK)
        snprintf(errmsg, n, "cannot verify the moved audit chain: %s", obx_pg_errmsg(dst->pg));
    else if (r.first_bad_id || r.checked != src->checked || r.head_id != src->head_id ||
             strcmp(r.head_hash, src->head_hash) != 0) {
        snprintf(errmsg, n,
                 "the moved audit chain does not match the source's (%lld rows to head row "
                 "%lld on PostgreSQL, %lld to row %lld on SQLite%s%s): nothing moved",
                 (long long)r.checked, (long long)r.head_id, (long long)src->checked,
                 (long long)src->head_id, r.first_bad_id ? "; " : "", r.problem);
        err = OBX_EINVAL;
    }
    return err;
}

enum obx_err
obx_store_pg_import(struct obx_store *src, struct obx_store *dst,
                    const struct obx_audit_report *src_report,
                    struct obx_store_pg_import_counts *out, char *errmsg, size_t n)
{
    struct obx_buf b;
    enum obx_err err;

    memset(out, 0, sizeof *out);
    errmsg[0] = '\0';
    if (!src->db || !dst->pg)
        return OBX_EINVAL;
    obx_buf_init(&b, 64 * 1024 * 1024);
    err = obx_store_tx_read_begin(src);
    if (err == OBX_OK)
        err = obx_pg_group_begin(dst->pg);
    /* Producers wait for the move; the triggers that give ids and places are off for it. */
    if (err == OBX_OK)
        err = obx_pg_exec(dst->pg, "LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;"
                                   " ALTER TABLE outbox DISABLE TRIGGER outbox_order,"
                                   " DISABLE TRIGGER outbox_notify");
    if (err == OBX_OK)
        err = check_both(dst, src_report, errmsg, n);
    for (size_t i = 0; err == OBX_OK && i < N_TABLES; i++) {
        int64_t rows = 0;
        err = move_table(src, dst, &tables[i], &b, &rows);
        if (tables[i].count >= 0)
            *(int64_t *)((char *)out + tables[i].count) = rows;
    }
    if (err == OBX_OK)
        err = obx_pg_exec(dst->pg, SQL_SEQUENCES);
    if (err == OBX_OK)
        err = obx_pg_exec(dst->pg, "ALTER TABLE outbox ENABLE TRIGGER outbox_order,"
                                   " ENABLE TRIGGER outbox_notify");
    if (err == OBX_OK)
        err = check_chain(dst, src_report, errmsg, n);
    if (err == OBX_OK)
        err = obx_pg_group_commit(dst->pg);
    else
        obx_pg_group_abort(dst->pg);
    if (err != OBX_OK && !errmsg[0])
        snprintf(errmsg, n, "%s",
                 obx_pg_errmsg(dst->pg)[0] ? obx_pg_errmsg(dst->pg) : obx_strerror(err));
    if (obx_store_tx_read_end(src) != OBX_OK && err == OBX_OK)
        err = OBX_EDB;
    obx_buf_release(&b);
    return err;
}
