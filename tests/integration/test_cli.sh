#!/usr/bin/env bash
# tests/integration/test_cli.sh: the offline CLI against real databases (SPEC §1, §2, §6, §9, §10).
#
# Runs the real binary ($OUTBOX_BIN) on fresh SQLite files in $T: migrate, version, help and
# usage errors, the SQL contract through the sqlite3 shell, enqueue (flags and JSON Lines),
# status, ls with cursor paging, show, cancel, retry, audit, purge, and configuration
# precedence (file < OUTBOX_* < flags). States the daemon would reach are set with plain SQL.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_cli.sh

. "$(dirname "$0")/lib.sh"

# Hermetic: no OUTBOX_* from the caller's environment except the binary under test.
hermetic_env

B=$OUTBOX_BIN
# The schema version the newest migration file produces (NNNN of migrations/NNNN_*.sql).
LATEST=$(ls "$SRC"/migrations/ | grep -E '^[0-9]{4}_.*\.sql$' | sort | tail -1 | cut -c1-4 |
    sed 's/^0*//')

out() { cat "$T/last.out"; }
err() { cat "$T/last.err"; }
# run NAME EXIT CMD...: assert_status that also keeps the output in $T/last.{out,err}.
run() { assert_status "$@"; }
# rejected NAME CMD...: CMD must exit non-zero (the sqlite3 shell exits with the SQLite error
# code) because of a constraint.
rejected() {
    local name=$1
    shift
    "$@" >"$T/last.out" 2>"$T/last.err"
    local got=$?
    if [ "$got" != 0 ] && grep -q 'constraint failed' "$T/last.err"; then pass "$name"; else
        fail "$name: exit $got; stderr: $(head -c 300 "$T/last.err")"
    fi
}
# jsql JSON EXPR: evaluates an SQL expression over the document bound as j (SQLite JSON1).
jsql() {
    printf '%s' "$1" > "$T/jsql.json"
    sqlite3 -batch -noheader :memory: "SELECT $2 FROM (SELECT readfile('$T/jsql.json') AS j)"
}
# jsonl_array FILE: JSON Lines -> one JSON array, for json_each().
jsonl_array() { printf '['; paste -sd, "$1" | tr -d '\n'; printf ']'; }
# msg_line CHANNEL EXT_ID [CONV] [CONTENT] [EXTRA]: one JSON Lines message.
msg_line() {
    printf '{"channel_id":"%s","external_message_id":"%s","business_id":"biz-1","external_conversation_id":"%s","content":"%s","sender_type":"Consumer"%s}\n' \
        "$1" "$2" "${3:-conv-$2}" "${4:-Hello $2}" "${5:-}"
}
# set_state CHANNEL EXT_ID STATE [EXTRA_SQL_ASSIGNMENTS]: what the daemon would do, by hand.
set_state() {
    sql "$DB" "UPDATE outbox SET state = '$3', state_reason = 'test', state_at_ms = $(now_ms) - 5000 ${4:+, $4}
               WHERE channel_id = '$1' AND external_message_id = '$2'"
}

echo "# binary: $B, latest schema version: $LATEST"
[ -x "$B" ] || { echo "no binary at $B"; exit 1; }

# ---- help, version, usage errors ---------------------------------------------------
run "outbox --help exits 0" 0 "$B" --help
assert_contains "--help lists the commands" "$(out)" "enqueue"
run "no arguments is a usage error" 2 "$B"
run "unknown command exits 2" 2 "$B" frobnicate
assert_contains "unknown command is named" "$(err)" "frobnicate"
for cmd in serve migrate enqueue status ls show retry cancel audit purge version; do
    # timeout: a command that ignored --help must not hang the suite (serve would listen).
    run "$cmd --help exits 0" 0 timeout 20 "$B" "$cmd" --help
    assert_contains "$cmd --help prints its usage" "$(out)" "usage: outbox $cmd"
done
for cmd in migrate enqueue status ls show retry cancel audit purge version; do
    run "$cmd with an unknown option exits 2" 2 "$B" "$cmd" --no-such-option --db "$T/unused.db"
done
assert_eq "usage errors create no database" "$(ls "$T"/unused.db 2>/dev/null)" ""
run "show with one argument exits 2" 2 "$B" show --db "$T/u.db" ch
run "cancel without arguments exits 2" 2 "$B" cancel --db "$T/u.db"
run "retry without arguments exits 2" 2 "$B" retry --db "$T/u.db"
run "retry --state queued exits 2" 2 "$B" retry --db "$T/u.db" --state queued
run "purge without --older-than exits 2" 2 "$B" purge --db "$T/u.db"
run "purge --older-than banana exits 2" 2 "$B" purge --db "$T/u.db" --older-than banana
run "ls --limit 0 exits 2" 2 "$B" ls --db "$T/u.db" --limit 0
run "ls --limit -1 exits 2" 2 "$B" ls --db "$T/u.db" --limit -1
run "ls --limit abc exits 2" 2 "$B" ls --db "$T/u.db" --limit abc
run "ls --state bogus exits 2" 2 "$B" ls --db "$T/u.db" --state bogus
run "ls --cursor garbage exits 2" 2 "$B" ls --db "$T/u.db" --cursor garbage
run "ls --cursor with trailing garbage exits 2" 2 "$B" ls --db "$T/u.db" --cursor 5x
run "enqueue --priority abc exits 2" 2 "$B" enqueue --db "$T/u.db" --channel c --message-id m \
    --business b --conversation v --content x --sender User --priority abc
run "an option missing its value exits 2" 2 "$B" ls --db

run "version exits 0" 0 "$B" version
VERSION_LINE=$(out)
assert_contains "version names the program" "$VERSION_LINE" "outbox "
assert_contains "version names the schema" "$VERSION_LINE" "schema $LATEST"
run "version --json exits 0" 0 "$B" version --json
VJ=$(out)
assert_eq "version --json is JSON" "$(jsql "$VJ" 'json_valid(j)')" "1"
assert_contains "version --json .version matches the text" "$VERSION_LINE" "outbox $(jget "$VJ" '$.version') "
assert_eq "version --json .schema" "$(jget "$VJ" '$.schema')" "$LATEST"
assert_eq "version --json .sqlite" "$(jget "$VJ" '$.sqlite')" "$(sqlite3 :memory: 'SELECT sqlite_version()')"

