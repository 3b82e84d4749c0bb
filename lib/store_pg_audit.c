/* store_pg_audit: the audit chain's tables on PostgreSQL (store_pg_audit.h). */
#include "store_pg_audit.h"

#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "pg.h"
#include "store_pg_dash.h"

/* Rows read per query where a table may be long (seals, legacy rows): memory stays bounded. */
#define PAGE_ROWS 1000

static const char *
text_or_empty(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

static const char *
text_or_null(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static int64_t
num(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Runs sql with up to 8 integer parameters; NULL (error kept on the connection) on failure. */
static PGresult *
run_ints(struct obx_store *st, const char *sql, int n, const int64_t *v)
{
    char text[8][24];
    const char *vals[8];

    for (int i = 0; i < n && i < 8; i++) {
        snprintf(text[i], sizeof text[i], "%lld", (long long)v[i]);
        vals[i] = text[i];
    }
    return obx_pg_run(st->pg, sql, n, vals, NULL, NULL);
}

/* ---- the records, as SQLite's json_object() writes them --------------------------------- */

static enum obx_err
sqlite_json_string(struct obx_buf *b, const char *s)
{
    enum obx_err err = obx_buf_append(b, "\"", 1);
    const char *run = s;

    for (const char *p = s; err == OBX_OK && *p; p++) {
        unsigned char c = (unsigned char)*p;
        char esc[8];
        const char *e = NULL;

        if (c == '"')
            e = "\\\"";
        else if (c == '\\')
            e = "\\\\";
        else if (c == '\b')
            e = "\\b";
        else if (c == '\t')
            e = "\\t";
        else if (c == '\n')
            e = "\\n";
        else if (c == '\f')
            e = "\\f";
        else if (c == '\r')
            e = "\\r";
        else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            e = esc;
        }
        if (!e)
            continue;
        err = obx_buf_append(b, run, (size_t)(p - run));
        if (err == OBX_OK)
            err = obx_buf_puts(b, e);
        run = p + 1;
    }
    if (err == OBX_OK)
        err = obx_buf_puts(b, run);
    return err == OBX_OK ? obx_buf_append(b, "\"", 1) : err;
}

enum obx_err
obx_store_pg_audit_json_object(struct obx_buf *b, const struct obx_store_pg_audit_member *m, int n)
{
    enum obx_err err = obx_buf_append(b, "{", 1);

    for (int i = 0; err == OBX_OK && i < n; i++) {
        if (i)
            err = obx_buf_append(b, ",", 1);
        if (err == OBX_OK)
            err = sqlite_json_string(b, m[i].key);
        if (err == OBX_OK)
            err = obx_buf_append(b, ":", 1);
        if (err != OBX_OK)
            break;
        if (!m[i].value)
            err = obx_buf_puts(b, "null");
        else if (m[i].number)
            err = obx_buf_puts(b, m[i].value);
        else
            err = sqlite_json_string(b, m[i].value);
    }
    return err == OBX_OK ? obx_buf_append(b, "}", 1) : err;
}

/* ---- keying -------------------------------------------------------------------------- */

enum obx_err
obx_store_pg_audit_modes(struct obx_store *st, struct obx_audit_mode *out, int max, int *n)
{
    PGresult *r = obx_pg_run(st->pg,
                             "SELECT from_id, mode, key_id, mac FROM audit_chain_modes"
                             " ORDER BY from_id, id",
                             0, NULL, NULL, NULL);

    *n = 0;
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) > max) {
        PQclear(r);
        return OBX_ECONFIG; /* more keyings than any real history: refuse, do not guess */
    }
    for (int i = 0; i < PQntuples(r); i++) {
        struct obx_audit_mode *m = &out[(*n)++];
        m->from_id = num(r, i, 0);
        m->keyed = strcmp(text_or_empty(r, i, 1), "hmac-sha256") == 0;
        snprintf(m->key_id, sizeof m->key_id, "%s", text_or_empty(r, i, 2));
        snprintf(m->mac, sizeof m->mac, "%s", text_or_empty(r, i, 3));
    }
    PQclear(r);
    return OBX_OK;
}

/* Reads the first column of the first row as an integer (0 when NULL or no row). */
static enum obx_err
one_int(PGresult *r, int64_t *out)
{
    *out = 0;
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) > 0)
        *out = num(r, 0, 0);
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_audit_next_row_id(struct obx_store *st, int64_t *id)
{
    return one_int(obx_pg_run(st->pg,
                              "SELECT coalesce((SELECT min(id) FROM audit_log WHERE hash IS NULL),"
                              " (SELECT max(id) + 1 FROM audit_seals), 1)",
                              0, NULL, NULL, NULL),
                   id);
}

