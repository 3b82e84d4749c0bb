/*
 * store: the message state machine (SPEC §2, §3).
 *
 *                 obx_store_enqueue_batch (or a plain SQL INSERT)
 *                              |
 *                              v
 *   .-- obx_store_cancel -- QUEUED <----------------------------------.
 *   |                        |  ^  obx_store_finish(RETRY/RELEASE),   |
 *   v                        |  |  obx_store_recover (dead lease)     |
 * CANCELLED   obx_store_claim|  |                                     |
 *                            v  |                                     |
 *                          SENDING --obx_store_finish(FAILED)--> FAILED
 *                            |                                     |
 *             obx_store_finish(ACCEPTED)          obx_store_retry -'
 *                            v                                     |
 *                         ACCEPTED --obx_store_confirm (webhook)--> CONFIRMED
 *                            |  `------- obx_store_retry --------------'
 *                            `-- obx_store_confirm_timeouts: no confirmation by
 *                                confirm_due_at_ms -> QUEUED (re-send, resends + 1),
 *                                or, past max_resends, stays ACCEPTED with
 *                                unconfirmed_at_ms set
 *
 * A confirmation that arrives while the message is QUEUED or FAILED confirms it
 * at once (Partoo has it); while SENDING it is remembered (confirmed_at_ms) and
 * obx_store_finish moves the message straight to CONFIRMED.
 *
 * Invariants:
 *  - Every transition is one guarded UPDATE ... WHERE state = <from> (and, out of
 *    SENDING, lease_token = <ours>); no row changed means OBX_ECONFLICT.
 *  - The transitions table is written by a trigger on every state change, so
 *    changes made through plain SQL are recorded too (reason: state_reason).
 *  - `head` marks the oldest unfinished (queued|sending) message of a
 *    conversation; only heads are claimed. The others wait in a chain (prev_id)
 *    whose tail conversations.tail_id names; enqueue appends to it and triggers
 *    promote or unlink (0005_conversation_chain.sql).
 *  - A claim carries a lease token; a worker that lost its lease (expired and
 *    claimed again) can no longer move the message.
 */
#include "store.h"
#include "store_tenant.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "store_audit.h"
#include "store_dash.h"
#include "store_dash_filter.h"
#include "store_pg.h"
#include "store_pg_query.h"
#include "err.h"
#include "mem.h"
#include "migrate.h"

static const char *const state_names[OBX_N_STATES] = {
    "queued", "sending", "accepted", "confirmed", "failed", "cancelled",
};

const char *
obx_store_state_name(enum obx_state s)
{
    return (s >= 0 && s < OBX_N_STATES) ? state_names[s] : "unknown";
}

int
obx_store_state_parse(const char *s)
{
    for (int i = 0; i < OBX_N_STATES; i++)
        if (strcmp(s, state_names[i]) == 0)
            return i;
    return -1;
}

/* ---- open / close ------------------------------------------------------------ */

/*
 * journal_size_limit: after a checkpoint resets the WAL, the file is cut back to the
 * size one checkpoint interval needs, so a burst (a purge, a bulk load) does not keep
 * its disk space for ever. obx_store_guard_wal lowers both when the disk is tight.
 */
static enum obx_err
tune(struct obx_db *db, const struct obx_store_opts *opts)
{
    char sql[192];
    int64_t pages = opts->wal_pages > 0 ? opts->wal_pages : 1000;

    snprintf(sql, sizeof sql,
             "PRAGMA cache_size = -%lld; PRAGMA wal_autocheckpoint = %lld;"
             " PRAGMA journal_size_limit = %lld",
             (long long)(opts->cache_kib > 0 ? opts->cache_kib : 8192), (long long)pages,
             (long long)pages * 4096);
    return obx_db_exec(db, sql);
}

void
obx_store_end_reads(struct obx_store *st)
{
    if (st->db)
        obx_db_end_reads(st->db);
}

enum obx_err
obx_store_forbid_writes(struct obx_store *st)
{
    return obx_db_exec(st->db, "PRAGMA query_only = ON");
}

enum obx_err
obx_store_open(const char *path, const struct obx_store_opts *opts, struct obx_store **out)
{
    struct obx_store_opts defaults = {0};
    struct obx_store *st = NULL;
    enum obx_err err;
    int version = 0;

    *out = NULL;
    if (!opts)
        opts = &defaults;
    st = obx_calloc(1, sizeof *st);
    if (!st)
        return OBX_ENOMEM;
    st->clock = obx_clock_real();
    st->max_db_size = opts->max_db_size;
    st->wal_pages = opts->wal_pages > 0 ? opts->wal_pages : 1000;
    if (getrandom(&st->lease_base, sizeof st->lease_base, 0) != sizeof st->lease_base)
        st->lease_base = obx_now_ms(st->clock);
    st->lease_base &= 0x3fffffff00000000LL; /* high bits random, low bits count */
    err = obx_db_open(path, !opts->synchronous_normal, opts->busy_timeout_ms, &st->db, NULL, 0);
    if (err == OBX_OK)
        err = tune(st->db, opts);
    if (err == OBX_OK && !opts->no_migrate)
        err = obx_migrate_apply(st->db, NULL, NULL);
    if (err == OBX_OK)
        err = obx_migrate_version(st->db, &version);
    if (err == OBX_OK && version != obx_migrate_latest())
        err = OBX_ESCHEMA;
    if (err != OBX_OK) {
        obx_store_free(st);
        return err;
    }
    *out = st;
    return OBX_OK;
}

void
obx_store_set_busy_timeout(struct obx_store *st, int64_t ms)
{
    if (st->db)
        sqlite3_busy_timeout(st->db->h, (int)ms);
}

const char *
obx_store_errmsg(struct obx_store *st)
{
    return st->pg ? obx_pg_errmsg(st->pg) : st->db ? obx_db_errmsg(st->db) : "";
}

void
obx_store_free(struct obx_store *st)
{
    if (!st)
        return;
    obx_db_free(st->db);
    obx_pg_free(st->pg);
    obx_free(st->node);
    obx_free(st);
}

/* ---- enqueue ------------------------------------------------------------------- */

/*
 * A new message is appended to its conversation (0005_conversation_chain.sql): it waits
 * behind the conversation's tail when the tail is unfinished (prev_id = the tail, head 0)
 * and is the head otherwise. The library computes prev_id and head here and keeps
 * conversations.tail_id itself; rows written through plain SQL are appended later, by
 * link_unlinked().
 */
static const char SQL_INSERT[] =
    "INSERT INTO outbox (channel_id, external_message_id, business_id,"
    " external_conversation_id, content, sender_type, consumer_name, consumer_image,"
    " priority, state_at_ms, created_at_ms, prev_id, head, tenant)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?11 IS NULL,"
    " (SELECT tenant FROM tenant_channels WHERE channel_id = ?1))"
    " ON CONFLICT (channel_id, external_message_id) DO NOTHING";

static const char SQL_EXISTING[] =
    "SELECT id, business_id, external_conversation_id, content, sender_type, consumer_name,"
    " consumer_image, priority, state FROM outbox"
    " WHERE channel_id = ?1 AND external_message_id = ?2";

/* The conversation's tail if it is unfinished (the message a new one waits for). */
static const char SQL_UNFINISHED_TAIL[] =
    "SELECT t.id FROM conversations c"
    " JOIN outbox t ON t.id = c.tail_id AND t.channel_id = c.channel_id"
    "  AND t.external_conversation_id = c.external_conversation_id"
    " WHERE c.channel_id = ?1 AND c.external_conversation_id = ?2"
    "  AND t.state IN ('queued', 'sending')";

static const char SQL_SET_TAIL[] =
    "INSERT INTO conversations (channel_id, external_conversation_id, tail_id)"
    " VALUES (?1, ?2, ?3)"
    " ON CONFLICT (channel_id, external_conversation_id) DO UPDATE SET tail_id = excluded.tail_id";

/*
 * A row written through plain SQL that no conversation holds yet: the oldest of its
 * conversation (the index is ordered by conversation, then id). _IN: of one conversation.
 */
static const char SQL_NEXT_UNLINKED[] =
    "SELECT id, channel_id, external_conversation_id, state IN ('queued', 'sending')"
    " FROM outbox INDEXED BY outbox_unlinked WHERE head IS NULL LIMIT 1";

static const char SQL_NEXT_UNLINKED_IN[] =
    "SELECT id, channel_id, external_conversation_id, state IN ('queued', 'sending')"
    " FROM outbox INDEXED BY outbox_unlinked WHERE head IS NULL"
    " AND channel_id = ?1 AND external_conversation_id = ?2 LIMIT 1";

