#!/usr/bin/env bash
# PostgreSQL, first part of issue 15 (SPEC §12), against a real throwaway cluster
# (pg_cluster.sh: initdb in $T, Unix socket only, stopped at exit):
#   - `outbox migrate --db postgresql://...` creates db_schema and migrates it; again: a no-op;
#     a schema newer than the binary is refused; a bad db_schema is refused;
#   - drift: what migrations/postgresql/ produce is exactly schema/postgresql.sql (pg_dump);
#   - the password: refused on the command line, shown as **** by --print-config, and
#     the commands that do not run on PostgreSQL yet refuse it, and serve's log, with a
#     message that names no password;
#   - the SQL contract: a producer's INSERT in its own transaction, constraints that reject
#     each kind of bad row, ON CONFLICT DO NOTHING, a NOTIFY at COMMIT and none at ROLLBACK,
#     and per conversation, id order = commit order for concurrent producers.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

trap 'pg_cluster_stop; cleanup' EXIT
pg_cluster_start "$T" || { echo "FAIL cannot start a PostgreSQL cluster"; exit 1; }
PSQL=("${PG_PSQL[@]}" -A -t)

# ---- migrate ----------------------------------------------------------------------------
LATEST=$(ls "$SRC"/migrations/postgresql/[0-9][0-9][0-9][0-9]_*.sql | wc -l)
out=$("$OUTBOX_BIN" migrate --db "$PG_URI" 2>&1)
assert_eq "migrate: a new schema" "$out" "migrated schema from version 0 to $LATEST"
assert_eq "migrate: the schema exists" "$(pg_sql "SELECT count(*) FROM pg_namespace WHERE nspname = 'outbox'")" 1
assert_eq "migrate: version recorded" "$(pg_sql "SELECT version FROM outbox.schema_version")" "$LATEST"
assert_eq "migrate again: no-op" "$("$OUTBOX_BIN" migrate --db "$PG_URI" --json)" "{\"from\":$LATEST,\"to\":$LATEST}"
"$OUTBOX_BIN" migrate --db "$PG_URI" --db-schema crm_outbox >/dev/null
assert_eq "migrate: db_schema names another schema" \
    "$(pg_sql "SELECT count(*) FROM crm_outbox.outbox")" 0
pg_sql "UPDATE crm_outbox.schema_version SET version = 99" >/dev/null
assert_status "migrate: a newer schema is refused" 1 "$OUTBOX_BIN" migrate --db "$PG_URI" --db-schema crm_outbox
assert_contains "migrate: newer, the message" "$(cat "$T/last.err")" "newer than this binary"
# An outbox at version 1 (as the first release left it) moves up migration by migration.
"${PG_PSQL[@]}" -c "CREATE SCHEMA at_v1; SET search_path = at_v1" \
    -f "$SRC/migrations/postgresql/0001_outbox.sql" \
    -c "CREATE TABLE schema_version (id integer PRIMARY KEY CHECK (id = 1), version integer NOT NULL); INSERT INTO schema_version VALUES (1, 1)" >/dev/null
assert_eq "migrate: from version 1" "$("$OUTBOX_BIN" migrate --db "$PG_URI" --db-schema at_v1)" \
    "migrated schema from version 1 to $LATEST"
assert_status "migrate: a bad db_schema" 1 "$OUTBOX_BIN" migrate --db "$PG_URI" --db-schema 'Out-Box'
assert_contains "migrate: bad db_schema, the message" "$(cat "$T/last.err")" "db_schema"

# ---- drift ------------------------------------------------------------------------------
# Two schemas of their own, so that the name replaced below is found nowhere else.
"$OUTBOX_BIN" migrate --db "$PG_URI" --db-schema drift_migrated >/dev/null
"${PG_PSQL[@]}" -c "CREATE SCHEMA drift_expected; SET search_path = drift_expected" \
    -f "$SRC/schema/postgresql.sql" >/dev/null
dump() { "$PG_BIN/pg_dump" -d "$PG_URI" -s -n "$1" --no-owner | grep -vE '^(--|[[:punct:]](un)?restrict )' |
    sed -e "s/$1/SCHEMA/g" | grep -v '^$'; }
dump drift_migrated >"$T/migrated.sql"
dump drift_expected >"$T/expected.sql"
if diff -u "$T/expected.sql" "$T/migrated.sql" >"$T/drift.diff"; then
    pass "drift: migrations/postgresql = schema/postgresql.sql"
else
    fail "drift: migrations/postgresql differ from schema/postgresql.sql: $(head -c 1500 "$T/drift.diff")"
fi

