#!/usr/bin/env bash
# tests/integration/test_api_limits.sh: the producer API's configured limits, bearer token and
# loopback rule (SPEC §5, §8, §10; issue 4).
#
# --max-body-bytes / --max-content-bytes / --max-json-depth, and the wake-up latency with the
# default pacing; api_token on every route but /healthz and /readyz (and its rotation by
# SIGHUP); `serve` refusing a non-loopback api_listen without a token.
# test_api_backpressure.sh covers 503 and 507.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_api_limits.sh
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/api_lib.sh"

start_mock --rate-limit 0

# ---- configured limits, default pacing ----------------------------------------------------------
api_serve --max-body-bytes 4K --max-content-bytes 1K --max-json-depth 4
echo "# api at $API"
# Default pacing (290/min, no burst): with serve idle a token is there, so no wait either.
latency_probes 5 0.6 paced User > "$T/latency.txt"
lat=$(awk '{ print $3 }' "$T/latency.txt" | sort -n | tr '\n' ' ')
assert_eq "paced latency probes: 5 x 202" "$(awk '{ print $1 }' "$T/latency.txt" | sort -u | tr -d '\n')" 202
assert_le "default pacing, idle: POST -> mock under 100 ms (median of 5, ms: $lat)" \
    "$(echo "$lat" | awk '{ print $3 }')" 100

n0=$(total)
pad 4097
req POST /v1/messages @"$T/pad.json"
assert_eq "--max-body-bytes 4K: 4097 bytes -> 413" "$(errsig)" "413 too_large -"
pad 8192
req POST /v1/messages @"$T/pad.json"
assert_eq "--max-body-bytes 4K: 8192 bytes -> 413" "$(errsig)" "413 too_large -"
pad 20000
req POST /v1/messages @"$T/pad.json"
assert_eq "--max-body-bytes 4K: 20000 bytes -> 413 (evhttp's own answer past 2x the limit)" "$CODE" 413
C1024=$(head -c 1024 /dev/zero | tr '\0' c)
req POST /v1/messages "$(mk external_message_id=c1025 content=${C1024}c)"
assert_eq "--max-content-bytes 1K: 1025 bytes -> 400" "$(errsig)" "400 too_long content"
req POST /v1/messages "$(mk external_message_id=deep5 'content=[[[[1]]]]')"
assert_eq "--max-json-depth 4: depth 5 -> 400 too_deep" "$(errsig)" "400 too_deep -"
req POST /v1/messages "$(batch "$(mk external_message_id=deepb 'content=[[1]]')")"
assert_eq "--max-json-depth 4: a batch of depth 5 -> 400 too_deep" "$(errsig)" "400 too_deep -"
assert_eq "nothing stored by refused requests" "$(total)" "$n0"
pad 4096
req POST /v1/messages @"$T/pad.json"
assert_eq "--max-body-bytes 4K: exactly 4096 bytes -> 202" "$CODE" 202
req POST /v1/messages "$(mk external_message_id=c1024 external_conversation_id=c-1024 content=$C1024)"
assert_eq "--max-content-bytes 1K: exactly 1024 bytes -> 202" "$CODE" 202
req POST /v1/messages "$(mk external_message_id=deep4 external_conversation_id=c-d4 'content=[[[1]]]')"
assert_eq "--max-json-depth 4: depth 4 passes the parser" "$(errsig)" "400 invalid_type content"
stop_serve

# ---- bearer token ------------------------------------------------------------------------------------
printf 'api_token = tok-1-0123456789ab\n' > "$T/outbox.conf"
api_serve --config "$T/outbox.conf"
req POST /v1/messages "$(mk external_message_id=auth0 external_conversation_id=c-auth)" # no token
assert_eq "token set, no Authorization: 401" "$(errsig)" "401 unauthorized -"
assert_eq "401 carries WWW-Authenticate: Bearer" "$(header WWW-Authenticate)" "Bearer"
TOKEN=tok-1-0123456789ab req POST /v1/messages "$(mk external_message_id=auth1 external_conversation_id=c-auth)"
assert_eq "right token: POST 202" "$CODE" 202
n0=$(total)
# Every route, without a token, with a wrong one, with another scheme, and with the right one.
routes=("GET /v1/messages" "POST /v1/messages" "GET /v1/messages/ch/auth1"
    "POST /v1/messages/ch/auth1/retry" "POST /v1/messages/ch/auth1/cancel" "GET /v1/stats"
    "GET /v1/inbox" "POST /v1/inbox/1/ack" "GET /metrics")
