#!/usr/bin/env bash
# The tamper-evident audit trail after a real run (accepted, retried, failed, cancelled):
# `audit verify` passes; the chain runs over the transitions and attempts themselves (schema 9,
# lib/audit.h) and no event is copied (audit_log stays empty, each content is stored once); the
# jsonl export chains event to event and ends with the chain head; every seal is recomputed
# independently in Python from the documented encoding; the CSV export carries the same rows;
# changing any field of one event or of a message's identity, deleting or inserting an event,
# or forging a seal is detected and the broken seal is named.
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

GENESIS=0000000000000000000000000000000000000000000000000000000000000000
# enqueue_quoted EXT_ID CONVERSATION [CHANNEL]: content with quotes, a comma and non-ASCII,
# for the CSV and JSON exports.
enqueue_quoted() {
    "$OUTBOX_BIN" enqueue --db "$DB" --channel "${3:-ch}" --message-id "$1" --business b1 \
        --conversation "$2" --content "content of $1, with \"quotes\", a comma and é" \
        --sender Consumer >/dev/null
}

# ---- a real run ----------------------------------------------------------------------------
start_mock --rate-limit 0
mock_post faults '{"script":[500,503,400]}' >/dev/null
for i in 1 2 3 4 5 6; do enqueue_quoted m$i c$i; done
enqueue_quoted gone c7
"$OUTBOX_BIN" cancel --db "$DB" ch gone >/dev/null
start_serve --rate-limit 0 --retry-base 100ms --retry-cap 300ms --max-inflight 2
wait_until 20 '[ "$(count_state accepted)" = 5 ] && [ "$(count_state failed)" = 1 ]'
assert_eq "five accepted" "$(count_state accepted)" 5
assert_eq "one failed" "$(count_state failed)" 1
assert_ge "retries happened" "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status >= 500")" 2
sleep 1.5   # serve seals every second: let it seal some events itself
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
assert_ge "serve sealed events itself" "$(sql "$DB" "SELECT count(*) FROM audit_seals WHERE hash <> ''")" 1

assert_eq "audit verify exits 0" "$(audit_verify)" 0
assert_contains "audit verify says ok" "$(cat "$T/verify.out")" "audit chain ok"
EVENTS=$(sql "$DB" "SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM attempts)")
assert_contains "every transition and attempt is verified" "$(cat "$T/verify.out")" "ok: $EVENTS rows verified"
# Each fact once: nothing is copied into audit_log, and the content only lives in outbox.
assert_eq "no event copied into audit_log" "$(sql "$DB" "SELECT count(*) FROM audit_log")" 0
assert_eq "one identity row per message with events" \
    "$(sql "$DB" "SELECT count(*) FROM audit_messages")" \
    "$(sql "$DB" "SELECT count(DISTINCT message_id) FROM transitions")"
assert_eq "every message's sent fields are hashed" \
    "$(sql "$DB" "SELECT count(*) FROM audit_messages WHERE length(sent_sha256) = 32")" \
    "$(sql "$DB" "SELECT count(*) FROM audit_messages")"

"$OUTBOX_BIN" audit --db "$DB" --format jsonl >"$T/audit.jsonl" 2>"$T/audit.err"
assert_eq "audit export exits 0" "$?" 0
"$OUTBOX_BIN" audit --db "$DB" --format csv >"$T/audit.csv" 2>"$T/audit-csv.err"
assert_eq "audit csv export exits 0" "$?" 0

# ---- independent checks in Python ----------------------------------------------------------
cat >"$T/chain.py" <<'PYEOF'
import csv, datetime, hashlib, io, json, sqlite3, sys
from audit_chain import canonical
db, jsonl, csvfile = sys.argv[1:4]
GENESIS = "0" * 64
problems = []

def problem(s):
    problems.append(s)
def jobj(d):
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)

con = sqlite3.connect("file:%s?mode=ro" % db, uri=True)
if con.execute("SELECT count(*) FROM audit_checkpoints").fetchone()[0]:
    problem("a checkpoint exists before any purge")