/* A row inserted through plain SQL learns its tenant when it is linked (0012). */
static const char SQL_LINK[] =
    "UPDATE outbox SET prev_id = ?2, head = ?3,"
    " tenant = (SELECT tenant FROM tenant_channels WHERE channel_id = outbox.channel_id)"
    " WHERE id = ?1";

/*
 * A batch at least this large skips SQLite's CHECK constraints (below). Changing the pragma
 * makes SQLite recompile every cached statement, which only a large batch pays back.
 */
#define BULK_ITEMS 256

/* The statements of one enqueue, on the store's connection or a producer's. */
struct enq_stmts {
    sqlite3 *h;
    sqlite3_stmt *insert, *existing, *tail, *set_tail, *link;
    sqlite3_stmt *next_unlinked;    /* claims: any conversation */
    sqlite3_stmt *next_unlinked_in; /* enqueue: the conversation bound to ?1, ?2 */
};

/* Per valid item of a batch: its place among the items of the same conversation. */
struct conv_slot {
    const char *channel_id, *conversation_id;
    size_t item;      /* index in the batch */
    size_t prev_same; /* slot of the previous item of the conversation, or NO_SLOT */
    int64_t tail;     /* the conversation's unfinished tail after this item, 0 if none */
    int appended;     /* this item or an earlier one of the batch was inserted */
    int last;         /* no later item of the batch has this conversation */
};
#define NO_SLOT SIZE_MAX

static void
bind_msg(sqlite3_stmt *s, const struct obx_msg *m, int64_t now_ms)
{
    obx_db_bind_text(s, 1, m->channel_id);
    obx_db_bind_text(s, 2, m->external_message_id);
    obx_db_bind_text(s, 3, m->business_id);
    obx_db_bind_text(s, 4, m->external_conversation_id);
    obx_db_bind_text(s, 5, m->content);
    obx_db_bind_text(s, 6, m->sender_type);
    obx_db_bind_text(s, 7, m->consumer_name);
    obx_db_bind_text(s, 8, m->consumer_image);
    sqlite3_bind_int64(s, 9, m->priority);
    sqlite3_bind_int64(s, 10, now_ms);
}

/* Compares the stored row under the key with m: duplicate or conflict. */
static enum obx_err
compare_existing(sqlite3_stmt *s, const struct obx_msg *m, struct obx_enq_item *it)
{
    struct obx_msg stored = *m;
    int rc;

    obx_db_bind_text(s, 1, m->channel_id);
    obx_db_bind_text(s, 2, m->external_message_id);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? OBX_EDB : obx_err_from_sqlite(rc);
    }
    it->id = sqlite3_column_int64(s, 0);
    stored.business_id = (const char *)sqlite3_column_text(s, 1);
    stored.external_conversation_id = (const char *)sqlite3_column_text(s, 2);
    stored.content = (const char *)sqlite3_column_text(s, 3);
    stored.sender_type = (const char *)sqlite3_column_text(s, 4);
    stored.consumer_name = (const char *)sqlite3_column_text(s, 5);
    stored.consumer_image = (const char *)sqlite3_column_text(s, 6);
    stored.priority = sqlite3_column_int64(s, 7);
    snprintf(it->state, sizeof it->state, "%s", (const char *)sqlite3_column_text(s, 8));
    it->err = obx_msg_same(&stored, m) ? OBX_OK : OBX_ECONFLICT;
    it->result = OBX_ENQ_DUPLICATE;
    sqlite3_reset(s);
    return OBX_OK;
}

/* The unfinished tail of m's conversation, 0 when it has none. */
static enum obx_err
read_tail(const struct enq_stmts *q, const struct obx_msg *m, int64_t *tail)
{
    int rc;

    obx_db_bind_text(q->tail, 1, m->channel_id);
    obx_db_bind_text(q->tail, 2, m->external_conversation_id);
    rc = sqlite3_step(q->tail);
    *tail = rc == SQLITE_ROW ? sqlite3_column_int64(q->tail, 0) : 0;
    sqlite3_reset(q->tail);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

static enum obx_err
write_tail(const struct enq_stmts *q, const struct obx_msg *m, int64_t tail)
{
    obx_db_bind_text(q->set_tail, 1, m->channel_id);
    obx_db_bind_text(q->set_tail, 2, m->external_conversation_id);
    sqlite3_bind_int64(q->set_tail, 3, tail);
    return obx_db_step_done(q->set_tail);
}

/* Appends row `id`, written through plain SQL, to m's conversation (see link_unlinked). */
static enum obx_err
link_row(const struct enq_stmts *q, int64_t id, const struct obx_msg *m, int unfinished)
{
    int64_t tail = 0;
    enum obx_err err = unfinished ? read_tail(q, m, &tail) : OBX_OK;

    if (err != OBX_OK)
        return err;
    sqlite3_bind_int64(q->link, 1, id);
    if (tail > 0)
        sqlite3_bind_int64(q->link, 2, tail);
    else
        sqlite3_bind_null(q->link, 2);
    sqlite3_bind_int(q->link, 3, unfinished && tail == 0);
    err = obx_db_step_done(q->link);
    if (err == OBX_OK && unfinished)
        err = write_tail(q, m, id);
    return err;
}

/*
 * Rows inserted through the SQL contract arrive with head NULL (no trigger links them:
 * 0005_conversation_chain.sql says why). Appends up to max of those that `next` finds
 * (SQL_NEXT_UNLINKED or, bound to one conversation, SQL_NEXT_UNLINKED_IN) to their
 * conversations, each conversation's in id order; finished ones just leave the unlinked
 * set. A library enqueue first links the conversations it appends to, so a message is
 * never overtaken by a later one; every claim links some, so plain-SQL rows are sent as
 * soon as the next loop tick.
 */
static enum obx_err
link_unlinked(const struct enq_stmts *q, sqlite3_stmt *next, size_t max)
{
    enum obx_err err = OBX_OK;

    for (size_t done = 0; err == OBX_OK && done < max; done++) {
        struct obx_msg m = {0};
        int64_t id;
        int unfinished, rc = sqlite3_step(next);

        if (rc != SQLITE_ROW) {
            sqlite3_reset(next);
            return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
        }
        id = sqlite3_column_int64(next, 0);
        m.channel_id = obx_db_column_dup(next, 1);
        m.external_conversation_id = obx_db_column_dup(next, 2);
        unfinished = sqlite3_column_int(next, 3);
        sqlite3_reset(next);
        err = m.channel_id && m.external_conversation_id ? link_row(q, id, &m, unfinished)
                                                         : OBX_ENOMEM;
        obx_free((char *)m.channel_id);
        obx_free((char *)m.external_conversation_id);
    }
    return err;
}

/*
 * Inserts one validated message behind `prev` (0: it is the head). Returns a database
 * error only; the item's own outcome goes into it.
 */
static enum obx_err
insert_one(const struct enq_stmts *q, struct obx_enq_item *it, int64_t prev, int64_t now_ms)
{
    int rc;

    bind_msg(q->insert, &it->msg, now_ms);
    if (prev > 0)
        sqlite3_bind_int64(q->insert, 11, prev);
    else
        sqlite3_bind_null(q->insert, 11);
    rc = sqlite3_step(q->insert);
    sqlite3_reset(q->insert);
    if (rc != SQLITE_DONE) {
        /* A CHECK constraint the validator let through (e.g. a lower limit in SQL). */
        if ((rc & 0xff) == SQLITE_CONSTRAINT) {
            it->err = OBX_EINVAL;
            it->fe.code = "invalid_value";
            it->fe.field = NULL;
            snprintf(it->fe.message, sizeof it->fe.message, "rejected by the schema: %s",
                     sqlite3_errmsg(q->h));
            return OBX_OK;
        }
        return obx_err_from_sqlite(rc);
    }
    if (sqlite3_changes(q->h) == 1) {
        it->err = OBX_OK;
        it->result = OBX_ENQ_ACCEPTED;
        it->id = sqlite3_last_insert_rowid(q->h);
        memcpy(it->state, "queued", sizeof "queued");
        return OBX_OK;
    }
    return compare_existing(q->existing, &it->msg, it);
}

static int
same_conversation(const struct conv_slot *x, const struct conv_slot *y)
{
    return strcmp(x->channel_id, y->channel_id) == 0 &&
           strcmp(x->conversation_id, y->conversation_id) == 0;
}

/* Conversation, then batch order. */
static int
slot_order(const void *a, const void *b)
{
    const struct conv_slot *x = a, *y = b;
    int c = strcmp(x->channel_id, y->channel_id);

    if (c == 0)
        c = strcmp(x->conversation_id, y->conversation_id);
    if (c == 0)
        c = (x->item > y->item) - (x->item < y->item);
    return c;
}

/*
 * Links the slots of one conversation in batch order, so that the batch reads each
 * conversation's tail once and writes it once. Returns, for each item, its slot in
 * by_item (NO_SLOT for invalid items).
 */
static void
link_conversations(struct conv_slot *slots, size_t n, size_t *by_item)
{
    qsort(slots, n, sizeof *slots, slot_order);
    for (size_t k = 0; k < n; k++) {
        int same_as_prev = k > 0 && same_conversation(&slots[k - 1], &slots[k]);
        slots[k].prev_same = same_as_prev ? k - 1 : NO_SLOT;
        slots[k].last = 1;
        if (same_as_prev)
            slots[k - 1].last = 0;
        by_item[slots[k].item] = k;
    }
}

/* Inserts the valid items in batch order, each behind its conversation's tail. */
static enum obx_err
insert_linked(const struct enq_stmts *q, struct obx_enq_item *items, size_t n,
              struct conv_slot *slots, const size_t *by_item, int64_t now_ms)
{
    enum obx_err err = OBX_OK;

    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        struct conv_slot *sl;
        int64_t prev;

        if (by_item[i] == NO_SLOT)
            continue;
        sl = &slots[by_item[i]];
        if (sl->prev_same == NO_SLOT) {
            /* First of its conversation in the batch: plain-SQL rows go before it. */
            obx_db_bind_text(q->next_unlinked_in, 1, items[i].msg.channel_id);
            obx_db_bind_text(q->next_unlinked_in, 2, items[i].msg.external_conversation_id);
            err = link_unlinked(q, q->next_unlinked_in, SIZE_MAX);
            if (err == OBX_OK)
                err = read_tail(q, &items[i].msg, &prev);
            sl->appended = 0;
        } else {
            prev = slots[sl->prev_same].tail;
            sl->appended = slots[sl->prev_same].appended;
        }
        if (err == OBX_OK)
            err = insert_one(q, &items[i], prev, now_ms);
        if (err != OBX_OK)
            break;
        sl->tail = prev;
        if (items[i].err == OBX_OK && items[i].result == OBX_ENQ_ACCEPTED) {
            sl->tail = items[i].id;
            sl->appended = 1;
        }
        if (sl->last && sl->appended)
            err = write_tail(q, &items[i].msg, sl->tail);
    }
    return err;
}

