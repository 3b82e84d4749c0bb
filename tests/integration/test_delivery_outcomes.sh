#!/usr/bin/env bash
# Delivery outcome classes against the mock Partoo: request shape, 400, 5xx retries,
# 429 + Retry-After, 401 pause and resume on SIGHUP (SPEC §3).
. "$(dirname "$0")/lib.sh"

FAST="--retry-base 100ms --retry-cap 500ms --rate-limit 0"

# ---- exact request shape --------------------------------------------------------------
start_mock --rate-limit 0
"$OUTBOX_BIN" enqueue --db "$DB" --channel "ch/1" --message-id m1 --business b1 \
    --conversation c1 --content 'say "hi"' --sender Consumer --consumer-name "Jo" >/dev/null
start_serve $FAST
wait_until 10 '[ "$(count_state accepted)" = 1 ]'
req=$(mock_get last_request)
assert_eq "path is percent-encoded channel" "$(jget "$req" '$.path')" "/v2/custom-channels/ch%2F1/messages"
assert_eq "x-APIKey header" "$(jget "$req" '$.headers.x-APIKey')" "test-key"
assert_eq "content type" "$(jget "$req" '$.headers.Content-Type')" "application/json"
assert_eq "user agent" "$(jget "$req" '$.headers.User-Agent')" "partoo-outbox/0.1.0"
body=$(jget "$req" '$.body')
assert_eq "body is exactly the Partoo fields, nulls omitted" "$body" \
    '{"business_id":"b1","external_conversation_id":"c1","external_message_id":"m1","content":"say \"hi\"","sender_type":"Consumer","consumer_name":"Jo"}'
assert_eq "mock saw no nulls" "$(mock_stat '$.nulls_seen')" 0
assert_eq "attempt recorded with status 200" \
    "$(sql "$DB" "SELECT http_status || ' ' || outcome FROM attempts")" "200 accepted"

# ---- 400 -> failed after exactly one attempt ----------------------------------------------
mock_post faults '{"script":[400]}' >/dev/null
enqueue_n 1 bad
wait_until 10 '[ "$(count_state failed)" = 1 ]'
assert_eq "400: one attempt" "$(sql "$DB" "SELECT attempts FROM outbox WHERE external_message_id='bad1'")" 1
assert_eq "400: response kept" \
    "$(sql "$DB" "SELECT count(*) FROM attempts a JOIN outbox o ON o.id=a.message_id WHERE o.external_message_id='bad1' AND a.response_excerpt IS NOT NULL")" 1

# ---- 500, 500, 200 -> accepted after three attempts -----------------------------------------
mock_post faults '{"script":[500,500,200]}' >/dev/null
enqueue_n 1 flaky
wait_until 15 '[ "$(sql "$DB" "SELECT state FROM outbox WHERE external_message_id='\''flaky1'\''")" = accepted ]'
assert_eq "5xx: accepted after 3 attempts" \
    "$(sql "$DB" "SELECT attempts FROM outbox WHERE external_message_id='flaky1'")" 3
assert_eq "5xx: attempt statuses" \
    "$(sql "$DB" "SELECT group_concat(http_status) FROM (SELECT a.http_status FROM attempts a JOIN outbox o ON o.id=a.message_id WHERE o.external_message_id='flaky1' ORDER BY a.id)")" "500,500,200"

# ---- 429 with Retry-After: 2 -> next attempt at least 2 s later -----------------------------
mock_post faults '{"script":[429],"retry_after":"2"}' >/dev/null
enqueue_n 1 limited
wait_until 15 '[ "$(sql "$DB" "SELECT state FROM outbox WHERE external_message_id='\''limited1'\''")" = accepted ]'
gap=$(sql "$DB" "SELECT max(started_at_ms) - min(started_at_ms) FROM attempts a JOIN outbox o ON o.id=a.message_id WHERE o.external_message_id='limited1'")
assert_ge "429: second attempt >= 2 s after the first" "$gap" 2000
assert_eq "429: does not count toward max_attempts" \
    "$(sql "$DB" "SELECT counted_attempts FROM outbox WHERE external_message_id='limited1'")" 1

kill -TERM "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null

# ---- 401 -> key paused, nothing failed; corrected key + SIGHUP resumes ----------------------
DB=$T/auth.db
start_mock --rate-limit 0 --api-keys good-key
echo "wrong-key" > "$T/key"
enqueue_n 5 auth
"$OUTBOX_BIN" serve --db "$DB" --partoo-base-url "$MOCK_URL" --partoo-api-key-file "$T/key" \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 $FAST --auth-probe-interval 60s >>"$T/serve.log" 2>&1 &
SERVE_PID=$!; PIDS+=("$SERVE_PID")
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 401")" -ge 1 ]'
sleep 1
assert_eq "401: nothing failed" "$(count_state failed)" 0
assert_eq "401: all still queued" "$(count_state queued)" 5
# Requests already in flight when the first 401 came back may also get 401; after that the
# key is paused: no new request until the reload.
n401=$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 401")
assert_le "401: at most the in-flight requests were refused" "$n401" 5
sleep 1
assert_eq "401: no request while the key is paused" \
    "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 401")" "$n401"
assert_contains "401: logged as an auth pause" "$(cat "$T/serve.log")" "partoo rejected the api key"
assert_not_contains "the key never appears in the log" "$(cat "$T/serve.log")" "wrong-key"
echo "good-key" > "$T/key"
kill -HUP "$SERVE_PID"
wait_until 10 '[ "$(count_state accepted)" = 5 ]'
assert_eq "401: all delivered after reload" "$(count_state accepted)" 5
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "SIGTERM exit status" "$?" 0

finish
