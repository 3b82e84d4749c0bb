#!/usr/bin/env bash
# PostgreSQL, order per conversation (issue 15, SPEC §12 and §3): the `head` of
# migrations/postgresql/0001 against a real throwaway cluster. Exactly one message of a
# conversation with unfinished messages is its head, the first in line; a finished head
# hands over to the next; a message queued again joins the end of the line; and with many
# producers inserting and a sender finishing heads at the same time, no conversation ends
# up without a head or with two.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

trap 'pg_cluster_stop; cleanup' EXIT
pg_cluster_start "$T" || { echo "FAIL cannot start a PostgreSQL cluster"; exit 1; }
"$OUTBOX_BIN" migrate --db "$PG_URI" >/dev/null || { echo "FAIL migrate"; exit 1; }

COLS="channel_id, external_message_id, business_id, external_conversation_id, content, sender_type"
ins() { pg_sql "INSERT INTO outbox.outbox ($COLS) VALUES ('ch', '$1', 'biz', '$2', 'hello', 'User')" >/dev/null; }
to() { pg_sql "UPDATE outbox.outbox SET state = '$2' WHERE external_message_id = '$1'" >/dev/null; }
heads() { pg_sql "SELECT coalesce(string_agg(external_message_id, ',' ORDER BY external_message_id), '-') FROM outbox.outbox WHERE head AND external_conversation_id = '$1'"; }
# Every conversation with unfinished messages has exactly one head, its lowest conv_seq.
BROKEN="SELECT count(*) FROM (SELECT channel_id, external_conversation_id,
    count(*) FILTER (WHERE head) AS heads,
    (array_agg(head ORDER BY conv_seq))[1] AS first_is_head
  FROM outbox.outbox WHERE state IN ('queued', 'sending')
  GROUP BY 1, 2) c WHERE heads <> 1 OR NOT first_is_head"

ins m1 k; ins m2 k; ins m3 k
assert_eq "the first message is the head" "$(heads k)" m1
to m1 sending
assert_eq "claimed: still the head" "$(heads k)" m1
to m1 accepted
assert_eq "accepted: the next one is the head" "$(heads k)" m2
to m3 cancelled
assert_eq "a message behind the head cancelled: the head stays" "$(heads k)" m2
to m2 failed
assert_eq "nothing unfinished: no head" "$(heads k)" -
to m2 queued
assert_eq "queued again, alone: the head" "$(heads k)" m2
ins m4 k
assert_eq "a new message waits behind it" "$(heads k)" m2
to m1 queued
assert_eq "another queued again: it waits too" "$(heads k)" m2
to m2 accepted
assert_eq "it joined the end of the line: the newer m4 goes first" "$(heads k)" m4
to m4 accepted
assert_eq "... then m1" "$(heads k)" m1
ins x1 other
assert_eq "another conversation has its own head" "$(heads other)" x1
ins x2 other
pg_sql "DELETE FROM outbox.outbox WHERE external_message_id = 'x1'" >/dev/null
assert_eq "the head deleted: the next one is the head" "$(heads other)" x2
assert_eq "one head per conversation" "$(pg_sql "$BROKEN")" 0

# The race the conversation lock closes: a sender finishes the head (uncommitted) while a
# producer inserts into the same conversation. Without the lock the insert sees the head
# still unfinished and does not become head, and the finish found no successor: no head.
ins z1 z
mkfifo "$T/f.in"
"${PG_PSQL[@]}" -A -t <"$T/f.in" >"$T/f.out" 2>&1 &
F=$!
PIDS+=("$F")
exec 9>"$T/f.in"
echo "BEGIN; UPDATE outbox.outbox SET state = 'accepted' WHERE external_message_id = 'z1'; SELECT 'finished';" >&9
wait_until 10 'grep -q finished "$T/f.out"' || fail "the finishing session did not start"
ins z2 z &
P=$!
sleep 1
echo "COMMIT;" >&9
exec 9>&-
wait "$F" "$P" 2>/dev/null
assert_eq "insert during an uncommitted finish: the new message is the head" "$(heads z)" z2

# Many at once: 4 producers insert 40 messages each into 5 conversations while a sender
# keeps finishing heads; then every conversation must still have exactly one head.
for p in 1 2 3 4; do
    (for i in $(seq 1 40); do
        ins "p$p-$i" "conv$(( (i + p) % 5 ))"
    done) &
done
(for i in $(seq 1 60); do
    pg_sql "UPDATE outbox.outbox SET state = 'accepted' WHERE id IN (SELECT id FROM outbox.outbox WHERE head AND state = 'queued' AND external_conversation_id LIKE 'conv%' ORDER BY id LIMIT 1)" >/dev/null
done) &
wait
assert_eq "concurrent: all 160 inserted" "$(pg_sql "SELECT count(*) FROM outbox.outbox WHERE external_message_id LIKE 'p%'")" 160
assert_eq "concurrent: one head per conversation, the first in line" "$(pg_sql "$BROKEN")" 0
finish