ident = {m: (ch, ext, sent) for m, ch, ext, sent in con.execute(
    "SELECT message_id, channel_id, external_message_id, sent_sha256 FROM audit_messages")}
# 0. what was sent: sent_sha256 is the SHA-256 of the JSON object of the Partoo fields
for m, biz, conv, content, sender, cname, cimg in con.execute(
        "SELECT id, business_id, external_conversation_id, content, sender_type, consumer_name,"
        " consumer_image FROM outbox"):
    sent = jobj({"business_id": biz, "external_conversation_id": conv, "content": content,
                 "sender_type": sender, "consumer_name": cname, "consumer_image": cimg})
    if m in ident and hashlib.sha256(sent.encode()).digest() != ident[m][2]:
        problem("message %d: sent_sha256 is not the hash of its fields %s" % (m, sent))
# 1. recompute every seal: transitions then attempts of its range, each by id
def events(t0, t1, a0, a1):
    out = []
    for id_, m, at, f, to, reason in con.execute(
            "SELECT id, message_id, at_ms, from_state, to_state, reason FROM transitions"
            " WHERE id > ? AND id <= ? ORDER BY id", (t0, t1)):
        ch, ext, _ = ident.get(m, ("", "", None))
        out.append((id_, at, "transition", ch, ext,
                    jobj({"message_id": m, "from": f, "to": to, "reason": reason})))
    for id_, m, at, dur, st, outc, err, exc in con.execute(
            "SELECT id, message_id, started_at_ms, duration_ms, http_status, outcome, error,"
            " response_excerpt FROM attempts WHERE id > ? AND id <= ? ORDER BY id", (a0, a1)):
        ch, ext, sent = ident.get(m, ("", "", None))
        out.append((id_, at, "attempt", ch, ext,
                    jobj({"message_id": m, "sent_sha256": sent.hex() if sent is not None else "",
                          "duration_ms": dur, "http_status": st, "outcome": outc, "error": err,
                          "response_excerpt": exc})))
    return out
seals = con.execute("SELECT id, transitions_upto, attempts_upto, events, hash FROM audit_seals"
                    " ORDER BY id").fetchall()
prev, base, chain = GENESIS, None, []
for sid, tu, au, n, h in seals:
    if base is None or not h:
        base = (tu, au)
        continue
    evs = events(base[0], tu, base[1], au)
    for e in evs:
        prev = hashlib.sha256((prev + "\n" + canonical(*e)).encode("utf-8")).hexdigest()
        chain.append(e + (prev,))
    if prev != h or len(evs) != n:
        problem("seal %d: stored hash %s, recomputed %s (%d events, %d stored)" % (sid, h, prev, len(evs), n))
    base = (tu, au)
total = con.execute("SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM attempts)").fetchone()[0]
if len(chain) != total:
    problem("%d events in seals, %d in the tables" % (len(chain), total))
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
if len(exported) != len(chain):
    problem("%d exported rows, %d events in the chain" % (len(exported), len(chain)))
prev = GENESIS
for e, r in zip(exported, chain):
    id_, at_ms, kind, ch, ext, record, h = r
    for k in ("id", "at", "kind", "channel_id", "external_message_id", "record", "prev_hash", "hash"):
        if k not in e:
            problem("row %r has no %s" % (e.get("id"), k))
    if e.get("prev_hash") != prev:
        problem("%s %d: prev_hash %s is not the hash of the event before (%s)"
                % (kind, id_, e.get("prev_hash"), prev))
    got = (e.get("id"), e.get("kind"), e.get("channel_id"), e.get("external_message_id"), e.get("hash"))
    if got != (id_, kind, ch, ext, h):
        problem("%s %d: export %r differs from the database %r" % (kind, id_, got, (id_, kind, ch, ext, h)))
    if e.get("record") != json.loads(record):
        problem("%s %d: record differs from the database" % (kind, id_))
    t = datetime.datetime.fromtimestamp(at_ms / 1000, tz=datetime.timezone.utc)
    want_at = t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (at_ms % 1000)
    if e.get("at") != want_at:
        problem("%s %d: at %r, want %r (at_ms %d)" % (kind, id_, e.get("at"), want_at, at_ms))
    prev = e.get("hash")
