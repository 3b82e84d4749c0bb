/*
 * pg: one PostgreSQL connection through libpq (SPEC §12), the counterpart of db.h for the
 * PostgreSQL backend. Silent (no logs). Today `outbox migrate` and `outbox status` use it; the
 * store on PostgreSQL is still to come (issue 15).
 *
 * The URI may carry a password (postgresql://user:secret@host/db): it is never printed.
 * Messages show obx_pg_redact_uri's form, and libpq's own messages name no password.
 */
#ifndef OBX_PG_H
#define OBX_PG_H

#include <stddef.h>
#include <stdint.h>

#include "outbox.h"

struct obx_pg;
struct pg_conn; /* libpq's PGconn */

/* 1 when db names a PostgreSQL database (postgresql:// or postgres://), 0 for a SQLite path. */
int obx_pg_is_uri(const char *db);

/*
 * Copies uri into out with the password, if any, replaced by "****", and any
 * "password=" query parameter's value likewise. Always terminates out.
 */
void obx_pg_redact_uri(const char *uri, char *out, size_t n);

/*
 * Connects (blocking) and sets the session's search_path to schema, which is created when
 * missing. schema must be a plain identifier (obx_pg_check_schema). On failure, errmsg gets
 * libpq's reason; OBX_EIO (cannot connect) or OBX_EDB.
 */
OBX_MUST_CHECK enum obx_err obx_pg_open(const char *uri, const char *schema,
                                        struct obx_pg **out /* OUT */, char *errmsg, size_t n);
void obx_pg_free(struct obx_pg *pg);

/* NULL when schema is a usable db_schema: 1-63 of [a-z0-9_], not starting with a digit. */
const char *obx_pg_check_schema(const char *schema);

/* Runs one or more statements without parameters; OBX_EDB with obx_pg_errmsg on failure. */
OBX_MUST_CHECK enum obx_err obx_pg_exec(struct obx_pg *pg, const char *sql);

/* Runs sql and forgets its outcome, leaving obx_pg_errmsg as it was: ROLLBACK or an
 * unlock after a failure, whose own error would hide the one that matters. */
void obx_pg_exec_quiet(struct obx_pg *pg, const char *sql);

/* The first column of the first row of sql as an integer; *found = 0 when no row. */
OBX_MUST_CHECK enum obx_err obx_pg_query_int(struct obx_pg *pg, const char *sql,
                                             long long *out /* OUT */, int *found /* OUT */);

/*
 * A group of calls in one transaction, for serve's store thread (group commit, as on
 * SQLite): one COMMIT, one WAL flush for the lot. Between begin and commit, every call of
 * store_pg runs at a savepoint of its own, so one that fails takes back only its own
 * writes. commit returns OBX_EDB when PostgreSQL did not commit (then nothing of the group
 * was written).
 */
OBX_MUST_CHECK enum obx_err obx_pg_group_begin(struct obx_pg *pg);
OBX_MUST_CHECK enum obx_err obx_pg_group_commit(struct obx_pg *pg);
void obx_pg_group_abort(struct obx_pg *pg);
int obx_pg_in_group(const struct obx_pg *pg);

/*
 * One call's transaction: BEGIN, or a savepoint inside a group. tx_end commits (releases)
 * when err is OBX_OK, else rolls back, and returns the outcome.
 */
OBX_MUST_CHECK enum obx_err obx_pg_tx_begin(struct obx_pg *pg);
OBX_MUST_CHECK enum obx_err obx_pg_tx_end(struct obx_pg *pg, enum obx_err err);

/*
 * Connects again when the connection was lost (the server restarted, failed over, or
 * dropped it), restoring the search_path; prepared statements are prepared again on use.
 * OBX_OK at once when the connection is fine; OBX_EIO when it cannot connect yet.
 */
OBX_MUST_CHECK enum obx_err obx_pg_revive(struct obx_pg *pg);

/*
 * Runs sql (SET statements) now and again on every session obx_pg_revive opens, so the
 * session keeps its settings across a reconnection. At most 159 bytes.
 */
OBX_MUST_CHECK enum obx_err obx_pg_set_session(struct obx_pg *pg, const char *sql);

/*
 * Runs sql with n parameters (text, or binary where formats[i] is 1 with lens[i] bytes;
 * lens and formats may be NULL) and returns libpq's result (PQclear it), or NULL with the
 * error kept on pg. For the store on PostgreSQL (lib/store_pg*.c).
 */
struct pg_result; /* libpq's PGresult */
struct pg_result *obx_pg_run(struct obx_pg *pg, const char *sql, int n, const char *const *vals,
                             const int *lens, const int *formats);

/* The last error of this connection (libpq's text), "" when none. */
const char *obx_pg_errmsg(const struct obx_pg *pg);

/* The schema the session works in (as given to obx_pg_open). */
const char *obx_pg_schema(const struct obx_pg *pg);

/* The libpq connection, for the store on PostgreSQL (lib/store_pg.c) only. */
struct pg_conn *obx_pg_conn(struct obx_pg *pg);

/*
 * Prepares sql under name on this connection unless it already was (each name once per
 * connection; at most OBX_PG_PREPARED names). Parameter types come from casts in sql.
 */
#define OBX_PG_PREPARED 32
OBX_MUST_CHECK enum obx_err obx_pg_prepare(struct obx_pg *pg, const char *name, const char *sql);

/* Keeps msg (libpq's text, newlines folded) as this connection's last error. */
void obx_pg_set_error(struct obx_pg *pg, const char *msg);

/*
 * Array parameters in PostgreSQL's text form, {"a","b",NULL}: each call appends one element
 * to b (which starts empty), text in double quotes with '"' and '\' escaped by a backslash;
 * obx_pg_array_end closes it ("{}" when empty). For statements over unnest($1::text[], ...).
 */
struct obx_buf;
OBX_MUST_CHECK enum obx_err obx_pg_array_text(struct obx_buf *b, const char *v /* NULL: NULL */);
OBX_MUST_CHECK enum obx_err obx_pg_array_int(struct obx_buf *b, int64_t v, int is_null);
OBX_MUST_CHECK enum obx_err obx_pg_array_end(struct obx_buf *b);

/* libpq's version, for `outbox version`. */
int obx_pg_libversion(void);

/*
 * COPY ... FROM STDIN in the text format, for bulk loads (outbox migrate-to): copy_begin runs
 * sql (the COPY statement); each copy_row appends one row of n fields to b (NULL: SQL NULL),
 * escaped for the text format, and sends b to the server when it is large; copy_end sends the
 * rest and ends the COPY, or abandons it when err is not OBX_OK (the server then keeps none
 * of its rows), and returns the outcome.
 */
OBX_MUST_CHECK enum obx_err obx_pg_copy_begin(struct obx_pg *pg, const char *sql);
OBX_MUST_CHECK enum obx_err obx_pg_copy_row(struct obx_pg *pg, struct obx_buf *b, int n,
                                            const char *const *v);
OBX_MUST_CHECK enum obx_err obx_pg_copy_end(struct obx_pg *pg, struct obx_buf *b, enum obx_err err);

/*
 * Runs one writing statement (text parameters) as one call's transaction (obx_pg_tx_begin:
 * BEGIN, or a savepoint of the store thread's group); *changed: the rows it wrote.
 */
OBX_MUST_CHECK enum obx_err obx_pg_tx_change(struct obx_pg *pg, const char *sql, int n,
                                             const char *const *vals, int64_t *changed);

#endif
