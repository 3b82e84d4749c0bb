# tests/integration/lib.sh: shared helpers for the integration tests (bash).
#
# Each test script sources this file, calls `check NAME CMD...` or the assert_* helpers,
# and ends with `finish`, which prints "N passed, M failed" and sets the exit status.
# Processes started with start_mock / start_serve are killed on exit; the work
# directory ($T) is removed unless KEEP_TMP=1.
#
# Environment (set by CTest): OUTBOX_BIN, OBX_BUILD_DIR, OBX_SOURCE_DIR.
# The helpers shared with the benchmarks (wait_until, sql, jget, start_mock, stop_serve,
# free_port, ...) are in tests/lib/common.sh.

set -u
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
SRC=${OBX_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
OUTBOX_BIN=${OUTBOX_BIN:-$(dirname "$0")/../../build/outbox}
OBX_BUILD_DIR=${OBX_BUILD_DIR:-$(dirname "$OUTBOX_BIN")}
MOCK_BIN=${MOCK_BIN:-$OBX_BUILD_DIR/mock_partoo}
T=$(mktemp -d /tmp/obx-it.XXXXXX)
DB=$T/outbox.db
PASSED=0
FAILED=0
PIDS=()
# start_serve (common.sh): listeners on free ports (tests run in parallel); a test's own
# options come later and win.
SERVE_ARGS=(--api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0)

# A coverage build (make coverage) writes a process's line counters only when it exits
# normally: there, stop what is still running with SIGTERM first (serve drains and exits)
# and SIGKILL only what is left after 10 s. Elsewhere SIGKILL at once, as always.
OBX_COV_BUILD=0
grep -q '^OBX_COVERAGE:BOOL=ON' "$OBX_BUILD_DIR/CMakeCache.txt" 2>/dev/null && OBX_COV_BUILD=1

cleanup() {
    # 10 s of grace in a coverage build (above), none elsewhere.
    stop_pids $((OBX_COV_BUILD * 10000)) "${PIDS[@]:-}"
    wait 2>/dev/null
    [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT

pass() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1"; }

# assert_eq NAME ACTUAL EXPECTED
assert_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', expected '$3'"; fi
}
# assert_contains NAME HAYSTACK NEEDLE
assert_contains() {
    case "$2" in *"$3"*) pass "$1" ;; *) fail "$1: '$3' not in: $2" ;; esac
}
assert_not_contains() {
    case "$2" in *"$3"*) fail "$1: unexpected '$3' in: $2" ;; *) pass "$1" ;; esac
}
# assert_ge NAME ACTUAL MIN / assert_le NAME ACTUAL MAX (integers)
assert_ge() { if [ "$2" -ge "$3" ]; then pass "$1"; else fail "$1: $2 < $3"; fi; }
assert_le() { if [ "$2" -le "$3" ]; then pass "$1"; else fail "$1: $2 > $3"; fi; }
# assert_status NAME EXPECTED_EXIT CMD...
assert_status() {
    local name=$1 want=$2
    shift 2
    "$@" >"$T/last.out" 2>"$T/last.err"
    local got=$?
    if [ "$got" = "$want" ]; then pass "$name"; else
        fail "$name: exit $got, expected $want; stderr: $(head -c 500 "$T/last.err")"
    fi
}

# mock_post PATH JSON: POST to the mock's /_mock/PATH.
mock_post() { curl -sS -X POST -H 'Content-Type: application/json' -d "$2" \
    "http://127.0.0.1:$MOCK_PORT/_mock/$1"; }

# enqueue_n N [PREFIX] [CONVERSATIONS]: N messages as JSON Lines through the CLI.
enqueue_n() {
    local n=$1 prefix=${2:-m} convs=${3:-$1}
    for i in $(seq 1 "$n"); do
        printf '{"channel_id":"ch","external_message_id":"%s%d","business_id":"b1","external_conversation_id":"c%d","content":"hello %d","sender_type":"Consumer"}\n' \
            "$prefix" "$i" $(( i % convs )) "$i"
    done | "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
}

# enqueue_one CHANNEL EXT_ID CONVERSATION: one message through `outbox enqueue`.
enqueue_one() {
    "$OUTBOX_BIN" enqueue --db "$DB" --channel "$1" --message-id "$2" --business b1 \
        --conversation "$3" --content "hi $2" --sender Consumer >/dev/null
}
# state_of CHANNEL EXT_ID: the message's state.
state_of() { sql "$DB" "SELECT state FROM outbox WHERE channel_id = '$1' AND external_message_id = '$2'"; }
count_state() { sql "$DB" "SELECT count(*) FROM outbox WHERE state = '$1'"; }

# restore_pristine: $DB back to the copy a test saved in $T/pristine.db.
restore_pristine() { rm -f "$DB-wal" "$DB-shm"; cp "$T/pristine.db" "$DB"; }
# events: how many webhook events are stored.
events() { sql "$DB" "SELECT count(*) FROM webhook_events"; }
# serve_port NAME: the port serve logged for its NAME listener (api, webhook, ...). start_serve
# returns once serve holds the database's lock, which comes before the `serving` line; under a
# sanitizer the gap is long enough to matter, so this waits up to SERVE_START_S for the line.
serve_port() {
    local port i
    for ((i = 0; i < ${SERVE_START_S:-10} * 20; i++)); do
        port=$(grep -Eo "\"?$1_port\"?[=:][0-9]+" "$T/serve.log" 2>/dev/null | tail -1 | grep -Eo '[0-9]+$')
        [ -n "$port" ] && { echo "$port"; return 0; }
        sleep 0.05
    done
    return 1
}
# audit_verify: runs `outbox audit verify`; output in $T/verify.out, prints the exit status.
audit_verify() {
    "$OUTBOX_BIN" audit --db "$DB" verify >"$T/verify.out" 2>&1
    echo $?
}

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
