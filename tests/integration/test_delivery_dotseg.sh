#!/usr/bin/env bash
# A channel id of "." or ".." is refused everywhere a message enters (issue 19 finding 4): a
# dot segment would be removed from the request path and send the message, with the
# x-APIKey, to another path of Partoo's host.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

start_mock --rate-limit 0
api_serve --rate-limit 0
for ch in . ..; do
    req POST /v1/messages "$(mk channel_id="$ch" external_message_id="api$ch")"
    assert_eq "API: channel_id '$ch' -> 400 naming the field" "$(errsig)" "400 invalid_value channel_id"
    req POST /v1/messages "{\"messages\":[$(mk channel_id=ok external_message_id="batch$ch"),$(mk channel_id="$ch" external_message_id="batch2$ch")]}"
    assert_contains "API batch: channel_id '$ch' refused, naming the field" "$RESP" "channel_id"
    assert_status "CLI: --channel '$ch' refused" 1 "$OUTBOX_BIN" enqueue --db "$DB" --channel "$ch" \
        --message-id "cli$ch" --business b --conversation c --content hi --sender User
    assert_contains "CLI: the message names the field" "$(cat "$T/last.out" "$T/last.err")" "channel_id"
    printf '{"channel_id":"%s","external_message_id":"jl%s","business_id":"b","external_conversation_id":"c","content":"hi","sender_type":"User"}\n' "$ch" "$ch" > "$T/dot.jsonl"
    assert_status "CLI JSON Lines: channel_id '$ch' refused" 1 "$OUTBOX_BIN" enqueue --db "$DB" < "$T/dot.jsonl"
    if sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id,
            external_conversation_id, content, sender_type)
            VALUES ('$ch', 'sql$ch', 'b', 'c', 'hi', 'User')" 2>"$T/sql.err"; then
        fail "SQL: channel_id '$ch' accepted"
    else
        assert_contains "SQL: channel_id '$ch' refused by the named CHECK" "$(cat "$T/sql.err")" \
            "channel_id_not_dot_segment"
    fi
done
assert_eq "no dot-segment row was stored" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id IN ('.', '..')")" 0
# Names that merely contain dots are fine, and the path is sent as is.
req POST /v1/messages "$(mk channel_id=... external_message_id=dots)"
assert_eq "API: channel_id '...' is accepted" "$CODE" 202
wait_until 10 '[ "$(count_state accepted)" -ge 1 ]'
assert_eq "'...' is sent as its own path segment" "$(jget "$(mock_get last_request)" '$.path')" \
    "/v2/custom-channels/.../messages"
finish
