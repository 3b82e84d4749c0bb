#!/usr/bin/env bash
# A whole tenant paused and resumed (SPEC §13 "pause means hold", §11), on SQLite:
#   - POST /v1/pause {"tenant"} holds every channel the tenant owns: what serve had claimed
#     ahead for it goes back unsent, nothing more is sent, other tenants go on;
#   - `default` is the configured key's tenant (the channels no tenant owns);
#   - /v1/stats, /metrics and `outbox status` show the hold; it is an audit event;
#   - bad requests: unknown tenant (404), both or neither of tenant and channel_id (400),
#     and the same from the command line (exit 1 and 2);
#   - the time held does not count toward max_age, and a channel held while its tenant is
#     held too counts once: a message 10 s old, held 5 s by both, is 5 s old, not 0.
. "$(dirname "$0")/lib.sh"

start_mock --api-keys key-a,key-b,test-key
mock_post faults '{"delay_ms":200}' >/dev/null
"$OUTBOX_BIN" migrate --db "$DB" >/dev/null
tenant() { "$OUTBOX_BIN" tenant "$@" --db "$DB"; }
echo key-a | tenant add a --api-key-stdin --rate-limit 6000/min --channel ch-a1 --channel ch-a2 >/dev/null
echo key-b | tenant add b --api-key-stdin --rate-limit 6000/min --channel ch-b >/dev/null
echo key-bad | tenant add c --api-key-stdin --rate-limit 60/min --channel ch-c >/dev/null
# queue CHANNEL N: N messages for CHANNEL, each its own conversation.
queue() {
    for i in $(seq 1 "$2"); do
        printf '{"channel_id":"%s","external_message_id":"m%d","business_id":"b","external_conversation_id":"c%d","content":"hi","sender_type":"Consumer"}\n' "$1" "$i" "$i"
    done | "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
}
for ch in ch-a1 ch-a2 ch-b; do queue "$ch" 30; done
queue ch-c 1
api() { curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
accepted_in() { sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id IN ($1) AND state = 'accepted'"; }
A="'ch-a1','ch-a2'"

start_serve --max-inflight 4 --max-age 4s --retry-base 100ms
URL=http://127.0.0.1:$(serve_port api)

# ---- a tenant's pause holds all its channels -----------------------------------------------
wait_until 10 '[ "$(accepted_in "$A")" -ge 4 ]'
code=$(api -X POST "$URL/v1/pause" -d '{"tenant":"a","reason":"billing"}')
assert_eq "POST /v1/pause {tenant}: 200" "$code" 200
assert_eq "... the answer names the tenant" "$(cat "$T/body")" '{"scope":"tenant","tenant":"a","paused":true,"changed":true}'
at_pause=$(accepted_in "$A")
sleep 2
# Up to max_inflight requests were in flight at the pause; nothing claimed ahead goes.
assert_le "tenant a: nothing more sent than was in flight" $(($(accepted_in "$A") - at_pause)) 4
assert_ge "... what it had claimed ahead was given back" \
    "$(sql "$DB" "SELECT count(*) FROM transitions WHERE reason = 'released: tenant paused'")" 1
held=$(accepted_in "$A")
wait_until 10 '[ "$(accepted_in "'"'ch-b'"'")" = 30 ]'
assert_eq "tenant b goes on" "$(accepted_in "'ch-b'")" 30
assert_eq "tenant a: still nothing more" "$(accepted_in "$A")" "$held"
assert_eq "tenant a: no attempt used while held" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id IN ($A) AND state = 'queued' AND attempts > 0")" 0

code=$(api "$URL/v1/stats")
assert_contains "/v1/stats lists the hold" "$(cat "$T/body")" '"holds":[{"scope":"tenant","tenant":"a","reason":"billing","by":"api"'
assert_contains "/metrics: outbox_tenant_held" "$(curl -sS "$URL/metrics")" 'outbox_tenant_held{tenant="a"} 1'
assert_contains "outbox status names it" "$("$OUTBOX_BIN" status --db "$DB")" "held: tenant a since"
code=$(api -X POST "$URL/v1/pause" -d '{"tenant":"a"}')
assert_contains "pausing again changes nothing" "$(cat "$T/body")" '"changed":false'

# ---- the overview's counts per tenant (kept counts, SPEC §13) -------------------------------
code=$(api "$URL/v1/stats/overview")
ov=$(cat "$T/body")
per_tenant() { sql "$DB" "SELECT coalesce(t.tenant, 'default') || ':' || o.state || ':' || count(*) FROM outbox o LEFT JOIN tenant_channels t USING (channel_id) GROUP BY t.tenant, o.state"; }
got=$(python3 -c 'import json, sys
d = json.loads(sys.argv[1])
print("\n".join(sorted("%s:%s:%d" % (t["tenant"], s, n) for t in d["tenants"] for s, n in t["counts"].items() if n)))' "$ov")
assert_eq "overview: counts per tenant equal the outbox's" "$got" "$(per_tenant | sort)"
assert_contains "overview: a channel names its tenant" "$ov" '"channel_id":"ch-a1","counts":'
assert_eq "overview: ch-a1 belongs to a" "$(python3 -c 'import json, sys
print([c["tenant"] for c in json.loads(sys.argv[1])["channels"] if c["channel_id"] == "ch-a1"][0])' "$ov")" a
assert_contains "overview: the worker's pause of tenant c (its key refused)" "$ov" '"tenant_pauses":[{"tenant":"c","reason":"auth"'

# ---- bad requests change nothing -------------------------------------------------------------
code=$(api -X POST "$URL/v1/pause" -d '{"tenant":"nobody"}')
assert_eq "an unknown tenant: 404" "$code" 404
assert_contains "... naming the field" "$(cat "$T/body")" '"field":"tenant"'
code=$(api -X POST "$URL/v1/pause" -d '{"tenant":"b","channel_id":"ch-b"}')
assert_eq "tenant and channel_id both: 400" "$code" 400
code=$(api -X POST "$URL/v1/pause" -d '{"reason":"x"}')
assert_eq "neither: 400" "$code" 400
assert_contains "... missing_field" "$(cat "$T/body")" '"missing_field"'
code=$(api -X POST "$URL/v1/pause" -d '{"tenant":""}')
assert_eq "an empty tenant: 400" "$code" 400
"$OUTBOX_BIN" pause --db "$DB" --tenant nobody >/dev/null 2>"$T/err"
assert_eq "outbox pause --tenant nobody: exit 1" "$?" 1
assert_contains "... says so" "$(cat "$T/err")" "no tenant nobody"
"$OUTBOX_BIN" pause --db "$DB" --tenant b --channel ch-b >/dev/null 2>&1
assert_eq "outbox pause with both: exit 2" "$?" 2
"$OUTBOX_BIN" pause --db "$DB" >/dev/null 2>&1
assert_eq "outbox pause with neither: exit 2" "$?" 2
assert_eq "none of them paused anything" \
    "$(sql "$DB" "SELECT group_concat(scope || ' ' || key) FROM pauses WHERE resumed_at_ms IS NULL")" "tenant a"

# ---- the default tenant, from the command line -----------------------------------------------
out=$("$OUTBOX_BIN" pause --db "$DB" --tenant default --reason upgrade)
assert_eq "outbox pause --tenant default" "$out" "tenant default paused"
queue ch-d 5
sleep 2
assert_eq "a channel no tenant owns is held with default" "$(accepted_in "'ch-d'")" 0
out=$("$OUTBOX_BIN" resume --db "$DB" --tenant default --json)
assert_eq "outbox resume --tenant default --json" "$out" '{"scope":"tenant","tenant":"default","paused":false,"changed":true}'
wait_until 10 '[ "$(accepted_in "'"'ch-d'"'")" = 5 ]'
assert_eq "... then its messages go" "$(accepted_in "'ch-d'")" 5

# ---- resume ------------------------------------------------------------------------------------
code=$(api -X POST "$URL/v1/resume" -d '{"tenant":"a"}')
assert_eq "POST /v1/resume {tenant}: 200" "$code" 200
wait_until 15 '[ "$(accepted_in "$A")" = 60 ]'
assert_eq "... all of tenant a's messages go" "$(accepted_in "$A")" 60
assert_eq "the pauses and resumes are audit events" \
    "$(sql "$DB" "SELECT group_concat(action || ' ' || scope || ' ' || key || ' ' || by, ', ') FROM (SELECT * FROM actions ORDER BY id)")" \
    "pause tenant a api, pause tenant default cli, resume tenant default cli, resume tenant a api"
assert_not_contains "/metrics: no hold left" "$(curl -sS "$URL/metrics")" 'outbox_tenant_held'

# ---- a channel held while its tenant is held counts once ----------------------------------------
# Written as past intervals: created 10 s ago, held 9 s ago until 4 s ago by both its channel
# and its tenant. Its age is 5 s (max_age 4 s): its first 500 fails it. Counted twice, it
# would be 0 s old and retried.
now=$(now_ms)
sql "$DB" "INSERT INTO pauses (scope, key, reason, by, paused_at_ms, resumed_at_ms) VALUES
    ('channel', 'ch-b', 't', 'cli', $((now - 9000)), $((now - 4000))),
    ('tenant', 'b', 't', 'cli', $((now - 9000)), $((now - 4000)))"
mock_post faults '{"delay_ms":0,"script":[500]}' >/dev/null
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
    content, sender_type, created_at_ms) VALUES ('ch-b', 'old', 'b', 'c-old', 'x', 'User', $((now - 10000)))"
wait_until 10 '[ "$(state_of ch-b old)" != queued ] && [ "$(state_of ch-b old)" != sending ]'
assert_eq "held by channel and tenant at once: counted once toward max_age" "$(state_of ch-b old)" failed
assert_contains "... failed for its age" "$(sql "$DB" "SELECT state_reason FROM outbox WHERE external_message_id = 'old'")" "max age"

finish