# ---- migrate -----------------------------------------------------------------------
DB=$T/migrate.db
run "migrate creates the database" 0 "$B" migrate --db "$DB"
assert_contains "first migrate reports the versions" "$(out)" "from version 0 to $LATEST"
assert_eq "user_version is the latest" "$(sql "$DB" 'PRAGMA user_version')" "$LATEST"
assert_eq "database is in WAL mode" "$(sql "$DB" 'PRAGMA journal_mode')" "wal"
assert_eq "the outbox tables exist" "$(sql "$DB" "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('outbox', 'transitions', 'attempts')")" "3"
SCHEMA_BEFORE=$(sql "$DB" 'PRAGMA schema_version')
run "second migrate exits 0" 0 "$B" migrate --db "$DB"
assert_contains "second migrate says already at version" "$(out)" "already at version $LATEST"
assert_eq "second migrate changes no schema" "$(sql "$DB" 'PRAGMA schema_version')" "$SCHEMA_BEFORE"
run "migrate --json" 0 "$B" migrate --db "$DB" --json
assert_eq "migrate --json from" "$(jget "$(out)" '$.from')" "$LATEST"
assert_eq "migrate --json to" "$(jget "$(out)" '$.to')" "$LATEST"
sql "$DB" "PRAGMA user_version = 999"
run "migrate refuses a newer database" 1 "$B" migrate --db "$DB"
assert_contains "the refusal says newer" "$(err)" "newer"
assert_eq "the newer database is untouched" "$(sql "$DB" 'PRAGMA user_version')" "999"
run "ls refuses a newer database" 1 "$B" ls --db "$DB"
run "enqueue refuses a newer database" 1 "$B" enqueue --db "$DB" --channel c --message-id m \
    --business b --conversation v --content x --sender User
assert_eq "nothing was enqueued into it" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "0"

# ---- the SQL contract (SPEC §1, §10) --------------------------------------------------
DB=$T/sql.db
"$B" migrate --db "$DB" >/dev/null
INS="INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, consumer_name, consumer_image)"
run "plain SQL insert is accepted" 0 sqlite3 "$DB" \
    "$INS VALUES ('ch-sql', 's1', 'biz', 'conv-1', 'Hello from SQL', 'Consumer', 'Jane', NULL)"
run "ls --json after a SQL insert" 0 "$B" ls --db "$DB" --json
LS=$(out)
assert_eq "ls sees the SQL row" "$(jget "$LS" '$.messages[0].external_message_id')" "s1"
assert_eq "the SQL row is queued" "$(jget "$LS" '$.messages[0].state')" "queued"
assert_eq "the SQL row keeps its fields" "$(jget "$LS" '$.messages[0].consumer_name')" "Jane"
assert_eq "consumer_image NULL is JSON null" "$(jsql "$LS" "json_type(j, '\$.messages[0].consumer_image')")" "null"
assert_eq "default priority is 0" "$(jget "$LS" '$.messages[0].priority')" "0"
assert_eq "a SQL row waits to be linked into its conversation" "$(sql "$DB" "SELECT head IS NULL FROM outbox WHERE external_message_id = 's1'")" "1"
assert_eq "created_at is set by default" "$(sql "$DB" "SELECT abs(created_at_ms - $(now_ms)) < 60000 FROM outbox WHERE external_message_id = 's1'")" "1"
run "a second SQL row in the same conversation" 0 sqlite3 "$DB" \
    "$INS VALUES ('ch-sql', 's2', 'biz', 'conv-1', 'Second', 'User', NULL, NULL)"
# The next library enqueue (or serve's next claim) links plain-SQL rows first, in id order.
run "a library enqueue into the same conversation" 0 "$B" enqueue --db "$DB" --channel ch-sql \
    --message-id s4 --business biz --conversation conv-1 --content "From the CLI" --sender Consumer
assert_eq "the first SQL row is its conversation's head" "$(sql "$DB" "SELECT head FROM outbox WHERE external_message_id = 's1'")" "1"
assert_eq "the second waits behind it" "$(sql "$DB" "SELECT o.head || ' ' || p.external_message_id FROM outbox o JOIN outbox p ON p.id = o.prev_id WHERE o.external_message_id = 's2'")" "0 s1"
assert_eq "the library row waits behind the SQL rows" "$(sql "$DB" "SELECT o.head || ' ' || p.external_message_id FROM outbox o JOIN outbox p ON p.id = o.prev_id WHERE o.external_message_id = 's4'")" "0 s2"
run "priority may be given as an extra column" 0 sqlite3 "$DB" \
    "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, priority) VALUES ('ch-sql', 's3', 'biz', 'conv-3', 'Urgent', 'User', 7)"
assert_eq "the priority is stored" "$(sql "$DB" "SELECT priority FROM outbox WHERE external_message_id = 's3'")" "7"
COUNT=$(sql "$DB" 'SELECT count(*) FROM outbox')
rejected "a bad sender_type is rejected by SQLite" sqlite3 "$DB" \
    "$INS VALUES ('ch-sql', 'bad1', 'biz', 'conv', 'x', 'Robot', NULL, NULL)"
rejected "a missing content is rejected by SQLite" sqlite3 "$DB" \
    "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, sender_type) VALUES ('ch-sql', 'bad2', 'biz', 'conv', 'User')"
rejected "an empty content is rejected by SQLite" sqlite3 "$DB" \
    "$INS VALUES ('ch-sql', 'bad3', 'biz', 'conv', '', 'User', NULL, NULL)"
rejected "a non-integer priority is rejected by SQLite" sqlite3 "$DB" \
    "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, priority) VALUES ('ch-sql', 'bad4', 'biz', 'conv', 'x', 'User', 1.5)"
assert_eq "nothing bad was inserted" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "$COUNT"
rejected "a plain INSERT of an existing key fails (UNIQUE)" sqlite3 "$DB" \
    "$INS VALUES ('ch-sql', 's1', 'biz', 'conv-1', 'Hello from SQL', 'Consumer', 'Jane', NULL)"
run "INSERT OR IGNORE of an existing key succeeds" 0 sqlite3 "$DB" \
    "INSERT OR IGNORE INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch-sql', 's1', 'biz', 'conv-1', 'Overwrite?', 'User')"
assert_eq "... and changes nothing" "$(sql "$DB" "SELECT count(*) || ':' || max(content) FROM outbox WHERE external_message_id = 's1'")" "1:Hello from SQL"
assert_eq "row count unchanged after OR IGNORE" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "$COUNT"
run "the library sees the SQL row as a duplicate" 0 "$B" enqueue --db "$DB" --channel ch-sql \
    --message-id s1 --business biz --conversation conv-1 --content 'Hello from SQL' --sender Consumer \
    --consumer-name Jane
