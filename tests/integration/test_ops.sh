#!/usr/bin/env bash
# tests/integration/test_ops.sh: operator tooling (cmd/outbox/cmd_doctor.c, cmd/outbox/cmd_backup.c).
#
# `outbox doctor` on a healthy installation and on broken ones (configuration, schema
# version, a damaged database file, keys, listeners, quota), text and --json; then
# `outbox backup` of a database that `outbox serve` is draining against the mock, the
# copy checked with the sqlite3 shell and the CLI, and the --force rules.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_ops.sh

. "$(dirname "$0")/lib.sh"

# Hermetic: no OUTBOX_* from the caller's environment except the binary under test.
hermetic_env
B=$OUTBOX_BIN
[ -x "$B" ] || { echo "no binary at $B"; exit 1; }

KEY=test-key-5ecret
# Partoo's production key as a PEM file (partoo-api.md).
PROD_PEM='-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEA0G9ciHL6XZQXuWq6W4dFLvwNEPWgcdtQgEVlBIwZWBQ=
-----END PUBLIC KEY-----'

# doc [ARGS]: `outbox doctor --json` on $DB with the key $KEY (unset KEY= for none) and
# listeners on port 0 unless ARGS say otherwise. Output in $T/doc.json, exit in $RC.
doc() {
    if [ -n "$KEY" ]; then export OUTBOX_PARTOO_API_KEY=$KEY; else unset OUTBOX_PARTOO_API_KEY; fi
    "$B" doctor --json --db "$DB" --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 "$@" \
        >"$T/doc.json" 2>"$T/doc.err"
    RC=$?
    unset OUTBOX_PARTOO_API_KEY
}
# doc_text [ARGS]: the same in text form, output in $T/doc.txt.
doc_text() {
    OUTBOX_PARTOO_API_KEY=$KEY "$B" doctor --db "$DB" --api-listen 127.0.0.1:0 \
        --webhook-listen 127.0.0.1:0 "$@" >"$T/doc.txt" 2>&1
    RC=$?
}
# field CHECK FIELD: status, message or fix of one check in $T/doc.json.
field() {
    sqlite3 -batch -noheader :memory: \
        "SELECT json_extract(value, '\$.$2') FROM json_each(readfile('$T/doc.json'), '\$.checks')
         WHERE json_extract(value, '\$.name') = '$1'"
}
# expect NAME EXIT CHECK STATUS [TEXT]: the last doc run exited EXIT, CHECK has STATUS and
# its message or fix contains TEXT.
expect() {
    assert_eq "$1: exit status" "$RC" "$2"
    assert_eq "$1: $3 is $4" "$(field "$3" status)" "$4"
    [ -z "${5:-}" ] || assert_contains "$1: says '$5'" "$(field "$3" message) $(field "$3" fix)" "$5"
}
# garble FILE OFFSET LENGTH: overwrites LENGTH bytes at OFFSET with a fixed non-SQLite pattern.
garble() {
    yes 'garbage!' | tr -d '\n' | head -c "$3" |
        dd of="$1" bs=1 seek="$2" count="$3" conv=notrunc 2>/dev/null
}

"$B" migrate --db "$DB" >/dev/null
enqueue_n 300

# ---- doctor: healthy ----------------------------------------------------------------------
printf 'rate_limit = 120/min\nretention = 7d\n' >"$T/outbox.conf"
doc_text --config "$T/outbox.conf"
assert_eq "healthy: text exit 0" "$RC" 0
assert_contains "healthy: summary" "$(cat "$T/doc.txt")" "ready: "
assert_not_contains "healthy: no FAIL line" "$(cat "$T/doc.txt")" "FAIL"
assert_contains "healthy: names the config file" "$(cat "$T/doc.txt")" "$T/outbox.conf"
assert_not_contains "healthy: the API key is never printed" "$(cat "$T/doc.txt")" "$KEY"
doc --config "$T/outbox.conf"
assert_eq "healthy: json exit 0" "$RC" 0
assert_eq "healthy: json ok" "$(jget "$(cat "$T/doc.json")" '$.ok')" 1
assert_eq "healthy: json failures" "$(jget "$(cat "$T/doc.json")" '$.failures')" 0
for c in config database integrity schema disk serve api_listen webhook_listen api_key webhook_key; do
    s=$(field $c status)
    case "$s" in ok | warn) pass "healthy: $c is $s" ;; *) fail "healthy: $c is '$s'" ;; esac