/* Runs a statement that returns no rows; OBX_EDB (error kept) when it fails. */
static enum obx_err
done(PGresult *r)
{
    if (!r)
        return OBX_EDB;
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_audit_add_keyed_mode(struct obx_store *st, int64_t from_id, const char *key_id,
                                  const char *mac)
{
    char from[24], now[24];
    const char *vals[4] = {from, key_id, mac, now};

    snprintf(from, sizeof from, "%lld", (long long)from_id);
    snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
    return done(obx_pg_run(st->pg,
                           "INSERT INTO audit_chain_modes (from_id, mode, key_id, mac,"
                           " created_at_ms) VALUES ($1::bigint, 'hmac-sha256', $2, $3, $4::bigint)",
                           4, vals, NULL, NULL));
}

/* ---- where the chain starts ---------------------------------------------------------- */

/* The first row's integer column 0 and text column 1 (a hash); *found = 0 when no row. */
static enum obx_err
id_and_hash(PGresult *r, int64_t *id, char hash[65], int *found)
{
    if (id)
        *id = 0;
    *found = 0;
    hash[0] = '\0';
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) > 0) {
        if (id)
            *id = num(r, 0, 0);
        snprintf(hash, 65, "%s", text_or_empty(r, 0, 1));
        *found = 1;
    }
    PQclear(r);
    return OBX_OK;
}

enum obx_err
obx_store_pg_audit_last_checkpoint(struct obx_store *st, int64_t *upto_id, char hash[65],
                                   int *found)
{
    return id_and_hash(obx_pg_run(st->pg,
                                  "SELECT upto_id, hash FROM audit_checkpoints"
                                  " ORDER BY id DESC LIMIT 1",
                                  0, NULL, NULL, NULL),
                       upto_id, hash, found);
}

enum obx_err
obx_store_pg_audit_last_legacy_hash(struct obx_store *st, char hash[65], int *found)
{
    return id_and_hash(obx_pg_run(st->pg,
                                  "SELECT id, hash FROM audit_log WHERE hash IS NOT NULL"
                                  " ORDER BY id DESC LIMIT 1",
                                  0, NULL, NULL, NULL),
                       NULL, hash, found);
}

/* ---- sealing ------------------------------------------------------------------------- */

/* Columns 0..5 of a legacy row (and 6, its hash, when with_hash) of result row i. */
static void
legacy_row(PGresult *r, int i, int with_hash, struct obx_audit_row *out)
{
    memset(out, 0, sizeof *out);
    out->id = num(r, i, 0);
    out->at_ms = num(r, i, 1);
    out->kind = text_or_empty(r, i, 2);
    out->channel_id = text_or_empty(r, i, 3);
    out->external_message_id = text_or_empty(r, i, 4);
    out->record = text_or_empty(r, i, 5);
    if (with_hash)
        out->hash = text_or_null(r, i, 6);
}

enum obx_err
obx_store_pg_audit_seal_legacy(struct obx_store *st, int max, obx_audit_hash_fn fn, void *ctx,
                               int *n)
{
    int64_t lim = max;
    PGresult *r = run_ints(st,
                           "SELECT id, at_ms, kind, channel_id, external_message_id, record"
                           " FROM audit_log WHERE hash IS NULL ORDER BY id LIMIT $1::bigint",
                           1, &lim);
    enum obx_err err = r ? OBX_OK : OBX_EDB;

    *n = 0;
    for (int i = 0; r && i < PQntuples(r) && err == OBX_OK; i++) {
        struct obx_audit_row row;
        char hash[65], id[24];
        const char *vals[2] = {id, hash};

        legacy_row(r, i, 0, &row);
        err = fn(ctx, &row, hash);
        snprintf(id, sizeof id, "%lld", (long long)row.id);
        if (err == OBX_OK)
            err = done(obx_pg_run(st->pg, "UPDATE audit_log SET hash = $2 WHERE id = $1::bigint", 2,
                                  vals, NULL, NULL));
        (*n)++;
    }
    PQclear(r);
    return err;
}

/* The last seal's transaction bound ('0' after an id-range seal: every event is after it). */
#define LAST_XACT "(SELECT xact_upto FROM audit_seals ORDER BY id DESC LIMIT 1)"

