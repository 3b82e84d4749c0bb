/* store_audit: the audit chain's rows (see store_audit.h; the chain itself is in audit.h). */
#include "store_audit.h"

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "mem.h"
#include "store_dash.h"
#include "store_pg_audit.h"

static const char *
text(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);

    return t ? t : "";
}

/* Columns 0..5 of s as a canonical row, and column 6 (when there is one) as its hash. */
static void
read_row(sqlite3_stmt *s, int with_hash, struct obx_audit_row *r)
{
    memset(r, 0, sizeof *r);
    r->id = sqlite3_column_int64(s, 0);
    r->at_ms = sqlite3_column_int64(s, 1);
    r->kind = text(s, 2);
    r->channel_id = text(s, 3);
    r->external_message_id = text(s, 4);
    r->record = text(s, 5);
    if (with_hash)
        r->hash = (const char *)sqlite3_column_text(s, 6);
}

/* ---- the events ---------------------------------------------------------------------- */

/* OR FAIL, and no SQL function: no statement journal; the caller's transaction is rolled
 * back if it fails (lib/store.c, "statement journals"). */
static const char SQL_INSERT_ATTEMPT[] =
    "INSERT OR FAIL INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome,"
    " error, response_excerpt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

enum obx_err
obx_store_audit_add_attempt(struct obx_store *st, const struct obx_attempt *a)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_INSERT_ATTEMPT);

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, a->message_id);
    sqlite3_bind_int64(s, 2, a->started_at_ms);
    sqlite3_bind_int64(s, 3, a->duration_ms);
    if (a->http_status) /* no HTTP answer: NULL, bound here rather than by NULLIF (store.c) */
        sqlite3_bind_int(s, 4, a->http_status);
    else
        sqlite3_bind_null(s, 4);
    obx_db_bind_text(s, 5, a->outcome ? a->outcome : "unknown");
    obx_db_bind_text(s, 6, a->error);
    obx_db_bind_text(s, 7, a->excerpt);
    return obx_db_step_done(s);
}

/* ---- keying -------------------------------------------------------------------------- */

static const char SQL_MODES[] =
    "SELECT from_id, mode, key_id, mac FROM audit_chain_modes ORDER BY from_id, id";

enum obx_err
obx_store_audit_modes(struct obx_store *st, struct obx_audit_mode *out, int max, int *n)
{
    if (st->pg)
        return obx_store_pg_audit_modes(st, out, max, n);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_MODES);
    int rc;

    *n = 0;
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && *n < max) {
        struct obx_audit_mode *m = &out[(*n)++];
        m->from_id = sqlite3_column_int64(s, 0);
        m->keyed = strcmp(text(s, 1), "hmac-sha256") == 0;
        snprintf(m->key_id, sizeof m->key_id, "%s", text(s, 2));
        snprintf(m->mac, sizeof m->mac, "%s", text(s, 3));
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return OBX_ECONFIG; /* more keyings than any real history: refuse, do not guess */
    return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

/* The next id of the chain: a legacy audit_log row still unsealed, else the next seal. */
static const char SQL_NEXT_ID[] =
    "SELECT coalesce((SELECT min(id) FROM audit_log WHERE hash IS NULL),"
    " (SELECT seq + 1 FROM sqlite_sequence WHERE name = 'audit_seals'), 1)";

enum obx_err
obx_store_audit_next_row_id(struct obx_store *st, int64_t *id)
{
    if (st->pg)
        return obx_store_pg_audit_next_row_id(st, id);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_NEXT_ID);

    *id = 0;
    if (!s)
        return OBX_EDB;
    return obx_db_step_int64(s, id);
}

static const char SQL_ADD_MODE[] =
    "INSERT INTO audit_chain_modes (from_id, mode, key_id, mac, created_at_ms)"
    " VALUES (?1, 'hmac-sha256', ?2, ?3, ?4)";

enum obx_err
obx_store_audit_add_keyed_mode(struct obx_store *st, int64_t from_id, const char *key_id,
                               const char *mac)
{
    if (st->pg)
        return obx_store_pg_audit_add_keyed_mode(st, from_id, key_id, mac);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ADD_MODE);

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, from_id);
    obx_db_bind_text(s, 2, key_id);
    obx_db_bind_text(s, 3, mac);
    sqlite3_bind_int64(s, 4, obx_now_ms(st->clock));
    return obx_db_step_done(s);
}

/* ---- where the chain starts ---------------------------------------------------------- */

