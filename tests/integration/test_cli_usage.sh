#!/usr/bin/env bash
# tests/integration/test_cli_usage.sh: usage errors and paging of the CLI (SPEC §6, §14).
#
# A missing required flag or argument is a usage error (exit 2) whose message names what is
# missing, for every subcommand; `ls --limit N` takes any N >= 1 and pages by itself.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_cli_usage.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
B=$OUTBOX_BIN
U=$T/unused.db

# usage_error NAME NEEDLE CMD...: exit 2 and NEEDLE in stderr.
usage_error() {
    local name=$1 needle=$2
    shift 2
    assert_status "$name exits 2" 2 "$@" </dev/null
    assert_contains "$name names $needle" "$(cat "$T/last.err")" "$needle"
}

# ---- missing required flags and arguments ------------------------------------------------
ONE=(--channel ch --message-id m1 --business b --conversation c --content hi --sender Consumer)
for drop in channel message-id business conversation content sender; do
    args=()
    skip=0
    for a in "${ONE[@]}"; do
        if [ "$skip" = 1 ]; then skip=0; continue; fi
        if [ "$a" = "--$drop" ]; then skip=1; continue; fi
        args+=("$a")
    done
    usage_error "enqueue without --$drop" "--$drop" "$B" enqueue --db "$U" "${args[@]}"
done
usage_error "enqueue with only --priority" "--channel" "$B" enqueue --db "$U" --priority 3
usage_error "purge without --older-than" "--older-than" "$B" purge --db "$U"
usage_error "show without arguments" "CHANNEL EXT_ID" "$B" show --db "$U"
usage_error "show with one argument" "CHANNEL EXT_ID" "$B" show --db "$U" ch
usage_error "cancel without arguments" "CHANNEL EXT_ID" "$B" cancel --db "$U"
usage_error "backup without FILE" "FILE" "$B" backup --db "$U"
usage_error "retry without arguments" "CHANNEL EXT_ID" "$B" retry --db "$U"
usage_error "show with three arguments" "too many" "$B" show --db "$U" a b c
usage_error "option without its value" "--limit" "$B" ls --db "$U" --limit
assert_eq "usage errors create no database" "$(ls "$U" 2>/dev/null)" ""

# Missing flags are checked before the configuration: a broken file does not hide them.
printf 'no_such_key = 1\n' > "$T/bad.conf"
usage_error "missing flag with a bad config" "--content" \
    "$B" enqueue --config "$T/bad.conf" --channel ch --message-id m1 --business b \
    --conversation c --sender Consumer

# The complete flag set still enqueues, and stdin mode (no message flags) still works.
assert_status "enqueue with every flag" 0 "$B" enqueue --db "$DB" "${ONE[@]}"
printf '{"channel_id":"ch","external_message_id":"m2","business_id":"b","external_conversation_id":"c","content":"x","sender_type":"Consumer"}\n' |
    "$B" enqueue --db "$DB" >/dev/null
assert_eq "stdin enqueue without flags" "$(sql "$DB" "SELECT count(*) FROM outbox")" 2

# ---- ls --limit: any N >= 1, paged internally --------------------------------------------
for bad in 0 -1 x "" 99999999999999999999; do
    usage_error "ls --limit '$bad'" "--limit" "$B" ls --db "$DB" --limit "$bad"
done
sql "$DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2998)
    INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
                        content, sender_type, created_at_ms, state_at_ms, next_attempt_at_ms)
    SELECT 'ch', 'bulk' || i, 'b', 'c' || i, 'x', 'Consumer', 1, 1, 0 FROM n" ||
    fail "bulk insert"
assert_eq "3000 messages" "$(sql "$DB" "SELECT count(*) FROM outbox")" 3000
assert_status "ls --limit 5000" 0 "$B" ls --db "$DB" --limit 5000
assert_eq "ls --limit 5000 prints 3000 rows and a header" "$(wc -l < "$T/last.out")" 3001
assert_not_contains "no next page after everything" "$(cat "$T/last.out")" "next page"
assert_status "ls --limit 5000 --json" 0 "$B" ls --db "$DB" --limit 5000 --json
printf '%s' "$(cat "$T/last.out")" > "$T/ls.json"
assert_eq "--json lists 3000 distinct messages" \
    "$(sqlite3 -batch -noheader :memory: "SELECT count(DISTINCT json_extract(value, '\$.id'))
        FROM json_each(json_extract(readfile('$T/ls.json'), '\$.messages'))")" 3000
assert_eq "--json next_cursor null" "$(jget "$(cat "$T/ls.json")" '$.next_cursor')" ""
assert_status "ls --limit 2500" 0 "$B" ls --db "$DB" --limit 2500 --json
printf '%s' "$(cat "$T/last.out")" > "$T/ls.json"
assert_eq "--limit 2500 lists 2500" "$(sqlite3 -batch -noheader :memory: "SELECT
    json_array_length(json_extract(readfile('$T/ls.json'), '\$.messages'))")" 2500
cur=$(jget "$(cat "$T/ls.json")" '$.next_cursor')
assert_status "the next page from the cursor" 0 "$B" ls --db "$DB" --limit 5000 --cursor "$cur"
assert_eq "the next page holds the remaining 500" "$(wc -l < "$T/last.out")" 501

finish
