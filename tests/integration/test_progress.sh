#!/usr/bin/env bash
# Long CLI operations draw a progress line on a terminal and stay quiet in pipes.
# `script` (util-linux) gives the command a pseudo-terminal as stdout/stderr.
. "$(dirname "$0")/lib.sh"

for i in $(seq 1 20000); do
    printf '{"channel_id":"ch","external_message_id":"p%d","business_id":"b","external_conversation_id":"c%d","content":"x","sender_type":"User"}\n' "$i" $((i % 100))
done > "$T/in.jsonl"

script -qec "'$OUTBOX_BIN' enqueue --db '$DB' < '$T/in.jsonl'" "$T/tty.out" >/dev/null 2>&1
assert_eq "enqueue on a terminal exits 0" "$?" 0
assert_contains "enqueue on a terminal draws a bar" "$(tr '\r' '\n' <"$T/tty.out")" "enqueue [####"
assert_contains "... that reaches 100%" "$(tr '\r' '\n' <"$T/tty.out")" "100% "

"$OUTBOX_BIN" enqueue --db "$T/pipe.db" <"$T/in.jsonl" >"$T/pipe.out" 2>"$T/pipe.err"
assert_eq "enqueue in a pipe: nothing on stderr" "$(cat "$T/pipe.err")" ""
assert_not_contains "enqueue in a pipe: no bar on stdout" "$(cat "$T/pipe.out")" "enqueue ["

script -qec "'$OUTBOX_BIN' audit --db '$DB' > /dev/null" "$T/audit.out" >/dev/null 2>&1
assert_contains "audit export on a terminal counts rows" "$(tr '\r' '\n' <"$T/audit.out")" "audit export "
"$OUTBOX_BIN" audit --db "$DB" 2>"$T/audit.err" >/dev/null
assert_eq "audit export in a pipe: nothing on stderr" "$(cat "$T/audit.err")" ""

sql "$DB" "UPDATE outbox SET state = 'cancelled', state_reason = 'test', state_at_ms = 0, created_at_ms = 0"
script -qec "'$OUTBOX_BIN' purge --db '$DB' --older-than 1s" "$T/purge.out" >/dev/null 2>&1
assert_contains "purge on a terminal counts messages" "$(tr '\r' '\n' <"$T/purge.out")" "purge "
assert_contains "purge removed them all" "$(tr '\r' '\n' <"$T/purge.out")" "purged 20000 messages"

finish
