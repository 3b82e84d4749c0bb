#!/usr/bin/env bash
# Webhook confirmations (SPEC §3 "Confirmation", §4, §10 "Webhook dedup"): an echoed
# message_created confirms the message with Partoo's id and status; duplicate deliveries are
# stored once; an echo that arrives before Partoo's 200 still confirms; a later
# message_updated Failed is surfaced; unknown keys, unknown types and garbage that is signed are
# stored and answered 200.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"
outcome_of_msg() { # outcome of the event carrying Partoo message id $1
    sql "$DB" "SELECT group_concat(outcome) FROM webhook_events WHERE partoo_message_id = '$1'"
}
# ------------------------------------------------------------------------------------------

start_wh_mock --echo
wh_serve

# ---- a message enqueued with the CLI, one with the API: both end confirmed ---------------
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id cli-1 --business b1 \
    --conversation c1 --content 'from the cli' --sender Consumer >/dev/null
code=$(curl -sS -o "$T/post.json" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
    -d '{"channel_id":"ch","external_message_id":"api-1","business_id":"b1","external_conversation_id":"c2","content":"from the api","sender_type":"User"}' \
    "$API/v1/messages")
assert_eq "API enqueue answers 202" "$code" 202
wait_until 10 '[ "$(state_of ch cli-1)" = confirmed ] && [ "$(state_of ch api-1)" = confirmed ]'
for k in cli-1 api-1; do
    doc=$("$OUTBOX_BIN" show --db "$DB" --json ch "$k")
    echo_id=$(sql "$DB" "SELECT json_extract(body, '\$.payload.message.id') FROM webhook_events WHERE json_extract(body, '\$.payload.message.custom_channel.external_message_id') = '$k'")
    assert_eq "$k: state confirmed" "$(jget "$doc" '$.state')" confirmed
    assert_eq "$k: an echo was stored" "$([ -n "$echo_id" ] && echo yes)" yes
    assert_eq "$k: partoo_message_id is the echo's message id" "$(jget "$doc" '$.partoo_message_id')" "$echo_id"
    assert_eq "$k: partoo_status Success" "$(jget "$doc" '$.partoo_status')" Success
    assert_eq "$k: confirmed_at set" "$(jget "$doc" '$.confirmed_at' | grep -c '^20..-..-..T')" 1
    assert_eq "$k: transition accepted -> confirmed" \
        "$(jget "$doc" '$.transitions[#-1].from')/$(jget "$doc" '$.transitions[#-1].to')" "accepted/confirmed"
    assert_eq "$k: event outcome confirmed" "$(outcome_of_msg "$echo_id")" confirmed
done
api_doc=$(curl -sS "$API/v1/messages/ch/api-1")
assert_eq "GET /v1/messages/{key} shows the confirmation" \
    "$(jget "$api_doc" '$.state') $(jget "$api_doc" '$.partoo_message_id')" \
    "confirmed $(msg_field ch api-1 '$.partoo_message_id')"
assert_eq "an echo never enters the inbox" "$(sql "$DB" "SELECT count(*) FROM inbox")" 0

# ---- duplicate delivery (Partoo repeats an event): stored once, confirmed once ------------
mock_post faults '{"echo_duplicate":true}' >/dev/null
sent0=$(mock_stat '$.webhooks_sent')
ev0=$(events)
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id dup-1 --business b1 \
    --conversation c3 --content 'twice' --sender Consumer >/dev/null
wait_until 10 '[ "$(mock_stat "\$.webhooks_sent")" -ge $((sent0 + 2)) ]'
assert_eq "duplicate: the mock delivered the echo twice, both answered 2xx" \
    "$(mock_stat '$.webhooks_sent')" $((sent0 + 2))
wait_until 5 '[ "$(state_of ch dup-1)" = confirmed ]'
assert_eq "duplicate: confirmed" "$(state_of ch dup-1)" confirmed
assert_eq "duplicate: one webhook_events row" "$(events)" $((ev0 + 1))
assert_eq "duplicate: one transition to confirmed" \
    "$(sql "$DB" "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'dup-1' AND t.to_state = 'confirmed'")" 1

# ---- the echo arrives before Partoo's 200: the message still ends confirmed ---------------
mock_post faults '{"echo_duplicate":false,"echo_before_response":true}' >/dev/null
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id early-1 --business b1 \
    --conversation c4 --content 'early' --sender Consumer >/dev/null
