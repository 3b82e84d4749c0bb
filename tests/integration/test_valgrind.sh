#!/usr/bin/env bash
# `outbox serve` under valgrind (SPEC §8: no memory errors, no leaks), through a short mixed
# workload against the mock Partoo: POSTs (single, batch, duplicate, refused), deliveries with
# an injected 500 and a retry, echoed confirmation webhooks, a reply, a forged webhook, the
# read routes, a connection cut off by the request deadline and one still open at the end,
# then SIGTERM. Passes when valgrind counts 0 errors and 0 bytes definitely or indirectly
# lost. The fuller run, with the offline commands too, is bench/valgrind_run.sh.
#
# Skipped (exit 0, a SKIP line) only without valgrind, which scripts/install-deps.sh
# installs, and in the ASan build: valgrind cannot run a binary built with a sanitizer.
. "$(dirname "$0")/lib.sh"

command -v valgrind >/dev/null || { echo "SKIP: valgrind is not installed (scripts/install-deps.sh installs it)"; exit 0; }
case $(basename "$OBX_BUILD_DIR") in
*asan*) echo "SKIP: $OBX_BUILD_DIR is an ASan build; valgrind and ASan do not mix"; exit 0 ;;
esac
if LC_ALL=C grep -qa __asan_init "$OUTBOX_BIN"; then
    echo "SKIP: $OUTBOX_BIN is built with AddressSanitizer; valgrind and ASan do not mix"
    exit 0
fi

. "$(dirname "$0")/../torture/common.sh"
torture_private_bins
T0=$(now_ms)

WH_PORT=$(free_port)
API_PORT=$(free_port)
WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo
API=http://127.0.0.1:$API_PORT
start_mock --rate-limit 0 --webhook-url "$WH_URL" --webhook-seed "$SEED" --echo
PUB=$(mock_pubkey) || exit 1
"$OUTBOX_BIN" migrate --db "$DB" >/dev/null || { echo "migrate failed"; exit 1; }
mock_post faults '{"script":[500]}' >/dev/null # the first delivery fails once, then is retried

# serve runs as valgrind's own process (valgrind execs nothing), so SERVE_PID gets SIGTERM.
VG_LOG=$T/valgrind.log
OUTBOX_PARTOO_API_KEY=test-key valgrind --leak-check=full --show-leak-kinds=definite,indirect \
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30 \
    --log-file="$VG_LOG" "$OUTBOX_BIN" serve --db "$DB" --partoo-base-url "$MOCK_URL" \
    --api-listen "127.0.0.1:$API_PORT" --webhook-listen "127.0.0.1:$WH_PORT" \
    --webhook-public-key "$PUB" --rate-limit 0 --retry-base 100ms --retry-cap 300ms \
    --max-inflight 4 >>"$T/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
wait_until 40 'curl -fsS -o /dev/null "$API/healthz"' ||
    { echo "serve did not start under valgrind"; cat "$T/serve.log" "$VG_LOG"; exit 1; }
echo "serve up under valgrind after $(( $(now_ms) - T0 )) ms"

