/* audit: seal, verify, export and prune the audit_log hash chain (see audit.h). */
#include "audit.h"

#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "err.h"
#include "mem.h"
#include "signature.h"

static const char *
text(sqlite3_stmt *s, int col)
{
    const char *t = (const char *)sqlite3_column_text(s, col);

    return t ? t : "";
}

/* hash = sha256(prev || "\n" || canonical(row)); row columns 0..5 of s (see audit.h). */
static enum obx_err
row_hash(sqlite3_stmt *s, const char *prev, char out[65])
{
    struct obx_buf b;
    enum obx_err err;

    obx_buf_init(&b, 64 * 1024 * 1024);
    err = obx_buf_printf(&b, "%s\n[%lld,%lld", prev, (long long)sqlite3_column_int64(s, 0),
                         (long long)sqlite3_column_int64(s, 1));
    for (int col = 2; err == OBX_OK && col <= 5; col++) {
        err = obx_buf_puts(&b, ",");
        if (err == OBX_OK)
            err = obx_buf_json_str(&b, text(s, col));
    }
    if (err == OBX_OK)
        err = obx_buf_puts(&b, "]");
    if (err == OBX_OK)
        err = obx_sha256_hex(obx_buf_str(&b), b.len, out);
    obx_buf_release(&b);
    return err;
}

static const char SQL_CHECKPOINT[] =
    "SELECT upto_id, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1";

/* Where the chain starts: the latest checkpoint, or the genesis value. */
static enum obx_err
chain_start(struct obx_store *st, int64_t *after_id, char prev[65])
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHECKPOINT);
    int rc;

    *after_id = 0;
    snprintf(prev, 65, "%s", OBX_AUDIT_GENESIS);
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *after_id = sqlite3_column_int64(s, 0);
        snprintf(prev, 65, "%s", text(s, 1));
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static const char SQL_LAST_SEALED[] =
    "SELECT id, hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1";
static const char SQL_UNSEALED[] =
    "SELECT id, at_ms, kind, channel_id, external_message_id, record FROM audit_log"
    " WHERE hash IS NULL ORDER BY id LIMIT ?1";
static const char SQL_SET_HASH[] = "UPDATE audit_log SET hash = ?2 WHERE id = ?1";

/* The hash the next row chains to: the last sealed row's, else the chain start. */
static enum obx_err
last_hash(struct obx_store *st, char prev[65])
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_LAST_SEALED);
    int64_t after = 0;
    enum obx_err err = chain_start(st, &after, prev);
    int rc;

    if (err != OBX_OK)
        return err;
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        snprintf(prev, 65, "%s", text(s, 1));
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

static enum obx_err
seal_rows(struct obx_store *st, int max, int64_t *sealed)
{
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_UNSEALED);
    sqlite3_stmt *upd = obx_db_stmt(st->db, SQL_SET_HASH);
    char prev[65], hash[65];
    enum obx_err err;
    int rc;

    if (!sel || !upd)
        return OBX_EDB;
    err = last_hash(st, prev);
    sqlite3_bind_int(sel, 1, max);
    rc = err == OBX_OK ? sqlite3_step(sel) : SQLITE_DONE;
    while (rc == SQLITE_ROW && err == OBX_OK) {
        err = row_hash(sel, prev, hash);
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
        obx_db_bind_text(upd, 2, hash);
        if (err == OBX_OK)
            err = obx_db_step_done(upd);
        memcpy(prev, hash, sizeof prev);
        (*sealed)++;
        rc = sqlite3_step(sel);
    }
    sqlite3_reset(sel);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    return err;
}

enum obx_err
obx_audit_seal(struct obx_store *st, int max, int64_t *sealed)
{
    enum obx_err err = obx_db_begin(st->db);

    *sealed = 0;
    if (err == OBX_OK)
        err = seal_rows(st, max, sealed);
    if (err == OBX_OK)
        return obx_db_commit(st->db);
    obx_db_rollback(st->db);
    *sealed = 0;
    return err;
}

static const char SQL_CHAIN[] =
    "SELECT id, at_ms, kind, channel_id, external_message_id, record, hash FROM audit_log"
    " WHERE id > ?1 ORDER BY id";

/* Compares one row with its recomputed hash; fills the report at the first mismatch. */
static enum obx_err
verify_row(sqlite3_stmt *s, char prev[65], int64_t *expected_id, struct obx_audit_report *r)
{
    char hash[65];
    int64_t id = sqlite3_column_int64(s, 0);
    enum obx_err err;

    if (sqlite3_column_type(s, 6) == SQLITE_NULL) {
        r->unsealed++;
        return OBX_OK;
    }
    if (r->unsealed) {
        r->first_bad_id = id;
        snprintf(r->problem, sizeof r->problem, "sealed row after an unsealed one");
        return OBX_OK;
    }
    err = row_hash(s, prev, hash);
    if (err != OBX_OK)
        return err;
    if (strcmp(hash, text(s, 6)) != 0) {
        r->first_bad_id = id;
        snprintf(r->problem, sizeof r->problem,
                 "hash mismatch: the row or one before it was changed, added or removed");
        return OBX_OK;
    }
    memcpy(prev, hash, 65);
    *expected_id = id;
    r->checked++;
    r->head_id = id;
    memcpy(r->head_hash, hash, sizeof r->head_hash);
    return OBX_OK;
}

