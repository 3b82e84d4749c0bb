/*
 * audit: the tamper-evident audit trail: this module seals the transitions and
 * attempts into a hash chain, verifies it, exports it, and prunes old events
 * behind a checkpoint. Until schema 9, triggers copied every event into audit_log
 * (0003_audit_chain.sql); those rows stay at the start of the chain.
 *
 * The chain since schema 9 (0009_lean_audit.sql): each fact is written once.
 * The events are the rows of transitions and attempts themselves, kept after their
 * message is purged until the prune. A seal (one audit_seals row, about one per
 * second) covers the transitions with id in (previous seal's transitions_upto,
 * transitions_upto] and then the attempts with id in (previous attempts_upto,
 * attempts_upto], then (since schema 10, 0010_audit_actions.sql) the actions, pauses and
 * resumes, with id in (previous actions_upto, actions_upto], each in id order (seals before
 * schema 10 have actions_upto 0: no action); it chains each event exactly as below and
 * stores the hash after its last event (and the number of events). Seal ids
 * continue audit_log's ids: "row" in reports, checkpoints and audit_chain_modes
 * means a legacy audit_log row or a seal. The canonical row of an event is
 *   [id,at_ms,"transition",channel_id,external_message_id,record] with record =
 *     json_object('message_id',..,'from',..,'to',..,'reason',..), or
 *   [id,started_at_ms,"attempt",channel_id,external_message_id,record] with record =
 *     json_object('message_id',..,'sent_sha256',..,'duration_ms',..,'http_status',..,
 *                 'outcome',..,'error',..,'response_excerpt',..), or
 *   [id,at_ms,"pause"|"resume",key,"",record] with record =
 *     json_object('scope',..,'reason',..,'by',..) (key: the channel id for a channel pause;
 *     by: cli, api or dashboard)
 * (SQLite's json_object text; channel_id and external_message_id from
 * audit_messages). sent_sha256 = lower hex of SHA-256 of json_object(
 * 'business_id','external_conversation_id','content','sender_type',
 * 'consumer_name','consumer_image') of the message: what was sent, stored once per
 * message in audit_messages.sent_sha256 (32 bytes) by the sealer, before it seals
 * the message's first event ("" when the message was already gone). Verification
 * names the first seal that does not match: a seal covers the events of about one
 * second, so it locates a change to within those events.
 *
 * The chain, for rows in id order:
 *   hash(row) = hex(SHA-256(prev_hash || "\n" || canonical(row)))
 *   canonical(row) = [id,at_ms,"kind","channel_id","external_message_id","record"]
 * a JSON array without spaces: integers in decimal, the four texts as JSON strings
 * escaped like obx_buf_json_str (\" \\ \n \r \t, other bytes below 0x20 as \u00xx
 * in lower-case hex, bytes that are not UTF-8 as U+FFFD, everything else as is).
 * Quoting makes the encoding unambiguous whatever the ids contain.
 * prev_hash of the first row is 64 "0" characters, or the hash kept in the latest
 * audit_checkpoints row after a prune. Changing, inserting or deleting any sealed
 * row breaks every later hash, and verification names the first broken row (legacy
 * row or seal).
 *
 * The keyed chain (audit_key_file, 0008_audit_keyed.sql). A plain chain proves only that
 * nobody changed rows without re-sealing: whoever can write the database can recompute it.
 * With a key, rows are sealed with
 *   hash(row) = hex(HMAC-SHA256(K, prev_hash || "\n" || canonical(row)))
 *   K = SHA-256(first line of audit_key_file, trailing whitespace trimmed)
 * and one audit_chain_modes row says from which id on (from_id), under which key
 * (key_id = first 16 hex digits of HMAC-SHA256(K, "outbox-audit-key-id")), with
 *   mac = hex(HMAC-SHA256(K, "outbox-audit-mode\n" || from_id || "\n" || key_id))
 * so that from_id cannot be moved without the key. Rows before from_id stay plain.
 * Sealing with a key starts that segment at the next row; sealing without the key, or with
 * another key, once the chain is keyed is refused (OBX_ECONFIG): rows wait unsealed. Verifying
 * a keyed chain needs the key; with a key given, a chain with no keyed segment fails too
 * (its record may have been removed to pass the chain off as plain).
 */
#ifndef OBX_AUDIT_H
#define OBX_AUDIT_H

#include "store.h"
#include "store_audit.h"

#define OBX_AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"

/*
 * Reads the key from the first line of path (at least 16 bytes) into st: later seals and
 * verifications use the keyed chain. start_segment: this store's seals may start the keyed
 * segment (serve); without it (the CLI) they only continue one, else seal plain rows, so that
 * a verifying CLI cannot paper over a removed segment record by starting a new one. errmsg (n
 * bytes) says why on OBX_ECONFIG; it names the file, never the key.
 */
OBX_MUST_CHECK enum obx_err obx_audit_use_key(struct obx_store *st, const char *path,
                                              int start_segment, char *errmsg, size_t n);

/*
 * OBX_ECONFIG with errmsg set when the chain is keyed and st holds no key or another key:
 * serve checks it at start rather than failing to seal every second.
 */
OBX_MUST_CHECK enum obx_err obx_audit_check_key(struct obx_store *st, char *errmsg, size_t n);

/*
 * Seals up to max unsealed rows, in id order, in one transaction. With a key (and
 * st->audit_key_start), the first seal starts the keyed segment at the next row, even when
 * nothing is unsealed yet; OBX_ECONFIG when the chain is keyed and st lacks its key.
 */
OBX_MUST_CHECK enum obx_err obx_audit_seal(struct obx_store *st, int max,
                                           int64_t *sealed /* OUT */);