/*
 * Every message with events not sealed yet gets its identity row before its first seal
 * (SQLite's triggers write it with the first event; here that would be one more write per
 * event on the delivery path). Messages deleted before are there already (0009's trigger).
 *
 * Both statements read the outbox one primary-key probe per message (`= ANY (ARRAY(...))`,
 * a LATERAL subquery kept apart by OFFSET 0): as joins, their plans hashed a scan of the
 * whole outbox and of every identity ever written, once a second, until the tables were
 * large enough for the planner to prefer probes (measured 2026-12-07 at 50,000 messages:
 * the identities took 30-50 ms a seal, 14 ms of it the outbox's scan).
 */
static const char SQL_IDENTITIES[] =
    "INSERT INTO audit_messages (message_id, channel_id, external_message_id)"
    " SELECT o.id, o.channel_id, o.external_message_id FROM outbox o"
    " WHERE o.id = ANY (ARRAY(SELECT t.message_id FROM transitions t WHERE t.xact > " LAST_XACT
    "  UNION SELECT a.message_id FROM attempts a WHERE a.xact > " LAST_XACT "))"
    " AND NOT EXISTS (SELECT 1 FROM audit_messages m WHERE m.message_id = o.id)"
    " ON CONFLICT (message_id) DO NOTHING";

/* The next 256 identities without their sent hash (audit_messages_unhashed, in order). */
static const char SQL_UNHASHED[] =
    "SELECT m.message_id, o.id IS NOT NULL, o.business_id, o.external_conversation_id,"
    " o.content, o.sender_type, o.consumer_name, o.consumer_image"
    " FROM (SELECT message_id FROM audit_messages WHERE sent_sha256 IS NULL"
    "  ORDER BY message_id LIMIT 256) m"
    " LEFT JOIN LATERAL (SELECT * FROM outbox x WHERE x.id = m.message_id OFFSET 0) o ON true"
    " ORDER BY m.message_id";

static const char SQL_SET_SENT[] =
    "UPDATE audit_messages m SET sent_sha256 = v.h"
    " FROM unnest($1::bigint[], $2::bytea[]) AS v(id, h) WHERE m.message_id = v.id"
    " AND m.message_id = ANY ($1::bigint[])"; /* probes, as above */

/* What was sent (audit.h, "sent_sha256"), as SQLite's json_object writes it, digested. */
static enum obx_err
sent_digest(PGresult *r, int i, struct obx_buf *text, obx_audit_digest_fn fn, void *ctx,
            unsigned char out[32])
{
    static const char *const keys[6] = {"business_id",   "external_conversation_id",
                                        "content",       "sender_type",
                                        "consumer_name", "consumer_image"};
    struct obx_store_pg_audit_member m[6];
    enum obx_err err;

    for (int k = 0; k < 6; k++)
        m[k] = (struct obx_store_pg_audit_member){keys[k], text_or_null(r, i, 2 + k), 0};
    obx_buf_reset(text);
    err = obx_store_pg_audit_json_object(text, m, 6);
    return err == OBX_OK ? fn(ctx, text->data, text->len, out) : err;
}

/* One batch of up to 256 messages; *n = how many were read. */
static enum obx_err
hash_batch(struct obx_store *st, struct obx_buf *ids, struct obx_buf *hashes, struct obx_buf *text,
           obx_audit_digest_fn fn, void *ctx, int *n)
{
    PGresult *r = obx_pg_run(st->pg, SQL_UNHASHED, 0, NULL, NULL, NULL);
    enum obx_err err = r ? OBX_OK : OBX_EDB;
    const char *vals[2];

    *n = r ? PQntuples(r) : 0;
    obx_buf_reset(ids);
    obx_buf_reset(hashes);
    for (int i = 0; i < *n && err == OBX_OK; i++) {
        unsigned char h[32];
        char hex[2 + 64 + 1] = "\\x";
        /* Empty: the message was gone before its first seal. */
        if (strcmp(PQgetvalue(r, i, 1), "t") == 0) {
            err = sent_digest(r, i, text, fn, ctx, h);
            for (int k = 0; err == OBX_OK && k < 32; k++)
                snprintf(hex + 2 + 2 * k, 3, "%02x", h[k]);
        }
        if (err == OBX_OK)
            err = obx_pg_array_int(ids, num(r, i, 0), 0);
        if (err == OBX_OK)
            err = obx_pg_array_text(hashes, hex);
    }
    PQclear(r);
    if (err == OBX_OK && *n) {
        err = obx_pg_array_end(ids);
        if (err == OBX_OK)
            err = obx_pg_array_end(hashes);
        vals[0] = obx_buf_str(ids);
        vals[1] = obx_buf_str(hashes);
        if (err == OBX_OK)
            err = done(obx_pg_run(st->pg, SQL_SET_SENT, 2, vals, NULL, NULL));
    }
    return err;
}

