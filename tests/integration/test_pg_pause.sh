#!/usr/bin/env bash
# Channel pauses on PostgreSQL (issue 15, SPEC §13 "pause means hold", 0010_pauses.sql),
# two nodes on a throwaway cluster and the mock:
#   - a pause made on the node that does not send stops the sending node too: what it had
#     claimed ahead for that channel is given back, not sent; other channels go on;
#   - nothing of a paused channel is claimed, whoever inserts it (API or SQL);
#   - /v1/stats on either node shows the hold; the pause and the resume are audit events;
#   - `outbox resume` on the command line lets them go at once (a resume wakes the nodes);
#   - time held does not count toward max_age: a message paused longer than max_age and
#     then answered 500 is retried, not failed;
#   - a whole tenant's pause (0012: "pause-tenant <name>") made on the other node stops the
#     sender too; /metrics, `outbox status` and GET /v1/nodes on PostgreSQL; a channel held
#     while its tenant is held counts once toward max_age;
#   - a listener that was away when a pause was made looks the open pauses up when it is
#     back: what was claimed ahead for the channel is still given back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
api() { curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
accepted_in() { q "SELECT count(*) FROM outbox WHERE channel_id = '$1' AND state = 'accepted'"; }
arrived_in() { mock_get received | awk -F'\t' -v ch="$1" '$4 == ch' | wc -l; }

start_mock --rate-limit 0
mock_post faults '{"delay_ms":300}' >/dev/null
start_pg_node A --rate-limit 0 --max-inflight 4 --max-age 4s --retry-base 100ms
A_PORT=$NODE_PORT
start_pg_node B --rate-limit 0 --max-inflight 4 --max-age 4s --retry-base 100ms
B_PORT=$NODE_PORT
wait_until 10 '[ -n "$(q "SELECT node FROM tenant_leases WHERE tenant = '"'default'"' AND expires_at_ms > outbox_now_ms()")" ]'
holder=$(q "SELECT node FROM tenant_leases WHERE tenant = 'default'")
if [ "$holder" = A ]; then OTHER_PORT=$B_PORT; else OTHER_PORT=$A_PORT; fi

# ---- a pause on the other node stops the sender ----------------------------------------------
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'hold', 'h' || g, 'b', 'c' || g, 'x', 'User' FROM generate_series(1, 40) g" >/dev/null
wait_until 10 '[ "$(arrived_in hold)" -ge 4 ]'
code=$(api -X POST "http://127.0.0.1:$OTHER_PORT/v1/pause" -d '{"channel_id":"hold","reason":"maintenance"}')
assert_eq "POST /v1/pause on the node that does not send: 200" "$code" 200
assert_contains "... paused" "$(cat "$T/body")" '"paused":true,"changed":true'
at_pause=$(arrived_in hold)
sleep 2
after=$(( $(arrived_in hold) - at_pause ))
# The mock logs a delivery when it answers: the 4 requests in flight at the pause (max_inflight)
# may be logged after it. The sending node hears of the pause by NOTIFY a moment after its
# commit; if those 4 were answered in that moment, 4 more started (a CI run under
# ThreadSanitizer saw 8). What it had claimed ahead (up to 2 x max_inflight) is given back.
assert_le "the sending node sent nothing more of it than was in flight ($after)" "$after" 8
assert_ge "... what it had claimed ahead was given back, not sent" \
    "$(q "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.channel_id = 'hold' AND t.reason = 'released: channel paused'")" 1
assert_eq "... and nothing of it is left claimed" "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'hold' AND state = 'sending'")" 0
mock_post faults '{"delay_ms":0}' >/dev/null
code=$(api -X POST "http://127.0.0.1:$A_PORT/v1/messages" \
    -d '{"channel_id":"hold","external_message_id":"api1","business_id":"b","external_conversation_id":"ca","content":"x","sender_type":"User"}')
assert_eq "a message for the paused channel is still accepted (202)" "$code" 202
code=$(api -X POST "http://127.0.0.1:$A_PORT/v1/messages" \
    -d '{"channel_id":"free","external_message_id":"f1","business_id":"b","external_conversation_id":"cf","content":"x","sender_type":"User"}')