assert_contains "... and says so" "$(out)" "duplicate"

# ---- enqueue by flags ------------------------------------------------------------------
DB=$T/flags.db
ENQ=("$B" enqueue --db "$DB" --channel ch-f --business biz --conversation conv-f --sender Consumer)
run "enqueue by flags" 0 "${ENQ[@]}" --message-id f1 --content 'Hi there' --consumer-name Ann --priority 3
assert_contains "enqueue reports accepted" "$(out)" "accepted"
assert_eq "the row has the flag values" \
    "$(sql "$DB" "SELECT content || '|' || consumer_name || '|' || typeof(consumer_image) || '|' || priority || '|' || state FROM outbox WHERE external_message_id = 'f1'")" \
    "Hi there|Ann|null|3|queued"
run "identical enqueue is a duplicate, exit 0" 0 "${ENQ[@]}" --message-id f1 --content 'Hi there' \
    --consumer-name Ann --priority 3
assert_contains "duplicate is reported" "$(out)" "duplicate"
run "same key, other content: conflict, exit 1" 1 "${ENQ[@]}" --message-id f1 --content 'Changed' \
    --consumer-name Ann --priority 3
assert_contains "conflict names the message id" "$(err)" "f1"
assert_contains "conflict names the channel" "$(err)" "ch-f"
assert_contains "conflict says conflict" "$(err)" "conflict"
run "same key, other priority: conflict, exit 1" 1 "${ENQ[@]}" --message-id f1 --content 'Hi there' \
    --consumer-name Ann --priority 4
assert_eq "a conflict never overwrites" "$(sql "$DB" "SELECT count(*) || ':' || max(content) || ':' || max(priority) FROM outbox")" "1:Hi there:3"
run "enqueue --json by flags" 0 "${ENQ[@]}" --message-id f2 --content 'Second' --json
assert_eq "--json result" "$(jget "$(out)" '$.result')" "accepted"
assert_eq "--json id is the row id" "$(jget "$(out)" '$.id')" "$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'f2'")"
assert_eq "--json state" "$(jget "$(out)" '$.state')" "queued"
run "bad --sender is refused, exit 1" 1 "$B" enqueue --db "$DB" --channel ch-f --message-id f3 \
    --business biz --conversation c --content x --sender Robot
assert_contains "the refusal names sender_type" "$(err)" "sender_type"
run "missing --business is a usage error, exit 2" 2 "$B" enqueue --db "$DB" --channel ch-f --message-id f4 \
    --conversation c --content x --sender User
assert_contains "the refusal names --business" "$(err)" "--business"
assert_eq "refused messages were not written" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "2"

# ---- enqueue JSON Lines: mixed good and bad lines -----------------------------------------
DB=$T/jsonl.db
{
    msg_line ch-j j1                                         # 1 accepted
    echo 'this is not json'                                  # 2 invalid_json
    msg_line ch-j j9 | sed 's/"Consumer"/"Robot"/'          # 3 bad sender_type
    msg_line ch-j j2                                         # 4 accepted
    echo ''                                                  # 5 blank: skipped
    msg_line ch-j j1                                         # 6 duplicate of line 1
    msg_line ch-j j1 conv-j1 'Other content'                 # 7 conflict with line 1
    echo '{"channel_id":"ch-j","external_message_id":"j8","business_id":"b","external_conversation_id":"c","sender_type":"User"}' # 8 missing content
    msg_line ch-j j10 conv-j10 'x' ',"colour":"red"'        # 9 unknown field
    msg_line ch-j j3 conv-j3 'Prioritised' ',"priority":5'   # 10 accepted
    printf '{"channel_id":"ch-j","external_message_id":"j11","business_id":"b","external_conversation_id":"c","content":"bad \xff byte","sender_type":"User"}\n' # 11 invalid utf8
    msg_line ch-k k1                                         # 12 accepted, other channel
} > "$T/mixed.jsonl"
"$B" enqueue --db "$DB" --json < "$T/mixed.jsonl" > "$T/mixed.out" 2> "$T/mixed.err"
assert_eq "mixed JSON Lines exit 1" "$?" "1"
MIXED=$(jsonl_array "$T/mixed.out")
assert_eq "every reported line is JSON" "$(jsql "$MIXED" 'json_valid(j)')" "1"
assert_eq "per-line results (line:result)" \
    "$(jsql "$MIXED" "(SELECT group_concat(json_extract(value, '\$.line') || ':' || json_extract(value, '\$.result'), ' ') FROM json_each(j))")" \
    "1:accepted 2:invalid 3:invalid 4:accepted 6:duplicate 7:conflict 8:invalid 9:invalid 10:accepted 11:invalid 12:accepted"
err_of() { jsql "$MIXED" "(SELECT json_extract(value, '\$.error.$2') FROM json_each(j) WHERE json_extract(value, '\$.line') = $1)"; }
assert_eq "line 2: invalid_json" "$(err_of 2 code)" "invalid_json"
assert_eq "line 3: names sender_type" "$(err_of 3 field)" "sender_type"
assert_eq "line 8: missing content" "$(err_of 8 code):$(err_of 8 field)" "missing_field:content"
assert_eq "line 9: unknown field" "$(err_of 9 code)" "unknown_field"
assert_eq "line 11: invalid UTF-8" "$(err_of 11 code)" "invalid_utf8"
assert_eq "line 6: duplicate carries the id of line 1" \
    "$(jsql "$MIXED" "(SELECT json_extract(value, '\$.id') FROM json_each(j) WHERE json_extract(value, '\$.line') = 6)")" \
    "$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'j1'")"
assert_eq "all good lines committed" "$(sql "$DB" "SELECT group_concat(external_message_id, ',') FROM (SELECT external_message_id FROM outbox ORDER BY id)")" "j1,j2,j3,k1"
assert_eq "the conflict did not overwrite" "$(sql "$DB" "SELECT content FROM outbox WHERE external_message_id = 'j1'")" "Hello j1"
assert_eq "priority from JSON Lines" "$(sql "$DB" "SELECT priority FROM outbox WHERE external_message_id = 'j3'")" "5"
"$B" enqueue --db "$DB" < "$T/mixed.jsonl" > "$T/mixed2.out" 2>&1
assert_eq "replaying the file exits 1 (conflict and invalid lines remain)" "$?" "1"
assert_contains "human summary counts" "$(cat "$T/mixed2.out")" "accepted 0, duplicate 5, conflict 1, invalid 5"
assert_contains "human output names the bad line" "$(cat "$T/mixed2.out")" "line 3: invalid"
assert_eq "replay added nothing" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "4"
# A raw NUL byte inside a JSON string would end the C string early: "hello\0world" must be
# refused, never stored as "hello".
printf '{"channel_id":"ch-nul","external_message_id":"n1","business_id":"b","external_conversation_id":"c","content":"hello\0world","sender_type":"User"}\n' |
    "$B" enqueue --db "$DB" > "$T/nul.out" 2>&1
