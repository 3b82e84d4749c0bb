/*
 * migrate_pg: the PostgreSQL counterpart of migrate.h. Applies the migrations embedded at
 * build time from migrations/postgresql/NNNN_*.sql, each in its own transaction, in the
 * connection's schema (db_schema), recording the version in its schema_version table.
 *
 * Several processes may run it at once (nodes starting together): an advisory lock on the
 * schema makes them take turns, and the later ones find nothing to do. Procedure for a
 * change: add migrations/postgresql/NNNN+1_<what>.sql, update schema/postgresql.sql (the
 * drift test compares them), describe it in docs/schema.md.
 */
#ifndef OBX_MIGRATE_PG_H
#define OBX_MIGRATE_PG_H

#include "migrate.h"
#include "pg.h"

/* Terminated by an entry with version 0. Generated into the build tree by CMake. */
extern const struct obx_migration obx_migrate_pg_embedded[];

/* The version the newest embedded PostgreSQL migration produces. */
int obx_migrate_pg_latest(void);

/* The schema's version (0: no outbox there yet). */
OBX_MUST_CHECK enum obx_err obx_migrate_pg_version(struct obx_pg *pg, int *out /* OUT */);

/*
 * Applies every migration newer than the schema. *from and *to (may be NULL) get the
 * versions before and after. OBX_ESCHEMA when the schema is newer than this binary
 * (nothing is touched). Idempotent.
 */
OBX_MUST_CHECK enum obx_err obx_migrate_pg_apply(struct obx_pg *pg, int *from /* OUT */,
                                                 int *to /* OUT */);

#endif
