#!/usr/bin/env bash
# SQLite stays single-node (SPEC §12): a second `outbox serve` on the same database file is
# refused at once with a clear message and a non-zero exit, and the first goes on serving.
. "$(dirname "$0")/lib.sh"

start_mock
start_serve
FIRST=$SERVE_PID
OUTBOX_PARTOO_API_KEY=test-key timeout 20 "$OUTBOX_BIN" serve --db "$DB" \
    --partoo-base-url "$MOCK_URL" --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 \
    >"$T/second.log" 2>&1
code=$?
assert_eq "second serve: exit 1 (not killed by the timeout)" "$code" 1
assert_contains "second serve: says why" "$(cat "$T/second.log")" \
    "another outbox serve is running on this database: a SQLite outbox has one serve"
assert_eq "the first serve still runs" "$(kill -0 "$FIRST" 2>/dev/null && echo yes)" yes
enqueue_n 3
wait_until 20 '[ "$(count_state accepted)" = 3 ]'
assert_eq "the first serve still delivers" "$(count_state accepted)" 3
finish
