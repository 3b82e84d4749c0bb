#!/usr/bin/env bash
# Hostile input on both listeners (SPEC §4, §5, §8 "every limit violation is a 4xx", §10):
# slow clients (slowloris: stalled and trickling heads and bodies), huge headers, bodies over
# the limit (Content-Length and chunked), broken request lines, non-UTF-8, deep nesting,
# 10,000 keys, duplicated keys, numbers for strings, replayed and forged webhooks,
# path-traversal-looking ids. For each: the right 4xx (or a closed connection for transport
# attacks), and the service keeps serving others (/healthz, a normal POST, a genuine webhook).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../torture/common.sh"
torture_private_bins
RAW=$(dirname "$0")/../torture/rawhttp.py

start_mock --rate-limit 0 --webhook-seed "$SEED"
PUB=$(mock_pubkey) || exit 1
make_signer "$SEED"
# serve under the usual 1,024-descriptor limit, whatever this machine's: its connection cap
# per listener comes from that limit (the "descriptor budget" log line), 378 here.
printf '#!/bin/sh\nulimit -n 1024\nexec "%s" "$@"\n' "$OUTBOX_BIN" >"$T/outbox-1024"
chmod +x "$T/outbox-1024"
OUTBOX_BIN="$T/outbox-1024" start_serve --rate-limit 0 --webhook-public-key "$PUB" \
    --webhook-max-body-bytes 1M
CAP=$(sed -n 's/.*connections_per_listener=\([0-9]*\).*/\1/p' "$T/serve.log" | tail -1)
serve_ports || { echo "no serving line"; cat "$T/serve.log"; exit 1; }
mock_post faults '{"webhook_url":"'"$WH_URL"'"}' >/dev/null
WH_BASE=http://127.0.0.1:$WH_PORT

N_OK=0
T0=$(now_ms)
# still_serving NAME: /healthz, a normal POST and a genuine signed webhook all work.
still_serving() {
    N_OK=$((N_OK + 1))
    local h p w
    h=$(http_code GET "$API/healthz")
    p=$(post_msg "alive-$N_OK")
    w=$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"alive","partoo_message_id":'$((800000 + N_OK))'}')" '$.status')
    assert_eq "$1: still serving (healthz/POST/webhook) [t=$(( ($(now_ms) - T0) / 1000 ))s]" "$h/$p/$w" "200/202/200"
}
# api_post BODY_FILE [curl args]: status of POST /v1/messages; answer in $T/resp.
api_post() {
    local f=$1
    shift
    curl -sS -m 20 -o "$T/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "$@" --data-binary @"$f" "$API/v1/messages" 2>/dev/null
}
err_code() { jget "$(cat "$T/resp")" '$.error.code'; }
err_field() { jget "$(cat "$T/resp")" '$.error.field'; }
# wh_post FILE SIG: status of a webhook with that signature header (none when empty).
wh_post() {
    local h=()
    [ -n "$2" ] && h=(-H "X-Partoo-Signature-v1: $2")
    curl -sS -m 20 -o "$T/resp" -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        "${h[@]}" --data-binary @"$1" "$WH_URL" 2>/dev/null
}
raw() { "$PY" "$RAW" send 127.0.0.1 "$1" "${2:-5}"; }
# 4xx_or_closed VALUE: yes when VALUE is a 4xx status or "closed"
is_4xx_or_closed() { case $1 in 4??|closed) echo yes ;; *) echo "no ($1)" ;; esac; }
serve_alive() { kill -0 "$SERVE_PID" 2>/dev/null && echo yes || echo no; }

still_serving "baseline"

# ============ slow clients =====================================================================
# keepalive_client PORT SECONDS: GET /healthz every 0.3 s on one kept-alive connection; prints
# "ok N" when every answer was 200 and the connection was never closed, else why not. A
# request deadline must count per request, not per connection.
keepalive_client() {
    "$PY" - "$1" "$2" <<'PYEOF'
import http.client, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
t0, n, sock = time.time(), 0, None
try:
    while time.time() - t0 < secs:
        c.request("GET", "/healthz")
        r = c.getresponse()
        r.read()
        if sock is None:
            sock = c.sock
        if c.sock is not sock or r.status != 200:
            print("reconnected or not 200 (%s) after %.1f s" % (r.status, time.time() - t0))
            sys.exit(0)
        n += 1
        time.sleep(0.3)
    print("ok %d" % n)
except Exception as e:
    print("failed after %.1f s: %s" % (time.time() - t0, e))
PYEOF
}

