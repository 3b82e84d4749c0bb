/*
 * db: one SQLite connection with the project's pragmas, a cache of prepared
 * statements, and transaction helpers. Lower layers of the store; silent (no logs).
 */
#ifndef OBX_DB_H
#define OBX_DB_H

#include <sqlite3.h>

#include "outbox.h"

/*
 * Room for every static SQL text the library prepares through obx_db_stmt (about 90 today,
 * with the dashboard and the lean audit chain) and headroom: a full cache fails the
 * statement (obx_db_stmt returns NULL), which callers report as a database error.
 */
#define OBX_DB_STMT_CACHE 160

struct obx_db {
    sqlite3 *h;
    /* Prepared statements keyed by the address of their (static) SQL text. */
    struct {
        const char *sql;
        sqlite3_stmt *stmt;
    } cache[OBX_DB_STMT_CACHE];
    int ncache;
    int in_tx; /* nesting depth: 0 outside a transaction, 1 in it, >1 in savepoints */
};

/*
 * Opens path with WAL, the requested synchronous level, a busy timeout and
 * foreign keys. readonly opens without creating or writing (for inspection).
 * On failure *out is NULL and errmsg (may be NULL, size n) says why.
 */
OBX_MUST_CHECK enum obx_err obx_db_open(const char *path, int synchronous_full,
                                        int64_t busy_timeout_ms, struct obx_db **out /* OUT */,
                                        char *errmsg, size_t n);
void obx_db_free(struct obx_db *db);

/*
 * Returns the cached prepared statement for sql, reset and with bindings cleared.
 * sql must be a string with static storage duration: the cache keys on its address.
 * Borrowed: never finalize it. NULL on a prepare error.
 */
sqlite3_stmt *obx_db_stmt(struct obx_db *db, const char *sql);

/*
 * BEGIN IMMEDIATE (the write lock up front, so busy is reported at the start); inside an
 * open transaction, a savepoint instead: transactions nest, and commit/rollback end the
 * innermost level only (how the store thread groups jobs into one commit).
 */
OBX_MUST_CHECK enum obx_err obx_db_begin(struct obx_db *db);
OBX_MUST_CHECK enum obx_err obx_db_commit(struct obx_db *db);
/* Rolls back the innermost level if a transaction is open; safe to call at any time. */
void obx_db_rollback(struct obx_db *db);
/* 1 while the outermost transaction is still open (SQLite ends it itself on some errors). */
int obx_db_tx_alive(const struct obx_db *db);
/* Rolls back every level at once. */
void obx_db_abort(struct obx_db *db);

/*
 * Ends the open transaction by how the work in it went: commits when err is OBX_OK (and
 * returns the commit's result), rolls back otherwise (and returns err).
 */
OBX_MUST_CHECK enum obx_err obx_db_end(struct obx_db *db, enum obx_err err);

/*
 * Resets every cached statement. A SELECT stepped to a row and never reset keeps its read
 * transaction open: the connection then reads an old snapshot for ever (and holds the WAL
 * back). Serve's loop connection only reads, while the store thread writes through
 * another, so the loop calls this after each piece of reading work.
 */
void obx_db_end_reads(struct obx_db *db);

/* Runs SQL without results (may hold several statements). */
OBX_MUST_CHECK enum obx_err obx_db_exec(struct obx_db *db, const char *sql);

/* Steps a statement expecting SQLITE_DONE and resets it; maps the result code. */
OBX_MUST_CHECK enum obx_err obx_db_step_done(sqlite3_stmt *s);

/*
 * Steps s (prepared and bound by the caller) for one value: *out = the first column of its
 * first row, 0 for NULL or when there is no row; then resets s and maps the result code.
 */
OBX_MUST_CHECK enum obx_err obx_db_step_int64(sqlite3_stmt *s, int64_t *out);

/*
 * Ends a batch that stepped sel (last result rc) inside obx_db_begin: a step that failed
 * (neither a row nor the end) becomes the error, sel is reset, and the transaction ends
 * as obx_db_end does. Returns the batch's result.
 */
OBX_MUST_CHECK enum obx_err obx_db_end_scan(struct obx_db *db, sqlite3_stmt *sel, int rc,
                                            enum obx_err err);

/*
 * Runs one bound write statement in its own transaction (BEGIN IMMEDIATE .. COMMIT, rolled
 * back on failure); *changes gets the rows it changed, 0 unless committed.
 */
OBX_MUST_CHECK enum obx_err obx_db_step_in_tx(struct obx_db *db, sqlite3_stmt *s,
                                              int64_t *changes /* OUT */);

/* The last SQLite error message of the connection (borrowed). */
const char *obx_db_errmsg(struct obx_db *db);

/* The SQLite library's version (for `outbox version`: the CLI does not call sqlite3_*). */
const char *obx_db_libversion(void);

/*
 * Routes SQLite's own diagnostics to fn (code: SQLite's extended result code). Only before
 * SQLite initialises, i.e. before the first database is opened; OBX_EDB otherwise.
 */
OBX_MUST_CHECK enum obx_err obx_db_route_log(void (*fn)(void *ctx, int code, const char *msg));

/* Process-wide SQLite settings for serve (no allocation statistics). Before SQLite
 * initialises, like obx_db_route_log; OBX_EDB afterwards. */
OBX_MUST_CHECK enum obx_err obx_db_tune_process(void);

/* Binds a nullable text parameter (NULL binds SQL NULL). */
int obx_db_bind_text(sqlite3_stmt *s, int idx, const char *v);
/* Column as a malloc'ed copy (obx_strdup), NULL for SQL NULL. */
char *obx_db_column_dup(sqlite3_stmt *s, int col);

#endif
