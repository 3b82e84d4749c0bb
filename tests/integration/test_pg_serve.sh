#!/usr/bin/env bash
# serve on PostgreSQL (issue 15, SPEC §12), its delivery core, against a real throwaway
# cluster and the mock:
#   - messages enqueued through the API (202 only after the COMMIT) and rows a producer
#     INSERTs in its own transaction are all delivered once, in order per conversation;
#     a rolled-back INSERT is never sent; attempts and transitions are recorded;
#   - the node holds the default tenant's lease (outbox status) and gives it back on SIGTERM;
#   - a schema that was not migrated is refused at start with what to do;
#   - what a previous holder left in `sending` is sent again by the next holder;
#   - a 429's Retry-After is kept in the database (tenant_pacing) and binds the next holder.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
api() { curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }

start_mock --rate-limit 0

# ---- a schema that was not migrated ------------------------------------------------------------
"$OUTBOX_BIN" serve --db "$PG_URI" --db-schema never_migrated --partoo-base-url "$MOCK_URL" \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 >"$T/unmigrated.log" 2>&1
assert_eq "unmigrated schema: serve exits 1" "$?" 1
assert_contains "unmigrated schema: the log says what to do" "$(cat "$T/unmigrated.log")" "outbox migrate"

# ---- delivery: API and SQL producers -----------------------------------------------------------
start_pg_node A --rate-limit 0 --max-inflight 8
wait_until 10 '[ "$(q "SELECT count(*) FROM tenant_leases WHERE node = '"'A'"' AND tenant = '"'default'"'")" = 1 ]'
assert_contains "status: node A holds the default tenant" \
    "$("$OUTBOX_BIN" status --db "$PG_URI" 2>&1)" "default"

# 200 messages over 10 conversations in batches of 20, and single ones.
for b in $(seq 0 9); do
    body=$(for i in $(seq 0 19); do
        n=$((b * 20 + i))
        printf '{"channel_id":"ch","external_message_id":"api%03d","business_id":"b","external_conversation_id":"c%d","content":"m %d","sender_type":"Consumer"}\n' "$n" $((n % 10)) "$n"
    done | paste -sd, -)
    code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" -d "{\"messages\":[$body]}")
    [ "$code" = 202 ] || fail "batch $b: HTTP $code $(head -c 300 "$T/body")"
done
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"api000","business_id":"b","external_conversation_id":"c0","content":"m 0","sender_type":"Consumer"}')
assert_eq "a repeated key answers 202" "$code" 202
assert_contains "... as a duplicate" "$(cat "$T/body")" '"duplicate":true'
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"api000","business_id":"b","external_conversation_id":"c0","content":"other","sender_type":"Consumer"}')
assert_eq "the same key with other fields: 409" "$code" 409
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"bad","business_id":"b","external_conversation_id":"c0","content":"x","sender_type":"Robot"}')
assert_eq "an invalid message: 400" "$code" 400
assert_contains "... naming the field" "$(cat "$T/body")" '"field":"sender_type"'

# A producer's own transactions: one commits 20 rows, one rolls back.
q "BEGIN; INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'sql' || lpad(g::text, 3, '0'), 'b', 'c' || (g % 10), 'sql ' || g, 'User' FROM generate_series(0, 19) g; COMMIT;" >/dev/null
q "BEGIN; INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 'rolled-back', 'b', 'c0', 'never', 'User'); ROLLBACK;" >/dev/null

wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 220 ]'
accepted=$(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")
assert_eq "every message accepted" "$accepted" 220
[ "$accepted" = 220 ] || q "SELECT external_conversation_id, string_agg(external_message_id || ':' || state || ':' || head || ':' || conv_seq, ' ' ORDER BY conv_seq) FROM outbox WHERE state IN ('queued', 'sending') GROUP BY 1" | head -5 >&2
mock_get received >"$T/received.tsv"
assert_eq "the mock got each message once" "$(cut -f6 "$T/received.tsv" | sort | uniq -d | wc -l)" 0
assert_eq "... all 220 of them" "$(cut -f6 "$T/received.tsv" | sort -u | wc -l)" 220
assert_eq "the rolled-back row was never sent" "$(grep -c 'rolled-back' "$T/received.tsv")" 0
# Order per conversation: within each conversation, arrivals follow the ids.
awk -F'\t' '{ print $6 }' "$T/received.tsv" >"$T/arrived"
q "SELECT external_message_id || ' ' || external_conversation_id || ' ' || id FROM outbox" | sort >"$T/ids"
inversions=$(awk 'NR == FNR { conv[$1] = $2; id[$1] = $3; next }
    { c = conv[$1]; if (c in last && id[$1] < last[c]) bad++; last[c] = id[$1] } END { print bad + 0 }' \
    "$T/ids" "$T/arrived")
assert_eq "order kept within each conversation" "$inversions" 0
assert_eq "one attempt recorded per message" "$(q "SELECT count(*) FROM attempts")" 220
assert_eq "every attempt names its claim" "$(q "SELECT count(*) FROM attempts WHERE lease_token IS NULL")" 0
# Each message: queued -> sending -> accepted. A claim given back unsent (under a sanitizer a
# late beat can cost the node its lease a moment: "released: lease lost", and the takeover's
# requeue) adds sending -> queued -> sending, and no attempt (checked above).
n=$(q "SELECT (SELECT count(*) FROM transitions WHERE to_state = 'accepted') || ' '
       || (SELECT count(*) FROM transitions WHERE to_state = 'sending')
        - (SELECT count(*) FROM transitions WHERE from_state = 'sending' AND to_state = 'queued')")
assert_eq "transitions: queued->sending->accepted for each (claims given back unsent aside)" "$n" "220 220"
[ "$n" = "220 220" ] || q "SELECT from_state || '->' || to_state || ': ' || reason, count(*) FROM transitions GROUP BY 1" >&2

# ---- reads: a message with its history, the list (built on the store thread) -------------------
code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages/ch/sql007")
assert_eq "GET a message: 200" "$code" 200
doc=$(cat "$T/body")
assert_eq "... its state and content" "$(jget "$doc" '$.state')|$(jget "$doc" '$.content')" "accepted|sql 7"
assert_eq "... its transitions" "$(echo "$doc" | python3 -c 'import json,sys; print(" ".join(t["from"] + ">" + t["to"] for t in json.load(sys.stdin)["transitions"]))')" \
    "$(q "SELECT string_agg(t.from_state || '>' || t.to_state, ' ' ORDER BY t.id) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'sql007'")"
assert_eq "... its attempt, with the status Partoo answered" \
    "$(echo "$doc" | python3 -c 'import json,sys; print([a["http_status"] for a in json.load(sys.stdin)["attempts_log"]])')" "[200]"
assert_eq "GET an unknown message: 404" "$(api "http://127.0.0.1:$NODE_PORT/v1/messages/ch/nope")" 404
assert_contains "... in the error shape" "$(cat "$T/body")" '"code":"not_found"'
code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages?state=accepted&limit=150")
assert_eq "list: 200" "$code" 200
page1=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["messages"]), d["next_cursor"])' "$T/body")
code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages?state=accepted&limit=150&cursor=${page1#* }")
page2=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["messages"]), d["next_cursor"], min(m["id"] for m in d["messages"]))' "$T/body")
assert_eq "list: two pages hold the 220 accepted, newest first" "${page1% *} ${page2% *}" "150 70 None"
assert_eq "list: the last page ends at the oldest" "${page2##* }" "$(q "SELECT min(id) FROM outbox")"
# /v1/stats: the counts per channel and state, from the store thread.
code=$(api "http://127.0.0.1:$NODE_PORT/v1/stats")
assert_eq "GET /v1/stats: 200" "$code" 200
assert_eq "... the channel's accepted count" \
    "$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print([(c["channel_id"], c["counts"]["accepted"]) for c in d["channels"]])' "$T/body")" \
    "[('ch', $(q "SELECT count(*) FROM outbox WHERE state = 'accepted'"))]"
