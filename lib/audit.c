/*
 * audit: seal, verify, export and prune the audit_log hash chain (see audit.h). The rows are
 * read and written by store_audit; hashing, keys and verdicts are here.
 */
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
#include "store_audit.h"
#include "store_tx.h"

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
obx_audit_use_key(struct obx_store *st, const char *path, int start_segment, char *errmsg, size_t n)
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
        snprintf(errmsg, n, "audit_key_file '%s': the first line must hold at least %d bytes", path,
                 KEY_LINE_MIN);
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

/* The text an event is hashed over: its record plus identity (a record is bounded by the
 * SQL that builds it; this bound only stops a corrupt row from taking all memory). */
#define ROW_TEXT_MAX (64 * 1024 * 1024)

/*
 * hash = sha256(prev || "\n" || canonical(row)), or its HMAC under key when not NULL (see
 * audit.h).
 */
static enum obx_err
row_hash_in(struct obx_buf *b, const struct obx_audit_row *r, const char *prev,
            const unsigned char *key, char out[65])
{
    const char *cols[4] = {r->kind, r->channel_id, r->external_message_id, r->record};
    enum obx_err err;

    obx_buf_reset(b);
    err = obx_buf_printf(b, "%s\n[%lld,%lld", prev, (long long)r->id, (long long)r->at_ms);
    for (int i = 0; err == OBX_OK && i < 4; i++) {
        err = obx_buf_puts(b, ",");
        if (err == OBX_OK)
            err = obx_buf_json_str(b, cols[i]);
    }
    if (err == OBX_OK)
        err = obx_buf_puts(b, "]");
    if (err == OBX_OK)
        err = key ? hmac_hex(key, obx_buf_str(b), b->len, out)
                  : obx_signature_sha256_hex(obx_buf_str(b), b->len, out);
    return err;
}

static enum obx_err
row_hash(const struct obx_audit_row *r, const char *prev, const unsigned char *key, char out[65])
{
    struct obx_buf b;
    enum obx_err err;

    obx_buf_init(&b, ROW_TEXT_MAX);
    err = row_hash_in(&b, r, prev, key, out);
    obx_buf_release(&b);
    return err;
}

/* The audit_chain_modes rows. */
struct modes {
    struct obx_audit_mode m[MAX_MODES];
    int n;
};

static enum obx_err
load_modes(struct obx_store *st, struct modes *ms)
{
    return obx_store_audit_modes(st, ms->m, MAX_MODES, &ms->n);
}

