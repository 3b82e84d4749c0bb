#!/usr/bin/env bash
# The tamper-evident audit trail after a real run (accepted, retried, failed, cancelled):
# `audit verify` passes; the jsonl export chains row to row and ends with the chain head; every
# stored hash is recomputed independently in Python from the documented encoding (lib/audit.h);
# the CSV export carries the same rows; changing any field of one row, deleting a middle row,
# or forging a hash is detected and the broken row is named.
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

GENESIS=0000000000000000000000000000000000000000000000000000000000000000
enqueue_one() { # EXT_ID CONVERSATION [CHANNEL]
    "$OUTBOX_BIN" enqueue --db "$DB" --channel "${3:-ch}" --message-id "$1" --business b1 \
        --conversation "$2" --content "content of $1, with \"quotes\", a comma and é" \
        --sender Consumer >/dev/null
}
verify() { # runs `audit verify`; output in $T/verify.out, prints the exit status
    "$OUTBOX_BIN" audit --db "$DB" verify >"$T/verify.out" 2>&1
    echo $?
}

# ---- a real run ----------------------------------------------------------------------------
start_mock --rate-limit 0
mock_post faults '{"script":[500,503,400]}' >/dev/null
for i in 1 2 3 4 5 6; do enqueue_one m$i c$i; done
enqueue_one gone c7
"$OUTBOX_BIN" cancel --db "$DB" ch gone >/dev/null
start_serve --rate-limit 0 --retry-base 100ms --retry-cap 300ms --max-inflight 2
wait_until 20 '[ "$(count_state accepted)" = 5 ] && [ "$(count_state failed)" = 1 ]'
assert_eq "five accepted" "$(count_state accepted)" 5
assert_eq "one failed" "$(count_state failed)" 1
assert_ge "retries happened" "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status >= 500")" 2
sleep 1.5   # serve seals every second: let it seal some rows itself
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
assert_eq "serve sealed rows itself" "$([ "$(sql "$DB" "SELECT count(*) FROM audit_log WHERE hash IS NOT NULL")" -gt 0 ] && echo yes)" yes

assert_eq "audit verify exits 0" "$(verify)" 0
assert_contains "audit verify says ok" "$(cat "$T/verify.out")" "audit chain ok"
assert_eq "every row sealed after verify" "$(sql "$DB" "SELECT count(*) FROM audit_log WHERE hash IS NULL")" 0
assert_eq "one audit row per transition and per attempt" \
    "$(sql "$DB" "SELECT count(*) FROM audit_log")" \
    "$(sql "$DB" "SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM attempts)")"

"$OUTBOX_BIN" audit --db "$DB" --format jsonl >"$T/audit.jsonl" 2>"$T/audit.err"
assert_eq "audit export exits 0" "$?" 0
"$OUTBOX_BIN" audit --db "$DB" --format csv >"$T/audit.csv" 2>"$T/audit-csv.err"
assert_eq "audit csv export exits 0" "$?" 0

# ---- independent checks in Python ----------------------------------------------------------
python3 - "$DB" "$T/audit.jsonl" "$T/audit.csv" <<'EOF' >"$T/chain.out" 2>&1
import csv, datetime, hashlib, io, json, sqlite3, sys
db, jsonl, csvfile = sys.argv[1:4]
GENESIS = "0" * 64
problems = []

def J(t):
    """A JSON string escaped as lib/audit.h documents (obx_buf_json_str)."""
    out = '"'
    for c in t:
        out += {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t'}.get(
            c, c if ord(c) >= 0x20 else '\\u%04x' % ord(c))
    return out + '"'

def canonical(id_, at_ms, kind, ch, ext, record):
    return "[%d,%d,%s,%s,%s,%s]" % (id_, at_ms, J(kind), J(ch), J(ext), J(record))
def problem(s):
    problems.append(s)

con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
rows = con.execute("SELECT id, at_ms, kind, channel_id, external_message_id, record, hash"
                   " FROM audit_log ORDER BY id").fetchall()
checkpoints = con.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]
if checkpoints:
    problem("a checkpoint exists before any purge")
# 1. recompute the chain from the documented encoding
prev = GENESIS
for id_, at_ms, kind, ch, ext, record, h in rows:
    canon = prev + "\n" + canonical(id_, at_ms, kind, ch, ext, record)
    want = hashlib.sha256(canon.encode("utf-8")).hexdigest()
    if h != want:
        problem("row %d: stored hash %s, recomputed %s" % (id_, h, want))
    prev = h
# 2. the jsonl export
lines = open(jsonl, encoding="utf-8").read().split("\n")
if lines[-1] != "":
    problem("jsonl does not end with a newline")
objs = []
for n, l in enumerate(lines[:-1], 1):
    try:
        objs.append(json.loads(l))
    except Exception as e:
        problem("jsonl line %d is not JSON: %s: %r" % (n, e, l[:200]))
if not objs:
    problem("empty export")
    objs = [{}]
head, exported = objs[-1], objs[:-1]
if list(head) != ["chain_head"]:
    problem("last line is not {\"chain_head\":...}: %r" % head)
