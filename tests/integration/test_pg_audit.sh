#!/usr/bin/env bash
# The audit chain on PostgreSQL (issue 15, lib/audit.h, migrations/postgresql/0009_audit.sql),
# against a real throwaway cluster and the mock:
#   - serve seals what it delivers (transitions and attempts, API and SQL producers) and
#     `outbox audit verify` recomputes the chain; the export has every event, hashed;
#   - an event whose transaction commits after later events were sealed joins a later seal
#     (ids are not committed in order here), and the chain still verifies;
#   - two nodes seal one chain, one at a time, without a fork;
#   - a changed or deleted event is named by verify (exit 1);
#   - a keyed chain (audit_key_file) needs its key to verify.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
api() { curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
sealed() { q "SELECT coalesce(sum(events), 0) FROM audit_seals"; }
events() { q "SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM attempts) + (SELECT count(*) FROM actions)"; }
verify() { OUTBOX_AUDIT_KEY_FILE=$T/audit.key "$OUTBOX_BIN" audit verify --db "$PG_URI" "$@"; }

start_mock --rate-limit 0
head -c 32 /dev/urandom | base64 >"$T/audit.key"
export OUTBOX_AUDIT_KEY_FILE=$T/audit.key
start_pg_node A --rate-limit 0 --max-inflight 8
A_PID=$NODE_PID A_PORT=$NODE_PORT
start_pg_node B --rate-limit 0 --max-inflight 8
unset OUTBOX_AUDIT_KEY_FILE

# A message held back (due far in the future), cancelled by a transaction that stays open
# while everything below is delivered and sealed: its transition has a lower id than those
# sealed meanwhile, and commits after them.
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, next_attempt_at_ms) VALUES ('ch', 'held', 'b', 'held-conv', 'held', 'User', 9000000000000)" >/dev/null
( q "BEGIN; UPDATE outbox SET state = 'cancelled', state_reason = 'by the producer' WHERE external_message_id = 'held'; SELECT pg_sleep(6); COMMIT;" >/dev/null ) &
LATE=$!
sleep 0.5

for b in $(seq 0 4); do
    body=$(for i in $(seq 0 19); do
        n=$((b * 20 + i))
        printf '{"channel_id":"ch","external_message_id":"api%03d","business_id":"b","external_conversation_id":"c%d","content":"m \\"%d\\"\\n\\u0001 é","sender_type":"Consumer"}\n' "$n" $((n % 7)) "$n"
    done | paste -sd, -)
    code=$(api -X POST "http://127.0.0.1:$A_PORT/v1/messages" -d "{\"messages\":[$body]}")
    [ "$code" = 202 ] || fail "batch $b: HTTP $code $(head -c 300 "$T/body")"
done
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'sql' || g, 'b', 'c' || (g % 7), 'sql ' || g, 'User' FROM generate_series(0, 19) g" >/dev/null
wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 120 ]'
assert_eq "every message accepted" "$(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")" 120
kill -0 "$LATE" 2>/dev/null
assert_eq "... while the cancelling transaction was still open" "$?" 0
wait "$LATE"
wait_until 15 '[ "$(sealed)" = "$(events)" ]'
assert_eq "every event sealed, the late one too" "$(sealed)" "$(events)"
assert_eq "the late event has a lower id than events committed before it" \
    "$(q "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'held' AND t.id < (SELECT max(id) FROM transitions WHERE to_state = 'accepted')")" 1

out=$(verify 2>&1)
assert_eq "verify passes (exit 0)" "$?" 0
assert_contains "... and says so" "$out" "audit chain ok"
assert_contains "... over every event" "$out" "$(events) rows verified"
assert_eq "both nodes sealed without an error" "$(grep -c 'cannot seal' "$T/A.log" "$T/B.log" | awk -F: '{ s += $2 } END { print s }')" 0
assert_eq "seal ids follow each other (no fork)" \
    "$(q "SELECT count(*) FROM audit_seals s WHERE s.id > 0 AND NOT EXISTS (SELECT 1 FROM audit_seals p WHERE p.id = s.id - 1)")" 0
