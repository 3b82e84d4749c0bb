#!/usr/bin/env bash
# Webhook listener gatekeeping (SPEC §4, partoo-api.md "Webhooks"): Ed25519 signature of the
# raw body, path secret, required header, body limit, method; every rejection stores nothing.
# The public key in hex, PEM-line and PEM-file forms; the default (production) key rejects the
# mock's signatures. A database that cannot be written answers 503 (Partoo retries 5xx).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"
# Our own signer (same seed as the mock) for sign_file.
make_signer "$SEED"
# post FILE SIGNATURE URL [curl args]: prints the HTTP status; the answer goes to $T/resp.
post() {
    local f=$1 sig=$2 url=$3
    shift 3
    local h=()
    [ -n "$sig" ] && h=(-H "X-Partoo-Signature-v1: $sig")
    curl -sS -o "$T/resp" -D "$T/resp.h" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "${h[@]}" --data-binary @"$f" "$@" "$url"
}
# event_file NAME ID: a distinct message_created reply body in $T/NAME.json.
event_file() {
    printf '{"type":"message_created","payload":{"message":{"id":%s,"conversation_id":1,"status":"Success","sender_type":"User","content":"probe %s","custom_channel":null},"conversation":{"id":1,"business":{"id":"b"},"custom_channel":{"id":"ch","is_readonly":false,"external_conversation_id":"c1"}}}}' \
        "$2" "$2" > "$T/$1.json"
}
# ------------------------------------------------------------------------------------------

start_wh_mock
wh_serve

# ---- a correctly signed body is stored (the control for everything below) ------------------
event_file good 900001
sig=$(sign_file "$T/good.json")
assert_eq "our signer: 88 base64 characters" "${#sig}" 88
assert_eq "signed with the configured key: 200" "$(post "$T/good.json" "$sig" "$WH_URL")" 200
assert_eq "signed: stored" "$(events)" 1
assert_eq "signed: stored byte for byte" \
    "$(sql "$DB" "SELECT hex(body) FROM webhook_events WHERE id = 1")" "$(od -An -tx1 -v "$T/good.json" | tr -d ' \n' | tr a-f A-F)"
assert_eq "signed: dedup key is the body's SHA-256" \
    "$(sql "$DB" "SELECT body_sha256 FROM webhook_events WHERE id = 1")" "$(sha256sum "$T/good.json" | cut -d' ' -f1)"
assert_eq "the same body again: 200 (a repeat)" "$(post "$T/good.json" "$sig" "$WH_URL")" 200
assert_eq "the same body again: not stored twice" "$(events)" 1

# ---- forgeries: 401, nothing stored -----------------------------------------------------------
assert_eq "mock forge (other key): 401" "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","forge":true}')" 401
assert_eq "mock unsigned: 401" "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","unsigned":true}')" 401
assert_eq "mock flipped signature bit: 401" "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","forge":"flip"}')" 401
assert_eq "the mock's genuine event: 200" "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1"}')" 200
n=$(events)
assert_eq "genuine mock event stored, forgeries not" "$n" 2

event_file probe 900002
psig=$(sign_file "$T/probe.json")
# One byte of the body changed, signature of the original.
sed 's/probe 900002/probe 900003/' "$T/probe.json" > "$T/flipped.json"
assert_eq "flipped body byte: 401" "$(post "$T/flipped.json" "$psig" "$WH_URL")" 401
assert_contains "401 body is the JSON error" "$(cat "$T/resp")" '"bad_signature"'
cp "$T/probe.json" "$T/nl.json"; echo >> "$T/nl.json"
assert_eq "one byte appended: 401" "$(post "$T/nl.json" "$psig" "$WH_URL")" 401
assert_eq "no signature header: 401" "$(post "$T/probe.json" "" "$WH_URL")" 401
assert_eq "empty signature header: 401" "$(post "$T/probe.json" "" "$WH_URL" -H 'X-Partoo-Signature-v1;')" 401
assert_eq "garbled signature: 401" "$(post "$T/probe.json" 'not base64 at all!' "$WH_URL")" 401
assert_eq "signature without its padding: 401" "$(post "$T/probe.json" "${psig%==}" "$WH_URL")" 401
assert_eq "signature truncated by one character: 401" "$(post "$T/probe.json" "${psig:1}" "$WH_URL")" 401
assert_eq "another body's valid signature: 401" "$(post "$T/probe.json" "$sig" "$WH_URL")" 401
assert_eq "signature in another header: 401" "$(post "$T/probe.json" "" "$WH_URL" -H "X-Partoo-Signature: $psig")" 401
assert_eq "forgeries: nothing stored" "$(events)" "$n"
assert_eq "the probe itself, correctly signed: 200" "$(post "$T/probe.json" "$psig" "$WH_URL")" 200
n=$((n + 1))
assert_eq "probe stored" "$(events)" "$n"

