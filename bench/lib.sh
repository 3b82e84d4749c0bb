# bench/lib.sh: shared helpers for the delivery benchmarks (bash; sourced, not run).
#
# Everything runs on 127.0.0.1 against build/mock_partoo. Processes started through these
# helpers are recorded in BENCH_PIDS and killed on exit; the work directory ($BT, under
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

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$BENCH_ROOT/build}
OUTBOX_BIN=${OUTBOX_BIN:-$BUILD/outbox}
MOCK_BIN=${MOCK_BIN:-$BUILD/mock_partoo}
BENCH_API_KEY=bench-key
CLK_TCK=$(getconf CLK_TCK)
BENCH_PIDS=()

for _x in "$OUTBOX_BIN" "$MOCK_BIN"; do
    [ -x "$_x" ] || { echo "bench: $_x not found; build first (make build)" >&2; exit 1; }
done
for _x in sqlite3 curl awk; do
    command -v "$_x" >/dev/null || { echo "bench: the $_x command is needed" >&2; exit 1; }
done

BT=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/obx-bench-drain.XXXXXX")

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

# Kills one process we started: TERM, then KILL after 5 s.
bench_kill() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

bench_cleanup() {
    local p
    for p in "${BENCH_PIDS[@]:-}"; do
        [ -n "$p" ] && bench_kill "$p"
    done
    [ "${KEEP_TMP:-0}" = 1 ] && echo "bench: kept $BT" >&2 || rm -rf "$BT"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "bench: $*" >&2; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# wait_until TIMEOUT_S 'CONDITION': polls every 50 ms.
wait_until() {
    local deadline=$(( $(now_ms) + $1 * 1000 ))
    shift
    while ! eval "$*" >/dev/null 2>&1; do
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.05
    done
}

sql() { sqlite3 -batch -noheader -cmd ".timeout 10000" "$1" "$2"; }

# ---- the machine -------------------------------------------------------------------------

machine_table() {
    local v
    v=$("$OUTBOX_BIN" version)
    echo "| what | value |"
    echo "|---|---|"
    echo "| CPU | $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), nproc = $(nproc) |"
    echo "| memory | $(free -h | awk '/^Mem:/ { print $2 }') |"
    echo "| disk of the work dir | $(df --output=source,fstype "$BT" | tail -1 | tr -s ' ') |"
    echo "| kernel | $(uname -sr) |"
    echo "| outbox version | $v |"
    echo "| wrk | $(wrk -v 2>&1 | head -1 | cut -c1-60) |"
    echo "| load average at start | $(cut -d" " -f1-3 /proc/loadavg) (other work on the machine shares the CPUs) |"
    echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
}

# ---- the mock ------------------------------------------------------------------------------

# start_mock [options]: unthrottled mock on a free port. Sets MOCK_PID, MOCK_PORT, MOCK_URL.
start_mock() {
    rm -f "$BT/mock.port"
    "$MOCK_BIN" --listen 127.0.0.1:0 --port-file "$BT/mock.port" --quiet --rate-limit 0 \
        --keep-bodies 0 "$@" 2>>"$BT/mock.log" &
    MOCK_PID=$!
    BENCH_PIDS+=("$MOCK_PID")
    wait_until 10 '[ -s "$BT/mock.port" ]' || { log "mock did not start"; cat "$BT/mock.log" >&2; exit 1; }
    MOCK_PORT=$(cat "$BT/mock.port")
    MOCK_URL=http://127.0.0.1:$MOCK_PORT/v2
}
stop_mock() { bench_kill "$MOCK_PID"; }
# ensure_mock: starts another mock if ours is gone (killed from outside).
ensure_mock() {
    kill -0 "$MOCK_PID" 2>/dev/null && return 0
    log "the mock is gone (killed from outside?); starting another"
    start_mock
}
mock_get() { curl -sS --max-time 10 "http://127.0.0.1:$MOCK_PORT/_mock/$1"; }
mock_reset() { curl -sS --max-time 10 -X POST "http://127.0.0.1:$MOCK_PORT/_mock/reset" >/dev/null; }
# mock_stat NAME: one top-level integer of /_mock/stats.
mock_stat() { mock_get stats | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

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

# serve_cmd DB [options]: the serve command line used by every benchmark (unthrottled).
serve_cmd() {
    local db=$1
    shift
    echo "$OUTBOX_BIN" serve --db "$db" --partoo-base-url "$MOCK_URL" --rate-limit 0 \
        --log-level warn "${SERVE_LISTEN_OPTS[@]}" ${SERVE_OPTS:-} "$@"
}

serve_holds_lock() {
    local ino
    [ -e "$1.lock" ] || return 1
    ino=$(stat -c %i "$1.lock")
    grep -q ":$ino " /proc/locks
}

# start_serve DB [options]: sets SERVE_PID; waits until serve holds its lock.
# With STRACE_OUT set, runs under `strace --seccomp-bpf -f -c -e trace=fsync,fdatasync,sync_file_range`,
# summary written to $STRACE_OUT
# (SERVE_PID is then strace's pid and SERVE_CHILD the serve process).
start_serve() {
    local db=$1
    shift
    if [ -n "${STRACE_OUT:-}" ]; then
        OUTBOX_PARTOO_API_KEY=$BENCH_API_KEY strace --seccomp-bpf -f -c -e trace=fsync,fdatasync,sync_file_range \
            -o "$STRACE_OUT" $(serve_cmd "$db" "$@") >>"$BT/serve.log" 2>&1 &
    else
        OUTBOX_PARTOO_API_KEY=$BENCH_API_KEY $(serve_cmd "$db" "$@") >>"$BT/serve.log" 2>&1 &
    fi
    SERVE_PID=$!
    BENCH_PIDS+=("$SERVE_PID")
    wait_until 30 'serve_holds_lock "$db"' || { log "serve did not start"; tail -20 "$BT/serve.log" >&2; exit 1; }
    SERVE_CHILD=$SERVE_PID
    if [ -n "${STRACE_OUT:-}" ]; then
        SERVE_CHILD=$(pgrep -P "$SERVE_PID" | head -1)
    fi
}

# stop_serve: SIGTERM to serve (it drains and exits 0), then waits for it (and strace).
stop_serve() {
    local i
    kill -TERM "$SERVE_CHILD" 2>/dev/null
    for i in $(seq 1 300); do
        kill -0 "$SERVE_PID" 2>/dev/null || break
        sleep 0.1
    done
    bench_kill "$SERVE_PID"
}

# ---- /proc ----------------------------------------------------------------------------------

# cpu_ticks PID: utime + stime in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# hwm_kb PID / rss_kb PID: peak and current resident set, kB.
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
ticks_to_s() { awk -v t="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'; }

# serve_api_port DB: the producer API's port of the serve running on DB, read from the
# service_state row that serve writes at start-up (its "serving" log line, which also has
# api_port=, is at level info and the benchmarks run serve at warn). Waits up to 10 s; prints
# nothing when there is no API listener.
serve_api_port() {
    local db=$1 q="SELECT value FROM service_state WHERE key = 'api_port'"
    wait_until 10 '[ "$(sql "$db" "$q")" -gt 0 ]' && sql "$db" "$q"
}