wait_until 10 '[ "$(accepted_in free)" = 1 ]'
assert_eq "another channel goes on" "$(accepted_in free)" 1
held=$(accepted_in hold)
sleep 1.5
assert_eq "the paused channel: nothing more sent" "$(accepted_in hold)" "$held"
code=$(api "http://127.0.0.1:$B_PORT/v1/stats")
assert_contains "/v1/stats shows the hold" "$(cat "$T/body")" '"holds":[{"scope":"channel","channel_id":"hold","reason":"maintenance"'
code=$(api -X POST "http://127.0.0.1:$A_PORT/v1/pause" -d '{"channel_id":"hold"}')
assert_contains "pausing again changes nothing" "$(cat "$T/body")" '"changed":false'

# ---- resume from the command line ---------------------------------------------------------------
"$OUTBOX_BIN" resume --db "$PG_URI" --channel hold >/dev/null
assert_eq "outbox resume on PostgreSQL: exit 0" "$?" 0
wait_until 10 '[ "$(accepted_in hold)" = 41 ]'
assert_eq "... the channel's messages all go" "$(accepted_in hold)" 41
assert_eq "the pause and the resume are audit events" \
    "$(q "SELECT string_agg(action || ' ' || key || ' ' || by, ', ' ORDER BY id) FROM actions")" \
    "pause hold api, resume hold cli"
assert_contains "outbox audit verify covers them" "$("$OUTBOX_BIN" audit verify --db "$PG_URI" 2>&1)" "audit chain ok"

# ---- time held does not count toward max_age ---------------------------------------------------
"$OUTBOX_BIN" pause --db "$PG_URI" --channel aged --reason test >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('aged', 'old', 'b', 'ca', 'x', 'User')" >/dev/null
sleep 5
mock_post faults '{"script":[500]}' >/dev/null
code=$(api -X POST "http://127.0.0.1:$OTHER_PORT/v1/resume" -d '{"channel_id":"aged"}')
assert_eq "POST /v1/resume: 200" "$code" 200
wait_until 10 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'old'"'")" != queued ] && [ "$(q "SELECT attempts FROM outbox WHERE external_message_id = '"'old'"'")" -ge 2 ] || [ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'old'"'")" = failed ]'
assert_eq "held 5 s with max_age 4 s, then a 500: retried and sent, not failed" \
    "$(q "SELECT state || ' ' || attempts FROM outbox WHERE external_message_id = 'old'")" "accepted 2"

# ---- a tenant's pause, made on the node that does not send --------------------------------------
mock_post faults '{"delay_ms":300}' >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'whole', 'w' || g, 'b', 'c' || g, 'x', 'User' FROM generate_series(1, 40) g" >/dev/null
wait_until 10 '[ "$(arrived_in whole)" -ge 4 ]'
code=$(api -X POST "http://127.0.0.1:$OTHER_PORT/v1/pause" -d '{"tenant":"default","reason":"upgrade"}')
assert_eq "POST /v1/pause {tenant: default} on the node that does not send: 200" "$code" 200
at_pause=$(arrived_in whole)
sleep 2
after=$(( $(arrived_in whole) - at_pause ))
assert_le "the sending node sent no more of the tenant than in flight, and one round ($after)" "$after" 8
assert_ge "... what it had claimed ahead was given back" \
    "$(q "SELECT count(*) FROM transitions WHERE reason = 'released: tenant paused'")" 1