assert_eq "every message's identity kept for its events" \
    "$(q "SELECT count(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM audit_messages m WHERE m.message_id = o.id)")" 0
assert_eq "every message with events has its sent hash (the cancelled one too)" \
    "$(q "SELECT count(*) FROM audit_messages WHERE length(sent_sha256) = 32")" 121

# The export: every event, in chain order, each hash chaining onto the one before.
OUTBOX_AUDIT_KEY_FILE=$T/audit.key "$OUTBOX_BIN" audit --db "$PG_URI" >"$T/export.jsonl" 2>"$T/export.err"
assert_eq "export: exit 0" "$?" 0
assert_eq "export: one attempt row per message" "$(grep -c '"kind":"attempt"' "$T/export.jsonl")" 120
assert_eq "export: the late cancellation is there" \
    "$(grep -c '"external_message_id":"held","record":{"message_id":[0-9]*,"from":"queued","to":"cancelled","reason":"by the producer"}' "$T/export.jsonl")" 1
assert_eq "export: no row unsealed" "$(grep -c '"hash":null' "$T/export.jsonl")" 0
python3 - "$T/export.jsonl" <<'EOF' || fail "export: the chain does not link row to row"
import json, sys
prev = None
for line in open(sys.argv[1]):
    row = json.loads(line)
    if "chain_head" in row:
        break
    # A seal's events chain one onto the next; the first of each seal onto the seal before.
    if prev is not None and row["prev_hash"] != prev:
        sys.exit(1)
    prev = row["hash"]
EOF

# The same over the API, on either node (the store thread verifies, with the key).
code=$(api "http://127.0.0.1:$A_PORT/v1/audit/verify")
assert_eq "GET /v1/audit/verify: 200" "$code" 200
assert_contains "... the chain verifies" "$(cat "$T/body")" '"done":true,"ok":true'
assert_contains "... over every event" "$(cat "$T/body")" "\"checked\":$(events),"
assert_eq "... a bad cursor: 400" "$(api "http://127.0.0.1:$NODE_PORT/v1/audit/verify?cursor=v1.x")" 400
code=$(api "http://127.0.0.1:$NODE_PORT/v1/audit/export?channel_id=ch")
assert_eq "GET /v1/audit/export: 200" "$code" 200
assert_eq "... JSON Lines, every event of the channel" "$(grep -c '"kind":"' "$T/body")" "$(grep -c '"channel_id":"ch"' "$T/export.jsonl")"

# ---- the key ------------------------------------------------------------------------------
OUTBOX_AUDIT_KEY_FILE= "$OUTBOX_BIN" audit verify --db "$PG_URI" >"$T/nokey.out" 2>&1
assert_eq "a keyed chain without its key: verify fails" "$?" 1
assert_contains "... naming the key" "$(cat "$T/nokey.out")" "key"

# ---- tampering ----------------------------------------------------------------------------
kill -TERM "$A_PID" "$NODE_PID"
wait "$A_PID" "$NODE_PID" 2>/dev/null
q "UPDATE attempts SET http_status = 500 WHERE id = (SELECT min(id) FROM attempts)" >/dev/null
out=$(verify 2>&1)
assert_eq "a changed attempt: verify exits 1" "$?" 1
assert_contains "... and names where" "$out" "BROKEN at row"
q "UPDATE attempts SET http_status = 200 WHERE id = (SELECT min(id) FROM attempts)" >/dev/null
verify >/dev/null 2>&1
assert_eq "put back: verify passes again" "$?" 0
q "DELETE FROM transitions WHERE id = (SELECT max(id) FROM transitions WHERE to_state = 'accepted')" >/dev/null
out=$(verify 2>&1)
assert_eq "a deleted transition: verify exits 1" "$?" 1
assert_contains "... and names where" "$out" "BROKEN at row"

finish