# phase PHASE_NAME MODE_TRICKLE MODE_STALL N_TRICKLE N_STALL: both listeners attacked at once
# for 20 s while a client polls /healthz and POSTs every 0.5 s, and another keeps one
# connection busy for 15 s (longer than the 10 s request deadline).
slow_phase() {
    local name=$1 trickle=$2 stall=$3 nt=$4 ns=$5 i
    keepalive_client "$API_PORT" 15 >"$T/ka" &
    local p0=$!
    "$PY" "$RAW" slowloris 127.0.0.1 "$API_PORT" "$nt" 20 "$trickle" >"$T/sl.api.trickle" &
    local p1=$!
    "$PY" "$RAW" slowloris 127.0.0.1 "$WH_PORT" "$nt" 20 "$trickle" >"$T/sl.wh.trickle" &
    local p2=$!
    "$PY" "$RAW" slowloris 127.0.0.1 "$API_PORT" "$ns" 20 "$stall" >"$T/sl.api.stall" &
    local p3=$!
    "$PY" "$RAW" slowloris 127.0.0.1 "$WH_PORT" "$ns" 20 "$stall" >"$T/sl.wh.stall" &
    local p4=$!
    sleep 2
    : >"$T/probe"
    for i in $(seq 1 30); do
        curl -sS -o /dev/null -m 5 -w '%{http_code} %{time_total}\n' "$API/healthz" >>"$T/probe" 2>/dev/null ||
            echo "000 5" >>"$T/probe"
        echo "$(post_msg "$name-$i") 0" >>"$T/probe.post"
        sleep 0.5
    done
    wait $p0 $p1 $p2 $p3 $p4
    assert_eq "$name: a kept-alive client making requests for 15 s is not cut off" \
        "$(sed 's/^ok [0-9]*$/ok/' "$T/ka")" ok
    local bad max
    bad=$(awk '$1 != 200' "$T/probe" | wc -l)
    max=$(awk '{ if ($2 > m) m = $2 } END { printf "%.3f", m }' "$T/probe")
    echo "$name: healthz during the attack: $(wc -l <"$T/probe") probes, max latency ${max}s;" \
        "POST codes: $(awk '{print $1}' "$T/probe.post" | sort | uniq -c | tr -s ' ' | tr '\n' ' ')"
    assert_eq "$name: other clients served during the attack (healthz 200 every time)" "$bad" 0
    assert_eq "$name: other clients served quickly (max healthz latency < 1 s)" \
        "$(awk -v m="$max" 'BEGIN { print (m < 1.0) ? "yes" : "no (" m " s)" }')" yes
    assert_eq "$name: POSTs accepted during the attack" "$(awk '$1 != 202' "$T/probe.post" | wc -l)" 0
    rm -f "$T/probe.post"
    for f in api.stall wh.stall api.trickle wh.trickle; do
        local j opened closed late
        j=$(cat "$T/sl.$f")
        echo "$name $f: $j" | cut -c1-400
        opened=$(jget "$j" '$.opened')
        closed=$(jget "$j" '$.closed')
        late=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(sum(1 for t in d["close_times"] if t > 15))' "$j")
        echo "$name $f: closed between $("$PY" -c 'import json,sys; t=json.loads(sys.argv[1])["close_times"] or [0]; print("%.1f and %.1f s" % (min(t), max(t)))' "$j")"
        assert_eq "$name $f: every connection opened" "$opened" "$([ "${f#*.}" = stall ] && echo "$ns" || echo "$nt")"
        assert_eq "$name $f: the server closed every slow connection within 20 s" "$closed/$opened" "$opened/$opened"
        if [ "${f#*.}" = trickle ]; then
            # A byte a second restarts evhttp's inactivity timeout every time: what closes
            # these is the 10 s deadline for a whole request (lib/httpd.c).
            local early
            early=$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(sum(1 for t in d["close_times"] if t < 9.5))' "$j")
            assert_eq "$name $f: ... within the request deadline + slack (10 s + 5 s)" "$late" 0
            assert_eq "$name $f: ... and not before the deadline" "$early" 0
        else
            assert_eq "$name $f: ... and within ~15 s (evhttp timeout 10 s)" "$late" 0
        fi
    done
}
if [ "${HOSTILE_SLOW:-1}" = 1 ]; then # HOSTILE_SLOW=0 skips these 45 s while iterating
    slow_phase "slowloris heads" trickle-headers stall-headers 200 50
    still_serving "after slow heads"
    slow_phase "slow bodies" trickle-body stall-body 100 50
    still_serving "after slow bodies"
fi
assert_eq "slow clients: serve alive" "$(serve_alive)" yes
echo "open fds after the slow-client phases: $(fd_count "$SERVE_PID")"

# ============ transport-level attacks ==========================================================
big_header=$(head -c 20000 /dev/zero | tr '\0' a)
for port in "$API_PORT" "$WH_PORT"; do
    lis=$([ "$port" = "$API_PORT" ] && echo api || echo webhook)
    P=$([ "$port" = "$API_PORT" ] && echo /v1/messages || echo /webhooks/partoo)
    r=$(printf "POST $P HTTP/1.1"'\r\nHost: x\r\nX-Big: %s\r\nContent-Length: 2\r\n\r\n{}' "$big_header" | raw "$port")
    assert_eq "$lis: a 20 KiB header -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
    many=$(for i in $(seq 1 2000); do printf 'X-H%d: v\r\n' "$i"; done)
    r=$(printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n' "$many" | raw "$port")
    assert_eq "$lis: 2000 headers (> 16 KiB) -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
    r=$(printf 'GARBAGE\r\n\r\n' | raw "$port")
    assert_eq "$lis: a garbage request line -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
    r=$(printf 'GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n' | raw "$port")
    assert_eq "$lis: HTTP/9.9 -> 4xx/505 or close" "$(case $r in 4??|505|closed) echo yes ;; *) echo "no ($r)" ;; esac)" yes
    r=$(printf 'BREW /healthz HTTP/1.1\r\nHost: x\r\n\r\n' | raw "$port")
    assert_eq "$lis: an unknown method -> 4xx/501 or close" "$(case $r in 4??|501|closed) echo yes ;; *) echo "no ($r)" ;; esac)" yes
    r=$(printf "POST $P HTTP/1.1"'\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999\r\n\r\n{}' | raw "$port")
    assert_eq "$lis: Content-Length 99999999999999 -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
    r=$(printf "POST $P HTTP/1.1"'\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -5\r\n\r\n{}' | raw "$port")
    assert_eq "$lis: Content-Length -5 -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
    r=$(printf "POST $P HTTP/1.1"'\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 40\r\n\r\n{}' | raw "$port" 3)
    assert_eq "$lis: two Content-Length headers -> 4xx or close (or an answer to the first)" \
        "$(case $r in 4??|closed|timeout) echo yes ;; *) echo "no ($r)" ;; esac)" yes
    r=$(printf "POST $P HTTP/1.1"'\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n{}\r\n0\r\n\r\n' | raw "$port")
    assert_eq "$lis: a bad chunk size -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
    still_serving "$lis transport attacks"
done

# Bodies over the limit (max_body_bytes and webhook_max_body_bytes 1 MiB).
head -c 1500000 /dev/zero | tr '\0' a | sed 's/^/{"content":"/; s/$/"}/' >"$T/big1.json"
head -c 5000000 /dev/zero | tr '\0' a | sed 's/^/{"content":"/; s/$/"}/' >"$T/big5.json"
assert_eq "api: 1.5 MB body -> 413" "$(api_post "$T/big1.json")" 413
assert_eq "api: 1.5 MB body -> code too_large" "$(err_code)" too_large
assert_eq "api: 1.5 MB chunked body -> 413" "$(api_post "$T/big1.json" -H 'Transfer-Encoding: chunked')" 413
r=$(api_post "$T/big5.json" -H 'Transfer-Encoding: chunked')
assert_eq "api: 5 MB chunked body -> 413 or close" "$(case $r in 413|000) echo yes ;; *) echo "no ($r)" ;; esac)" yes
r=$(api_post "$T/big5.json")
assert_eq "api: 5 MB body -> 413 or close" "$(case $r in 413|000) echo yes ;; *) echo "no ($r)" ;; esac)" yes
assert_eq "webhook: 1.5 MB body -> 413" "$(wh_post "$T/big1.json" "$(sign_file "$T/big1.json")")" 413
r=$(curl -sS -m 20 -o /dev/null -w '%{http_code}' -X POST -H 'Transfer-Encoding: chunked' \
    -H 'Content-Type: application/json' --data-binary @"$T/big5.json" "$WH_URL" 2>/dev/null)
assert_eq "webhook: 5 MB chunked body -> 413 or close" "$(case $r in 413|000) echo yes ;; *) echo "no ($r)" ;; esac)" yes
still_serving "bodies over the limit"

# ============ JSON the producer API must refuse ================================================
msg() { printf '{"channel_id":"ch","external_message_id":"%s","business_id":"b1","external_conversation_id":"c1","content":"%s","sender_type":"Consumer"%s}' "$@"; }
# non-UTF-8 in a string, a lone surrogate escape, overlong UTF-8
{ msg bad-utf8 "caf" ""; } | sed 's/"caf"/"caf\xe9"/' >"$T/u1.json"
assert_eq "api: non-UTF-8 bytes -> 400" "$(api_post "$T/u1.json")" 400
assert_eq "api: non-UTF-8 -> invalid_utf8" "$(err_code)" invalid_utf8
printf '{"channel_id":"ch","external_message_id":"ov","business_id":"b1","external_conversation_id":"c1","content":"\xc0\xaf","sender_type":"Consumer"}' >"$T/u2.json"
assert_eq "api: overlong UTF-8 -> 400" "$(api_post "$T/u2.json")" 400
msg lone-sur '\ud800x' "" >"$T/u3.json"
r=$(api_post "$T/u3.json")
echo "api: a lone surrogate escape \\ud800 -> $r $(head -c 200 "$T/resp")"
assert_eq "api: a lone surrogate escape -> 400 (or 202 with valid UTF-8 stored)" \
    "$([ "$r" = 400 ] && echo yes || { [ "$r" = 202 ] && [ "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id = 'lone-sur'")" = 1 ] && echo yes; } || echo "no ($r)")" yes