enum obx_err
obx_audit_verify(struct obx_store *st, struct obx_audit_report *r)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHAIN);
    char prev[65];
    int64_t after = 0, last_id = 0;
    enum obx_err err;
    int rc = SQLITE_DONE;

    memset(r, 0, sizeof *r);
    if (!s)
        return OBX_EDB;
    err = obx_db_exec(st->db, "BEGIN");
    if (err == OBX_OK)
        err = chain_start(st, &after, prev);
    snprintf(r->head_hash, sizeof r->head_hash, "%s", prev);
    sqlite3_bind_int64(s, 1, after);
    if (err == OBX_OK)
        rc = sqlite3_step(s);
    while (err == OBX_OK && rc == SQLITE_ROW && !r->first_bad_id) {
        err = verify_row(s, prev, &last_id, r);
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    if (obx_db_exec(st->db, "COMMIT") != OBX_OK && err == OBX_OK)
        err = OBX_EDB;
    return err;
}

/* prev_hash: the hash of the row before, in the whole chain (not just the exported slice). */
static const char SQL_EXPORT[] =
    "SELECT a.id, a.at_ms, a.kind, a.channel_id, a.external_message_id, a.record, a.hash,"
    " coalesce((SELECT p.hash FROM audit_log p WHERE p.id < a.id ORDER BY p.id DESC LIMIT 1),"
    "  (SELECT hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1), ?4)"
    " FROM audit_log a WHERE a.at_ms >= ?1 AND a.at_ms < ?2 AND (?3 IS NULL OR a.channel_id = ?3)"
    " ORDER BY a.id";

enum obx_err
obx_audit_export(struct obx_store *st, int64_t since_ms, int64_t until_ms, const char *channel_id,
                 obx_audit_entry_fn fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_EXPORT);
    struct obx_audit_entry e;
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, since_ms);
    sqlite3_bind_int64(s, 2, until_ms);
    obx_db_bind_text(s, 3, channel_id);
    obx_db_bind_text(s, 4, OBX_AUDIT_GENESIS);
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW) {
        e.id = sqlite3_column_int64(s, 0);
        e.at_ms = sqlite3_column_int64(s, 1);
        e.kind = text(s, 2);
        e.channel_id = text(s, 3);
        e.external_message_id = text(s, 4);
        e.record = text(s, 5);
        e.hash = (const char *)sqlite3_column_text(s, 6);
        e.prev_hash = text(s, 7);
        if (fn(ctx, &e))
            break;
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/*
 * The prunable prefix is found by walking the chain in id order, a batch per step: the
 * set query "min(id) WHERE at_ms >= ? OR hash IS NULL" is answered by the same walk,
 * over every row, inside one statement (1.1 s for 3,000,000 rows), on serve's loop.
 */
static const char SQL_PRUNE_SCAN[] =
    "SELECT id, at_ms, hash FROM audit_log WHERE id > ?1 ORDER BY id LIMIT ?2";
static const char SQL_PRUNE_CHECKPOINT[] =
    "INSERT INTO audit_checkpoints (upto_id, hash, created_at_ms) VALUES (?1, ?2, ?3)";
static const char SQL_PRUNE_DELETE[] =
    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id <= ?1 ORDER BY id"
    " LIMIT ?2)";

enum obx_err
obx_audit_prune_scan(struct obx_store *st, int64_t before_ms, int max_rows,
                     struct obx_audit_prune *p, int *more)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PRUNE_SCAN);
    int n = 0, rc;

    *more = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, p->upto_id);
    sqlite3_bind_int(s, 2, max_rows);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        n++;
        /* The prefix ends at the first row too young or not sealed yet. */
        if (sqlite3_column_int64(s, 1) >= before_ms ||
            sqlite3_column_type(s, 2) == SQLITE_NULL) {
            n = -1;
            break;
        }
        p->upto_id = sqlite3_column_int64(s, 0);
        snprintf(p->upto_hash, sizeof p->upto_hash, "%s", text(s, 2));
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
enum obx_err
obx_audit_prune_batch(struct obx_store *st, const struct obx_audit_prune *p, int max_rows,
                      int64_t *removed, int *more)
{
    sqlite3_stmt *cp = obx_db_stmt(st->db, SQL_PRUNE_CHECKPOINT);
    sqlite3_stmt *del = obx_db_stmt(st->db, SQL_PRUNE_DELETE);
    char prev[65];
    int64_t covered = 0, n = 0;
    enum obx_err err = obx_db_begin(st->db);

    *removed = 0;
    *more = 0;
    if (!cp || !del)
        err = err == OBX_OK ? OBX_EDB : err;
    if (err == OBX_OK)
        err = chain_start(st, &covered, prev);
    if (err == OBX_OK && p->upto_id > covered) {
        sqlite3_bind_int64(cp, 1, p->upto_id);
        obx_db_bind_text(cp, 2, p->upto_hash);
        sqlite3_bind_int64(cp, 3, obx_now_ms(st->clock));
        err = obx_db_step_done(cp);
        covered = p->upto_id;
    }
    if (err == OBX_OK && covered > 0) {
        sqlite3_bind_int64(del, 1, covered);
        sqlite3_bind_int(del, 2, max_rows);
        err = obx_db_step_done(del);
        if (err == OBX_OK)
            n = sqlite3_changes(st->db->h);
    }
    if (err == OBX_OK)
        err = obx_db_commit(st->db);
    else
        obx_db_rollback(st->db);
    if (err != OBX_OK)
        return err;
    *removed = n;
    *more = n == max_rows;
    return OBX_OK;
}