# ---- path, method, size --------------------------------------------------------------------
assert_eq "wrong path: 404" "$(post "$T/probe.json" "$psig" "http://127.0.0.1:$WH_PORT/webhooks/other")" 404
assert_eq "extra segment without a configured secret: 404" \
    "$(post "$T/probe.json" "$psig" "$WH_URL/extra")" 404
assert_eq "API route on the webhook port: 404" \
    "$(post "$T/probe.json" "$psig" "http://127.0.0.1:$WH_PORT/v1/messages")" 404
assert_eq "GET: 405" "$(curl -sS -o /dev/null -w '%{http_code}' "$WH_URL")" 405
assert_eq "PUT: 405" "$(post "$T/probe.json" "$psig" "$WH_URL" -X PUT)" 405
assert_eq "DELETE: 405" "$(curl -sS -o /dev/null -w '%{http_code}' -X DELETE "$WH_URL")" 405
python3 -c 'import sys; sys.stdout.write("{\"pad\":\"" + "x" * (1536 * 1024) + "\"}")' > "$T/big.json"
bsig=$(sign_file "$T/big.json")
# Webhooks have their own limit (webhook_max_body_bytes, 8M by default): an event above
# max_body_bytes (1 MiB) is accepted, one above 8 MiB is not.
assert_eq "1.5 MiB body (over max_body_bytes, under webhook_max_body_bytes), signed: 200" \
    "$(post "$T/big.json" "$bsig" "$WH_URL")" 200
n=$((n + 1))
python3 -c 'import sys; sys.stdout.write("{\"pad\":\"" + "x" * (9 * 1024 * 1024) + "\"}")' > "$T/huge.json"
assert_eq "9 MiB body: 413" "$(post "$T/huge.json" "$bsig" "$WH_URL" 2>/dev/null)" 413
python3 -c 'import sys; sys.stdout.write("{\"pad\":\"" + "x" * (1000 * 1024) + "\"}")' > "$T/fits.json"
assert_eq "1000 KiB body, signed: 200 (under the limit)" "$(post "$T/fits.json" "$(sign_file "$T/fits.json")" "$WH_URL")" 200
n=$((n + 1))
assert_eq "413s stored nothing; the body under the limit was stored" "$(events)" "$n"
stop_serve
wh_serve --webhook-max-body-bytes 4K
python3 -c 'import sys; sys.stdout.write("{\"pad\":\"" + "x" * (6 * 1024) + "\"}")' > "$T/six.json"
assert_eq "webhook_max_body_bytes 4K: a 6 KiB signed body is 413" \
    "$(post "$T/six.json" "$(sign_file "$T/six.json")" "$WH_URL")" 413
# Far over the limit, evhttp answers 413 itself, before the body has arrived; the socket
# lingers, so curl reads the 413 rather than a reset.
assert_eq "webhook_max_body_bytes 4K: the 1000 KiB body is 413" \
    "$(post "$T/fits.json" "$(sign_file "$T/fits.json")" "$WH_URL" 2>/dev/null)" 413
assert_eq "webhook_max_body_bytes 4K: nothing more stored" "$(events)" "$n"
stop_serve

# ---- the database cannot be written: 503 + Retry-After, then 200 once it can --------------
wh_serve
event_file locked 900004
lsig=$(sign_file "$T/locked.json")
rm -f "$T/locked.flag" "$T/release.flag"
python3 - "$DB" "$T/locked.flag" "$T/release.flag" <<'EOF' &
import os, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close()
deadline = time.time() + 60
while not os.path.exists(sys.argv[3]) and time.time() < deadline:
    time.sleep(0.05)
c.execute("COMMIT")
EOF
LOCKER=$!
PIDS+=("$LOCKER")
wait_until 30 '[ -e "$T/locked.flag" ]'
assert_eq "database locked by another writer: 503" "$(post "$T/locked.json" "$lsig" "$WH_URL")" 503
assert_contains "503 carries Retry-After" "$(tr -d '\r' < "$T/resp.h")" "Retry-After: 1"
touch "$T/release.flag"
wait "$LOCKER"
assert_eq "lock released: the same delivery now 200" "$(post "$T/locked.json" "$lsig" "$WH_URL")" 200
n=$((n + 1))
assert_eq "stored exactly once" "$(events)" "$n"
stop_serve