printf '\xef\xbb\xbf%s' "$(msg bom x "")" >"$T/u4.json"
r=$(api_post "$T/u4.json")
assert_eq "api: a UTF-8 BOM before the JSON -> 400 or 202, never 5xx" "$(case $r in 400|202) echo yes ;; *) echo "no ($r)" ;; esac)" yes
# depth
"$PY" -c 'print("{\"a\":" * 200 + "1" + "}" * 200)' >"$T/deep200.json"
assert_eq "api: 200-level nesting -> 400" "$(api_post "$T/deep200.json")" 400
assert_eq "api: 200-level nesting -> too_deep" "$(err_code)" too_deep
"$PY" -c 'print("[" * 100000 + "]" * 100000)' >"$T/deep100k.json"
assert_eq "api: 100,000-level nesting -> 400" "$(api_post "$T/deep100k.json")" 400
"$PY" -c 'print("{\"messages\":[" + "[" * 40 + "]" * 40 + "]}")' >"$T/deepbatch.json"
assert_eq "api: a batch item nested too deep -> 400" "$(api_post "$T/deepbatch.json")" 400
# 10,000 keys
"$PY" -c 'import json; d={"k%d"%i: i for i in range(10000)}; print(json.dumps(d))' >"$T/keys10k.json"
t0=$(now_ms)
assert_eq "api: 10,000 keys -> 400" "$(api_post "$T/keys10k.json")" 400
assert_le "api: 10,000 keys answered within 1 s" $(( $(now_ms) - t0 )) 1000
"$PY" -c '
import json
d = {"channel_id":"ch","external_message_id":"wide","business_id":"b1","external_conversation_id":"c1","content":"x","sender_type":"Consumer"}
body = json.dumps(d)[:-1] + "".join(",\"content\":\"x%d\"" % i for i in range(10000)) + "}"
print(body)' >"$T/dupwide.json"
t0=$(now_ms)
assert_eq "api: one key repeated 10,000 times -> 400" "$(api_post "$T/dupwide.json")" 400
assert_le "api: ... answered within 1 s" $(( $(now_ms) - t0 )) 1000
"$PY" -c 'import json; print(json.dumps({"messages":[{"k%d"%i: i for i in range(10)} for _ in range(1000)]}))' >"$T/batchwide.json"
r=$(api_post "$T/batchwide.json")
assert_eq "api: a batch of 1000 bad items -> 202 with 1000 item errors (or 400)" \
    "$([ "$r" = 202 ] && [ "$(jget "$(cat "$T/resp")" '$.results[999].error.code')" != "" ] && echo yes || { [ "$r" = 400 ] && echo yes; } || echo "no ($r)")" yes