wait_until 10 '[ "$(state_of ch early-1)" = confirmed ]'
assert_eq "echo before 200: confirmed" "$(state_of ch early-1)" confirmed
assert_eq "echo before 200: partoo_status" "$(msg_field ch early-1 '$.partoo_status')" Success
assert_eq "echo before 200: accepted_at and confirmed_at both set" \
    "$(sql "$DB" "SELECT accepted_at_ms IS NOT NULL AND confirmed_at_ms IS NOT NULL FROM outbox WHERE external_message_id = 'early-1'")" 1
assert_eq "echo before 200: one attempt, no resend" \
    "$(msg_field ch early-1 '$.attempts')/$(msg_field ch early-1 '$.resends')" "1/0"
echo "# echo before 200: transitions $(sql "$DB" "SELECT group_concat(t.from_state || '>' || t.to_state, ' ') FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'early-1'")"
mock_post faults '{"echo_before_response":false}' >/dev/null

# ---- message_updated with status Failed after the confirmation -----------------------------
pid=$(msg_field ch cli-1 '$.partoo_message_id')
st=$(wh_send '{"type":"message_updated","channel_id":"ch","external_conversation_id":"c1","external_message_id":"cli-1","partoo_message_id":'"$pid"',"status":"Failed","sender_type":"Consumer","content":"from the cli"}')
assert_eq "message_updated: answered 200" "$st" 200
wait_until 5 '[ "$(msg_field ch cli-1 "\$.partoo_status")" = Failed ]'
assert_eq "message_updated Failed: partoo_status Failed" "$(msg_field ch cli-1 '$.partoo_status')" Failed
assert_contains "message_updated Failed: shown by outbox show" \
    "$("$OUTBOX_BIN" show --db "$DB" ch cli-1)" "status Failed"
assert_eq "message_updated Failed: same Partoo message id" "$(msg_field ch cli-1 '$.partoo_message_id')" "$pid"

# ---- an event for a key we do not have: stored, 200, outcome unmatched, no error ----------
ev0=$(events)
st=$(wh_send '{"channel_id":"ch","external_conversation_id":"cx","external_message_id":"nobody-1","partoo_message_id":777001,"sender_type":"Consumer"}')
assert_eq "unknown key: answered 200" "$st" 200
wait_until 5 '[ -n "$(outcome_of_msg 777001)" ]'
assert_eq "unknown key: stored" "$(events)" $((ev0 + 1))
assert_eq "unknown key: outcome unmatched" "$(outcome_of_msg 777001)" unmatched
assert_eq "unknown key: no message created or changed" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id = 'nobody-1'")" 0

# ---- an unknown event type: stored, 200, ignored -------------------------------------------
st=$(wh_send '{"type":"business_updated","channel_id":"ch","external_conversation_id":"c1","partoo_message_id":777002}')
assert_eq "unknown type: answered 200" "$st" 200
wait_until 5 '[ -n "$(outcome_of_msg 777002)" ]'
assert_eq "unknown type: stored with its type" \
    "$(sql "$DB" "SELECT event_type || ' ' || outcome FROM webhook_events WHERE partoo_message_id = '777002'")" "business_updated ignored"

# ---- signed but unparsable bodies (raw): stored, 200 ----------------------------------------
for raw in 'this is { not json' '[1,2,3]' '' '{"type":"message_created","payload":{"message":"odd","conversation":7}}'; do
    ev0=$(events)
    body=$(printf '%s' "$raw" | sed 's/\\/\\\\/g; s/"/\\"/g')
    st=$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","raw":"'"$body"'"}')
    assert_eq "raw '$raw': answered 200" "$st" 200
    assert_eq "raw '$raw': stored" "$(events)" $((ev0 + 1))
    wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
    assert_eq "raw '$raw': processed (unparsable or ignored)" \
        "$(sql "$DB" "SELECT outcome IN ('unparsable', 'ignored') FROM webhook_events ORDER BY id DESC LIMIT 1")" 1
done
assert_eq "garbage is recorded as unparsable" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE outcome = 'unparsable'")" 3
assert_eq "well-formed JSON with odd shapes is ignored" \
    "$(sql "$DB" "SELECT outcome FROM webhook_events ORDER BY id DESC LIMIT 1")" ignored

# ---- older payload shape: no conversation.custom_channel; match on the external id alone ----
mock_post faults '{"echo":false}' >/dev/null
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id old-1 --business b1 \
    --conversation c5 --content 'old shape' --sender Consumer >/dev/null