static const char SQL_CHECKPOINT[] =
    "SELECT upto_id, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1";

enum obx_err
obx_store_audit_last_checkpoint(struct obx_store *st, int64_t *upto_id, char hash[65], int *found)
{
    if (st->pg)
        return obx_store_pg_audit_last_checkpoint(st, upto_id, hash, found);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHECKPOINT);
    int rc;

    *upto_id = 0;
    *found = 0;
    hash[0] = '\0';
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *upto_id = sqlite3_column_int64(s, 0);
        snprintf(hash, 65, "%s", text(s, 1));
        *found = 1;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_LAST_SEALED[] =
    "SELECT id, hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1";

enum obx_err
obx_store_audit_last_legacy_hash(struct obx_store *st, char hash[65], int *found)
{
    if (st->pg)
        return obx_store_pg_audit_last_legacy_hash(st, hash, found);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_LAST_SEALED);
    int rc;

    *found = 0;
    hash[0] = '\0';
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        snprintf(hash, 65, "%s", text(s, 1));
        *found = 1;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/* ---- sealing ------------------------------------------------------------------------- */

static const char SQL_UNSEALED[] =
    "SELECT id, at_ms, kind, channel_id, external_message_id, record FROM audit_log"
    " WHERE hash IS NULL ORDER BY id LIMIT ?1";
static const char SQL_SET_HASH[] = "UPDATE audit_log SET hash = ?2 WHERE id = ?1";

enum obx_err
obx_store_audit_seal_legacy(struct obx_store *st, int max, obx_audit_hash_fn fn, void *ctx, int *n)
{
    if (st->pg)
        return obx_store_pg_audit_seal_legacy(st, max, fn, ctx, n);
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_UNSEALED);
    sqlite3_stmt *upd = obx_db_stmt(st->db, SQL_SET_HASH);
    struct obx_audit_row r;
    char hash[65];
    enum obx_err err = OBX_OK;
    int rc;

    *n = 0;
    if (!sel || !upd)
        return OBX_EDB;
    sqlite3_bind_int(sel, 1, max);
    rc = sqlite3_step(sel);
    while (rc == SQLITE_ROW && err == OBX_OK) {
        read_row(sel, 0, &r);
        err = fn(ctx, &r, hash);
        /* hash is only set when fn succeeded: binding it otherwise reads uninitialised bytes
         * up to some NUL (valgrind saw it when hashing ran out of memory). */
        if (err == OBX_OK) {
            sqlite3_bind_int64(upd, 1, r.id);
            obx_db_bind_text(upd, 2, hash);
            err = obx_db_step_done(upd);
        }
        (*n)++;
        rc = sqlite3_step(sel);
    }
    sqlite3_reset(sel);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    return err;
}

/* What was sent for each message with new events (audit.h, "sent_sha256"). */
static const char SQL_UNHASHED[] =
    "SELECT m.message_id, CASE WHEN o.id IS NOT NULL THEN"
    " json_object('business_id', o.business_id,"
    "             'external_conversation_id', o.external_conversation_id,"
    "             'content', o.content, 'sender_type', o.sender_type,"
    "             'consumer_name', o.consumer_name, 'consumer_image', o.consumer_image) END"
    " FROM audit_messages m LEFT JOIN outbox o ON o.id = m.message_id"
    " WHERE m.sent_sha256 IS NULL ORDER BY m.message_id LIMIT 256";
static const char SQL_SET_SENT[] =
    "UPDATE audit_messages SET sent_sha256 = ?2 WHERE message_id = ?1";

enum obx_err
obx_store_audit_fill_sent_hashes(struct obx_store *st, obx_audit_digest_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_audit_fill_sent_hashes(st, fn, ctx);
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_UNHASHED);
    sqlite3_stmt *upd = obx_db_stmt(st->db, SQL_SET_SENT);
    static const int batch = 256;
    int64_t ids[256];
    unsigned char(*h)[32] = obx_calloc(256, 32);
    int hn[256];
    enum obx_err err = (sel && upd && h) ? OBX_OK : (h ? OBX_EDB : OBX_ENOMEM);
    int n = batch;

    /* In batches read before they are written: a statement must not see its own updates. */
    while (err == OBX_OK && n == batch) {
        int rc = SQLITE_DONE;
        n = 0;
        while (err == OBX_OK && n < batch && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
            const void *sent = sqlite3_column_text(sel, 1);
            ids[n] = sqlite3_column_int64(sel, 0);
            hn[n] = 0; /* empty: the message was gone before its first seal */
            if (sent) {
                err = fn(ctx, sent, (size_t)sqlite3_column_bytes(sel, 1), h[n]);
                hn[n] = 32;
            }
            n++;
        }
        sqlite3_reset(sel);
        if (err == OBX_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
            err = obx_err_from_sqlite(rc);
        for (int i = 0; i < n && err == OBX_OK; i++) {
            sqlite3_bind_int64(upd, 1, ids[i]);
            sqlite3_bind_blob(upd, 2, h[i], hn[i], SQLITE_TRANSIENT);
            err = obx_db_step_done(upd);
        }
    }
    obx_free(h);
    return err;
}