if len(exported) != len(rows):
    problem("%d exported rows, %d in audit_log" % (len(exported), len(rows)))
prev = GENESIS
for e, r in zip(exported, rows):
    id_, at_ms, kind, ch, ext, record, h = r
    for k in ("id", "at", "kind", "channel_id", "external_message_id", "record", "prev_hash", "hash"):
        if k not in e:
            problem("row %r has no %s" % (e.get("id"), k))
    if e.get("prev_hash") != prev:
        problem("row %d: prev_hash %s is not the hash of the row before (%s)"
                % (id_, e.get("prev_hash"), prev))
    got = (e.get("id"), e.get("kind"), e.get("channel_id"), e.get("external_message_id"),
           e.get("hash"))
    if got != (id_, kind, ch, ext, h):
        problem("row %d: export %r differs from the database %r" % (id_, got, (id_, kind, ch, ext, h)))
    if e.get("record") != json.loads(record):
        problem("row %d: record differs from the database" % id_)
    t = datetime.datetime.fromtimestamp(at_ms / 1000, tz=datetime.timezone.utc)
    want_at = t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (at_ms % 1000)
    if e.get("at") != want_at:
        problem("row %d: at %r, want %r (at_ms %d)" % (id_, e.get("at"), want_at, at_ms))
    prev = e.get("hash")
if rows and head.get("chain_head") != {"id": rows[-1][0], "hash": rows[-1][6]}:
    problem("chain_head %r is not the last row (%d, %s)" % (head, rows[-1][0], rows[-1][6]))
# 3. what an attempt row records: the Partoo fields sent and the answer
attempts = con.execute("SELECT o.channel_id, o.external_message_id, o.content, a.http_status,"
                       " a.outcome FROM attempts a JOIN outbox o ON o.id = a.message_id"
                       " ORDER BY a.id").fetchall()
recs = [(e["channel_id"], e["external_message_id"], e["record"].get("content"),
         e["record"].get("http_status"), e["record"].get("outcome"))
        for e in exported if e.get("kind") == "attempt"]
if recs != attempts:
    problem("attempt records %r != attempts %r" % (recs, attempts))
statuses = sorted(r[3] for r in recs)
if 400 not in statuses or 500 not in statuses or 200 not in statuses:
    problem("attempt statuses %r lack 200, 400 or 500" % statuses)
trans = [(e["record"].get("from"), e["record"].get("to")) for e in exported if e.get("kind") == "transition"]
for want in [("queued", "cancelled"), ("sending", "failed"), ("sending", "accepted"), ("sending", "queued")]:
    if want not in trans:
        problem("no transition %s -> %s in the audit log" % want)
# 4. the CSV export carries the same rows
rd = list(csv.reader(io.StringIO(open(csvfile, encoding="utf-8", newline="").read())))
if not rd or rd[0] != ["id", "at", "kind", "channel_id", "external_message_id", "record", "prev_hash", "hash"]:
    problem("csv header %r" % (rd[:1],))
body = rd[1:]
if len(body) != len(exported):
    problem("csv has %d rows, jsonl %d" % (len(body), len(exported)))
for c, e in zip(body, exported):
    if (int(c[0]), c[1], c[2], c[3], c[4], c[6], c[7]) != (e["id"], e["at"], e["kind"], e["channel_id"],
            e["external_message_id"], e["prev_hash"], e["hash"]) or json.loads(c[5]) != e["record"]:
        problem("csv row %s differs from jsonl" % c[0])
print("%d rows recomputed" % len(rows))
for p in problems:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
EOF
rc=$?
assert_eq "chain recomputed in Python, exports checked ($(head -1 "$T/chain.out"))" "$rc" 0
[ "$rc" = 0 ] || cat "$T/chain.out"

# ---- tampering -------------------------------------------------------------------------------
N=$(sql "$DB" "SELECT count(*) FROM audit_log")
K=$(sql "$DB" "SELECT id FROM audit_log WHERE kind = 'attempt' AND json_extract(record, '\$.http_status') = 400")
LAST=$(sql "$DB" "SELECT max(id) FROM audit_log")
assert_eq "row K ($K) is a middle row" "$([ "$K" -gt 1 ] && [ "$K" -lt "$LAST" ] && echo yes)" yes
sqlite3 "$DB" ".backup '$T/pristine.db'"
restore() { rm -f "$DB-wal" "$DB-shm"; cp "$T/pristine.db" "$DB"; }

# tamper NAME SQL: apply SQL to row K of a pristine copy; verify must fail and name row K.
tamper() {
    restore
    sql "$DB" "$2"
    local rc
    rc=$(verify)
    assert_eq "$1: audit verify exits 1" "$rc" 1
    assert_contains "$1: row $K is named" "$(cat "$T/verify.out")" "BROKEN at row $K:"
}
tamper "record changed (400 made 200)" \
    "UPDATE audit_log SET record = json_set(record, '\$.http_status', 200) WHERE id = $K"
