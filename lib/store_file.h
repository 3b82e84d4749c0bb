/*
 * store_file: the database as a file, for the operator tools (`outbox doctor`, `outbox
 * backup`): open one as it is, check it, read its schema version, copy it page by page from
 * one snapshot. Owns no table; only `outbox backup` writes, and only to its new copy.
 */
#ifndef OBX_STORE_FILE_H
#define OBX_STORE_FILE_H

#include <sys/types.h>

#include "store.h"

/*
 * Opens an existing database file as it is: never creates one, never migrates it, and
 * leaves its journal mode alone (obx_store_open would switch it to WAL). On failure *out is
 * NULL and errmsg[n] says why. Free with obx_store_free.
 */
OBX_MUST_CHECK enum obx_err obx_store_file_open(const char *path, struct obx_store **out /* OUT */,
                                                char *errmsg, size_t n);

/*
 * PRAGMA quick_check (at most 100 problems). OBX_OK when it ran: *ok = 1 when it answered
 * "ok", else *problems counts what it found and msg[n] holds the first one. Any other
 * result: it could not run at all (msg: why), which on a damaged file is the usual answer
 * ("database disk image is malformed").
 */
OBX_MUST_CHECK enum obx_err obx_store_file_quick_check(struct obx_store *st, int *ok /* OUT */,
                                                       int *problems /* OUT */, char *msg,
                                                       size_t n);

/* The schema version the file was migrated to (0 = empty). */
OBX_MUST_CHECK enum obx_err obx_store_file_schema_version(struct obx_store *st,
                                                          int *version /* OUT */);

/*
 * Starts the read transaction a copy runs in (end it with obx_store_tx_read_end) and reads
 * the schema version of that snapshot. Reading the schema first makes the snapshot start.
 */
OBX_MUST_CHECK enum obx_err obx_store_file_snapshot(struct obx_store *st, int *version /* OUT */);

/* How many messages the file holds (outbox rows). */
OBX_MUST_CHECK enum obx_err obx_store_file_count_messages(struct obx_store *st,
                                                          int64_t *n /* OUT */);

/* The last error message of the store's database (borrowed). */
const char *obx_store_file_errmsg(struct obx_store *st);

/* Called as the copy goes: pages copied so far of total. */
typedef void (*obx_copy_progress_fn)(void *ctx, int64_t done, int64_t total);

/*
 * Copies st's current snapshot into a new file dest (which must not exist), created with the
 * permission bits mode: steps of step_pages pages, waiting out a busy source up to
 * busy_retries times 20 ms, synchronous = FULL, then switched from WAL to the rollback
 * journal so it is one self-contained file. *pages gets the pages copied. On failure
 * errmsg[n] holds the whole message (naming dest) and dest may be left behind.
 */
OBX_MUST_CHECK enum obx_err obx_store_file_copy(struct obx_store *st, const char *dest, mode_t mode,
                                                int step_pages, int busy_retries,
                                                obx_copy_progress_fn progress, void *ctx,
                                                int64_t *pages /* OUT */, char *errmsg, size_t n);

/*
 * 1 when the file at path starts like an SQLite database (or is empty, which SQLite
 * accepts), 0 otherwise or when it cannot be read. Looks at the first 16 bytes only,
 * without SQLite: doctor asks before opening, so that a wrong path is named as such.
 */
int obx_store_file_has_header(const char *path);

#endif
