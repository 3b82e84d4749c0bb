#!/usr/bin/env bash
# Pause means hold (SPEC §13): `outbox pause --channel C` holds C's queued messages (not
# claimed, no attempt used), status and /metrics show the hold, `outbox resume` lets them
# drain, and the time they were held does not count toward max_age.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

check_usage() { "$OUTBOX_BIN" "$@" --db "$DB" >/dev/null 2>&1; echo $?; }
assert_eq "pause without --channel is a usage error" "$(check_usage pause)" 2
assert_eq "pause --tenant of a tenant that does not exist fails" "$(check_usage pause --tenant t1)" 1
assert_eq "pause with --tenant and --channel is a usage error" "$(check_usage pause --tenant t1 --channel ch)" 2
assert_eq "pause of a long channel is refused" "$(check_usage pause --channel "$(head -c 300 /dev/zero | tr '\0' x)")" 2
assert_eq "nothing recorded by refused pauses" "$(sql "$DB" "SELECT count(*) FROM pauses" 2>/dev/null || echo 0)" 0

start_mock --rate-limit 0
assert_contains "CLI pause" "$("$OUTBOX_BIN" pause --db "$DB" --channel ch --reason maintenance)" "channel ch paused"
assert_contains "pausing again changes nothing" "$("$OUTBOX_BIN" pause --db "$DB" --channel ch --json)" '"changed":false'
enqueue_n 2 m
printf '{"channel_id":"free","external_message_id":"other1","business_id":"b1","external_conversation_id":"f1","content":"hi","sender_type":"Consumer"}\n' |
    "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
api_serve --max-age 2s --retry-base 100ms --retry-cap 200ms --rate-limit 0
wait_until 10 '[ "$(state_of free other1)" = accepted ]' || fail "an unpaused channel is sent"
sleep 2.5 # longer than max_age, held the whole time
assert_eq "held messages stay queued" "$(count_state queued)" 2
assert_eq "held messages used no attempt" "$(sql "$DB" "SELECT sum(attempts) FROM outbox WHERE channel_id = 'ch'")" 0
assert_eq "Partoo saw only the unpaused message" "$(mock_stat '$.received')" 1
assert_contains "status shows the hold" "$("$OUTBOX_BIN" status --db "$DB")" "held: channel ch"
assert_contains "status --json lists it" "$("$OUTBOX_BIN" status --db "$DB" --json)" '"holds":[{"scope":"channel","channel_id":"ch","reason":"maintenance","by":"cli"'
req GET /metrics
assert_contains "/metrics shows the hold" "$RESP" 'outbox_channel_held{channel="ch"} 1'
req GET /v1/stats
assert_contains "/v1/stats shows the hold" "$RESP" '"holds":[{"scope":"channel","channel_id":"ch"'

# After the resume the first try fails (500): a message older than max_age would fail for
# good if the time it was held counted.
mock_post faults '{"script":[500]}' >/dev/null
assert_contains "CLI resume" "$("$OUTBOX_BIN" resume --db "$DB" --channel ch)" "channel ch resumed"
wait_until 15 '[ "$(count_state accepted)" = 3 ]' || fail "held messages drain after the resume"
assert_eq "no message failed by max_age for time it was held" "$(count_state failed)" 0
assert_eq "the 500 was retried" "$(sql "$DB" "SELECT sum(attempts) FROM outbox WHERE channel_id = 'ch'")" 3
req GET /metrics
assert_not_contains "/metrics: hold gone" "$RESP" 'outbox_channel_held{'
assert_contains "resuming again changes nothing" "$("$OUTBOX_BIN" resume --db "$DB" --channel ch)" "was not paused"
finish
