/*
 * migrate: applies the migrations embedded at build time (migrations/NNNN_*.sql),
 * each in its own transaction, recording the version in PRAGMA user_version.
 *
 * Procedure for a schema change: add migrations/NNNN+1_<what>.sql (never edit a
 * released one), update schema/schema.sql to the resulting schema (the drift test
 * compares them), and describe it in docs/schema.md.
 */
#ifndef OBX_MIGRATE_H
#define OBX_MIGRATE_H

#include "db.h"

struct obx_migration {
    int version;      /* NNNN of the file name; strictly increasing */
    const char *name; /* file name, for messages */
    const char *sql;
};

/* Terminated by an entry with version 0. Generated into the build tree by CMake. */
extern const struct obx_migration obx_migrate_embedded[];

/* The version the newest embedded migration produces. */
int obx_migrate_latest(void);

/* Reads PRAGMA user_version. */
OBX_MUST_CHECK enum obx_err obx_migrate_version(struct obx_db *db, int *out /* OUT */);

/*
 * Applies every migration newer than the database. *from and *to (may be NULL)
 * get the versions before and after. OBX_ESCHEMA when the database is newer than
 * this binary (nothing is touched). Idempotent: a current database is a no-op.
 */
OBX_MUST_CHECK enum obx_err obx_migrate_apply(struct obx_db *db, int *from /* OUT */,
                                              int *to /* OUT */);

#endif
