#!/usr/bin/env bash
# Per-conversation order under random 5xx, and rows inserted by another process being
# noticed within a second (SPEC §1, §3).
. "$(dirname "$0")/lib.sh"

# ---- a row inserted through the SQL contract is sent within ~1 s ------------------------
start_mock --rate-limit 0
"$OUTBOX_BIN" migrate --db "$DB" >/dev/null
start_serve --rate-limit 0 --retry-base 50ms --retry-cap 200ms
sleep 1.2 # let serve go idle
t0=$(now_ms)
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch','sql1','b','c','from sql','User')"
wait_until 5 '[ "$(count_state accepted)" = 1 ]'
elapsed=$(( $(now_ms) - t0 ))
assert_le "SQL insert delivered within 1.5 s" "$elapsed" 1500

# ---- order within conversations under 30% random 500s ------------------------------------
mock_post faults '{"error_rate":0.3}' >/dev/null
enqueue_n 300 o 10
wait_until 60 '[ "$(count_state accepted)" = 301 ]'
assert_eq "all delivered despite errors" "$(count_state accepted)" 301
assert_ge "errors were really injected" "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 500")" 20
# The mock's arrival log, first arrival of each key, must follow enqueue order per conversation.
mock_get received > "$T/received.tsv"
sqlite3 "$T/check.db" <<SQL
CREATE TABLE r (seq INTEGER, at_ms INTEGER, key TEXT, channel TEXT, conv TEXT, ext TEXT, dup INTEGER);
.mode tabs
.import $T/received.tsv r
SQL
sqlite3 "$T/check.db" "ATTACH '$DB' AS o; CREATE TABLE firsts AS SELECT r.conv, r.ext, min(r.seq) AS seq, m.id AS enq FROM r JOIN o.outbox m ON m.external_message_id = r.ext AND m.channel_id = r.channel GROUP BY r.conv, r.ext"
inversions=$(sqlite3 "$T/check.db" "SELECT count(*) FROM firsts a JOIN firsts b ON a.conv = b.conv AND a.enq < b.enq AND a.seq > b.seq")
assert_eq "no order inversion within a conversation" "$inversions" 0
assert_eq "every key arrived" "$(sqlite3 "$T/check.db" "SELECT count(*) FROM firsts")" 301

kill -TERM "$SERVE_PID"; wait "$SERVE_PID"

# ---- fairness: one business's backlog does not starve another's single message ----------
DB=$T/fair.db
mock_post reset '{}' >/dev/null
for i in $(seq 1 2000); do
    printf '{"channel_id":"ch","external_message_id":"big%d","business_id":"big","external_conversation_id":"c%d","content":"x","sender_type":"Consumer"}\n' "$i" "$i"
done | "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id small1 --business small \
    --conversation s1 --content "me too" --sender Consumer >/dev/null
start_serve --rate-limit 0 --max-inflight 4 --log-level warn
wait_until 60 '[ "$(count_state accepted)" = 2001 ]'
pos=$(mock_get received | awk -F'\t' '$6 == "small1" { print $1; exit }')
first=$(mock_get received | awk -F'\t' 'NR == 1 { print $1 }')
assert_le "the small business's message is among the first sends (position $((pos - first + 1)))" \
    $((pos - first + 1)) 5

finish