/* Validates every item, then inserts the valid ones. */
static enum obx_err
enqueue_items(const struct enq_stmts *q, struct obx_enq_item *items, size_t n,
              const struct obx_msg_limits *lim, int64_t now_ms)
{
    struct conv_slot *slots = obx_calloc(n ? n : 1, sizeof *slots);
    size_t *by_item = obx_calloc(n ? n : 1, sizeof *by_item);
    size_t nvalid = 0;
    enum obx_err err = OBX_OK;

    if (!slots || !by_item) {
        err = OBX_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct obx_enq_item *it = &items[i];
        it->id = 0;
        it->state[0] = '\0';
        it->err = obx_msg_validate(&it->msg, lim, &it->fe);
        by_item[i] = NO_SLOT;
        if (it->err == OBX_OK)
            slots[nvalid++] = (struct conv_slot){
                .channel_id = it->msg.channel_id,
                .conversation_id = it->msg.external_conversation_id,
                .item = i};
    }
    link_conversations(slots, nvalid, by_item);
    err = insert_linked(q, items, n, slots, by_item, now_ms);
out:
    obx_free(slots);
    obx_free(by_item);
    return err;
}

/* Refuses new messages once the file reaches the quota (SPEC §8). */
enum obx_err
obx_store_check_quota(struct obx_store *st)
{
    sqlite3_stmt *s;
    int64_t bytes = 0;

    if (st->max_db_size <= 0)
        return OBX_OK;
    if (st->pg) {
        int64_t now = obx_mono_ms(obx_clock_real());
        if (!st->pg_bytes_mono_ms || now - st->pg_bytes_mono_ms >= 1000) {
            enum obx_err err = obx_store_pg_query_db_bytes(st, &st->pg_bytes);
            if (err != OBX_OK)
                return err;
            st->pg_bytes_mono_ms = now;
        }
        return st->pg_bytes >= st->max_db_size ? OBX_EQUOTA : OBX_OK;
    }
    if (!st->db)
        return OBX_OK;
    /* Pages on the free list are reused before the file grows: they do not count. */
    s = obx_db_stmt(st->db, "SELECT (page_count - freelist_count) * page_size"
                            " FROM pragma_page_count(), pragma_freelist_count(),"
                            " pragma_page_size()");
    if (!s)
        return OBX_EDB;
    if (sqlite3_step(s) == SQLITE_ROW)
        bytes = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return bytes >= st->max_db_size ? OBX_EQUOTA : OBX_OK;
}

/*
 * The CHECK constraints of the outbox table guard the SQL contract against other writers.
 * Every item here was validated in C against limits no looser than those constraints, so a
 * large batch may skip evaluating them: that halves the cost of an insert (docs/benchmarks.md).
 */
static int
limits_within_schema(const struct obx_msg_limits *lim)
{
    return lim->max_id_bytes <= 255 && lim->max_name_bytes <= 255 && lim->max_image_bytes <= 2048 &&
           lim->max_content_bytes <= 1048576;
}

enum obx_err
obx_store_enqueue_batch(struct obx_store *st, struct obx_enq_item *items, size_t n,
                        const struct obx_msg_limits *lim)
{
    struct enq_stmts q = {.h = st->db ? st->db->h : NULL};
    int skip_checks = n >= BULK_ITEMS && limits_within_schema(lim);
    enum obx_err err;

    err = obx_store_check_quota(st);
    if (err != OBX_OK)
        return err;
    if (st->pg)
        return obx_store_pg_enqueue_batch(st->pg, items, n, lim);
    if (skip_checks && (err = obx_db_exec(st->db, "PRAGMA ignore_check_constraints = 1")) != OBX_OK)
        return err;
    q.insert = obx_db_stmt(st->db, SQL_INSERT);
    q.existing = obx_db_stmt(st->db, SQL_EXISTING);
    q.tail = obx_db_stmt(st->db, SQL_UNFINISHED_TAIL);
    q.set_tail = obx_db_stmt(st->db, SQL_SET_TAIL);
    q.next_unlinked_in = obx_db_stmt(st->db, SQL_NEXT_UNLINKED_IN);
    q.link = obx_db_stmt(st->db, SQL_LINK);
    err = q.insert && q.existing && q.tail && q.set_tail && q.next_unlinked_in && q.link
              ? obx_db_begin(st->db)
              : OBX_EDB;
    if (err == OBX_OK) {
        err = enqueue_items(&q, items, n, lim, obx_now_ms(st->clock));
        if (err == OBX_OK)
            err = obx_store_dash_count_inserted(st, items, n); /* the overview's counts */
        err = obx_db_end(st->db, err);
    }
    /* A flag pragma touches no file and cannot fail; a committed batch stays reported so. */
    if (skip_checks)
        sqlite3_exec(st->db->h, "PRAGMA ignore_check_constraints = 0", NULL, NULL, NULL);
    return err;
}

/* Copies a one-item result to the public API's out-parameters. */
static enum obx_err
single_result(const struct obx_enq_item *it, enum obx_enqueue_result *result, int64_t *id)
{
    if (it->err != OBX_OK)
        return it->err;
    *result = it->result;
    if (id)
        *id = it->id;
    return OBX_OK;
}

enum obx_err
obx_enqueue(struct obx_store *st, const struct obx_msg *m, enum obx_enqueue_result *result,
            int64_t *id)
{
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_enq_item it = {.msg = *m};
    enum obx_err err;

    *result = OBX_ENQ_ACCEPTED;
    if (id)
        *id = 0;
    err = obx_store_enqueue_batch(st, &it, 1, &lim);
    return err != OBX_OK ? err : single_result(&it, result, id);
}