done
assert_eq "healthy: serve not running" "$(field serve message)" \
    "outbox serve is not running on this database"
assert_not_contains "healthy: json never holds the key" "$(cat "$T/doc.json")" "$KEY"
printf '%s\n' "$PROD_PEM" >"$T/prod.pem"
doc --webhook-public-key-file "$T/prod.pem"
expect "key file with Partoo's key" 0 webhook_key ok "webhook_public_key_file"
doc --partoo-base-url https://api.sandbox.partoo.co/v2
expect "sandbox default key" 0 webhook_key ok "sandbox"

# ---- doctor: configuration ----------------------------------------------------------------------
printf 'rate_limit = 120/min\nbogus_key = 1\n' >"$T/bad.conf"
doc_text --config "$T/bad.conf"
assert_eq "unknown key: text exit 1" "$RC" 1
assert_contains "unknown key: named" "$(grep '^FAIL  config' "$T/doc.txt")" "bogus_key"
doc --config "$T/bad.conf"
expect "unknown key" 1 config fail "bad.conf:2"
assert_eq "unknown key: later checks skipped" "$(field database status)" skip
OUTBOX_RATE_LIMIT=fast doc
expect "bad environment value" 1 config fail "OUTBOX_RATE_LIMIT"
doc --retry-base 10m --retry-cap 1m
expect "cross-field check" 1 config fail "retry_base"

# ---- doctor: database and schema ----------------------------------------------------------------
cp "$DB" "$T/v99.db"
sqlite3 "$T/v99.db" 'PRAGMA user_version = 99'
DB0=$DB
DB=$T/v99.db doc
expect "schema 99" 1 schema fail "newer"
DB=$T/v99.db doc_text
assert_contains "schema 99: text says upgrade" "$(grep '^FAIL  schema' "$T/doc.txt")" "upgrade outbox"
sqlite3 "$T/v99.db" 'PRAGMA user_version = 1'
DB=$T/v99.db doc
expect "schema 1" 1 schema fail "run outbox migrate"
DB=$T/missing.db doc
expect "missing database" 1 database fail "outbox migrate"
assert_eq "missing database: integrity skipped" "$(field integrity status)" skip
[ ! -e "$T/missing.db" ] && pass "missing database: doctor does not create it" ||
    fail "missing database: doctor created $T/missing.db"

# A damaged file: garbage over the b-tree header of page 1 and beyond (bytes 100..4196),
# then in the middle of the file.
cp "$DB" "$T/corrupt.db"
garble "$T/corrupt.db" 100 4096
DB=$T/corrupt.db doc
expect "garbage at 100..4196" 1 integrity fail
assert_eq "garbage at 100..4196: valid json" "$(jget "$(cat "$T/doc.json")" '$.failures')" 1
assert_not_contains "garbage at 100..4196: no crash" "$(cat "$T/doc.err")" "Sanitizer"
cp "$DB" "$T/corrupt2.db"
size=$(stat -c %s "$T/corrupt2.db")
garble "$T/corrupt2.db" $((size / 2)) 8192
DB=$T/corrupt2.db doc_text
assert_eq "garbage in the middle: exit 1" "$RC" 1
assert_contains "garbage in the middle: integrity FAIL" "$(cat "$T/doc.txt")" "FAIL  integrity"
assert_status "backup of a damaged database fails" 1 "$B" backup --db "$T/corrupt2.db" "$T/bad.db"
assert_eq "backup of a damaged database: nothing written" "$(ls "$T" | grep -c '^bad\.db')" 0
head -c 8192 /dev/urandom >"$T/random.db"
DB=$T/random.db doc
expect "not a database" 1 database fail "not an SQLite database"
DB=$DB0

