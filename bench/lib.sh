# bench/lib.sh: shared helpers for the delivery benchmarks (bash; sourced, not run).
#
# Everything runs on 127.0.0.1 against build/mock_partoo. Processes started through these
# helpers are recorded in PIDS and killed on exit; the work directory ($BT, under
# $BENCH_DIR or /tmp) is removed unless KEEP_TMP=1.
#
# Environment:
#   BUILD        build directory (default <repo>/build)
#   OUTBOX_BIN   the outbox binary (default $BUILD/outbox)
#   MOCK_BIN     the mock (default $BUILD/mock_partoo)
#   BENCH_DIR    parent of the temporary work directory (default $TMPDIR or /tmp)
#   BENCH_TEMPLATES  keep the template databases (N queued messages) in this directory and
#                reuse them in later runs (default: rebuilt in every run, in the work dir)
#   SERVE_OPTS   extra options for every `outbox serve` (word-split), e.g. "--synchronous normal"
#
# The helpers shared with the tests (log, now_ms, wait_until, sql, start_mock, mock_get,
# mock_stat, serve_holds_lock, stop_serve, stop_pids, cpu_ticks, fmt, commas, median, ...) are in
# tests/lib/common.sh; the settings below make them behave as the benchmarks need.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$BENCH_ROOT/tests/lib/common.sh"
LOG_TAG=bench
BUILD=${BUILD:-$BENCH_ROOT/build}
OUTBOX_BIN=${OUTBOX_BIN:-$BUILD/outbox}
MOCK_BIN=${MOCK_BIN:-$BUILD/mock_partoo}
BENCH_API_KEY=bench-key
CLK_TCK=$(getconf CLK_TCK)
PIDS=()

for _x in "$OUTBOX_BIN" "$MOCK_BIN"; do
    [ -x "$_x" ] || { echo "bench: $_x not found; build first (make build)" >&2; exit 1; }
done
for _x in sqlite3 curl awk; do
    command -v "$_x" >/dev/null || { echo "bench: the $_x command is needed" >&2; exit 1; }
done

BT=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/obx-bench-drain.XXXXXX")
T=$BT                                   # the work directory of tests/lib/common.sh's helpers
MOCK_OPTS=(--rate-limit 0 --keep-bodies 0) # every mock unthrottled, keeping no bodies

# Run private copies: a rebuild of build/ during a run must not change the binaries under test.
mkdir -p "$BT/bin"
# Their names differ from the originals' so that a `pkill mock_partoo` elsewhere spares them.
cp "$OUTBOX_BIN" "$BT/bin/obx-bench" && cp "$MOCK_BIN" "$BT/bin/partoo-bench-mock" ||
    { echo "bench: cannot copy the binaries" >&2; rm -rf "$BT"; exit 1; }
OUTBOX_BIN=$BT/bin/obx-bench
MOCK_BIN=$BT/bin/partoo-bench-mock

# Listeners other than the delivery worker (producer API, webhooks), when this build has them,
# get a free port each so that benchmarks never collide with another serve on this machine.
SERVE_LISTEN_OPTS=()
for _k in api_listen webhook_listen; do
    if OUTBOX_PARTOO_API_KEY=x "$OUTBOX_BIN" serve --print-config 2>/dev/null | grep -q "^$_k "; then
        SERVE_LISTEN_OPTS+=("--${_k//_/-}" 127.0.0.1:0)
    fi
done

