#!/usr/bin/env bash
# Tenants (SPEC §11): each tenant is paced by its own key and limit, and one tenant's
# 401, 429 or removal never holds up another. The mock Partoo enforces its limit per key
# (300 per sliding 60 s) and answers 401 for a key it does not know. serve runs without a
# default key: only tenants send.
. "$(dirname "$0")/lib.sh"

start_mock --api-keys key-a,key-b,key-c-good,key-e
"$OUTBOX_BIN" migrate --db "$DB" >/dev/null

# queue CHANNEL N [PREFIX]: N messages for CHANNEL, each its own conversation.
queue() {
    local ch=$1 n=$2 p=${3:-m}
    for i in $(seq 1 "$n"); do
        printf '{"channel_id":"%s","external_message_id":"%s%d","business_id":"b","external_conversation_id":"c%d","content":"hi","sender_type":"Consumer"}\n' \
            "$ch" "$p" "$i" "$i"
    done | "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
}
# tenant ARGS...: `outbox tenant` on $DB; the key, if any, comes on stdin.
tenant() { "$OUTBOX_BIN" tenant "$@" --db "$DB"; }
# accepted_by KEY: requests the mock accepted with that x-APIKey.
accepted_by() { mock_get stats | python3 -c 'import json, sys
print(json.load(sys.stdin)["by_key"].get(sys.argv[1], {}).get("accepted", 0))' "$1"; }
api() { curl -sS -o "$T/api.out" -w '%{http_code}' -X "$1" -H 'Content-Type: application/json' \
    ${3:+-d "$3"} "http://127.0.0.1:$(serve_port api)$2"; }

echo key-a | tenant add a --api-key-stdin --rate-limit 60/min --channel ch-a
echo key-b | tenant add b --api-key-stdin --rate-limit 240/min --channel ch-b
echo bad-key | tenant add c --api-key-stdin --rate-limit 240/min --channel ch-c
queue ch-a 200
queue ch-b 200
queue ch-c 20
queue ch-e 3
API_KEY= start_serve --max-inflight 8 # API_KEY set and empty: serve has no default key
wait_until 5 'grep -q "no default Partoo API key" "$T/serve.log"'

# ---- pacing: each key at its own limit ---------------------------------------------------
sleep 2
# The window is measured, not assumed: reading the mock takes a while (longer under the
# sanitizers), so the bounds use the shortest and the longest the window can have been.
w0=$(now_ms); a0=$(accepted_by key-a); b0=$(accepted_by key-b); w1=$(now_ms)
sleep 10
w2=$(now_ms); a1=$(accepted_by key-a); b1=$(accepted_by key-b); w3=$(now_ms)
short=$((w2 - w1)) long=$((w3 - w0))
# 1/s and 4/s over that window: a window of W s holds at most W x rate + 1 sends (where it
# falls), one more for the skew between serve's clock and this script's; at least a few
# fewer (a send waits for a slot now and then).
assert_ge "tenant a paced near 60/min ($((a1 - a0)) in $short-$long ms)" $((a1 - a0)) $((short / 1000 - 1))
assert_le "tenant a not faster than 60/min ($((a1 - a0)) in $short-$long ms)" $((a1 - a0)) $((long / 1000 + 2))
assert_ge "tenant b paced near 240/min ($((b1 - b0)) in $short-$long ms)" $((b1 - b0)) $((short * 4 / 1000 - 3))
assert_le "tenant b not faster than 240/min ($((b1 - b0)) in $short-$long ms)" $((b1 - b0)) $((long * 4 / 1000 + 2))
assert_eq "no 429 from the mock" "$(mock_stat '$.rate_limited')" 0

# ---- 401: only tenant c waits -------------------------------------------------------------
# One request, then the key waits for a probe (auth_probe_interval, 60 s) or a new key.
assert_eq "tenant c's key was rejected, once" "$(sql "$DB" "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.channel_id = 'ch-c' AND a.http_status = 401")" 1
assert_eq "tenant c: nothing accepted" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-c' AND state <> 'queued'")" 0
assert_eq "tenant c: no attempt counted" "$(sql "$DB" "SELECT max(counted_attempts) FROM outbox WHERE channel_id = 'ch-c'")" 0
"$OUTBOX_BIN" status --db "$DB" --json >"$T/status.json"
assert_contains "status: tenant c paused for its key" "$(cat "$T/status.json")" '"auth"'
# A new key by `tenant set`, no SIGHUP: c sends again within seconds.
echo key-c-good | tenant set c --api-key-stdin
wait_until 10 '[ "$(accepted_by key-c-good)" -ge 1 ]'
assert_ge "tenant c sends with its new key" "$(accepted_by key-c-good)" 1
assert_eq "no SIGHUP was needed" "$(grep -c 'configuration reloaded' "$T/serve.log")" 0

# ---- 429 + Retry-After for one tenant does not delay the other -----------------------------
mock_post faults '{"script":[429],"retry_after":"6"}' >/dev/null
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 429")" -ge 1 ]'
hit=$(sql "$DB" "SELECT o.tenant FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE a.http_status = 429 LIMIT 1")
at=$(sql "$DB" "SELECT started_at_ms FROM attempts WHERE http_status = 429 LIMIT 1")
other=a; [ "$hit" = a ] && other=b
sleep 5
n_hit=$(sql "$DB" "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.tenant = '$hit' AND a.started_at_ms > $at AND a.started_at_ms < $at + 5000")
n_other=$(sql "$DB" "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.tenant = '$other' AND a.started_at_ms > $at AND a.started_at_ms < $at + 5000")
assert_eq "tenant $hit waits out its Retry-After" "$n_hit" 0
assert_ge "tenant $other keeps sending meanwhile ($n_other in 5 s)" "$n_other" 3