"$PY" -c 'import json; print(json.dumps({"messages":[{"channel_id":"ch"}]*1001}))' >"$T/batch1001.json"
assert_eq "api: a batch of 1001 -> 400" "$(api_post "$T/batch1001.json")" 400
# duplicated keys
printf '{"channel_id":"ch","external_message_id":"dupk","business_id":"b1","external_conversation_id":"c1","content":"a","content":"b","sender_type":"Consumer"}' >"$T/dup.json"
assert_eq "api: a duplicated key -> 400" "$(api_post "$T/dup.json")" 400
assert_eq "api: a duplicated key -> duplicate_field naming content" "$(err_code)/$(err_field)" duplicate_field/content
printf '{"channel_id":"ch","channel_id":"other","external_message_id":"dupk2","business_id":"b1","external_conversation_id":"c1","content":"a","sender_type":"Consumer"}' >"$T/dup2.json"
assert_eq "api: a duplicated channel_id -> 400" "$(api_post "$T/dup2.json")" 400
printf '{"messages":[%s],"messages":[%s]}' "$(msg db1 x "")" "$(msg db2 x "")" >"$T/dup3.json"
assert_eq "api: a duplicated messages array -> 400" "$(api_post "$T/dup3.json")" 400
assert_eq "api: nothing stored for duplicated keys" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id IN ('dupk', 'dupk2', 'db1', 'db2')")" 0
# numbers (and other types) where strings belong
for f in channel_id external_message_id business_id external_conversation_id content sender_type consumer_name; do
    "$PY" -c '
