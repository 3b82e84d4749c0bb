# tests/integration/lib.sh: shared helpers for the integration tests (bash).
#
# Each test script sources this file, calls `check NAME CMD...` or the assert_* helpers,
# and ends with `finish`, which prints "N passed, M failed" and sets the exit status.
# Processes started with start_mock / start_serve are killed on exit; the work
# directory ($T) is removed unless KEEP_TMP=1.
#
# Environment (set by CTest): OUTBOX_BIN, OBX_BUILD_DIR, OBX_SOURCE_DIR.

set -u
OUTBOX_BIN=${OUTBOX_BIN:-$(dirname "$0")/../../build/outbox}
OBX_BUILD_DIR=${OBX_BUILD_DIR:-$(dirname "$OUTBOX_BIN")}
MOCK_BIN=${MOCK_BIN:-$OBX_BUILD_DIR/mock_partoo}
T=$(mktemp -d /tmp/obx-it.XXXXXX)
DB=$T/outbox.db
PASSED=0
FAILED=0
PIDS=()

# A coverage build (make coverage) writes a process's line counters only when it exits
# normally: there, stop what is still running with SIGTERM first (serve drains and exits)
# and SIGKILL only what is left after 10 s. Elsewhere SIGKILL at once, as always.
OBX_COV_BUILD=0
grep -q '^OBX_COVERAGE:BOOL=ON' "$OBX_BUILD_DIR/CMakeCache.txt" 2>/dev/null && OBX_COV_BUILD=1

# 1 while any of the PIDs still runs (an exited child not yet reaped counts as gone).
pids_running() {
    local p st
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] || continue
        st=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) || continue
        [ -n "$st" ] && [ "$st" != Z ] && return 0
    done
    return 1
}

cleanup() {
    if [ "$OBX_COV_BUILD" = 1 ]; then
        for p in "${PIDS[@]:-}"; do
            [ -n "$p" ] && kill -TERM "$p" 2>/dev/null
        done
        for _ in $(seq 100); do
            pids_running || break
            sleep 0.1
        done
    fi
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && kill -9 "$p" 2>/dev/null
    done
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

# sql DB QUERY: one query through the sqlite3 shell, list mode.
sql() { sqlite3 -batch -noheader -cmd ".timeout 10000" "$1" "$2"; }
# jget JSON PATH: extracts a value with SQLite's JSON functions (no jq needed).
jget() {
    local json=$1 path=$2
    printf '%s' "$json" > "$T/jget.json"
    sqlite3 -batch -noheader :memory: "SELECT json_extract(readfile('$T/jget.json'), '$path')"
}

# wait_until TIMEOUT_S 'SHELL CONDITION': evaluates the condition every 50 ms until it holds.
# Quote it so command substitutions inside run on every poll, not once.
wait_until() {
    local deadline=$(( $(date +%s%N) / 1000000 + $1 * 1000 ))
    shift
    while ! eval "$*" >/dev/null 2>&1; do
        [ $(( $(date +%s%N) / 1000000 )) -ge $deadline ] && return 1
        sleep 0.05
    done
    return 0
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start_mock [mock options]: sets MOCK_PID, MOCK_PORT, MOCK_URL (base URL with /v2).
start_mock() {
    rm -f "$T/mock.port"
    "$MOCK_BIN" --listen 127.0.0.1:0 --port-file "$T/mock.port" --quiet "$@" \
        2>>"$T/mock.log" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    wait_until 10 '[ -s "$T/mock.port" ]' || { echo "mock did not start"; cat "$T/mock.log"; exit 1; }
    MOCK_PORT=$(cat "$T/mock.port")
    MOCK_URL=http://127.0.0.1:$MOCK_PORT/v2
}
mock_get() { curl -sS "http://127.0.0.1:$MOCK_PORT/_mock/$1"; }
mock_post() { curl -sS -X POST -H 'Content-Type: application/json' -d "$2" \
    "http://127.0.0.1:$MOCK_PORT/_mock/$1"; }
mock_stat() { jget "$(mock_get stats)" "$1"; }

# serve_holds_lock: true while some process holds the flock on $DB.lock.
serve_holds_lock() {
    [ -e "$DB.lock" ] || return 1
    local ino
    ino=$(stat -c %i "$DB.lock")
    grep -q ":$ino " /proc/locks
}

# start_serve [outbox serve options]: runs `outbox serve` on $DB against the mock.
# Sets SERVE_PID; output goes to $T/serve.log.
start_serve() {
    # Listeners on free ports (tests run in parallel); a test's own flags come later and win.
    OUTBOX_PARTOO_API_KEY=${API_KEY:-test-key} "$OUTBOX_BIN" serve --db "$DB" \
        --partoo-base-url "$MOCK_URL" --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 \
        "$@" >>"$T/serve.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    # Started once it holds the single-instance lock (seen in /proc/locks, without taking
    # it) and has opened the database.
    wait_until 10 'serve_holds_lock && [ -s "$DB" ]' ||
        { echo "serve did not start"; cat "$T/serve.log"; exit 1; }
}

# enqueue_n N [PREFIX] [CONVERSATIONS]: N messages as JSON Lines through the CLI.
enqueue_n() {
    local n=$1 prefix=${2:-m} convs=${3:-$1}
    for i in $(seq 1 "$n"); do
        printf '{"channel_id":"ch","external_message_id":"%s%d","business_id":"b1","external_conversation_id":"c%d","content":"hello %d","sender_type":"Consumer"}\n' \
            "$prefix" "$i" $(( i % convs )) "$i"
    done | "$OUTBOX_BIN" enqueue --db "$DB" >/dev/null
}

count_state() { sql "$DB" "SELECT count(*) FROM outbox WHERE state = '$1'"; }

finish() {
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
}
