#!/usr/bin/env bash
# Node failover on PostgreSQL (issue 15, SPEC §12), the short version for CI (the long one:
# bench/pg_failover.sh runs this with more cycles and messages). Three serve nodes on one
# throwaway cluster, producers enqueueing through every node's API and through SQL while, in
# each of CYCLES (1) cycles, the node that holds the (default) tenant is killed with SIGKILL
# (and started again), and then the next holder is stopped (SIGSTOP) past its lease and
# continued. Invariants:
#   - every message a producer was told was accepted (202, or a COMMIT) is delivered;
#   - duplicates (sent twice) at most max_inflight per failover (two per cycle);
#   - order per conversation (first arrivals follow the ids);
#   - takeover within node_lease + 2 s, at a higher epoch;
#   - the node continued after losing its lease records nothing more: every message has
#     exactly one attempt row (no errors are injected, so only a stale outcome would add one);
#   - the audit chain the nodes sealed in turn verifies (`outbox audit verify`).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster

LEASE_MS=3000
INFLIGHT=8
CYCLES=${CYCLES:-1}
API_BATCHES=${API_BATCHES:-40} # of 25 messages
SQL_BATCHES=${SQL_BATCHES:-20} # of 20 rows
declare -A PID_OF PORT_OF
holder() { q "SELECT node || ' ' || epoch FROM tenant_leases WHERE tenant = 'default' AND expires_at_ms > outbox_now_ms()"; }
# wait_new_holder OLD: waits until a node other than OLD holds the tenant; sets TOOK (ms since
# T0), NEW and NEW_EPOCH.
wait_new_holder() {
    wait_until 15 'h=$(holder); [ -n "$h" ] && [ "${h%% *}" != "'"$1"'" ]'
    TOOK=$(( $(now_ms) - T0 ))
    read -r NEW NEW_EPOCH <<<"$(holder)"
}

# Every request 20 ms late: with 8 in flight a node sends ~400/s, so the drain lasts
# through both failovers.
start_mock --rate-limit 0 --delay-ms 20
start_node() {
    start_pg_node "$1" --node-lease ${LEASE_MS}ms --rate-limit 0 --max-inflight $INFLIGHT
    PID_OF[$1]=$NODE_PID
    PORT_OF[$1]=$NODE_PORT
}
for n in A B C; do start_node $n; done
wait_until 15 '[ -n "$(holder)" ]' || { fail "no node holds the tenant"; finish; }

# ---- producers --------------------------------------------------------------------------------
# API: batches of 25, round-robin over the nodes; a batch's keys go to acked only on 202 (a
# node being killed or restarted refuses or drops some: those are not acknowledged).
api_producer() {
    local b i n body nodes=(A B C) node port
    for b in $(seq 0 $((API_BATCHES - 1))); do
        node=${nodes[$((b % 3))]}
        port=${PORT_OF[$node]}
        body=$(for i in $(seq 0 24); do
            n=$((b * 25 + i))
            printf '{"channel_id":"ch","external_message_id":"api%06d","business_id":"b","external_conversation_id":"c%d","content":"m","sender_type":"Consumer"}\n' "$n" $((n % 20))
        done | paste -sd, -)
        if [ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 -H 'Content-Type: application/json' \
            -X POST "http://127.0.0.1:$port/v1/messages" -d "{\"messages\":[$body]}" 2>/dev/null)" = 202 ]; then
            for i in $(seq 0 24); do printf 'api%06d\n' $((b * 25 + i)); done >>"$T/acked"
        fi
        sleep 0.1
    done
}
# SQL: transactions of 20 rows; each committed one's keys go to acked.
sql_producer() {
    local b
    for b in $(seq 0 $((SQL_BATCHES - 1))); do
        if q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'sql' || lpad(($b * 20 + g)::text, 6, '0'), 'b', 'c' || (($b * 20 + g) % 20), 'm', 'User' FROM generate_series(0, 19) g" >/dev/null 2>&1; then
            for g in $(seq 0 19); do printf 'sql%06d\n' $((b * 20 + g)); done >>"$T/acked"
        fi
        sleep 0.2
    done
}
: >"$T/acked"
api_producer &
P1=$!
sql_producer &
P2=$!

