#!/usr/bin/env bash
# bench/pg_tenants.sh: issue 15's several-nodes target: NODES (3) serve nodes on one
# PostgreSQL database, TENANTS (300) tenants each at RATE (290)/min with its own key and a
# backlog for the whole run, against the mock enforcing Partoo's 300 requests per sliding
# 60 s per key. After WARM_S (15) s the mock's per-key counts are read, and again RUN_S (120)
# s later: aggregate (target ≥ 95 % of TENANTS × RATE / 60), each tenant's rate (lowest and
# highest), 429s over the whole run (target 0), how the tenants are spread over the nodes.
# The tenants are registered with `outbox tenant add`; the backlog is inserted through the
# SQL contract. PostgreSQL durable (fsync and synchronous_commit on).
#
#   bench/pg_tenants.sh
#   RUN_S=60 bench/pg_tenants.sh
set -uo pipefail
{
. "$(dirname "$0")/lib.sh"
. "$BENCH_ROOT/tests/integration/pg_cluster.sh"

NODES=${NODES:-3}
TENANTS=${TENANTS:-300}
RATE=${RATE:-290}
RUN_S=${RUN_S:-120}
WARM_S=${WARM_S:-15}
INFLIGHT=${INFLIGHT:-64}
BACKLOG=$(( RATE * (RUN_S + WARM_S + 30) / 60 ))

trap 'pg_cluster_stop; bench_cleanup' EXIT
pg_cluster_start "$BT" || exit 1
pg_cluster_durable || exit 1
"$OUTBOX_BIN" migrate --db "$PG_URI" >/dev/null || { log "migrate failed"; exit 1; }
q() { pg_sql "SET search_path = outbox; $*"; }

log "registering $TENANTS tenants"
for i in $(seq 1 "$TENANTS"); do
    echo "key-$i" | "$OUTBOX_BIN" tenant add "t$i" --db "$PG_URI" --api-key-stdin \
        --rate-limit "$RATE/min" --channel "ch$i" >/dev/null || { log "tenant add t$i failed"; exit 1; }
done
log "queueing $BACKLOG messages per tenant"
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type)
   SELECT 'ch' || t, 'm' || t || '-' || g, 'b', 'c' || t || '-' || (g % 20), 'Bench message: hello, this is a typical short chat message body.', 'Consumer'
   FROM generate_series(1, $BACKLOG) g, generate_series(1, $TENANTS) t ORDER BY g, t" >/dev/null
q "VACUUM ANALYZE outbox" >/dev/null 2>&1

start_mock --rate-limit 300 # per key, sliding 60 s
declare -a NPID
for n in $(seq 1 "$NODES"); do
    OUTBOX_PARTOO_API_KEY= "$OUTBOX_BIN" serve --db "$PG_URI" --partoo-base-url "$MOCK_URL" \
        --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 --node-name "n$n" \
        --max-inflight "$INFLIGHT" --log-level warn >"$BT/n$n.log" 2>&1 &
    NPID[$n]=$!
    PIDS+=($!)
done

per_key() { # key accepted, one per line, sorted by key
    mock_get stats | python3 -c 'import json,sys; d=json.load(sys.stdin)["by_key"]; [print(k, v["accepted"]) for k, v in sorted(d.items())]'
}
sleep "$WARM_S"
per_key >"$BT/k0"
t0=$(now_ms)
ticks0=0
for n in $(seq 1 "$NODES"); do ticks0=$((ticks0 + $(cpu_ticks "${NPID[$n]}"))); done
sleep "$RUN_S"
per_key >"$BT/k1"
t1=$(now_ms)
ticks1=0
for n in $(seq 1 "$NODES"); do ticks1=$((ticks1 + $(cpu_ticks "${NPID[$n]}"))); done
stats=$(mock_get stats)
epochs=$(q "SELECT max(epoch) || ' max, ' || sum(epoch) || ' sum' FROM tenant_leases")
spread=$(q "SELECT string_agg(c::text, '/' ORDER BY node) FROM (SELECT node, count(*) c FROM tenant_leases WHERE expires_at_ms > outbox_now_ms() GROUP BY node) x")
secs=$(fmt "($t1 - $t0) / 1000" 3)
join -a1 -e0 -o 1.2,2.2 <(sort "$BT/k1") <(sort "$BT/k0") | awk '{ print $1 - $2 }' >"$BT/delta"
total=$(awk '{ s += $1 } END { print s + 0 }' "$BT/delta")
lo=$(sort -n "$BT/delta" | head -1)
hi=$(sort -n "$BT/delta" | tail -1)
target=$(fmt "$TENANTS * $RATE / 60" 1)
agg=$(fmt "$total / $secs" 1)

echo "## PostgreSQL: $NODES nodes, $TENANTS tenants (bench/pg_tenants.sh, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "$TENANTS tenants × $RATE/min, backlog $BACKLOG each, mock 300/60 s per key, --max-inflight $INFLIGHT per node, window ${secs} s after ${WARM_S} s"
echo
echo "| aggregate msg/s | of the sum of the limits | per tenant /min (lowest–highest) | 429 | tenants per node | nodes' CPU per message |"
echo "|---:|---:|---|---:|---|---:|"
log "lease epochs: $epochs"
# Tenants that sent less than half their limit in the window, for the record: their lease
# and what waits.
join -a1 -e0 -o 0,1.2,2.2 <(sort "$BT/k1") <(sort "$BT/k0") | awk -v m="$(fmt "$RATE * $secs / 120" 0)" '$2 - $3 < m { print $1 }' >"$BT/slow"
if [ -s "$BT/slow" ]; then
    log "$(wc -l <"$BT/slow") tenants under half their limit, e.g. $(head -3 "$BT/slow" | tr '\n' ' ')"
    for k in $(head -3 "$BT/slow"); do
        t=t${k#key-}
        log "  $t: lease $(q "SELECT node || ' epoch ' || epoch || ' expires in ' || (expires_at_ms - outbox_now_ms()) FROM tenant_leases WHERE tenant = '$t'");" \
            "$(q "SELECT string_agg(state || (CASE WHEN head THEN ' head' ELSE '' END) || ' ' || c, ', ') FROM (SELECT state, head, count(*) c FROM outbox WHERE tenant = '$t' GROUP BY 1, 2) x")"
    done
    grep -h "lease\|tenant" "$BT"/n*.log | cut -c1-200 | sort | uniq -c | sort -rn | head -8 >&2
fi
echo "| $agg (target ≥ $(fmt "$target * 0.95" 1)) | $(fmt "100 * $agg / $target" 1) % | $(fmt "$lo * 60 / $secs" 0)–$(fmt "$hi * 60 / $secs" 0) | $(jget "$stats" '$.rate_limited') | $spread | $(fmt "($ticks1 - $ticks0) * 1000000 / $CLK_TCK / ($total + 1)" 0) µs |"
exit 0
}
