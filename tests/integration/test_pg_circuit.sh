#!/usr/bin/env bash
# The circuit breaker on PostgreSQL (issue 15: pacing state in the database, so a takeover
# never bursts):
#   - a node whose breaker opens (Partoo answering 5xx) records until when in the pacing of the
#     tenants it holds (tenant_pacing.circuit_open_until_ms);
#   - the node that takes such a tenant over keeps its own breaker open until then: no request
#     before the previous holder's breaker would have probed;
#   - its probe succeeds, the breaker closes, and the closing is recorded too.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
start_mock --rate-limit 0
mock_post faults '{"error_rate":1}' >/dev/null
start_pg_node A --rate-limit 0 --node-lease 3s --retry-base 100ms --retry-cap 1s
PID_A=$NODE_PID
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'm' || g, 'b', 'c' || g, 'x', 'User' FROM generate_series(1, 20) g" >/dev/null
open_until() { q "SELECT coalesce((SELECT circuit_open_until_ms FROM tenant_pacing WHERE tenant = 'default'), 0)"; }
wait_until 20 '[ "$(open_until)" -gt 0 ]'
assert_ge "the open breaker is recorded for the tenant its node holds" "$(open_until)" "$(now_ms)"

# A dies with its breaker open; what it recorded says no request before `until`.
kill -KILL "$PID_A"
wait "$PID_A" 2>/dev/null
killed=$(now_ms)
until=$(( killed + 10000 ))
q "UPDATE tenant_pacing SET circuit_open_until_ms = $until WHERE tenant = 'default'" >/dev/null
mock_post faults '{"error_rate":0}' >/dev/null
start_pg_node B --rate-limit 0 --node-lease 3s --retry-base 100ms --retry-cap 1s
wait_until 15 '[ "$(q "SELECT node FROM tenant_leases WHERE tenant = '"'default'"' AND expires_at_ms > outbox_now_ms()")" = B ]'
code=$(curl -sS -o "$T/stats" -w '%{http_code}' "http://127.0.0.1:$NODE_PORT/v1/stats")
assert_eq "B holds the tenant, its breaker open: /v1/stats says circuit_open" \
    "$code $(python3 -c 'import json,sys; t={x["tenant"]: x for x in json.load(open(sys.argv[1]))["tenants"]}; print((t["default"]["paused"] or {}).get("reason"))' "$T/stats")" \
    "200 circuit_open"
wait_until 40 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 20 ]'
assert_eq "B delivers everything once the breaker lets it" "$(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")" 20
first=$(q "SELECT min(started_at_ms) FROM attempts WHERE started_at_ms > $killed")
assert_ge "B's first request came after the previous holder's breaker would have probed ($(( first - until )) ms after)" \
    "${first:-0}" "$until"
wait_until 10 '[ "$(open_until)" = 0 ]'
assert_eq "the breaker's closing is recorded" "$(open_until)" 0

finish
