#!/usr/bin/env bash
# Retention on PostgreSQL (issue 15, SPEC §10, lib/retention.c): `outbox purge` (serve's
# hourly pass, the same steps) on a throwaway cluster:
#   - deletes confirmed, cancelled and failed messages (failed kept with --keep-failed) and
#     the accepted ones of read-only channels, older than the age; keeps queued messages,
#     accepted ones of other channels, and anything younger;
#   - deletes old delivered replies and old webhook events (a reply still to deliver keeps
#     its event), and drops old bodies while keeping their hashes (the replay guard);
#   - prunes the audit chain behind a checkpoint: the events of messages gone, the seals
#     before it; `outbox audit verify` still passes, and goes on passing as serve seals more;
#   - max_db_size counts the outbox's own tables: over it a new message is refused (507).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
count() { q "SELECT count(*) FROM $1"; }
verify() { "$OUTBOX_BIN" audit verify --db "$PG_URI" >"$T/verify.out" 2>&1; echo $?; }

start_mock --rate-limit 0
start_pg_node A --rate-limit 0
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT ch, ch || g, 'b', 'c' || g, 'x', 'User' FROM generate_series(1, 10) g, unnest(ARRAY['ro', 'rw']) ch" >/dev/null
wait_until 20 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 20 ]'
q "UPDATE outbox SET state = 'confirmed', state_reason = 'test' WHERE external_message_id IN ('rw1', 'rw2')" >/dev/null
q "UPDATE outbox SET state = 'failed', state_reason = 'test' WHERE external_message_id = 'rw3'" >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, next_attempt_at_ms) VALUES ('rw', 'later', 'b', 'cl', 'x', 'User', 9000000000000), ('rw', 'gone', 'b', 'cg', 'x', 'User', 9000000000000)" >/dev/null
"$OUTBOX_BIN" cancel --db "$PG_URI" rw gone >/dev/null || fail "cancel"
# Replies and webhook events: one delivered reply, one still to deliver, one event alone.
q "INSERT INTO webhook_events (body_sha256, received_at_ms, body, processed_at_ms, outcome) VALUES ('e1', 1000, 'body1', 1000, 'reply'), ('e2', 1000, 'body2', 1000, 'reply'), ('e3', 1000, 'body3', 1000, 'confirmed'), ('e4', outbox_now_ms() - 10000, 'body4', 1000, 'confirmed')" >/dev/null
q "INSERT INTO inbox (partoo_message_id, event_id, channel_id, received_at_ms, state, delivered_at_ms) SELECT 'p1', id, 'rw', 1000, 'delivered', 1000 FROM webhook_events WHERE body_sha256 = 'e1'" >/dev/null
q "INSERT INTO inbox (partoo_message_id, event_id, channel_id, received_at_ms) SELECT 'p2', id, 'rw', 1000 FROM webhook_events WHERE body_sha256 = 'e2'" >/dev/null
sleep 3 # everything above is older than the 2 s purged below, and sealed
kill -TERM "$NODE_PID"; wait "$NODE_PID"
assert_eq "the chain verifies before" "$(verify)" 0
before=$(grep -Eo '[0-9]+ rows verified' "$T/verify.out" | grep -Eo '^[0-9]+')

"$OUTBOX_BIN" purge --db "$PG_URI" --older-than 2s --readonly-channels ro --keep-failed \
    --webhook-hash-retention 1h >"$T/purge.out" 2>&1
assert_eq "outbox purge on PostgreSQL: exit 0" "$?" 0
cat "$T/purge.out"
assert_eq "read-only channel's accepted messages purged" "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'ro'")" 0
assert_eq "confirmed and cancelled purged, failed kept (--keep-failed)" \
    "$(q "SELECT string_agg(external_message_id, ' ' ORDER BY external_message_id) FROM outbox WHERE external_message_id IN ('rw1', 'rw2', 'rw3', 'gone')")" rw3
assert_eq "other channels' accepted and the queued message kept" \
    "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'rw' AND state IN ('accepted', 'queued')")" 8
assert_eq "the delivered reply purged, the one to deliver kept" "$(q "SELECT string_agg(partoo_message_id, ' ') FROM inbox")" p2
assert_eq "webhook events: old ones gone, a recent one's body dropped (its hash kept), the reply's kept" \
    "$(q "SELECT string_agg(body_sha256 || ':' || length(body), ' ' ORDER BY body_sha256) FROM webhook_events")" \
    "e2:5 e4:0"
assert_eq "a checkpoint was written" "$(count audit_checkpoints)" 1
assert_eq "the events of purged messages are gone" \
    "$(q "SELECT count(*) FROM transitions t WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = t.message_id)")" 0
assert_eq "... the kept messages keep their history" \
    "$(q "SELECT count(*) FROM outbox o WHERE o.state = 'accepted' AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = o.id)")" 0
assert_eq "... identities only for messages with events left" \
    "$(q "SELECT count(*) FROM audit_messages m WHERE NOT EXISTS (SELECT 1 FROM transitions t WHERE t.message_id = m.message_id) AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = m.message_id)")" 0
assert_eq "the seals before the checkpoint's are gone (the base row stays)" \
    "$(q "SELECT count(*) FROM audit_seals WHERE id > 0 AND id < (SELECT upto_id FROM audit_checkpoints)")" 0
assert_eq "the chain verifies after the prune" "$(verify)" 0
assert_contains "... from the checkpoint" "$(cat "$T/verify.out")" "audit chain ok"

start_pg_node A --rate-limit 0
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('rw', 'after', 'b', 'ca', 'x', 'User')" >/dev/null
wait_until 10 '[ "$(q "SELECT state FROM outbox WHERE external_message_id = '"'after'"'")" = accepted ]'
sleep 1.5
kill -TERM "$NODE_PID"; wait "$NODE_PID"
assert_eq "the chain goes on after the prune" "$(verify)" 0
assert_contains "... with the new events" "$(cat "$T/verify.out")" "audit chain ok"
"$OUTBOX_BIN" purge --db "$PG_URI" --older-than 2s >/dev/null 2>&1
assert_eq "a second purge: the chain still verifies" "$(verify)" 0

# ---- max_db_size: the outbox's own tables against the quota --------------------------------------
start_pg_node A --rate-limit 0 --max-db-size 1
code=$(curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' -X POST \
    "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"rw","external_message_id":"q1","business_id":"b","external_conversation_id":"cq","content":"x","sender_type":"User"}')
assert_eq "over max_db_size: a new message is refused (507)" "$code" 507
assert_contains "... as the quota" "$(cat "$T/body")" '"code":"quota_exceeded"'
assert_eq "... nothing written" "$(q "SELECT count(*) FROM outbox WHERE external_message_id = 'q1'")" 0
assert_eq "... /readyz says not ready" "$(curl -sS -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NODE_PORT/readyz")" 503
kill -TERM "$NODE_PID"; wait "$NODE_PID"
start_pg_node A --rate-limit 0 --max-db-size 1G
code=$(curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' -X POST \
    "http://127.0.0.1:$NODE_PORT/v1/messages" \
    -d '{"channel_id":"rw","external_message_id":"q1","business_id":"b","external_conversation_id":"cq","content":"x","sender_type":"User"}')
assert_eq "under it: accepted (202)" "$code" 202
kill -TERM "$NODE_PID"; wait "$NODE_PID"

finish
