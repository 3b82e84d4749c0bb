#!/usr/bin/env bash
# Replies from Partoo users (SPEC §4, §5 inbox, §10 read-only channels): a user's
# message_created in a bidirectional channel goes to the inbox and is relayed to inbox_url
# (JSON body, Idempotency-Key header) with retries while the receiver fails; echoes of our own
# messages and read-only channels never enter the inbox; GET /v1/inbox, POST
# /v1/inbox/{id}/ack and `outbox inbox` show and acknowledge replies; pull mode without
# inbox_url; the relay gives up after max_attempts.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"
# start_receiver NAME FAILS: tests/integration/inbox_receiver.py answering 500 FAILS times;
# sets RCV_URL; requests are logged as JSON lines in $T/NAME.log.
start_receiver() {
    local name=$1
    rm -f "$T/$name.port"
    python3 "$(dirname "$0")/inbox_receiver.py" --port-file "$T/$name.port" --log "$T/$name.log" \
        --fail "$2" &
    PIDS+=("$!")
    wait_until 30 '[ -s "$T/$name.port" ]' || { echo "receiver did not start"; exit 1; }
    touch "$T/$name.log"
    RCV_URL=http://127.0.0.1:$(cat "$T/$name.port")/replies
}
# rlog NAME PYTHON-EXPRESSION: evaluates the expression over `reqs`, the logged requests.
rlog() {
    python3 - "$T/$1.log" "$2" <<'EOF'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for r in reqs:
    r["json"] = json.loads(r["body"]) if r["body"] else None
    r["h"] = {k.lower(): v for k, v in r["headers"].items()}
v = eval(sys.argv[2])
print(v if not isinstance(v, bool) else ("true" if v else "false"))
EOF
}
inbox_count() { sql "$DB" "SELECT count(*) FROM inbox"; }
# ------------------------------------------------------------------------------------------

start_wh_mock --echo
start_receiver rcv 2
wh_serve --inbox-url "$RCV_URL" --readonly-channels ro

# ---- a reply: stored, put in the inbox, relayed after two 500s ----------------------------
st=$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-42","business_id":"biz-9","partoo_message_id":424242,"sender_label":"Jane Doe","content":"Bonjour \"toi\" – é ✓","date":"2026-11-24 09:15:02.123456+00:00"}')
assert_eq "reply: answered 200" "$st" 200
wait_until 15 '[ "$(rlog rcv "len(reqs)")" -ge 3 ]'
assert_eq "reply: relayed three times (500, 500, 200)" "$(rlog rcv "[r['status'] for r in reqs]")" "[500, 500, 200]"
assert_eq "relay: POST to the inbox_url path" "$(rlog rcv "sorted(set(r['method'] + ' ' + r['path'] for r in reqs))")" "['POST /replies']"
assert_eq "relay: Idempotency-Key on every try" \
    "$(rlog rcv "sorted(set(r['h'].get('idempotency-key') for r in reqs))")" "['partoo-424242']"
assert_eq "relay: Content-Type" "$(rlog rcv "sorted(set(r['h'].get('content-type') for r in reqs))")" "['application/json']"
assert_eq "relay: the body's fields" "$(rlog rcv "sorted(reqs[-1]['json'].keys())")" \
    "['acked_at', 'attempts', 'business_id', 'channel_id', 'content', 'content_type', 'date', 'delivered_at', 'external_conversation_id', 'id', 'last_error', 'last_http_status', 'partoo_conversation_id', 'partoo_message_id', 'received_at', 'sender_label', 'sender_type', 'state']"
j="reqs[-1]['json']"
assert_eq "relay: channel and conversation" "$(rlog rcv "${j}['channel_id'] + '/' + ${j}['external_conversation_id']")" "ch/conv-42"
assert_eq "relay: partoo ids are strings" \
    "$(rlog rcv "[type(${j}['partoo_message_id']).__name__, ${j}['partoo_message_id'], type(${j}['partoo_conversation_id']).__name__]")" "['str', '424242', 'str']"
assert_eq "relay: business, sender, content type" \
    "$(rlog rcv "' '.join([${j}['business_id'], ${j}['sender_type'], ${j}['sender_label'], ${j}['content_type']])")" "biz-9 User Jane Doe Text"
