#!/usr/bin/env bash
# bench/ui_bench.sh: every call the dashboard makes, against an outbox of N stored messages
# (default 1,000,000; SPEC §13: each must answer in < 100 ms). Prints p50 and max per route
# over REPS calls (default 20) through curl on loopback.
#
#   bench/ui_bench.sh [N]        BUILD=build-dir, REPS=20, KEEP_TMP=1 keeps the database
#   PG=1 bench/ui_bench.sh [N]   the same on PostgreSQL: a throwaway cluster (Debian's
#                                packages, tests/integration/pg_cluster.sh) filled alike
#
# The database is filled by SQL (10 channels; 90 % accepted, 4 % confirmed, 3 % failed,
# 2 % cancelled, 1 % queued; 50,000 attempts over the last 7 days) and then served with
# Partoo unreachable, so nothing changes while the routes are timed. GET /v1/audit/verify
# (recomputes the whole chain, asked for on a click) is timed separately.
set -euo pipefail
N=${1:-1000000}
REPS=${REPS:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUTBOX=$BUILD/outbox
T=$(mktemp -d "${TMPDIR:-/tmp}/obx-uibench.XXXXXX")
DB=$T/outbox.db
SERVE_PID=
cleanup() {
    [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT

now=$(( $(date +%s) * 1000 ))
if [ "${PG:-0}" = 1 ]; then
    OUTBOX_BIN=$OUTBOX
    . "$ROOT/tests/lib/common.sh"
    . "$ROOT/tests/integration/pg_cluster.sh"
    trap 'pg_cluster_stop; cleanup' EXIT
    pg_cluster_start "$T" || exit 1
    pg_cluster_durable || exit 1
    "$OUTBOX" migrate --db "$PG_URI" >/dev/null
    DB=$PG_URI
    echo "filling $N messages (PostgreSQL)..." >&2
    # In transactions of 5,000 rows: the insert trigger takes each conversation's
    # transaction-scoped lock (0001's outbox_order): PostgreSQL's default lock table holds
    # about 12,000 (docs/operations.md).
    for ((from = 1; from <= N; from += 5000)); do
        to=$((from + 4999 < N ? from + 4999 : N))
        pg_sql "SET search_path = outbox;
INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
                    content, sender_type, state, state_reason, state_at_ms, head, attempts,
                    created_at_ms, accepted_at_ms, conv_seq)
SELECT 'ch-' || (i % 10), 'm' || i, 'b' || (i % 50), 'c' || (i / 5),
       'hello from message ' || i, 'Consumer',
       CASE WHEN i % 100 < 90 THEN 'accepted' WHEN i % 100 < 94 THEN 'confirmed'
            WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 99 THEN 'cancelled' ELSE 'queued' END,
       'bench', $now - ($N - i) * 600, i % 100 = 99, 1, $now - ($N - i) * 600,
       $now - ($N - i) * 600, i
FROM generate_series($from, $to) i" >/dev/null
    done
    pg_sql "SET search_path = outbox;
INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome)
SELECT $N - i * 7, $now - i * 12000, 20, 200, 'accepted' FROM generate_series(1, 50000) i
WHERE $N - i * 7 > 0;
SELECT dashboard_compact();" >/dev/null
    pg_sql "VACUUM ANALYZE outbox.outbox" >/dev/null
    echo "filled: $(pg_sql "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'outbox'")" >&2
else
"$OUTBOX" migrate --db "$DB" >/dev/null
echo "filling $N messages..." >&2
sqlite3 "$DB" <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $N)
INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
                    content, sender_type, state, state_reason, state_at_ms, head, attempts,
                    created_at_ms, accepted_at_ms)
SELECT 'ch-' || (i % 10), 'm' || i, 'b' || (i % 50), 'c' || (i / 5),
       'hello from message ' || i, 'Consumer',
       CASE WHEN i % 100 < 90 THEN 'accepted' WHEN i % 100 < 94 THEN 'confirmed'
            WHEN i % 100 < 97 THEN 'failed' WHEN i % 100 < 99 THEN 'cancelled' ELSE 'queued' END,
       'bench', $now - ($N - i) * 600, CASE WHEN i % 100 = 99 THEN 1 ELSE 0 END,
       1, $now - ($N - i) * 600, $now - ($N - i) * 600
FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000)
INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome)
SELECT $N - i * 7, $now - i * 12000, 20, 200, 'accepted' FROM n WHERE $N - i * 7 > 0;
-- Rows written by SQL with head set are not counted by the store: count them once.
DELETE FROM state_counts;
INSERT INTO state_counts SELECT channel_id, state, count(*) FROM outbox GROUP BY 1, 2;
COMMIT;
SQL
echo "filled: $(du -h "$DB" | cut -f1)" >&2
fi

