#!/bin/sh
# Enqueue one message over the producer API of `outbox serve` with curl.
#
#   PARTOO_OUTBOX_URL=http://127.0.0.1:8787 OUTBOX_API_TOKEN=... \
#       sh enqueue.sh CHANNEL MESSAGE_ID BUSINESS CONVERSATION CONTENT
#
# Prints the JSON answer, {"id":..,"state":"queued","duplicate":false}, once the message is
# committed (HTTP 202); exit status 1 (and the error document on stderr) otherwise.
# --retry re-sends after a timeout or a 503 (honouring Retry-After): the same key is a
# duplicate, never a second message. The values must not contain a double quote or a
# backslash here; build the body with a JSON tool (jq -n --arg ...) for arbitrary text.
# The token is read from a file descriptor, not put on the command line (argv is public).
set -eu
[ $# -eq 5 ] || { echo "usage: enqueue.sh CHANNEL MESSAGE_ID BUSINESS CONVERSATION CONTENT" >&2; exit 2; }
API=${PARTOO_OUTBOX_URL:-http://127.0.0.1:8787}
body=$(printf '{"channel_id":"%s","external_message_id":"%s","business_id":"%s","external_conversation_id":"%s","content":"%s","sender_type":"User"}' "$1" "$2" "$3" "$4" "$5")
out=$(mktemp)
trap 'rm -f "$out"' EXIT
status=$(printf 'header = "Authorization: Bearer %s"\n' "${OUTBOX_API_TOKEN:-}" |
    curl -sS --retry 4 --retry-max-time 60 -o "$out" -w '%{http_code}' -X POST \
        -H 'Content-Type: application/json' ${OUTBOX_API_TOKEN:+--config -} \
        --data-binary "$body" "$API/v1/messages")
if [ "$status" = 202 ]; then
    cat "$out"; echo
else
    echo "HTTP $status: $(cat "$out")" >&2
    exit 1
fi
