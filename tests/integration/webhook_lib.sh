# tests/integration/webhook_lib.sh: helpers shared by the test_webhook_*.sh scripts (sourced
# after lib.sh; not a test itself, so CTest's test_*.sh glob does not pick it up).
#
# The mock signs its webhooks with the RFC 8032 test seed below and prints the public key.
# serve listens on two fixed free ports so that the mock can be told the webhook URL before
# serve starts.

SEED=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
WH_PORT=$(free_port)
API_PORT=$(free_port)
WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo
API=http://127.0.0.1:$API_PORT

# start_wh_mock [mock options]: the mock, posting its webhooks to serve; sets PUB.
start_wh_mock() {
    start_mock --rate-limit 0 --webhook-url "$WH_URL" --webhook-seed "$SEED" "$@"
    PUB=$(mock_pubkey) || exit 1
}
# wh_serve_nokey [serve options]: serve with both listeners on our ports, no key option.
wh_serve_nokey() {
    start_serve --webhook-listen "127.0.0.1:$WH_PORT" --api-listen "127.0.0.1:$API_PORT" \
        --rate-limit 0 "$@"
    wait_until 10 'curl -fsS -o /dev/null "$API/healthz"' || { echo "api not up"; cat "$T/serve.log"; exit 1; }
}
# wh_serve [serve options]: the same, trusting the mock's key, with quick retries.
wh_serve() { wh_serve_nokey --webhook-public-key "$PUB" --retry-base 100ms --retry-cap 300ms "$@"; }
# wh_send JSON: one event through the mock's /_mock/webhook; prints the receiver's status.
wh_send() { jget "$(mock_post webhook "$1")" '$.status'; }
# msg_field CHANNEL EXT_ID PATH: one field of `outbox show --json`.
msg_field() { jget "$("$OUTBOX_BIN" show --db "$DB" --json "$1" "$2")" "$3"; }
