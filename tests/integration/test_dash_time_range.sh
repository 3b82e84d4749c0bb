#!/usr/bin/env bash
# The messages view's time range (SPEC §13): created_after (inclusive) and created_before
# (exclusive) on GET /v1/messages, /v1/messages/count and the bulk routes: exactly the
# messages created in the window, paged by cursor across it; a bad time is a 400 naming the
# field and changes nothing; a bulk cancel touches only the window; gaps in the ids (purged
# rows) do not mislead the binary search that finds the window's id range.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

T0=1767225600000 # 2026-01-01T00:00:00Z; message wI is created at T0 + I s
at() { printf '2026-01-01T00:00:%02d.000Z' "$1"; }
start_mock --rate-limit 0
api_serve --rate-limit 0
# held: they stay queued (both channels: the worker would send tz's, and the counts and bulk
# cancels below expect every message queued)
req POST /v1/pause '{"channel_id":"tw"}'
req POST /v1/pause '{"channel_id":"tz"}'
rows=""
for i in $(seq 0 9); do
    # an other channel's message between each two: ids of the window are not contiguous
    rows+="('tw', 'w$i', 'b', 'c$i', 'x', 'User', $((T0 + i * 1000))),"
    rows+="('tz', 'z$i', 'b', 'z$i', 'x', 'User', $((T0 + i * 1000 + 500))),"
done
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, created_at_ms) VALUES ${rows%,}"

req GET "/v1/messages?channel_id=tw&created_after=$(at 3)&created_before=$(at 7)"
assert_eq "the window, newest first (after inclusive, before exclusive)" "$(ids)" "w6 w5 w4 w3"
req GET "/v1/messages?created_after=2026-01-01T01:00:03%2B01:00&created_before=$(at 4)"
assert_eq "an offset is honoured, other channels included" "$(ids)" "z3 w3"
req GET "/v1/messages?channel_id=tw&created_after=$(at 8)"
assert_eq "only a lower bound" "$(ids)" "w9 w8"
req GET "/v1/messages?channel_id=tw&created_before=2026-01-01T00:00:01.001Z"
assert_eq "only an upper bound, to the millisecond" "$(ids)" "w1 w0"
req GET "/v1/messages?created_before=$(at 0)"
assert_eq "an empty window" "$(ids)" ""
req GET "/v1/messages?state=queued&channel_id=tw&created_after=$(at 4)&created_before=2026-01-01T00:00:04.000001Z"
assert_eq "with a state" "$(ids)" "w4"

# paging across the window: every message once, in order
all="" cursor="" pages=0
while [ $pages -lt 10 ]; do
    req GET "/v1/messages?channel_id=tw&limit=2&created_after=$(at 2)&created_before=$(at 9)${cursor:+&cursor=$cursor}"
    all+="$(ids) "
    pages=$((pages + 1))
    cursor=$(jx "$RESP" "json_extract(j,'\$.next_cursor')")
    [ -n "$cursor" ] || break
done
assert_eq "cursor paging across the window" "$(echo $all)" "w8 w7 w6 w5 w4 w3 w2"

for f in created_after created_before; do
    for v in yesterday 2026-01-01 2026-13-01T00:00:00Z 2026-01-01T00:00:00 2026-01-01T00:00:00Z.5; do
        req GET "/v1/messages?$f=$v"
        assert_eq "list: $f=$v refused" "$(errsig)" "400 invalid_value $f"
    done
    req GET "/v1/messages/count?state=queued&$f=x"
    assert_eq "count: bad $f refused" "$(errsig)" "400 invalid_value $f"
    req POST "/v1/messages/cancel?state=queued&$f=x"
    assert_eq "bulk: bad $f refused" "$(errsig)" "400 invalid_value $f"
done
assert_eq "a refused bulk changed nothing" "$(count_state cancelled)" 0

req GET "/v1/messages/count?state=queued&channel_id=tw&created_after=$(at 3)&created_before=$(at 7)"
assert_eq "count respects the window" "$RESP" '{"count":4,"capped":false}'
req POST "/v1/messages/cancel?state=queued&created_after=$(at 3)&created_before=$(at 5)&limit=3"
assert_eq "bulk cancel is bounded and counts the window" "$RESP" '{"touched":3,"remaining":1,"capped":false}'
req POST "/v1/messages/cancel?state=queued&created_after=$(at 3)&created_before=$(at 5)&limit=3"
assert_eq "and finishes the window" "$RESP" '{"touched":1,"remaining":0,"capped":false}'
assert_eq "exactly the window's messages cancelled" \
    "$(sql "$DB" "SELECT group_concat(external_message_id, ' ') FROM (SELECT external_message_id FROM outbox WHERE state = 'cancelled' ORDER BY id)")" \
    "w3 z3 w4 z4"
assert_eq "the rest still queued" "$(count_state queued)" 16

# gaps in the ids (purged rows) do not mislead the binary search
sql "$DB" "DELETE FROM outbox WHERE channel_id = 'tz' OR external_message_id IN ('w0', 'w5')"
req GET "/v1/messages?created_after=$(at 1)&created_before=$(at 8)"
assert_eq "the window over gaps" "$(ids)" "w7 w6 w4 w3 w2 w1"
req GET "/v1/messages?created_after=$(at 5)&created_before=2026-01-01T00:00:05.999Z"
assert_eq "a window on a gap is empty" "$(ids)" ""
finish
