#!/usr/bin/env bash
# `outbox migrate-to` (issue 15, SPEC §12): a SQLite outbox that has delivered, retried,
# been paused and resumed, holds queued lines (linked, and a producer's unlinked rows), a
# tenant, a pause in force, a webhook event and a reply, moved into a throwaway PostgreSQL
# cluster:
#   - refused while serve runs on the file, and for a chain that does not verify (nothing
#     moved), and into a schema that is not empty;
#   - every row kept with its id, state and counters; transitions, attempts, actions,
#     webhook events, replies and tenants all there;
#   - the keyed audit chain verifies on PostgreSQL to the same head row and hash;
#   - serve on PostgreSQL then sends what was queued, in each conversation's order, and the
#     chain goes on: `outbox audit verify` passes over old and new rows.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
head -c 32 /dev/urandom | base64 >"$T/audit.key"
export OUTBOX_AUDIT_KEY_FILE=$T/audit.key
printf 'tenant-key\n' >"$T/tenant.key"

# ---- a SQLite outbox with a history ------------------------------------------------------------
start_mock --rate-limit 0 --error-rate 0.3
"$OUTBOX_BIN" tenant add acme --api-key-file "$T/tenant.key" --channel ch-acme --db "$DB" >/dev/null ||
    fail "tenant add"
enqueue_n 40 m 5
start_serve --rate-limit 0
wait_until 30 '[ "$(count_state accepted)" = 40 ]'
assert_eq "SQLite: 40 delivered (with retries)" "$(count_state accepted)" 40
"$OUTBOX_BIN" pause --db "$DB" --channel ch-held >/dev/null && "$OUTBOX_BIN" resume --db "$DB" --channel ch-held >/dev/null ||
    fail "pause and resume"

out=$("$OUTBOX_BIN" migrate-to "$PG_URI" --db "$DB" 2>&1)
assert_eq "refused while serve runs on the file" "$?" 1
assert_contains "... saying so" "$out" "serve is running"
stop_serve

# Left queued: two conversations of linked messages, one cancelled in the middle, rows a
# producer inserted with SQL (not linked yet), a message of the tenant's channel.
enqueue_n 6 q 2
"$OUTBOX_BIN" cancel --db "$DB" ch q3 >/dev/null || fail "cancel"
# q1 fails, and is sent again: it goes to the back of its line, behind q7 that came later
# (c1: q5, q7, q1; ids would say q1, q5, q7).
enqueue_one ch q7 c1
sql "$DB" "UPDATE outbox SET state = 'failed', state_reason = 'test' WHERE external_message_id = 'q1'"
"$OUTBOX_BIN" retry --db "$DB" ch q1 >/dev/null || fail "retry"
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 'sql1', 'b1', 'c0', 'by SQL', 'User'), ('ch', 'sql2', 'b1', 'c9', 'by SQL', 'User')"
enqueue_one ch-acme a1 ca
# A pause in force moves and holds there: its message is not sent from PostgreSQL.
"$OUTBOX_BIN" pause --db "$DB" --channel ch-held --reason "kept on hold" >/dev/null || fail "pause"
enqueue_one ch-held p1 cp
sql "$DB" "INSERT INTO webhook_events (body_sha256, received_at_ms, body, event_type, partoo_message_id, processed_at_ms, outcome) VALUES ('ab12', 1, x'7b0a7d09', 'message_created', 'pm1', 2, 'reply')"
sql "$DB" "INSERT INTO inbox (partoo_message_id, event_id, channel_id, external_conversation_id, content, received_at_ms) VALUES ('pm1', (SELECT max(id) FROM webhook_events), 'ch', 'c1', 'a reply, with a tab	and a \\ backslash', 3)"

# ---- a chain that does not verify is not moved -------------------------------------------------
cp "$DB" "$T/broken.db"
sql "$T/broken.db" "UPDATE transitions SET reason = 'forged' WHERE id = 3"
out=$("$OUTBOX_BIN" migrate-to "$PG_URI" --db "$T/broken.db" 2>&1)
assert_eq "a broken chain: refused" "$?" 1
assert_contains "... naming the row" "$out" "broken at row"
assert_eq "... and nothing moved" "$(q "SELECT count(*) FROM outbox")" 0

# ---- the move ------------------------------------------------------------------------------
"$OUTBOX_BIN" audit verify --db "$DB" >"$T/sqlite.verify" 2>&1 || fail "the SQLite chain verifies"
"$OUTBOX_BIN" migrate-to "$PG_URI" --db "$DB" >"$T/move.out" 2>&1
assert_eq "migrate-to: exit 0" "$?" 0
assert_contains "... counts the messages" "$(cat "$T/move.out")" "moved '$DB'"
cat "$T/move.out"
for t in outbox transitions attempts actions webhook_events inbox tenants tenant_channels audit_messages audit_chain_modes; do
    n=$(sql "$DB" "SELECT count(*) FROM $t")
    assert_eq "$t: every row moved ($n)" "$(q "SELECT count(*) FROM $t")" "$n"