assert_eq "a raw NUL byte in a line is refused, exit 1" "$?" "1"
assert_eq "... and no truncated content is stored" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-nul'")" "0"

# ---- enqueue JSON Lines: more lines than one batch ------------------------------------------
DB=$T/bulk.db
awk 'BEGIN { for (i = 1; i <= 2500; i++)
    printf "{\"channel_id\":\"ch-bulk\",\"external_message_id\":\"b%d\",\"business_id\":\"biz-%d\",\"external_conversation_id\":\"conv-%d\",\"content\":\"bulk message %d\",\"sender_type\":\"Consumer\"}\n", i, i % 10, i % 100, i }' \
    > "$T/bulk.jsonl"
"$B" enqueue --db "$DB" < "$T/bulk.jsonl" > "$T/bulk.out" 2>&1
assert_eq "2500 lines exit 0" "$?" "0"
assert_contains "2500 lines all accepted" "$(cat "$T/bulk.out")" "accepted 2500, duplicate 0, conflict 0, invalid 0"
assert_eq "2500 rows committed" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "2500"
assert_eq "enqueue order kept across batches" "$(sql "$DB" "SELECT external_message_id FROM outbox WHERE id = (SELECT max(id) FROM outbox)")" "b2500"
assert_eq "one head per conversation" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE head = 1")" "100"
"$B" enqueue --db "$DB" < "$T/bulk.jsonl" > "$T/bulk2.out" 2>&1
assert_eq "replaying 2500 lines exits 0" "$?" "0"
assert_contains "replay: all duplicates" "$(cat "$T/bulk2.out")" "accepted 0, duplicate 2500, conflict 0, invalid 0"
# A bad line right after the first batch boundary keeps its line number; the rest commit.
DB=$T/bulk3.db
sed '1001s/.*/{"broken":/' "$T/bulk.jsonl" | "$B" enqueue --db "$DB" --json > "$T/bulk3.out" 2>&1
assert_eq "a bad line among 2500 exits 1" "$?" "1"
BULK3=$(jsonl_array "$T/bulk3.out")
assert_eq "2500 results reported" "$(jsql "$BULK3" 'json_array_length(j)')" "2500"
assert_eq "lines 1000-1002 around the batch boundary" \
    "$(jsql "$BULK3" "(SELECT group_concat(json_extract(value, '\$.line') || ':' || json_extract(value, '\$.result'), ' ') FROM json_each(j) WHERE json_extract(value, '\$.line') BETWEEN 1000 AND 1002)")" \
    "1000:accepted 1001:invalid 1002:accepted"
assert_eq "the other 2499 are committed" "$(sql "$DB" 'SELECT count(*) FROM outbox')" "2499"

# ---- status ------------------------------------------------------------------------------
DB=$T/status.db
{ for i in 1 2 3 4 5 6; do msg_line ch-a "a$i"; done; for i in 1 2 3; do msg_line ch-b "b$i"; done; } |
    "$B" enqueue --db "$DB" > /dev/null
NOW=$(now_ms)
set_state ch-a a2 failed
set_state ch-a a3 cancelled
# a4 is unconfirmed: accepted a day ago, every resend used, no webhook. Newer schemas also
# carry the daemon's mark (unconfirmed_at_ms); set it too when the column exists.
UNCONF_MARK=""
[ "$(sql "$DB" "SELECT count(*) FROM pragma_table_info('outbox') WHERE name = 'unconfirmed_at_ms'")" = 1 ] &&
    UNCONF_MARK=", unconfirmed_at_ms = $NOW - 3600000"
set_state ch-a a4 accepted "accepted_at_ms = $NOW - 86400000, resends = 2, attempts = 3$UNCONF_MARK"
set_state ch-a a5 confirmed "confirmed_at_ms = $NOW"
set_state ch-a a6 sending "lease_token = 1, lease_expires_at_ms = $NOW + 60000"
set_state ch-b b2 failed
sql "$DB" "UPDATE outbox SET created_at_ms = $NOW - 3600000 WHERE external_message_id = 'b1'"
ID_A5=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'a5'")
ID_A4=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'a4'")
ID_B2=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'b2'")
sql "$DB" "INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome) VALUES
    ($ID_A5, $NOW - 10000, 120, 200, 'accepted'), ($ID_A4, $NOW - 20000, 90, 200, 'accepted'),
    ($ID_A4, $NOW - 120000, 80, 200, 'accepted');
    INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome, error) VALUES
    ($ID_B2, $NOW - 5000, 10000, NULL, 'transport', 'connect timeout')"
run "status --json exits 0" 0 "$B" status --db "$DB" --json
ST=$(out)
assert_eq "status --json is JSON" "$(jsql "$ST" 'json_valid(j)')" "1"
for s in queued sending accepted confirmed failed cancelled; do
    assert_eq "status counts.$s matches the DB" "$(jget "$ST" "\$.counts.$s")" \
        "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state = '$s'")"
done
assert_eq "status channels, sorted" "$(jsql "$ST" "(SELECT group_concat(json_extract(value, '\$.channel_id'), ',') FROM json_each(j, '\$.channels'))")" "ch-a,ch-b"
for c in 0 1; do
    ch=$(jget "$ST" "\$.channels[$c].channel_id")
    for s in queued sending accepted confirmed failed cancelled; do
        assert_eq "status $ch counts.$s matches the DB" "$(jget "$ST" "\$.channels[$c].counts.$s")" \
            "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state = '$s' AND channel_id = '$ch'")"
    done
    for k in unconfirmed oldest_queued_age_s paused last_error counts; do
        assert_eq "status $ch has $k" "$(jsql "$ST" "json_type(j, '\$.channels[$c].$k') IS NOT NULL")" "1"
    done
done
assert_eq "status queued total (hand count)" "$(jget "$ST" '$.counts.queued')" "3"
assert_eq "oldest_queued_age_s is about an hour" \
    "$(jsql "$ST" "json_extract(j, '\$.oldest_queued_age_s') BETWEEN 3600 AND 3660")" "1"
