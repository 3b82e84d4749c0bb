#!/usr/bin/env bash
# http:// base and inbox URLs only to loopback hosts (issue 19 finding 12): the API key and
# the replies would otherwise cross the network in clear text. The error names the key;
# loopback spelled any way is fine. Nothing here connects anywhere.
. "$(dirname "$0")/lib.sh"

for url in http://10.1.2.3/v2 http://0.0.0.0:9/v2 http://[::ffff:192.168.0.1]/v2; do
    assert_status "flag: partoo_base_url $url refused" 1 "$OUTBOX_BIN" status --db "$DB" \
        --partoo-base-url "$url"
    assert_contains "flag: the error names the key" "$(cat "$T/last.err")" \
        "'partoo_base_url': http:// is allowed only to a loopback host"
done
printf 'inbox_url = http://192.0.2.7/replies\n' > "$T/bad.conf"
assert_status "file: inbox_url to another host refused" 1 "$OUTBOX_BIN" status --db "$DB" \
    --config "$T/bad.conf"
assert_contains "file: the error names the key" "$(cat "$T/last.err")" "'inbox_url'"
assert_status "env: OUTBOX_INBOX_URL to another host refused" 1 env OUTBOX_INBOX_URL=http://192.0.2.7/r \
    "$OUTBOX_BIN" status --db "$DB"
for url in http://127.0.0.1:9/v2 http://127.1/v2 http://localhost/v2 http://[::1]:9/v2 \
           https://192.0.2.7/v2; do
    assert_status "partoo_base_url $url accepted" 0 "$OUTBOX_BIN" status --db "$DB" \
        --partoo-base-url "$url" --inbox-url "${url%/v2}/in"
done
finish