/* The mode row governing audit row id; NULL = plain SHA-256. */
static const struct obx_audit_mode *
mode_of(const struct modes *ms, int64_t id)
{
    const struct obx_audit_mode *m = NULL;

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

/*
 * Which key seals the next rows: st's key once the chain is keyed (starting the keyed
 * segment at the next row the first time), none for a plain chain without a key.
 */
static enum obx_err
seal_key(struct obx_store *st, const unsigned char **key)
{
    struct modes *ms = obx_calloc(1, sizeof *ms);
    const struct obx_audit_mode *last;
    enum obx_err err = ms ? load_modes(st, ms) : OBX_ENOMEM;
    int64_t from = 0;
    char mac[65];

    *key = NULL;
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
    err = obx_store_audit_next_row_id(st, &from);
    if (err == OBX_OK)
        err = from > 0 ? mode_mac(st->audit_key, from, st->audit_key_id, mac) : OBX_EDB;
    if (err == OBX_OK)
        err = obx_store_audit_add_keyed_mode(st, from, st->audit_key_id, mac);
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
    const struct obx_audit_mode *last = err == OBX_OK && ms->n ? &ms->m[ms->n - 1] : NULL;

    errmsg[0] = '\0';
    if (last && last->keyed && !st->audit_keyed) {
        snprintf(errmsg, n,
                 "the audit chain is keyed (key id %s) from row %lld: set "
                 "audit_key_file to its key",
                 last->key_id, (long long)last->from_id);
        err = OBX_ECONFIG;
    } else if (last && last->keyed && strcmp(last->key_id, st->audit_key_id) != 0) {
        snprintf(errmsg, n,
                 "audit_key_file holds key id %s, but the audit chain is keyed with "
                 "key id %s",
                 st->audit_key_id, last->key_id);
        err = OBX_ECONFIG;
    }
    obx_free(ms);
    return err;
}

/* Where the chain starts: the latest checkpoint, or the genesis value. */
static enum obx_err
chain_start(struct obx_store *st, int64_t *after_id, char prev[65])
{
    int found = 0;
    enum obx_err err = obx_store_audit_last_checkpoint(st, after_id, prev, &found);

    if (!found)
        snprintf(prev, 65, "%s", OBX_AUDIT_GENESIS);
    return err;
}

/* The hash the next row chains to: the last sealed row's, else the chain start. */
static enum obx_err
last_hash(struct obx_store *st, char prev[65])
{
    char h[65];
    int64_t after = 0;
    int found = 0;
    enum obx_err err = chain_start(st, &after, prev);

    if (err != OBX_OK)
        return err;
    err = obx_store_audit_last_legacy_hash(st, h, &found);
    if (err == OBX_OK && found)
        memcpy(prev, h, 65);
    return err;
}

/* Sealing legacy rows: each chains onto the one before. */
struct legacy_seal {
    const unsigned char *key;
    char *prev;
};

static enum obx_err
on_legacy_row(void *ctx, const struct obx_audit_row *r, char hash[65])
{
    struct legacy_seal *x = ctx;
    enum obx_err err = row_hash(r, x->prev, x->key, hash);

    if (err == OBX_OK)
        memcpy(x->prev, hash, 65);
    return err;
}

/*
 * Seals up to max legacy audit_log rows (those written before 0009_lean_audit) with key;
 * prev: the chain's hash after the last legacy row sealed. *left: legacy rows still unsealed.
 */
static enum obx_err
seal_rows(struct obx_store *st, int max, const unsigned char *key, char prev[65], int64_t *sealed,
          int *left)
{
    struct legacy_seal x = {key, prev};
    int n = 0;
    enum obx_err err = last_hash(st, prev);

    *left = 0;
    if (err == OBX_OK)
        err = obx_store_audit_seal_legacy(st, max, on_legacy_row, &x, &n);
    *sealed += n;
    *left = n == max;
    return err;
}

static enum obx_err
sha256_digest(void *ctx, const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 0;

    (void)ctx;
    return EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) == 1 && n == 32 ? OBX_OK : OBX_ENOMEM;
}

/* Fills sent_sha256 of every message that has none yet (they all have events to seal). */
static enum obx_err
hash_messages(struct obx_store *st)
{
    return obx_store_audit_fill_sent_hashes(st, sha256_digest, NULL);
}

/*
 * Chains the events in (from->t_upto, to->t_upto] and (from->a_upto, to->a_upto] onto prev;
 * *n: events chained, *at_ms: the latest event time. With fn, calls it for each event.
 */
typedef int (*event_fn)(void *ctx, const struct obx_audit_row *row, const char *prev,
                        const char *hash);

struct chain {
    struct obx_buf scratch; /* one buffer for every event's text, not one malloc each */
    const unsigned char *key;
    char *prev;
    int64_t *n;
    int64_t *at_ms;
    event_fn fn;
    void *ctx;
    enum obx_err err;
};

static int
on_chain_event(void *ctx, const struct obx_audit_row *r)
{
    struct chain *c = ctx;
    char hash[65];

    c->err = row_hash_in(&c->scratch, r, c->prev, c->key, hash);
    if (c->err != OBX_OK)
        return 1;
    if (c->fn && c->fn(c->ctx, r, c->prev, hash))
        return 1;
    memcpy(c->prev, hash, 65);
    if (c->at_ms && r->at_ms > *c->at_ms)
        *c->at_ms = r->at_ms;
    (*c->n)++;
    return 0;
}

static enum obx_err
chain_events(struct obx_store *st, const struct obx_audit_seal *from,
             const struct obx_audit_seal *to, const unsigned char *key, char prev[65], int64_t *n,
             int64_t *at_ms, event_fn fn, void *ctx)
{
    struct chain c = {
        .key = key, .prev = prev, .n = n, .at_ms = at_ms, .fn = fn, .ctx = ctx, .err = OBX_OK};
    enum obx_err err;

    obx_buf_init(&c.scratch, ROW_TEXT_MAX);
    *n = 0;
    err = obx_store_audit_events(st, from, to, on_chain_event, &c);
    obx_buf_release(&c.scratch);
    return c.err != OBX_OK ? c.err : err;
}