enum obx_err
obx_store_pg_audit_fill_sent_hashes(struct obx_store *st, obx_audit_digest_fn fn, void *ctx)
{
    struct obx_buf ids, hashes, text;
    enum obx_err err = done(obx_pg_run(st->pg, SQL_IDENTITIES, 0, NULL, NULL, NULL));
    int n = 256;

    obx_buf_init(&ids, 64 * 1024);
    obx_buf_init(&hashes, 64 * 1024);
    obx_buf_init(&text, 4 * 1024 * 1024);
    while (err == OBX_OK && n == 256)
        err = hash_batch(st, &ids, &hashes, &text, fn, ctx, &n);
    obx_buf_release(&ids);
    obx_buf_release(&hashes);
    obx_buf_release(&text);
    return err;
}

#define SEAL_COLUMNS \
    "id, transitions_upto, attempts_upto, events, at_ms, hash, actions_upto, xact_upto::text"

static void
read_seal(PGresult *r, int i, struct obx_audit_seal *s)
{
    memset(s, 0, sizeof *s);
    s->id = num(r, i, 0);
    s->t_upto = num(r, i, 1);
    s->a_upto = num(r, i, 2);
    s->events = num(r, i, 3);
    s->at_ms = num(r, i, 4);
    snprintf(s->hash, sizeof s->hash, "%s", text_or_empty(r, i, 5));
    s->x_upto = num(r, i, 6);
    s->xact_upto = num(r, i, 7);
}

enum obx_err
obx_store_pg_audit_last_seal(struct obx_store *st, struct obx_audit_seal *out)
{
    PGresult *r = obx_pg_run(st->pg,
                             "SELECT " SEAL_COLUMNS " FROM audit_seals ORDER BY id DESC LIMIT 1", 0,
                             NULL, NULL, NULL);

    memset(out, 0, sizeof *out);
    if (!r)
        return OBX_EDB;
    if (PQntuples(r) > 0)
        read_seal(r, 0, out);
    PQclear(r);
    return OBX_OK;
}

/*
 * The base row is the sealers' lock: one node seals at a time, the others skip their turn
 * (their rows are in this seal or the next). Held until the transaction ends.
 */
enum obx_err
obx_store_pg_audit_lock(struct obx_store *st, int *got)
{
    PGresult *r = obx_pg_run(st->pg,
                             "SELECT 1 FROM audit_seals WHERE id = 0 FOR UPDATE SKIP LOCKED", 0,
                             NULL, NULL, NULL);

    *got = 0;
    if (!r)
        return OBX_EDB;
    *got = PQntuples(r) > 0;
    PQclear(r);
    return OBX_OK;
}

/*
 * Every transaction below the snapshot's xmin has ended: their events are all there, and no
 * transaction still running or yet to start can add one below it. The first transaction with
 * events after the last seal bounds how far one seal reaches (at most max transactions on).
 */
static const char SQL_NEXT_SEAL[] =
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text,"
    " least((SELECT min(xact) FROM transitions WHERE xact > $1::xid8),"
    "       (SELECT min(xact) FROM attempts WHERE xact > $1::xid8),"
    "       (SELECT min(xact) FROM actions WHERE xact > $1::xid8))::text";

enum obx_err
obx_store_pg_audit_next_seal(struct obx_store *st, const struct obx_audit_seal *last, int max,
                             struct obx_audit_seal *next, int *any)
{
    int64_t lo = last->xact_upto; /* an id-range seal (0): its events have xact 0 */
    PGresult *r = run_ints(st, SQL_NEXT_SEAL, 1, &lo);
    int64_t xmin, first;

    if (!r)
        return OBX_EDB;
    xmin = num(r, 0, 0);
    first = PQgetisnull(r, 0, 1) ? INT64_MAX : num(r, 0, 1);
    PQclear(r);
    if (first >= xmin)
        return OBX_OK; /* nothing new that has ended */
    next->xact_upto = xmin - 1;
    if (next->xact_upto > first + max)
        next->xact_upto = first + max;
    *any = 1;
    return OBX_OK;
}

enum obx_err
obx_store_pg_audit_add_seal(struct obx_store *st, const struct obx_audit_seal *s)
{
    char v[7][24];
    const char *vals[8];
    int64_t ints[7] = {s->id, s->t_upto, s->a_upto, s->x_upto, s->xact_upto, s->events, s->at_ms};

    for (int i = 0; i < 7; i++) {
        snprintf(v[i], sizeof v[i], "%lld", (long long)ints[i]);
        vals[i] = v[i];
    }
    vals[7] = s->hash;
    /* The id is the previous seal's + 1: a second sealer of the same range fails here. */
    return done(obx_pg_run(st->pg,
                           "INSERT INTO audit_seals (id, transitions_upto, attempts_upto,"
                           " actions_upto, xact_upto, events, at_ms, hash) VALUES ($1::bigint,"
                           " $2::bigint, $3::bigint, $4::bigint, $5::xid8, $6::bigint,"
                           " $7::bigint, $8)",
                           8, vals, NULL, NULL));
}

