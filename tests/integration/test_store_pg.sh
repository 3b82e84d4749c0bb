#!/usr/bin/env bash
# The store on PostgreSQL (lib/store_pg.c, issue 15): tests/unit/test_store_pg.c run against
# a throwaway cluster (pg_cluster.sh), started and stopped here.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

trap 'pg_cluster_stop; cleanup' EXIT
pg_cluster_start "$T" || { echo "FAIL cannot start a PostgreSQL cluster"; exit 1; }
OBX_TEST_PG_URI=$PG_URI "$OBX_BUILD_DIR/test_store_pg"