# ---- a channel without a tenant waits with a reason; a tenant added over the API sends it ---
assert_eq "ch-e: queued, untouched" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-e' AND state = 'queued' AND attempts = 0")" 3
"$OUTBOX_BIN" status --db "$DB" --json >"$T/status.json"
assert_contains "status names the channel that has no tenant" "$(cat "$T/status.json")" \
    "no tenant owns channel ch-e and no default API key is configured"
code=$(api PUT /v1/tenants/e '{"api_key":"key-e","rate_limit":600,"channels":[{"channel_id":"ch-e"}]}')
assert_eq "PUT /v1/tenants/e: created" "$code" 201
wait_until 5 '[ "$(accepted_by key-e)" = 3 ]'
assert_eq "tenant e's queued messages went out" "$(accepted_by key-e)" 3
code=$(api PUT /v1/tenants/e2 '{"api_key":"key-e","channels":[{"channel_id":"ch-e"}]}')
assert_eq "a channel claimed by a second tenant: 409" "$code" 409

# ---- tenant rm: its messages stay queued, with a reason ------------------------------------
tenant rm a
sleep 1
left=$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-a' AND state = 'queued'")
a2=$(accepted_by key-a)
sleep 3
assert_eq "after rm: nothing more sent with a's key" "$(accepted_by key-a)" "$a2"
assert_eq "after rm: a's messages stay queued" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-a' AND state = 'queued'")" "$left"
assert_ge "after rm: some were left to wait" "$left" 100
"$OUTBOX_BIN" status --db "$DB" --json >"$T/status.json"
assert_contains "status names ch-a, which no tenant owns now" "$(cat "$T/status.json")" \
    "no tenant owns channel ch-a and no default API key is configured"
assert_eq "nothing failed" "$(count_state failed)" 0

# ---- the keys are never printed --------------------------------------------------------------
tenant ls --json >"$T/ls.json"
for k in key-a key-b key-c-good key-e bad-key; do
    assert_not_contains "$k not in serve's log" "$(cat "$T/serve.log")" "$k"
    assert_not_contains "$k not in tenant ls" "$(cat "$T/ls.json")" "$k"
    assert_not_contains "$k not in status" "$(cat "$T/status.json")" "$k"
done

finish