assert_eq "relay: content exact (quotes, UTF-8)" "$(rlog rcv "${j}['content'] == 'Bonjour \"toi\" – é ✓'")" true
assert_eq "relay: Partoo's date as given" "$(rlog rcv "${j}['date']")" "2026-11-24 09:15:02.123456+00:00"
assert_eq "relay: received_at RFC 3339 UTC ms" "$(rlog rcv "len(${j}['received_at']) == 24 and ${j}['received_at'].endswith('Z')")" true
assert_eq "relay: id is the inbox id" "$(rlog rcv "${j}['id']")" "$(sql "$DB" "SELECT id FROM inbox WHERE partoo_message_id = '424242'")"
assert_eq "relay: the attempts counter in each body" "$(rlog rcv "[r['json']['attempts'] for r in reqs]")" "[0, 1, 2]"
wait_until 5 '[ "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id = '\''424242'\''")" = delivered ]'
assert_eq "inbox row: delivered after 3 attempts, last status 200" \
    "$(sql "$DB" "SELECT state || ' ' || attempts || ' ' || last_http_status || ' ' || (delivered_at_ms IS NOT NULL) FROM inbox WHERE partoo_message_id = '424242'")" "delivered 3 200 1"
assert_eq "event outcome reply" "$(sql "$DB" "SELECT outcome FROM webhook_events WHERE partoo_message_id = '424242'")" reply
sleep 1
assert_eq "no further relay once delivered" "$(rlog rcv "len(reqs)")" 3

# ---- echoes of our own messages never reach the inbox -------------------------------------
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id e-1 --business b1 \
    --conversation conv-42 --content 'our own words' --sender User >/dev/null
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id e-2 --business b1 \
    --conversation conv-43 --content 'our consumer words' --sender Consumer >/dev/null
wait_until 10 '[ "$(state_of ch e-1)" = confirmed ] && [ "$(state_of ch e-2)" = confirmed ]'
assert_eq "echoes: both confirmed" "$(state_of ch e-1)/$(state_of ch e-2)" "confirmed/confirmed"
sleep 1.2
assert_eq "echoes: inbox unchanged" "$(inbox_count)" 1
assert_eq "echoes: nothing relayed" "$(rlog rcv "len(reqs)")" 3

# ---- replies that are not for the inbox ------------------------------------------------------
n=$(events)
assert_eq "read-only channel (config): 200" \
    "$(wh_send '{"channel_id":"ro","external_conversation_id":"c1","partoo_message_id":424250,"content":"ro reply"}')" 200
assert_eq "is_readonly true in the event: 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","raw":"{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":424251,\"sender_type\":\"User\",\"content\":\"x\",\"custom_channel\":null},\"conversation\":{\"id\":9,\"custom_channel\":{\"id\":\"ch2\",\"is_readonly\":true,\"external_conversation_id\":\"c1\"}}}}"}')" 200
assert_eq "Metadata sender: 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":424252,"sender_type":"Metadata","content":"closed"}')" 200
assert_eq "no custom channel (not one of our channels): 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","raw":"{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":424253,\"sender_type\":\"User\",\"content\":\"x\",\"custom_channel\":null},\"conversation\":{\"id\":9,\"custom_channel\":null}}}"}')" 200
assert_eq "message_updated of a user message: 200" \
    "$(wh_send '{"type":"message_updated","channel_id":"ch","external_conversation_id":"c1","partoo_message_id":424254,"content":"edited"}')" 200
wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
assert_eq "all five stored" "$(events)" $((n + 5))
assert_eq "none is in the inbox" "$(inbox_count)" 1
assert_eq "none is marked reply" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE partoo_message_id IN ('424250','424251','424252','424253','424254') AND outcome = 'reply'")" 0

# ---- the same reply again: repeat body and a later message_updated --------------------------
body=$(sql "$DB" "SELECT body FROM webhook_events WHERE partoo_message_id = '424242'")
esc=$(printf '%s' "$body" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')
assert_eq "identical redelivery: 200" "$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-42","raw":'"$esc"'}')" 200
assert_eq "identical redelivery: not stored again" "$(events)" $((n + 5))
assert_eq "message_updated of the reply: 200" \
    "$(wh_send '{"type":"message_updated","channel_id":"ch","external_conversation_id":"conv-42","partoo_message_id":424242,"content":"Bonjour (edited)"}')" 200
assert_eq "same reply, different body (message_created again): 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-42","partoo_message_id":424242,"content":"Bonjour"}')" 200
wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
assert_eq "one inbox row per Partoo message id" "$(sql "$DB" "SELECT count(*) FROM inbox WHERE partoo_message_id = '424242'")" 1
sleep 1
assert_eq "not relayed again" "$(rlog rcv "len(reqs)")" 3

