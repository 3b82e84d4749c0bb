#!/usr/bin/env bash
# The API key in a running serve (issue 19 finding 13): no core dump can carry it (core size
# limit 0, not dumpable), and OUTBOX_PARTOO_API_KEY is gone from its environment
# (/proc/PID/environ, children). A SIGHUP reload still uses the same key.
. "$(dirname "$0")/lib.sh"

KEY=k3y-$$-in-memory-only
API_KEY=$KEY
start_mock --rate-limit 0 --api-keys "$KEY"
start_serve --rate-limit 0
wait_until 10 'grep -q msg=serving "$T/serve.log"'
assert_eq "core file size limit is 0" \
    "$(awk '/^Max core file size/ {print $5 "/" $6}' "/proc/$SERVE_PID/limits")" "0/0"
# /proc/PID/environ shows the environment block the process started with: the variable's
# name stays there, its value is overwritten in place.
if grep -aq "$KEY" "/proc/$SERVE_PID/environ"; then
    fail "the key's value still in /proc/PID/environ"
else
    pass "the key's value not in /proc/PID/environ"
fi
enqueue_n 1 before
wait_until 10 '[ "$(count_state accepted)" = 1 ]'
kill -HUP "$SERVE_PID"
wait_until 10 'grep -q "configuration reloaded" "$T/serve.log"'
assert_contains "reload succeeded" "$(cat "$T/serve.log")" "configuration reloaded"
enqueue_n 1 after
wait_until 10 '[ "$(count_state accepted)" = 2 ]'
assert_eq "after the reload the same key is still sent" "$(count_state accepted)" 2
assert_eq "the mock saw only accepted keys" "$(mock_stat '$.rejected."401"')" ""
assert_not_contains "the key is not logged" "$(cat "$T/serve.log")" "$KEY"
finish
