#!/usr/bin/env bash
# tests/integration/test_api_backpressure.sh: the producer API when the database cannot take
# new messages (SPEC §5, §8, §10; issue 4).
#
# 503 + Retry-After while another process holds the write lock longer than serve's busy
# timeout (1 s): reads and health still answered in time, nothing half-written, recovery by
# itself (the next /readyz and POST succeed without a restart). 507 quota_exceeded at
# max_db_size with delivery still draining, and recovery when purge frees space or SIGHUP
# raises the quota.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_api_backpressure.sh
. "$(dirname "$0")/lib.sh"

# ---- API helpers (the same block opens every test_api*.sh) -------------------------------
# Hermetic: no OUTBOX_* from the caller's environment except the binary under test.
for v in $(compgen -e | grep '^OUTBOX_' || true); do
    [ "$v" = OUTBOX_BIN ] || unset "$v"
done
# api_serve [serve options]: start_serve (API on 127.0.0.1:0), then API=http://127.0.0.1:PORT
# with the port from serve's "msg=serving ... api_port=N" log line.
api_serve() {
    local before
    before=$(grep -c 'msg=serving' "$T/serve.log" 2>/dev/null)
    start_serve "$@"
    wait_until 10 '[ "$(grep -c "msg=serving" "$T/serve.log")" -gt '"${before:-0}"' ]' ||
        { echo "serve did not log its api port"; cat "$T/serve.log"; exit 1; }
    API=http://127.0.0.1:$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$T/serve.log" | tail -1)
}
stop_serve() { kill -TERM "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null; }
# req METHOD PATH [BODY]: one request to the API; sets CODE (HTTP status) and RESP (body),
# response headers in $T/resp.head. BODY "@FILE" sends a file. With a body, CT sets the
# Content-Type (default application/json; CT= sends none); TOKEN adds a bearer token.
req() {
    local args=(-sS -m 30 -o "$T/resp.body" -D "$T/resp.head" -w '%{http_code}' -X "$1")
    [ $# -ge 3 ] && args+=(--data-binary "$3" -H "Content-Type:${CT-application/json}")
    [ -n "${TOKEN:-}" ] && args+=(-H "Authorization: Bearer $TOKEN")
    CODE=$(curl "${args[@]}" "$API$2")
    RESP=$(cat "$T/resp.body")
}
# header NAME: a header of the last response (case-insensitive name).
header() { tr -d '\r' < "$T/resp.head" | sed -n "s/^$1: *//Ip" | tail -1; }
# jx JSON SQL-EXPR: evaluates an SQLite expression over the document bound as j.
jx() {
    printf '%s' "$1" > "$T/jx.json"
    sqlite3 -batch -noheader :memory: "SELECT $2 FROM (SELECT readfile('$T/jx.json') AS j)" 2>/dev/null
}
# errsig: "STATUS code field" of the last response ("-" for a null field).
errsig() {
    echo "$CODE $(jx "$RESP" "json_extract(j,'\$.error.code') || ' ' || ifnull(json_extract(j,'\$.error.field'),'-')")"
}
# mk [KEY=VALUE...]: a valid message object with KEY set to VALUE: raw JSON when VALUE looks
# like JSON (a number, true, false, null, or it starts with " { [), else a JSON string; KEY=
# with nothing removes the member. Pure bash: tests call it hundreds of times.
mk() {
    local -A v=([channel_id]=ch [external_message_id]=m [business_id]=biz
        [external_conversation_id]=conv [content]=hello [sender_type]=Consumer)
    local keys=(channel_id external_message_id business_id external_conversation_id content
        sender_type) a k x out="" sep=""
    for a; do
        k=${a%%=*}
        [[ " ${keys[*]} " == *" $k "* ]] || keys+=("$k")
        v[$k]=${a#*=}
    done
    for k in "${keys[@]}"; do
        x=${v[$k]}
        [ -n "$x" ] || continue
        if ! [[ $x =~ ^(-?[0-9][0-9.eE+-]*|true|false|null)$ || $x == [\"\{\[]* ]]; then
            x=${x//\\/\\\\}
            x="\"${x//\"/\\\"}\""
        fi
        out+="$sep\"$k\":$x"
        sep=,
    done
    printf '{%s}' "$out"
}
# batch ITEM...: {"messages":[ITEM,...]}
batch() { local IFS=,; printf '{"messages":[%s]}' "$*"; }
total() { sql "$DB" "SELECT count(*) FROM outbox"; }
state_of() { sql "$DB" "SELECT state FROM outbox WHERE channel_id = '$1' AND external_message_id = '$2'"; }
# arrived EXT_ID: the mock's arrival time (epoch ms) of that message, empty before it arrives.
arrived() { mock_get received | awk -F'\t' -v id="$1" '$6 == id { print $2; exit }'; }
# ------------------------------------------------------------------------------------------

start_mock --rate-limit 0

# ---- 503 + Retry-After while the database cannot be written ------------------------------------------
api_serve --rate-limit 0
req POST /v1/messages "$(mk external_message_id=bp0 external_conversation_id=c-bp)"
assert_eq "back-pressure: a first message" "$CODE" 202
wait_until 10 '[ "$(state_of ch bp0)" = accepted ]'
n0=$(total)
# Another process holds the write lock (serve's busy timeout is 1 s) until its sleep is killed.
rm -f "$T/holder.pid"
sqlite3 "$DB" >"$T/holder.log" 2>&1 <<EOF &
.timeout 10000
BEGIN IMMEDIATE;
INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('x', 'lock', 'b', 'c', 'x', 'User');
.shell echo \$\$ > "$T/holder.pid"; exec sleep 120
ROLLBACK;
EOF
HOLDER=$!
PIDS+=("$HOLDER")
wait_until 20 '[ -s "$T/holder.pid" ]' || { echo "the lock holder did not start"; cat "$T/holder.log"; }
PIDS+=("$(cat "$T/holder.pid")")
# timed METHOD PATH [BODY]: req, and MS = how long it took.
timed() { local t0; t0=$(now_ms); req "$@"; MS=$(( $(now_ms) - t0 )); }
timed POST /v1/messages "$(mk external_message_id=bp1 external_conversation_id=c-bp)"
assert_eq "write lock held elsewhere: POST 503 ($MS ms)" "$(errsig)" "503 unavailable -"
assert_contains "write lock held elsewhere: Retry-After in seconds" "$(header Retry-After | grep -E '^[0-9]+$')" "1"
timed POST /v1/messages "$(batch "$(mk external_message_id=bp2 external_conversation_id=c-bp)" "$(mk external_message_id=bp3 external_conversation_id=c-bp)")"
assert_eq "write lock held elsewhere: batch POST 503, the whole batch ($MS ms)" "$CODE" 503
timed GET "/v1/messages?limit=5"
assert_eq "write lock held elsewhere: GET /v1/messages still 200" "$CODE" 200
# Served means answered in time: one busy timeout (1 s) may be in front of it, not ten.
assert_le "write lock held elsewhere: GET /v1/messages answers within 3 s (took $MS ms)" "$MS" 3000
timed GET /healthz
assert_eq "write lock held elsewhere: /healthz 200 (the process is up)" "$CODE" 200
assert_le "write lock held elsewhere: /healthz answers within 3 s (took $MS ms)" "$MS" 3000
timed GET /readyz
assert_eq "write lock held elsewhere: /readyz 503 ($MS ms)" "$CODE" 503
kill -0 "$(cat "$T/holder.pid")" 2>/dev/null
assert_eq "the lock was held during all of the above" "$?" 0
kill "$(cat "$T/holder.pid")"
wait "$HOLDER"
assert_eq "nothing half-written (the holder rolled back, serve stored nothing)" "$(total)" "$n0"
# Recovery by itself: the next readiness probe and the next POST succeed, no restart.
wait_until 5 'curl -fsS -o /dev/null "$API/readyz"'
req GET /readyz
assert_eq "lock released: /readyz 200 again before any new POST" "$CODE" 200
req POST /v1/messages "$(mk external_message_id=bp1 external_conversation_id=c-bp)"
assert_eq "lock released: POST 202 again" "$CODE" 202
req GET /readyz
assert_eq "lock released: /readyz 200" "$CODE" 200
wait_until 10 '[ "$(state_of ch bp1)" = accepted ]'
assert_eq "lock released: the message is delivered" "$(state_of ch bp1)" accepted
stop_serve

# ---- 507 quota_exceeded at max_db_size ------------------------------------------------------------------
# 600 messages of a read-only channel (terminal at accepted, so purge may delete them).
X300=$(head -c 300 /dev/zero | tr '\0' x)
for i in $(seq 1 600); do
    printf '{"channel_id":"ro","external_message_id":"q%d","business_id":"b","external_conversation_id":"qc%d","content":"%s %d","sender_type":"Consumer"}\n' \
        "$i" $((i % 20)) "$X300" "$i"
done | "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
api_serve --rate-limit 0 --readonly-channels ro
wait_until 60 '[ "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = '\''ro'\'' AND state = '\''accepted'\''")" = 600 ]'
stop_serve
enqueue_n 3 dq # queued before the quota is set: delivery must go on at the quota
QUOTA=$(sql "$DB" "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")
api_serve --rate-limit 0 --readonly-channels ro --max-db-size "$QUOTA"
n0=$(total)
req POST /v1/messages "$(mk external_message_id=qx external_conversation_id=c-q)"
assert_eq "at max_db_size: POST 507 quota_exceeded" "$(errsig)" "507 quota_exceeded -"
assert_contains "at max_db_size: the message says why" "$(jx "$RESP" "json_extract(j,'\$.error.message')")" "max_db_size"
req POST /v1/messages "$(batch "$(mk external_message_id=qy external_conversation_id=c-q)")"
assert_eq "at max_db_size: batch POST 507" "$(errsig)" "507 quota_exceeded -"
assert_eq "at max_db_size: nothing stored" "$(total)" "$n0"
req GET "/v1/messages?channel_id=ro&limit=1"
assert_eq "at max_db_size: reads served" "$CODE" 200
wait_until 10 '[ "$(count_state accepted)" = 603 ]'
assert_eq "at max_db_size: delivery keeps draining" \
    "$(sql "$DB" "SELECT group_concat(state) FROM outbox WHERE external_message_id LIKE 'dq%'")" \
    "accepted,accepted,accepted"
# Retention / purge frees space: new messages are taken again (SPEC §8: "refuses new messages
# ... while delivery keeps draining and retention frees space").
"$OUTBOX_BIN" purge --db "$DB" --older-than 1ms --readonly-channels ro > "$T/purge.out"
assert_eq "purge deleted the read-only channel's messages" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ro'")" 0
echo "# pages: $(sql "$DB" "SELECT page_count || ' total, ' || freelist_count || ' free' FROM pragma_page_count(), pragma_freelist_count()"), quota $QUOTA bytes"
req POST /v1/messages "$(mk external_message_id=qz external_conversation_id=c-q)"
assert_eq "after purge freed most of the file: POST 202" "$CODE" 202
stop_serve

# Raising the quota with SIGHUP takes effect without a restart.
printf 'max_db_size = 4K\n' > "$T/quota.conf"
api_serve --rate-limit 0 --config "$T/quota.conf"
req POST /v1/messages "$(mk external_message_id=qh external_conversation_id=c-q)"
assert_eq "max_db_size = 4K: 507" "$CODE" 507
printf 'max_db_size = 1G\n' > "$T/quota.conf"
before=$(grep -c "configuration reloaded" "$T/serve.log")
kill -HUP "$SERVE_PID"
wait_until 10 '[ "$(grep -c "configuration reloaded" "$T/serve.log")" -gt '"$before"' ]'
req POST /v1/messages "$(mk external_message_id=qh external_conversation_id=c-q)"
assert_eq "max_db_size raised by SIGHUP: POST 202" "$CODE" 202
stop_serve

finish