static const char SQL_LAST_SEAL[] =
    "SELECT id, transitions_upto, attempts_upto, hash, actions_upto FROM audit_seals"
    " ORDER BY id DESC LIMIT 1";

enum obx_err
obx_store_audit_last_seal(struct obx_store *st, struct obx_audit_seal *out)
{
    if (st->pg)
        return obx_store_pg_audit_last_seal(st, out);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_LAST_SEAL);
    int rc;

    memset(out, 0, sizeof *out);
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        out->t_upto = sqlite3_column_int64(s, 1);
        out->a_upto = sqlite3_column_int64(s, 2);
        snprintf(out->hash, sizeof out->hash, "%s", text(s, 3));
        out->x_upto = sqlite3_column_int64(s, 4);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_EVENTS_MAX[] = "SELECT coalesce((SELECT max(id) FROM transitions), 0),"
                                     " coalesce((SELECT max(id) FROM attempts), 0),"
                                     " coalesce((SELECT max(id) FROM actions), 0)";

enum obx_err
obx_store_audit_lock(struct obx_store *st, int *got)
{
    if (st->pg)
        return obx_store_pg_audit_lock(st, got);
    *got = 1;
    return OBX_OK;
}

/* One range: up to the table's highest id, at most max further than the last seal's. */
static int64_t
clamp_range(int64_t last, int64_t highest, int max)
{
    return highest > last + max ? last + max : highest;
}

enum obx_err
obx_store_audit_next_seal(struct obx_store *st, const struct obx_audit_seal *last, int max,
                          struct obx_audit_seal *next, int *any)
{
    sqlite3_stmt *s;
    int rc;

    *next = *last;
    next->id = last->id + 1;
    *any = 0;
    if (st->pg)
        return obx_store_pg_audit_next_seal(st, last, max, next, any);
    if (!(s = obx_db_stmt(st->db, SQL_EVENTS_MAX)))
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        next->t_upto = clamp_range(last->t_upto, sqlite3_column_int64(s, 0), max);
        next->a_upto = clamp_range(last->a_upto, sqlite3_column_int64(s, 1), max);
        next->x_upto = clamp_range(last->x_upto, sqlite3_column_int64(s, 2), max);
        *any = next->t_upto > last->t_upto || next->a_upto > last->a_upto ||
               next->x_upto > last->x_upto;
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_ADD_SEAL[] =
    "INSERT INTO audit_seals (transitions_upto, attempts_upto, events, at_ms, hash, actions_upto)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

enum obx_err
obx_store_audit_add_seal(struct obx_store *st, const struct obx_audit_seal *seal)
{
    if (st->pg)
        return obx_store_pg_audit_add_seal(st, seal);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_ADD_SEAL);

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, seal->t_upto);
    sqlite3_bind_int64(s, 2, seal->a_upto);
    sqlite3_bind_int64(s, 3, seal->events);
    sqlite3_bind_int64(s, 4, seal->at_ms);
    obx_db_bind_text(s, 5, seal->hash);
    sqlite3_bind_int64(s, 6, seal->x_upto);
    return obx_db_step_done(s);
}

/* ---- reading the chain --------------------------------------------------------------- */

/*
 * The events of a seal's range, in chain order, as canonical rows (columns 0..5 as audit.h
 * says): transitions with id in (?1, ?2], then attempts with id in (?3, ?4], then actions
 * (pauses and resumes) with id in (?5, ?6], each by id.
 */