# ---- doctor: keys ----------------------------------------------------------------------------
echo "not a key" >"$T/bad.pem"
doc --webhook-public-key-file "$T/bad.pem"
expect "garbage key file" 1 webhook_key fail "not an Ed25519 public key"
doc --webhook-public-key-file "$T/nonexistent.pem"
expect "missing key file" 1 webhook_key fail "cannot read"
doc --webhook-public-key 0123456789abcdef
expect "malformed inline key" 1 config fail "webhook_public_key"
KEY= doc
expect "no API key" 1 api_key fail "no Partoo API key"
KEY= doc --partoo-api-key-file "$T/nonexistent.key"
expect "unreadable key file" 1 api_key fail "nonexistent.key"
echo "$KEY" >"$T/api.key"
KEY= doc --partoo-api-key-file "$T/api.key"
expect "key from a file" 0 api_key ok "partoo_api_key_file"

# --check-api-key: one request to Partoo (here the mock, which knows one key).
start_mock --rate-limit 0 --api-keys "$KEY"
doc --partoo-base-url "$MOCK_URL" --check-api-key
expect "probe, good key" 0 partoo ok "accepted"
assert_eq "probe: one request" "$(mock_stat '$.requests')" 1
KEY=wrong-key-123 doc --partoo-base-url "$MOCK_URL" --check-api-key
expect "probe, wrong key" 1 partoo fail "rejected"
assert_not_contains "probe, wrong key: key not printed" "$(cat "$T/doc.json")" "wrong-key-123"
doc --partoo-base-url http://127.0.0.1:1/v2 --check-api-key --connect-timeout 2s
expect "probe, unreachable" 0 partoo warn "cannot check"
doc
assert_eq "no probe without --check-api-key" "$(field partoo status)" ""

# ---- doctor: listeners and size -----------------------------------------------------------------
doc --api-listen 0.0.0.0:0
expect "non-loopback api_listen without token" 1 api_listen fail "api_token"
OUTBOX_API_TOKEN=s3cret-0123456789ab doc --api-listen 0.0.0.0:0
expect "non-loopback api_listen with token" 0 api_listen ok
OUTBOX_API_TOKEN=s3cret-0123456789ab doc --api-listen 192.0.2.1:8787
expect "address not on this host" 1 api_listen fail "not an address of this host"
doc --webhook-listen "127.0.0.1:$MOCK_PORT"
expect "port in use by another process" 0 webhook_listen warn "in use"
doc --max-db-size 16K
expect "over max_db_size" 1 db_size fail "max_db_size"
doc --max-db-size 1G
expect "under max_db_size" 0 db_size ok "of max_db_size"
assert_status "doctor: usage error" 2 "$B" doctor extra-argument
assert_status "doctor --help" 0 "$B" doctor --help
kill "$MOCK_PID"
wait "$MOCK_PID" 2>/dev/null

