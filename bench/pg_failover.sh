#!/usr/bin/env bash
# bench/pg_failover.sh: the long node failover torture on PostgreSQL (issue 15). Runs
# tests/integration/test_pg_failover.sh (three nodes, producers through the API and SQL, the
# holder killed with SIGKILL and started again, the next holder stopped past its lease and
# continued) with more cycles and messages than CI's short run; the invariants are the same
# (every acknowledged message delivered, duplicates at most max_inflight per failover, order
# per conversation, takeover within node_lease + 2 s, nothing recorded after a lost lease,
# `outbox audit verify` passes).
#
#   bench/pg_failover.sh                    # CYCLES=5, 10,000 API + 2,000 SQL messages
#   CYCLES=20 API_BATCHES=1000 bench/pg_failover.sh
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
export OUTBOX_BIN=${OUTBOX_BIN:-$BUILD/outbox} OBX_BUILD_DIR=$BUILD OBX_SOURCE_DIR=$ROOT
export CYCLES=${CYCLES:-5} API_BATCHES=${API_BATCHES:-400} SQL_BATCHES=${SQL_BATCHES:-100}
echo "# node failover torture: $CYCLES cycles, $((API_BATCHES * 25)) API + $((SQL_BATCHES * 20)) SQL messages ($(date -u +%Y-%m-%dT%H:%MZ))"
exec bash "$ROOT/tests/integration/test_pg_failover.sh"
