#!/usr/bin/env bash
# serve on PostgreSQL claims its rows by their primary key, one probe each, whatever its
# plans estimate (store_pg.c, PROBE_BY_ID). A session's plan for a prepared statement cannot
# know how few rows a claim takes: with 20,000 messages in the outbox, most of them waiting,
# the claim's plan hashed a scan of the whole table for every claim of a few messages
# (6.7 ms each at 20,000 rows, measured 2026-12-07). The audit sealer's reads of the outbox
# (store_pg_audit.c) probe it the same way.
#
# The measure is PostgreSQL's own count of sequential scans of the outbox
# (pg_stat_user_tables.seq_scan) while a node takes 300 more messages one POST at a time
# and delivers them 4 in flight (some 80 claims, each of which scanned the table before),
# then 5,000 a producer inserts in SQL (the sealer's reads scanned it for those).
# (The enqueue check's OFFSET 0 mends a plan that only an outbox growing from empty, before
# autovacuum analyses it, shows: bench/pg_serve.sh measures that one.)
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
start_mock --rate-limit 0
seq_scans() { q "SELECT seq_scan FROM pg_stat_user_tables WHERE schemaname = 'outbox' AND relname = 'outbox'"; }

# 20,000 messages waiting for a retry far ahead, each at the head of its own conversation,
# and statistics that say so: the plan then expects a claim to find many (in batches of
# 1,000: each conversation is a lock held until the COMMIT, docs/schema.md).
for b in $(seq 0 19); do
    q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
         content, sender_type, next_attempt_at_ms)
       SELECT 'later', 'l' || i, 'b', 'c' || i, 'later', 'Consumer', 4102444800000
       FROM generate_series($((b * 1000 + 1)), $((b * 1000 + 1000))) i" >/dev/null
done
pg_sql "VACUUM ANALYZE outbox.outbox" >/dev/null

start_pg_node A --rate-limit 0 --max-inflight 4
before=$(seq_scans)
# One message per request, from 4 clients at once: groups of a few messages each.
seq 1 300 | xargs -P 4 -I{} curl -sS -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' \
    -d '{"channel_id":"ch","external_message_id":"m{}","business_id":"b","external_conversation_id":"c{}","content":"hello {}","sender_type":"Consumer"}' \
    "http://127.0.0.1:$NODE_PORT/v1/messages" >"$T/codes"
assert_eq "300 messages accepted (202)" "$(grep -c '^202$' "$T/codes")" 300
# Polled at the mock, not in the outbox: a count of the outbox may scan it too.
wait_until 60 '[ "$(mock_stat accepted)" -ge 300 ]'
# Then 5,000 more from a producer's own INSERTs: the sealer meets ~1,000 new messages a
# second, each needing its identity and sent hash (audit_messages), read from the outbox.
for b in 0 1 2 3 4; do
    q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
         content, sender_type)
       SELECT 'sql', 's' || i, 'b', 'c' || i, 'hello', 'Consumer'
       FROM generate_series($((b * 1000 + 1)), $((b * 1000 + 1000))) i" >/dev/null
done
wait_until 60 '[ "$(mock_stat accepted)" -ge 5300 ]'
# Every one of them given its identity and sent hash (audit_messages only is read here).
wait_until 30 '[ "$(q "SELECT count(*) FILTER (WHERE sent_sha256 IS NOT NULL) FROM audit_messages")" -ge 5300 ]'
# A node's backend reports its counts when it ends; SIGTERM lets the last outcomes commit.
kill -TERM "$NODE_PID"
wait "$NODE_PID" 2>/dev/null
wait_until 10 '[ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = '"'client backend'"'")" = 0 ]'
scans=$(($(seq_scans) - before))
claims=$(q "SELECT count(DISTINCT at_ms) FROM transitions WHERE to_state = 'sending'")
assert_eq "all 5,300 delivered" "$(q "SELECT count(*) FROM outbox WHERE channel_id IN ('ch', 'sql') AND state = 'accepted'")" 5300
assert_ge "claims made: enough to tell (${claims})" "$claims" 20
# Five remain: a prepared statement's first five runs get plans of their own, and for the
# claim's look past 20,000 waiting heads of one tenant a scan is PostgreSQL's choice (the
# session's plan after them probes outbox_claim). The sealer's scans added 7 (2026-12-07).
assert_le "sequential scans of the outbox ($scans): a few, not one per statement (claims: $claims)" "$scans" 8
finish