enum obx_err
obx_enqueue_sqlite(struct sqlite3 *h, const struct obx_msg *m, enum obx_enqueue_result *result,
                   int64_t *id)
{
    struct obx_msg_limits lim = obx_msg_limits_default();
    struct obx_enq_item it = {.msg = *m};
    struct enq_stmts q = {.h = h};
    enum obx_err err;

    *result = OBX_ENQ_ACCEPTED;
    if (id)
        *id = 0;
    err = obx_msg_validate(m, &lim, &it.fe);
    if (err != OBX_OK)
        return err;
    if (sqlite3_prepare_v2(h, SQL_INSERT, -1, &q.insert, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, SQL_EXISTING, -1, &q.existing, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, SQL_UNFINISHED_TAIL, -1, &q.tail, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, SQL_SET_TAIL, -1, &q.set_tail, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, SQL_NEXT_UNLINKED_IN, -1, &q.next_unlinked_in, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(h, SQL_LINK, -1, &q.link, NULL) != SQLITE_OK)
        err = obx_err_from_sqlite(sqlite3_errcode(h));
    else
        err = enqueue_items(&q, &it, 1, &lim, obx_now_ms(obx_clock_real()));
    if (err == OBX_OK)
        err = single_result(&it, result, id);
    sqlite3_finalize(q.insert);
    sqlite3_finalize(q.existing);
    sqlite3_finalize(q.tail);
    sqlite3_finalize(q.set_tail);
    sqlite3_finalize(q.next_unlinked_in);
    sqlite3_finalize(q.link);
    return err;
}

/* ---- claim ------------------------------------------------------------------------ */

/*
 * INDEXED BY pins the partial claim index: without ANALYZE statistics the planner
 * may prefer outbox_state and sort a million rows (measured: 0.4 s per claim).
 */
static const char SQL_NEXT_LEVEL[] = "SELECT priority FROM outbox INDEXED BY outbox_claim"
                                     " WHERE state = 'queued' AND head = 1 AND tenant IS ?2"
                                     " AND priority < ?1 ORDER BY priority DESC LIMIT 1";

static const char SQL_NEXT_BUSINESS[] =
    "SELECT business_id FROM outbox INDEXED BY outbox_claim"
    " WHERE state = 'queued' AND head = 1 AND tenant IS ?3 AND priority = ?1"
    " AND business_id > ?2 ORDER BY priority DESC, business_id LIMIT 1";

/* A channel pause and a tenant pause both hold a message (lib/store_dash.h). */
static const char SQL_PICK[] =
    "SELECT id, (SELECT readonly FROM tenant_channels WHERE channel_id = outbox.channel_id)"
    " FROM outbox INDEXED BY outbox_claim"
    " WHERE state = 'queued' AND head = 1 AND tenant IS ?4 AND priority = ?1"
    " AND business_id = ?2 AND next_attempt_at_ms <= ?3"
    " AND NOT EXISTS (SELECT 1 FROM pauses WHERE scope = 'channel'"
    " AND key = outbox.channel_id AND resumed_at_ms IS NULL)"
    " AND NOT EXISTS (SELECT 1 FROM pauses WHERE scope = 'tenant'"
    " AND key = coalesce(?4, 'default') AND resumed_at_ms IS NULL)"
    " ORDER BY priority DESC, business_id, next_attempt_at_ms, id LIMIT 1";

const char *const obx_store_claim_sql[] = {SQL_NEXT_LEVEL, SQL_NEXT_BUSINESS, SQL_PICK, NULL};

/*
 * Statement journals. Inside a transaction SQLite makes every statement that fires
 * triggers and may abort atomic on its own, by copying each page it is about to change
 * into a statement journal first: for a delivery's state changes that was a dozen page
 * copies and their mallocs per statement, the largest single cost of the store thread
 * (docs/benchmarks.md). The hot statements say OR FAIL instead: a failing statement then
 * keeps what it already wrote, and needs no journal. That is safe because none of them
 * runs outside a transaction that is rolled back when it fails (obx_db_end below, and each
 * job of the store thread at its own savepoint). An OR clause also overrides the conflict
 * clauses of the triggers it fires, hence no INSERT OR IGNORE in triggers (0011). And no
 * SQL function in them (NULLIF was one): a function may fail, which asks for the journal
 * again (measured with a uprobe on sqlite3BtreeBeginStmt: 0 per delivery now).
 */
static const char SQL_MARK_SENDING[] =
    "UPDATE OR FAIL outbox SET state = 'sending', state_reason = 'claimed', state_at_ms = ?2,"
    " lease_token = ?3, lease_expires_at_ms = ?4"
    " WHERE id = ?1 AND state = 'queued'"
    " RETURNING id, channel_id, external_message_id, business_id, external_conversation_id,"
    " content, sender_type, consumer_name, consumer_image, priority, attempts,"
    " counted_attempts, resends, created_at_ms, accepted_at_ms, tenant";

void
obx_store_claimed_release(struct obx_claimed *c)
{
    if (!c)
        return;
    obx_free(c->strings);
    memset(c, 0, sizeof *c);
}

enum obx_err
obx_store_claimed_copy_strings(struct obx_claimed *c, const char *const v[8], const size_t len[8])
{
    const char **fields[8] = {
        &c->msg.channel_id,    &c->msg.external_message_id,
        &c->msg.business_id,   &c->msg.external_conversation_id,
        &c->msg.content,       &c->msg.sender_type,
        &c->msg.consumer_name, &c->msg.consumer_image,
    };
    size_t total = 0, off = 0;

    for (int i = 0; i < 8; i++)
        total += len[i] + 1;
    c->strings = obx_malloc(total);
    if (!c->strings)
        return OBX_ENOMEM;
    for (int i = 0; i < 8; i++) {
        if (!v[i]) {
            *fields[i] = NULL;
            continue;
        }
        memcpy(c->strings + off, v[i], len[i]);
        c->strings[off + len[i]] = '\0';
        *fields[i] = c->strings + off;
        off += len[i] + 1;
    }
    return OBX_OK;
}

/* The RETURNING row's strings (columns 1..8). */
static enum obx_err
copy_claim_strings(sqlite3_stmt *s, struct obx_claimed *c)
{
    const char *v[8];
    size_t len[8];

    for (int i = 0; i < 8; i++) {
        v[i] = (const char *)sqlite3_column_text(s, i + 1);
        len[i] = (size_t)sqlite3_column_bytes(s, i + 1);
    }
    return obx_store_claimed_copy_strings(c, v, len);
}

static enum obx_err
mark_sending(struct obx_store *st, int64_t id, int64_t now_ms, int64_t lease_ms,
             struct obx_claimed *c)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_MARK_SENDING);
    enum obx_err err;
    int rc;

    if (!s)
        return OBX_EDB;
    memset(c, 0, sizeof *c);
    c->lease_token = st->lease_base | (int64_t)(++st->lease_seq & 0xffffffffu);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now_ms);
    sqlite3_bind_int64(s, 3, c->lease_token);
    sqlite3_bind_int64(s, 4, now_ms + lease_ms);
    rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rc == SQLITE_DONE ? OBX_ECONFLICT : obx_err_from_sqlite(rc);
    }
    c->id = sqlite3_column_int64(s, 0);
    c->msg.priority = sqlite3_column_int64(s, 9);
    c->attempts = sqlite3_column_int(s, 10);
    c->counted_attempts = sqlite3_column_int(s, 11);
    c->resends = sqlite3_column_int(s, 12);
    c->created_at_ms = sqlite3_column_int64(s, 13);
    c->accepted_at_ms = sqlite3_column_int64(s, 14);
    if (sqlite3_column_type(s, 15) == SQLITE_TEXT)
        snprintf(c->tenant, sizeof c->tenant, "%s", (const char *)sqlite3_column_text(s, 15));
    err = copy_claim_strings(s, c);
    /* RETURNING rows must be stepped to the end for the UPDATE to complete. */
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (err == OBX_OK && rc != SQLITE_DONE)
        err = obx_err_from_sqlite(rc);
    if (err != OBX_OK)
        obx_store_claimed_release(c);
    return err;
}

/* Next business after `after` in a priority level, or "" at the end of the level. */
static enum obx_err
next_business(struct obx_store *st, const char *tenant, int64_t priority, const char *after,
              char *out, size_t n)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_NEXT_BUSINESS);
    int rc;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, priority);
    obx_db_bind_text(s, 2, after);
    obx_db_bind_text(s, 3, tenant);
    rc = sqlite3_step(s);
    out[0] = '\0';
    if (rc == SQLITE_ROW)
        snprintf(out, n, "%s", (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? OBX_OK : obx_err_from_sqlite(rc);
}

/*
 * The oldest due head of one (priority, business) lane, or 0, and the read-only flag of its
 * channel's tenant (-1: no tenant owns it). The flag is read here rather than in
 * mark_sending's RETURNING: a subquery there is not planned with the primary key (SQLite
 * 3.40 scans tenant_channels once per claimed message; measured: half the store thread's
 * time with 2,000 tenants).
 */
static enum obx_err
pick_in_lane(struct obx_store *st, const char *tenant, int64_t priority, const char *business,
             int64_t now_ms, int64_t *id, int *readonly)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PICK);
    int rc;

    *id = 0;
    *readonly = -1;
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, priority);
    obx_db_bind_text(s, 2, business);
    sqlite3_bind_int64(s, 3, now_ms);
    obx_db_bind_text(s, 4, tenant);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        if (sqlite3_column_type(s, 1) != SQLITE_NULL)
            *readonly = sqlite3_column_int(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
}