import json, sys
d = {"channel_id":"ch","external_message_id":"num-"+sys.argv[1],"business_id":"b1","external_conversation_id":"c1","content":"x","sender_type":"Consumer"}
d[sys.argv[1]] = 12345
print(json.dumps(d))' "$f" >"$T/num.json"
    assert_eq "api: $f as a number -> 400 naming $f" "$(api_post "$T/num.json")/$(err_field)" "400/$f"
done
for v in '"high"' '1.5' '1e400' '99999999999999999999' 'true' '[1]'; do
    msg prio-x x ",\"priority\":$v" >"$T/prio.json"
    assert_eq "api: priority $v -> 400 naming priority" "$(api_post "$T/prio.json")/$(err_field)" "400/priority"
done
for v in '{"a":1}' '[]' 'true' 'null'; do
    msg obj-x x "" | sed "s/\"content\":\"x\"/\"content\":$v/" >"$T/obj.json"
    assert_eq "api: content $v -> 400" "$(api_post "$T/obj.json")" 400
done
printf '"just a string"' >"$T/str.json"
assert_eq "api: a top-level string -> 400" "$(api_post "$T/str.json")" 400
printf '[{"a":1}]' >"$T/arr.json"
assert_eq "api: a top-level array -> 400" "$(api_post "$T/arr.json")" 400
printf '' >"$T/empty.json"
assert_eq "api: an empty body -> 400" "$(api_post "$T/empty.json")" 400
printf '{"channel_id":"ch"' >"$T/trunc.json"
assert_eq "api: truncated JSON -> 400" "$(api_post "$T/trunc.json")" 400
printf '%s%s' "$(msg nul-x x "")" "" | sed 's/"content":"x"/"content":"a\\u0000b"/' >"$T/nul.json"
assert_eq "api: \\u0000 in a string -> 400" "$(api_post "$T/nul.json")" 400
msg ct-x x "" >"$T/ok.json"
assert_eq "api: Content-Type text/plain -> 415" "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' \
    -H 'Content-Type: text/plain' --data-binary @"$T/ok.json" "$API/v1/messages")" 415
