#!/usr/bin/env bash
# Outage: with the mock down for 20 s the sender makes a bounded number of attempts
# (circuit breaker, no retry storm, no dead letters), then catches up on its own.
. "$(dirname "$0")/lib.sh"

N=200
start_mock --rate-limit 0
mock_post faults '{"down":true}' >/dev/null
enqueue_n $N d 50
start_serve --rate-limit 0 --max-inflight 8 --retry-base 100ms --retry-cap 2s --max-attempts 3
sleep 20
during=$(sql "$DB" "SELECT count(*) FROM attempts")
assert_le "bounded attempts during a 20 s outage ($during)" "$during" 30
assert_eq "nothing dead-lettered during the outage" "$(count_state failed)" 0
mock_post faults '{"down":false}' >/dev/null
wait_until 60 '[ "$(count_state accepted)" = $N ]'
assert_eq "full catch-up after the outage" "$(count_state accepted)" $N
assert_eq "mock saw every key" "$(mock_stat '$.unique')" $N

finish
