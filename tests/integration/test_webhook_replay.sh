#!/usr/bin/env bash
# Replay protection outlives retention (issue 19, finding 11): a signed webhook is
# deduplicated by the SHA-256 of its body. Retention deletes the body (and the reply it
# carried, once relayed), but keeps the hash for webhook_hash_retention: a captured event
# replayed after `outbox purge` is answered 200 as a repeat, stored and applied nothing,
# and its reply is not relayed again. A hash older than webhook_hash_retention goes.
# (serve's hourly pass runs the same lib/retention.c function; unit_store covers it.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"
make_signer "$SEED"
post() { # FILE SIGNATURE: prints the HTTP status
    curl -sS -o "$T/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -H "X-Partoo-Signature-v1: $2" --data-binary @"$1" "$WH_URL"
}
reply_file() { # NAME PARTOO_ID: a user's reply (message_created) in $T/NAME.json
    printf '{"type":"message_created","payload":{"message":{"id":%s,"conversation_id":7,"status":"Success","sender_type":"User","content":"reply %s","custom_channel":null},"conversation":{"id":7,"business":{"id":"b"},"custom_channel":{"id":"ch","is_readonly":false,"external_conversation_id":"c1"}}}}' \
        "$2" "$2" >"$T/$1.json"
}
relayed() { python3 -c 'import sys; print(sum(1 for l in open(sys.argv[1]) if l.strip()))' "$T/rcv.log"; }

python3 "$(dirname "$0")/inbox_receiver.py" --port-file "$T/rcv.port" --log "$T/rcv.log" &
PIDS+=("$!")
wait_until 30 '[ -s "$T/rcv.port" ]' || { echo "receiver did not start"; exit 1; }
touch "$T/rcv.log"
start_wh_mock
wh_serve --inbox-url "http://127.0.0.1:$(cat "$T/rcv.port")/replies" --retention 0 --log-level info

# ---- a reply arrives, is relayed, then purged -----------------------------------------------
reply_file r1 700001
sig=$(sign_file "$T/r1.json")
assert_eq "signed reply: 200" "$(post "$T/r1.json" "$sig")" 200
wait_until 10 '[ "$(sql "$DB" "SELECT state FROM inbox WHERE partoo_message_id = '\''700001'\''")" = delivered ]'
assert_eq "the reply was relayed once" "$(relayed)" 1
"$OUTBOX_BIN" purge --db "$DB" --older-than 0s --json >"$T/purge.out" 2>"$T/purge.err"
assert_eq "purge exit 0" "$?" 0
echo "purge: $(cat "$T/purge.out")"
assert_eq "purge removed the relayed reply" "$(jget "$(cat "$T/purge.out")" '$.replies_pruned')" 1
assert_eq "purge removed the event's body" "$(jget "$(cat "$T/purge.out")" '$.webhook_events_pruned')" 1
assert_ge "purge counted its transactions" "$(jget "$(cat "$T/purge.out")" '$.transactions')" 3
assert_eq "the body is gone" "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE length(body) > 0")" 0
assert_eq "the inbox row is gone" "$(sql "$DB" "SELECT count(*) FROM inbox")" 0

# ---- the captured event replayed ----------------------------------------------------------------
assert_eq "replayed after purge: 200 (a repeat)" "$(post "$T/r1.json" "$sig")" 200
sleep 1.5 # reconcile and the relay would have run by now
assert_eq "replayed after purge: not stored again" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events")" 1
assert_eq "replayed after purge: nothing back in the inbox" "$(sql "$DB" "SELECT count(*) FROM inbox")" 0
assert_eq "replayed after purge: not relayed again" "$(relayed)" 1

# ---- a hash older than webhook_hash_retention goes; a fresh event is unaffected -------------
reply_file r2 700002
sig2=$(sign_file "$T/r2.json")
assert_eq "a new reply: 200" "$(post "$T/r2.json" "$sig2")" 200
wait_until 10 '[ "$(relayed)" = 2 ]'
assert_eq "the new reply was relayed" "$(relayed)" 2
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
sql "$DB" "UPDATE webhook_events SET received_at_ms = received_at_ms - 400 * 86400000 WHERE partoo_message_id = '700001'"
"$OUTBOX_BIN" purge --db "$DB" --older-than 0s --json >"$T/purge.out" 2>"$T/purge.err"
echo "purge: $(cat "$T/purge.out")"
assert_eq "hashes older than 365d go" "$(jget "$(cat "$T/purge.out")" '$.webhook_hashes_pruned')" 1
assert_eq "the young event keeps its hash" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE partoo_message_id = '700002'")" 1
finish