still_serving "hostile JSON"

# ============ hostile webhooks =================================================================
cat >"$T/ev.json" <<'EOF'
{"type":"message_created","payload":{"message":{"id":880001,"conversation_id":1,"status":"Success","sender_type":"User","content":"replayed","custom_channel":null},"conversation":{"id":1,"business":{"id":"b"},"custom_channel":{"id":"ch","is_readonly":false,"external_conversation_id":"c-replay"}}}}
EOF
sig=$(sign_file "$T/ev.json")
e0=$(events)
assert_eq "webhook: a signed event -> 200" "$(wh_post "$T/ev.json" "$sig")" 200
assert_eq "webhook: the same signed body replayed -> 200" "$(wh_post "$T/ev.json" "$sig")" 200
rp=()
for i in $(seq 1 20); do wh_post "$T/ev.json" "$sig" >/dev/null & rp+=($!); done
wait "${rp[@]}"
assert_eq "webhook: replayed 20 more times at once -> stored once" "$(events)" $((e0 + 1))
wait_until 5 '[ "$(sql "$DB" "SELECT count(*) FROM inbox WHERE partoo_message_id = '\''880001'\''")" = 1 ]'
assert_eq "webhook: replayed reply -> one inbox row" "$(sql "$DB" "SELECT count(*) FROM inbox WHERE partoo_message_id = '880001'")" 1
# forgeries
e0=$(events)
sed 's/replayed/tampered/' "$T/ev.json" >"$T/ev2.json"
assert_eq "forged: the signature of another body -> 401" "$(wh_post "$T/ev2.json" "$sig")" 401
assert_eq "forged: no signature -> 401" "$(wh_post "$T/ev2.json" "")" 401
assert_eq "forged: an empty signature header -> 401" \
    "$(curl -sS -m 10 -o /dev/null -w '%{http_code}' -X POST -H 'X-Partoo-Signature-v1;' --data-binary @"$T/ev2.json" "$WH_URL")" 401
assert_eq "forged: not base64 -> 401" "$(wh_post "$T/ev2.json" '!!!not-base64!!!')" 401
assert_eq "forged: base64 of the wrong length -> 401" "$(wh_post "$T/ev2.json" "$(printf 'short' | base64)")" 401
assert_eq "forged: a 12 KB signature header -> 401 (or 4xx)" \
    "$(is_4xx_or_closed "$(wh_post "$T/ev2.json" "$(head -c 9000 /dev/urandom | base64 -w0)")")" yes
assert_eq "forged: the signature of the body {} -> 401" \
    "$(wh_post "$T/ev2.json" "$(printf '{}' >"$T/e0"; sign_file "$T/e0")")" 401
assert_eq "forged: mock, other key -> 401" "$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":880002,"forge":true}')" '$.status')" 401
assert_eq "forged: mock, flipped bit -> 401" "$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":880003,"forge":"flip"}')" '$.status')" 401
assert_eq "forged: mock, unsigned -> 401" "$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":880004,"unsigned":true}')" '$.status')" 401
assert_eq "forged: nothing stored" "$(events)" "$e0"
# signed but hostile JSON: stored (the signature is genuine), processed, never a crash
for f in u1 deep200 deep100k keys10k dup dupwide; do
    e0=$(events)
    st=$(wh_post "$T/$f.json" "$(sign_file "$T/$f.json")")
    assert_eq "webhook: signed $f.json -> 200 (stored and ignored)" "$st" 200
    assert_eq "webhook: signed $f.json stored once" "$(events)" $((e0 + 1))