assert_eq "... and in total" "$(python3 -c 'import json,sys; print(sum(json.load(open(sys.argv[1]))["counts"].values()))' "$T/body")" \
    "$(q "SELECT count(*) FROM outbox")"
# /metrics: Prometheus text, the database's counts among the loop's.
code=$(api "http://127.0.0.1:$NODE_PORT/metrics")
assert_eq "GET /metrics: 200" "$code" 200
assert_contains "... the accepted messages of ch" "$(cat "$T/body")" \
    "outbox_messages{channel=\"ch\",state=\"accepted\"} $(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")"
assert_eq "... the outbox's bytes in PostgreSQL" "$(grep -c '^outbox_database_size_bytes [1-9]' "$T/body")" 1
# The same reads from the command line.
assert_contains "outbox show on PostgreSQL: the message and its attempt" \
    "$("$OUTBOX_BIN" show --db "$PG_URI" ch sql007 2>&1)" "http 200"
assert_eq "outbox ls on PostgreSQL: the newest accepted first" \
    "$("$OUTBOX_BIN" ls --db "$PG_URI" --state accepted --limit 2 --json 2>&1 | python3 -c 'import json,sys; print([m["id"] for m in json.load(sys.stdin)["messages"]])')" \
    "$(q "SELECT '[' || string_agg(id::text, ', ' ORDER BY id DESC) || ']' FROM (SELECT id FROM outbox WHERE state = 'accepted' ORDER BY id DESC LIMIT 2) x")"
assert_eq "list: a bad filter is 400 naming it" "$(api "http://127.0.0.1:$NODE_PORT/v1/messages?state=bogus")" 400
assert_contains "... naming it" "$(cat "$T/body")" '"field":"state"'

# ---- outbox enqueue on PostgreSQL (flags, JSON Lines) -----------------------------------------
out=$(printf '{"channel_id":"ch","external_message_id":"cli%d","business_id":"b","external_conversation_id":"ccli","content":"x","sender_type":"User"}\n' 1 2 3 |
    "$OUTBOX_BIN" enqueue --db "$PG_URI" 2>&1)
assert_contains "outbox enqueue JSON Lines on PostgreSQL" "$out" "accepted 3, duplicate 0"
out=$("$OUTBOX_BIN" enqueue --db "$PG_URI" --channel ch --message-id cli1 --business b --conversation ccli --content other --sender User 2>&1)
assert_eq "... the same key with other fields: exit 1" "$?" 1
assert_contains "... a conflict" "$out" "conflict"
wait_until 10 '[ "$(q "SELECT count(*) FROM outbox WHERE external_message_id LIKE '"'cli%'"' AND state = '"'accepted'"'")" = 3 ]'
assert_eq "... and serve sends them" "$(q "SELECT count(*) FROM outbox WHERE external_message_id LIKE 'cli%' AND state = 'accepted'")" 3

# ---- an operator's retry and cancel (API and CLI) ----------------------------------------------
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages/ch/api005/retry")
assert_eq "retry an accepted message over the API: 200" "$code" 200
assert_contains "... answering the message" "$(cat "$T/body")" '"external_message_id":"api005"'
wait_until 10 '[ "$(q "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.external_message_id = '"'api005'"'")" = 2 ]'
assert_eq "... and it is sent again" \
    "$(q "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.external_message_id = 'api005'")" 2
assert_eq "... its transitions recorded (accepted -> queued, by the API)" \
    "$(q "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'api005' AND t.to_state = 'queued' AND t.reason = 'retried over the API'")" 1