static const char SQL_EVENTS[] =
    "SELECT t.id, t.at_ms, 'transition', m.channel_id, m.external_message_id,"
    " json_object('message_id', t.message_id, 'from', t.from_state, 'to', t.to_state,"
    "             'reason', t.reason), 0"
    " FROM transitions t LEFT JOIN audit_messages m ON m.message_id = t.message_id"
    " WHERE t.id > ?1 AND t.id <= ?2"
    " UNION ALL "
    "SELECT a.id, a.started_at_ms, 'attempt', m.channel_id, m.external_message_id,"
    " json_object('message_id', a.message_id, 'sent_sha256', lower(hex(m.sent_sha256)),"
    "             'duration_ms', a.duration_ms, 'http_status', a.http_status,"
    "             'outcome', a.outcome, 'error', a.error, 'response_excerpt', a.response_excerpt),"
    " 1"
    " FROM attempts a LEFT JOIN audit_messages m ON m.message_id = a.message_id"
    " WHERE a.id > ?3 AND a.id <= ?4"
    " UNION ALL "
    "SELECT x.id, x.at_ms, x.action, x.key, '',"
    " json_object('scope', x.scope, 'reason', x.reason, 'by', x.by), 2"
    " FROM actions x WHERE x.id > ?5 AND x.id <= ?6"
    " ORDER BY 7, 1";

enum obx_err
obx_store_audit_events(struct obx_store *st, const struct obx_audit_seal *from,
                       const struct obx_audit_seal *to, obx_audit_row_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_audit_events(st, from, to, fn, ctx);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_EVENTS);
    struct obx_audit_row r;
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, from->t_upto);
    sqlite3_bind_int64(s, 2, to->t_upto);
    sqlite3_bind_int64(s, 3, from->a_upto);
    sqlite3_bind_int64(s, 4, to->a_upto);
    sqlite3_bind_int64(s, 5, from->x_upto);
    sqlite3_bind_int64(s, 6, to->x_upto);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_row(s, 0, &r);
        if (fn(ctx, &r))
            break;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_SEALS[] =
    "SELECT id, transitions_upto, attempts_upto, events, at_ms, hash, actions_upto"
    " FROM audit_seals WHERE id >= coalesce((SELECT max(id) FROM audit_seals WHERE id <= ?1), 0) ORDER BY id";

enum obx_err
obx_store_audit_seals(struct obx_store *st, int64_t after, obx_audit_seal_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_audit_seals(st, after, fn, ctx);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_SEALS);
    struct obx_audit_seal seal = {0}; /* xact_upto stays 0: SQLite's seals cover id ranges */
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, after);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        seal.id = sqlite3_column_int64(s, 0);
        seal.t_upto = sqlite3_column_int64(s, 1);
        seal.a_upto = sqlite3_column_int64(s, 2);
        seal.events = sqlite3_column_int64(s, 3);
        seal.at_ms = sqlite3_column_int64(s, 4);
        snprintf(seal.hash, sizeof seal.hash, "%s", text(s, 5));
        seal.x_upto = sqlite3_column_int64(s, 6);
        if (fn(ctx, &seal))
            break;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_UNSEALED_EVENTS[] = "SELECT (SELECT count(*) FROM transitions WHERE id > ?1)"
                                          " + (SELECT count(*) FROM attempts WHERE id > ?2)"
                                          " + (SELECT count(*) FROM actions WHERE id > ?3)";

enum obx_err
obx_store_audit_count_events_after(struct obx_store *st, const struct obx_audit_seal *base,
                                   int64_t *n)
{
    if (st->pg)
        return obx_store_pg_audit_count_events_after(st, base, n);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_UNSEALED_EVENTS);

    *n = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, base->t_upto);
    sqlite3_bind_int64(s, 2, base->a_upto);
    sqlite3_bind_int64(s, 3, base->x_upto);
    return obx_db_step_int64(s, n);
}

static const char SQL_CHAIN[] =
    "SELECT id, at_ms, kind, channel_id, external_message_id, record, hash FROM audit_log"
    " WHERE id > ?1 ORDER BY id";

enum obx_err
obx_store_audit_legacy_rows(struct obx_store *st, int64_t after, obx_audit_row_fn fn, void *ctx)
{
    if (st->pg)
        return obx_store_pg_audit_legacy_rows(st, after, fn, ctx);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHAIN);
    struct obx_audit_row r;
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, after);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_row(s, 1, &r);
        if (fn(ctx, &r))
            break;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/* prev_hash: the hash of the row before, in the whole chain (not just the exported slice). */
