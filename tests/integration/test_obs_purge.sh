#!/usr/bin/env bash
# `outbox purge --older-than 0s` while serve runs, with a message in every state: queued,
# sending, accepted awaiting confirmation, accepted unconfirmed (after max_resends), accepted
# on a read-only channel, confirmed, failed, cancelled. Only confirmed, failed (unless
# --keep-failed), cancelled and read-only-accepted (with the read-only config) may go. The
# audited events go behind a checkpoint and `audit verify` still passes, also after serve appends
# to the chain again.
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

SEED=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60
WH_PORT=$(free_port)
WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo

exists() { sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id = '$1'"; }
purge() { # OPTIONS...: purge --json; prints the number of messages purged
    "$OUTBOX_BIN" purge --db "$DB" --json "$@" >"$T/purge.out" 2>"$T/purge.err" ||
        { echo "purge failed: $(cat "$T/purge.err")" >&2; echo ERR; return; }
    jget "$(cat "$T/purge.out")" '$.purged'
}

start_mock --rate-limit 0 --webhook-url "$WH_URL" --webhook-seed "$SEED"
PUB=$(sed -n 's/.*webhook public key \([0-9a-f]\{64\}\).*/\1/p' "$T/mock.log" | tail -1)
[ ${#PUB} = 64 ] || { echo "no webhook public key in the mock's log"; exit 1; }

# cancelled: before serve starts
enqueue_one ch x1 c-x
"$OUTBOX_BIN" cancel --db "$DB" ch x1 >/dev/null
assert_eq "x1 cancelled" "$(state_of ch x1)" cancelled

start_serve --webhook-listen "127.0.0.1:$WH_PORT" --webhook-public-key "$PUB" --rate-limit 0 \
    --retry-base 100ms --retry-cap 300ms --confirm-timeout 10s --max-resends 0 \
    --readonly-channels ro

# unconfirmed: accepted, no webhook, max_resends 0 -> unconfirmed after confirm_timeout
enqueue_one ch u1 c-u
wait_until 10 '[ "$(state_of ch u1)" = accepted ]'
# confirmed: the mock echoes this one
mock_post faults '{"echo":true}' >/dev/null
enqueue_one ch k1 c-k
wait_until 10 '[ "$(state_of ch k1)" = confirmed ]'
mock_post faults '{"echo":false}' >/dev/null
assert_eq "k1 confirmed by its webhook" "$(state_of ch k1)" confirmed
# failed: 400
mock_post faults '{"script":[400]}' >/dev/null
enqueue_one ch f1 c-f
wait_until 10 '[ "$(state_of ch f1)" = failed ]'
assert_eq "f1 failed" "$(state_of ch f1)" failed
# accepted on a read-only channel: terminal
enqueue_one ro r1 c-r
wait_until 10 '[ "$(state_of ro r1)" = accepted ]'
assert_eq "r1 accepted on the read-only channel" "$(state_of ro r1)" accepted
wait_until 25 '[ "$(sql "$DB" "SELECT unconfirmed_at_ms IS NOT NULL FROM outbox WHERE external_message_id = '\''u1'\''")" = 1 ]'
assert_eq "u1 unconfirmed" "$("$OUTBOX_BIN" ls --db "$DB" --state unconfirmed --json | grep -c '"u1"')" 1
# accepted, awaiting confirmation (confirm_timeout not reached yet)
enqueue_one ch a1 c-a
wait_until 10 '[ "$(state_of ch a1)" = accepted ]'
# sending: the mock answers 20 s late (longer than the purges below take, even on a loaded
# machine); q1 waits behind s1 in its conversation (queued)
mock_post faults '{"delay_ms":20000}' >/dev/null
enqueue_one ch s1 c-s
enqueue_one ch q1 c-s
wait_until 10 '[ "$(state_of ch s1)" = sending ]'
sleep 0.1

# ---- purge -----------------------------------------------------------------------------------
snapshot=$(sql "$DB" "SELECT group_concat(external_message_id || ':' || state || ':' || (unconfirmed_at_ms IS NOT NULL), ' ') FROM (SELECT * FROM outbox ORDER BY external_message_id)")
assert_eq "before purge: every state is present" "$snapshot" \
    "a1:accepted:0 f1:failed:0 k1:confirmed:0 q1:queued:0 r1:accepted:0 s1:sending:0 u1:accepted:1 x1:cancelled:0"
assert_eq "purge --older-than 1h removes nothing" "$(purge --older-than 1h)" 0
assert_eq "purge --older-than 0s --keep-failed removes confirmed and cancelled" \
    "$(purge --older-than 0s --keep-failed)" 2
assert_eq "--keep-failed kept f1" "$(exists f1)" 1
UPTO=$(sql "$DB" "SELECT upto_id FROM audit_checkpoints ORDER BY id DESC LIMIT 1")
# The checkpoint is a seal (schema 9): the chain covered every event up to its ranges.
assert_ge "the first checkpoint covers the events written so far" \
    "$(sql "$DB" "SELECT transitions_upto + attempts_upto FROM audit_seals WHERE id = ${UPTO:-0}")" 10
assert_eq "purge --older-than 0s removes the failed one" "$(purge --older-than 0s)" 1
assert_eq "sending s1 is still there (purge ran while it was in flight)" \
    "$(state_of ch s1)" sending
for m in q1 s1 a1 u1; do
    assert_eq "$m ($(echo "$snapshot" | grep -o "$m:[a-z]*")) kept" "$(exists "$m")" 1
done
assert_eq "read-only accepted r1 kept when purge is not told the channel is read-only" \
    "$(exists r1)" 1
for m in x1 k1 f1; do
    assert_eq "$m deleted" "$(exists "$m")" 0
done
assert_eq "their transitions went with them (behind the checkpoint)" \
    "$(sql "$DB" "SELECT count(*) FROM transitions WHERE message_id NOT IN (SELECT id FROM outbox)")" 0
assert_eq "their identity rows too" \
    "$(sql "$DB" "SELECT count(*) FROM audit_messages WHERE message_id NOT IN (SELECT id FROM outbox)")" 0
assert_eq "their attempts went with them" \
    "$(sql "$DB" "SELECT count(*) FROM attempts WHERE message_id NOT IN (SELECT id FROM outbox)")" 0
assert_eq "purge with the read-only config removes r1 only" \
    "$(purge --older-than 0s --readonly-channels ro)" 1
assert_eq "r1 deleted" "$(exists r1)" 0
assert_eq "remaining messages" "$(sql "$DB" "SELECT group_concat(external_message_id, ' ') FROM (SELECT external_message_id FROM outbox ORDER BY 1)")" "a1 q1 s1 u1"

# ---- the audit chain behind a checkpoint ---------------------------------------------------------
assert_ge "a checkpoint row exists" "$(sql "$DB" "SELECT count(*) FROM audit_checkpoints")" 1
# behind [after]: events the latest checkpoint's seal covers (after: that it does not cover),
# of messages gone (all: of any message)
behind() {
    local op="<=" gone="AND message_id NOT IN (SELECT id FROM outbox)"
    [ "${1:-}" = after ] && op=">" && gone=""
    [ "${2:-}" = all ] && gone=""
    sql "$DB" "SELECT (SELECT count(*) FROM transitions WHERE id $op s.transitions_upto $gone)
                    + (SELECT count(*) FROM attempts WHERE id $op s.attempts_upto $gone)
               FROM audit_seals s WHERE s.id = (SELECT max(upto_id) FROM audit_checkpoints)"
}
assert_eq "events of purged messages up to the checkpoint were pruned" "$(behind)" 0
assert_ge "messages still there keep their history (for show and the API)" "$(behind before all)" 1
assert_eq "audit verify after purge exits 0" "$(audit_verify)" 0
assert_contains "audit verify after purge says ok" "$(cat "$T/verify.out")" "audit chain ok"

# serve finishes s1 (then q1, answered at once) and appends to the chain after the checkpoint
mock_post faults '{"delay_ms":0}' >/dev/null
UPTO=$(sql "$DB" "SELECT max(upto_id) FROM audit_checkpoints")
wait_until 40 '[ "$(state_of ch s1)" = accepted ] && [ "$(state_of ch q1)" = accepted ]'
assert_eq "s1 then q1 accepted after the purge" "$(state_of ch s1)/$(state_of ch q1)" accepted/accepted
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
NROWS=$(behind after)
assert_ge "serve appended events after the purge" "$NROWS" 4
assert_eq "audit verify with rows after the checkpoint exits 0" "$(audit_verify)" 0
assert_contains "audit verify checked every row written after the checkpoint" \
    "$(cat "$T/verify.out")" "ok: $NROWS rows verified"
assert_eq "new events get ids after the checkpoint's ranges (seal $UPTO)" "$(behind)" 0
# Tampering with an event written after the checkpoint is detected, and its seal named.
TK=$(sql "$DB" "SELECT max(a.id) FROM attempts a JOIN audit_messages m ON m.message_id = a.message_id WHERE m.external_message_id = 's1'")
SK=$(sql "$DB" "SELECT min(id) FROM audit_seals WHERE attempts_upto >= $TK AND hash <> ''")
sqlite3 "$DB" ".backup '$T/before-tamper.db'"
sql "$DB" "UPDATE attempts SET http_status = 500 WHERE id = $TK"
assert_eq "an event after the checkpoint changed: audit verify exits 1" "$(audit_verify)" 1
assert_contains "an event after the checkpoint changed: seal $SK is named" "$(cat "$T/verify.out")" \
    "BROKEN at row $SK:"
rm -f "$DB-wal" "$DB-shm"; cp "$T/before-tamper.db" "$DB"
"$OUTBOX_BIN" audit --db "$DB" >"$T/audit.jsonl"
PYTHONPATH=$SRC/tests/integration PYTHONDONTWRITEBYTECODE=1 \
    python3 - "$DB" "$T/audit.jsonl" >"$T/chain.out" 2>&1 <<'EOF'
import hashlib, json, sqlite3, sys
from audit_chain import EVENTS, canonical

con = sqlite3.connect(sys.argv[1])
upto, prev = con.execute("SELECT upto_id, hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1").fetchone()
base = con.execute("SELECT transitions_upto, attempts_upto FROM audit_seals WHERE id = ?", (upto,)).fetchone()
seals = con.execute("SELECT id, transitions_upto, attempts_upto, hash FROM audit_seals WHERE id > ?"
                    " ORDER BY id", (upto,)).fetchall()
problems, n = [], 0
if not base:
    problems.append("the checkpoint's seal %d is gone" % upto)
    base = (0, 0)
if not seals:
    problems.append("no seal after the checkpoint")
first = json.loads(open(sys.argv[2]).readline())
if first.get("prev_hash") != prev:
    problems.append("export's first prev_hash %s is not the checkpoint hash %s" % (first.get("prev_hash"), prev))
for sid, tu, au, h in seals:
    for r in con.execute(EVENTS, (base[0], tu, base[1], au)).fetchall():
        prev = hashlib.sha256((prev + "\n" + canonical(*r[:6])).encode()).hexdigest()
        n += 1
    if h != prev:
        problems.append("seal %d: hash %s, recomputed from the checkpoint %s" % (sid, h, prev))
    prev, base = h, (tu, au)
print("%d events after checkpoint %d" % (n, upto))
for p in problems:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
EOF
rc=$?
assert_eq "chain recomputed from the checkpoint in Python ($(head -1 "$T/chain.out"))" "$rc" 0
[ "$rc" = 0 ] || cat "$T/chain.out"

# A second purge adds a second checkpoint; the chain still verifies.
purge --older-than 0s >/dev/null
assert_ge "a second checkpoint" "$(sql "$DB" "SELECT count(*) FROM audit_checkpoints")" 2
assert_eq "audit verify after the second purge exits 0" "$(audit_verify)" 0
assert_eq "accepted messages of a bidirectional channel survive every purge" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state = 'accepted'")" 4

finish