done
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
assert_eq "webhook: every hostile event processed" "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0
echo "webhook outcomes: $(sql "$DB" "SELECT outcome, count(*) FROM webhook_events GROUP BY outcome" | tr '\n' ' ')"
# Partoo-shaped events with wrong types: numbers for strings, strings for numbers, nulls.
for body in \
    '{"type":"message_created","payload":{"message":{"id":"not-a-number","status":5,"sender_type":7,"content":8,"custom_channel":{"external_message_id":12}},"conversation":{"id":"x","custom_channel":{"id":3,"external_conversation_id":4}}}}' \
    '{"type":7,"payload":null}' \
    '{"type":"message_updated","payload":{"message":null,"conversation":[]}}' \
    '{"type":"message_created","payload":{"message":{"id":1e400,"custom_channel":{"external_message_id":"alive-1"}},"conversation":{"custom_channel":{"id":"ch"}}}}'; do
    printf '%s' "$body" >"$T/odd.json"
    assert_eq "webhook: odd types ${body:0:60}... -> 200" "$(wh_post "$T/odd.json" "$(sign_file "$T/odd.json")")" 200
done
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
assert_eq "webhook: odd-typed events processed" "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0
echo "alive-1 after an event with id 1e400: $(sql "$DB" "SELECT state, partoo_message_id FROM outbox WHERE external_message_id = 'alive-1'")"
# Body-less requests held while the verification threads are busy, with more bytes arriving
# meanwhile (libevent 2.1 would abort the process): all answered 401, serve still alive.
out=$("$PY" "$(dirname "$0")/../torture/held_requests.py" 127.0.0.1 "$WH_PORT" /webhooks/partoo)
echo "held requests: $out"
assert_eq "webhook: body-less requests held during verification are all answered" "$out" "answered 40 of 40"
assert_eq "webhook: serve alive after held requests" "$(serve_alive)" yes
still_serving "hostile webhooks"

# ============ paths ============================================================================
for path in '/v1/messages/..%2F..%2Fetc/passwd' '/v1/messages/..%2F..%2Fetc%2Fpasswd' \
    '/v1/messages/ch/..%2F..%2F..%2Fetc%2Fpasswd' '/v1/messages/%2e%2e/%2e%2e' \
    '/v1/messages/ch/%00' '/v1/messages/%00/%00' '/v1/messages/ch/a%00b' '/v1/messages/ch/%' \
    '/v1/messages/ch/%zz' '/v1/messages/ch/%c0%af' '/v1/messages/ch/%ff%fe' \
    '/v1/messages/../../etc/passwd' '/../../../../etc/passwd' '/v1/messages/ch/x/../../../etc' \
    '/v1/messages//' '/v1/messages/ch/' '//v1//messages' "/v1/messages/ch/$(head -c 5000 /dev/zero | tr '\0' a)" \
    '/v1/messages/ch/x?state=%00' '/v1/messages?state=%ff' '/v1/messages?limit=-1' \
    '/v1/messages?cursor=%00' '/v1/messages?limit=99999999999999999999' '/v1/inbox/..%2F1/ack'; do
    r=$(curl -sS -m 10 --path-as-is -o "$T/resp" -w '%{http_code}' "$API$path" 2>/dev/null)
    assert_eq "api GET ${path:0:60}: 400/404 (or 405)" "$(case $r in 400|404|405) echo yes ;; *) echo "no ($r)" ;; esac)" yes
    r=$(curl -sS -m 10 --path-as-is -o /dev/null -w '%{http_code}' -X POST "$API$path/retry" 2>/dev/null)
    assert_eq "api POST ${path:0:50}/retry: 4xx" "$(is_4xx_or_closed "$r")" yes
done
for path in '/webhooks/partoo/../../etc/passwd' '/webhooks/partoo%2F..%2F..' '/webhooks/%00' \
    '/webhooks/partoo%00' '/../webhooks/partoo' '/webhooks/Partoo' '/webhooks/partoo/x'; do
    r=$(curl -sS -m 10 --path-as-is -o /dev/null -w '%{http_code}' -X POST \
        -H "X-Partoo-Signature-v1: $sig" --data-binary @"$T/ev.json" "$WH_BASE$path" 2>/dev/null)
    assert_eq "webhook POST $path: 4xx, never stored elsewhere" "$(is_4xx_or_closed "$r")" yes