assert_eq "ch-b oldest_queued_age_s is about an hour" \
    "$(jsql "$ST" "json_extract(j, '\$.channels[1].oldest_queued_age_s') BETWEEN 3600 AND 3660")" "1"
assert_eq "ch-a oldest_queued_age_s is recent" \
    "$(jsql "$ST" "json_extract(j, '\$.channels[0].oldest_queued_age_s') BETWEEN 0 AND 600")" "1"
assert_eq "send_rate_per_min counts accepted attempts of the last minute" \
    "$(jsql "$ST" "json_extract(j, '\$.send_rate_per_min') = 2")" "1"
assert_eq "paused is null" "$(jsql "$ST" "json_type(j, '\$.paused')")" "null"
assert_eq "ch-b last_error" "$(jget "$ST" '$.channels[1].last_error')" "connect timeout"
assert_eq "ch-a last_error is null" "$(jsql "$ST" "json_type(j, '\$.channels[0].last_error')")" "null"
# a4: accepted a day ago, max_resends (2) used, never confirmed -> unconfirmed (SPEC §3, §9).
assert_eq "status unconfirmed counts the accepted message whose resends are exhausted" \
    "$(jget "$ST" '$.unconfirmed')" "1"
assert_eq "status ch-a unconfirmed" "$(jget "$ST" '$.channels[0].unconfirmed')" "1"
run "status (table) exits 0" 0 "$B" status --db "$DB"
TABLE=$(out)
# cell TABLE ROW COLUMN: the cell of an aligned table (columns are separated by two or more
# spaces; a header may hold single spaces) in the row whose first field is ROW.
cell() {
    awk -v row="$2" -v col="$3" '
        !n && /^CHANNEL  / {
            rest = $0; pos = 1
            while (match(rest, /[^ ]+( [^ ]+)*/)) {
                n++; name[n] = substr(rest, RSTART, RLENGTH); start[n] = pos + RSTART - 1
                pos += RSTART + RLENGTH - 1; rest = substr(rest, RSTART + RLENGTH)
            }
            next
        }
        n && $1 == row {
            for (i = 1; i <= n; i++)
                if (name[i] == col) {
                    v = i < n ? substr($0, start[i], start[i + 1] - start[i]) : substr($0, start[i])
                    gsub(/^ +| +$/, "", v); print v
                }
        }' <<<"$1"
}
assert_eq "status table: ch-a queued" "$(cell "$TABLE" ch-a QUEUED)" "1"
assert_eq "status table: ch-b queued" "$(cell "$TABLE" ch-b QUEUED)" "2"
assert_eq "status table: ch-a sending" "$(cell "$TABLE" ch-a SENDING)" "1"
assert_eq "status table: ch-a failed" "$(cell "$TABLE" ch-a FAILED)" "1"
assert_eq "status table: ch-b failed" "$(cell "$TABLE" ch-b FAILED)" "1"
assert_eq "status table: ch-a unconfirmed" "$(cell "$TABLE" ch-a UNCONFIRMED)" "1"
assert_eq "status table: oldest queued of ch-b" "$(cell "$TABLE" ch-b 'OLDEST QUEUED' | cut -c1-2)" "1h"
assert_eq "status table: last error of ch-b" "$(cell "$TABLE" ch-b 'LAST ERROR')" "connect timeout"
assert_eq "status table: no last error for ch-a" "$(cell "$TABLE" ch-a 'LAST ERROR')" "-"
run "status on an empty database" 0 "$B" status --db "$T/empty-status.db" --json
assert_eq "empty status: no channels" "$(jsql "$(out)" "json_array_length(j, '\$.channels')")" "0"
assert_eq "empty status: queued 0" "$(jget "$(out)" '$.counts.queued')" "0"

# ---- ls ----------------------------------------------------------------------------------
# (on the status database: 9 messages in two channels and six states)
ids_of() { jsql "$1" "(SELECT group_concat(json_extract(value, '\$.id'), ',') FROM json_each(j, '\$.messages'))"; }
run "ls --json" 0 "$B" ls --db "$DB" --json
assert_eq "ls lists everything newest first" "$(ids_of "$(out)")" "$(sql "$DB" "SELECT group_concat(id, ',') FROM (SELECT id FROM outbox ORDER BY id DESC)")"
assert_eq "ls without more pages has a null cursor" "$(jsql "$(out)" "json_type(j, '\$.next_cursor')")" "null"
run "ls --state queued" 0 "$B" ls --db "$DB" --json --state queued
assert_eq "ls --state filters" "$(ids_of "$(out)")" "$(sql "$DB" "SELECT group_concat(id, ',') FROM (SELECT id FROM outbox WHERE state = 'queued' ORDER BY id DESC)")"
run "ls --channel ch-b" 0 "$B" ls --db "$DB" --json --channel ch-b
assert_eq "ls --channel filters" "$(ids_of "$(out)")" "$(sql "$DB" "SELECT group_concat(id, ',') FROM (SELECT id FROM outbox WHERE channel_id = 'ch-b' ORDER BY id DESC)")"
run "ls --state failed --channel ch-b" 0 "$B" ls --db "$DB" --json --state failed --channel ch-b
assert_eq "ls filters combine" "$(ids_of "$(out)")" "$ID_B2"
run "ls --limit 2" 0 "$B" ls --db "$DB" --json --limit 2
assert_eq "ls --limit" "$(jsql "$(out)" "json_array_length(j, '\$.messages')")" "2"
assert_eq "ls --limit gives a cursor" "$(jsql "$(out)" "json_type(j, '\$.next_cursor') IS NOT NULL AND json_type(j, '\$.next_cursor') <> 'null'")" "1"
run "ls message objects have the §9 fields" 0 "$B" ls --db "$DB" --json --limit 1
for f in id channel_id external_message_id business_id external_conversation_id content sender_type \
    consumer_name consumer_image priority state attempts created_at accepted_at confirmed_at \
    last_http_status last_error partoo_message_id partoo_status; do
    assert_eq "ls message has $f" "$(jsql "$(out)" "json_type(j, '\$.messages[0].$f') IS NOT NULL")" "1"
done
assert_eq "created_at is RFC 3339 UTC with ms" \
    "$(jsql "$(out)" "json_extract(j, '\$.messages[0].created_at') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9]Z'")" "1"
run "ls table" 0 "$B" ls --db "$DB" --state failed
assert_eq "ls table lists the failed ones" "$(awk 'NR > 1 { print $3 }' <<<"$(out)" | sort | paste -sd,)" "a2,b2"

