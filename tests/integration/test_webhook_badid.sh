#!/usr/bin/env bash
# A Partoo message id goes into the Idempotency-Key header of the inbox_url relay (issue 19
# finding 5): an id that is not [A-Za-z0-9_-]{1,128} never reaches a header. Reconcile keeps
# such a reply out of the inbox (event outcome unparsable); a row that holds one anyway
# (written before the check, or by hand) is failed by the relay without a request.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"

rm -f "$T/rcv.port"
python3 "$(dirname "$0")/inbox_receiver.py" --port-file "$T/rcv.port" --log "$T/rcv.log" &
PIDS+=("$!")
wait_until 30 '[ -s "$T/rcv.port" ]' || { echo "receiver did not start"; exit 1; }
touch "$T/rcv.log"
start_wh_mock
wh_serve --inbox-url "http://127.0.0.1:$(cat "$T/rcv.port")/replies"

LONG=$(printf '7%.0s' $(seq 200))
# reply ID-JSON: a signed user reply whose message.id is ID-JSON, sent raw through the mock.
reply() {
    python3 - "$1" <<'PY'
import json, sys
ev = {"type": "message_created", "payload": {
    "message": {"id": json.loads(sys.argv[1]), "conversation_id": 1, "content_type": "Text",
                "sender_type": "User", "status": "Success", "content": "hi",
                "date": "2026-11-24 09:15:02.123456+00:00", "custom_channel": None},
    "conversation": {"id": 1, "business": {"id": "b"},
                     "custom_channel": {"id": "ch", "is_readonly": False,
                                        "external_conversation_id": "conv-1"}}}}
print(json.dumps({"channel_id": "ch", "external_conversation_id": "conv-1", "raw": json.dumps(ev)}))
PY
}
assert_eq "CR/LF id: answered 200" "$(wh_send "$(reply '"66\r\nX-Injected: yes"')")" 200
assert_eq "200-byte id: answered 200" "$(wh_send "$(reply "\"$LONG\"")")" 200
assert_eq "id with a space: answered 200" "$(wh_send "$(reply '"66 67"')")" 200
assert_eq "valid id: answered 200" "$(wh_send "$(reply '"ok_id-1"')")" 200
wait_until 15 '[ "$(wc -l < "$T/rcv.log")" -ge 1 ]'
assert_eq "only the valid reply entered the inbox" \
    "$(sql "$DB" "SELECT group_concat(partoo_message_id) FROM inbox")" "ok_id-1"
assert_eq "the others are unparsable events" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE outcome = 'unparsable'")" 3
# A row that holds a bad id anyway is failed, not sent.
sql "$DB" "INSERT INTO inbox (partoo_message_id, event_id, channel_id, received_at_ms)
           SELECT 'x' || char(13, 10) || 'X-Injected: yes', min(id), 'ch', 0 FROM webhook_events"
wait_until 15 '[ "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id LIKE '\''x%'\''")" = failed ]'
assert_eq "hand-written bad id: failed" \
    "$(sql "$DB" "SELECT state || ' ' || attempts FROM inbox WHERE partoo_message_id LIKE 'x%'")" "failed 0"
sleep 0.5
assert_eq "the receiver got one request" "$(wc -l < "$T/rcv.log")" 1
assert_contains "with the valid key" "$(cat "$T/rcv.log")" '"partoo-ok_id-1"'
assert_not_contains "no injected header" "$(cat "$T/rcv.log")" "X-Injected"
finish