wait_until 10 '[ "$(mock_stat accepted)" -ge 300 ]'
for cycle in $(seq 1 "$CYCLES"); do
    # ---- SIGKILL the holder, and start it again ---------------------------------------------
    read -r first first_epoch <<<"$(holder)"
    kill -KILL "${PID_OF[$first]}"
    wait "${PID_OF[$first]}" 2>/dev/null
    T0=$(now_ms)
    wait_new_holder "$first"
    second=$NEW
    assert_le "cycle $cycle, SIGKILL: another node holds the tenant within node_lease + 2 s (${TOOK} ms)" "$TOOK" $((LEASE_MS + 2000))
    assert_ge "cycle $cycle, SIGKILL: ... at a higher epoch" "$NEW_EPOCH" $((first_epoch + 1))
    sent=$(mock_stat accepted)
    wait_until 10 '[ "$(mock_stat accepted)" -gt '"$sent"' ]'
    assert_ge "cycle $cycle, SIGKILL: the new holder sends" "$(mock_stat accepted)" $((sent + 1))
    start_node "$first"

    # ---- SIGSTOP the new holder past its lease, then SIGCONT -----------------------------------
    kill -STOP "${PID_OF[$second]}"
    T0=$(now_ms)
    wait_new_holder "$second"
    third=$NEW
    assert_le "cycle $cycle, SIGSTOP: the next node holds the tenant within node_lease + 2 s (${TOOK} ms)" "$TOOK" $((LEASE_MS + 2000))
    sleep 1
    lost=$(grep -c 'lease lost' "$T/$second.log")
    kill -CONT "${PID_OF[$second]}"
    wait_until 10 '[ "$(grep -c "lease lost" "$T/$second.log")" -gt '"$lost"' ]'
    assert_ge "cycle $cycle, SIGCONT: the paused node knows it lost the lease" \
        "$(grep -c 'lease lost' "$T/$second.log")" $((lost + 1))
done

wait "$P1" "$P2"
total=$(q "SELECT count(*) FROM outbox")
wait_until 60 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = "$total" ]'
assert_eq "every stored message delivered" "$(q "SELECT count(*) FROM outbox WHERE state <> 'accepted'")" 0
acked=$(sort -u "$T/acked" | wc -l)
# A stopped node's API holds its producers' requests until their 5 s timeout: fewer are
# acknowledged the more cycles there are; every acknowledged one counts below.
assert_ge "producers were acknowledged (API and SQL)" "$acked" $(( (API_BATCHES * 25 + SQL_BATCHES * 20) / 4 ))
mock_get received >"$T/received.tsv"
cut -f6 "$T/received.tsv" | sort -u >"$T/delivered"
assert_eq "every acknowledged message reached Partoo" "$(sort -u "$T/acked" | comm -23 - "$T/delivered" | wc -l)" 0
dups=$(cut -f6 "$T/received.tsv" | sort | uniq -d | wc -l)
assert_le "duplicates ($dups) at most max_inflight per failover" "$dups" $((2 * CYCLES * INFLIGHT))
awk -F'\t' '{ print $6 }' "$T/received.tsv" >"$T/arrived"
q "SELECT external_message_id || ' ' || external_conversation_id || ' ' || id FROM outbox" >"$T/ids"
inversions=$(awk 'NR == FNR { conv[$1] = $2; id[$1] = $3; next }
    seen[$1]++ { next }
    { c = conv[$1]; if (c in last && id[$1] < last[c]) bad++; last[c] = id[$1] } END { print bad + 0 }' \
    "$T/ids" "$T/arrived")
assert_eq "order kept within each conversation (first arrivals)" "$inversions" 0
assert_eq "the paused node recorded nothing after losing its lease (one attempt per message)" \
    "$(q "SELECT count(*) FROM (SELECT message_id FROM attempts GROUP BY message_id HAVING count(*) <> 1) x")" 0
assert_eq "... and no outcome without its attempt" "$(q "SELECT count(*) FROM attempts")" "$total"

"$OUTBOX_BIN" status --db "$PG_URI" >"$T/status" 2>&1
assert_contains "status lists the live nodes" "$(cat "$T/status")" "$third"
# The chain the nodes sealed in turn, through kills and pauses, is whole: every event sealed
# once, and every seal recomputes.
events() { q "SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM attempts)"; }
wait_until 15 '[ "$(q "SELECT sum(events) FROM audit_seals")" = "$(events)" ]'
assert_eq "every event sealed" "$(q "SELECT sum(events) FROM audit_seals")" "$(events)"
"$OUTBOX_BIN" audit verify --db "$PG_URI" >"$T/verify" 2>&1
assert_eq "outbox audit verify passes" "$?" 0
assert_contains "... over every event" "$(cat "$T/verify")" "$(events) rows verified"
for n in A B C; do kill -TERM "${PID_OF[$n]}"; done
for n in A B C; do wait "${PID_OF[$n]}"; done

finish
