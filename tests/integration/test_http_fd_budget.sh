#!/usr/bin/env bash
# tests/integration/test_http_fd_budget.sh: serve sizes each listener's connection cap from
# RLIMIT_NOFILE, logs the budget, and clients beyond the cap wait in the backlog instead of
# running serve out of descriptors (issue 12).
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_http_fd_budget.sh
. "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/api_lib.sh"

start_mock --rate-limit 0
# From here on this shell, serve and the clients have a hard limit of 128 descriptors and a
# soft one of 64, which serve raises.
ulimit -n 128
ulimit -Sn 64
api_serve
line=$(grep 'msg="descriptor budget"\|msg=descriptor budget' "$T/serve.log" | tail -1)
echo "# $line"
assert_contains "budget logged: nofile raised to the hard limit" "$line" "nofile=128 raised=1"
for part in fixed sqlite libcurl inbox verify_pool listening; do
    assert_contains "budget logged: $part" "$line" " $part="
done
# 128 - (16 + 12 + 2*16+4 + 12 + 2 + 2) = 48 (SQLite: three connections, each with its WAL
# and shared memory), 24 per listener, 1.25 x connections + 1 each.
assert_contains "budget logged: 18 connections per listener" "$line" "connections_per_listener=18"
assert_contains "budget logged: 5 lingering per listener" "$line" "lingering_per_listener=5"

# 100 clients at once, five times the cap: all answered, one after another.
(ulimit -Sn 128; python3 "$(dirname "$0")/http_client.py" many "${API##*:}" 100) > "$T/many.txt"
assert_eq "100 clients at once: all answered 200" "$(grep -c '^200' "$T/many.txt")" 100
assert_not_contains "serve never ran out of descriptors" "$(cat "$T/serve.log")" "Too many open files"
req GET /healthz
assert_eq "serve still answers" "$CODE" 200
finish
