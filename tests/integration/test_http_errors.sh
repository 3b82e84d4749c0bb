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
    json_err "port $port: bad request line" "$($PY raw "$port" 'GARBAGE\r\n\r\n')" 400 bad_request
    json_err "port $port: bad header line" \
        "$($PY raw "$port" 'GET / HTTP/1.1\r\nno colon here\r\n\r\n')" 400 bad_request
    json_err "port $port: unknown path" \
        "$($PY raw "$port" 'GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n')" 404 not_found
    json_err "port $port: TRACE" "$($PY raw "$port" 'TRACE / HTTP/1.1\r\n\r\n')" 501 not_implemented
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
finish