/* Claim context threaded through the level/lane loops: one tenant's share of a claim. */
struct claim_run {
    struct obx_store *st;
    int64_t now_ms, lease_ms;
    const char *tenant;
    struct obx_claim_cursor *rr;
    int max;
    struct obx_claimed *out;
    int n;
};

/*
 * Serves one priority level round-robin: one message per business per turn,
 * starting after the business served last, until max is reached or a whole
 * turn over the level's businesses claims nothing.
 */
static enum obx_err
claim_level(struct claim_run *r, int64_t priority)
{
    struct obx_store *st = r->st;
    struct obx_claim_cursor *rr = r->rr;
    char business[256];
    int claimed_this_turn = 0, wrapped = 0;
    enum obx_err err = OBX_OK;

    if (rr->priority != priority)
        rr->business[0] = '\0';
    rr->priority = priority;
    while (err == OBX_OK && r->n < r->max) {
        int64_t id = 0;
        int readonly = -1;
        err = next_business(st, r->tenant, priority, rr->business, business, sizeof business);
        if (err != OBX_OK)
            break;
        if (!business[0]) {
            /* End of the level: a turn is over. Stop when it claimed nothing. */
            if (wrapped && !claimed_this_turn)
                break;
            wrapped = 1;
            claimed_this_turn = 0;
            rr->business[0] = '\0';
            continue;
        }
        snprintf(rr->business, sizeof rr->business, "%s", business);
        err = pick_in_lane(st, r->tenant, priority, business, r->now_ms, &id, &readonly);
        if (err != OBX_OK || !id)
            continue;
        err = mark_sending(st, id, r->now_ms, r->lease_ms, &r->out[r->n]);
        if (err == OBX_OK) {
            r->out[r->n].readonly = readonly;
            r->n++;
            claimed_this_turn = 1;
        }
    }
    return err;
}

/* One tenant's share: its priority levels, highest first. */
static enum obx_err
claim_tenant(struct claim_run *r)
{
    int64_t below = INT64_MAX;
    enum obx_err err = OBX_OK;

    while (err == OBX_OK && r->n < r->max) {
        sqlite3_stmt *s = obx_db_stmt(r->st->db, SQL_NEXT_LEVEL);
        int64_t priority;
        int rc;
        if (!s)
            return OBX_EDB;
        sqlite3_bind_int64(s, 1, below);
        obx_db_bind_text(s, 2, r->tenant);
        rc = sqlite3_step(s);
        priority = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
        sqlite3_reset(s);
        if (rc != SQLITE_ROW)
            return rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
        err = claim_level(r, priority);
        below = priority;
    }
    return err;
}

/* At most this many plain-SQL rows are linked per claim: a huge INSERT ... SELECT is
 * linked over several loop ticks instead of stalling one. */
#define LINK_PER_CLAIM 1000

static enum obx_err
link_sql_rows(struct obx_store *st)
{
    struct enq_stmts q = {.h = st->db->h,
                          .tail = obx_db_stmt(st->db, SQL_UNFINISHED_TAIL),
                          .set_tail = obx_db_stmt(st->db, SQL_SET_TAIL),
                          .next_unlinked = obx_db_stmt(st->db, SQL_NEXT_UNLINKED),
                          .link = obx_db_stmt(st->db, SQL_LINK)};

    if (!q.tail || !q.set_tail || !q.next_unlinked || !q.link)
        return OBX_EDB;
    return link_unlinked(&q, q.next_unlinked, LINK_PER_CLAIM);
}

enum obx_err
obx_store_claim_tenants(struct obx_store *st, struct obx_claim_want *wants, size_t nwants,
                        int64_t lease_ms, struct obx_claimed *out, int *n)
{
    struct claim_run r = {.st = st, .now_ms = obx_now_ms(st->clock), .lease_ms = lease_ms};
    int total = 0;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_claim_tenants(st, wants, nwants, lease_ms, out, n);
    *n = 0;
    err = obx_db_begin(st->db);
    if (err == OBX_OK)
        err = link_sql_rows(st);
    for (size_t i = 0; i < nwants && err == OBX_OK; i++) {
        r.tenant = wants[i].tenant;
        r.rr = wants[i].cursor;
        r.max = wants[i].want;
        r.out = out + total;
        r.n = 0;
        err = claim_tenant(&r);
        wants[i].got = r.n;
        total += r.n;
    }
    err = obx_db_end(st->db, err);
    if (err != OBX_OK) {
        for (int i = 0; i < total; i++)
            obx_store_claimed_release(&out[i]);
        for (size_t i = 0; i < nwants; i++)
            wants[i].got = 0;
        return err;
    }
    *n = total;
    return OBX_OK;
}

enum obx_err
obx_store_claim(struct obx_store *st, int max, int64_t lease_ms, struct obx_claimed *out, int *n)
{
    struct obx_claim_want w = {NULL, &st->rr, max, 0};

    return obx_store_claim_tenants(st, &w, 1, lease_ms, out, n);
}

/* ---- finish ------------------------------------------------------------------------ */

/* ?5 = 1 when the attempt counts; ?6 = 1 when an attempt was made at all. */
/*
 * A confirmation webhook may have arrived while the request was in flight
 * (confirmed_at_ms already set): then the message goes straight to confirmed.
 */
static const char SQL_TO_ACCEPTED[] =
    "UPDATE OR FAIL outbox SET"
    " state = CASE WHEN confirmed_at_ms IS NULL THEN 'accepted' ELSE 'confirmed' END,"
    " state_reason = CASE WHEN confirmed_at_ms IS NULL THEN ?4"
    "  ELSE ?4 || '; confirmed by an earlier webhook' END,"
    " state_at_ms = ?3, accepted_at_ms = ?3, attempts = attempts + 1,"
    " counted_attempts = counted_attempts + ?5, last_http_status = ?6,"
    " last_error = NULL, lease_token = NULL, lease_expires_at_ms = NULL,"
    " confirm_due_at_ms = CASE WHEN confirmed_at_ms IS NULL THEN ?10 END"
    " WHERE id = ?1 AND state = 'sending' AND lease_token = ?2";

/*
 * Out of SENDING, a confirmation that arrived meanwhile (confirmed_at_ms set) wins:
 * Partoo has the message, whatever this attempt's answer was (e.g. a lost response).
 */
static const char SQL_TO_FAILED[] =
    "UPDATE OR FAIL outbox SET"
    " state = CASE WHEN confirmed_at_ms IS NULL THEN 'failed' ELSE 'confirmed' END,"
    " state_reason = CASE WHEN confirmed_at_ms IS NULL THEN ?4"
    "  ELSE ?4 || '; confirmed by an earlier webhook' END, state_at_ms = ?3,"
    " attempts = attempts + 1, counted_attempts = counted_attempts + ?5,"
    " last_http_status = ?6, last_error = ?7, lease_token = NULL,"
    " lease_expires_at_ms = NULL WHERE id = ?1 AND state = 'sending' AND lease_token = ?2";

static const char SQL_TO_QUEUED[] =
    "UPDATE OR FAIL outbox SET"
    " state = CASE WHEN confirmed_at_ms IS NULL THEN 'queued' ELSE 'confirmed' END,"
    " state_reason = CASE WHEN confirmed_at_ms IS NULL THEN ?4"
    "  ELSE ?4 || '; confirmed by an earlier webhook' END, state_at_ms = ?3,"
    " attempts = attempts + ?8, counted_attempts = counted_attempts + ?5,"
    " last_http_status = CASE WHEN ?8 THEN ?6 ELSE last_http_status END,"
    " last_error = CASE WHEN ?8 THEN ?7 ELSE last_error END,"
    " next_attempt_at_ms = ?9, lease_token = NULL, lease_expires_at_ms = NULL"
    " WHERE id = ?1 AND state = 'sending' AND lease_token = ?2";

/* 0 is bound as NULL here rather than by NULLIF in the SQL: a function call in a
 * statement is one more thing that may abort it, and so costs a statement journal. */
static void
bind_int_or_null(sqlite3_stmt *s, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

static enum obx_err
apply_transition(struct obx_store *st, const struct obx_attempt *a, int64_t now_ms,
                 enum obx_err *result)
{
    const char *sql = a->next == OBX_NEXT_ACCEPTED ? SQL_TO_ACCEPTED
                      : a->next == OBX_NEXT_FAILED ? SQL_TO_FAILED
                                                   : SQL_TO_QUEUED;
    sqlite3_stmt *s = obx_db_stmt(st->db, sql);
    int made_attempt = a->next != OBX_NEXT_RELEASE;
    enum obx_err err;

    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, a->message_id);
    sqlite3_bind_int64(s, 2, a->lease_token);
    sqlite3_bind_int64(s, 3, now_ms);
    obx_db_bind_text(s, 4, a->reason ? a->reason : "");
    sqlite3_bind_int(s, 5, a->counted ? 1 : 0);
    bind_int_or_null(s, 6, a->http_status);
    if (a->next != OBX_NEXT_ACCEPTED)
        obx_db_bind_text(s, 7, a->error);
    if (a->next == OBX_NEXT_ACCEPTED)
        bind_int_or_null(s, 10, a->confirm_due_at_ms);
    if (a->next == OBX_NEXT_RETRY || a->next == OBX_NEXT_RELEASE) {
        sqlite3_bind_int(s, 8, made_attempt);
        sqlite3_bind_int64(s, 9, a->next == OBX_NEXT_RETRY ? a->next_attempt_at_ms : 0);
    }
    err = obx_db_step_done(s);
    if (err == OBX_OK)
        *result = sqlite3_changes(st->db->h) == 1 ? OBX_OK : OBX_ECONFLICT;
    return err;
}

