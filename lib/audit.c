/* audit: seal, verify, export and prune the audit_log hash chain (see audit.h). */
#include "audit.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

#define KEY_LINE_MIN 16 /* bytes of audit_key_file's first line */
#define MAX_MODES 64    /* audit_chain_modes rows read; one per keying in practice */

static void
hex(const unsigned char *md, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* out = hex(HMAC-SHA256(key, data)). */
static enum obx_err
hmac_hex(const unsigned char key[32], const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    out[0] = '\0';
    if (!HMAC(EVP_sha256(), key, 32, data, len, md, &mdlen) || mdlen != 32)
        return OBX_ENOMEM;
    hex(md, 32, out);
    return OBX_OK;
}

enum obx_err
obx_audit_use_key(struct obx_store *st, const char *path, int start_segment, char *errmsg,
                  size_t n)
{
    static const char id_msg[] = "outbox-audit-key-id";
    char line[4097], id[65];
    unsigned char k[EVP_MAX_MD_SIZE];
    unsigned int klen = 0;
    FILE *f = fopen(path, "r");
    size_t len = 0;
    enum obx_err err = OBX_ECONFIG;

    snprintf(errmsg, n, "cannot read audit_key_file '%s'", path);
    if (!f)
        return OBX_ECONFIG;
    if (fgets(line, sizeof line, f)) {
        len = strcspn(line, "\n");
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
            len--;
    }
    fclose(f);
    if (len < KEY_LINE_MIN) {
        snprintf(errmsg, n, "audit_key_file '%s': the first line must hold at least %d bytes",
                 path, KEY_LINE_MIN);
    } else if (EVP_Digest(line, len, k, &klen, EVP_sha256(), NULL) == 1 && klen == 32) {
        /* The id is a MAC under K, so it names the key without revealing it. */
        if (hmac_hex(k, id_msg, sizeof id_msg - 1, id) == OBX_OK) {
            memcpy(st->audit_key, k, 32);
            snprintf(st->audit_key_id, sizeof st->audit_key_id, "%.16s", id);
            st->audit_keyed = 1;
            st->audit_key_start = start_segment;
            errmsg[0] = '\0';
            err = OBX_OK;
        } else {
            err = OBX_ENOMEM;
        }
    } else {
        err = OBX_ENOMEM;
    }
    OPENSSL_cleanse(line, sizeof line); /* the key must not outlive this call on the stack */
    OPENSSL_cleanse(k, sizeof k);
    return err;
}

/*
 * hash = sha256(prev || "\n" || canonical(row)), or its HMAC under key when not NULL; row
 * columns 0..5 of s (see audit.h).
 */
static enum obx_err
row_hash(sqlite3_stmt *s, const char *prev, const unsigned char *key, char out[65])
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
        err = key ? hmac_hex(key, obx_buf_str(&b), b.len, out)
                  : obx_sha256_hex(obx_buf_str(&b), b.len, out);
    obx_buf_release(&b);
    return err;
}

/* One audit_chain_modes row. */
struct mode {
    int64_t from_id;
    int keyed;
    char key_id[17];
    char mac[65];
};

struct modes {
    struct mode m[MAX_MODES];
    int n;
};

static const char SQL_MODES[] =
    "SELECT from_id, mode, key_id, mac FROM audit_chain_modes ORDER BY from_id, id";