/* ---- reading the chain --------------------------------------------------------------- */

/*
 * The events of a seal, in chain order (as SQLite's: transitions, attempts, actions, each by
 * id), with the columns of their records: 0 kind (0 transition, 1 attempt, 2 action), 1 id,
 * 2 at_ms, 3 channel_id, 4 external_message_id, 5 message_id, 6.. the record's fields.
 */
#define SQL_EVENTS(T_WHERE, A_WHERE, X_WHERE)                                                 \
    "SELECT 0, t.id, t.at_ms, m.channel_id, m.external_message_id, t.message_id,"             \
    " t.from_state, t.to_state, t.reason, NULL, NULL, NULL"                                   \
    " FROM transitions t LEFT JOIN audit_messages m ON m.message_id = t.message_id"           \
    " WHERE " T_WHERE " UNION ALL "                                                           \
    "SELECT 1, a.id, a.started_at_ms, m.channel_id, m.external_message_id, a.message_id,"     \
    " coalesce(encode(m.sent_sha256, 'hex'), ''), a.duration_ms::text, a.http_status::text,"  \
    " a.outcome, a.error, a.response_excerpt"                                                 \
    " FROM attempts a LEFT JOIN audit_messages m ON m.message_id = a.message_id"              \
    " WHERE " A_WHERE " UNION ALL "                                                           \
    "SELECT 2, x.id, x.at_ms, x.key, '', NULL, x.action, x.scope, x.reason, x.by, NULL, NULL" \
    " FROM actions x WHERE " X_WHERE " ORDER BY 1, 2"

static const char SQL_EVENTS_BY_XACT[] =
    SQL_EVENTS("t.xact > $1::text::xid8 AND t.xact <= $2::text::xid8",
               "a.xact > $1::text::xid8 AND a.xact <= $2::text::xid8",
               "x.xact > $1::text::xid8 AND x.xact <= $2::text::xid8");
/* Seals a move from SQLite brought: id ranges, over the events it brought (xact 0). */
static const char SQL_EVENTS_BY_ID[] =
    SQL_EVENTS("t.xact = '0' AND t.id > $1::bigint AND t.id <= $2::bigint",
               "a.xact = '0' AND a.id > $3::bigint AND a.id <= $4::bigint",
               "x.xact = '0' AND x.id > $5::bigint AND x.id <= $6::bigint");

/* Result row i as a canonical row, its record written into rec. */
static enum obx_err
event_row(PGresult *r, int i, struct obx_buf *rec, struct obx_audit_row *out)
{
    int kind = (int)num(r, i, 0);
    const char *message_id = text_or_null(r, i, 5);
    struct obx_store_pg_audit_member m[7];
    int n = 0;
    enum obx_err err;

    memset(out, 0, sizeof *out);
    out->id = num(r, i, 1);
    out->at_ms = num(r, i, 2);
    out->channel_id = text_or_empty(r, i, 3);
    out->external_message_id = text_or_empty(r, i, 4);
    if (kind == 0) {
        out->kind = "transition";
        m[n++] = (struct obx_store_pg_audit_member){"message_id", message_id, 1};
        m[n++] = (struct obx_store_pg_audit_member){"from", text_or_null(r, i, 6), 0};
        m[n++] = (struct obx_store_pg_audit_member){"to", text_or_null(r, i, 7), 0};
        m[n++] = (struct obx_store_pg_audit_member){"reason", text_or_null(r, i, 8), 0};
    } else if (kind == 1) {
        out->kind = "attempt";
        m[n++] = (struct obx_store_pg_audit_member){"message_id", message_id, 1};
        m[n++] = (struct obx_store_pg_audit_member){"sent_sha256", text_or_null(r, i, 6), 0};
        m[n++] = (struct obx_store_pg_audit_member){"duration_ms", text_or_null(r, i, 7), 1};
        m[n++] = (struct obx_store_pg_audit_member){"http_status", text_or_null(r, i, 8), 1};
        m[n++] = (struct obx_store_pg_audit_member){"outcome", text_or_null(r, i, 9), 0};
        m[n++] = (struct obx_store_pg_audit_member){"error", text_or_null(r, i, 10), 0};
        m[n++] = (struct obx_store_pg_audit_member){"response_excerpt", text_or_null(r, i, 11), 0};
    } else {
        out->kind = text_or_empty(r, i, 6);
        m[n++] = (struct obx_store_pg_audit_member){"scope", text_or_null(r, i, 7), 0};
        m[n++] = (struct obx_store_pg_audit_member){"reason", text_or_null(r, i, 8), 0};
        m[n++] = (struct obx_store_pg_audit_member){"by", text_or_null(r, i, 9), 0};
    }
    obx_buf_reset(rec);
    err = obx_store_pg_audit_json_object(rec, m, n);
    out->record = obx_buf_str(rec);
    return err;
}