enum obx_err
obx_audit_seal_prepare(struct obx_store *st, int max, struct obx_audit_seal_plan *p)
{
    const unsigned char *key = NULL;
    int left = 0;
    enum obx_err err = seal_key(st, &key);

    memset(p, 0, sizeof *p);
    p->keyed = key != NULL;
    if (err == OBX_OK)
        err = seal_rows(st, max, key, p->prev, &p->sealed, &left);
    if (err != OBX_OK || left)
        return err; /* legacy rows first: events after them, next time */
    err = obx_store_audit_last_seal(st, &p->last);
    if (err == OBX_OK)
        err = obx_store_audit_next_seal(st, &p->last, max, &p->next, &p->any);
    if (err != OBX_OK || !p->any)
        return err; /* or nothing new */
    /* The migration's base row has no hash: the chain goes on from the legacy rows. */
    if (p->last.hash[0])
        memcpy(p->prev, p->last.hash, sizeof p->prev);
    /* Before the range is read: its attempts carry their messages' hashes. */
    return hash_messages(st);
}

enum obx_err
obx_audit_seal_chain(struct obx_store *st, struct obx_audit_seal_plan *p)
{
    int64_t n = 0, at_ms = 0;
    char prev[65];
    enum obx_err err;

    if (!p->any)
        return OBX_OK;
    if (p->keyed && !st->audit_keyed)
        return OBX_ECONFIG;
    memcpy(prev, p->prev, sizeof prev);
    err = chain_events(st, &p->last, &p->next, p->keyed ? st->audit_key : NULL, prev, &n, &at_ms,
                       NULL, NULL);
    if (err != OBX_OK)
        return err;
    p->next.events = n;
    p->next.at_ms = at_ms;
    memcpy(p->next.hash, prev, sizeof p->next.hash);
    return OBX_OK;
}

enum obx_err
obx_audit_seal_finish(struct obx_store *st, const struct obx_audit_seal_plan *p, int64_t *sealed)
{
    struct obx_audit_seal now;
    enum obx_err err;

    *sealed = p->sealed;
    if (!p->any)
        return OBX_OK;
    /* Another seal since prepare (retention seals before it prunes): this one would fork
     * the chain from the same seal. Its events are sealed again from the new head. */
    err = obx_store_audit_last_seal(st, &now);
    if (err != OBX_OK || now.id != p->last.id)
        return err;
    err = obx_store_audit_add_seal(st, &p->next);
    if (err == OBX_OK)
        *sealed += p->next.events;
    return err;
}

enum obx_err
obx_audit_seal(struct obx_store *st, int max, int64_t *sealed)
{
    struct obx_audit_seal_plan p;
    int got = 0;
    enum obx_err err = obx_store_tx_begin(st);

    *sealed = 0;
    /* Another node sealing now (PostgreSQL): it seals these rows too. */
    if (err == OBX_OK)
        err = obx_store_audit_lock(st, &got);
    if (err == OBX_OK && got)
        err = obx_audit_seal_prepare(st, max, &p);
    if (err == OBX_OK && got)
        err = obx_audit_seal_chain(st, &p);
    if (err == OBX_OK && got)
        err = obx_audit_seal_finish(st, &p, sealed);
    err = obx_store_tx_end(st, err);
    if (err != OBX_OK)
        *sealed = 0;
    return err;
}

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
        const struct obx_audit_mode *m = &ms->m[i];
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
            snprintf(why, sizeof why,
                     "the chain is keyed (HMAC-SHA256, key id %s) from here: "
                     "verifying it needs the key (audit_key_file)",
                     m->key_id);
            report_bad(r, m->from_id, why);
        } else if (strcmp(m->key_id, st->audit_key_id) != 0) {
            snprintf(why, sizeof why,
                     "the key given (key id %s) is not the one the chain is "
                     "keyed with (key id %s)",
                     st->audit_key_id, m->key_id);
            report_bad(r, m->from_id, why);
        } else if (mode_mac(st->audit_key, m->from_id, m->key_id, mac) != OBX_OK) {
            return OBX_ENOMEM;
        } else if (strcmp(mac, m->mac) != 0) {
            report_bad(r, m->from_id, "the record of the keyed segment was changed (mac)");
        }
    }
    if (!r->first_bad_id && st->audit_keyed && !keyed_seen)
        report_bad(r, 1,
                   "a key is given but no row is sealed with it: serve has not sealed with "
                   "the key yet, or the keyed segment's record was removed");
    return OBX_OK;
}