static enum obx_err
load_modes(struct obx_store *st, struct modes *ms)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_MODES);
    int rc;

    ms->n = 0;
    if (!s)
        return OBX_EDB;
    rc = sqlite3_step(s);
    while (rc == SQLITE_ROW && ms->n < MAX_MODES) {
        struct mode *m = &ms->m[ms->n++];
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

/* The mode row governing audit row id; NULL = plain SHA-256. */
static const struct mode *
mode_of(const struct modes *ms, int64_t id)
{
    const struct mode *m = NULL;

    for (int i = 0; i < ms->n && ms->m[i].from_id <= id; i++)
        m = &ms->m[i];
    return m;
}

/* mac of a keyed mode row (audit.h). */
static enum obx_err
mode_mac(const unsigned char key[32], int64_t from_id, const char *key_id, char out[65])
{
    char msg[128];
    int n = snprintf(msg, sizeof msg, "outbox-audit-mode\n%lld\n%s", (long long)from_id, key_id);

    return hmac_hex(key, msg, (size_t)n, out);
}

/* The next id of the chain: a legacy audit_log row still unsealed, else the next seal. */
static const char SQL_NEXT_ID[] =
    "SELECT coalesce((SELECT min(id) FROM audit_log WHERE hash IS NULL),"
    " (SELECT seq + 1 FROM sqlite_sequence WHERE name = 'audit_seals'), 1)";
static const char SQL_ADD_MODE[] =
    "INSERT INTO audit_chain_modes (from_id, mode, key_id, mac, created_at_ms)"
    " VALUES (?1, 'hmac-sha256', ?2, ?3, ?4)";

/*
 * Which key seals the next rows: st's key once the chain is keyed (starting the keyed
 * segment at the next row the first time), none for a plain chain without a key.
 */
static enum obx_err
seal_key(struct obx_store *st, const unsigned char **key)
{
    struct modes *ms = obx_calloc(1, sizeof *ms);
    const struct mode *last;
    sqlite3_stmt *next = obx_db_stmt(st->db, SQL_NEXT_ID);
    sqlite3_stmt *add = obx_db_stmt(st->db, SQL_ADD_MODE);
    enum obx_err err = ms ? load_modes(st, ms) : OBX_ENOMEM;
    int64_t from = 0;
    char mac[65];

    *key = NULL;
    if (err == OBX_OK && (!next || !add))
        err = OBX_EDB;
    last = err == OBX_OK && ms->n ? &ms->m[ms->n - 1] : NULL;
    if (err != OBX_OK || ((!last || !last->keyed) && (!st->audit_keyed || !st->audit_key_start)))
        goto out; /* plain, and stays plain here */
    if (last && last->keyed) {
        /* Keyed: only the same key may go on sealing. */
        if (!st->audit_keyed || strcmp(last->key_id, st->audit_key_id) != 0)
            err = OBX_ECONFIG;
        else
            *key = st->audit_key;
        goto out;
    }
    if (sqlite3_step(next) == SQLITE_ROW)
        from = sqlite3_column_int64(next, 0);
    sqlite3_reset(next);
    err = from > 0 ? mode_mac(st->audit_key, from, st->audit_key_id, mac) : OBX_EDB;
    if (err == OBX_OK) {
        sqlite3_bind_int64(add, 1, from);
        obx_db_bind_text(add, 2, st->audit_key_id);
        obx_db_bind_text(add, 3, mac);
        sqlite3_bind_int64(add, 4, obx_now_ms(st->clock));
        err = obx_db_step_done(add);
    }
    if (err == OBX_OK)
        *key = st->audit_key;
out:
    obx_free(ms);
    return err;
}

enum obx_err
obx_audit_check_key(struct obx_store *st, char *errmsg, size_t n)
{
    struct modes *ms = obx_calloc(1, sizeof *ms);
    enum obx_err err = ms ? load_modes(st, ms) : OBX_ENOMEM;
    const struct mode *last = err == OBX_OK && ms->n ? &ms->m[ms->n - 1] : NULL;

    errmsg[0] = '\0';
    if (last && last->keyed && !st->audit_keyed) {
        snprintf(errmsg, n, "the audit chain is keyed (key id %s) from row %lld: set "
                            "audit_key_file to its key", last->key_id, (long long)last->from_id);
        err = OBX_ECONFIG;
    } else if (last && last->keyed && strcmp(last->key_id, st->audit_key_id) != 0) {
        snprintf(errmsg, n, "audit_key_file holds key id %s, but the audit chain is keyed with "
                            "key id %s", st->audit_key_id, last->key_id);
        err = OBX_ECONFIG;
    }
    obx_free(ms);
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

/*
 * Seals up to max legacy audit_log rows (those written before 0009_lean_audit) with key;
 * prev: the chain's hash after the last legacy row sealed. *left: legacy rows still unsealed.
 */
static enum obx_err
seal_rows(struct obx_store *st, int max, const unsigned char *key, char prev[65],
          int64_t *sealed, int *left)
{
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_UNSEALED);
    sqlite3_stmt *upd = obx_db_stmt(st->db, SQL_SET_HASH);
    char hash[65];
    enum obx_err err;
    int rc, n = 0;

    *left = 0;
    if (!sel || !upd)
        return OBX_EDB;
    err = last_hash(st, prev);
    sqlite3_bind_int(sel, 1, max);
    rc = err == OBX_OK ? sqlite3_step(sel) : SQLITE_DONE;
    while (rc == SQLITE_ROW && err == OBX_OK) {
        err = row_hash(sel, prev, key, hash);
        sqlite3_bind_int64(upd, 1, sqlite3_column_int64(sel, 0));
        obx_db_bind_text(upd, 2, hash);
        if (err == OBX_OK)
            err = obx_db_step_done(upd);
        memcpy(prev, hash, 65);
        (*sealed)++;
        n++;
        rc = sqlite3_step(sel);
    }
    sqlite3_reset(sel);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    *left = n == max;
    return err;
}

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
static const char SQL_SEALS[] =
    "SELECT id, transitions_upto, attempts_upto, events, at_ms, hash, actions_upto"
    " FROM audit_seals WHERE id >= coalesce((SELECT max(id) FROM audit_seals WHERE id <= ?1), 0) ORDER BY id";
static const char SQL_LAST_SEAL[] =
    "SELECT id, transitions_upto, attempts_upto, hash, actions_upto FROM audit_seals"
    " ORDER BY id DESC LIMIT 1";
static const char SQL_EVENTS_MAX[] =
    "SELECT coalesce((SELECT max(id) FROM transitions), 0),"
    " coalesce((SELECT max(id) FROM attempts), 0),"
    " coalesce((SELECT max(id) FROM actions), 0)";
static const char SQL_ADD_SEAL[] =
    "INSERT INTO audit_seals (transitions_upto, attempts_upto, events, at_ms, hash, actions_upto)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
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

/* Fills sent_sha256 of every message that has none yet (they all have events to seal). */
static enum obx_err
hash_messages(struct obx_store *st)
{
    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_UNHASHED);
    sqlite3_stmt *upd = obx_db_stmt(st->db, SQL_SET_SENT);
    static const int batch = 256;
    int64_t ids[256];
    unsigned char (*h)[32] = obx_calloc(256, 32);
    int hn[256];
    enum obx_err err = (sel && upd && h) ? OBX_OK : (h ? OBX_EDB : OBX_ENOMEM);
    int n = batch;

    /* In batches read before they are written: a statement must not see its own updates. */
    while (err == OBX_OK && n == batch) {
        int rc = SQLITE_DONE;
        n = 0;
        while (err == OBX_OK && n < batch && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
            const void *sent = sqlite3_column_text(sel, 1);
            unsigned int len = 0;
            ids[n] = sqlite3_column_int64(sel, 0);
            hn[n] = 0; /* empty: the message was gone before its first seal */
            if (sent) {
                if (EVP_Digest(sent, (size_t)sqlite3_column_bytes(sel, 1), h[n], &len,
                               EVP_sha256(), NULL) != 1 || len != 32)
                    err = OBX_ENOMEM;
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

/* The range a seal covers. */
struct seal {
    int64_t id, t_upto, a_upto, events, at_ms, x_upto;
    char hash[65];
};

/*
 * Chains the events in (from->t_upto, to->t_upto] and (from->a_upto, to->a_upto] onto prev;
 * *n: events chained, *at_ms: the latest event time. With fn, calls it for each event.
 */
typedef int (*event_fn)(void *ctx, sqlite3_stmt *row, const char *prev, const char *hash);

static enum obx_err
chain_events(struct obx_store *st, const struct seal *from, const struct seal *to,
             const unsigned char *key, char prev[65], int64_t *n, int64_t *at_ms, event_fn fn,
             void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_EVENTS);
    char hash[65];
    enum obx_err err = OBX_OK;
    int rc;

    *n = 0;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, from->t_upto);
    sqlite3_bind_int64(s, 2, to->t_upto);
    sqlite3_bind_int64(s, 3, from->a_upto);
    sqlite3_bind_int64(s, 4, to->a_upto);
    sqlite3_bind_int64(s, 5, from->x_upto);
    sqlite3_bind_int64(s, 6, to->x_upto);
    while (err == OBX_OK && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        err = row_hash(s, prev, key, hash);
        if (err == OBX_OK && fn && fn(ctx, s, prev, hash))
            break;
        memcpy(prev, hash, 65);
        if (at_ms && sqlite3_column_int64(s, 1) > *at_ms)
            *at_ms = sqlite3_column_int64(s, 1);
        (*n)++;
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    return err;
}

static enum obx_err
last_seal(struct obx_store *st, struct seal *out)
{
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

/*
 * Seals the events written since the last seal, at most max transitions and max attempts,
 * into one audit_seals row. prev: the chain's hash after the legacy rows.
 */
static enum obx_err
seal_events(struct obx_store *st, int max, const unsigned char *key, const char *legacy_prev,
            int64_t *sealed)
{
    sqlite3_stmt *mx = obx_db_stmt(st->db, SQL_EVENTS_MAX);
    sqlite3_stmt *add = obx_db_stmt(st->db, SQL_ADD_SEAL);
    struct seal last, next;
    char prev[65];
    int64_t n = 0, at_ms = 0;
    enum obx_err err = (mx && add) ? last_seal(st, &last) : OBX_EDB;
    int rc;

    if (err != OBX_OK)
        return err;
    next = last;
    rc = sqlite3_step(mx);
    if (rc == SQLITE_ROW) {
        next.t_upto = sqlite3_column_int64(mx, 0);
        next.a_upto = sqlite3_column_int64(mx, 1);
        next.x_upto = sqlite3_column_int64(mx, 2);
    }
    sqlite3_reset(mx);
    if (rc != SQLITE_ROW)
        return obx_err_from_sqlite(rc);
    if (next.t_upto > last.t_upto + max)
        next.t_upto = last.t_upto + max;
    if (next.a_upto > last.a_upto + max)
        next.a_upto = last.a_upto + max;
    if (next.x_upto > last.x_upto + max)
        next.x_upto = last.x_upto + max;
    if (next.t_upto <= last.t_upto && next.a_upto <= last.a_upto && next.x_upto <= last.x_upto)
        return OBX_OK; /* nothing new */
    /* The migration's base row has no hash: the chain goes on from the legacy rows. */
    snprintf(prev, sizeof prev, "%s", last.hash[0] ? last.hash : legacy_prev);
    err = hash_messages(st);
    if (err == OBX_OK)
        err = chain_events(st, &last, &next, key, prev, &n, &at_ms, NULL, NULL);
    if (err != OBX_OK)
        return err;
    sqlite3_bind_int64(add, 1, next.t_upto);
    sqlite3_bind_int64(add, 2, next.a_upto);
    sqlite3_bind_int64(add, 3, n);
    sqlite3_bind_int64(add, 4, at_ms);
    obx_db_bind_text(add, 5, prev);
    sqlite3_bind_int64(add, 6, next.x_upto);
    err = obx_db_step_done(add);
    if (err == OBX_OK)
        *sealed += n;
    return err;
}

enum obx_err
obx_audit_seal(struct obx_store *st, int max, int64_t *sealed)
{
    const unsigned char *key = NULL;
    char prev[65];
    int left = 0;
    enum obx_err err = obx_db_begin(st->db);

    *sealed = 0;
    if (err == OBX_OK)
        err = seal_key(st, &key);
    if (err == OBX_OK)
        err = seal_rows(st, max, key, prev, sealed, &left);
    if (err == OBX_OK && !left)
        err = seal_events(st, max, key, prev, sealed);
    if (err == OBX_OK)
        return obx_db_commit(st->db);
    obx_db_rollback(st->db);
    *sealed = 0;
    return err;
}

static const char SQL_CHAIN[] =
    "SELECT id, at_ms, kind, channel_id, external_message_id, record, hash FROM audit_log"
    " WHERE id > ?1 ORDER BY id";

/* Fills the report's first problem: the row it concerns and why. */
static void
report_bad(struct obx_audit_report *r, int64_t id, const char *why)
{
    r->first_bad_id = id > 0 ? id : 1;
    snprintf(r->problem, sizeof r->problem, "%s", why);
}

/*
 * Checks the keyed segment's record against st's key (audit.h): the key is needed, must be
 * the chain's, the record's mac must hold, and no plain segment may follow a keyed one.
 */
static enum obx_err
verify_modes(struct obx_store *st, const struct modes *ms, struct obx_audit_report *r)
{
    char mac[65], why[160];
    int keyed_seen = 0;

    for (int i = 0; i < ms->n && !r->first_bad_id; i++) {
        const struct mode *m = &ms->m[i];
        if (!m->keyed) {
            if (keyed_seen)
                report_bad(r, m->from_id, "the chain goes back from keyed to plain SHA-256 here");
            continue;
        }
        if (!keyed_seen) {
            r->keyed_from_id = m->from_id;
            snprintf(r->key_id, sizeof r->key_id, "%s", m->key_id);
        }
        keyed_seen = 1;
        if (!st->audit_keyed) {
            snprintf(why, sizeof why, "the chain is keyed (HMAC-SHA256, key id %s) from here: "
                                      "verifying it needs the key (audit_key_file)", m->key_id);
            report_bad(r, m->from_id, why);
        } else if (strcmp(m->key_id, st->audit_key_id) != 0) {
            snprintf(why, sizeof why, "the key given (key id %s) is not the one the chain is "
                                      "keyed with (key id %s)", st->audit_key_id, m->key_id);
            report_bad(r, m->from_id, why);
        } else if (mode_mac(st->audit_key, m->from_id, m->key_id, mac) != OBX_OK) {
            return OBX_ENOMEM;
        } else if (strcmp(mac, m->mac) != 0) {
            report_bad(r, m->from_id, "the record of the keyed segment was changed (mac)");
        }
    }
    if (!r->first_bad_id && st->audit_keyed && !keyed_seen)
        report_bad(r, 1, "a key is given but no row is sealed with it: serve has not sealed with "
                         "the key yet, or the keyed segment's record was removed");
    return OBX_OK;
}

/* Compares one row with its recomputed hash; fills the report at the first mismatch. */
static enum obx_err
verify_row(sqlite3_stmt *s, const unsigned char *key, char prev[65], int64_t *expected_id,
           struct obx_audit_report *r)
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
    err = row_hash(s, prev, key, hash);
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

/* How much one slice may do (obx_audit_verify_slice): rows and monotonic time; 0 = no limit. */
struct budget {
    int max_rows;
    int64_t max_ms;
    int64_t start_ms;
    int rows;
};

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when the slice has done its share (checked before each row or seal; one always goes). */
static int
budget_spent(const struct budget *b)
{
    if (b->rows == 0)
        return 0;
    if (b->max_rows > 0 && b->rows >= b->max_rows)
        return 1;
    return b->max_ms > 0 && mono_ms() - b->start_ms >= b->max_ms;
}

static const char SQL_UNSEALED_EVENTS[] =
    "SELECT (SELECT count(*) FROM transitions WHERE id > ?1)"
    " + (SELECT count(*) FROM attempts WHERE id > ?2)"
    " + (SELECT count(*) FROM actions WHERE id > ?3)";

/* Reads one audit_seals row of SQL_SEALS. */
static void
seal_row(sqlite3_stmt *s, struct seal *out)
{
    out->id = sqlite3_column_int64(s, 0);
    out->t_upto = sqlite3_column_int64(s, 1);
    out->a_upto = sqlite3_column_int64(s, 2);
    out->events = sqlite3_column_int64(s, 3);
    out->at_ms = sqlite3_column_int64(s, 4);
    snprintf(out->hash, sizeof out->hash, "%s", text(s, 5));
    out->x_upto = sqlite3_column_int64(s, 6);
}

/*
 * Recomputes the seals after the chain start (after), going on from prev; the first seal at
 * or below after (the migration's base row, or the checkpoint's own seal) gives the range the
 * next one starts from.
 */
static enum obx_err
verify_seals(struct obx_store *st, const struct modes *ms, int64_t after, char prev[65],
             struct budget *bud, int *stopped, struct obx_audit_report *r)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_SEALS);
    sqlite3_stmt *u = obx_db_stmt(st->db, SQL_UNSEALED_EVENTS);
    struct seal base = {0}, cur;
    int64_t n = 0;
    enum obx_err err = OBX_OK;
    int rc = SQLITE_DONE, have_base = 0;

    if (!s || !u)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, after);
    while (err == OBX_OK && !r->first_bad_id && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        seal_row(s, &cur);
        if (!have_base || cur.id <= after || !cur.hash[0]) {
            base = cur;
            have_base = 1;
            continue;
        }
        if (budget_spent(bud)) {
            *stopped = 1;
            break;
        }
        bud->rows++;
        if (r->unsealed) {
            report_bad(r, cur.id, "sealed row after an unsealed one");
            break;
        }
        const struct mode *m = mode_of(ms, cur.id);
        err = chain_events(st, &base, &cur, m && m->keyed ? st->audit_key : NULL, prev, &n, NULL,
                           NULL, NULL);
        if (err == OBX_OK && (n != cur.events || strcmp(prev, cur.hash) != 0)) {
            r->first_bad_id = cur.id;
            snprintf(r->problem, sizeof r->problem,
                     "seal %lld: transitions %lld..%lld, attempts %lld..%lld or actions "
                     "%lld..%lld, or an earlier event, changed", (long long)cur.id,
                     (long long)base.t_upto + 1, (long long)cur.t_upto,
                     (long long)base.a_upto + 1, (long long)cur.a_upto,
                     (long long)base.x_upto + 1, (long long)cur.x_upto);
            break;
        }
        r->checked += n;
        r->seals++;
        r->head_id = cur.id;
        memcpy(r->head_hash, cur.hash, sizeof r->head_hash);
        base = cur;
    }
    sqlite3_reset(s);
    if (err == OBX_OK && !r->first_bad_id && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    if (err == OBX_OK && !r->first_bad_id && !*stopped && have_base) {
        sqlite3_bind_int64(u, 1, base.t_upto);
        sqlite3_bind_int64(u, 2, base.a_upto);
        sqlite3_bind_int64(u, 3, base.x_upto);
        if (sqlite3_step(u) == SQLITE_ROW)
            r->unsealed += sqlite3_column_int64(u, 0);
        sqlite3_reset(u);
    }
    return err;
}

static int
is_hash(const char *h)
{
    size_t n = strspn(h, "0123456789abcdef");
    return n == 64 && h[64] == '\0';
}

enum obx_err
obx_audit_verify_slice(struct obx_store *st, int max_rows, int64_t max_ms,
                       struct obx_audit_cursor *c, struct obx_audit_report *r, int *done)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_CHAIN);
    struct modes *ms = obx_calloc(1, sizeof *ms);
    struct budget bud = {max_rows, max_ms, mono_ms(), 0};
    char prev[65];
    int64_t after = 0, last_id = 0;
    enum obx_err err;
    int rc = SQLITE_DONE, stopped = 0;

    memset(r, 0, sizeof *r);
    *done = 0;
    if (!s || !ms) {
        obx_free(ms);
        return s ? OBX_ENOMEM : OBX_EDB;
    }
    if (c->started && !is_hash(c->hash)) {
        obx_free(ms);
        return OBX_EINVAL;
    }
    err = obx_db_exec(st->db, "BEGIN");
    if (err == OBX_OK)
        err = chain_start(st, &after, prev);
    /* Pruned since the last slice past where it stopped: the rows it would go on from are
     * gone, so start again from the new checkpoint. */
    if (err == OBX_OK && c->started && after > c->last_id)
        c->started = 0;
    if (err == OBX_OK && !c->started) {
        c->last_id = after;
        c->head_id = 0;
        c->checked = c->unsealed = c->seals = 0;
        memcpy(c->hash, prev, sizeof c->hash);
    }
    /* Going on: the cursor says where the chain was verified up to, and its hash there. */
    after = c->last_id;
    memcpy(prev, c->hash, sizeof prev);
    r->checked = c->checked;
    r->unsealed = c->unsealed;
    r->seals = c->seals;
    r->head_id = c->head_id;
    if (err == OBX_OK)
        err = load_modes(st, ms);
    if (err == OBX_OK)
        err = verify_modes(st, ms, r);
    snprintf(r->head_hash, sizeof r->head_hash, "%s", prev);
    sqlite3_bind_int64(s, 1, after);
    if (err == OBX_OK && !r->first_bad_id)
        rc = sqlite3_step(s);
    while (err == OBX_OK && rc == SQLITE_ROW && !r->first_bad_id) {
        const struct mode *m = mode_of(ms, sqlite3_column_int64(s, 0));
        /* Unsealed legacy rows end the legacy part: read them all in one slice. */
        if (!r->unsealed && budget_spent(&bud)) {
            stopped = 1;
            break;
        }
        bud.rows++;
        int64_t was = r->checked;
        err = verify_row(s, m && m->keyed ? st->audit_key : NULL, prev, &last_id, r);
        if (r->checked > was) {
            after = last_id;
            r->seals++;
        }
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    if (err == OBX_OK && !r->first_bad_id && !stopped)
        err = verify_seals(st, ms, after, prev, &bud, &stopped, r);
    obx_free(ms);
    if (obx_db_exec(st->db, "COMMIT") != OBX_OK && err == OBX_OK)
        err = OBX_EDB;
    if (err != OBX_OK)
        return err;
    c->started = 1;
    if (r->head_id > c->last_id)
        c->last_id = r->head_id;
    c->head_id = r->head_id;
    c->checked = r->checked;
    c->unsealed = r->unsealed;
    c->seals = r->seals;
    memcpy(c->hash, r->head_hash, sizeof c->hash);
    *done = !stopped || r->first_bad_id != 0;
    return OBX_OK;
}

enum obx_err
obx_audit_verify(struct obx_store *st, struct obx_audit_report *r)
{
    struct obx_audit_cursor c;
    int done = 0;

    memset(&c, 0, sizeof c);
    /* No limit: the whole chain in one read transaction. */
    return obx_audit_verify_slice(st, 0, 0, &c, r, &done);
}

/* prev_hash: the hash of the row before, in the whole chain (not just the exported slice). */
static const char SQL_EXPORT[] =
    "SELECT a.id, a.at_ms, a.kind, a.channel_id, a.external_message_id, a.record, a.hash,"
    " coalesce((SELECT p.hash FROM audit_log p WHERE p.id < a.id ORDER BY p.id DESC LIMIT 1),"
    "  (SELECT hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1), ?4)"
    " FROM audit_log a WHERE a.at_ms >= ?1 AND a.at_ms < ?2 AND (?3 IS NULL OR a.channel_id = ?3)"
    " ORDER BY a.id";

static enum obx_err
export_legacy(struct obx_store *st, int64_t since_ms, int64_t until_ms, const char *channel_id,
              obx_audit_entry_fn fn, void *ctx, int *stop)
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
        if (fn(ctx, &e)) {
            *stop = 1;
            break;
        }
        rc = sqlite3_step(s);
    }
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/* The export of the events (after the legacy rows): filter and callback. */
struct export_ev {
    int64_t since_ms, until_ms;
    const char *channel_id;
    obx_audit_entry_fn fn;
    void *ctx;
    int sealed; /* 0: events after the last seal, or in a keyed segment without its key */
    int stop;
};