# ---- backup while serve drains ----------------------------------------------------------------
DB=$T/live.db
N=4000
enqueue_n $N
start_mock --rate-limit 0 --delay-ms 1
API_PORT=$(free_port)
WH_PORT=$(free_port)
start_serve --rate-limit 0 --api-listen "127.0.0.1:$API_PORT" --webhook-listen "127.0.0.1:$WH_PORT"
wait_until 20 '[ "$(count_state accepted)" -ge 1 ]'
before=$(count_state accepted)
assert_le "backup: serve is still draining when the backup starts" "$before" $((N - 1))
"$B" backup --json --db "$DB" "$T/copy.db" >"$T/backup.json" 2>"$T/backup.err"
assert_eq "backup: exit 0" "$?" 0
assert_eq "backup: quiet on a pipe" "$(cat "$T/backup.err")" ""
bj=$(cat "$T/backup.json")
assert_eq "backup: json path" "$(jget "$bj" '$.path')" "$(realpath "$T/copy.db")"
assert_eq "backup: json message count" "$(jget "$bj" '$.messages')" $N
assert_eq "backup: json size" "$(jget "$bj" '$.bytes')" "$(stat -c %s "$T/copy.db")"
assert_eq "backup: copy passes integrity_check" "$(sql "$T/copy.db" 'PRAGMA integrity_check')" ok
assert_eq "backup: copy has every message" "$(sql "$T/copy.db" 'SELECT count(*) FROM outbox')" $N
assert_eq "backup: copy is one file" "$(sql "$T/copy.db" 'PRAGMA journal_mode')" delete
assert_eq "backup: copy schema" "$(sql "$T/copy.db" 'PRAGMA user_version')" \
    "$(sql "$DB" 'PRAGMA user_version')"
assert_eq "backup: no temporary file left" "$(ls "$T" | grep -c 'copy.db.tmp')" 0
assert_status "backup: outbox status on the copy" 0 "$B" status --db "$T/copy.db"
assert_contains "backup: status shows the channel" "$(cat "$T/last.out")" "ch "
wait_until 60 '[ "$(count_state accepted)" = $N ]'
assert_eq "backup: serve drained everything meanwhile" "$(count_state accepted)" $N

# doctor next to a running serve: its lock and its listeners are recognised.
OUTBOX_PARTOO_API_KEY=$KEY "$B" doctor --json --db "$DB" --api-listen "127.0.0.1:$API_PORT" \
    --webhook-listen "127.0.0.1:$WH_PORT" >"$T/doc.json" 2>"$T/doc.err"
RC=$?
expect "doctor with serve running" 0 serve ok "pid $SERVE_PID"
expect "doctor with serve running" 0 api_listen ok "outbox serve"
expect "doctor with serve running" 0 webhook_listen ok "outbox serve"

sum=$(cksum <"$T/copy.db")
assert_status "backup: refuses to overwrite" 1 "$B" backup --db "$DB" "$T/copy.db"
assert_contains "backup: says --force" "$(cat "$T/last.err")" "--force"
assert_eq "backup: existing file untouched" "$(cksum <"$T/copy.db")" "$sum"
assert_status "backup --force" 0 "$B" backup --db "$DB" --force "$T/copy.db"
assert_contains "backup --force: summary" "$(cat "$T/last.out")" "$N messages"
assert_eq "backup --force: integrity" "$(sql "$T/copy.db" 'PRAGMA integrity_check')" ok
assert_eq "backup --force: the new copy has the drained state" \
    "$(sql "$T/copy.db" "SELECT count(*) FROM outbox WHERE state = 'accepted'")" $N
assert_status "backup: refuses the database itself" 1 "$B" backup --db "$DB" --force "$DB"
assert_eq "backup: database intact" "$(sql "$DB" 'SELECT count(*) FROM outbox')" $N
assert_status "backup: missing database" 1 "$B" backup --db "$T/none.db" "$T/none-copy.db"
[ ! -e "$T/none-copy.db" ] && [ ! -e "$T/none.db" ] && pass "backup: nothing created" ||
    fail "backup: created files for a missing database"
assert_status "backup: FILE is required" 2 "$B" backup --db "$DB"
if command -v script >/dev/null; then
    script -qec "$B backup --db $DB $T/tty.db" /dev/null >"$T/tty.out" 2>&1
    assert_contains "backup: progress bar on a terminal" "$(cat "$T/tty.out")" "pages"
fi
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
assert_eq "serve exits 0 after the backups" "$?" 0

finish
