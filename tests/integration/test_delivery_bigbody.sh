#!/usr/bin/env bash
# A message whose Partoo request body is larger than any fixed buffer is sent once and ends
# failed on Partoo's answer; it never loops, and the rest of its business is delivered
# (issue 19 finding 1). Three ways to make such a body: 1 MiB of content with
# max_content_bytes = 1M, 1 MiB of content by a plain SQL INSERT (the schema allows it under
# the defaults), and ~175 KiB of control characters, which JSON escaping grows six times.
. "$(dirname "$0")/lib.sh"

start_mock --rate-limit 0
python3 - "$T/big.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for ext, content in (("big-plain", "a" * 1048576), ("big-ctl", "\x01" * (175 * 1024))):
        f.write(json.dumps({"channel_id": "ch", "external_message_id": ext, "business_id": "b1",
                            "external_conversation_id": ext, "content": content,
                            "sender_type": "Consumer"}) + "\n")
PY
assert_status "enqueue 1 MiB and 175 KiB of control characters (max_content_bytes 1M)" 0 \
    "$OUTBOX_BIN" enqueue --db "$DB" --max-content-bytes 1M --max-body-bytes 4M < "$T/big.jsonl"
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id,
    external_conversation_id, content, sender_type)
    VALUES ('ch', 'big-sql', 'b1', 'big-sql', replace(hex(zeroblob(524288)), '0', 'b'), 'User')"
assert_eq "plain SQL row holds 1 MiB" \
    "$(sql "$DB" "SELECT length(content) FROM outbox WHERE external_message_id = 'big-sql'")" 1048576
enqueue_n 30 ok

start_serve --rate-limit 0 --retry-base 100ms --retry-cap 500ms
wait_until 30 '[ "$(count_state accepted)" = 30 ] && [ "$(count_state failed)" = 3 ]'
assert_eq "the 30 other messages of the business are delivered" "$(count_state accepted)" 30
for ext in big-plain big-sql big-ctl; do
    assert_eq "$ext: failed" \
        "$(sql "$DB" "SELECT state FROM outbox WHERE external_message_id = '$ext'")" failed
    assert_eq "$ext: one attempt, answered 413" \
        "$(sql "$DB" "SELECT o.attempts || ' ' || group_concat(a.http_status) FROM outbox o
                      JOIN attempts a ON a.message_id = o.id WHERE o.external_message_id = '$ext'")" \
        "1 413"
    assert_contains "$ext: last_error names the status" \
        "$(sql "$DB" "SELECT last_error FROM outbox WHERE external_message_id = '$ext'")" "413"
    assert_eq "$ext: queued -> sending -> failed, nothing more" \
        "$(sql "$DB" "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id
                      WHERE o.external_message_id = '$ext'")" 2
done
assert_eq "the mock saw 33 requests" "$(mock_stat '$.requests')" 33
assert_contains "the failure is logged" "$(cat "$T/serve.log")" "big-ctl"
finish
