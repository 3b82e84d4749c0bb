#!/usr/bin/env bash
# bench/pg_store.sh: the store's side of enqueue and drain on PostgreSQL against SQLite, in
# the same run (issue 15; docs/benchmarks.md, "PostgreSQL store"). Starts a throwaway
# cluster from Debian's packages (tests/integration/pg_cluster.sh) with its durability on
# (fsync, synchronous_commit, full_page_writes: PostgreSQL's defaults; the tests' clusters
# run with fsync off), on the same disk as the SQLite file, and runs build/pg_store_bench.
#
#   bench/pg_store.sh            100,000 messages, claim/finish batches of 256
#   N=20000 BATCH=64 bench/pg_store.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
N=${N:-100000}
BATCH=${BATCH:-256}
T=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/obx-pg-bench.XXXXXX")
. "$ROOT/tests/integration/pg_cluster.sh"
trap 'pg_cluster_stop; rm -rf "$T"' EXIT
pg_cluster_start "$T" || exit 1
pg_cluster_durable || exit 1
echo "# PostgreSQL store against SQLite ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "N=$N BATCH=$BATCH; PostgreSQL $(pg_sql 'SHOW server_version'): fsync $(pg_sql 'SHOW fsync'), synchronous_commit $(pg_sql 'SHOW synchronous_commit'); SQLite synchronous=full, WAL"
echo
"$BUILD/pg_store_bench" "$PG_URI" "$T/bench.db" "$N" "$BATCH"