# On exit: every process we started gets TERM, then KILL after 5 s.
bench_cleanup() {
    stop_pids 5000 "${PIDS[@]:-}"
    [ "${KEEP_TMP:-0}" = 1 ] && log "kept $BT" || rm -rf "$BT"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# ---- the machine -------------------------------------------------------------------------

machine_table() {
    local v
    v=$("$OUTBOX_BIN" version)
    machine_rows "$BT"
    echo "| outbox version | $v |"
    echo "| wrk | $(wrk -v 2>&1 | head -1 | cut -c1-60) |"
    echo "| load average at start | $(cut -d" " -f1-3 /proc/loadavg) (other work on the machine shares the CPUs) |"
    echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
}

# ---- the mock ------------------------------------------------------------------------------

# stop_mock: TERM to the mock, KILL after 5 s. (start_mock, mock_get, mock_stat: common.sh)
stop_mock() { stop_pids 5000 "$MOCK_PID"; }
# ensure_mock: starts another mock if ours is gone (killed from outside).
ensure_mock() {
    kill -0 "$MOCK_PID" 2>/dev/null && return 0
    log "the mock is gone (killed from outside?); starting another"
    start_mock
}
mock_reset() { curl -sS --max-time 10 -X POST "http://127.0.0.1:$MOCK_PORT/_mock/reset" >/dev/null; }

# ---- messages and databases ----------------------------------------------------------------

# gen_jsonl N [CONVERSATIONS] [BUSINESSES] [PREFIX]: N messages as JSON Lines on stdout,
# round-robin over the conversations (so the queue has CONVERSATIONS ready heads), ~70-byte
# content, the same shape as the wrk bodies (bench/wrk_post.lua).
gen_jsonl() {
    awk -v n="$1" -v convs="${2:-10000}" -v biz="${3:-10}" -v prefix="${4:-m}" 'BEGIN {
        for (i = 1; i <= n; i++) {
            c = i % convs
            printf "{\"channel_id\":\"bench-ch\",\"external_message_id\":\"%s-%d\",\"business_id\":\"biz-%d\",\"external_conversation_id\":\"conv-%d\",\"content\":\"Bench message %d: hello, this is a typical short chat message body.\",\"sender_type\":\"Consumer\"}\n", prefix, i, c % biz, c, i
        } }'
}

# template_db N [CONVERSATIONS]: path of a database holding N queued messages spread over
# CONVERSATIONS (default 10,000) (built once per run, checkpointed; with BENCH_TEMPLATES=DIR
# kept in DIR across runs, per N, conversations and `outbox version` string).
template_db() {
    local n=$1 convs=${2:-10000} db t0
    db=$BT/template-$n-c$convs.db
    if [ -n "${BENCH_TEMPLATES:-}" ]; then
        mkdir -p "$BENCH_TEMPLATES"
        db=$BENCH_TEMPLATES/template-$n-c$convs-$("$OUTBOX_BIN" version | cksum | cut -d' ' -f1).db
    fi
    if [ ! -s "$db" ]; then
        t0=$(now_ms)
        log "enqueueing $n messages ($convs conversations) into a template database"
        rm -f "$BT/building.db" "$BT/building.db-wal" "$BT/building.db-shm"
        "$OUTBOX_BIN" migrate --db "$BT/building.db" >/dev/null ||
            { log "migrate failed"; exit 1; }
        if [ "$n" -gt 0 ]; then
            gen_jsonl "$n" "$convs" > "$BT/gen.jsonl"
            "$OUTBOX_BIN" enqueue --db "$BT/building.db" < "$BT/gen.jsonl" > "$BT/enqueue.out" ||
                { log "enqueue failed"; cat "$BT/enqueue.out" >&2; exit 1; }
            rm -f "$BT/gen.jsonl"
        fi
        sql "$BT/building.db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
        rm -f "$BT/building.db-wal" "$BT/building.db-shm"
        mv "$BT/building.db" "$db" # complete, or not there at all
        log "template of $n messages ready in $(( $(now_ms) - t0 )) ms"
    fi
    echo "$db"
}

# fresh_db N NAME [CONVERSATIONS]: a copy of the template with N queued messages; prints its
# path.
fresh_db() {
    local src dst=$BT/$2.db
    src=$(template_db "$1" "${3:-10000}")
    rm -f "$dst" "$dst-wal" "$dst-shm" "$dst.lock"
    cp "$src" "$dst"
    echo "$dst"
}

# ---- serve ----------------------------------------------------------------------------------

# start_serve DB [options] (common.sh): unthrottled, at log level warn, the listeners above,
# SERVE_OPTS; sets SERVE_PID and SERVE_CHILD (STRACE_OUT: under strace). stop_serve: TERM,
# killed after 30 s.
read -ra _x <<< "${SERVE_OPTS:-}"
SERVE_ARGS=(--rate-limit 0 --log-level warn "${SERVE_LISTEN_OPTS[@]}" "${_x[@]}")
API_KEY=$BENCH_API_KEY
SERVE_START_S=30
SERVE_STOP_S=30

# ---- /proc ----------------------------------------------------------------------------------

# (cpu_ticks, hwm_kb, rss_kb: common.sh)
ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# serve_api_port DB: the producer API's port of the serve running on DB, read from the
# service_state row that serve writes at start-up (its "serving" log line, which also has
# api_port=, is at level info and the benchmarks run serve at warn). Waits up to 10 s; prints
# nothing when there is no API listener.
serve_api_port() {
    local db=$1 q="SELECT value FROM service_state WHERE key = 'api_port'"
    wait_until 10 '[ "$(sql "$db" "$q")" -gt 0 ]' && sql "$db" "$q"
}