done
assert_eq "audit_seals: every seal moved" "$(q "SELECT count(*) FROM audit_seals WHERE id <> 0")" \
    "$(sql "$DB" "SELECT count(*) FROM audit_seals WHERE id <> 0")"
assert_ge "... retries among the attempts" "$(q "SELECT count(*) FROM attempts")" 41
assert_eq "... the pauses and the resume" "$(q "SELECT string_agg(action, ' ' ORDER BY id) FROM actions")" "pause resume pause"
cols="id, channel_id, external_message_id, external_conversation_id, content, state, state_reason, attempts, counted_attempts, resends, created_at_ms, state_at_ms, coalesce(accepted_at_ms, 0), coalesce(tenant, '-')"
assert_eq "every message as it was (id, key, state, counters, times, tenant)" \
    "$(q "SELECT $cols FROM outbox ORDER BY id" | md5sum)" "$(sql "$DB" "SELECT $cols FROM outbox ORDER BY id" | md5sum)"
assert_eq "the reply as it was" "$(q "SELECT content FROM inbox")" "$(sql "$DB" "SELECT content FROM inbox")"
assert_eq "the webhook body byte for byte" "$(q "SELECT encode(body, 'hex') FROM webhook_events")" 7b0a7d09
verify_head() { sed -n 's/.*head row \([0-9]*\) hash \([0-9a-f]*\).*/\1 \2/p' "$1"; }
"$OUTBOX_BIN" audit verify --db "$PG_URI" >"$T/pg.verify" 2>&1
assert_eq "the keyed chain verifies on PostgreSQL" "$?" 0
assert_eq "... to the same head row and hash" "$(verify_head "$T/pg.verify")" "$(verify_head "$T/sqlite.verify")"
out=$(OUTBOX_AUDIT_KEY_FILE= "$OUTBOX_BIN" audit verify --db "$PG_URI" 2>&1)
assert_eq "... and needs its key there too" "$?" 1

out=$("$OUTBOX_BIN" migrate-to "$PG_URI" --db "$DB" 2>&1)
assert_eq "a second move into the same schema: refused" "$?" 1
assert_contains "... as not empty" "$out" "not empty"

# ---- serve on PostgreSQL goes on ----------------------------------------------------------------
curl -sS -X POST "http://127.0.0.1:$MOCK_PORT/_mock/reset" >/dev/null
stop_pids 2000 "$MOCK_PID"
start_mock --rate-limit 0
PG_NODE_KEY=test-key start_pg_node A --rate-limit 0
wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE state IN ('"'queued'"', '"'sending'"') AND channel_id <> '"'ch-held'"'")" = 0 ]'
assert_eq "everything queued on SQLite sent from PostgreSQL (but the paused channel's)" \
    "$(q "SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending') AND channel_id <> 'ch-held'")" 0
mock_get received >"$T/received.tsv"
assert_eq "... each once (9 left queued; the cancelled one not)" "$(cut -f6 "$T/received.tsv" | sort -u | wc -l)" 9
awk -F'\t' '{ print $6 }' "$T/received.tsv" | grep -E '^(q|sql)' | tr '\n' ' ' >"$T/order"
assert_eq "conversation c0 in its order (the SQL row last)" "$(grep -oE '\b(q2|q4|q6|sql1)\b' "$T/order" | tr '\n' ' ')" "q2 q4 q6 sql1 "
assert_eq "conversation c1 in its line's order (q1, sent again, last)" "$(grep -oE '\b(q1|q5|q7)\b' "$T/order" | tr '\n' ' ')" "q5 q7 q1 "
assert_eq "the paused channel's message held on PostgreSQL" "$(q "SELECT state FROM outbox WHERE external_message_id = 'p1'")" queued
assert_contains "... its pause moved" "$(q "SELECT reason FROM pauses WHERE key = 'ch-held' AND resumed_at_ms IS NULL")" "kept on hold"
assert_eq "the tenant's message went with the tenant's key" \
    "$(awk -F'\t' '$6 == "a1" { print $3 }' "$T/received.tsv")" tena
kill -TERM "$NODE_PID"; wait "$NODE_PID"
"$OUTBOX_BIN" audit verify --db "$PG_URI" >"$T/pg2.verify" 2>&1
assert_eq "the chain goes on: verify passes over old and new rows" "$?" 0
assert_ge "... with the new rows" "$(grep -Eo '[0-9]+ rows verified' "$T/pg2.verify" | grep -Eo '^[0-9]+')" \
    $(( $(grep -Eo '[0-9]+ rows verified' "$T/pg.verify" | grep -Eo '^[0-9]+') + 9 ))

finish