for r in "${routes[@]}"; do
    set -- $r
    body=()
    [ "$1" = POST ] && [ "$2" = /v1/messages ] && body=("$(mk external_message_id=auth-x)")
    req "$1" "$2" "${body[@]}"
    assert_eq "$r without a token: 401" "$CODE" 401
    TOKEN=wrong req "$1" "$2" "${body[@]}"
    assert_eq "$r with a wrong token: 401" "$CODE" 401
    TOKEN=tok-1-0123456789ab0 req "$1" "$2" "${body[@]}"
    assert_eq "$r with the token plus a character: 401" "$CODE" 401
    TOKEN=tok- req "$1" "$2" "${body[@]}"
    assert_eq "$r with a prefix of the token: 401" "$CODE" 401
    CODE=$(curl -sS -o /dev/null -w '%{http_code}' -X "$1" -u tok-1-0123456789ab:tok-1-0123456789ab "$API$2")
    assert_eq "$r with Basic credentials: 401" "$CODE" 401
    TOKEN=tok-1-0123456789ab req "$1" "$2"
    assert_not_contains "$r with the token: not 401 ($CODE)" "$CODE" 401
done
assert_eq "nothing stored without the right token" "$(total)" "$n0"
for p in /healthz /readyz; do
    req GET $p
    assert_eq "GET $p stays open without a token" "$CODE" 200
done
cp "$T/outbox.conf" "$T/outbox.conf.old"
printf 'api_token = tok-2-0123456789ab\n' > "$T/outbox.conf"
kill -HUP "$SERVE_PID"
wait_until 10 'grep -q "configuration reloaded" "$T/serve.log"'
TOKEN=tok-1-0123456789ab req GET /v1/stats
assert_eq "SIGHUP rotates the token: the old one gets 401" "$CODE" 401
TOKEN=tok-2-0123456789ab req GET /v1/stats
assert_eq "SIGHUP rotates the token: the new one gets 200" "$CODE" 200
stop_serve

# ---- a non-loopback api_listen needs a token ----------------------------------------------------------
for listen in "0.0.0.0:$(free_port)" "[::]:$(free_port)"; do
    timeout 20 env OUTBOX_PARTOO_API_KEY=k "$OUTBOX_BIN" serve --db "$T/loopback.db" \
        --partoo-base-url "$MOCK_URL" --webhook-listen 127.0.0.1:0 --api-listen "$listen" \
        >"$T/last.out" 2>&1
    assert_eq "serve --api-listen $listen without a token: exit 1" "$?" 1
    assert_contains "serve --api-listen $listen without a token: says why" "$(cat "$T/last.out")" \
        "non-loopback api_listen without api_token"
done
PORT=$(free_port)
OUTBOX_API_TOKEN=tok-0123456789abcdef OUTBOX_PARTOO_API_KEY=k "$OUTBOX_BIN" serve --db "$T/loopback.db" --partoo-base-url "$MOCK_URL" \
    --webhook-listen 127.0.0.1:0 --api-listen "0.0.0.0:$PORT" \
    >"$T/wide.log" 2>&1 &
WIDE=$!
PIDS+=("$WIDE")
wait_until 10 'curl -fsS -o /dev/null "http://127.0.0.1:$PORT/healthz"'
assert_eq "serve --api-listen 0.0.0.0:PORT with a token: serving" \
    "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz")" 200
assert_eq "... and the token is enforced" \
    "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/stats")" 401
kill -TERM "$WIDE"
wait "$WIDE"
assert_eq "... and it stops with exit 0" "$?" 0

# ---- max_content_bytes above the schema's own CHECK (content <= 1 MiB) -------------------------------
# Either the configuration refuses such a max_content_bytes, or the API reports the row the
# schema refused as an error. Never a 202 for a message that was not stored.
if OUTBOX_PARTOO_API_KEY=k "$OUTBOX_BIN" serve --print-config --db "$DB" --max-body-bytes 4M \
    --max-content-bytes 2M >/dev/null 2>&1; then
    api_serve --rate-limit 0 --max-body-bytes 4M --max-content-bytes 2M
    n0=$(total)
    C15=$(head -c 1500000 /dev/zero | tr '\0' a)
    mk external_message_id=big external_conversation_id=c-big content=$C15 > "$T/big.json"
    req POST /v1/messages @"$T/big.json"
    assert_eq "content of 1.5 MB (max_content_bytes 2M, schema 1 MiB): 400, not a 202" "$CODE" 400
    assert_not_contains "... and no reply with id 0" "$RESP" '"id":0'
    assert_eq "... nothing stored" "$(total)" "$n0"
    batch "$(mk external_message_id=small external_conversation_id=c-big)" "$(cat "$T/big.json")" > "$T/bigbatch.json"
    req POST /v1/messages @"$T/bigbatch.json"
    assert_eq "a batch with that item: 202" "$CODE" 202
    kill -0 "$SERVE_PID" 2>/dev/null
    assert_eq "a batch with that item: serve is still running" "$?" 0
    assert_eq "a batch with that item: the good item stored, the big one not" \
        "$(sql "$DB" "SELECT group_concat(external_message_id) FROM outbox WHERE external_conversation_id = 'c-big'")" "small"
    assert_eq "a batch with that item: an error result for messages[1]" \
        "$(jx "$RESP" "json_type(j,'\$.results[0].id') || ' ' || json_extract(j,'\$.results[1].error.field') GLOB 'messages\\[1\\]*'")" "integer 1"
    stop_serve
else
    pass "max_content_bytes above the schema's 1 MiB is refused by the configuration"
fi

finish
