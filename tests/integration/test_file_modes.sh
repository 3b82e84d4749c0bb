#!/usr/bin/env bash
# tests/integration/test_file_modes.sh: files holding messages are owner-only (issue 19 #6).
#
# Even under a permissive umask (022), the database, -wal, -shm and backups that migrate,
# serve, enqueue and backup create are 0600; doctor warns about a database file made
# readable by group or others, naming it.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_file_modes.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
umask 022
B=$OUTBOX_BIN
mode() { stat -c %a "$1"; }

assert_status "migrate" 0 "$B" migrate --db "$T/m.db"
assert_eq "migrate creates the database 0600" "$(mode "$T/m.db")" 600
enqueue_n 3
assert_eq "enqueue creates the database 0600" "$(mode "$DB")" 600

start_mock
start_serve --rate-limit 0
wait_until 10 '[ -e "$DB-wal" ] && [ -e "$DB-shm" ]' || fail "no -wal/-shm while serve runs"
for f in "$DB" "$DB-wal" "$DB-shm" "$DB.lock"; do
    assert_eq "$(basename "$f") is 0600 while serve runs" "$(mode "$f")" 600
done
assert_status "backup while serve runs" 0 "$B" backup --db "$DB" "$T/copy.db"
assert_eq "the backup is 0600" "$(mode "$T/copy.db")" 600
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"

assert_status "doctor on 0600 files" 0 env OUTBOX_PARTOO_API_KEY=k "$B" doctor --json --db "$DB" \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0
perm() { sqlite3 -batch -noheader :memory: "SELECT json_extract(value, '\$.status') || ' ' ||
    json_extract(value, '\$.message') FROM json_each(json_extract(readfile('$T/last.out'),
    '\$.checks')) WHERE json_extract(value, '\$.name') = 'permissions'"; }
assert_contains "doctor: permissions ok on 0600" "$(perm)" "ok "
chmod 644 "$DB"
assert_status "doctor on a 0644 database exits 0 (a warning)" 0 env OUTBOX_PARTOO_API_KEY=k "$B" doctor --json --db "$DB" \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0
assert_contains "doctor warns about the 0644 database" "$(perm)" "warn "
assert_contains "... naming the file and its mode" "$(perm)" "$DB' (644)"
finish