static int
export_event(void *ctx, sqlite3_stmt *row, const char *prev, const char *hash)
{
    struct export_ev *x = ctx;
    struct obx_audit_entry e;

    e.at_ms = sqlite3_column_int64(row, 1);
    e.channel_id = text(row, 3);
    if (e.at_ms < x->since_ms || e.at_ms >= x->until_ms ||
        (x->channel_id && strcmp(x->channel_id, e.channel_id) != 0))
        return 0;
    e.id = sqlite3_column_int64(row, 0);
    e.kind = text(row, 2);
    e.external_message_id = text(row, 4);
    e.record = text(row, 5);
    e.prev_hash = x->sealed ? prev : "";
    e.hash = x->sealed ? hash : NULL;
    x->stop = x->fn(x->ctx, &e);
    return x->stop;
}

enum obx_err
obx_audit_export(struct obx_store *st, int64_t since_ms, int64_t until_ms, const char *channel_id,
                 obx_audit_entry_fn fn, void *ctx)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_SEALS);
    struct modes *ms = obx_calloc(1, sizeof *ms);
    struct export_ev x = {since_ms, until_ms, channel_id, fn, ctx, 1, 0};
    struct seal base = {0}, cur, open_end;
    char prev[65], legacy_prev[65];
    int64_t after = 0, n = 0;
    enum obx_err err = (s && ms) ? OBX_OK : (ms ? OBX_EDB : OBX_ENOMEM);
    int rc = SQLITE_DONE, have_base = 0;

    if (err == OBX_OK)
        err = export_legacy(st, since_ms, until_ms, channel_id, fn, ctx, &x.stop);
    if (err == OBX_OK)
        err = load_modes(st, ms);
    if (err == OBX_OK)
        err = chain_start(st, &after, prev);
    if (err == OBX_OK && !x.stop)
        err = last_hash(st, legacy_prev);
    if (err != OBX_OK || x.stop)
        goto out;
    snprintf(prev, sizeof prev, "%s", legacy_prev);
    sqlite3_bind_int64(s, 1, after);
    while (err == OBX_OK && !x.stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        seal_row(s, &cur);
        if (!have_base || cur.id <= after || !cur.hash[0]) {
            base = cur;
            if (cur.hash[0])
                snprintf(prev, sizeof prev, "%s", cur.hash);
            have_base = 1;
            continue;
        }
        const struct mode *m = mode_of(ms, cur.id);
        x.sealed = !(m && m->keyed && !st->audit_keyed);
        err = chain_events(st, &base, &cur, m && m->keyed ? st->audit_key : NULL, prev, &n,
                           NULL, export_event, &x);
        /* Go on from the stored hash: an export does not verify (audit verify does). */
        snprintf(prev, sizeof prev, "%s", cur.hash);
        base = cur;
    }
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        err = obx_err_from_sqlite(rc);
    if (err == OBX_OK && !x.stop && have_base) {
        /* Events not sealed yet: exported without hashes. */
        open_end = base;
        open_end.t_upto = open_end.a_upto = open_end.x_upto = INT64_MAX;
        x.sealed = 0;
        err = chain_events(st, &base, &open_end, NULL, prev, &n, NULL, export_event, &x);
    }
