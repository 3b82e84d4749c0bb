#!/usr/bin/env bash
# bench/bytes_per_message.sh: bytes on disk per delivered message, with the default audit
# trail (issue 13, "Lean rows").
#
# Enqueues N (20,000) messages with a CONTENT_BYTES (60) byte content over CONVS (1,000)
# conversations, lets `outbox serve` deliver them all to build/mock_partoo (unthrottled) and
# seal the audit chain, stops serve, checkpoints the WAL (TRUNCATE) and divides the database
# file's size (and its growth over the queued database) by N. Also prints the bytes per table
# and index (dbstat) so that one sees where they go.
#
#   bench/bytes_per_message.sh
#   N=100000 bench/bytes_per_message.sh
#   OUTBOX_BIN=/tmp/old/outbox MOCK_BIN=/tmp/old/mock_partoo bench/bytes_per_message.sh
#
# Environment: see bench/lib.sh. Only talks to 127.0.0.1; every process it starts is killed
# on exit.
set -uo pipefail
{
. "$(dirname "$0")/lib.sh"

N=${N:-20000}
CONVS=${CONVS:-1000}
CONTENT_BYTES=${CONTENT_BYTES:-60}
TIMEOUT_S=${TIMEOUT_S:-300}

start_mock
db=$BT/bytes.db
"$OUTBOX_BIN" migrate --db "$db" >/dev/null || { log "migrate failed"; exit 1; }
awk -v n="$N" -v convs="$CONVS" -v len="$CONTENT_BYTES" 'BEGIN {
    for (i = 1; i <= n; i++) {
        c = sprintf("message %d ", i)
        while (length(c) < len) c = c "x"
        printf "{\"channel_id\":\"bench-ch\",\"external_message_id\":\"m-%d\",\"business_id\":\"biz-%d\",\"external_conversation_id\":\"conv-%d\",\"content\":\"%s\",\"sender_type\":\"Consumer\"}\n", i, i % 10, i % convs, substr(c, 1, len)
    } }' > "$BT/gen.jsonl"
"$OUTBOX_BIN" enqueue --db "$db" < "$BT/gen.jsonl" > "$BT/enqueue.out" ||
    { log "enqueue failed"; cat "$BT/enqueue.out" >&2; exit 1; }
sql "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
queued_bytes=$(stat -c %s "$db")
log "$N queued: $queued_bytes bytes; delivering"
start_serve "$db" --max-inflight 32
wait_until "$TIMEOUT_S" '[ "$(sql "$db" "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge "$N" ]' ||
    { log "not all delivered within ${TIMEOUT_S}s"; exit 1; }
# serve seals the audit chain every second; let it finish.
sleep 3
stop_serve
sql "$db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
bytes=$(stat -c %s "$db")
unsealed=$(sql "$db" "SELECT count(*) FROM audit_log WHERE hash IS NULL" 2>/dev/null || echo "?")
verify=$("$OUTBOX_BIN" audit verify --db "$db" 2>&1 | head -1)
echo "| what | value |"
echo "|---|---:|"
echo "| outbox version | $("$OUTBOX_BIN" version) |"
echo "| messages delivered | $N ($CONTENT_BYTES-byte content, $CONVS conversations) |"
echo "| database after delivery | $bytes bytes |"
echo "| **bytes per delivered message** | **$(( bytes / N ))** |"
echo "| queued database | $queued_bytes bytes ($(( queued_bytes / N )) per message) |"
echo "| growth by delivery, per message | $(( (bytes - queued_bytes) / N )) |"
echo "| unsealed audit rows | $unsealed |"
echo "| audit verify | $verify |"
echo
echo "| table or index | bytes | per message |"
echo "|---|---:|---:|"
sql "$db" "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC" 2>/dev/null |
    awk -F'|' -v n="$N" '$2 > 8192 { printf "| %s | %d | %.0f |\n", $1, $2, $2 / n }'
}