held=$(arrived_in whole)
sleep 1
assert_eq "... and nothing more after that" "$(arrived_in whole)" "$held"
code=$(api "http://127.0.0.1:$A_PORT/v1/stats")
assert_contains "/v1/stats shows the tenant's hold" "$(cat "$T/body")" '{"scope":"tenant","tenant":"default","reason":"upgrade"'
assert_contains "/metrics on PostgreSQL shows it" "$(curl -sS "http://127.0.0.1:$B_PORT/metrics")" 'outbox_tenant_held{tenant="default"} 1'
"$OUTBOX_BIN" status --db "$PG_URI" >"$T/status"
assert_contains "outbox status on PostgreSQL shows it" "$(cat "$T/status")" "held: tenant default since"
assert_contains "... and each channel's counts, as on SQLite" "$(grep '^whole ' "$T/status")" "whole"
assert_contains "... and the nodes" "$(cat "$T/status")" "nodes: 2 live, 0 gone"
assert_contains "... and --json" "$("$OUTBOX_BIN" status --db "$PG_URI" --json)" '"holds":[{"scope":"tenant","tenant":"default"'
code=$(api "http://127.0.0.1:$OTHER_PORT/v1/nodes")
assert_eq "GET /v1/nodes: 200" "$code" 200
assert_contains "... the sending node holds the default tenant" "$(cat "$T/body")" '{"name":"'"$holder"'","live":true,'
assert_contains "... with its epoch" "$(cat "$T/body")" '"tenants":[{"tenant":"default","epoch":'
assert_contains "... both nodes live" "$(cat "$T/body")" '"backend":"postgresql","nodes":[{"name":"A","live":true'
"$OUTBOX_BIN" resume --db "$PG_URI" --tenant default >/dev/null
mock_post faults '{"delay_ms":0}' >/dev/null
wait_until 10 '[ "$(arrived_in whole)" = 40 ]'
assert_eq "outbox resume --tenant default: the tenant's messages all go" "$(arrived_in whole)" 40

# ---- a channel held while its tenant is held counts once ----------------------------------------
# Past intervals: created 10 s ago, held 9 s ago until 4 s ago by its channel and its tenant.
# Its age is 5 s (max_age 4 s), so its first 500 fails it; counted twice, it would be 0 s old.
# The default tenant's real pause above overlaps those 10 s: it goes first (nothing else
# looks at past pauses but max_age).
now=$(now_ms)
q "DELETE FROM pauses WHERE resumed_at_ms IS NOT NULL" >/dev/null
q "INSERT INTO pauses (scope, key, reason, by, paused_at_ms, resumed_at_ms) VALUES
   ('channel', 'both', 't', 'cli', $((now - 9000)), $((now - 4000))),
   ('tenant', 'default', 't', 'cli', $((now - 9000)), $((now - 4000)))" >/dev/null
mock_post faults '{"script":[500]}' >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, created_at_ms) VALUES ('both', 'twice', 'b', 'ct', 'x', 'User', $((now - 10000)))" >/dev/null
wait_until 10 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'twice'"'")" = failed ] || [ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'twice'"'")" = accepted ]'
assert_eq "held by its channel and its tenant at once: counted once toward max_age" \
    "$(q "SELECT state FROM outbox WHERE external_message_id = 'twice'")" failed


# ---- a pause made while the sender's listener was away ------------------------------------------
# Requests take 1.5 s, so what the sender claimed ahead is still waiting when its listener
# comes back (it reconnects after a second) and reads the open pauses.
mock_post faults '{"delay_ms":1500}' >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'late', 'l' || g, 'b', 'c' || g, 'x', 'User' FROM generate_series(1, 20) g" >/dev/null
wait_until 10 '[ "$(q "SELECT count(*) FROM outbox WHERE channel_id = '"'late'"' AND state = '"'sending'"'")" -ge 8 ]'
q "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'" >/dev/null
q "INSERT INTO pauses (scope, key, reason, by, paused_at_ms) VALUES ('channel', 'late', 'unheard', 'cli', outbox_now_ms())" >/dev/null
wait_until 10 '[ "$(q "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.channel_id = '"'late'"' AND t.reason = '"'released: channel paused'"'")" -ge 1 ]'
assert_ge "a pause missed by the listener: the claimed-ahead messages are given back once it is back" \
    "$(q "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.channel_id = 'late' AND t.reason = 'released: channel paused'")" 1
sleep 2
# The 4 in flight, and 4 more if those ended before the listener was back.
assert_le "... so no more than those in flight, and one round, were sent" "$(arrived_in late)" 8

finish