# Cursor paging through every row exactly once (JSON and table), with and without a filter.
DB=$T/paging.db
for i in $(seq 1 23); do msg_line ch-p "p$i"; done | "$B" enqueue --db "$DB" > /dev/null
set_state ch-p p4 cancelled
set_state ch-p p17 cancelled
page_all_json() { # page_all_json LIMIT [ls options]: every id seen, in order, comma-separated
    local limit=$1 cursor="" seen="" pages=0 j
    shift
    while :; do
        j=$("$B" ls --db "$DB" --json --limit "$limit" ${cursor:+--cursor "$cursor"} "$@") || return 1
        seen="$seen${seen:+,}$(ids_of "$j")"
        seen=${seen%,}
        cursor=$(jget "$j" '$.next_cursor')
        pages=$((pages + 1))
        [ -z "$cursor" ] && break
        [ "$pages" -gt 100 ] && return 1
    done
    echo "$seen"
}
ALL_DESC=$(sql "$DB" "SELECT group_concat(id, ',') FROM (SELECT id FROM outbox ORDER BY id DESC)")
assert_eq "paging by 5 sees every row once, newest first" "$(page_all_json 5)" "$ALL_DESC"
assert_eq "paging by 1 sees every row once" "$(page_all_json 1)" "$ALL_DESC"
assert_eq "paging by 23 (exact fit)" "$(page_all_json 23)" "$ALL_DESC"
assert_eq "paging with --state queued" "$(page_all_json 4 --state queued)" \
    "$(sql "$DB" "SELECT group_concat(id, ',') FROM (SELECT id FROM outbox WHERE state = 'queued' ORDER BY id DESC)")"
page_all_table() {
    local cursor="" seen="" pages=0 o
    while :; do
        o=$("$B" ls --db "$DB" --limit 6 ${cursor:+--cursor "$cursor"}) || return 1
        seen="$seen${seen:+,}$(awk 'NR > 1 && $1 ~ /^[0-9]+$/ { print $1 }' <<<"$o" | paste -sd,)"
        cursor=$(sed -n 's/^next page: --cursor \([0-9]*\)$/\1/p' <<<"$o")
        pages=$((pages + 1))
        [ -z "$cursor" ] && break
        [ "$pages" -gt 100 ] && return 1
    done
    echo "$seen"
}
assert_eq "table paging by 6 sees every row once" "$(page_all_table)" "$ALL_DESC"

# ---- show ----------------------------------------------------------------------------------
DB=$T/show.db
msg_line ch-s s1 conv-s 'Show me' | "$B" enqueue --db "$DB" > /dev/null
ID_S1=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 's1'")
sql "$DB" "UPDATE outbox SET state = 'failed', state_reason = 'http 400', state_at_ms = $(now_ms), last_http_status = 400, last_error = 'bad request', attempts = 1 WHERE id = $ID_S1;
    INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome, error, response_excerpt)
    VALUES ($ID_S1, $(now_ms) - 1000, 42, 400, 'fatal', NULL, '{\"error\":\"nope\"}')"
run "show (human)" 0 "$B" show --db "$DB" ch-s s1
SHOW=$(out)
assert_contains "show names the message" "$SHOW" "ch-s / s1"
assert_contains "show gives the state and reason" "$SHOW" "failed (http 400)"
assert_contains "show prints the content" "$SHOW" "Show me"
assert_contains "show lists the transition" "$(grep -A5 '^transitions:' <<<"$SHOW")" "queued"
assert_contains "show lists the transition reason" "$(grep -A5 '^transitions:' <<<"$SHOW")" "http 400"
assert_contains "show lists the attempt" "$(grep -A5 '^attempts:' <<<"$SHOW")" "fatal"
run "show --json" 0 "$B" show --db "$DB" --json ch-s s1
SJ=$(out)
assert_eq "show --json is JSON" "$(jsql "$SJ" 'json_valid(j)')" "1"
assert_eq "show --json id" "$(jget "$SJ" '$.id')" "$ID_S1"
assert_eq "show --json state" "$(jget "$SJ" '$.state')" "failed"
assert_eq "show --json last_http_status" "$(jget "$SJ" '$.last_http_status')" "400"
assert_eq "show --json transitions is an array" "$(jsql "$SJ" "json_type(j, '\$.transitions')")" "array"
assert_eq "show --json attempts_log is an array" "$(jsql "$SJ" "json_type(j, '\$.attempts_log')")" "array"
assert_eq "show --json transition" "$(jget "$SJ" '$.transitions[0].from')>$(jget "$SJ" '$.transitions[0].to'):$(jget "$SJ" '$.transitions[0].reason')" "queued>failed:http 400"
assert_eq "show --json attempt" "$(jget "$SJ" '$.attempts_log[0].http_status'):$(jget "$SJ" '$.attempts_log[0].outcome'):$(jget "$SJ" '$.attempts_log[0].duration_ms')" "400:fatal:42"
msg_line ch-s s2 | "$B" enqueue --db "$DB" > /dev/null
run "show --json of a fresh message" 0 "$B" show --db "$DB" --json ch-s s2
assert_eq "fresh message: empty arrays" "$(jsql "$(out)" "json_array_length(j, '\$.transitions') || ',' || json_array_length(j, '\$.attempts_log')")" "0,0"
run "show of a missing message exits 1" 1 "$B" show --db "$DB" ch-s nope
assert_contains "show names what is missing" "$(err)" "nope"