# ---- a second reply goes through on the first try --------------------------------------------
assert_eq "second reply: 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-44","partoo_message_id":424260,"sender_label":"Bob","content":"second"}')" 200
wait_until 10 '[ "$(rlog rcv "len(reqs)")" -ge 4 ]'
assert_eq "second reply: relayed once with its own key" \
    "$(rlog rcv "[reqs[-1]['status'], reqs[-1]['h'].get('idempotency-key'), reqs[-1]['json']['content']]")" "[200, 'partoo-424260', 'second']"
wait_until 5 '[ "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id = '\''424260'\''")" = delivered ]'

# ---- Partoo ids given as long strings are kept whole ----------------------------------------
# Ids are integers in Partoo's examples, but the code accepts strings too (reconcile.c id_text);
# two distinct string ids that share their first 31 characters must stay two replies.
long=msg-0123456789abcdef0123456789abcdef
for n in 1 2; do
    wh_send '{"channel_id":"ch","external_conversation_id":"c1","raw":"{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":\"'$long-$n'\",\"sender_type\":\"User\",\"content\":\"long id '$n'\",\"custom_channel\":null},\"conversation\":{\"id\":9,\"custom_channel\":{\"id\":\"ch\",\"is_readonly\":false,\"external_conversation_id\":\"c1\"}}}}"}' >/dev/null
done
wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
assert_eq "long string ids: two replies in the inbox" \
    "$(sql "$DB" "SELECT count(*) FROM inbox WHERE content LIKE 'long id %'")" 2
assert_eq "long string ids: the id is stored whole" \
    "$(sql "$DB" "SELECT count(*) FROM inbox WHERE partoo_message_id = '$long-1'")" 1
wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM inbox WHERE state = '\''pending'\''")" = 0 ]'
sql "$DB" "UPDATE inbox SET state = 'acked' WHERE content LIKE 'long id %'" # out of the way

# ---- pull API and CLI ------------------------------------------------------------------------
id1=$(sql "$DB" "SELECT id FROM inbox WHERE partoo_message_id = '424242'")
id2=$(sql "$DB" "SELECT id FROM inbox WHERE partoo_message_id = '424260'")
list=$(curl -sS "$API/v1/inbox")
assert_eq "GET /v1/inbox lists both, oldest first" "$(jget "$list" '$.replies[0].id') $(jget "$list" '$.replies[1].id')" "$id1 $id2"
assert_eq "GET /v1/inbox: fields" "$(jget "$list" '$.replies[0].partoo_message_id') $(jget "$list" '$.replies[0].state') $(jget "$list" '$.replies[1].content')" "424242 delivered second"
assert_eq "GET /v1/inbox: no next page" "$(jget "$list" '$.next_cursor')" ""
page=$(curl -sS "$API/v1/inbox?limit=1")
assert_eq "GET /v1/inbox?limit=1: one reply and a cursor" \
    "$(jget "$page" '$.replies[0].id') $(jget "$page" '$.next_cursor')" "$id1 $id1"
page=$(curl -sS "$API/v1/inbox?limit=1&cursor=$id1")
assert_eq "GET /v1/inbox?cursor: the next one" "$(jget "$page" '$.replies[0].id')" "$id2"
assert_eq "GET /v1/inbox?limit=0: 400" "$(curl -sS -o /dev/null -w '%{http_code}' "$API/v1/inbox?limit=0")" 400
cli=$("$OUTBOX_BIN" inbox --db "$DB")
assert_contains "outbox inbox shows the reply" "$cli" "Bonjour \"toi\""
assert_contains "outbox inbox shows the sender" "$cli" "Jane Doe"
assert_eq "outbox inbox --json" "$(jget "$("$OUTBOX_BIN" inbox --db "$DB" --json)" '$.replies[1].partoo_message_id')" 424260
ack=$(curl -sS -w ' %{http_code}' -X POST "$API/v1/inbox/$id1/ack")
assert_eq "POST /v1/inbox/{id}/ack: 200" "${ack##* }" 200
assert_eq "ack answer" "$(jget "${ack% *}" '$.state')" acked
assert_eq "acked: state and time" "$(sql "$DB" "SELECT state || ' ' || (acked_at_ms IS NOT NULL) FROM inbox WHERE id = $id1")" "acked 1"
list=$(curl -sS "$API/v1/inbox")
assert_eq "acked reply gone from the default listing" "$(jget "$list" '$.replies[0].id') $(jget "$list" '$.replies[1].id')" "$id2 "
assert_not_contains "acked reply gone from outbox inbox" "$("$OUTBOX_BIN" inbox --db "$DB")" "Bonjour \"toi\""
assert_contains "outbox inbox --all still shows it" "$("$OUTBOX_BIN" inbox --db "$DB" --all)" "Bonjour \"toi\""
assert_eq "ack again: 200 (idempotent)" "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$API/v1/inbox/$id1/ack")" 200
assert_eq "ack of an unknown id: 404" "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$API/v1/inbox/99999/ack")" 404
assert_eq "ack of a non-numeric id: 404" "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$API/v1/inbox/abc/ack")" 404
stop_serve