if chain and head.get("chain_head", {}).get("hash") != chain[-1][6]:
    problem("chain_head %r is not the last event's hash %s" % (head, chain[-1][6]))
# 3. what an attempt records: the hash of the Partoo fields sent, and the answer
attempts = con.execute("SELECT o.channel_id, o.external_message_id, lower(hex(m.sent_sha256)),"
                       " a.http_status, a.outcome FROM attempts a JOIN outbox o ON o.id = a.message_id"
                       " JOIN audit_messages m ON m.message_id = a.message_id ORDER BY a.id").fetchall()
recs = [(e["channel_id"], e["external_message_id"], e["record"].get("sent_sha256"),
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
print("%d events recomputed in %d seals" % (len(chain), len([s for s in seals if s[4]])))
for p in problems:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
PYEOF
PYTHONPATH=$SRC/tests/integration PYTHONDONTWRITEBYTECODE=1 python3 "$T/chain.py" "$DB" "$T/audit.jsonl" "$T/audit.csv" >"$T/chain.out" 2>&1
rc=$?
assert_eq "chain recomputed in Python, exports checked ($(head -1 "$T/chain.out"))" "$rc" 0
[ "$rc" = 0 ] || cat "$T/chain.out"

# ---- tampering -------------------------------------------------------------------------------
# K: the attempt answered 400; S: the seal covering it; KM: its message.
K=$(sql "$DB" "SELECT id FROM attempts WHERE http_status = 400")
S=$(sql "$DB" "SELECT min(id) FROM audit_seals WHERE attempts_upto >= $K AND hash <> ''")
KM=$(sql "$DB" "SELECT message_id FROM attempts WHERE id = $K")
LAST=$(sql "$DB" "SELECT max(id) FROM audit_seals")
assert_eq "attempt K ($K) is sealed (seal $S)" "$([ -n "$S" ] && echo yes)" yes
sqlite3 "$DB" ".backup '$T/pristine.db'"

# tamper NAME SQL: apply SQL to a pristine copy; verify must fail and name seal S.
tamper() {
    restore_pristine
    sql "$DB" "$2"
    local rc
    rc=$(audit_verify)
    assert_eq "$1: audit verify exits 1" "$rc" 1
    assert_contains "$1: seal $S is named" "$(cat "$T/verify.out")" "BROKEN at row $S:"
}
tamper "http_status changed (400 made 200)" "UPDATE attempts SET http_status = 200 WHERE id = $K"
tamper "started_at_ms changed" "UPDATE attempts SET started_at_ms = started_at_ms + 1 WHERE id = $K"
tamper "outcome changed" "UPDATE attempts SET outcome = 'accepted' WHERE id = $K"
tamper "response excerpt changed by one byte" \
    "UPDATE attempts SET response_excerpt = coalesce(response_excerpt, '') || ' ' WHERE id = $K"
tamper "attempt moved to another message" "UPDATE attempts SET message_id = message_id + 1 WHERE id = $K"
# The message's identity is in each of its events: the first seal with one of them breaks
# (its claim may be sealed before the attempt, depending on when the sealer ran).
SK=$S
S=$(sql "$DB" "SELECT min(id) FROM audit_seals WHERE hash <> '' AND (attempts_upto >= $K OR
    transitions_upto >= (SELECT min(id) FROM transitions WHERE message_id = $KM))")
tamper "channel_id changed" "UPDATE audit_messages SET channel_id = 'other' WHERE message_id = $KM"
tamper "external_message_id changed" \
    "UPDATE audit_messages SET external_message_id = 'm9' WHERE message_id = $KM"
assert_contains "SQLite's seals are named by their id ranges" "$(cat "$T/verify.out")" \
    "seal $S: transitions "
S=$SK
tamper "what was sent changed" "UPDATE audit_messages SET sent_sha256 = zeroblob(32) WHERE message_id = $KM"
tamper "attempt deleted" "DELETE FROM attempts WHERE id = $K"
tamper "an attempt inserted inside the sealed range" \
    "UPDATE attempts SET id = id + 1000000 WHERE id = $K;
     INSERT INTO attempts (id, message_id, started_at_ms, duration_ms, outcome)
         VALUES ($K, $KM, 1, 1, 'fatal')"
TK=$(sql "$DB" "SELECT min(id) FROM transitions WHERE message_id = $KM AND to_state = 'failed'")
S2=$(sql "$DB" "SELECT min(id) FROM audit_seals WHERE transitions_upto >= $TK AND hash <> ''")
restore_pristine
sql "$DB" "UPDATE transitions SET to_state = 'confirmed' WHERE id = $TK"
assert_eq "transition changed: audit verify exits 1" "$(audit_verify)" 1
assert_contains "transition changed: its seal is named" "$(cat "$T/verify.out")" "BROKEN at row $S2:"

restore_pristine
sql "$DB" "UPDATE audit_seals SET hash = '$GENESIS' WHERE id = $LAST"
assert_eq "last seal's hash forged: audit verify exits 1" "$(audit_verify)" 1
assert_contains "last seal's hash forged: named" "$(cat "$T/verify.out")" "BROKEN at row $LAST:"
"$OUTBOX_BIN" audit --db "$DB" verify --json >"$T/verify.json" 2>&1
assert_eq "verify --json: ok false" "$(jget "$(cat "$T/verify.json")" '$.ok')" 0
assert_eq "verify --json: first_bad_id" "$(jget "$(cat "$T/verify.json")" '$.first_bad_id')" "$LAST"

# Cutting the end of the chain (the last seal and its last event) is what the exported chain
# head is for: verify alone cannot see it, but its head no longer matches the one an auditor
# kept from the export.
restore_pristine
sql "$DB" "DELETE FROM audit_seals WHERE id = $LAST; DELETE FROM attempts WHERE id = (SELECT max(id) FROM attempts)"
assert_eq "last seal and event deleted: the rest still verifies" "$(audit_verify)" 0
kept_head=$(tail -1 "$T/audit.jsonl")
"$OUTBOX_BIN" audit --db "$DB" verify --json >"$T/verify.json" 2>&1
assert_eq "last seal and event deleted: the head hash moved back from the exported chain head" \
    "$([ "$(jget "$(cat "$T/verify.json")" '$.head.hash')" != "$(jget "$kept_head" '$.chain_head.hash')" ] && echo moved)" moved

restore_pristine
assert_eq "the pristine copy still verifies" "$(audit_verify)" 0
assert_contains "and reports every event" "$(cat "$T/verify.out")" "$EVENTS rows verified"

# ---- the encoding must be unambiguous: ids written by plain SQL may hold a newline ------------
# The CLI and the API refuse control characters in ids, but the SQL contract cannot. With "\n"
# as the only separator, moving text across the channel/message boundary would keep the hash;
# with quoted fields it cannot.
restore_pristine
"$OUTBOX_BIN" enqueue --db "$DB" --channel "ch" --message-id $'nl\nid' --business b1 \
    --conversation c-nl --content "x" --sender Consumer >/dev/null 2>&1
assert_eq "the CLI refuses a message id holding a newline" "$?" 1
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 'nl' || char(10) || 'id', 'b1', 'c-nl', 'x', 'Consumer')"
"$OUTBOX_BIN" cancel --db "$DB" ch $'nl\nid' >/dev/null
assert_eq "its cancellation verifies" "$(audit_verify)" 0
R=$(sql "$DB" "SELECT max(message_id) FROM audit_messages")
sql "$DB" "UPDATE audit_messages SET channel_id = 'ch' || char(10) || 'nl', external_message_id = 'id' WHERE message_id = $R"
assert_eq "message re-attributed across the channel/message boundary: audit verify exits 1" "$(audit_verify)" 1

finish