static const char SQL_EXPORT[] =
    "SELECT a.id, a.at_ms, a.kind, a.channel_id, a.external_message_id, a.record, a.hash,"
    " coalesce((SELECT p.hash FROM audit_log p WHERE p.id < a.id ORDER BY p.id DESC LIMIT 1),"
    "  (SELECT hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1), ?4)"
    " FROM audit_log a WHERE a.at_ms >= ?1 AND a.at_ms < ?2 AND (?3 IS NULL OR a.channel_id = ?3)"
    " ORDER BY a.id";

enum obx_err
obx_store_audit_export_legacy(struct obx_store *st, int64_t since_ms, int64_t until_ms,
                              const char *channel_id, const char *genesis, obx_audit_row_fn fn,
                              void *ctx)
{
    if (st->pg)
        return obx_store_pg_audit_export_legacy(st, since_ms, until_ms, channel_id, genesis, fn,
                                                ctx);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_EXPORT);
    struct obx_audit_row r;
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, since_ms);
    sqlite3_bind_int64(s, 2, until_ms);
    obx_db_bind_text(s, 3, channel_id);
    obx_db_bind_text(s, 4, genesis);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        read_row(s, 1, &r);
        r.prev_hash = text(s, 7);
        if (fn(ctx, &r))
            break;
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/* ---- pruning ------------------------------------------------------------------------- */

/*
 * The prunable prefix is found by walking the chain in id order, a batch per step: the
 * set query "min(id) WHERE at_ms >= ? OR hash IS NULL" is answered by the same walk,
 * over every row, inside one statement (1.1 s for 3,000,000 rows), on serve's loop.
 */
static const char SQL_PRUNE_SCAN[] =
    "SELECT id, at_ms, hash FROM audit_log WHERE id > ?1"
    " UNION ALL SELECT id, at_ms, hash FROM audit_seals WHERE id > ?1 AND hash <> ''"
    " ORDER BY 1 LIMIT ?2";
/* The checkpoint's seal stays: the next seal's range starts where it ends. */
static const char SQL_PRUNE_SEAL_RANGE[] =
    "SELECT transitions_upto, attempts_upto, actions_upto FROM audit_seals WHERE id = ?1";
/*
 * Events behind the checkpoint whose message is gone (a message still there keeps its history
 * for show and the API; its events go with it when it is purged: 0009's trigger). The scan
 * starts at the lowest id each time: it passes over the old events of messages still there,
 * which are few (messages older than the retention that are not finished yet).
 */
static const char SQL_PRUNE_TRANSITIONS[] =
    "DELETE FROM transitions WHERE id IN (SELECT t.id FROM transitions t WHERE t.id <= ?1"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = t.message_id) ORDER BY t.id LIMIT ?2)";
static const char SQL_PRUNE_ATTEMPTS[] =
    "DELETE FROM attempts WHERE id IN (SELECT a.id FROM attempts a WHERE a.id <= ?1"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = a.message_id) ORDER BY a.id LIMIT ?2)";
static const char SQL_PRUNE_SEALS[] =
    "DELETE FROM audit_seals WHERE id IN (SELECT id FROM audit_seals WHERE id < ?1 ORDER BY id"
    " LIMIT ?2)";
static const char SQL_PRUNE_CHECKPOINT[] =
    "INSERT INTO audit_checkpoints (upto_id, hash, created_at_ms) VALUES (?1, ?2, ?3)";
static const char SQL_PRUNE_DELETE[] =
    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id <= ?1 ORDER BY id"
    " LIMIT ?2)";

enum obx_err
obx_store_audit_prune_scan(struct obx_store *st, int64_t before_ms, int max_rows, int64_t *upto_id,
                           char upto_hash[65], int *more)
{
    if (st->pg)
        return obx_store_pg_audit_prune_scan(st, before_ms, max_rows, upto_id, upto_hash, more);
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PRUNE_SCAN);
    int n = 0, rc;

    *more = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, *upto_id);
    sqlite3_bind_int(s, 2, max_rows);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        /* The prefix ends at the first row too young or not sealed yet. */
        if (sqlite3_column_int64(s, 1) >= before_ms || sqlite3_column_type(s, 2) == SQLITE_NULL) {
            n = -1;
            break;
        }
        *upto_id = sqlite3_column_int64(s, 0);
        snprintf(upto_hash, 65, "%s", text(s, 2));
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return obx_err_from_sqlite(rc);
    *more = n == max_rows;
    return OBX_OK;
}

