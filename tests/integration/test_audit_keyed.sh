#!/usr/bin/env bash
# tests/integration/test_audit_keyed.sh: the keyed audit chain (issue 19 #16, lib/audit.h).
#
# A plain chain is re-sealed by anyone who can write the database; a keyed one (audit_key_file,
# HMAC-SHA256) is not. Rows sealed before the key stay plain; serve starts the keyed segment.
# verify passes with the key, fails without it or with another key, and fails after an
# attacker without the key rewrites a row and re-seals the chain with SHA-256 (also when the
# attacker removes the keyed segment's record first). serve will not start on a keyed chain
# without its key.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_audit_keyed.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
B=$OUTBOX_BIN
head -c 32 /dev/urandom | base64 > "$T/audit.key"
head -c 32 /dev/urandom | base64 > "$T/other.key"
printf 'audit_key_file = %s\n' "$T/audit.key" > "$T/key.conf"
printf 'audit_key_file = %s\n' "$T/other.key" > "$T/other.conf"
KEY=$(cat "$T/audit.key")

# reseal DB SEAL_ID [drop_modes]: an attacker without the key rewrites the reason of the first
# transition that seal SEAL_ID covers and recomputes every seal from there with plain SHA-256
# (lib/audit.h's canonical form, the events as lib/audit.c reads them).
reseal() {
    PYTHONPATH=$SRC/tests/integration PYTHONDONTWRITEBYTECODE=1 python3 - "$@" <<'PY'
import hashlib, json, sqlite3, sys
from audit_chain import EVENTS
db, first = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
if len(sys.argv) > 3:
    c.execute("DELETE FROM audit_chain_modes")
seals = c.execute("SELECT id, transitions_upto, attempts_upto, hash FROM audit_seals"
                  " ORDER BY id").fetchall()
prev, base = "0" * 64, None
for sid, tu, au, h in seals:
    if base is not None and sid >= first and h:
        if sid == first:
            c.execute("UPDATE transitions SET reason = 'forged' WHERE id = ?", (base[0] + 1,))
        for r in c.execute(EVENTS, (base[0], tu, base[1], au)).fetchall():
            canon = json.dumps(list(r[:6]), separators=(",", ":"), ensure_ascii=False)
            prev = hashlib.sha256((prev + "\n" + canon).encode()).hexdigest()
        c.execute("UPDATE audit_seals SET hash = ? WHERE id = ?", (prev, sid))
    elif h:
        prev = h
    base = (tu, au)
c.commit()
PY
}
verify() { assert_status "$1" "$2" "$B" audit verify --db "${DB2:-$DB}" --json "${@:3}"; }
vjson() { cat "$T/last.out"; }

# ---- the plain chain: re-sealing passes (what the key is for) --------------------------------
DB2=$T/plain.db
"$B" migrate --db "$DB2" >/dev/null
DB=$DB2 enqueue_n 3 p
for i in 1 2 3; do "$B" cancel --db "$DB2" ch "p$i" >/dev/null; done # audited: transitions
verify "plain chain verifies" 0
assert_eq "... three rows" "$(jget "$(vjson)" '$.checked')" 3
reseal "$DB2" 1
verify "plain chain re-sealed without any key: still verifies" 0
assert_eq "... the forged record is in it" "$(sql "$DB2" "SELECT reason FROM transitions WHERE id = 1")" forged
unset DB2

# ---- keyed: plain rows first, then serve seals with the key ------------------------------------
"$B" migrate --db "$DB" >/dev/null
enqueue_n 3 a
for i in 1 2 3; do "$B" cancel --db "$DB" ch "a$i" >/dev/null; done
verify "before the key: plain rows verify" 0
assert_eq "... three of them" "$(jget "$(vjson)" '$.checked')" 3
start_mock
start_serve --config "$T/key.conf" --rate-limit 0
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM audit_chain_modes")" = 1 ]' ||
    fail "serve did not start the keyed segment"
FROM=$(sql "$DB" "SELECT from_id FROM audit_chain_modes")
enqueue_n 5 k
wait_until 20 '[ "$(count_state accepted)" -ge 5 ] &&
    [ "$(sql "$DB" "SELECT (SELECT max(id) FROM transitions) = (SELECT max(transitions_upto) FROM audit_seals) AND (SELECT max(id) FROM attempts) = (SELECT max(attempts_upto) FROM audit_seals)")" = 1 ]' ||
    fail "messages not delivered and sealed"
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
assert_eq "the keyed segment starts after the plain events" "$(sql "$DB" "SELECT sum(events) FROM audit_seals WHERE id < $FROM")" 3
assert_ge "events were sealed with the key" "$(sql "$DB" "SELECT sum(events) FROM audit_seals WHERE id >= $FROM")" 5
assert_not_contains "the key is not in the log" "$(cat "$T/serve.log")" "$KEY"
assert_eq "the key is not in the database" "$(sql "$DB" "SELECT count(*) FROM audit_chain_modes WHERE key_id = '$KEY' OR mac = '$KEY'")" 0

verify "keyed chain verifies with the key" 0 --config "$T/key.conf"
assert_eq "verify reports where the keyed segment starts" "$(jget "$(vjson)" '$.keyed_from_id')" "$FROM"
assert_status "text verify names the keyed segment" 0 "$B" audit verify --db "$DB" --config "$T/key.conf"
assert_contains "... HMAC-SHA256) from row $FROM" "$(cat "$T/last.out")" "(HMAC-SHA256) from row $FROM"
verify "without the key: fails" 1
assert_contains "... and the seal warning names the missing key" "$(cat "$T/last.err")" "set audit_key_file"
assert_contains "... and says the key is needed" "$(jget "$(vjson)" '$.problem')" "needs the key"
verify "with another key: fails" 1 --config "$T/other.conf"
assert_contains "... and says it is another key" "$(jget "$(vjson)" '$.problem')" "not the one"
assert_status "serve refuses a keyed chain without the key" 1 timeout 20 env OUTBOX_PARTOO_API_KEY=k \
    "$B" serve --db "$DB" --partoo-base-url "$MOCK_URL" --api-listen 127.0.0.1:0 \
    --webhook-listen 127.0.0.1:0
assert_contains "... saying why" "$(cat "$T/last.out" "$T/last.err")" "set audit_key_file"

assert_status "purge without the key of a keyed chain: exit 1" 1 "$B" purge --db "$DB" --older-than 0s
assert_contains "... saying why" "$(cat "$T/last.err")" "set audit_key_file"
assert_eq "... before deleting anything" "$(sql "$DB" "SELECT count(*) FROM outbox")" 8

# ---- the attacker without the key ---------------------------------------------------------------
cp "$DB" "$T/attacked.db"
reseal "$T/attacked.db" "$FROM"
DB2=$T/attacked.db verify "a re-sealed keyed chain fails with the key" 1 --config "$T/key.conf"
assert_eq "... at the forged seal" "$(jget "$(vjson)" '$.first_bad_id')" "$FROM"
cp "$DB" "$T/attacked2.db"
reseal "$T/attacked2.db" 1 drop_modes
DB2=$T/attacked2.db verify "re-sealed from row 1 with the keyed record removed: fails with the key" 1 \
    --config "$T/key.conf"
assert_contains "... no row sealed with the key" "$(jget "$(vjson)" '$.problem')" "no row is sealed with it"
finish