assert_eq "cancel an accepted message: 409" "$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages/ch/api006/cancel")" 409
assert_contains "... naming the state" "$(cat "$T/body")" '"field":"state"'
assert_eq "cancel an unknown message: 404" "$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages/ch/nope/cancel")" 404
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, next_attempt_at_ms) VALUES ('ch', 'later', 'b', 'cl', 'later', 'User', 9000000000000)" >/dev/null
assert_eq "cancel a queued message over the API: 200" "$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages/ch/later/cancel")" 200
assert_eq "... it is cancelled" "$(q "SELECT state || ' ' || state_reason FROM outbox WHERE external_message_id = 'later'")" "cancelled cancelled over the API"
assert_contains "outbox retry on PostgreSQL" "$("$OUTBOX_BIN" retry --db "$PG_URI" ch later 2>&1; echo " rc=$?")" "rc=1"
q "UPDATE outbox SET state = 'failed', state_reason = 'test' WHERE external_message_id = 'later'" >/dev/null
assert_contains "... a failed one: requeued" "$("$OUTBOX_BIN" retry --db "$PG_URI" ch later 2>&1)" "requeued ch/later"
assert_eq "... due now, its budget reset" "$(q "SELECT state || ' ' || next_attempt_at_ms || ' ' || counted_attempts FROM outbox WHERE external_message_id = 'later'")" "queued 0 0"
wait_until 10 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'later'"'")" = accepted ]'
assert_eq "... and sent" "$(q "SELECT state FROM outbox WHERE external_message_id = 'later'")" accepted
q "UPDATE outbox SET state = 'failed', state_reason = 'test' WHERE external_message_id IN ('api001', 'api002')" >/dev/null
assert_contains "outbox retry --state failed on PostgreSQL" "$("$OUTBOX_BIN" retry --db "$PG_URI" --state failed 2>&1)" "requeued 2 failed messages"

# ---- outcomes that cannot be written for a while, with no producer to wake anyone -----------
# While outcomes fail, serve gives its claimed messages back and claims nothing; once they are
# written again it must claim by itself (no producer COMMIT comes to wake it). Slow answers
# keep max_inflight busy and the lane's prefetch full when the failure starts.
mock_post faults '{"delay_ms":100}' >/dev/null
q "CREATE TABLE test_fail_attempts (); CREATE FUNCTION test_fail_attempts() RETURNS trigger LANGUAGE plpgsql AS \$\$ BEGIN IF EXISTS (SELECT FROM test_fail_attempts) THEN RAISE EXCEPTION 'attempts refused by the test'; END IF; RETURN NULL; END \$\$; CREATE TRIGGER test_fail_attempts BEFORE INSERT ON attempts FOR EACH STATEMENT EXECUTE FUNCTION test_fail_attempts()" >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'stuck' || g, 'b', 'cs' || g, 'x', 'User' FROM generate_series(1, 300) g" >/dev/null
wait_until 20 '[ "$(q "SELECT count(*) FROM outbox WHERE external_message_id LIKE '"'stuck%'"' AND state = '"'accepted'"'")" -ge 40 ]'
q "INSERT INTO test_fail_attempts DEFAULT VALUES" >/dev/null
wait_until 10 'grep -q "cannot record delivery outcomes" "$T/A.log"'
assert_contains "outcomes refused: serve says so" "$(grep "cannot record delivery outcomes" "$T/A.log" | head -1)" "will retry"
sleep 2
q "DELETE FROM test_fail_attempts" >/dev/null
mock_post faults '{"delay_ms":0}' >/dev/null
wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE external_message_id LIKE '"'stuck%'"' AND state = '"'accepted'"'")" = 300 ]'
assert_eq "outcomes written again: serve claims and delivers the rest by itself" \
    "$(q "SELECT count(*) FROM outbox WHERE external_message_id LIKE 'stuck%' AND state = 'accepted'")" 300
q "DROP TRIGGER test_fail_attempts ON attempts; DROP FUNCTION test_fail_attempts(); DROP TABLE test_fail_attempts" >/dev/null

# ---- health -----------------------------------------------------------------------------------
assert_eq "/readyz: 200 (the database answers)" "$(api "http://127.0.0.1:$NODE_PORT/readyz")" 200
assert_eq "/healthz: 200" "$(api "http://127.0.0.1:$NODE_PORT/healthz")" 200

