#!/usr/bin/env bash
# The routes the dashboard reads (SPEC §13): the overview's kept counts equal a full count
# after every kind of write (library and plain-SQL inserts, sends, retry, cancel, bulk
# actions, purge); bulk actions are bounded per request and resumable; find, conversation
# order with its head, and the per-minute history.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

# The overview's counts (kept as rows change) against /v1/stats (a count over the outbox).
same_counts() {
    req GET /v1/stats/overview
    local kept full
    kept=$(printf '%s' "$RESP" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps([d["counts"], {c["channel_id"]: c["counts"] for c in d["channels"] if any(c["counts"].values())}], sort_keys=True))')
    req GET /v1/stats
    full=$(printf '%s' "$RESP" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps([d["counts"], {c["channel_id"]: c["counts"] for c in d["channels"] if any(c["counts"].values())}], sort_keys=True))')
    assert_eq "kept counts equal a full count: $1" "$kept" "$full"
}

start_mock --rate-limit 0
enqueue_n 5 pre 2 # before serve: library inserts through the CLI
api_serve --retry-base 100ms --retry-cap 200ms --rate-limit 0
wait_until 10 '[ "$(count_state accepted)" = 5 ]' || fail "pre-existing messages sent"
same_counts "after CLI enqueue and sends"

# plain SQL (the SQL contract: head NULL, linked by the store)
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, created_at_ms) VALUES ('sqlch', 's1', 'b', 'cs', 'from sql', 'Consumer', $(now_ms))"
wait_until 10 '[ "$(state_of sqlch s1)" = accepted ]' || fail "plain-SQL row sent"
same_counts "after a plain-SQL insert"

# a failure, a retry through the API, held messages cancelled in bulk two at a time
mock_post faults '{"script":[400]}' >/dev/null
req POST /v1/messages '{"channel_id":"ch","external_message_id":"f1","business_id":"b1","external_conversation_id":"cf","content":"x","sender_type":"User"}'
wait_until 10 '[ "$(state_of ch f1)" = failed ]' || fail "f1 failed"
same_counts "after a failure"
req POST /v1/pause '{"channel_id":"held"}'
for i in 1 2 3 4 5; do
    req POST /v1/messages '{"channel_id":"held","external_message_id":"h'$i'","business_id":"b1","external_conversation_id":"ch'$i'","content":"x","sender_type":"User"}'
done
req GET '/v1/messages/count?state=queued&channel_id=held'
assert_eq "count of the held set" "$RESP" '{"count":5,"capped":false}'
req POST '/v1/messages/cancel?state=queued&channel_id=held&limit=2'
assert_eq "bulk cancel is bounded per request" "$RESP" '{"touched":2,"remaining":3,"capped":false}'
req POST '/v1/messages/cancel?state=queued&channel_id=held&limit=2'
req POST '/v1/messages/cancel?state=queued&channel_id=held&limit=2'
assert_eq "and resumes where it stopped" "$RESP" '{"touched":1,"remaining":0,"capped":false}'
assert_eq "all five cancelled" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'held' AND state = 'cancelled' AND state_reason = 'cancelled in bulk by api'")" 5
req POST '/v1/messages/retry?state=queued'
assert_eq "bulk retry refuses queued" "$(errsig)" "409 invalid_state state"
req POST '/v1/messages/retry?state=failed&channel_id=ch'
assert_eq "bulk retry of the failed one" "$RESP" '{"touched":1,"remaining":0,"capped":false}'
wait_until 10 '[ "$(state_of ch f1)" = accepted ]' || fail "f1 retried and sent"
same_counts "after bulk cancel and bulk retry"

# find, conversation order and its head (mock down: the first stays queued, holding the next)
req GET '/v1/messages/find?external_message_id=f1'
assert_eq "find by external_message_id" "$RESP" '{"matches":[{"channel_id":"ch"}]}'
mock_post faults '{"down":true}' >/dev/null
req POST /v1/messages '{"messages":[{"channel_id":"ch","external_message_id":"k1","business_id":"b1","external_conversation_id":"ck","content":"x","sender_type":"User"},{"channel_id":"ch","external_message_id":"k2","business_id":"b1","external_conversation_id":"ck","content":"y","sender_type":"User"}]}'
req GET /v1/conversations/ch/ck
assert_eq "conversation in order, the first is the head" \
    "$(printf '%s' "$RESP" | python3 -c 'import json,sys; print([(m["external_message_id"], m["head"]) for m in json.load(sys.stdin)["messages"]])')" \
    "[('k1', True), ('k2', False)]"
mock_post faults '{"down":false}' >/dev/null
wait_until 15 '[ "$(state_of ch k2)" = accepted ]' || fail "conversation drained"

# the per-minute history counts what happened
req GET '/v1/stats/history?range=hour'
assert_eq "history: accepted this hour" \
    "$(printf '%s' "$RESP" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["accepted"]))')" \
    "$(sql "$DB" "SELECT count(*) FROM transitions WHERE to_state = 'accepted'")"
assert_eq "history: sent = attempts" \
    "$(printf '%s' "$RESP" | python3 -c 'import json,sys; print(sum(json.load(sys.stdin)["sent"]))')" \
    "$(sql "$DB" "SELECT count(*) FROM attempts")"
same_counts "after conversations"

# purge deletes rows: the kept counts follow
"$OUTBOX_BIN" purge --db "$DB" --older-than 0s >/dev/null 2>&1 || fail "purge ran"
same_counts "after purge"
finish