enum obx_err
obx_store_finish(struct obx_store *st, const struct obx_attempt *a, size_t n, enum obx_err *results)
{
    int64_t now_ms = obx_now_ms(st->clock);
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_finish_fenced(st, a, n, results);
    err = obx_db_begin(st->db);
    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        enum obx_err r = OBX_OK;
        if (a[i].next != OBX_NEXT_RELEASE)
            err = obx_store_audit_add_attempt(st, &a[i]);
        if (err == OBX_OK)
            err = apply_transition(st, &a[i], now_ms, &r);
        if (results)
            results[i] = r;
    }
    if (err == OBX_OK)
        return obx_db_commit(st->db);
    obx_db_rollback(st->db);
    return err;
}

static const char SQL_RECOVER_ALL[] =
    "UPDATE outbox SET state = 'queued', state_reason = 'recovered after restart',"
    " state_at_ms = ?1, lease_token = NULL, lease_expires_at_ms = NULL WHERE state = 'sending'";

static const char SQL_RECOVER_EXPIRED[] =
    "UPDATE outbox SET state = 'queued', state_reason = 'lease expired', state_at_ms = ?1,"
    " lease_token = NULL, lease_expires_at_ms = NULL"
    " WHERE state = 'sending' AND lease_expires_at_ms <= ?1";

enum obx_err
obx_store_recover(struct obx_store *st, int all, int64_t *count)
{
    sqlite3_stmt *s;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_recover(st, all, count);
    if (count)
        *count = 0;
    s = obx_db_stmt(st->db, all ? SQL_RECOVER_ALL : SQL_RECOVER_EXPIRED);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, obx_now_ms(st->clock));
    err = obx_db_step_done(s);
    if (err == OBX_OK && count)
        *count = sqlite3_changes(st->db->h);
    return err;
}

/* ---- operator actions ---------------------------------------------------------------- */

/* Runs one guarded single-row transition by key; distinguishes absent from wrong state. */
static enum obx_err
transition_by_key(struct obx_store *st, const char *sql, const char *channel_id,
                  const char *external_message_id, const char *reason)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, sql);
    enum obx_err err;
    int changed;

    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    obx_db_bind_text(s, 2, external_message_id);
    sqlite3_bind_int64(s, 3, obx_now_ms(st->clock));
    obx_db_bind_text(s, 4, reason);
    err = obx_db_step_done(s);
    if (err != OBX_OK)
        return err;
    changed = sqlite3_changes(st->db->h);
    if (changed)
        return OBX_OK;
    s = obx_db_stmt(st->db, SQL_EXISTING);
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    obx_db_bind_text(s, 2, external_message_id);
    changed = sqlite3_step(s) == SQLITE_ROW;
    sqlite3_reset(s);
    return changed ? OBX_ECONFLICT : OBX_ENOTFOUND;
}

static const char SQL_RETRY[] =
    "UPDATE outbox SET state = 'queued', state_reason = ?4, state_at_ms = ?3,"
    " next_attempt_at_ms = 0, counted_attempts = 0, resends = 0, unconfirmed_at_ms = NULL,"
    " confirm_due_at_ms = NULL"
    " WHERE channel_id = ?1 AND external_message_id = ?2 AND state IN ('failed', 'accepted')";

static const char SQL_CANCEL[] =
    "UPDATE outbox SET state = 'cancelled', state_reason = ?4, state_at_ms = ?3"
    " WHERE channel_id = ?1 AND external_message_id = ?2 AND state = 'queued'";

enum obx_err
obx_store_retry(struct obx_store *st, const char *channel_id, const char *external_message_id,
                const char *reason)
{
    if (st->pg)
        return obx_store_pg_transition_by_key(st, 1, channel_id, external_message_id,
                                              reason ? reason : "retried by operator");
    return transition_by_key(st, SQL_RETRY, channel_id, external_message_id,
                             reason ? reason : "retried by operator");
}

enum obx_err
obx_store_cancel(struct obx_store *st, const char *channel_id, const char *external_message_id,
                 const char *reason)
{
    if (st->pg)
        return obx_store_pg_transition_by_key(st, 0, channel_id, external_message_id,
                                              reason ? reason : "cancelled by operator");
    return transition_by_key(st, SQL_CANCEL, channel_id, external_message_id,
                             reason ? reason : "cancelled by operator");
}

static const char SQL_RETRY_FAILED[] =
    "UPDATE outbox SET state = 'queued', state_reason = 'retried by operator',"
    " state_at_ms = ?1, next_attempt_at_ms = 0, counted_attempts = 0, resends = 0,"
    " unconfirmed_at_ms = NULL, confirm_due_at_ms = NULL"
    " WHERE state = 'failed' AND (?2 IS NULL OR channel_id = ?2)";

enum obx_err
obx_store_retry_failed(struct obx_store *st, const char *channel_id, int64_t *count)
{
    sqlite3_stmt *s;

    if (st->pg)
        return obx_store_pg_retry_failed(st, channel_id, count);
    *count = 0;
    if (!(s = obx_db_stmt(st->db, SQL_RETRY_FAILED)))
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, obx_now_ms(st->clock));
    obx_db_bind_text(s, 2, channel_id);
    return obx_db_step_in_tx(st->db, s, count);
}

/* The dashboard's bulk actions: the same transitions as SQL_RETRY and SQL_CANCEL, by filter. */
static const char SQL_BULK_RETRY[] =
    "UPDATE outbox SET state = 'queued', state_reason = ?6, state_at_ms = ?5,"
    " next_attempt_at_ms = 0, counted_attempts = 0, resends = 0, unconfirmed_at_ms = NULL,"
    " confirm_due_at_ms = NULL"
    " WHERE id IN (SELECT id FROM outbox INDEXED BY outbox_state" OBX_DASH_FILTER_WHERE
    " ORDER BY id LIMIT ?4) AND state IN ('failed', 'accepted')";

static const char SQL_BULK_CANCEL[] =
    "UPDATE outbox SET state = 'cancelled', state_reason = ?6, state_at_ms = ?5"
    " WHERE id IN (SELECT id FROM outbox INDEXED BY outbox_state" OBX_DASH_FILTER_WHERE
    " ORDER BY id LIMIT ?4) AND state = 'queued'";

enum obx_err
obx_store_bulk_transition(struct obx_store *st, const struct obx_store_dash_filter *f, int retry,
                          int max, int64_t now_ms, const char *reason, int64_t *touched)
{
    if (st->pg)
        return obx_store_pg_bulk_transition(st, f, retry, max, now_ms, reason, touched);
    sqlite3_stmt *s = obx_db_stmt(st->db, retry ? SQL_BULK_RETRY : SQL_BULK_CANCEL);

    *touched = 0;
    if (!s)
        return OBX_EDB;
    obx_store_dash_bind_filter(s, f);
    sqlite3_bind_int(s, 4, max);
    sqlite3_bind_int64(s, 5, now_ms);
    obx_db_bind_text(s, 6, reason);
    return obx_db_step_in_tx(st->db, s, touched);
}

/* ---- purge (one batch at a time; lib/retention.c drives the batches) ------------------ */

/*
 * One state at a time through the (state, id) index: an id cursor per state makes each
 * batch a short range scan, where a single "state IN (...) AND state_at_ms < ?" query
 * would read or sort the whole set again on every batch.
 *
 * The walk ends at the first message created after the cut (PURGE_WALK_ENDS): ids grow
 * with time, so every message after it is younger still, and a message's last transition
 * is never older than its creation. Without that end, each hourly pass read every
 * confirmed message kept (30 days of them by default) to delete the oldest hour's worth.
 * A row given an explicit smaller id through plain SQL can end a walk early; what it holds
 * back goes once that row is old enough itself (at most `retention` later).
 */
static const char SQL_PURGE_CANDIDATES[] =
    "SELECT id, channel_id, state_at_ms, external_conversation_id, created_at_ms FROM outbox"
    " WHERE state = ?1 AND id > ?2 ORDER BY id LIMIT ?3";

