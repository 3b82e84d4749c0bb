#!/usr/bin/env bash
# The dashboard's routes on PostgreSQL (issue 15, SPEC §13, 0011_dashboard.sql), against a
# real throwaway cluster and the mock:
#   - /v1/stats/overview: counts per channel and state from the kept counts, equal to a count
#     of the outbox, whoever changed the rows (API, serve, a producer's SQL, a DELETE);
#   - the kept counts fold their deltas within seconds and then equal the outbox's;
#   - /v1/stats/history: the minute's sends and outcomes, equal to the attempts and transitions;
#   - /v1/messages/count, /v1/messages/find, /v1/conversations/...: as on SQLite;
#   - bulk cancel and retry by filter, with what remains.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
api() { curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
jq_py() { python3 -c "import json,sys; d=json.load(open('$T/body')); print($1)"; }
real_counts() { q "SELECT channel_id || ':' || state || ':' || count(*) FROM outbox GROUP BY channel_id, state ORDER BY 1"; }

start_mock --rate-limit 0
start_pg_node A --rate-limit 0
body=$(for i in $(seq 1 30); do
    printf '{"channel_id":"a","external_message_id":"a%d","business_id":"b","external_conversation_id":"c%d","content":"x","sender_type":"User"}\n' "$i" $((i % 3))
done | paste -sd, -)
assert_eq "30 messages in channel a (202)" "$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages" -d "{\"messages\":[$body]}")" 202
wait_until 20 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 30 ]'
# Channel b: held back (due later), so that they stay queued; one fails, one is deleted.
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, next_attempt_at_ms) SELECT 'b', 'b' || g, 'b', 'cb', 'x', 'User', 9000000000000 FROM generate_series(1, 10) g" >/dev/null
q "UPDATE outbox SET state = 'failed', state_reason = 'test' WHERE external_message_id IN ('a1', 'a2')" >/dev/null
q "DELETE FROM outbox WHERE external_message_id = 'a3'" >/dev/null

code=$(api "http://127.0.0.1:$NODE_PORT/v1/stats/overview")
assert_eq "GET /v1/stats/overview: 200" "$code" 200
assert_eq "... counts per channel and state equal the outbox's" \
    "$(jq_py "'\n'.join(sorted(c['channel_id'] + ':' + s + ':' + str(n) for c in d['channels'] for s, n in c['counts'].items() if n))")" \
    "$(real_counts)"
assert_eq "... the totals" "$(jq_py "d['counts']['queued'], d['counts']['accepted'], d['counts']['failed']")" "10 27 2"
echo key-tb | "$OUTBOX_BIN" tenant add tb --api-key-stdin --channel b --db "$PG_URI" >/dev/null
code=$(api "http://127.0.0.1:$NODE_PORT/v1/stats/overview")
assert_eq "... counts per tenant (channel b is tb's, a the default's)" \
    "$(jq_py "' '.join(t['tenant'] + ':' + s + ':' + str(n) for t in d['tenants'] for s, n in t['counts'].items() if n)")" \
    "default:accepted:27 default:failed:2 tb:queued:10"
assert_eq "... and each channel its tenant" "$(jq_py "' '.join(c['channel_id'] + ':' + c['tenant'] for c in d['channels'])")" "a:default b:tb"
wait_until 10 '[ "$(q "SELECT count(*) FROM count_deltas")" = 0 ]'
assert_eq "the deltas are folded within seconds" "$(q "SELECT count(*) FROM count_deltas")" 0
assert_eq "... and the kept counts equal the outbox's" \
    "$(q "SELECT channel_id || ':' || state || ':' || n FROM state_counts WHERE n <> 0 ORDER BY 1")" "$(real_counts)"

code=$(api "http://127.0.0.1:$NODE_PORT/v1/stats/history?range=hour")
assert_eq "GET /v1/stats/history: 200" "$code" 200
assert_eq "... the sends of the hour (one per attempt)" "$(jq_py "sum(d['sent'])")" "$(q "SELECT count(*) FROM attempts")"
assert_eq "... the accepted and failed" "$(jq_py "sum(d['accepted']), sum(d['failed'])")" "30 2"

code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages/count?state=accepted&channel_id=a")
assert_eq "GET /v1/messages/count: 200" "$code" 200
assert_eq "... the accepted of a" "$(jq_py "d['count'], d['capped']")" "27 False"
code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages/count?channel_id=b&created_after=2020-01-01T00:00:00Z")
assert_eq "... any state, a created_at window" "$(jq_py "d['count']")" 10
code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages/find?external_message_id=b4")
assert_eq "GET /v1/messages/find: the channel holding it" "$(jq_py "[m['channel_id'] for m in d['matches']]")" "['b']"
# The same id in three channels (one sorting between a and b, one after): each is found, in
# byte order, through the key index one channel at a time.
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, next_attempt_at_ms) VALUES ('Z', 'b4', 'b', 'cz', 'x', 'User', 9000000000000), ('ab', 'b4', 'b', 'cz', 'x', 'User', 9000000000000), ('c', 'b4', 'b', 'cz', 'x', 'User', 9000000000000)" >/dev/null
code=$(api "http://127.0.0.1:$NODE_PORT/v1/messages/find?external_message_id=b4")
assert_eq "... in every channel that has it" "$(jq_py "[m['channel_id'] for m in d['matches']]")" "['Z', 'ab', 'b', 'c']"
q "DELETE FROM outbox WHERE channel_id IN ('Z', 'ab', 'c')" >/dev/null
code=$(api "http://127.0.0.1:$NODE_PORT/v1/conversations/b/cb?limit=3")
assert_eq "GET /v1/conversations: its line, the head first" \
    "$(jq_py "[m['external_message_id'] for m in d['messages']], d['messages'][0]['head'], d['truncated']")" \
    "['b1', 'b2', 'b3'] True True"
code=$(api "http://127.0.0.1:$NODE_PORT/v1/conversations/a/c1")
assert_eq "... a finished conversation: its last message" "$(jq_py "len(d['messages'])")" 1

code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages/cancel?state=queued&channel_id=b&limit=4")
assert_eq "bulk cancel: 200" "$code" 200
assert_eq "... 4 touched, 6 remaining" "$(jq_py "d['touched'], d['remaining']")" "4 6"
assert_eq "... the first four of the line cancelled" \
    "$(q "SELECT string_agg(external_message_id, ' ' ORDER BY id) FROM outbox WHERE state = 'cancelled'")" "b1 b2 b3 b4"
code=$(api -X POST "http://127.0.0.1:$NODE_PORT/v1/messages/retry?state=failed")
assert_eq "bulk retry of the failed: 200, 2 touched" "$code $(jq_py "d['touched']")" "200 2"
wait_until 10 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 29 ]'
assert_eq "... and sent again" "$(q "SELECT count(*) FROM outbox WHERE state = 'accepted'")" 29
assert_eq "... and by whom, in the history" \
    "$(q "SELECT count(*) FROM transitions WHERE reason = 'retried in bulk by api'")" 2
code=$(api "http://127.0.0.1:$NODE_PORT/v1/stats/overview")
assert_eq "the overview after all that still equals the outbox" \
    "$(jq_py "'\n'.join(sorted(c['channel_id'] + ':' + s + ':' + str(n) for c in d['channels'] for s, n in c['counts'].items() if n))")" \
    "$(real_counts)"
assert_eq "the dashboard's page is served" "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NODE_PORT/ui/")" 200

finish
