#!/usr/bin/env bash
# tests/integration/test_reload_safety.sh: what a SIGHUP reload may not do (issue 19 #2, #15).
#
# A reload that removes api_token while the API listens on a non-loopback address is refused
# (the running configuration stays, the log says why), like serve refusing to start so. A reload
# that changes keys read only at start (listeners, ca_file, timeouts) warns, naming each key.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_reload_safety.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
start_mock

PORT=$(free_port)
TOK=reload-token-0123456789
API=http://127.0.0.1:$PORT
code() { curl -sS -o /dev/null -w '%{http_code}' "$@"; }
hups() { grep -c "reload" "$T/serve.log"; }

printf 'api_token = %s\nconnect_timeout = 10s\n' "$TOK" > "$T/outbox.conf"
start_serve --config "$T/outbox.conf" --api-listen "0.0.0.0:$PORT"
wait_until 10 '[ "$(code "$API/healthz")" = 200 ]'
assert_eq "with the token: 200" "$(code -H "Authorization: Bearer $TOK" "$API/v1/stats")" 200
assert_eq "without the token: 401" "$(code "$API/v1/stats")" 401

# The token goes from the file; SIGHUP.
printf 'connect_timeout = 10s\n' > "$T/outbox.conf"
kill -HUP "$SERVE_PID"
wait_until 10 'grep -q "reload refused" "$T/serve.log"' || fail "no 'reload refused' in the log"
assert_contains "the log says why" "$(grep 'reload refused' "$T/serve.log")" \
    "api_token removed while api_listen is not a loopback address"
assert_not_contains "the token is not logged" "$(cat "$T/serve.log")" "$TOK"
assert_eq "after the refused reload, without the token: still 401" "$(code "$API/v1/stats")" 401
assert_eq "... and the token still works" \
    "$(code -H "Authorization: Bearer $TOK" "$API/v1/stats")" 200

# Keys read only at start: the reload applies, with one warning per key (the listeners are
# flags of start_serve, which win over the file, so they are not exercised here).
printf 'api_token = %s\nconnect_timeout = 5s\nrequest_timeout = 7s\nca_file = /etc/hostname\nsynchronous = normal\n' \
    "$TOK" > "$T/outbox.conf"
kill -HUP "$SERVE_PID"
wait_until 10 'grep -q "configuration reloaded" "$T/serve.log"' || fail "the reload was not applied"
for key in connect_timeout request_timeout ca_file synchronous; do
    assert_contains "a restart warning names $key" \
        "$(grep 'needs a restart' "$T/serve.log")" "key=$key"
done
assert_not_contains "unchanged api_listen is not named" "$(grep 'needs a restart' "$T/serve.log")" \
    "key=api_listen"
assert_eq "the token still works after it" \
    "$(code -H "Authorization: Bearer $TOK" "$API/v1/stats")" 200

kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
assert_eq "serve stops with exit 0" "$?" 0
finish
