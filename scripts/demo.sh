#!/usr/bin/env bash
# The main job, end to end: start `outbox serve` against Partoo, enqueue sample messages
# and show them delivered. Without OUTBOX_PARTOO_API_KEY it runs against the local mock
# Partoo (tests/mock_partoo), so it works on a machine with no network.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/outbox
MOCK=build/mock_partoo
WORK=$(mktemp -d /tmp/outbox-demo.XXXXXX)
DB=$WORK/outbox.db
pids=()
cleanup() { for p in "${pids[@]:-}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

if [ -z "${OUTBOX_PARTOO_API_KEY:-}" ]; then
    "$MOCK" --listen 127.0.0.1:0 --port-file "$WORK/mock.port" --quiet 2>"$WORK/mock.log" &
    pids+=($!)
    for _ in $(seq 100); do [ -s "$WORK/mock.port" ] && break; sleep 0.05; done
    BASE_URL=http://127.0.0.1:$(cat "$WORK/mock.port")/v2
    export OUTBOX_PARTOO_API_KEY=demo-key
    echo "No OUTBOX_PARTOO_API_KEY set: using the local mock Partoo at $BASE_URL."
    echo "To deliver to the real Partoo: export OUTBOX_PARTOO_API_KEY=<your key> and run again"
    echo "(and set OUTBOX_DEMO_CHANNEL to one of your custom channel ids)."
else
    BASE_URL=${OUTBOX_PARTOO_BASE_URL:-https://api.partoo.co/v2}
    echo "Delivering to $BASE_URL with the API key from OUTBOX_PARTOO_API_KEY."
fi
CHANNEL=${OUTBOX_DEMO_CHANNEL:-demo-channel}

echo
echo "== enqueue 5 messages in 2 conversations (JSON Lines on stdin)"
RUN=demo-$(date +%s)
for i in 1 2 3 4 5; do
    printf '{"channel_id":"%s","external_message_id":"%s-%d","business_id":"demo-business","external_conversation_id":"conv-%d","content":"Hello from partoo-outbox, message %d","sender_type":"Consumer","consumer_name":"Demo Customer"}\n' \
        "$CHANNEL" "$RUN" "$i" $((i % 2)) "$i"
done | "$BIN" enqueue --db "$DB"

echo
echo "== start outbox serve"
"$BIN" serve --db "$DB" --partoo-base-url "$BASE_URL" --log-level warn &
pids+=($!)
for _ in $(seq 100); do
    [ "$(sqlite3 "$DB" "SELECT count(*) FROM outbox WHERE state IN ('queued','sending')" 2>/dev/null)" = 0 ] && break
    sleep 0.1
done

echo
echo "== outbox status"
"$BIN" status --db "$DB"
echo
echo "== outbox ls"
"$BIN" ls --db "$DB"
first=$RUN-1
echo
echo "== outbox show $CHANNEL $first"
"$BIN" show --db "$DB" "$CHANNEL" "$first"
echo
echo "Database kept at $DB (try: $BIN audit --db $DB --format csv)."