enum obx_err
obx_store_pg_audit_events(struct obx_store *st, const struct obx_audit_seal *from,
                          const struct obx_audit_seal *to, obx_audit_row_fn fn, void *ctx)
{
    struct obx_buf rec;
    PGresult *r;
    enum obx_err err = OBX_OK;

    if (to->xact_upto > 0) {
        /* After an id-range seal (xact_upto 0) the transactions start from 0: its events
         * all have xact 0. */
        int64_t v[2] = {from->xact_upto, to->xact_upto};
        r = run_ints(st, SQL_EVENTS_BY_XACT, 2, v);
    } else {
        int64_t v[6] = {from->t_upto, to->t_upto,   from->a_upto,
                        to->a_upto,   from->x_upto, to->x_upto};
        r = run_ints(st, SQL_EVENTS_BY_ID, 6, v);
    }
    if (!r)
        return OBX_EDB;
    obx_buf_init(&rec, 4 * 1024 * 1024);
    for (int i = 0; i < PQntuples(r) && err == OBX_OK; i++) {
        struct obx_audit_row row;
        err = event_row(r, i, &rec, &row);
        if (err == OBX_OK && fn(ctx, &row))
            break;
    }
    obx_buf_release(&rec);
    PQclear(r);
    return err;
}

enum obx_err
obx_store_pg_audit_seals(struct obx_store *st, int64_t after, obx_audit_seal_fn fn, void *ctx)
{
    int64_t v[2];
    enum obx_err err = one_int(run_ints(st,
                                        "SELECT coalesce((SELECT max(id) FROM audit_seals"
                                        " WHERE id <= $1::bigint), 0)",
                                        1, &after),
                               &v[0]);
    int rows = PAGE_ROWS, stop = 0;

    v[1] = PAGE_ROWS;
    /* A page at a time; fn may read the events of each seal meanwhile. */
    while (err == OBX_OK && rows == PAGE_ROWS && !stop) {
        PGresult *r = run_ints(st,
                               "SELECT " SEAL_COLUMNS " FROM audit_seals WHERE id >= $1::bigint"
                               " ORDER BY id LIMIT $2::bigint",
                               2, v);
        if (!r)
            return OBX_EDB;
        rows = PQntuples(r);
        for (int i = 0; i < rows && !stop; i++) {
            struct obx_audit_seal s;
            read_seal(r, i, &s);
            stop = fn(ctx, &s);
            v[0] = s.id + 1;
        }
        PQclear(r);
    }
    return err;
}

enum obx_err
obx_store_pg_audit_count_events_after(struct obx_store *st, const struct obx_audit_seal *base,
                                      int64_t *n)
{
    /* Events of later transactions, and those a move from SQLite brought past base's ids. */
    int64_t v[4] = {base->xact_upto, base->t_upto, base->a_upto, base->x_upto};

    return one_int(run_ints(st,
                            "SELECT (SELECT count(*) FROM transitions WHERE xact > $1::text::xid8"
                            "        OR (xact = '0' AND id > $2::bigint))"
                            " + (SELECT count(*) FROM attempts WHERE xact > $1::text::xid8"
                            "        OR (xact = '0' AND id > $3::bigint))"
                            " + (SELECT count(*) FROM actions WHERE xact > $1::text::xid8"
                            "        OR (xact = '0' AND id > $4::bigint))",
                            4, v),
                   n);
}

enum obx_err
obx_store_pg_audit_legacy_rows(struct obx_store *st, int64_t after, obx_audit_row_fn fn, void *ctx)
{
    int64_t v[2] = {after, PAGE_ROWS};
    int rows = PAGE_ROWS, stop = 0;

    while (rows == PAGE_ROWS && !stop) {
        PGresult *r = run_ints(st,
                               "SELECT id, at_ms, kind, channel_id, external_message_id, record,"
                               " hash FROM audit_log WHERE id > $1::bigint ORDER BY id"
                               " LIMIT $2::bigint",
                               2, v);
        if (!r)
            return OBX_EDB;
        rows = PQntuples(r);
        for (int i = 0; i < rows && !stop; i++) {
            struct obx_audit_row row;
            legacy_row(r, i, 1, &row);
            stop = fn(ctx, &row);
            v[0] = row.id;
        }
        PQclear(r);
    }
    return OBX_OK;
}

