#!/usr/bin/env bash
# Crash safety of the webhook path (SPEC §4: stored, then 200; work done after the commit):
# kill -9 right after a webhook's 200 loses nothing, and events stored but not yet interpreted
# are reconciled when serve starts again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"

start_wh_mock
wh_serve --max-inflight 64

# ---- one webhook, kill -9 as soon as its 200 is back ----------------------------------------
enqueue_n 3 k
wait_until 10 '[ "$(count_state accepted)" = 3 ]'
st=$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","external_message_id":"k1","partoo_message_id":610001,"sender_type":"Consumer"}')
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
assert_eq "webhook answered 200 before the kill" "$st" 200
assert_eq "the event row is on disk" "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE partoo_message_id = '610001' OR json_extract(body, '\$.payload.message.id') = 610001")" 1

# An event that was committed but not interpreted when the process died (as if the kill had
# come between the commit and the reconciliation): serve interprets it when it starts.
sql "$DB" "INSERT INTO webhook_events (body_sha256, received_at_ms, body) VALUES ('crash-test-k2', 1, '{\"type\":\"message_created\",\"payload\":{\"message\":{\"id\":610002,\"status\":\"Success\",\"sender_type\":\"Consumer\",\"custom_channel\":{\"external_message_id\":\"k2\"}},\"conversation\":{\"id\":1,\"custom_channel\":{\"id\":\"ch\",\"is_readonly\":false,\"external_conversation_id\":\"c2\"}}}}')"
assert_eq "k2 not yet confirmed" "$(state_of ch k2)" accepted
wh_serve --max-inflight 64
wait_until 10 '[ "$(state_of ch k1)" = confirmed ] && [ "$(state_of ch k2)" = confirmed ]'
assert_eq "after restart: k1 confirmed" "$(state_of ch k1)" confirmed
assert_eq "after restart: k1 carries Partoo's id" "$(sql "$DB" "SELECT partoo_message_id FROM outbox WHERE external_message_id = 'k1'")" 610001
assert_eq "after restart: the pending event was reconciled at start (k2 confirmed)" "$(state_of ch k2)" confirmed
assert_eq "after restart: k3 untouched" "$(state_of ch k3)" accepted
assert_eq "no unprocessed event left" "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0

# ---- a burst of echoes, kill -9 in the middle --------------------------------------------------
N=1500
sent0=$(mock_stat '$.webhooks_sent')
mock_post faults '{"echo":true}' >/dev/null
enqueue_n $N burst 200
wait_until 60 '[ $(( $(mock_stat "\$.webhooks_sent") - sent0 )) -ge 400 ]'
kill -9 "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null
sleep 0.5
acked=$(( $(mock_stat '$.webhooks_sent') - sent0 ))
stored=$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE json_extract(body, '\$.payload.message.custom_channel.external_message_id') LIKE 'burst%'")
pending=$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")
echo "# burst: mock got 200 for $acked echoes (failed: $(mock_stat '$.webhooks_failed')), $stored stored, $pending unprocessed at the kill"
assert_ge "every echo answered 200 was stored (stored >= acknowledged)" "$stored" "$acked"
assert_ge "some echoes were answered before the kill" "$acked" 400
wh_serve --max-inflight 64
wait_until 30 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
assert_eq "after restart: every stored event processed" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0
# Every message whose echo was stored before the kill ends confirmed (some were in flight at
# the kill: they go back to the queue, are sent again and confirmed when that send is accepted).
# echoes(): (external id, Partoo id) of every stored echo, joined to its message by key.
ECHOES="WITH e AS MATERIALIZED (SELECT json_extract(body, '\$.payload.message.custom_channel.external_message_id') AS ext, CAST(json_extract(body, '\$.payload.message.id') AS TEXT) AS pid FROM webhook_events) SELECT count(*) FROM e JOIN outbox o ON o.channel_id = 'ch' AND o.external_message_id = e.ext"
wait_until 60 '[ "$(sql "$DB" "$ECHOES WHERE o.state <> '\''confirmed'\''")" = 0 ]'
assert_eq "after restart: every message with a stored echo is confirmed" \
    "$(sql "$DB" "$ECHOES WHERE o.state <> 'confirmed'")" 0
assert_eq "after restart: confirmations match the stored echoes" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id LIKE 'burst%' AND state = 'confirmed'")" "$stored"
assert_eq "confirmed messages carry their echo's Partoo id" \
    "$(sql "$DB" "$ECHOES WHERE o.partoo_message_id IS NOT e.pid")" 0
wait_until 60 '[ "$(count_state queued)" = 0 ] && [ "$(count_state sending)" = 0 ]'
assert_eq "the rest of the burst was delivered" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id LIKE 'burst%' AND state IN ('accepted', 'confirmed')")" $N
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "SIGTERM exit status" "$?" 0

finish