tamper "at_ms changed" "UPDATE audit_log SET at_ms = at_ms + 1 WHERE id = $K"
tamper "kind changed" "UPDATE audit_log SET kind = 'transition' WHERE id = $K"
tamper "channel_id changed" "UPDATE audit_log SET channel_id = 'other' WHERE id = $K"
tamper "external_message_id changed" "UPDATE audit_log SET external_message_id = 'm9' WHERE id = $K"
tamper "record changed by one byte" "UPDATE audit_log SET record = record || ' ' WHERE id = $K"
# A forger who also recomputes row K's own hash still breaks row K+1.
restore
python3 - "$DB" "$K" <<'EOF'
import hashlib, sqlite3, sys
con = sqlite3.connect(sys.argv[1]); k = int(sys.argv[2])
prev = con.execute("SELECT hash FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT 1", (k,)).fetchone()[0]
id_, at, kind, ch, ext, rec = con.execute("SELECT id, at_ms, kind, channel_id, external_message_id,"
    " json_set(record, '$.http_status', 200) FROM audit_log WHERE id = ?", (k,)).fetchone()
def J(t):
    out = '"'
    for c in t:
        out += {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t'}.get(
            c, c if ord(c) >= 0x20 else '\\u%04x' % ord(c))
    return out + '"'
canon = prev + "\n" + "[%d,%d,%s,%s,%s,%s]" % (id_, at, J(kind), J(ch), J(ext), J(rec))
h = hashlib.sha256(canon.encode()).hexdigest()
con.execute("UPDATE audit_log SET record = ?, hash = ? WHERE id = ?", (rec, h, k)); con.commit()
EOF
assert_eq "re-hashed forgery: audit verify exits 1" "$(verify)" 1
assert_contains "re-hashed forgery: the next row is named" "$(cat "$T/verify.out")" "BROKEN at row $((K + 1)):"

restore
sql "$DB" "DELETE FROM audit_log WHERE id = $K"
assert_eq "middle row deleted: audit verify exits 1" "$(verify)" 1
assert_contains "middle row deleted: the row after it is named" "$(cat "$T/verify.out")" \
    "BROKEN at row $((K + 1)):"
"$OUTBOX_BIN" audit --db "$DB" verify --json >"$T/verify.json" 2>&1
assert_eq "verify --json: ok false" "$(jget "$(cat "$T/verify.json")" '$.ok')" 0
assert_eq "verify --json: first_bad_id" "$(jget "$(cat "$T/verify.json")" '$.first_bad_id')" $((K + 1))

restore
sql "$DB" "DELETE FROM audit_log WHERE id = 1"
assert_eq "first row deleted: audit verify exits 1" "$(verify)" 1
assert_contains "first row deleted: row 2 is named" "$(cat "$T/verify.out")" "BROKEN at row 2:"

restore
sql "$DB" "UPDATE audit_log SET hash = NULL WHERE id = $K"
assert_eq "a middle row unsealed: audit verify exits 1" "$(verify)" 1

restore
sql "$DB" "UPDATE audit_log SET hash = '$GENESIS' WHERE id = $LAST"
assert_eq "last row's hash forged: audit verify exits 1" "$(verify)" 1
assert_contains "last row's hash forged: named" "$(cat "$T/verify.out")" "BROKEN at row $LAST:"

# Cutting the end of the chain is what the exported chain head is for: verify alone cannot
# see it, but its head no longer matches the head an auditor kept from the export.
restore
sql "$DB" "DELETE FROM audit_log WHERE id = $LAST"
assert_eq "last row deleted: the rest still verifies" "$(verify)" 0
kept_head=$(tail -1 "$T/audit.jsonl")
"$OUTBOX_BIN" audit --db "$DB" verify --json >"$T/verify.json" 2>&1
assert_eq "last row deleted: the head moved back from the exported chain head" \
    "$(jget "$(cat "$T/verify.json")" '$.head.id') $(jget "$kept_head" '$.chain_head.id')" \
    "$((LAST - 1)) $LAST"

restore
assert_eq "the pristine copy still verifies" "$(verify)" 0
assert_contains "and reports every row" "$(cat "$T/verify.out")" "$N rows verified"

# ---- the encoding must be unambiguous: ids written by plain SQL may hold a newline ------------
# The CLI and the API refuse control characters in ids, but the SQL contract cannot. With "\n"
# as the only separator, moving text across the channel/message boundary would keep the hash;
# with quoted fields it cannot.
restore
"$OUTBOX_BIN" enqueue --db "$DB" --channel "ch" --message-id $'nl\nid' --business b1 \
    --conversation c-nl --content "x" --sender Consumer >/dev/null 2>&1
assert_eq "the CLI refuses a message id holding a newline" "$?" 1
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 'nl' || char(10) || 'id', 'b1', 'c-nl', 'x', 'Consumer')"
"$OUTBOX_BIN" cancel --db "$DB" ch $'nl\nid' >/dev/null
assert_eq "its cancellation verifies" "$(verify)" 0
R=$(sql "$DB" "SELECT max(id) FROM audit_log")
sql "$DB" "UPDATE audit_log SET channel_id = 'ch' || char(10) || 'nl', external_message_id = 'id' WHERE id = $R"
assert_eq "row re-attributed across the channel/message boundary: audit verify exits 1" "$(verify)" 1

finish