OUTBOX_PARTOO_API_KEY=k "$OUTBOX" serve --db "$DB" --partoo-base-url http://127.0.0.1:9/v2 \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 >"$T/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 100); do grep -q 'msg=serving' "$T/serve.log" && break; sleep 0.1; done
API=http://127.0.0.1:$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$T/serve.log" | tail -1)

# time_route NAME METHOD PATH [BODY]: p50 and max of REPS calls, in milliseconds.
time_route() {
    local name=$1 method=$2 path=$3 body=${4:-} reps=${5:-$REPS} i args
    for i in $(seq "$reps"); do
        args=(-sS -o /dev/null -w '%{time_total}\n' -X "$method" -H 'Accept-Encoding: gzip')
        [ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
        curl "${args[@]}" "$API$path"
    done | sort -n | awk -v name="$name" '{ v[NR] = $1 * 1000 }
        END { printf "%-44s p50 %7.1f ms   max %7.1f ms\n", name, v[int((NR + 1) / 2)], v[NR] }'
}

echo "routes the dashboard calls, $N messages, $REPS calls each:"
time_route "GET /ui/ (page)" GET /ui/
time_route "GET /ui/assets/app.js" GET /ui/assets/app.js
time_route "GET /ui/assets/vendor/uPlot.iife.min.js" GET /ui/assets/vendor/uPlot.iife.min.js
time_route "GET /v1/auth" GET /v1/auth
time_route "GET /v1/stats/overview (overview)" GET /v1/stats/overview
time_route "GET /v1/stats (full count; not polled)" GET /v1/stats "" 3
time_route "GET /v1/stats/history?range=hour" GET '/v1/stats/history?range=hour'
time_route "GET /v1/stats/history?range=week" GET '/v1/stats/history?range=week'
time_route "GET /v1/messages?limit=50" GET '/v1/messages?limit=50'
time_route "GET /v1/messages?state=failed&channel_id=ch-3" GET '/v1/messages?state=failed&channel_id=ch-3&limit=50'
time_route "GET /v1/messages?...&cursor (deep page)" GET "/v1/messages?state=accepted&limit=50&cursor=$((N / 2))"
# a one-hour window in the middle of the outbox (6000 messages), the messages view's time range
w_s=$(( (now - (N / 2) * 600) / 1000 ))
WIN="created_after=$(date -u -d "@$w_s" +%Y-%m-%dT%H:%M:%SZ)&created_before=$(date -u -d "@$((w_s + 3600))" +%Y-%m-%dT%H:%M:%SZ)"
time_route "GET /v1/messages?created_after&created_before" GET "/v1/messages?limit=50&$WIN"
time_route "GET /v1/messages?state=failed&ch-3&time range" GET "/v1/messages?state=failed&channel_id=ch-3&limit=50&$WIN"
time_route "GET /v1/messages/count?state=failed&time range" GET "/v1/messages/count?state=failed&$WIN"
time_route "POST /v1/messages/cancel (time range, none queued in ch-1)" POST "/v1/messages/cancel?channel_id=ch-1&$WIN"
time_route "GET /v1/messages/count?state=failed" GET '/v1/messages/count?state=failed'
time_route "GET /v1/messages/count?state=queued&ch" GET '/v1/messages/count?state=queued&channel_id=ch-9'
time_route "GET /v1/messages/find?external_message_id" GET "/v1/messages/find?external_message_id=m$((N / 3))"
time_route "GET /v1/messages/{ch}/{id}" GET "/v1/messages/ch-$(( (N - 7) % 10 ))/m$((N - 7))"
time_route "GET /v1/conversations/{ch}/{conv}" GET "/v1/conversations/ch-1/c$((N / 10))"
time_route "GET /v1/inbox" GET '/v1/inbox?limit=100'
time_route "GET /v1/tenants (tenants view)" GET /v1/tenants
time_route "GET /v1/nodes (tenants view)" GET /v1/nodes
time_route "POST /v1/pause" POST /v1/pause '{"channel_id":"ch-5"}'
time_route "POST /v1/resume" POST /v1/resume '{"channel_id":"ch-5"}'
time_route "POST /v1/pause (tenant)" POST /v1/pause '{"tenant":"default"}'
time_route "POST /v1/resume (tenant)" POST /v1/resume '{"tenant":"default"}'
time_route "POST /v1/messages/cancel (empty set)" POST '/v1/messages/cancel?channel_id=none'
time_route "GET /v1/audit/verify (on a click)" GET /v1/audit/verify "" 3