# ---- fencing: an outcome under a lost lease --------------------------------------------------
# Another node's claim is left in `sending` (A's epoch is current): A's takeover after a new
# epoch sends it again. Simulated here: the lease moves to epoch+1 under A, as after A lost
# and regained it, and a row is left `sending` from the old epoch.
kill -TERM "$NODE_PID"
wait "$NODE_PID"
assert_eq "SIGTERM: serve exits 0" "$?" 0
assert_eq "SIGTERM: the node left (its lease is free at once)" \
    "$(q "SELECT count(*) FROM tenant_leases WHERE node = 'A' AND expires_at_ms > outbox_now_ms()")" 0
assert_eq "SIGTERM: the node is gone from the list" "$(q "SELECT count(*) FROM nodes WHERE name = 'A'")" 0

q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 'orphan', 'b', 'c-orphan', 'left sending', 'User')" >/dev/null
q "UPDATE outbox SET state = 'sending', state_reason = 'claimed', lease_token = 42, lease_expires_at_ms = outbox_now_ms() + 3600000 WHERE external_message_id = 'orphan'" >/dev/null
start_pg_node B --rate-limit 600/min --node-lease 3s
wait_until 15 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'orphan'"'")" = accepted ]'
assert_eq "takeover: a message left sending by the previous holder is sent again" \
    "$(q "SELECT state FROM outbox WHERE external_message_id = 'orphan'")" accepted
assert_contains "takeover: the transition says why" \
    "$(q "SELECT string_agg(t.reason, '|' ORDER BY t.id) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'orphan'")" \
    "lost the lease"

# ---- pacing survives a takeover: a 429's Retry-After binds the next holder -------------------
mock_post faults '{"script":[429],"retry_after":"10"}' >/dev/null
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"paced","business_id":"b","external_conversation_id":"c-paced","content":"x","sender_type":"Consumer"}')
assert_eq "pacing: enqueued" "$code" 202
wait_until 10 '[ "$(q "SELECT paused_until_ms FROM tenant_pacing WHERE tenant = '"'default'"'")" -gt 0 ]'
paused_until=$(q "SELECT paused_until_ms FROM tenant_pacing WHERE tenant = 'default'")
assert_ge "pacing: the 429's Retry-After is kept in the database" "$paused_until" $(( $(now_ms) + 5000 ))
# Another conversation's message, due at once: only the tenant's pause holds it back.
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"paced2","business_id":"b","external_conversation_id":"c-paced2","content":"x","sender_type":"Consumer"}')
kill -KILL "$NODE_PID"
wait "$NODE_PID" 2>/dev/null
start_pg_node C --rate-limit 600/min --node-lease 3s
wait_until 30 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'paced'"'")" = accepted ]'
wait_until 30 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'paced2'"'")" = accepted ]'
for m in paced paced2; do
    arrived=$(mock_get received | awk -F'\t' -v m=$m '$6 == m { print $2; exit }')
    assert_ge "pacing: the next holder waited for the Retry-After ($m sent $((arrived - paused_until)) ms after its end)" \
        "${arrived:-0}" "$paused_until"
done
kill -TERM "$NODE_PID"
wait "$NODE_PID"

# ---- no confirmation in time: re-sent with the same key, then reported unconfirmed ----------
# (the mock sends no webhooks here: nothing is ever confirmed)
start_pg_node D --rate-limit 0 --confirm-timeout 1s --max-resends 1
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"unconf","business_id":"b","external_conversation_id":"c-unconf","content":"x","sender_type":"Consumer"}')
assert_eq "confirmation timeout: enqueued" "$code" 202
wait_until 20 '[ -n "$(q "SELECT unconfirmed_at_ms FROM outbox WHERE external_message_id = '"'unconf'"'")" ]'
assert_eq "confirmation timeout: sent again once, then unconfirmed" \
    "$(q "SELECT state || ' ' || resends || ' ' || attempts || ' ' || (unconfirmed_at_ms IS NOT NULL) FROM outbox WHERE external_message_id = 'unconf'")" \
    "accepted 1 2 true"
assert_eq "... the mock got it twice" "$(mock_get received | awk -F'\t' '$6 == "unconf"' | wc -l)" 2
assert_contains "... and the log says why" "$(grep -h "no confirmation in time" "$T/D.log" | head -1)" "re-sending"
kill -TERM "$NODE_PID"
wait "$NODE_PID"

finish