/* prev_hash: the hash of the row before, in the whole chain (not just the exported slice). */
static const char SQL_EXPORT[] =
    "SELECT a.id, a.at_ms, a.kind, a.channel_id, a.external_message_id, a.record, a.hash,"
    " coalesce((SELECT p.hash FROM audit_log p WHERE p.id < a.id ORDER BY p.id DESC LIMIT 1),"
    "  (SELECT hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1), $4)"
    " FROM audit_log a WHERE a.at_ms >= $1::bigint AND a.at_ms < $2::bigint"
    " AND ($3::text IS NULL OR a.channel_id = $3) AND a.id > $5::bigint ORDER BY a.id LIMIT 1000";

enum obx_err
obx_store_pg_audit_export_legacy(struct obx_store *st, int64_t since_ms, int64_t until_ms,
                                 const char *channel_id, const char *genesis, obx_audit_row_fn fn,
                                 void *ctx)
{
    char since[24], until[24], after[24] = "0";
    const char *vals[5] = {since, until, channel_id, genesis, after};
    int rows = 1000, stop = 0;

    snprintf(since, sizeof since, "%lld", (long long)since_ms);
    snprintf(until, sizeof until, "%lld", (long long)until_ms);
    while (rows == 1000 && !stop) {
        PGresult *r = obx_pg_run(st->pg, SQL_EXPORT, 5, vals, NULL, NULL);
        if (!r)
            return OBX_EDB;
        rows = PQntuples(r);
        for (int i = 0; i < rows && !stop; i++) {
            struct obx_audit_row row;
            legacy_row(r, i, 1, &row);
            row.prev_hash = text_or_empty(r, i, 7);
            stop = fn(ctx, &row);
            snprintf(after, sizeof after, "%lld", (long long)row.id);
        }
        PQclear(r);
    }
    return OBX_OK;
}

/* ---- pruning ------------------------------------------------------------------------- */

enum obx_err
obx_store_pg_audit_prune_scan(struct obx_store *st, int64_t before_ms, int max_rows,
                              int64_t *upto_id, char upto_hash[65], int *more)
{
    int64_t v[2] = {*upto_id, max_rows};
    PGresult *r = run_ints(st,
                           "SELECT id, at_ms, hash FROM audit_log WHERE id > $1::bigint"
                           " UNION ALL SELECT id, at_ms, hash FROM audit_seals"
                           " WHERE id > $1::bigint AND hash <> '' ORDER BY 1 LIMIT $2::bigint",
                           2, v);
    int n = 0;

    *more = 0;
    if (!r)
        return OBX_EDB;
    for (int i = 0; i < PQntuples(r); i++, n++) {
        /* The prefix ends at the first row too young or not sealed yet. */
        if (num(r, i, 1) >= before_ms || PQgetisnull(r, i, 2)) {
            n = -1;
            break;
        }
        *upto_id = num(r, i, 0);
        snprintf(upto_hash, 65, "%s", PQgetvalue(r, i, 2));
    }
    PQclear(r);
    *more = n == max_rows;
    return OBX_OK;
}

/*
 * The events behind the checkpoint's seal whose message is gone, up to max (a message still
 * there keeps its history for show and the API), then the identity rows left without
 * events, as SQLite's triggers do. covered: the seal's transactions (xact_upto) or, for a
 * seal a move from SQLite brought, its id ranges.
 */
#define PRUNE_EVENTS(TABLE, UPTO)                                                                 \
    "WITH gone AS (DELETE FROM " TABLE " WHERE id IN (SELECT e.id FROM " TABLE " e WHERE"         \
    " CASE WHEN $1::bigint > 0 THEN e.xact <= $1::text::xid8 ELSE e.xact = '0'"                   \
    " AND e.id <= " UPTO " END AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = e.message_id)" \
    " ORDER BY e.id LIMIT $3::bigint) RETURNING message_id)"                                      \
    " SELECT count(*), coalesce(array_agg(DISTINCT message_id), '{}') FROM gone"

static const char *const SQL_PRUNE_EVENTS[2] = {PRUNE_EVENTS("transitions", "$2::bigint"),
                                                PRUNE_EVENTS("attempts", "$2::bigint")};