static const char SQL_DELETE_ID[] = "DELETE FROM outbox WHERE id = ?1";

/*
 * A conversation whose tail is purged has nothing unfinished (a finished tail ends the
 * chain): its row goes too, so the table does not keep every conversation ever seen.
 */
static const char SQL_DELETE_CONVERSATION[] =
    "DELETE FROM conversations WHERE channel_id = ?1 AND external_conversation_id = ?2"
    " AND tail_id = ?3";

static enum obx_err
delete_message(sqlite3_stmt *del, sqlite3_stmt *del_conv, sqlite3_stmt *sel)
{
    enum obx_err err;

    sqlite3_bind_int64(del, 1, sqlite3_column_int64(sel, 0));
    err = obx_db_step_done(del);
    if (err != OBX_OK)
        return err;
    obx_db_bind_text(del_conv, 1, (const char *)sqlite3_column_text(sel, 1));
    obx_db_bind_text(del_conv, 2, (const char *)sqlite3_column_text(sel, 3));
    sqlite3_bind_int64(del_conv, 3, sqlite3_column_int64(sel, 0));
    return obx_db_step_done(del_conv);
}

/* A channel's own tenant says whether it is read-only; for the others, is_readonly. */
static int
channel_readonly(struct obx_store *st, const struct obx_purge_opts *o, const char *channel)
{
    int ro = -1;

    if (obx_store_tenant_channel_readonly(st, channel, &ro) != OBX_OK)
        return 0; /* unsure: keep it */
    if (ro >= 0)
        return ro;
    return o->is_readonly && o->is_readonly(o->ctx, channel);
}

/* Whether messages in `state` can go at all (SPEC §10), before their age is looked at. */
static int
purgeable_state(enum obx_state state, const struct obx_purge_opts *o)
{
    switch (state) {
    case OBX_ST_CONFIRMED:
    case OBX_ST_CANCELLED: return 1;
    case OBX_ST_FAILED: return o->include_failed;
    case OBX_ST_ACCEPTED:
        /* accepted is terminal only for read-only channels (a tenant's, or one named by
         * is_readonly), checked per row */
        return 1;
    default: return 0;
    }
}

int
obx_store_batch_expired(const struct obx_batch_limit *lim)
{
    return lim->until_mono_ms > 0 && obx_mono_ms(obx_clock_real()) >= lim->until_mono_ms;
}

/* PostgreSQL: the ids chosen from one batch of candidates. */
struct pg_purge {
    struct obx_store *st;
    const struct obx_purge_opts *o;
    enum obx_state state;
    struct obx_buf ids;
    enum obx_err err;
    int young; /* a message created after the cut: the walk ends */
};

static int
on_pg_candidate(void *ctx, int64_t id, const char *channel_id, int64_t state_at_ms,
                int64_t created_at_ms)
{
    struct pg_purge *p = ctx;

    if (created_at_ms >= p->o->before_ms) {
        p->young = 1; /* the end of the walk, as on SQLite (SQL_PURGE_CANDIDATES) */
        return 1;
    }
    if (p->err == OBX_OK && state_at_ms < p->o->before_ms &&
        (p->state != OBX_ST_ACCEPTED || channel_readonly(p->st, p->o, channel_id)))
        p->err = obx_pg_array_int(&p->ids, id, 0);
    return 0;
}

static enum obx_err
purge_batch_pg(struct obx_store *st, const struct obx_purge_opts *o, enum obx_state state,
               const struct obx_batch_limit *lim, int64_t *cursor, int64_t *deleted, int *more)
{
    struct pg_purge p = {st, o, state, {0}, OBX_OK, 0};
    int scanned = 0;
    enum obx_err err;

    obx_buf_init(&p.ids, (size_t)lim->rows * 24 + 16);
    err = obx_store_pg_purge_candidates(st, obx_store_state_name(state), *cursor, lim->rows,
                                        on_pg_candidate, &p, cursor, &scanned);
    if (err == OBX_OK)
        err = p.err;
    if (err == OBX_OK && p.ids.len)
        err = obx_pg_array_end(&p.ids);
    if (err == OBX_OK && p.ids.len)
        err = obx_store_pg_delete_messages(st, obx_buf_str(&p.ids), obx_store_state_name(state),
                                           deleted);
    obx_buf_release(&p.ids);
    *more = err == OBX_OK && !p.young && scanned == lim->rows;
    return err;
}

enum obx_err
obx_store_purge_batch(struct obx_store *st, const struct obx_purge_opts *o, enum obx_state state,
                      const struct obx_batch_limit *lim, int64_t *cursor, int64_t *deleted,
                      int *more)
{
    if (st->pg) {
        *deleted = 0;
        *more = 0;
        return purgeable_state(state, o) ? purge_batch_pg(st, o, state, lim, cursor, deleted, more)
                                         : OBX_OK;
    }

    sqlite3_stmt *sel = obx_db_stmt(st->db, SQL_PURGE_CANDIDATES);
    sqlite3_stmt *del = obx_db_stmt(st->db, SQL_DELETE_ID);
    sqlite3_stmt *del_conv = obx_db_stmt(st->db, SQL_DELETE_CONVERSATION);
    int64_t last = *cursor, n = 0;
    int scanned = 0, young = 0, rc = SQLITE_DONE;
    enum obx_err err;

    *deleted = 0;
    *more = 0;
    if (!purgeable_state(state, o))
        return OBX_OK;
    if (!sel || !del || !del_conv)
        return OBX_EDB;
    err = obx_db_begin(st->db);
    obx_db_bind_text(sel, 1, obx_store_state_name(state));
    sqlite3_bind_int64(sel, 2, *cursor);
    sqlite3_bind_int(sel, 3, lim->rows);
    while (err == OBX_OK && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
        if (sqlite3_column_int64(sel, 4) >= o->before_ms) {
            young = 1; /* the end of the walk: see SQL_PURGE_CANDIDATES */
            break;
        }
        scanned++;
        last = sqlite3_column_int64(sel, 0);
        if (sqlite3_column_int64(sel, 2) < o->before_ms &&
            (state != OBX_ST_ACCEPTED ||
             channel_readonly(st, o, (const char *)sqlite3_column_text(sel, 1)))) {
            err = delete_message(del, del_conv, sel);
            n += err == OBX_OK;
        }
        if (obx_store_batch_expired(lim))
            break;
    }
    err = obx_db_end_scan(st->db, sel, rc, err);
    if (err != OBX_OK)
        return err;
    /* A batch cut short by rows or time leaves more; one that ran dry or young does not. */
    *more = !young && (rc == SQLITE_ROW || scanned == lim->rows);
    *cursor = last;
    *deleted = n;
    return OBX_OK;
}

/* ---- confirmation ------------------------------------------------------------------------ */

/*
 * INDEXED BY: without ANALYZE statistics the planner prefers outbox_state (state = ?)
 * and walks every accepted message, all of them on a read-only channel until
 * retention: 0.3-0.5 s per call with 1,000,000 of them, every second, on serve's loop
 * (docs/benchmarks.md, "Purge and retention"). The partial index holds only the
 * messages that still wait for a confirmation.
 */
static const char SQL_RESEND_UNCONFIRMED[] =
    "UPDATE outbox INDEXED BY outbox_confirm_due SET state = 'queued', state_at_ms = ?1, next_attempt_at_ms = 0,"
    " state_reason = 'no confirmation in time; re-sending', resends = resends + 1,"
    " confirm_due_at_ms = NULL"
    " WHERE state = 'accepted' AND confirm_due_at_ms <= ?1 AND resends < ?2";

static const char SQL_GIVE_UP_UNCONFIRMED[] =
    "UPDATE outbox INDEXED BY outbox_confirm_due SET unconfirmed_at_ms = ?1,"
    " confirm_due_at_ms = NULL"
    " WHERE state = 'accepted' AND confirm_due_at_ms <= ?1 AND resends >= ?2";

const char *const obx_store_confirm_sql[] = {SQL_RESEND_UNCONFIRMED, SQL_GIVE_UP_UNCONFIRMED, NULL};