# ---- pull mode (no inbox_url): replies wait in the inbox ------------------------------------
relayed=$(rlog rcv "len(reqs)")
wh_serve --readonly-channels ro
assert_eq "pull mode: reply 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-45","partoo_message_id":424270,"content":"pull me"}')" 200
wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM inbox WHERE partoo_message_id = '\''424270'\''")" = 1 ]'
sleep 1
assert_eq "pull mode: not relayed, pending" "$(sql "$DB" "SELECT state || ' ' || attempts FROM inbox WHERE partoo_message_id = '424270'")" "pending 0"
assert_eq "pull mode: receiver untouched" "$(rlog rcv "len(reqs)")" "$relayed"
list=$(curl -sS "$API/v1/inbox")
id3=$(sql "$DB" "SELECT id FROM inbox WHERE partoo_message_id = '424270'")
assert_eq "pull mode: GET /v1/inbox lists it pending" "$(jget "$list" '$.replies[1].id') $(jget "$list" '$.replies[1].state')" "$id3 pending"
assert_eq "pull mode: ack" "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$API/v1/inbox/$id3/ack")" 200
assert_eq "pull mode: acked" "$(sql "$DB" "SELECT state FROM inbox WHERE id = $id3")" acked
stop_serve

# ---- a receiver that always fails: given up after max_attempts --------------------------------
start_receiver bad 1000
wh_serve --inbox-url "$RCV_URL" --max-attempts 3
assert_eq "failing receiver: reply 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-46","partoo_message_id":424280,"content":"doomed"}')" 200
wait_until 15 '[ "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id = '\''424280'\''")" = failed ]'
assert_eq "failing receiver: failed after 3 attempts" \
    "$(sql "$DB" "SELECT state || ' ' || attempts || ' ' || last_http_status FROM inbox WHERE partoo_message_id = '424280'")" "failed 3 500"
sleep 1
assert_eq "failing receiver: exactly 3 requests" \
    "$(rlog bad "[r['h'].get('idempotency-key') for r in reqs]")" "['partoo-424280', 'partoo-424280', 'partoo-424280']"
assert_contains "failing receiver: error kept" "$(sql "$DB" "SELECT last_error FROM inbox WHERE partoo_message_id = '424280'")" "injected"
stop_serve

# ---- an unreachable inbox_url: retried, then delivered when it comes up ----------------------
RPORT=$(free_port)
wh_serve --inbox-url "http://127.0.0.1:$RPORT/late"
assert_eq "unreachable receiver: reply 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"conv-47","partoo_message_id":424290,"content":"late"}')" 200
wait_until 10 '[ "$(sql "$DB" "SELECT attempts FROM inbox WHERE partoo_message_id = '\''424290'\''")" -ge 2 ]'
assert_eq "unreachable receiver: still pending, with an error" \
    "$(sql "$DB" "SELECT state || ' ' || (last_error IS NOT NULL) FROM inbox WHERE partoo_message_id = '424290'")" "pending 1"
python3 "$(dirname "$0")/inbox_receiver.py" --port "$RPORT" --port-file "$T/late.port" --log "$T/late.log" &
PIDS+=("$!")
wait_until 15 '[ "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id = '\''424290'\''")" = delivered ]'
assert_eq "unreachable receiver: delivered once it listens" \
    "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id = '424290'")" delivered
assert_eq "unreachable receiver: one request reached it" "$(rlog late "[r['path'] for r in reqs]")" "['/late']"
stop_serve

assert_not_contains "no error logged" "$(cat "$T/serve.log")" "level=error"
finish