/* Compares one row with its recomputed hash; fills the report at the first mismatch. */
/* Compares one row with its recomputed hash; fills the report at the first mismatch. */
static enum obx_err
verify_row(const struct obx_audit_row *row, const unsigned char *key, char prev[65],
           int64_t *expected_id, struct obx_audit_report *r)
{
    char hash[65];
    enum obx_err err;

    if (!row->hash) {
        r->unsealed++;
        return OBX_OK;
    }
    if (r->unsealed) {
        r->first_bad_id = row->id;
        snprintf(r->problem, sizeof r->problem, "sealed row after an unsealed one");
        return OBX_OK;
    }
    err = row_hash(row, prev, key, hash);
    if (err != OBX_OK)
        return err;
    if (strcmp(hash, row->hash) != 0) {
        r->first_bad_id = row->id;
        snprintf(r->problem, sizeof r->problem,
                 "hash mismatch: the row or one before it was changed, added or removed");
        return OBX_OK;
    }
    memcpy(prev, hash, 65);
    *expected_id = row->id;
    r->checked++;
    r->head_id = row->id;
    memcpy(r->head_hash, hash, sizeof r->head_hash);
    return OBX_OK;
}

/* How much one slice may do (obx_audit_verify_slice): rows and monotonic time; 0 = no limit. */
struct budget {
    int max_rows;
    int64_t max_ms;
    struct obx_clock *clock; /* the store's: a test's fake clock spends the budget */
    int64_t start_ms;
    int rows;
};

/* 1 when the slice has done its share (checked before each row or seal; one always goes). */
static int
budget_spent(const struct budget *b)
{
    if (b->rows == 0)
        return 0;
    if (b->max_rows > 0 && b->rows >= b->max_rows)
        return 1;
    return b->max_ms > 0 && obx_mono_ms(b->clock) - b->start_ms >= b->max_ms;
}

/* Verifying the seals: the state carried from one seal to the next. */
struct seals_verify {
    struct obx_store *st;
    const struct modes *ms;
    int64_t after;
    char *prev;
    struct budget *bud;
    int *stopped;
    struct obx_audit_report *r;
    struct obx_audit_seal base;
    int have_base;
    enum obx_err err;
};

static int
on_verify_seal(void *ctx, const struct obx_audit_seal *cur)
{
    struct seals_verify *v = ctx;
    struct obx_audit_report *r = v->r;
    const struct obx_audit_mode *m;
    int64_t n = 0;

    if (!v->have_base || cur->id <= v->after || !cur->hash[0]) {
        v->base = *cur;
        v->have_base = 1;
        return 0;
    }
    if (budget_spent(v->bud)) {
        *v->stopped = 1;
        return 1;
    }
    v->bud->rows++;
    if (r->unsealed) {
        report_bad(r, cur->id, "sealed row after an unsealed one");
        return 1;
    }
    m = mode_of(v->ms, cur->id);
    v->err = chain_events(v->st, &v->base, cur, m && m->keyed ? v->st->audit_key : NULL, v->prev,
                          &n, NULL, NULL, NULL);
    if (v->err != OBX_OK)
        return 1;
    if (n != cur->events || strcmp(v->prev, cur->hash) != 0) {
        r->first_bad_id = cur->id;
        if (cur->xact_upto) /* PostgreSQL: the seal covers transactions, not id ranges */
            snprintf(r->problem, sizeof r->problem,
                     "seal %lld: an event of transactions %lld..%lld, or an earlier event, "
                     "changed",
                     (long long)cur->id, (long long)v->base.xact_upto + 1,
                     (long long)cur->xact_upto);
        else
            snprintf(r->problem, sizeof r->problem,
                     "seal %lld: transitions %lld..%lld, attempts %lld..%lld or actions "
                     "%lld..%lld, or an earlier event, changed",
                     (long long)cur->id, (long long)v->base.t_upto + 1, (long long)cur->t_upto,
                     (long long)v->base.a_upto + 1, (long long)cur->a_upto,
                     (long long)v->base.x_upto + 1, (long long)cur->x_upto);
        return 1;
    }
    r->checked += n;
    r->seals++;
    r->head_id = cur->id;
    memcpy(r->head_hash, cur->hash, sizeof r->head_hash);
    v->base = *cur;
    return 0;
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
    struct seals_verify v = {st, ms, after, prev, bud, stopped, r, {0}, 0, OBX_OK};
    enum obx_err err = obx_store_audit_seals(st, after, on_verify_seal, &v);
    int64_t unsealed = 0;

    if (v.err != OBX_OK)
        err = v.err;
    else if (r->first_bad_id)
        err = OBX_OK; /* the verdict is in: a read error after it does not matter */
    if (err == OBX_OK && !r->first_bad_id && !*stopped && v.have_base &&
        obx_store_audit_count_events_after(st, &v.base, &unsealed) == OBX_OK)
        r->unsealed += unsealed;
    return err;
}