# ---- cancel and retry ------------------------------------------------------------------------
DB=$T/actions.db
for i in 1 2 3 4 5 6; do msg_line ch-r "r$i"; done | "$B" enqueue --db "$DB" > /dev/null
msg_line ch-x x1 | "$B" enqueue --db "$DB" > /dev/null
run "cancel a queued message" 0 "$B" cancel --db "$DB" ch-r r1
assert_contains "cancel reports it" "$(out)" "cancelled"
assert_eq "it is cancelled" "$(state_of ch-r r1)" "cancelled"
assert_eq "the transition is recorded" "$(sql "$DB" "SELECT from_state || '>' || to_state FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'r1'")" "queued>cancelled"
run "cancel it again exits 1" 1 "$B" cancel --db "$DB" ch-r r1
assert_eq "still cancelled, one transition" "$(state_of ch-r r1):$(sql "$DB" "SELECT count(*) FROM transitions")" "cancelled:1"
run "cancel a missing message exits 1" 1 "$B" cancel --db "$DB" ch-r nope
run "cancel --json" 0 "$B" cancel --db "$DB" --json ch-r r6
assert_eq "cancel --json result" "$(jget "$(out)" '$.result')" "cancelled"
set_state ch-r r2 failed "counted_attempts = 25, attempts = 25"
run "retry a failed message" 0 "$B" retry --db "$DB" ch-r r2
assert_eq "it is queued again" "$(state_of ch-r r2)" "queued"
assert_eq "its attempt budget is reset" "$(sql "$DB" "SELECT counted_attempts FROM outbox WHERE external_message_id = 'r2'")" "0"
assert_eq "retry is recorded as failed>queued" "$(sql "$DB" "SELECT from_state || '>' || to_state FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'r2' ORDER BY t.id DESC LIMIT 1")" "failed>queued"
run "retry of a queued message exits 1" 1 "$B" retry --db "$DB" ch-r r3
run "retry of a missing message exits 1" 1 "$B" retry --db "$DB" ch-r nope
set_state ch-r r3 accepted "resends = 2, accepted_at_ms = $(now_ms) - 86400000"
run "retry of an accepted (unconfirmed) message" 0 "$B" retry --db "$DB" ch-r r3
assert_eq "accepted -> queued with resends reset" "$(state_of ch-r r3):$(sql "$DB" "SELECT resends FROM outbox WHERE external_message_id = 'r3'")" "queued:0"
set_state ch-r r4 failed
set_state ch-r r5 failed
set_state ch-x x1 failed
run "retry --state failed --channel ch-x" 0 "$B" retry --db "$DB" --state failed --channel ch-x --json
assert_eq "only ch-x requeued" "$(jget "$(out)" '$.requeued'):$(state_of ch-x x1):$(state_of ch-r r4)" "1:queued:failed"
run "retry --state failed" 0 "$B" retry --db "$DB" --state failed
assert_contains "retry --state failed reports the count" "$(out)" "requeued 2"
assert_eq "no failed message left" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state = 'failed'")" "0"
assert_eq "r4 and r5 queued" "$(state_of ch-r r4),$(state_of ch-r r5)" "queued,queued"

# ---- audit -----------------------------------------------------------------------------------
DB=$T/audit.db
msg_line ch-au au1 | "$B" enqueue --db "$DB" > /dev/null
msg_line ch-au au2 | "$B" enqueue --db "$DB" > /dev/null
msg_line ch-other o1 | "$B" enqueue --db "$DB" > /dev/null
"$B" cancel --db "$DB" ch-au au1 > /dev/null
NOW=$(now_ms)
AU1=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'au1'")
AU2=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'au2'")
O1=$(sql "$DB" "SELECT id FROM outbox WHERE external_message_id = 'o1'")
sql "$DB" "INSERT INTO attempts (message_id, started_at_ms, duration_ms, http_status, outcome, error, response_excerpt) VALUES
    ($AU2, $NOW - 1000, 33, 503, 'retry', 'boom, \"bad\"', 'Service Unavailable'),
    ($AU2, $NOW - 7200000, 12, 500, 'retry', 'old', NULL),
    ($O1, $NOW - 500, 5, 200, 'accepted', NULL, '{\"status\":\"success\"}');
    INSERT INTO transitions (message_id, at_ms, from_state, to_state, reason) VALUES ($AU2, $NOW - 7100000, 'sending', 'queued', 'http 500')"
TOTAL_EVENTS=$(sql "$DB" "SELECT (SELECT count(*) FROM attempts) + (SELECT count(*) FROM transitions)")
# Rows are the lines (JSON) or records (CSV) that have a kind; a summary line may follow.
rows_of() { grep -c '"kind"' || true; }
run "audit --format csv" 0 "$B" audit --db "$DB" --format csv
out > "$T/audit.csv"
assert_contains "csv header names the columns" "$(head -1 "$T/audit.csv")" "kind,channel_id,external_message_id"
# Read the CSV back with SQLite's RFC 4180 reader: quoting must survive commas and quotes.
csv_sql() { sqlite3 -batch -noheader :memory: -cmd ".import --csv $T/audit.csv a" "$1"; }
assert_eq "csv has one record per attempt and transition" "$(csv_sql 'SELECT count(*) FROM a')" "$TOTAL_EVENTS"
assert_eq "csv kinds" "$(csv_sql "SELECT group_concat(kind || '=' || n, ' ') FROM (SELECT kind, count(*) AS n FROM a GROUP BY kind ORDER BY kind)")" "attempt=3 transition=2"
assert_eq "csv keeps a value with a comma and quotes intact" \
    "$(csv_sql 'SELECT * FROM a' | grep -cE 'boom, (\\)?"bad(\\)?"')" "1"
assert_eq "csv rows name their message" "$(csv_sql "SELECT group_concat(DISTINCT channel_id || '/' || external_message_id) FROM (SELECT * FROM a ORDER BY channel_id, external_message_id)")" "ch-au/au1,ch-au/au2,ch-other/o1"
run "audit --format jsonl" 0 "$B" audit --db "$DB" --format jsonl
out > "$T/audit.jsonl"
assert_eq "jsonl: one row per event" "$(rows_of < "$T/audit.jsonl")" "$TOTAL_EVENTS"
n=0
while IFS= read -r line; do
    n=$((n + 1))
    assert_eq "jsonl line $n is valid JSON" "$(jsql "$line" "json_valid(j)")" "1"
done < "$T/audit.jsonl"
AJ=$(grep '"kind"' "$T/audit.jsonl" > "$T/audit.rows"; jsonl_array "$T/audit.rows")
assert_eq "jsonl rows have an RFC 3339 time" "$(jsql "$AJ" "(SELECT count(*) FROM json_each(j) WHERE json_extract(value, '\$.at') GLOB '[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*Z')")" "$TOTAL_EVENTS"
assert_contains "jsonl carries the attempt's status and error" \
    "$(jsql "$AJ" "(SELECT value FROM json_each(j) WHERE value LIKE '%Service Unavailable%')")" '503'
assert_contains "jsonl carries the attempt's error verbatim" \
    "$(jsql "$AJ" "(SELECT value FROM json_each(j) WHERE value LIKE '%Service Unavailable%')")" 'boom, \"bad\"'
