#!/usr/bin/env bash
# A pause over the API holds messages the worker had already claimed ahead (its `ready`
# list, up to 2 x max_inflight): they go back to `queued` unsent; only the requests already
# in flight at the pause finish.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

INFLIGHT=2
start_mock --rate-limit 0 --delay-ms 1500   # slow answers: claimed messages wait in `ready`
enqueue_n 12 p 12
api_serve --rate-limit 0 --max-inflight $INFLIGHT
wait_until 10 '[ "$(mock_stat '\''$.requests'\'')" -ge $INFLIGHT ]' || fail "first requests sent"
wait_until 5 '[ "$(count_state sending)" -gt $INFLIGHT ]' || fail "messages claimed ahead"
req POST /v1/pause '{"channel_id":"ch","reason":"test"}'
assert_eq "pause accepted" "$CODE" 200
sent_at_pause=$(mock_stat '$.requests')
sleep 4   # the in-flight answers (1.5 s) come back; nothing new may start
assert_eq "no request after the pause beyond those in flight" "$(mock_stat '$.requests')" "$sent_at_pause"
assert_eq "nothing left in sending" "$(count_state sending)" 0
assert_eq "the rest is queued (held)" "$(count_state queued)" $(( 12 - sent_at_pause ))
assert_eq "released messages used no attempt" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state = 'queued' AND attempts > 0")" 0
req POST /v1/resume '{"channel_id":"ch"}'
wait_until 30 '[ "$(count_state accepted)" = 12 ]' || fail "all delivered after resume"
assert_eq "each message sent once" "$(mock_stat '$.duplicates')" 0
finish
