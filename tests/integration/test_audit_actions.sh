#!/usr/bin/env bash
# Pauses and resumes are audit events (SPEC §13, 0010_audit_actions.sql): a pause and a resume
# through the API by the dashboard (X-Outbox-Client: dashboard) and one by the CLI are sealed
# into the chain; `outbox audit` (jsonl and csv) shows each with who, what and when; `audit
# verify` counts them, and changing or deleting a stored pause or resume breaks the chain.
# GET /v1/audit/verify goes in slices, cursor to cursor, to the CLI's verdict.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

# dash METHOD PATH BODY: a request as the dashboard sends it.
dash() {
    CODE=$(curl -sS -m 30 -o "$T/resp.body" -w '%{http_code}' -X "$1" -H 'X-Outbox-Client: dashboard' \
        -H 'Content-Type: application/json' --data-binary "$3" "$API$2")
    RESP=$(cat "$T/resp.body")
}

start_mock --rate-limit 0
enqueue_n 2 pre 1
api_serve --rate-limit 0
wait_until 10 '[ "$(count_state accepted)" = 2 ]' || fail "messages sent"
before=$(now_ms)
dash POST /v1/pause '{"channel_id":"ch-held","reason":"maintenance"}'
assert_eq "pause by the dashboard" "$CODE" 200
dash POST /v1/resume '{"channel_id":"ch-held"}'
assert_eq "resume by the dashboard" "$CODE" 200
after=$(now_ms)
"$OUTBOX_BIN" pause --db "$DB" --channel ch-cli >/dev/null
assert_eq "pause by the cli" "$?" 0
wait_until 10 '[ "$(sql "$DB" "SELECT max(actions_upto) FROM audit_seals")" = 3 ]' ||
    fail "serve seals the actions"
stop_serve

assert_eq "audit verify exits 0" "$(audit_verify)" 0
EVENTS=$(sql "$DB" "SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM attempts) + (SELECT count(*) FROM actions)")
assert_contains "the actions are verified with the events" "$(cat "$T/verify.out")" "ok: $EVENTS rows verified"

"$OUTBOX_BIN" audit --db "$DB" --format jsonl >"$T/audit.jsonl"
assert_eq "audit export exits 0" "$?" 0
python3 - "$T/audit.jsonl" "$before" "$after" >"$T/check.out" 2>&1 <<'PYEOF'
import datetime, json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
before, after = int(sys.argv[2]), int(sys.argv[3])
acts = [r for r in rows if r.get("kind") in ("pause", "resume")]
def ms(r):
    for k in ("at_ms",):
        if k in r: return int(r[k])
    t = r["at"].replace("Z", "+00:00")
    return int(datetime.datetime.fromisoformat(t).timestamp() * 1000)
def rec(r):
    x = r["record"]
    return json.loads(x) if isinstance(x, str) else x
out = []
for r in acts:
    d = rec(r)
    ok_time = before - 1000 <= ms(r) <= after + 1000 if d["by"] == "dashboard" else True
    out.append("%s %s %s %s %s %s" % (r["kind"], r["channel_id"], d["by"], d["scope"],
                                      d["reason"], "timed" if ok_time and r.get("hash") else "NO"))
print("\n".join(out))
PYEOF
assert_eq "export: both dashboard actions and the cli pause, with who and when" "$(cat "$T/check.out")" \
"pause ch-held dashboard channel maintenance timed
resume ch-held dashboard channel  timed
pause ch-cli cli channel cli timed"
"$OUTBOX_BIN" audit --db "$DB" --format csv >"$T/audit.csv" 2>/dev/null
assert_eq "csv: the three actions" "$(grep -c -E '^[0-9]+,[^,]*,(pause|resume),' "$T/audit.csv")" 3
assert_contains "csv: by dashboard" "$(grep ',resume,' "$T/audit.csv")" 'dashboard'

# Tampering with a stored pause or resume breaks the chain at its seal.
cp "$DB" "$T/pristine.db"
sql "$DB" "UPDATE actions SET by = 'cli' WHERE action = 'pause' AND key = 'ch-held'"
assert_eq "pause row changed (by): audit verify exits 1" "$(audit_verify)" 1
assert_contains "pause row changed: the broken seal is named" "$(cat "$T/verify.out")" "BROKEN at row"
restore_pristine
sql "$DB" "UPDATE actions SET at_ms = at_ms + 60000 WHERE action = 'resume'"
assert_eq "resume time changed: audit verify exits 1" "$(audit_verify)" 1
restore_pristine
sql "$DB" "DELETE FROM actions WHERE action = 'resume'"
assert_eq "resume deleted: audit verify exits 1" "$(audit_verify)" 1
restore_pristine
assert_eq "the pristine copy verifies" "$(audit_verify)" 0

# ---- /v1/audit/verify in slices (SPEC §13: every dashboard call is short) -----------------
# More seals: each `audit verify` seals what is pending (one seal per pause here).
for i in 1 2 3 4; do
    "$OUTBOX_BIN" pause --db "$DB" --channel "x$i" >/dev/null
    "$OUTBOX_BIN" audit --db "$DB" verify >/dev/null
done
# slices: walks /v1/audit/verify with max_seals=2, cursor to cursor, until done; prints
# "CALLS ok checked first_bad_id head_id".
slices() {
    python3 - "$API" <<'PYEOF'
import json, sys, urllib.parse, urllib.request
api, calls, cursor = sys.argv[1], 0, None
while True:
    q = "?max_seals=2" + ("&cursor=" + urllib.parse.quote(cursor) if cursor else "")
    r = json.load(urllib.request.urlopen(api + "/v1/audit/verify" + q, timeout=30))
    calls += 1
    if r["done"]:
        break
    assert r["ok"] is None and r["cursor"], r
    cursor = r["cursor"]
    if calls > 1000:
        sys.exit("no end")
print(calls, r["ok"], r["checked"], r["first_bad_id"], r["head"]["id"])
PYEOF
}
cli_verdict() { # "ok checked first_bad_id head_id" of `outbox audit verify --json`
    "$OUTBOX_BIN" audit --db "$DB" verify --json 2>/dev/null | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["ok"], r["checked"], r["first_bad_id"], r["head"]["id"])'
}
SEALS=$(sql "$DB" "SELECT count(*) FROM audit_seals WHERE hash <> ''")
assert_ge "several seals" "$SEALS" 5
CLI=$(cli_verdict)
assert_contains "cli: the chain verifies" "$CLI" "True"
api_serve --rate-limit 0
out=$(slices)
assert_ge "the api takes several calls" "${out%% *}" 3
assert_eq "and ends with the cli's verdict" "${out#* }" "$CLI"
# A pause changed in the last seal: found by a later slice, as the cli finds it.
sql "$DB" "UPDATE actions SET by = 'dashboard' WHERE key = 'x4'"
CLI=$(cli_verdict)
assert_contains "cli: broken at the last seal" "$CLI" "False"
out=$(slices)
assert_ge "tampered: several calls" "${out%% *}" 3
assert_eq "tampered: the api's verdict is the cli's" "${out#* }" "$CLI"
req GET '/v1/audit/verify?cursor=v1.1.1.1.0.1.nothex'
assert_eq "a forged cursor is refused" "$(errsig)" "400 invalid_value cursor"
req GET '/v1/audit/verify?max_seals=0'
assert_eq "max_seals is bounded" "$(errsig)" "400 invalid_value max_seals"
stop_serve

finish