# trickle_head PORT SECONDS OUT: a request head sent a byte a second for SECONDS; OUT gets
# the whole seconds from the connect to the server closing it, else "open". Each byte
# restarts evhttp's inactivity timeout, so only the request deadline closes it. The first
# is closed that way while the workload runs; the second is still open when serve stops.
trickle_head() {
    "$PY" -c 'import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
t0 = time.time()
s.send(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Slow: ")
s.settimeout(1)
while time.time() - t0 < float(sys.argv[2]):
    try:
        if s.recv(100) == b"":
            print(int(time.time() - t0))
            sys.exit(0)
    except socket.timeout:
        pass
    try:
        s.send(b"a")
    except OSError:
        print(int(time.time() - t0))
        sys.exit(0)
print("open")' "$1" "$2" >"$3" &
    PIDS+=($!)
}
trickle_head "$WH_PORT" 30 "$T/head1"

# ---- producer API -----------------------------------------------------------------------------
n202=0
for i in 1 2 3 4 5; do
    [ "$(post_msg "vg-$i")" = 202 ] && n202=$((n202 + 1))
done
assert_eq "5 POSTs answered 202" "$n202" 5
b='{"channel_id":"ch","business_id":"b1","external_conversation_id":"c-batch","content":"b","sender_type":"User"'
assert_eq "a batch of 2 (and one bad item) answered 202" "$(curl -sS -o /dev/null -w '%{http_code}' \
    -X POST -H 'Content-Type: application/json' \
    -d "{\"messages\":[$b,\"external_message_id\":\"vg-b1\"},$b,\"external_message_id\":\"vg-b2\"},{\"bad\":1}]}" \
    "$API/v1/messages")" 202
assert_eq "a duplicate answered 202" "$(post_msg vg-1)" 202
assert_eq "a conflicting duplicate answered 409" "$(post_msg vg-1 other)" 409
assert_eq "bad JSON answered 400" "$(curl -sS -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -d '{"a":' "$API/v1/messages")" 400
# Answers of the HTTP layer rewritten to JSON, and the lingering close after them.
HC="python3 $(dirname "$0")/http_client.py"
assert_contains "a 2 MiB body answered 413 JSON" "$($HC post "$API_PORT" /v1/messages $((2 << 20)))" \
    "too_large"
assert_contains "a bad request line answered 400 JSON" "$($HC raw "$API_PORT" 'GARBAGE\r\n\r\n')" \
    "bad_request"

# ---- delivery, retry, echoed confirmations ----------------------------------------------------
wait_until 40 '[ "$(count_state confirmed)" = 7 ]'
assert_eq "all 7 messages delivered and confirmed by echoed webhooks" "$(count_state confirmed)" 7
assert_ge "the injected 500 was retried" "$(sql "$DB" "SELECT count(*) FROM attempts")" 8

# ---- webhooks: a reply (to the inbox) and a forgery ------------------------------------------
assert_eq "a signed reply webhook answered 200" "$(jget "$(mock_post webhook \
    '{"channel_id":"ch","external_conversation_id":"c-vg-1","partoo_message_id":7001,"content":"hi"}')" \
    '$.status')" 200
assert_eq "a forged webhook answered 401" "$(jget "$(mock_post webhook \
    '{"channel_id":"ch","external_conversation_id":"c-vg-1","partoo_message_id":7002,"forge":true}')" \
    '$.status')" 401
wait_until 20 '[ "$(sql "$DB" "SELECT count(*) FROM inbox")" = 1 ]'
assert_eq "the reply is in the inbox" "$(sql "$DB" "SELECT count(*) FROM inbox")" 1

# ---- read routes -----------------------------------------------------------------------------
for p in /healthz /readyz /metrics /v1/stats "/v1/messages?limit=2" /v1/messages/ch/vg-1 \
    /v1/inbox /nope; do
    curl -sS -o /dev/null "$API$p"
done
assert_eq "GET /v1/messages/ch/vg-2 answered 200" "$(http_code GET "$API/v1/messages/ch/vg-2")" 200
wait_until 20 '[ -s "$T/head1" ]'
assert_eq "a trickling request head was closed by the 10 s request deadline (10-15 s)" \
    "$(case $(cat "$T/head1") in 1[0-5]) echo yes ;; *) echo "no ($(cat "$T/head1"))" ;; esac)" yes

# ---- the end: one connection still half-open, then SIGTERM ------------------------------------
trickle_head "$API_PORT" 30 "$T/head2"
# and one lingering after its 413: the client neither sends nor closes (2 s idle bound).
python3 -c 'import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n")
time.sleep(5)' "$API_PORT" &
sleep 0.5
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
st=$?
echo "serve under valgrind exited with $st after $(( $(now_ms) - T0 )) ms"
grep -E 'ERROR SUMMARY|definitely lost|indirectly lost|All heap blocks' "$VG_LOG" | sed 's/^==[0-9]*== */valgrind: /'
assert_eq "serve exit status 0 (99: valgrind found errors or leaks)" "$st" 0
assert_eq "valgrind: ERROR SUMMARY: 0 errors" "$(grep -c 'ERROR SUMMARY: 0 errors' "$VG_LOG")" 1
assert_eq "valgrind: 0 bytes definitely lost" "$(lost_bytes "$VG_LOG" definitely)" 0
assert_eq "valgrind: 0 bytes indirectly lost" "$(lost_bytes "$VG_LOG" indirectly)" 0
assert_contains "valgrind: the log is serve's" "$(head -c 2000 "$VG_LOG")" "serve"
finish