# ---- the password -----------------------------------------------------------------------
SECRET_URI="postgresql://outbox_test:pw-n0t-for-logs@localhost/postgres"
assert_status "--db with a password is refused" 2 "$OUTBOX_BIN" migrate --db "$SECRET_URI"
assert_not_contains "--db refused: no password in the message" "$(cat "$T/last.err")" "pw-n0t-for-logs"
printf 'db = %s\n' "$SECRET_URI" >"$T/pg.conf"
out=$("$OUTBOX_BIN" serve --config "$T/pg.conf" --print-config 2>&1)
assert_contains "--print-config shows the URI" "$out" "db = postgresql://outbox_test:****@localhost/postgres"
assert_not_contains "--print-config: no password" "$out" "pw-n0t-for-logs"
printf 'db = postgresql://outbox_test@localhost/postgres?password=pw-n0t-for-logs&sslmode=require\n' >"$T/pg2.conf"
out=$("$OUTBOX_BIN" serve --config "$T/pg2.conf" --print-config 2>&1)
assert_contains "--print-config: a password= parameter masked" "$out" "?password=****&sslmode=require"
assert_not_contains "--print-config: no password (parameter)" "$out" "pw-n0t-for-logs"
for cmd in doctor "backup $T/copy.db"; do
    assert_status "$cmd on PostgreSQL: refused" 1 "$OUTBOX_BIN" $cmd --config "$T/pg.conf" </dev/null
    assert_contains "$cmd on PostgreSQL: says why" "$(cat "$T/last.err")" "needs a SQLite file"
    assert_not_contains "$cmd on PostgreSQL: no password" "$(cat "$T/last.err")" "pw-n0t-for-logs"
done
# A command that takes a URI, on a server it cannot reach: the error names no password.
assert_status "enqueue on an unreachable PostgreSQL: exit 1" 1 "$OUTBOX_BIN" enqueue --config "$T/pg.conf" </dev/null
assert_contains "... says why" "$(cat "$T/last.err")" "cannot open"
assert_not_contains "... no password" "$(cat "$T/last.err")" "pw-n0t-for-logs"
# serve runs on PostgreSQL: a server it cannot reach stops it, and its log names no password.
OUTBOX_PARTOO_API_KEY=k "$OUTBOX_BIN" serve --config "$T/pg.conf" --api-listen 127.0.0.1:0 \
    --webhook-listen 127.0.0.1:0 >"$T/serve-pg.log" 2>&1
assert_eq "serve on an unreachable PostgreSQL: exits 1" "$?" 1
assert_contains "serve on an unreachable PostgreSQL: says so" "$(cat "$T/serve-pg.log")" "cannot open the database"
assert_contains "serve on an unreachable PostgreSQL: shows the URI masked" "$(cat "$T/serve-pg.log")" "outbox_test:****@localhost"
assert_not_contains "serve on an unreachable PostgreSQL: no password" "$(cat "$T/serve-pg.log")" "pw-n0t-for-logs"

# ---- the SQL contract -------------------------------------------------------------------
COLS="channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, consumer_name, consumer_image"
row() { printf "('%s', '%s', 'biz', '%s', 'hello', 'Consumer', NULL, NULL)" "$1" "$2" "$3"; }
pg_sql "BEGIN; INSERT INTO outbox.outbox ($COLS) VALUES $(row ch m1 c1); COMMIT;" >/dev/null
assert_eq "contract: a producer's INSERT is a queued message" \
    "$(pg_sql "SELECT state, state_reason, priority, attempts, id > 0 FROM outbox.outbox WHERE external_message_id = 'm1'")" \
    "queued|enqueued|0|0|t"
n0=$(pg_sql "SELECT count(*) FROM outbox.outbox")
bad() { # NAME VALUES: the INSERT must fail and leave the table as it was
    if pg_sql "INSERT INTO outbox.outbox ($COLS) VALUES $2" >/dev/null 2>"$T/bad.err"; then
        fail "contract: $1 accepted"
    else
        assert_eq "contract: $1 rejected, nothing written" "$(pg_sql "SELECT count(*) FROM outbox.outbox")" "$n0"
    fi
}
bad "empty channel_id" "('', 'b1', 'biz', 'c', 'x', 'User', NULL, NULL)"
bad "channel_id '..'" "('..', 'b2', 'biz', 'c', 'x', 'User', NULL, NULL)"
bad "NULL business_id" "('ch', 'b3', NULL, 'c', 'x', 'User', NULL, NULL)"
bad "sender_type Bot" "('ch', 'b4', 'biz', 'c', 'x', 'Bot', NULL, NULL)"
bad "empty content" "('ch', 'b5', 'biz', 'c', '', 'User', NULL, NULL)"
bad "content over 1 MiB" "('ch', 'b6', 'biz', 'c', repeat('x', 1048577), 'User', NULL, NULL)"
bad "external_message_id over 255 bytes" "('ch', repeat('é', 128), 'biz', 'c', 'x', 'User', NULL, NULL)"
bad "consumer_name over 255 bytes" "('ch', 'b7', 'biz', 'c', 'x', 'Consumer', repeat('n', 256), NULL)"
bad "consumer_image over 2048 bytes" "('ch', 'b8', 'biz', 'c', 'x', 'Consumer', NULL, repeat('i', 2049))"
bad "a duplicate key without ON CONFLICT" "$(row ch m1 c1)"
out=$(pg_sql "INSERT INTO outbox.outbox ($COLS) VALUES $(row ch m1 c1) ON CONFLICT DO NOTHING RETURNING id")
assert_eq "contract: ON CONFLICT DO NOTHING inserts nothing" "$out" ""
assert_eq "contract: ... and keeps one row" \
    "$(pg_sql "SELECT count(*) FROM outbox.outbox WHERE external_message_id = 'm1'")" 1