out:
    obx_free(ms);
    return err;
}

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
/* Actions have no message to wait for: they go once a checkpoint covers them. */
static const char SQL_PRUNE_ACTIONS[] =
    "DELETE FROM actions WHERE id IN (SELECT id FROM actions WHERE id <= ?1 ORDER BY id"
    " LIMIT ?2)";
static const char SQL_PRUNE_SEALS[] =
    "DELETE FROM audit_seals WHERE id IN (SELECT id FROM audit_seals WHERE id < ?1 ORDER BY id"
    " LIMIT ?2)";
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
/*
 * Deletes up to max events behind the checkpoint's seal (covered) whose message is gone, then
 * the seals before it; *n counts the events deleted.
 */
static enum obx_err
prune_events(struct obx_store *st, int64_t covered, int max, int64_t *n)
{
    sqlite3_stmt *rg = obx_db_stmt(st->db, SQL_PRUNE_SEAL_RANGE);
    const char *dels[] = {SQL_PRUNE_TRANSITIONS, SQL_PRUNE_ATTEMPTS, SQL_PRUNE_ACTIONS};
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
    for (int i = 0; i < 3 && err == OBX_OK && max > 0; i++) {
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
    if (err == OBX_OK && covered > 0 && n < max_rows)
        err = prune_events(st, covered, max_rows - (int)n, &n);
    err = obx_db_end(st->db, err);
    if (err != OBX_OK)
        return err;
    *removed = n;
    *more = n == max_rows;
    return OBX_OK;
}
