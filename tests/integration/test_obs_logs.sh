#!/usr/bin/env bash
# Structured logs of `outbox serve`: with --log-format json every line of the log is one JSON
# object and every delivery attempt (accepted, retried, failed) is one line with its keys;
# with --log-format text every line is key=value pairs starting ts= level= mod=.
. "$(dirname "$0")/lib.sh"

FAST="--rate-limit 0 --retry-base 100ms --retry-cap 300ms"
# An odd channel id: a space, a quote, '=' and a backslash need quoting/escaping in both formats.
ODD='we"ird =ch\x'

# enqueue_one CHANNEL EXT_ID CONVERSATION

# ---- JSON ------------------------------------------------------------------------------------
start_mock --rate-limit 0
mock_post faults '{"script":[500,400]}' >/dev/null   # first request 500, second 400
enqueue_one ch j-retry c1       # 500 then 200
sleep 0.3
enqueue_one ch j-fail c2        # 400: failed at once
enqueue_one "$ODD" j-odd c3     # 200
start_serve $FAST --log-format json --max-inflight 1
wait_until 15 '[ "$(count_state accepted)" = 2 ] && [ "$(count_state failed)" = 1 ]'
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
sql "$DB" "SELECT o.external_message_id, a.http_status FROM attempts a JOIN outbox o ON o.id = a.message_id ORDER BY a.id" >"$T/attempts.txt"
assert_eq "four attempts recorded" "$(wc -l <"$T/attempts.txt")" 4

python3 - "$T/serve.log" "$T/attempts.txt" "$ODD" >"$T/json_check.out" 2>&1 <<'EOF'
import json, re, sys
log, attempts, odd = sys.argv[1], sys.argv[2], sys.argv[3]
problems = []
lines = open(log, "rb").read().split(b"\n")
if lines[-1] != b"":
    problems.append("log does not end with a newline")
lines = lines[:-1]
attempt_lines = []
for n, raw in enumerate(lines, 1):
    try:
        obj = json.loads(raw.decode("utf-8"))
    except Exception as e:
        problems.append("line %d is not JSON (%s): %r" % (n, e, raw[:200]))
        continue
    if not isinstance(obj, dict):
        problems.append("line %d is not an object" % n)
        continue
    for k in ("ts", "level", "mod", "msg"):
        if not isinstance(obj.get(k), str):
            problems.append("line %d: %s missing or not a string" % (n, k))
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", obj.get("ts", "")):
        problems.append("line %d: ts %r is not RFC 3339 UTC" % (n, obj.get("ts")))
    if obj.get("level") not in ("debug", "info", "warn", "error"):
        problems.append("line %d: level %r" % (n, obj.get("level")))
    if list(obj)[:4] != ["ts", "level", "mod", "msg"]:
        problems.append("line %d: keys do not start with ts, level, mod, msg: %r" % (n, list(obj)))
    if obj.get("msg") == "delivery attempt":
        attempt_lines.append((n, obj))
want_keys = ["channel_id", "external_message_id", "attempt", "status", "duration_ms", "error"]
for n, obj in attempt_lines:
    for k in want_keys:
        if k not in obj:
            problems.append("attempt line %d has no %s: %r" % (n, k, obj))
    for k in ("channel_id", "external_message_id"):
        if not isinstance(obj.get(k), str) or not obj.get(k):
            problems.append("attempt line %d: %s %r not a string" % (n, k, obj.get(k)))
    for k in ("attempt", "status", "duration_ms"):
        if type(obj.get(k)) is not int or obj.get(k) < 0:
            problems.append("attempt line %d: %s %r not a non-negative integer" % (n, k, obj.get(k)))
    if obj.get("error") is not None and not isinstance(obj.get("error"), str):
        problems.append("attempt line %d: error %r neither null nor a string" % (n, obj.get("error")))
    if obj.get("mod") != "worker":
        problems.append("attempt line %d: mod %r" % (n, obj.get("mod")))
got = sorted((o["external_message_id"], o["status"]) for _, o in attempt_lines)
want = sorted((l.split("|")[0], int(l.split("|")[1]))
              for l in open(attempts).read().splitlines())
if got != want:
    problems.append("attempt lines %r != attempts table %r" % (got, want))
by_id = {}
for _, o in attempt_lines:
    by_id.setdefault(o["external_message_id"], []).append(o)
def check(cond, what):
    if not cond:
        problems.append(what)
r = by_id.get("j-retry", [])
check([(o["attempt"], o["status"]) for o in r] == [(1, 500), (2, 200)],
      "j-retry: attempts %r, want (1,500),(2,200)" % [(o.get("attempt"), o.get("status")) for o in r])
check(all(o["level"] == "info" for o in r), "j-retry lines are not info: %r" % r)
check(len(r) == 2 and r[1]["error"] is None, "j-retry: accepted attempt has an error")
f = by_id.get("j-fail", [])
check(len(f) == 1 and f[0]["status"] == 400 and f[0]["attempt"] == 1,
      "j-fail: %r" % f)
check(len(f) == 1 and f[0]["level"] == "warn", "j-fail: a failed message is logged at warn: %r" % f)
o = by_id.get("j-odd", [])
check(len(o) == 1 and o[0]["channel_id"] == odd, "j-odd: channel_id %r, want %r"
      % ([x.get("channel_id") for x in o], odd))
