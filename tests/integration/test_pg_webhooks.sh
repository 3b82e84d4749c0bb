#!/usr/bin/env bash
# Partoo's webhooks on PostgreSQL (issue 15; SPEC §3 "Confirmation", §10): serve on a
# PostgreSQL db verifies each webhook, stores it once before answering 200, and interprets
# it: the message_created echo of each message it sent confirms that message (API and SQL
# producers alike); a byte-identical delivery is stored once; a reply written in Partoo goes
# to the inbox table and is relayed to the producer's inbox_url (retried after a 500), then
# listed and acknowledged through the API; a forged signature is refused and stores nothing.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
start_wh_mock --echo
# The producer's inbox_url: answers 500 once, then 200 (tests/integration/inbox_receiver.py).
python3 "$(dirname "$0")/inbox_receiver.py" --port-file "$T/rcv.port" --log "$T/rcv.log" --fail 1 &
PIDS+=("$!")
wait_until 30 '[ -s "$T/rcv.port" ]' || { echo "receiver did not start"; exit 1; }
start_pg_node A --rate-limit 0 --webhook-listen "127.0.0.1:$WH_PORT" --api-listen "127.0.0.1:$API_PORT" \
    --webhook-public-key "$PUB" --inbox-url "http://127.0.0.1:$(cat "$T/rcv.port")/replies" \
    --retry-base 100ms

# ---- echoes confirm what was sent ----------------------------------------------------------------
for i in $(seq 1 10); do
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"channel_id\":\"ch\",\"external_message_id\":\"api-$i\",\"business_id\":\"b\",\"external_conversation_id\":\"c$((i % 3))\",\"content\":\"m $i\",\"sender_type\":\"Consumer\"}" \
        "$API/v1/messages")
    [ "$code" = 202 ] || fail "enqueue api-$i: $code"
done
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'sql-' || g, 'b', 'c' || (g % 3), 'from sql', 'User' FROM generate_series(1, 10) g" >/dev/null
wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'confirmed'"'")" = 20 ]'
assert_eq "every message confirmed by its echo" "$(q "SELECT count(*) FROM outbox WHERE state = 'confirmed'")" 20
assert_eq "each with Partoo's message id and status" \
    "$(q "SELECT count(*) FROM outbox WHERE partoo_message_id IS NOT NULL AND partoo_status = 'Success' AND confirmed_at_ms IS NOT NULL")" 20
assert_eq "the transition accepted -> confirmed recorded" \
    "$(q "SELECT count(*) FROM transitions WHERE from_state = 'accepted' AND to_state = 'confirmed'")" 20
assert_eq "every event stored once, interpreted as a confirmation" \
    "$(q "SELECT count(*) || '/' || count(*) FILTER (WHERE outcome = 'confirmed') FROM webhook_events")" "20/20"

# ---- a byte-identical delivery is stored once ----------------------------------------------------
body=$(q "SELECT convert_from(body, 'UTF8') FROM webhook_events ORDER BY id LIMIT 1")
raw=$(jq -cn --arg raw "$body" '{raw: $raw}' 2>/dev/null || python3 -c 'import json,sys; print(json.dumps({"raw": sys.argv[1]}))' "$body")
assert_eq "a repeated delivery answers 200" "$(jget "$(mock_post webhook "$raw")" '$.status')" 200
assert_eq "... and is not stored again" "$(q "SELECT count(*) FROM webhook_events")" 20

# ---- a reply written in Partoo --------------------------------------------------------------------
status=$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","content":"hello from an agent","partoo_message_id":424242}')
assert_eq "a reply: answered 200" "$status" 200
wait_until 10 '[ "$(q "SELECT count(*) FROM inbox")" = 1 ]'
assert_eq "a reply goes to the inbox" \
    "$(q "SELECT partoo_message_id || ' ' || channel_id || ' ' || external_conversation_id || ' ' || content FROM inbox")" \
    "424242 ch c1 hello from an agent"

# ---- the reply relayed to the producer's inbox_url, then acknowledged -----------------------------
wait_until 20 '[ "$(q "SELECT state FROM inbox WHERE partoo_message_id = '"'424242'"'")" = delivered ]'
assert_eq "the reply is relayed to inbox_url (after one 500)" \
    "$(q "SELECT state || ' ' || attempts || ' ' || last_http_status FROM inbox WHERE partoo_message_id = '424242'")" \
    "delivered 2 200"
relayed=$(python3 -c '
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(" ".join("%d:%s:%s" % (r["status"], {k.lower(): v for k, v in r["headers"].items()}.get("idempotency-key"), json.loads(r["body"])["content"].replace(" ", "_")) for r in reqs))
' "$T/rcv.log")
assert_eq "... each time with its Idempotency-Key and content" "$relayed" \
    "500:partoo-424242:hello_from_an_agent 200:partoo-424242:hello_from_an_agent"
inbox_id=$(q "SELECT id FROM inbox WHERE partoo_message_id = '424242'")
assert_contains "outbox inbox on PostgreSQL lists it" "$("$OUTBOX_BIN" inbox --db "$PG_URI" 2>&1)" \
    "hello from an agent"
code=$(curl -sS -o "$T/inbox.json" -w '%{http_code}' "$API/v1/inbox")
assert_eq "GET /v1/inbox: 200" "$code" 200
assert_eq "... lists the reply" "$(python3 -c 'import json,sys; print([(r["id"], r["content"], r["state"]) for r in json.load(open(sys.argv[1]))["replies"]])' "$T/inbox.json")" \
    "[($inbox_id, 'hello from an agent', 'delivered')]"
code=$(curl -sS -o "$T/ack.json" -w '%{http_code}' -X POST "$API/v1/inbox/$inbox_id/ack")
assert_eq "POST /v1/inbox/{id}/ack: 200" "$code" 200
assert_eq "... acknowledged" "$(q "SELECT state FROM inbox WHERE id = $inbox_id")" acked
assert_eq "... and no longer listed" "$(curl -sS "$API/v1/inbox")" '{"replies":[],"next_cursor":null}'
assert_eq "ack of an unknown reply: 404" "$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$API/v1/inbox/999999/ack")" 404

# ---- a forged signature ---------------------------------------------------------------------------
status=$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","content":"forged","forge":true}')" '$.status')
assert_eq "a forged signature: 401" "$status" 401
assert_eq "... and nothing stored" "$(q "SELECT count(*) FROM webhook_events WHERE convert_from(body, 'UTF8') LIKE '%forged%'")" 0

kill -TERM "$NODE_PID"
wait "$NODE_PID"
assert_eq "serve exits 0" "$?" 0
finish