pg_sql "BEGIN; INSERT INTO outbox.outbox ($COLS) VALUES $(row ch rolled c1); ROLLBACK;" >/dev/null
assert_eq "contract: a rolled-back row is not there" \
    "$(pg_sql "SELECT count(*) FROM outbox.outbox WHERE external_message_id = 'rolled'")" 0

# A producer's role needs only USAGE on the schema and INSERT on the table (the triggers run
# as the outbox's owner); it can neither read the outbox nor change it.
pg_sql "CREATE ROLE crm_producer; GRANT USAGE ON SCHEMA outbox TO crm_producer; GRANT INSERT ON outbox.outbox TO crm_producer" >/dev/null
out=$("${PSQL[@]}" -c "SET ROLE crm_producer; INSERT INTO outbox.outbox ($COLS) VALUES $(row ch granted c9)" 2>&1)
assert_eq "grants: INSERT alone is enough to enqueue" "$out" ""
assert_eq "grants: ... and the row is a queued head" \
    "$(pg_sql "SELECT state || ' ' || head FROM outbox.outbox WHERE external_message_id = 'granted'")" "queued true"
out=$("${PSQL[@]}" -c "SET ROLE crm_producer; SELECT count(*) FROM outbox.outbox" 2>&1)
assert_contains "grants: the producer cannot read the outbox" "$out" "permission denied"

# NOTIFY: a listener (psql fed through a FIFO, one command at a time) sees a notification
# after a COMMIT and none after a ROLLBACK. psql prints what arrived after each command.
mkfifo "$T/listen.in"
"${PSQL[@]}" <"$T/listen.in" >"$T/listen.out" 2>&1 &
LISTENER=$!
PIDS+=("$LISTENER")
exec 7>"$T/listen.in"
echo 'LISTEN "outbox.outbox";' >&7
echo "SELECT 'ready';" >&7
wait_until 10 'grep -q ready "$T/listen.out"' || fail "listener did not start"
pg_sql "BEGIN; INSERT INTO outbox.outbox ($COLS) VALUES $(row ch n1 c1); ROLLBACK;" >/dev/null
echo "SELECT 'after-rollback';" >&7
wait_until 10 'grep -q after-rollback "$T/listen.out"'
pg_sql "BEGIN; INSERT INTO outbox.outbox ($COLS) VALUES $(row ch n2 c1), $(row ch n3 c2); INSERT INTO outbox.outbox ($COLS) VALUES $(row ch n4 c3); COMMIT;" >/dev/null
sleep 0.5
echo "SELECT 'after-commit';" >&7
wait_until 10 'grep -q after-commit "$T/listen.out"'
echo "SELECT 'end';" >&7
exec 7>&-
wait "$LISTENER" 2>/dev/null
# psql prints a notification after the result of the first command it runs once the
# notification arrived: those printed after "after-rollback" arrived during the rollback's
# step, those after "after-commit" during the commit's.
notes() { awk -v a="^$1\$" -v b="^$2\$" '$0 ~ a {on = 1; next} $0 ~ b {on = 0} on && /notification "outbox.outbox"/ {n++} END {print n + 0}' "$T/listen.out"; }
assert_eq "notify: none for a rolled-back transaction" "$(notes after-rollback after-commit)" 0
assert_eq "notify: one for a committed transaction (two INSERTs)" "$(notes after-commit end)" 1

# Order per conversation: while producer A's transaction holds a row of conversation k,
# producer B's INSERT into k waits, and takes its id after A's commit; B's insert into
# another conversation does not wait.
mkfifo "$T/a.in"
"${PSQL[@]}" <"$T/a.in" >"$T/a.out" 2>&1 &
A=$!
PIDS+=("$A")
exec 8>"$T/a.in"
echo "BEGIN; INSERT INTO outbox.outbox ($COLS) VALUES $(row ch first k); SELECT 'a-inserted';" >&8
wait_until 10 'grep -q a-inserted "$T/a.out"' || fail "producer A did not insert"
pg_sql "INSERT INTO outbox.outbox ($COLS) VALUES $(row ch second k)" >/dev/null 2>&1 &
B=$!
PIDS+=("$B")
timeout 10 "${PSQL[@]}" -c "INSERT INTO outbox.outbox ($COLS) VALUES $(row ch other elsewhere)" >/dev/null
assert_eq "order: another conversation does not wait" "$?" 0
sleep 1
assert_eq "order: B waits while A's transaction is open" \
    "$(pg_sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")" 1
echo "COMMIT;" >&8
exec 8>&-
wait "$A" 2>/dev/null
wait "$B" 2>/dev/null
assert_eq "order: ids follow commit order within the conversation" \
    "$(pg_sql "SELECT string_agg(external_message_id, ',' ORDER BY id) FROM outbox.outbox WHERE external_conversation_id = 'k'")" \
    "first,second"
finish
