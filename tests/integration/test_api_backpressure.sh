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

. "$(dirname "$0")/api_lib.sh"

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