static enum obx_err
prune_events(struct obx_store *st, const struct obx_audit_seal *covered, int max, int64_t *n)
{
    enum obx_err err = OBX_OK;

    for (int i = 0; i < 2 && err == OBX_OK && max > 0; i++) {
        int64_t v[3] = {covered->xact_upto, i == 0 ? covered->t_upto : covered->a_upto, max};
        PGresult *r = run_ints(st, SQL_PRUNE_EVENTS[i], 3, v);
        int64_t gone;
        const char *ids[1];

        if (!r)
            return OBX_EDB;
        gone = num(r, 0, 0);
        ids[0] = PQgetvalue(r, 0, 1);
        *n += gone;
        max -= (int)gone;
        if (gone)
            err = done(obx_pg_run(st->pg,
                                  "DELETE FROM audit_messages m WHERE m.message_id ="
                                  " ANY($1::bigint[]) AND NOT EXISTS (SELECT 1 FROM outbox o"
                                  " WHERE o.id = m.message_id) AND NOT EXISTS (SELECT 1 FROM"
                                  " transitions t WHERE t.message_id = m.message_id) AND NOT"
                                  " EXISTS (SELECT 1 FROM attempts a WHERE a.message_id ="
                                  " m.message_id)",
                                  1, ids, NULL, NULL));
        PQclear(r);
    }
    if (err == OBX_OK && max > 0) {
        int64_t gone = 0;
        err = obx_store_pg_dash_prune_actions(st, covered->xact_upto, covered->x_upto, max, &gone);
        *n += gone;
        max -= (int)gone;
    }
    /* The seals before the checkpoint's (the base row, the sealers' lock, stays). */
    if (err == OBX_OK && max > 0) {
        int64_t v[2] = {covered->id, max};
        err = done(run_ints(st,
                            "DELETE FROM audit_seals WHERE id IN (SELECT id FROM audit_seals"
                            " WHERE id > 0 AND id < $1::bigint ORDER BY id LIMIT $2::bigint)",
                            2, v));
    }
    return err;
}

enum obx_err
obx_store_pg_audit_prune_batch(struct obx_store *st, int64_t upto_id, const char *upto_hash,
                               int max_rows, int64_t *removed, int *more)
{
    char prev[65], id[24], now[24];
    int64_t covered = 0, n = 0, v[2];
    int found = 0, got = 0;
    enum obx_err err = obx_pg_tx_begin(st->pg);

    *removed = 0;
    *more = 0;
    /* One pruner at a time, and never while a node seals: the sealers' lock. */
    if (err == OBX_OK)
        err = obx_store_pg_audit_lock(st, &got);
    if (err == OBX_OK && got)
        err = obx_store_pg_audit_last_checkpoint(st, &covered, prev, &found);
    if (err == OBX_OK && got && upto_id > covered) {
        const char *vals[3] = {id, upto_hash, now};
        snprintf(id, sizeof id, "%lld", (long long)upto_id);
        snprintf(now, sizeof now, "%lld", (long long)obx_now_ms(st->clock));
        err = done(obx_pg_run(st->pg,
                              "INSERT INTO audit_checkpoints (upto_id, hash, created_at_ms)"
                              " VALUES ($1::bigint, $2, $3::bigint)",
                              3, vals, NULL, NULL));
        covered = upto_id;
    }
    if (err == OBX_OK && got && covered > 0) {
        PGresult *r;
        v[0] = covered;
        v[1] = max_rows;
        r = run_ints(st,
                     "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log"
                     " WHERE id <= $1::bigint ORDER BY id LIMIT $2::bigint)",
                     2, v);
        if (r)
            n = strtoll(PQcmdTuples(r), NULL, 10);
        else
            err = OBX_EDB;
        PQclear(r);
    }
    if (err == OBX_OK && got && covered > 0 && n < max_rows) {
        /* The checkpoint's own seal says which events are behind it (none: a legacy row). */
        PGresult *r;
        v[0] = covered;
        r = run_ints(st, "SELECT " SEAL_COLUMNS " FROM audit_seals WHERE id = $1::bigint", 1, v);
        if (!r) {
            err = OBX_EDB;
        } else if (PQntuples(r) > 0) {
            struct obx_audit_seal seal;
            read_seal(r, 0, &seal);
            err = prune_events(st, &seal, max_rows - (int)n, &n);
        }
        PQclear(r);
    }
    err = obx_pg_tx_end(st->pg, err);
    if (err != OBX_OK)
        return err;
    *removed = n;
    *more = n == max_rows;
    return OBX_OK;
}
