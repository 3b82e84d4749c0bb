#!/usr/bin/env bash
# tests/integration/test_cli_terminal.sh: producer and Partoo text cannot drive the operator's
# terminal (issue 19 #9).
#
# Messages, an attempt and a reply hold ESC sequences, a C1 CSI (U+009B), CR and DEL. ls, show,
# inbox and status, run on a real pseudo-terminal (python3's pty module), write none of those
# bytes: they appear as visible escapes (\x1b, \u009b). --json keeps the exact text, escaped
# by the JSON writer.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_cli_terminal.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
B=$OUTBOX_BIN
"$B" migrate --db "$DB" >/dev/null || { echo "migrate failed"; exit 1; }

# E: ESC [31m, CSI as U+009B, CR, DEL and a title-setting OSC, with tab and newline.
E="char(27) || '[31mRED' || char(155) || '2J' || char(13) || 'CR' || char(127) || char(27) || ']0;pwned' || char(7) || char(9) || 'tab' || char(10) || 'nl'"
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
                               content, sender_type, created_at_ms, state_at_ms, next_attempt_at_ms,
                               last_error)
           VALUES ('ch', 'm' || char(27) || '[2J', 'b', 'c', 'hello ' || $E, 'Consumer', 1, 1, 0,
                   'bad ' || $E);
           INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome, error)
           VALUES (1, 1, 5, 400, 'rejected', 'partoo says ' || $E);
           INSERT INTO webhook_events (body_sha256, received_at_ms, body) VALUES ('x', 1, 'x');
           INSERT INTO inbox (partoo_message_id, event_id, channel_id, external_conversation_id,
                              sender_label, content, received_at_ms)
           VALUES ('p1', 1, 'ch', 'c', 'Agent ' || $E, 'reply ' || $E, 1)" ||
    { echo "cannot insert the test rows"; exit 1; }
EXT=$(sql "$DB" "SELECT external_message_id FROM outbox WHERE id = 1")

# on_tty NAME ARGS...: runs outbox with stdout and stderr on a pseudo-terminal; the bytes it
# wrote go to $T/NAME.tty.
on_tty() {
    local name=$1
    shift
    python3 - "$T/$name.tty" "$B" "$@" <<'PY'
import os, pty, subprocess, sys
out, argv = sys.argv[1], sys.argv[2:]
master, slave = pty.openpty()
p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
os.close(slave)
data = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # EIO once the child closed the terminal
        break
    if not chunk:
        break
    data += chunk
p.wait(timeout=30)
open(out, "wb").write(data)
sys.exit(p.returncode)
PY
}
# no_control NAME: the captured bytes hold no ESC, BEL, DEL, C1 CSI; the escapes are visible.
no_control() {
    local f=$T/$1.tty
    assert_eq "$1: no ESC, BEL, DEL or C1 byte reaches the terminal" \
        "$(python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); print(sum(d.count(b) for b in (b"\x1b", b"\x07", b"\x7f", b"\xc2\x9b", b"\x9b")))' "$f")" 0
    assert_contains "$1: ESC shown as \\x1b" "$(cat "$f")" '\x1b[31mRED'
    assert_contains "$1: C1 CSI shown as \\u009b" "$(cat "$f")" '\u009b2J'
}

assert_status "ls on a terminal" 0 on_tty ls ls --db "$DB"
no_control ls
assert_status "show on a terminal" 0 on_tty show show --db "$DB" ch "$EXT"
no_control show
assert_contains "show keeps the content's line break" "$(cat "$T/show.tty")" $'tab\r\nnl'
assert_status "inbox on a terminal" 0 on_tty inbox inbox --db "$DB"
no_control inbox
assert_status "status on a terminal" 0 on_tty status status --db "$DB"
assert_eq "status: no ESC reaches the terminal" "$(grep -c $'\x1b' "$T/status.tty")" 0

# A pipe gets the same table (the table output is always made safe).
"$B" ls --db "$DB" > "$T/ls.pipe"
assert_eq "ls into a pipe: no ESC" "$(grep -c $'\x1b' "$T/ls.pipe")" 0

# --json keeps the exact text.
"$B" show --db "$DB" ch "$EXT" --json > "$T/show.json"
assert_eq "show --json: the content is exact" \
    "$(sqlite3 -batch -noheader :memory: "SELECT json_extract(readfile('$T/show.json'), '\$.content') = (SELECT 'hello ' || $E)")" 1
assert_eq "ls --json: the content is exact" \
    "$("$B" ls --db "$DB" --json > "$T/ls.json"; sqlite3 -batch -noheader :memory: "SELECT json_extract(readfile('$T/ls.json'), '\$.messages[0].content') = (SELECT 'hello ' || $E)")" 1
finish