done
r=$(printf 'GET /v1/messages/ch/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n' | raw "$API_PORT")
assert_eq "api: a raw NUL in the request line -> 4xx or close" "$(is_4xx_or_closed "$r")" yes
still_serving "paths"

# ============ connection cap ====================================================================
# 420 stalled connections to the API listener: serve accepts $CAP (the descriptor budget)
# and leaves the rest in the kernel's backlog, so its descriptors stay bounded; a client beyond
# the cap waits, the webhook listener (its own cap) keeps working, and once the request deadline
# closes the stalled connections the waiting client is served.
fds0=$(fd_count "$SERVE_PID")
"$PY" "$RAW" slowloris 127.0.0.1 "$API_PORT" 420 25 stall-headers >"$T/sl.cap" &
slp=$!
sleep 3
fds1=$(fd_count "$SERVE_PID")
echo "connection cap: serve fds $fds0 before, $fds1 with 420 stalled clients"
assert_le "connection cap: at most $CAP connections accepted" "$((fds1 - fds0))" "$((CAP + 2))"
assert_ge "connection cap: the cap was reached" "$((fds1 - fds0))" "$((CAP - 10))"
assert_eq "connection cap: a client beyond the cap waits (no answer within 2 s)" \
    "$(curl -sS -m 2 -o /dev/null -w '%{http_code}' "$API/healthz" 2>/dev/null)" 000
w=$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"cap","partoo_message_id":799999}')" '$.status')
assert_eq "connection cap: the webhook listener is not affected" "$w" 200
t_wait=$(now_ms)
assert_eq "connection cap: served once the deadline frees connections" \
    "$(curl -sS -m 20 -o /dev/null -w '%{http_code}' "$API/healthz" 2>/dev/null)" 200
echo "connection cap: the waiting client was served after $(( $(now_ms) - t_wait )) ms"
wait "$slp"
wait_until 15 '[ "$(fd_count "$SERVE_PID")" -le $((fds0 + 5)) ]'
assert_le "connection cap: descriptors back to normal" "$(fd_count "$SERVE_PID")" $((fds0 + 5))
still_serving "connection cap"

# ============ file descriptors exhausted =======================================================
# serve limited to 128 fds, 200 stalled connections on the webhook listener (the one that faces
# the internet): while accept() fails with EMFILE the loop must not spin, and once the
# stalled connections time out everything works again.
if command -v prlimit >/dev/null && prlimit --pid "$SERVE_PID" --nofile=128: 2>/dev/null; then
    "$PY" "$RAW" slowloris 127.0.0.1 "$WH_PORT" 200 14 stall-headers >"$T/sl.fd" &
    slp=$!
    sleep 2
    c0=$(awk '{print $14 + $15}' "/proc/$SERVE_PID/stat")
    sleep 4
    c1=$(awk '{print $14 + $15}' "/proc/$SERVE_PID/stat")
    cpu_pct=$(( (c1 - c0) * 100 / $(getconf CLK_TCK) / 4 ))
    echo "fd exhaustion: serve fds $(fd_count "$SERVE_PID"), CPU ${cpu_pct}% of a core over 4 s"
    assert_le "fd exhaustion: no busy loop on EMFILE (CPU <= 20 % of a core)" "$cpu_pct" 20
    wait "$slp"
    wait_until 10 '[ "$(http_code GET "$API/healthz")" = 200 ]'
    still_serving "after fd exhaustion"
    prlimit --pid "$SERVE_PID" --nofile=4096: # the soft limit only: the hard one is untouched
else
    echo "SKIP fd exhaustion: prlimit not available"
fi

# ============ the end ==========================================================================
assert_eq "serve alive after everything" "$(serve_alive)" yes
assert_eq "PRAGMA integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
assert_not_contains "no crash or assertion in the log" "$(cat "$T/serve.log")" "Assertion"
echo "serve RSS $(rss_kb "$SERVE_PID") kB, fds $(fd_count "$SERVE_PID")"
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "SIGTERM exit 0" "$?" 0
finish