static int
is_hash(const char *h)
{
    size_t n = strspn(h, "0123456789abcdef");
    return n == 64 && h[64] == '\0';
}

/* Verifying the legacy rows of one slice. */
struct legacy_verify {
    struct obx_store *st;
    const struct modes *ms;
    struct budget *bud;
    char *prev;
    int64_t *after;
    int64_t last_id;
    int *stopped;
    struct obx_audit_report *r;
    enum obx_err err;
};

static int
on_verify_legacy(void *ctx, const struct obx_audit_row *row)
{
    struct legacy_verify *v = ctx;
    const struct obx_audit_mode *m = mode_of(v->ms, row->id);
    int64_t was;

    /* Unsealed legacy rows end the legacy part: read them all in one slice. */
    if (!v->r->unsealed && budget_spent(v->bud)) {
        *v->stopped = 1;
        return 1;
    }
    v->bud->rows++;
    was = v->r->checked;
    v->err = verify_row(row, m && m->keyed ? v->st->audit_key : NULL, v->prev, &v->last_id, v->r);
    if (v->r->checked > was) {
        *v->after = v->last_id;
        v->r->seals++;
    }
    return v->err != OBX_OK || v->r->first_bad_id != 0;
}

enum obx_err
obx_audit_verify_slice(struct obx_store *st, int max_rows, int64_t max_ms,
                       struct obx_audit_cursor *c, struct obx_audit_report *r, int *done)
{
    struct modes *ms = obx_calloc(1, sizeof *ms);
    struct budget bud = {max_rows, max_ms, st->clock, obx_mono_ms(st->clock), 0};
    char prev[65];
    int64_t after = 0;
    enum obx_err err;
    int stopped = 0;

