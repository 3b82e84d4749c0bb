#!/usr/bin/env bash
# A producer's transaction is never the one PostgreSQL fails for serve (issue 15, SPEC §12).
# A producer's INSERT takes its conversations' locks in its own row order; serve's groups
# (enqueues over the API, finishes leaving several lines) take them in theirs. When each
# waits for the other, PostgreSQL fails one of the two after deadlock_timeout: serve gives
# way first (lock_timeout, lib/server.c), so every producer transaction commits, and every
# message, the producers' and the API's, is delivered once.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
start_mock --rate-limit 0
start_pg_node A --rate-limit 0 --max-inflight 32

# Producers: 30 transactions of 10 rows each, over conversations c9 .. c0 (the API's order
# reversed), each a transaction of its own, two at a time.
producer() {
    for t in $(seq "$1" 2 30); do
        q "BEGIN; INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch', 'sql$t-' || g, 'b', 'c' || (9 - g), 'x', 'User' FROM generate_series(0, 9) g ORDER BY g; COMMIT;" \
            >/dev/null 2>>"$T/producer.err" || echo "$t" >>"$T/producer.failed"
    done
}
producer 1 & P1=$!
producer 2 & P2=$!
# The API meanwhile: 30 batches of 20 over c0 .. c9.
for b in $(seq 0 29); do
    body=$(for i in $(seq 0 19); do
        printf '{"channel_id":"ch","external_message_id":"api%d-%d","business_id":"b","external_conversation_id":"c%d","content":"x","sender_type":"User"}\n' "$b" "$i" $((i % 10))
    done | paste -sd, -)
    code=$(curl -sS -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" -d "{\"messages\":[$body]}")
    [ "$code" = 202 ] || echo "$b $code" >>"$T/api.refused"
done
wait "$P1" "$P2"
assert_eq "every producer transaction committed" "$(cat "$T/producer.failed" 2>/dev/null | wc -l)" 0
[ -s "$T/producer.err" ] && head -5 "$T/producer.err" >&2
api_ok=$(( 30 - $(cat "$T/api.refused" 2>/dev/null | wc -l) ))
total=$(( 300 + api_ok * 20 ))
wait_until 60 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = "$total" ]'
assert_eq "every message stored is delivered ($total)" "$(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")" "$total"
mock_get received >"$T/received.tsv"
assert_eq "... each once" "$(cut -f6 "$T/received.tsv" | sort | uniq -d | wc -l)" 0

finish
