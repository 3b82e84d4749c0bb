#!/usr/bin/env bash
# Pacing: rate_limit = 120/min against a mock enforcing 120/min on a sliding minute.
# Over more than a minute there must be zero 429s, and throughput within 10% of the limit.
. "$(dirname "$0")/lib.sh"

N=130
start_mock --rate-limit 120
enqueue_n $N p
t0=$(now_ms)
start_serve --rate-limit 120/min --max-inflight 8
wait_until 120 '[ "$(count_state accepted)" = $N ]'
elapsed=$(( $(now_ms) - t0 ))
assert_eq "all delivered" "$(count_state accepted)" $N
assert_eq "zero 429 from the mock" "$(mock_stat '$.rate_limited')" 0
# N messages at 2/s take (N-1)/2 s after the first; accept 10% either way.
expected=$(( (N - 1) * 500 ))
assert_ge "not faster than the limit (elapsed ${elapsed} ms)" "$elapsed" $(( expected * 90 / 100 ))
assert_le "within 10% of the limit (elapsed ${elapsed} ms)" "$elapsed" $(( expected * 110 / 100 + 1500 ))

finish