    memset(r, 0, sizeof *r);
    *done = 0;
    if (!ms)
        return OBX_ENOMEM;
    if (c->started && !is_hash(c->hash)) {
        obx_free(ms);
        return OBX_EINVAL;
    }
    err = obx_store_tx_read_begin(st);
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
    if (err == OBX_OK && !r->first_bad_id) {
        struct legacy_verify lv = {st, ms, &bud, prev, &after, 0, &stopped, r, OBX_OK};
        err = obx_store_audit_legacy_rows(st, after, on_verify_legacy, &lv);
        if (lv.err != OBX_OK)
            err = lv.err;
    }
    if (err == OBX_OK && !r->first_bad_id && !stopped)
        err = verify_seals(st, ms, after, prev, &bud, &stopped, r);
    obx_free(ms);
    if (obx_store_tx_read_end(st) != OBX_OK && err == OBX_OK)
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

/* The export of the legacy rows: callback and its stop flag. */
struct export_legacy {
    obx_audit_entry_fn fn;
    void *ctx;
    int *stop;
};

static int
on_export_legacy(void *ctx, const struct obx_audit_row *row)
{
    struct export_legacy *x = ctx;
    struct obx_audit_entry e;

    e.id = row->id;
    e.at_ms = row->at_ms;
    e.kind = row->kind;
    e.channel_id = row->channel_id;
    e.external_message_id = row->external_message_id;
    e.record = row->record;
    e.hash = row->hash;
    e.prev_hash = row->prev_hash;
    if (x->fn(x->ctx, &e)) {
        *x->stop = 1;
        return 1;
    }
    return 0;
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
export_event(void *ctx, const struct obx_audit_row *row, const char *prev, const char *hash)
{
    struct export_ev *x = ctx;
    struct obx_audit_entry e;

    e.at_ms = row->at_ms;
    e.channel_id = row->channel_id;
    if (e.at_ms < x->since_ms || e.at_ms >= x->until_ms ||
        (x->channel_id && strcmp(x->channel_id, e.channel_id) != 0))
        return 0;
    e.id = row->id;
    e.kind = row->kind;
    e.external_message_id = row->external_message_id;
    e.record = row->record;
    e.prev_hash = x->sealed ? prev : "";
    e.hash = x->sealed ? hash : NULL;
    x->stop = x->fn(x->ctx, &e);
    return x->stop;
}

/* Exporting the seals' events: the state carried from one seal to the next. */
struct export_seals {
    struct obx_store *st;
    const struct modes *ms;
    struct export_ev *x;
    int64_t after;
    char *prev;
    struct obx_audit_seal base;
    int have_base;
    enum obx_err err;
};

static int
on_export_seal(void *ctx, const struct obx_audit_seal *cur)
{
    struct export_seals *v = ctx;
    const struct obx_audit_mode *m;
    int64_t n = 0;

    if (!v->have_base || cur->id <= v->after || !cur->hash[0]) {
        v->base = *cur;
        if (cur->hash[0])
            snprintf(v->prev, 65, "%s", cur->hash);
        v->have_base = 1;
        return 0;
    }
    m = mode_of(v->ms, cur->id);
    v->x->sealed = !(m && m->keyed && !v->st->audit_keyed);
    v->err = chain_events(v->st, &v->base, cur, m && m->keyed ? v->st->audit_key : NULL, v->prev,
                          &n, NULL, export_event, v->x);
    /* Go on from the stored hash: an export does not verify (audit verify does). */
    snprintf(v->prev, 65, "%s", cur->hash);
    v->base = *cur;
    return v->err != OBX_OK || v->x->stop;
}

enum obx_err
obx_audit_export(struct obx_store *st, int64_t since_ms, int64_t until_ms, const char *channel_id,
                 obx_audit_entry_fn fn, void *ctx)
{
    struct modes *ms = obx_calloc(1, sizeof *ms);
    struct export_ev x = {since_ms, until_ms, channel_id, fn, ctx, 1, 0};
    struct export_legacy xl = {fn, ctx, &x.stop};
    struct export_seals v;
    struct obx_audit_seal open_end;
    char prev[65], legacy_prev[65];
    int64_t after = 0, n = 0;
    enum obx_err err = ms ? OBX_OK : OBX_ENOMEM;

    if (err == OBX_OK)
        err = obx_store_audit_export_legacy(st, since_ms, until_ms, channel_id, OBX_AUDIT_GENESIS,
                                            on_export_legacy, &xl);
    if (err == OBX_OK)
        err = load_modes(st, ms);
    if (err == OBX_OK)
        err = chain_start(st, &after, prev);
    if (err == OBX_OK && !x.stop)
        err = last_hash(st, legacy_prev);
    if (err != OBX_OK || x.stop)
        goto out;
    snprintf(prev, sizeof prev, "%s", legacy_prev);
    memset(&v, 0, sizeof v);
    v.st = st;
    v.ms = ms;
    v.x = &x;
    v.after = after;
    v.prev = prev;
    err = obx_store_audit_seals(st, after, on_export_seal, &v);
    if (v.err != OBX_OK)
        err = v.err;
    if (err == OBX_OK && !x.stop && v.have_base) {
        /* Events not sealed yet: exported without hashes. */
        open_end = v.base;
        open_end.t_upto = open_end.a_upto = open_end.x_upto = INT64_MAX;
        x.sealed = 0;
        err = chain_events(st, &v.base, &open_end, NULL, prev, &n, NULL, export_event, &x);
    }
out:
    obx_free(ms);
    return err;
}

/*
 * Pruning (audit.h): the walk and the batches are store_audit's; the checkpoint comes first,
 * in the first batch's transaction, so rows at or below it are already outside the chain
 * (verify and export skip them) and can be deleted in as many later transactions as it takes.
 */
enum obx_err
obx_audit_prune_scan(struct obx_store *st, int64_t before_ms, int max_rows,
                     struct obx_audit_prune *p, int *more)
{
    return obx_store_audit_prune_scan(st, before_ms, max_rows, &p->upto_id, p->upto_hash, more);
}

enum obx_err
obx_audit_prune_batch(struct obx_store *st, const struct obx_audit_prune *p, int max_rows,
                      int64_t *removed, int *more)
{
    return obx_store_audit_prune_batch(st, p->upto_id, p->upto_hash, max_rows, removed, more);
}