/*
 * The checkpoint comes first, in the first batch's transaction: from then on the chain
 * starts after upto_id, so rows at or below it are already outside it (verify and
 * export skip them) and can be deleted in as many later transactions as it takes. A
 * prune interrupted half-way leaves rows behind the latest checkpoint, which the next
 * prune deletes without a new checkpoint.
 */
/*
 * Deletes up to max events behind the checkpoint's seal (covered) whose message is gone, then
 * the seals before it; *n counts the events deleted.
 */
static enum obx_err
prune_events(struct obx_store *st, int64_t covered, int max, int64_t *n)
{
    sqlite3_stmt *rg = obx_db_stmt(st->db, SQL_PRUNE_SEAL_RANGE);
    const char *dels[] = {SQL_PRUNE_TRANSITIONS, SQL_PRUNE_ATTEMPTS};
    int64_t upto[3] = {0, 0, 0};
    enum obx_err err = OBX_OK;
    int rc, found = 0;

    if (!rg)
        return OBX_EDB;
    sqlite3_bind_int64(rg, 1, covered);
    rc = sqlite3_step(rg);
    if (rc == SQLITE_ROW) {
        upto[0] = sqlite3_column_int64(rg, 0);
        upto[1] = sqlite3_column_int64(rg, 1);
        upto[2] = sqlite3_column_int64(rg, 2);
        found = 1;
    }
    sqlite3_reset(rg);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return obx_err_from_sqlite(rc);
    if (!found)
        return OBX_OK; /* the checkpoint is a legacy row: no event is behind it */
    for (int i = 0; i < 2 && err == OBX_OK && max > 0; i++) {
        sqlite3_stmt *d = obx_db_stmt(st->db, dels[i]);
        if (!d)
            return OBX_EDB;
        sqlite3_bind_int64(d, 1, upto[i]);
        sqlite3_bind_int(d, 2, max);
        err = obx_db_step_done(d);
        if (err == OBX_OK) {
            *n += sqlite3_changes(st->db->h);
            max -= sqlite3_changes(st->db->h);
        }
    }
    /* The actions table is lib/store_dash.c's (one writer per table): it deletes them. */
    if (err == OBX_OK && max > 0) {
        int64_t gone = 0;
        err = obx_store_dash_prune_actions(st, upto[2], max, &gone);
        if (err == OBX_OK) {
            *n += gone;
            max -= (int)gone;
        }
    }
    if (err == OBX_OK && max > 0) {
        sqlite3_stmt *d = obx_db_stmt(st->db, SQL_PRUNE_SEALS);
        if (!d)
            return OBX_EDB;
        sqlite3_bind_int64(d, 1, covered);
        sqlite3_bind_int(d, 2, max);
        err = obx_db_step_done(d);
    }
    return err;
}

enum obx_err
obx_store_audit_prune_batch(struct obx_store *st, int64_t upto_id, const char *upto_hash,
                            int max_rows, int64_t *removed, int *more)
{
    if (st->pg)
        return obx_store_pg_audit_prune_batch(st, upto_id, upto_hash, max_rows, removed, more);
    sqlite3_stmt *cp = obx_db_stmt(st->db, SQL_PRUNE_CHECKPOINT);
    sqlite3_stmt *del = obx_db_stmt(st->db, SQL_PRUNE_DELETE);
    char prev[65];
    int64_t covered = 0, n = 0;
    int found = 0;
    enum obx_err err = obx_db_begin(st->db);

    *removed = 0;
    *more = 0;
    if (!cp || !del)
        err = err == OBX_OK ? OBX_EDB : err;
    if (err == OBX_OK)
        err = obx_store_audit_last_checkpoint(st, &covered, prev, &found);
    if (err == OBX_OK && upto_id > covered) {
        sqlite3_bind_int64(cp, 1, upto_id);
        obx_db_bind_text(cp, 2, upto_hash);
        sqlite3_bind_int64(cp, 3, obx_now_ms(st->clock));
        err = obx_db_step_done(cp);
        covered = upto_id;
    }
    if (err == OBX_OK && covered > 0) {
        sqlite3_bind_int64(del, 1, covered);
        sqlite3_bind_int(del, 2, max_rows);
        err = obx_db_step_done(del);
        if (err == OBX_OK)
            n = sqlite3_changes(st->db->h);
    }
    if (err == OBX_OK && covered > 0 && n < max_rows)
        err = prune_events(st, covered, max_rows - (int)n, &n);
    err = obx_db_end(st->db, err);
    if (err != OBX_OK)
        return err;
    *removed = n;
    *more = n == max_rows;
    return OBX_OK;
}
