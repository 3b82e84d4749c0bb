#!/usr/bin/env bash
# tests/integration/test_cli_secrets.sh: secrets stay off the command line, and api_token is long
# enough (issue 19 #7, #17).
#
# A process's argv is readable by every local user (ps, /proc/PID/cmdline), so a secret key
# given as a flag is a usage error that points to OUTBOX_<KEY>; api_token shorter than 16
# bytes is a configuration error naming the key, never the value.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_cli_secrets.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
B=$OUTBOX_BIN

for flag in api-token webhook-path-secret webhook-required-header; do
    env=OUTBOX_$(echo "$flag" | tr 'a-z-' 'A-Z_')
    for cmd in status serve doctor; do
        assert_status "$cmd --$flag is a usage error" 2 timeout 20 "$B" "$cmd" --db "$DB" \
            "--$flag" "X-Secret-Value: 0123456789abcdef"
        assert_contains "$cmd --$flag points to $env" "$(cat "$T/last.err")" "$env"
        assert_not_contains "$cmd --$flag does not echo the value" "$(cat "$T/last.err")" \
            "0123456789abcdef"
    done
    assert_status "--$flag=VALUE is a usage error too" 2 "$B" status --db "$DB" \
        "--$flag=X-Secret-Value: 0123456789abcdef"
done
assert_status "--partoo-api-key is a usage error" 2 "$B" status --db "$DB" --partoo-api-key k-0123456789
assert_contains "... pointing to OUTBOX_PARTOO_API_KEY" "$(cat "$T/last.err")" OUTBOX_PARTOO_API_KEY
assert_not_contains "... without the value" "$(cat "$T/last.err")" k-0123456789
assert_eq "refused flags create no database" "$(ls "$DB" 2>/dev/null)" ""
assert_contains "--help says where secrets come from" "$("$B" status --help)" "OUTBOX_<KEY>"

# The environment and the file still work.
assert_status "OUTBOX_API_TOKEN is accepted" 0 env OUTBOX_API_TOKEN=tok-0123456789abcdef \
    "$B" status --db "$DB"
printf 'api_token = tok-0123456789abcdef\n' > "$T/ok.conf"
assert_status "api_token in the file is accepted" 0 "$B" status --db "$DB" --config "$T/ok.conf"

# ---- api_token: at least 16 bytes ---------------------------------------------------------
assert_status "a 15-byte OUTBOX_API_TOKEN is refused" 1 env OUTBOX_API_TOKEN=tok-0123456789a \
    "$B" status --db "$DB"
assert_contains "the error names api_token" "$(cat "$T/last.err")" "api_token"
assert_contains "the error gives the minimum" "$(cat "$T/last.err")" "16 bytes"
assert_not_contains "the error does not echo the token" "$(cat "$T/last.err")" "tok-0123456789a"
printf 'api_token = s3cret\n' > "$T/short.conf"
assert_status "a short api_token in the file is refused" 1 "$B" status --db "$DB" \
    --config "$T/short.conf"
assert_contains "... naming the file and key" "$(cat "$T/last.err")" "short.conf:1"
assert_status "serve refuses a short token" 1 timeout 20 env OUTBOX_PARTOO_API_KEY=k \
    OUTBOX_API_TOKEN=short "$B" serve --db "$T/s.db" --api-listen 127.0.0.1:0 \
    --webhook-listen 127.0.0.1:0
assert_contains "serve names api_token" "$(cat "$T/last.err")" "api_token"

finish
