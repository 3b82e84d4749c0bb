#!/usr/bin/env bash
# tests/integration/test_http_errors.sh: every error answer of both listeners is the SPEC §5
# JSON shape, including those the HTTP layer (evhttp) produces by itself, and a client that
# sent an oversized body can read its 413 (SPEC §14; issue 12).
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_http_errors.sh
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/api_lib.sh"

PY="python3 $(dirname "$0")/http_client.py"
start_mock --rate-limit 0
api_serve
APORT=${API##*:}
WPORT=$(sed -n 's/.*msg=serving .* webhook_port=\([0-9]*\).*/\1/p' "$T/serve.log" | tail -1)
echo "# api port $APORT, webhook port $WPORT"

# json_err NAME OUTPUT STATUS CODE: OUTPUT is http_client.py's "STATUS<TAB>TYPE<TAB>BODY".
json_err() {
    local status ctype body
    IFS=$'\t' read -r status ctype body <<<"$2"
    assert_eq "$1: status" "$status" "$3"
    assert_eq "$1: Content-Type" "$ctype" application/json
    assert_eq "$1: error.code" "$(jx "$body" "json_extract(j,'\$.error.code')")" "$4"
    assert_eq "$1: error.message present" \
        "$(jx "$body" "json_type(j,'\$.error.message')")" text
}

# ---- 413: the client writes the whole body first, then reads ----------------------------------
json_err "api: 40 MiB body (http.client)" "$($PY post "$APORT" /v1/messages $((40 << 20)))" \
    413 too_large
json_err "api: 4 MiB content (http.client)" \
    "$($PY post "$APORT" /v1/messages $((4 << 20)) content)" 413 too_large
json_err "webhook: 40 MiB body (http.client)" \
    "$($PY post "$WPORT" /webhooks/partoo $((40 << 20)))" 413 too_large
head -c $((40 << 20)) /dev/zero | tr '\0' ' ' > "$T/big.json"
for port in "$APORT" "$WPORT"; do
    code=$(curl -sS -m 60 -o "$T/c.body" -w '%{http_code} %{content_type}' \
        -H 'Content-Type: application/json' --data-binary @"$T/big.json" \
        "http://127.0.0.1:$port/v1/messages" 2>"$T/c.err")
    assert_eq "port $port: 40 MiB body (curl) -> 413 JSON" "$code" "413 application/json"
    assert_eq "port $port: 40 MiB body (curl): error.code" \
        "$(jx "$(cat "$T/c.body")" "json_extract(j,'\$.error.code')")" too_large
done
# Without curl's "Expect: 100-continue", the body is on its way before the answer.
code=$(curl -sS -m 60 -o "$T/c.body" -w '%{http_code}' -H 'Expect:' \
    -H 'Content-Type: application/json' --data-binary @"$T/big.json" "$API/v1/messages" 2>"$T/c.err")
assert_eq "api: 40 MiB body (curl, no Expect) -> 413" "$code" 413
# Headers over 16 KiB: evhttp 2.1 calls them malformed.
json_err "api: 20 KiB header" \
    "$($PY raw "$APORT" "GET /healthz HTTP/1.1\r\nX-Big: $(head -c 20000 /dev/zero | tr '\0' a)\r\n\r\n")" \
    400 bad_request

# ---- 400, 404, 405, 501 ------------------------------------------------------------------------
for port in "$APORT" "$WPORT"; do
    known=/v1/stats
    [ "$port" = "$WPORT" ] && known=/webhooks/partoo
    json_err "port $port: bad request line" "$($PY raw "$port" 'GARBAGE\r\n\r\n')" 400 bad_request
    json_err "port $port: bad header line" \
        "$($PY raw "$port" 'GET / HTTP/1.1\r\nno colon here\r\n\r\n')" 400 bad_request
    json_err "port $port: unknown path" \
        "$($PY raw "$port" 'GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n')" 404 not_found
    json_err "port $port: TRACE" "$($PY raw "$port" "TRACE $known HTTP/1.1\r\nConnection: close\r\n\r\n")" 405 \
        method_not_allowed
    json_err "port $port: unknown method" "$($PY raw "$port" 'BREW / HTTP/1.1\r\n\r\n')" 501 \
        not_implemented
done
json_err "api: DELETE /v1/stats" \
    "$($PY raw "$APORT" 'DELETE /v1/stats HTTP/1.1\r\nConnection: close\r\n\r\n')" 405 method_not_allowed
json_err "webhook: GET /webhooks/partoo" \
    "$($PY raw "$WPORT" 'GET /webhooks/partoo HTTP/1.1\r\nConnection: close\r\n\r\n')" \
    405 method_not_allowed

# ---- 408: a request that stops arriving (10 s deadline) -----------------------------------------
json_err "api: stalled request" "$($PY slow "$APORT")" 408 timeout

req GET /healthz
assert_eq "serve still answers" "$CODE" 200

# ---- counters: every refused webhook, by reason (issue 19 finding 10) ---------------------------
code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' -d '{}' \
    "http://127.0.0.1:$WPORT/webhooks/partoo")
assert_eq "webhook without a signature: 401" "$code" 401
req GET /metrics
metric() { printf '%s\n' "$RESP" | awk -v k="$1" '$1 == k { print $2 }'; }
assert_eq "metrics: webhook rejected, signature" \
    "$(metric 'outbox_webhook_rejected_total{reason="signature"}')" 1
# http.client's 40 MiB and curl's 40 MiB; both refused by evhttp before the handler.
assert_eq "metrics: webhook rejected, too_large" \
    "$(metric 'outbox_webhook_rejected_total{reason="too_large"}')" 2
assert_eq "metrics: webhook 413s of the HTTP layer" \
    "$(metric 'outbox_http_rejected_total{listener="webhook",reason="too_large"}')" 2
assert_eq "metrics: api 408" "$(metric 'outbox_http_rejected_total{listener="api",reason="timeout"}')" 1
# The same counts reach `status` (table and --json) and /v1/stats through service_state, which
# serve publishes within a second of a change.
wait_until 5 '[ "$(jget "$("$OUTBOX_BIN" status --db "$DB" --json)" "$.webhooks_rejected.signature")" = 1 ]' || true
st=$("$OUTBOX_BIN" status --db "$DB" --json)
assert_eq "status --json: webhooks rejected, signature" "$(jget "$st" '$.webhooks_rejected.signature')" 1
assert_eq "status --json: webhooks rejected, too_large" "$(jget "$st" '$.webhooks_rejected.too_large')" 2
assert_contains "status warns about refused webhooks" "$("$OUTBOX_BIN" status --db "$DB")" \
    "webhooks refused since serve started: 1 bad signature, 2 over webhook_max_body_bytes"
req GET /v1/stats
assert_eq "/v1/stats: webhooks rejected, signature" "$(jget "$RESP" '$.webhooks_rejected.signature')" 1
assert_eq "/v1/stats: webhooks rejected, too_large" "$(jget "$RESP" '$.webhooks_rejected.too_large')" 2

# ---- /readyz probes the disk at most once a second (issue 19 finding 8) -------------------------
probes() { sql "$DB" "SELECT ifnull((SELECT value FROM service_state WHERE key = 'readyz_probe'), 0)"; }
wal() { stat -c %s "$DB-wal"; }
p0=$(probes)
w0=$(wal)
t0=$(date +%s)
n200=$(for i in $(seq 1 200); do echo "url = \"$API/readyz\""; echo "output = /dev/null"; echo 'write-out = "%{http_code}\n"'; done |
    curl -sS -K - | grep -c '^200$')
t1=$(date +%s)
assert_eq "200 x /readyz: all 200" "$n200" 200
# At most one probe per started second of the run (plus the one at its start).
assert_contains "the probe row counts the probes" "$(probes)" "$((p0 + 1))"
assert_le "200 x /readyz: probes $(( $(probes) - p0 )) in $((t1 - t0 + 1)) s" \
    "$(( $(probes) - p0 ))" "$((t1 - t0 + 2))"
# The same seen from the disk: each probe commits at least one 4 KiB WAL frame (no checkpoint
# runs meanwhile: wal_pages is 10000); the rest of serve writes a few rows a second.
assert_le "200 x /readyz: WAL growth in 4 KiB frames" "$(( ($(wal) - w0) / 4096 ))" \
    "$(( 5 * (t1 - t0 + 2) ))"
stop_serve

# ---- the body budget: concurrent large uploads past it get 503, serve stays up -----------------
# 40 connections hold 60 KB each (2.4 MB) against a 1 MiB budget, then finish their bodies.
OUTBOX_API_TOKEN=tok-abcdefghijklmnop api_serve --max-body-bytes 64K --http-body-budget 1M
$PY flood "${API##*:}" /v1/messages 40 60000 > "$T/flood.txt"
n503=$(grep -c '^503'$'\t''application/json' "$T/flood.txt")
n401=$(grep -c '^401'$'\t''application/json' "$T/flood.txt")
assert_ge "budget: some uploads answered 503 JSON" "$n503" 1
assert_eq "budget: every upload answered (503 or the wrong token's 401)" "$((n503 + n401))" 40
grep -m1 '^503' "$T/flood.txt" | grep -q '"code":"unavailable"' && pass "budget: 503 code unavailable" ||
    fail "budget: 503 code unavailable"
req GET /healthz
assert_eq "budget: serve still answers" "$CODE" 200
TOKEN=tok-abcdefghijklmnop req GET /metrics
assert_eq "metrics: api over_budget = the 503s" \
    "$(metric 'outbox_http_rejected_total{listener="api",reason="over_budget"}')" "$n503"
finish
