#!/usr/bin/env bash
# bench/pg_restart.sh: PostgreSQL restarted under a running serve (every connection lost at
# once, as in a crash or a failover): serve keeps what it could not write, connects again and
# delivers everything, without a restart of its own. Out of CI's test_pg_serve.sh since it
# stalled there intermittently (1 CI run in 4 under ASan; here 1 run in 18, three at a time
# under ASan). On 2026-12-07 two ways for a lane to be left with nothing to wake it were
# fixed (a lane given its claimed messages back while outcomes failed; a refused takeover);
# whether they were this stall's cause is not proven, no test reproduced it on demand.
# Since: 54 of 54 runs, three at a time under ASan. CI keeps the part it can run reliably
# (test_pg_serve: outcomes refused for a while, then delivery resumes by itself).
#
#   bench/pg_restart.sh                 # once
#   for i in 1 2 3 4 5; do bench/pg_restart.sh; done
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
export OUTBOX_BIN=${OUTBOX_BIN:-$BUILD/outbox} OBX_BUILD_DIR=${OBX_BUILD_DIR:-$BUILD} OBX_SOURCE_DIR=$ROOT
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/integration/pg_cluster.sh"

pg_outbox_cluster
start_mock --rate-limit 0
start_pg_node A --rate-limit 0 --max-inflight 8

# ---- the database goes away and comes back -----------------------------------------------------
# Every connection of serve is lost at once (a crash or a failover of PostgreSQL); serve keeps
# what it could not write, connects again and finishes, without a restart.
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'gone' || g, 'b', 'cg' || (g % 500), 'x', 'User' FROM generate_series(1, 6000) g" >/dev/null
wait_until 20 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge 1000 ]'
pg_cluster_restart 3
wait_until 60 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 6000 ]'
accepted=$(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")
assert_eq "PostgreSQL restarted: every message delivered" "$accepted" 6000
if [ "$accepted" != 6000 ]; then # what is in the way, for the record
    q "SELECT state, head, count(*), min(next_attempt_at_ms) - outbox_now_ms(), count(*) FILTER (WHERE tenant IS NOT NULL) FROM outbox WHERE state IN ('queued', 'sending') GROUP BY 1, 2" >&2
    q "EXPLAIN (ANALYZE, COSTS OFF) SELECT id FROM outbox WHERE tenant IS NULL AND state = 'queued' AND head AND next_attempt_at_ms <= outbox_now_ms() ORDER BY tenant, priority DESC, next_attempt_at_ms, id LIMIT 64 FOR UPDATE SKIP LOCKED" >&2
    q "SELECT locktype, mode, granted, pid FROM pg_locks WHERE relation = 'outbox'::regclass OR locktype = 'advisory'" | head -5 >&2
    q "SELECT tenant || ' ' || coalesce(node, '-') || ' ' || epoch || ' ' || (expires_at_ms - outbox_now_ms()) FROM tenant_leases" >&2
    q "SELECT pid, state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity WHERE datname = 'postgres'" >&2
    grep -v "delivery attempt" "$T/A.log" | tail -15 >&2
    echo "mock alive: $(kill -0 "$MOCK_PID" 2>/dev/null && echo yes || echo no); stats: $(mock_get stats | head -c 600)" >&2
    tail -5 "$T/mock.log" >&2
    grep -c "delivery attempt" "$T/A.log" >&2
    grep "delivery attempt" "$T/A.log" | tail -3 >&2
    echo "keeping $T" >&2; KEEP_TMP=1
fi
assert_eq "PostgreSQL restarted: serve is still running" "$(kill -0 "$NODE_PID" && echo yes)" yes
assert_eq "PostgreSQL restarted: no attempt recorded twice" \
    "$(q "SELECT count(*) FROM (SELECT message_id, lease_token FROM attempts GROUP BY 1, 2 HAVING count(*) > 1) x")" 0

kill -TERM "$NODE_PID"
wait "$NODE_PID"
finish