# ---- path secret and required header ---------------------------------------------------------
OUTBOX_WEBHOOK_PATH_SECRET=s3cret-Path OUTBOX_WEBHOOK_REQUIRED_HEADER='X-Token: abc 123' wh_serve
event_file sec 900005
ssig=$(sign_file "$T/sec.json")
assert_eq "secret configured, plain path: 404" "$(post "$T/sec.json" "$ssig" "$WH_URL" -H 'X-Token: abc 123')" 404
assert_eq "wrong secret: 404" "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-Pat" -H 'X-Token: abc 123')" 404
assert_eq "secret in another case: 404" "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-path" -H 'X-Token: abc 123')" 404
assert_eq "secret plus a segment: 404" "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-Path/x" -H 'X-Token: abc 123')" 404
assert_eq "right secret, header missing: 401" "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-Path")" 401
assert_eq "right secret, wrong header value: 401" "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-Path" -H 'X-Token: abc 124')" 401
assert_eq "right secret, header value prefix: 401" "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-Path" -H 'X-Token: abc')" 401
assert_eq "the mock at the plain URL: 404" "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1"}')" 404
assert_eq "rejections stored nothing" "$(events)" "$n"
assert_eq "right secret and header, bad signature: 401" \
    "$(post "$T/sec.json" "$psig" "$WH_URL/s3cret-Path" -H 'X-Token: abc 123')" 401
assert_eq "right secret and header, signed: 200" \
    "$(post "$T/sec.json" "$ssig" "$WH_URL/s3cret-Path" -H 'X-Token: abc 123')" 200
n=$((n + 1))
assert_eq "stored" "$(events)" "$n"
event_file sec2 900006
assert_eq "header name in lower case: 200" \
    "$(post "$T/sec2.json" "$(sign_file "$T/sec2.json")" "$WH_URL/s3cret-Path" -H 'x-token: abc 123')" 200
n=$((n + 1))
mock_post faults "{\"webhook_url\":\"$WH_URL/s3cret-Path\"}" >/dev/null
assert_eq "the mock without the header: 401" "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1"}')" 401
assert_eq "stored" "$(events)" "$n"
assert_not_contains "the path secret is never logged" "$(cat "$T/serve.log")" "s3cret-Path"
assert_not_contains "the header value is never logged" "$(cat "$T/serve.log")" "abc 123"
mock_post faults "{\"webhook_url\":\"$WH_URL\"}" >/dev/null
stop_serve

# ---- which key: default production key, wrong key, PEM forms ------------------------------------
event_file k1 900007
ksig=$(sign_file "$T/k1.json")
wh_serve_nokey
assert_eq "no key configured (production default): mock-signed event 401" "$(post "$T/k1.json" "$ksig" "$WH_URL")" 401
stop_serve
wh_serve_nokey --partoo-base-url "http://127.0.0.1:$MOCK_PORT/sandbox/v2"
assert_eq "sandbox base URL (sandbox default key): mock-signed event 401" "$(post "$T/k1.json" "$ksig" "$WH_URL")" 401
stop_serve
wh_serve_nokey --webhook-public-key 2eccaf5f6c959c6dd92912057c4bd89369e4cda9e836002a052a9d78db9be2c3
assert_eq "another configured key (hex): 401" "$(post "$T/k1.json" "$ksig" "$WH_URL")" 401
assert_eq "wrong keys stored nothing" "$(events)" "$n"
stop_serve
pem_line=$(openssl pkey -in "$T/key.pem" -pubout | sed -n 2p)
assert_eq "the mock's key as a PEM line" "${pem_line:0:16}" "MCowBQYDK2VwAyEA"
wh_serve_nokey --webhook-public-key "$pem_line"
assert_eq "key as the PEM base64 line: 200" "$(post "$T/k1.json" "$ksig" "$WH_URL")" 200
n=$((n + 1))
stop_serve
openssl pkey -in "$T/key.pem" -pubout -out "$T/pub.pem"
event_file k2 900008
wh_serve_nokey --webhook-public-key-file "$T/pub.pem"
assert_eq "key as a PEM file: 200" "$(post "$T/k2.json" "$(sign_file "$T/k2.json")" "$WH_URL")" 200
n=$((n + 1))
stop_serve
upper=$(echo "$PUB" | tr a-f A-F)
event_file k3 900009
wh_serve_nokey --webhook-public-key "$upper"
assert_eq "key in upper-case hex: 200" "$(post "$T/k3.json" "$(sign_file "$T/k3.json")" "$WH_URL")" 200
n=$((n + 1))
assert_eq "all accepted events stored" "$(events)" "$n"
stop_serve
assert_status "serve refuses a malformed key" 1 \
    env OUTBOX_PARTOO_API_KEY=x "$OUTBOX_BIN" serve --db "$T/other.db" --partoo-base-url "$MOCK_URL" \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 --webhook-public-key abcd
assert_contains "the error names the key" "$(cat "$T/last.err" "$T/last.out")" "webhook_public_key"

finish