enum obx_err
obx_store_confirm_timeouts(struct obx_store *st, int64_t max_resends, int64_t *resent,
                           int64_t *unconfirmed)
{
    sqlite3_stmt *re, *up;
    int64_t now_ms = obx_now_ms(st->clock);
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_confirm_timeouts(st, max_resends, resent, unconfirmed);
    *resent = 0;
    *unconfirmed = 0;
    re = obx_db_stmt(st->db, SQL_RESEND_UNCONFIRMED);
    up = obx_db_stmt(st->db, SQL_GIVE_UP_UNCONFIRMED);
    if (!re || !up)
        return OBX_EDB;
    err = obx_db_begin(st->db);
    sqlite3_bind_int64(re, 1, now_ms);
    sqlite3_bind_int64(re, 2, max_resends);
    sqlite3_bind_int64(up, 1, now_ms);
    sqlite3_bind_int64(up, 2, max_resends);
    if (err == OBX_OK)
        err = obx_db_step_done(up);
    if (err == OBX_OK) {
        *unconfirmed = sqlite3_changes(st->db->h);
        err = obx_db_step_done(re);
    }
    if (err == OBX_OK) {
        *resent = sqlite3_changes(st->db->h);
        return obx_db_commit(st->db);
    }
    obx_db_rollback(st->db);
    *resent = *unconfirmed = 0;
    return err;
}

/*
 * Confirms by key. The state moves to confirmed from accepted, failed or queued
 * (Partoo has the message: no need to send it again); a message in flight keeps
 * its state and gets confirmed_at_ms, which obx_store_finish honours.
 */
static const char SQL_CONFIRM[] =
    "UPDATE outbox SET partoo_message_id = ?3, partoo_status = ?4,"
    " confirmed_at_ms = coalesce(confirmed_at_ms, ?5), confirm_due_at_ms = NULL,"
    " unconfirmed_at_ms = NULL,"
    " state_reason = CASE WHEN state IN ('accepted', 'failed', 'queued') THEN ?6"
    "  ELSE state_reason END,"
    " state_at_ms = CASE WHEN state IN ('accepted', 'failed', 'queued') THEN ?5"
    "  ELSE state_at_ms END,"
    " state = CASE WHEN state IN ('accepted', 'failed', 'queued') THEN 'confirmed'"
    "  ELSE state END"
    " WHERE id = ?1";

/* The row id of a key, or OBX_ENOTFOUND. */
static enum obx_err
find_by_key(struct obx_store *st, const char *channel_id, const char *external_message_id,
            int64_t *id)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_EXISTING);
    int rc;

    *id = 0;
    if (!s)
        return OBX_EDB;
    obx_db_bind_text(s, 1, channel_id);
    obx_db_bind_text(s, 2, external_message_id);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return OBX_OK;
    return rc == SQLITE_DONE ? OBX_ENOTFOUND : obx_err_from_sqlite(rc);
}

/*
 * The channels are few: an external id alone is looked up channel by channel through the key
 * index (channel_id, external_message_id), each channel found by a seek past the previous
 * one. That spares every enqueued row an index on external_message_id alone.
 */
static const char SQL_NEXT_CHANNEL[] =
    "SELECT channel_id FROM outbox WHERE channel_id > ?1 ORDER BY channel_id LIMIT 1";

/* Resolves an external id alone to a row, only when exactly one channel has it. */
static enum obx_err
find_unambiguous(struct obx_store *st, const char *external_message_id, int64_t *id)
{
    sqlite3_stmt *next = obx_db_stmt(st->db, SQL_NEXT_CHANNEL);
    char *channel = obx_strdup("");
    enum obx_err err = !next ? OBX_EDB : channel ? OBX_OK : OBX_ENOMEM;
    int rows = 0;

    *id = 0;
    while (err == OBX_OK && rows < 2) {
        int64_t found = 0;
        int rc;

        sqlite3_bind_text(next, 1, channel, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(next);
        obx_free(channel);
        channel = rc == SQLITE_ROW ? obx_db_column_dup(next, 0) : NULL;
        sqlite3_reset(next);
        if (rc != SQLITE_ROW) {
            err = rc == SQLITE_DONE ? OBX_OK : obx_err_from_sqlite(rc);
            break;
        }
        if (!channel) {
            err = OBX_ENOMEM;
            break;
        }
        err = find_by_key(st, channel, external_message_id, &found);
        if (err == OBX_ENOTFOUND)
            err = OBX_OK;
        else if (err == OBX_OK && rows++ == 0)
            *id = found;
    }
    obx_free(channel);
    if (err != OBX_OK || rows != 1)
        *id = 0;
    if (err != OBX_OK)
        return err;
    return rows == 1 ? OBX_OK : (rows ? OBX_ECONFLICT : OBX_ENOTFOUND);
}

enum obx_err
obx_store_confirm(struct obx_store *st, const char *channel_id, const char *external_message_id,
                  const char *partoo_message_id, const char *partoo_status, const char *reason)
{
    sqlite3_stmt *s;
    int64_t id = 0;
    enum obx_err err;

    if (st->pg)
        return obx_store_pg_confirm(st, channel_id, external_message_id, partoo_message_id,
                                    partoo_status, reason);
    if (channel_id)
        err = find_by_key(st, channel_id, external_message_id, &id);
    else
        err = find_unambiguous(st, external_message_id, &id);
    if (err != OBX_OK)
        return err;
    s = obx_db_stmt(st->db, SQL_CONFIRM);
    if (!s)
        return OBX_EDB;
    sqlite3_bind_int64(s, 1, id);
    obx_db_bind_text(s, 3, partoo_message_id);
    obx_db_bind_text(s, 4, partoo_status);
    sqlite3_bind_int64(s, 5, obx_now_ms(st->clock));
    obx_db_bind_text(s, 6, reason);
    return obx_db_step_done(s);
}

/* ---- service state ---------------------------------------------------------------------- */

static const char SQL_PUBLISH[] =
    "INSERT INTO service_state (key, value, updated_at_ms) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at_ms = excluded.updated_at_ms";

enum obx_err
obx_store_publish_state(struct obx_store *st, const char *const *keys, const char *const *values,
                        size_t n)
{
    sqlite3_stmt *s = obx_db_stmt(st->db, SQL_PUBLISH);
    int64_t now_ms = obx_now_ms(st->clock);
    enum obx_err err;

    if (!s)
        return OBX_EDB;
    err = obx_db_begin(st->db);
    for (size_t i = 0; err == OBX_OK && i < n; i++) {
        obx_db_bind_text(s, 1, keys[i]);
        obx_db_bind_text(s, 2, values[i]);
        sqlite3_bind_int64(s, 3, now_ms);
        err = obx_db_step_done(s);
    }
    if (err == OBX_OK)
        return obx_db_commit(st->db);
    obx_db_rollback(st->db);
    return err;
}

/* ---- the WAL on a tight disk ------------------------------------------------------------ */

/*
 * Why: a WAL only shrinks after a checkpoint, and a checkpoint needs the database file
 * to grow by what the WAL holds. Left to wal_pages (40 MB in serve), a WAL on a nearly
 * full disk takes the last free byte; once space returns, the first commits use it up
 * again and neither a commit nor a checkpoint fits any more (the stop-10 analysis in
 * docs/reliability.md). So the WAL may hold at most a quarter of the free space: below
 * that, checkpoints come earlier, the file is cut back after each, and a TRUNCATE
 * checkpoint is tried every time (it is what succeeds first after SQLITE_FULL, as
 * soon as there is room for the pages it copies back).
 */
#define WAL_GUARD_MIN_PAGES 32
#define WAL_GUARD_SHARE 4

enum obx_err
obx_store_guard_wal(struct obx_store *st, struct obx_wal_guard *g)
{
    const char *path = sqlite3_db_filename(st->db->h, "main");
    char wal[4096], sql[128];
    struct statvfs vfs;
    struct stat sb;
    int64_t page = 4096, pages;
    int log = 0, done = 0;

    g->checkpointed = 0;
    if (!path || !*path)
        return OBX_OK; /* in-memory database */
    if (statvfs(path, &vfs) != 0)
        return OBX_EIO;
    snprintf(wal, sizeof wal, "%s-wal", path);
    g->free_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
    g->wal_bytes = stat(wal, &sb) == 0 ? (int64_t)sb.st_size : 0;
    pages = g->free_bytes / WAL_GUARD_SHARE / page;
    if (pages < WAL_GUARD_MIN_PAGES)
        pages = WAL_GUARD_MIN_PAGES;
    if (pages > st->wal_pages)
        pages = st->wal_pages;
    g->tight = pages < st->wal_pages;
    if (g->cap_pages > 0 && pages > g->cap_pages)
        pages = g->cap_pages;
    if (pages != g->autocheckpoint_pages) {
        snprintf(sql, sizeof sql,
                 "PRAGMA wal_autocheckpoint = %lld; PRAGMA journal_size_limit = %lld",
                 (long long)pages, (long long)pages * page);
        if (obx_db_exec(st->db, sql) != OBX_OK)
            return OBX_EDB;
        g->autocheckpoint_pages = pages;
    }
    if (g->tight && g->wal_bytes > 0 && !st->db->in_tx &&
        sqlite3_wal_checkpoint_v2(st->db->h, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done) ==
            SQLITE_OK)
        g->checkpointed = 1;
    return OBX_OK;
}