wait_until 10 '[ "$(state_of ch old-1)" = accepted ]'
st=$(wh_send '{"channel_id":"ch","external_conversation_id":"c5","raw":"{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":555001,\"status\":\"Success\",\"sender_type\":\"Consumer\",\"custom_channel\":{\"external_message_id\":\"old-1\"}},\"conversation\":{\"id\":43210,\"custom_channel\":null,\"business\":{\"id\":12}}}}"}')
assert_eq "old shape: answered 200" "$st" 200
wait_until 5 '[ "$(state_of ch old-1)" = confirmed ]'
assert_eq "old shape: confirmed by external id alone" "$(state_of ch old-1)" confirmed
assert_eq "old shape: partoo id from an integer" "$(msg_field ch old-1 '$.partoo_message_id')" 555001

# ---- the same external id in two channels and no channel in the event: left unmatched ------
for c in chA chB; do
    "$OUTBOX_BIN" enqueue --db "$DB" --channel $c --message-id twin-1 --business b1 \
        --conversation c6 --content 'twin' --sender Consumer >/dev/null
done
wait_until 10 '[ "$(state_of chA twin-1)" = accepted ] && [ "$(state_of chB twin-1)" = accepted ]'
st=$(wh_send '{"channel_id":"chA","external_conversation_id":"c6","raw":"{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":555002,\"status\":\"Success\",\"custom_channel\":{\"external_message_id\":\"twin-1\"}},\"conversation\":{\"id\":1}}}"}')
wait_until 5 '[ -n "$(outcome_of_msg 555002)" ]'
assert_eq "ambiguous external id: unmatched" "$(outcome_of_msg 555002)" unmatched
assert_eq "ambiguous external id: neither confirmed" "$(state_of chA twin-1)/$(state_of chB twin-1)" "accepted/accepted"
# With the channel id in the event, the right one is confirmed.
st=$(wh_send '{"channel_id":"chB","external_conversation_id":"c6","external_message_id":"twin-1","partoo_message_id":555003,"sender_type":"Consumer"}')
wait_until 5 '[ "$(state_of chB twin-1)" = confirmed ]'
assert_eq "channel id + external id: only that channel's message confirmed" \
    "$(state_of chA twin-1)/$(state_of chB twin-1)" "accepted/confirmed"

assert_eq "nothing left unprocessed" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0
assert_not_contains "no error logged" "$(cat "$T/serve.log")" "level=error"
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "SIGTERM exit status" "$?" 0

# ---- Partoo got the first try (its answer was lost) and confirms while a re-send is in flight --
# Partoo answers after 4.5 s, we give up after 3 s: attempt 1 times out at 3 s, attempt 2 starts
# between 3 and ~4.1 s (retry_base 100 ms, 1 s poll) and runs until >= 6 s; the echo of attempt
# 1 arrives at 4.5 s, while attempt 2 is in flight; attempt 2 times out too. Partoo has the
# message and said so: it must end confirmed, not be sent again, and never be dead-lettered.
mock_post faults '{"echo":true,"delay_ms":4500}' >/dev/null
wh_serve --request-timeout 3s --connect-timeout 500ms --max-attempts 3
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id lost-1 --business b1 \
    --conversation c9 --content 'answer lost' --sender Consumer >/dev/null
wait_until 20 '[ "$(sql "$DB" "SELECT confirmed_at_ms IS NOT NULL FROM outbox WHERE external_message_id = '\''lost-1'\''")" = 1 ]'
assert_eq "lost answer: the echo was applied (confirmed_at set)" \
    "$(sql "$DB" "SELECT confirmed_at_ms IS NOT NULL FROM outbox WHERE external_message_id = 'lost-1'")" 1
assert_eq "lost answer: the echo came while a later attempt was in flight (the case under test)" \
    "$(sql "$DB" "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'lost-1' AND t.to_state = 'sending' AND t.at_ms < o.confirmed_at_ms")" 2
wait_until 10 '[ "$(sql "$DB" "SELECT state FROM outbox WHERE external_message_id = '\''lost-1'\''")" != sending ]'
sleep 5 # room for the (wrong) further attempts
assert_eq "lost answer: ends confirmed" "$(state_of ch lost-1)" confirmed
assert_eq "lost answer: no attempt started after the confirmation" \
    "$(sql "$DB" "SELECT count(*) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.external_message_id = 'lost-1' AND a.started_at_ms > o.confirmed_at_ms")" 0
mock_post faults '{"delay_ms":0}' >/dev/null
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"

finish