/*
 * A seal in three steps, for serve on SQLite: the store thread is the one writer there, and
 * reading and hashing the events (most of a seal's time) can run on another thread's
 * connection meanwhile. prepare (the writer, in its transaction): the keyed segment's start,
 * legacy rows, the messages' sent_sha256, and the range to seal. chain (any connection that
 * sees prepare's commit): reads and hashes the range. finish (the writer): stores the seal,
 * unless another seal came after prepare (then nothing: the range is sealed again later).
 * obx_audit_seal runs the three in one transaction.
 */
struct obx_audit_seal_plan {
    struct obx_audit_seal last, next; /* the head at prepare; the seal to add */
    char prev[65];                    /* the hash the range chains onto */
    int keyed;                        /* chained with the key (the chain's store has it) */
    int any;                          /* the range holds events */
    int64_t sealed;                   /* legacy rows sealed by prepare */
};
OBX_MUST_CHECK enum obx_err obx_audit_seal_prepare(struct obx_store *st, int max,
                                                   struct obx_audit_seal_plan *p /* OUT */);
OBX_MUST_CHECK enum obx_err obx_audit_seal_chain(struct obx_store *st,
                                                 struct obx_audit_seal_plan *p);
OBX_MUST_CHECK enum obx_err obx_audit_seal_finish(struct obx_store *st,
                                                  const struct obx_audit_seal_plan *p,
                                                  int64_t *sealed /* OUT */);

struct obx_audit_report {
    int64_t checked;      /* sealed rows recomputed */
    int64_t seals;        /* seals (and sealed legacy rows) recomputed */
    int64_t unsealed;     /* rows not sealed yet (at the end of the chain) */
    int64_t first_bad_id; /* 0 = the chain verifies */
    int64_t head_id;      /* last sealed row (0 = none) */
    char head_hash[65];
    char problem[160];     /* what is wrong at first_bad_id */
    int64_t keyed_from_id; /* first row of the keyed segment; 0 = plain SHA-256 chain */
    char key_id[17];       /* the keyed segment's key id ("" = none) */
};

/* Recomputes the whole chain from the latest checkpoint (read-only). */
OBX_MUST_CHECK enum obx_err obx_audit_verify(struct obx_store *st,
                                             struct obx_audit_report *out /* OUT */);

/*
 * Where a sliced verification stands: the last row (legacy row or seal) verified and the
 * chain's hash there, plus the counts so far. Nothing secret (the hashes are exported anyway);
 * with a keyed chain the key stays in st. Start with a zeroed cursor.
 */
struct obx_audit_cursor {
    int started;
    int64_t last_id;  /* rows up to this id are verified (or behind the checkpoint) */
    int64_t head_id;  /* last row verified (0 = none yet) */
    int64_t checked;  /* events verified so far */
    int64_t unsealed; /* legacy rows not sealed yet, seen so far */
    int64_t seals;    /* seals (and legacy rows) verified so far */
    char hash[65];    /* the chain's hash after last_id: 64 lower-case hex digits */
};

/*
 * Verifies the chain from *c on, each slice in its own read transaction, and stops after
 * max_rows seals (or legacy rows) or max_ms of monotonic time (0 = no limit; at least one row
 * per call), so that serve's loop is never held long. *done = 1 when the chain's end or a
 * broken row was reached; out then is the verdict obx_audit_verify gives, else the counts so
 * far. A prune past the cursor between two slices restarts from the new checkpoint.
 * OBX_EINVAL when a started cursor's hash is not 64 lower-case hex digits.
 */
OBX_MUST_CHECK enum obx_err obx_audit_verify_slice(struct obx_store *st, int max_rows,
                                                   int64_t max_ms,
                                                   struct obx_audit_cursor *c /* IN/OUT */,
                                                   struct obx_audit_report *out /* OUT */,
                                                   int *done /* OUT */);

/* One exported row, borrowed during the callback. */
struct obx_audit_entry {
    int64_t id;
    int64_t at_ms;
    const char *kind;
    const char *channel_id;
    const char *external_message_id;
    const char *record; /* JSON object text */
    const char *prev_hash;
    const char *hash; /* NULL when not sealed yet */
};
typedef int (*obx_audit_entry_fn)(void *ctx, const struct obx_audit_entry *e);

/* Rows with since_ms <= at_ms < until_ms (and channel, when not NULL), in chain order. */
OBX_MUST_CHECK enum obx_err obx_audit_export(struct obx_store *st, int64_t since_ms,
                                             int64_t until_ms, const char *channel_id,
                                             obx_audit_entry_fn fn, void *ctx);

/* Where a prune ends: the last row of the prunable prefix (0 = none) and its hash. */
struct obx_audit_prune {
    int64_t upto_id;
    char upto_hash[65];
};

/*
 * Pruning, for lib/retention.c, in two kinds of step. Start with *p zeroed and call
 * obx_audit_prune_scan until *more is 0: each reads up to max_rows rows after
 * p->upto_id and extends the prefix of sealed rows older than before_ms (reads only).
 * Then obx_audit_prune_batch until *more is 0: its first call records a checkpoint with
 * the prefix's last hash (unless a checkpoint already covers it), and every call deletes
 * up to max_rows rows behind the latest checkpoint.
 */
OBX_MUST_CHECK enum obx_err obx_audit_prune_scan(struct obx_store *st, int64_t before_ms,
                                                 int max_rows,
                                                 struct obx_audit_prune *p /* IN/OUT */,
                                                 int *more /* OUT */);
OBX_MUST_CHECK enum obx_err obx_audit_prune_batch(struct obx_store *st,
                                                  const struct obx_audit_prune *p, int max_rows,
                                                  int64_t *removed /* OUT */, int *more /* OUT */);

#endif