run "audit defaults to jsonl" 0 "$B" audit --db "$DB"
assert_eq "default format is jsonl" "$(out | rows_of)" "$TOTAL_EVENTS"
run "audit --since 1h" 0 "$B" audit --db "$DB" --since 1h --format jsonl
assert_eq "--since 1h leaves out the 2h-old events" "$(out | rows_of)" "$((TOTAL_EVENTS - 2))"
assert_not_contains "--since 1h: no old attempt" "$(out)" '"old"'
HOUR_AGO=$(date -u -d "@$(( $(date +%s) - 3600 ))" +%Y-%m-%dT%H:%M:%SZ)
run "audit --until RFC 3339" 0 "$B" audit --db "$DB" --until "$HOUR_AGO"
assert_eq "--until an hour ago: only the 2 old events" "$(out | rows_of)" "2"
run "audit --since in the future" 0 "$B" audit --db "$DB" --since "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%SZ)"
assert_eq "--since in the future: nothing" "$(out | rows_of)" "0"
run "audit --channel" 0 "$B" audit --db "$DB" --channel ch-other
assert_eq "--channel filters" "$(out | rows_of):$(out | grep '"kind"' | grep -c '"ch-other"')" "1:1"
run "audit --format xml exits 2" 2 "$B" audit --db "$DB" --format xml
run "audit --since garbage exits 2" 2 "$B" audit --db "$DB" --since yesterday-ish

# ---- purge ------------------------------------------------------------------------------------
DB=$T/purge.db
for m in q c cf f a s; do msg_line ch-pg "$m"; done | "$B" enqueue --db "$DB" > /dev/null
msg_line ro ra | "$B" enqueue --db "$DB" > /dev/null
sql "$DB" "UPDATE outbox SET created_at_ms = $(now_ms) - 86400000 WHERE external_message_id = 'q'"
set_state ch-pg c cancelled
set_state ch-pg cf confirmed
set_state ch-pg f failed
set_state ch-pg a accepted
set_state ch-pg s sending
set_state ro ra accepted
TR_BEFORE=$(sql "$DB" "SELECT count(*) FROM transitions")
remaining() { sql "$DB" "SELECT group_concat(external_message_id, ',') FROM (SELECT external_message_id FROM outbox ORDER BY id)"; }
run "purge --older-than 1h" 0 "$B" purge --db "$DB" --older-than 1h
assert_eq "nothing is older than an hour" "$(remaining)" "q,c,cf,f,a,s,ra"
run "purge --older-than 0s --keep-failed" 0 "$B" purge --db "$DB" --older-than 0s --keep-failed
assert_contains "purge reports the count" "$(out)" "purged 2"
assert_eq "cancelled and confirmed purged" "$(remaining)" "q,f,a,s,ra"
sql "$DB" "INSERT INTO webhook_events (body_sha256, received_at_ms, body, processed_at_ms)
           VALUES ('e-old', 1, x'7b7d', 2), ('e-new', 1, x'7b7d', NULL)"
run "purge --older-than 0s --json" 0 "$B" purge --db "$DB" --older-than 0s --json
assert_eq "purge --json count" "$(jget "$(out)" '$.purged')" "1"
assert_eq "purge --json: the interpreted webhook event went" "$(jget "$(out)" '$.webhook_events_pruned')" "1"
assert_eq "an event not yet interpreted stays" "$(sql "$DB" "SELECT group_concat(body_sha256) FROM webhook_events")" "e-new"
assert_eq "failed purged; queued, accepted, sending kept" "$(remaining)" "q,a,s,ra"
run "purge with a read-only channel" 0 "$B" purge --db "$DB" --older-than 0s --readonly-channels ro
assert_eq "accepted of the read-only channel purged" "$(remaining)" "q,a,s"
assert_eq "transitions of purged messages are gone" "$(sql "$DB" "SELECT count(*) FROM transitions WHERE message_id NOT IN (SELECT id FROM outbox)"):$(sql "$DB" "SELECT count(*) FROM transitions")" "0:2"
assert_ge "there were transitions to remove" "$TR_BEFORE" 6

# ---- configuration precedence: file < OUTBOX_* < flags --------------------------------------
CF=$T/outbox.conf
printf '# test configuration\n\ndb = %s\nlog_level = warn   # trailing comment\n' "$T/file.db" > "$CF"
enq_key() { printf '{"channel_id":"cfg","external_message_id":"%s","business_id":"b","external_conversation_id":"c%s","content":"x","sender_type":"User"}\n' "$1" "$1"; }
keys_in() { [ -f "$1" ] && sql "$1" "SELECT group_concat(external_message_id, ',') FROM (SELECT external_message_id FROM outbox ORDER BY id)"; }
enq_key k1 | "$B" enqueue --config "$CF" > /dev/null
assert_eq "the file's db is used" "$?" "0"
enq_key k2 | OUTBOX_DB=$T/env.db "$B" enqueue --config "$CF" > /dev/null
enq_key k3 | OUTBOX_DB=$T/env.db "$B" enqueue --config "$CF" --db "$T/flag.db" > /dev/null
enq_key k4 | OUTBOX_CONFIG=$CF "$B" enqueue > /dev/null
enq_key k5 | OUTBOX_DB=$T/env.db "$B" enqueue --db="$T/flag.db" > /dev/null
assert_eq "file: k1 (--config) and k4 (OUTBOX_CONFIG)" "$(keys_in "$T/file.db")" "k1,k4"
assert_eq "env beats the file" "$(keys_in "$T/env.db")" "k2"
assert_eq "the flag beats env and file" "$(keys_in "$T/flag.db")" "k3,k5"
printf 'db = %s\ncolour = blue\n' "$T/bad.db" > "$T/unknown.conf"
run "an unknown key in the file exits 1" 1 "$B" status --config "$T/unknown.conf"
assert_contains "the error names the key" "$(err)" "colour"
printf 'max_inflight = lots\n' > "$T/badvalue.conf"
run "a bad value in the file exits 1" 1 "$B" status --config "$T/badvalue.conf" --db "$T/x.db"
assert_contains "the error names the key of the bad value" "$(err)" "max_inflight"
run "an unknown OUTBOX_ variable exits 1" 1 env OUTBOX_FOO=1 "$B" status --db "$T/x.db"
assert_contains "the error names the variable" "$(err)" "OUTBOX_FOO"
run "a bad OUTBOX_ value exits 1" 1 env OUTBOX_RETRY_BASE=soon "$B" status --db "$T/x.db"
assert_contains "the error names the variable's key" "$(err)" "retry_base"
run "a configuration key works as a flag" 0 "$B" status --db "$T/x.db" --max-inflight 4
run "a bad value in a flag exits 1" 1 "$B" status --db "$T/x.db" --max-inflight lots
run "a missing config file exits 1" 1 "$B" status --config "$T/no-such.conf"
assert_eq "no database was created by failed starts" "$(ls "$T"/bad.db 2>/dev/null)" ""

finish