check(sum(1 for _, x in attempt_lines if x.get("channel_id") == "ch") == 3, "three attempts on ch")
print("%d lines, %d attempt lines" % (len(lines), len(attempt_lines)))
for p in problems:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
EOF
rc=$?
assert_eq "json: every line is a JSON object and each attempt has its keys ($(head -1 "$T/json_check.out"))" "$rc" 0
[ "$rc" = 0 ] || { cat "$T/json_check.out"; head -c 3000 "$T/serve.log"; }
assert_contains "json: the serving line is there" "$(cat "$T/serve.log")" '"msg":"serving"'

# ---- text ------------------------------------------------------------------------------------
DB=$T/text.db
: >"$T/serve.log"
mock_post reset '{}' >/dev/null
mock_post faults '{"script":[503]}' >/dev/null
enqueue_one ch t-1 c1
enqueue_one "$ODD" t-odd c2
start_serve $FAST --log-format text --max-inflight 1
wait_until 15 '[ "$(count_state accepted)" = 2 ]'
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "text: serve exits 0" "$?" 0
python3 - "$T/serve.log" "$ODD" >"$T/text_check.out" 2>&1 <<'EOF'
import json, re, sys
log, odd = sys.argv[1], sys.argv[2]
problems = []
# A value is bare (no blank, quote or '=') or a JSON string; keys are identifiers.
token = re.compile(r'([a-z_][a-z0-9_]*)=("(?:[^"\\]|\\.)*"|[^\s"=]+)')
attempts = []
lines = open(log, encoding="utf-8").read().split("\n")
if lines[-1] != "":
    problems.append("log does not end with a newline")
for n, line in enumerate(lines[:-1], 1):
    pos, kv = 0, []
    while pos < len(line):
        m = token.match(line, pos)
        if not m:
            problems.append("line %d: not key=value at column %d: %r" % (n, pos + 1, line))
            break
        k, v = m.group(1), m.group(2)
        kv.append((k, json.loads(v) if v.startswith('"') else v))
        pos = m.end()
        if pos < len(line):
            if line[pos] != " ":
                problems.append("line %d: no single blank after %s at column %d" % (n, k, pos + 1))
                break
            pos += 1
    keys = [k for k, _ in kv]
    if keys[:4] != ["ts", "level", "mod", "msg"]:
        problems.append("line %d: starts with %r, not ts= level= mod= msg=" % (n, keys[:4]))
    if len(set(keys)) != len(keys):
        problems.append("line %d: a key repeats" % n)
    d = dict(kv)
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", str(d.get("ts"))):
        problems.append("line %d: ts %r" % (n, d.get("ts")))
    if d.get("level") not in ("debug", "info", "warn", "error"):
        problems.append("line %d: level %r" % (n, d.get("level")))
    if d.get("msg") == "delivery attempt":
        attempts.append(d)
got = sorted((a.get("external_message_id"), a.get("channel_id"), a.get("status"), a.get("attempt"))
             for a in attempts)
want = sorted([("t-1", "ch", "503", "1"), ("t-1", "ch", "200", "2"), ("t-odd", odd, "200", "1")])
if got != want:
    problems.append("attempt lines %r, want %r" % (got, want))
for a in attempts:
    for k in ("duration_ms", "error"):
        if k not in a:
            problems.append("attempt line without %s: %r" % (k, a))
print("%d lines, %d attempt lines" % (len(lines) - 1, len(attempts)))
for p in problems:
    print("PROBLEM", p)
sys.exit(1 if problems else 0)
EOF
rc=$?
assert_eq "text: every line is key=value from ts= level= mod= ($(head -1 "$T/text_check.out"))" "$rc" 0
[ "$rc" = 0 ] || { cat "$T/text_check.out"; head -c 3000 "$T/serve.log"; }
assert_contains "text: the odd channel id is quoted as a JSON string" "$(cat "$T/serve.log")" \
    'channel_id="we\"ird =ch\\x"'

# ---- a row written by plain SQL whose ids are not UTF-8 ------------------------------------------
# The SQL contract lets producers INSERT directly and SQLite does not check UTF-8
# (docs/schema.md). The JSON log must stay one valid (UTF-8) JSON object per line.
DB=$T/raw.db
: >"$T/serve.log"
"$OUTBOX_BIN" migrate --db "$DB" >/dev/null
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES (CAST(X'6261642DFF' AS TEXT), CAST(X'6D2DC328' AS TEXT), 'b1', 'raw-c', 'x', 'User')"
start_serve $FAST --log-format json
wait_until 15 '[ "$(sql "$DB" "SELECT count(*) FROM attempts")" -ge 1 ]'
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
python3 - "$T/serve.log" >"$T/raw_check.out" 2>&1 <<'EOF'
import json, sys
bad = []
for n, raw in enumerate(open(sys.argv[1], "rb").read().splitlines(), 1):
    try:
        json.loads(raw.decode("utf-8"))
    except Exception as e:
        bad.append("line %d: %s: %r" % (n, e, raw[:160]))
print("; ".join(bad) if bad else "all lines valid")
sys.exit(1 if bad else 0)
EOF
rc=$?
assert_eq "json log with non-UTF-8 ids stays valid UTF-8 JSON ($(cat "$T/raw_check.out"))" "$rc" 0

finish
