/*
 * liboutbox: the public C API of partoo-outbox.
 *
 * A producer opens the outbox database, enqueues messages (one, many in one
 * transaction, or inside its own SQLite transaction) and may inspect them.
 * Delivery to Partoo is done by `outbox serve`; nothing here talks to the network.
 *
 * Everything not declared in this header is private to the library. Structs are
 * opaque unless stated otherwise. Every function may be called from any thread
 * as long as one struct obx_store is used by one thread at a time (SQLite's
 * "multi-thread" mode).
 */
#ifndef OBX_OUTBOX_H
#define OBX_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define OBX_MUST_CHECK __attribute__((warn_unused_result))
#else
#define OBX_MUST_CHECK
#endif

#define OBX_VERSION "0.1.0"

/* Error codes. Specific enough to choose an action; see obx_strerror(). */
enum obx_err {
    OBX_OK = 0,
    OBX_EINVAL,    /* invalid input: a field, a flag, a document */
    OBX_EDUP,      /* the key exists with identical fields: nothing changed */
    OBX_ECONFLICT, /* the key exists with other fields, or wrong state / lease lost */
    OBX_ENOTFOUND, /* no such message or row */
    OBX_EBUSY,     /* database locked past the busy timeout */
    OBX_EFULL,     /* disk full or max_db_size reached */
    OBX_EREADONLY, /* database or its directory is read-only */
    OBX_ENOMEM,    /* allocation failed */
    OBX_EDB,       /* any other database error */
    OBX_ESCHEMA,   /* database schema is newer than this binary, or damaged */
    OBX_EIO,       /* file or network I/O failed */
    OBX_ECONFIG,   /* bad configuration */
    OBX_ETOOBIG,   /* a size limit was exceeded */
    OBX_EQUOTA,    /* max_db_size reached: new messages refused, delivery goes on */
};

/* Returns a fixed, lower-case description of err. Never NULL. */
const char *obx_strerror(enum obx_err err);

/*
 * A message as producers see it. Strings are NUL-terminated UTF-8; consumer_name
 * and consumer_image may be NULL (omitted). This struct is public so producers can
 * fill it on the stack; the library never keeps pointers into it.
 */
struct obx_msg {
    const char *channel_id;
    const char *external_message_id;
    const char *business_id;
    const char *external_conversation_id;
    const char *content;
    const char *sender_type;    /* "User" or "Consumer" */
    const char *consumer_name;  /* optional */
    const char *consumer_image; /* optional, a URL */
    int64_t priority;           /* higher is sent first; default 0 */
};

/* Outcome of one enqueue. */
enum obx_enqueue_result {
    OBX_ENQ_ACCEPTED = 0, /* a new row was committed */
    OBX_ENQ_DUPLICATE,    /* the key existed with identical fields */
};

struct obx_store;

/* Options for obx_store_open(). Zero-initialise, then set what you need. */
struct obx_store_opts {
    int synchronous_normal;  /* 1: PRAGMA synchronous=NORMAL (faster; the last commits may be
                                lost on power loss). 0: FULL, the default */
    int64_t busy_timeout_ms; /* 0: 5000 */
    int no_migrate;          /* 1: refuse a database whose schema is not current */
    int64_t max_db_size;     /* bytes; 0 = no quota. Enqueue answers OBX_EQUOTA past it */
    int64_t cache_kib;       /* SQLite page cache in KiB; 0: 8192 */
    int64_t wal_pages;       /* WAL pages before an automatic checkpoint; 0: 1000 (SQLite's).
                                Bulk loaders gain from e.g. 20000: fewer rewrites of the
                                same index pages, at the cost of a larger -wal file */
};

/*
 * Opens (creating if needed) the outbox database at path, applies pending
 * migrations unless opts->no_migrate, and returns it in *out. opts may be NULL.
 * Returns OBX_ESCHEMA for a database newer than this binary.
 * The caller owns *out; free it with obx_store_free().
 */
OBX_MUST_CHECK enum obx_err obx_store_open(const char *path, const struct obx_store_opts *opts,
                                           struct obx_store **out /* OUT */);

/* Closes the database. NULL is a no-op. */
void obx_store_free(struct obx_store *st);

/*
 * Enqueues one message in its own transaction. On success *result tells whether
 * the row is new or an identical duplicate, and *id (may be NULL) is its row id.
 * Returns OBX_EINVAL for an invalid message (nothing written), OBX_ECONFLICT
 * when the key exists with different fields.
 */
OBX_MUST_CHECK enum obx_err obx_enqueue(struct obx_store *st, const struct obx_msg *m,
                                        enum obx_enqueue_result *result /* OUT */,
                                        int64_t *id /* OUT, may be NULL */);

/*
 * Enqueues one message on a connection the caller owns, inside the caller's own
 * transaction (the transactional-outbox pattern): the message commits or rolls
 * back with the producer's business data. The database must have been migrated
 * (obx_store_open once, or `outbox migrate`). Same results as obx_enqueue().
 */
struct sqlite3;
OBX_MUST_CHECK enum obx_err obx_enqueue_sqlite(struct sqlite3 *db, const struct obx_msg *m,
                                               enum obx_enqueue_result *result /* OUT */,
                                               int64_t *id /* OUT, may be NULL */);

#ifdef __cplusplus
}
#endif
#endif
