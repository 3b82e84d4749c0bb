#!/usr/bin/env bash
# bench/api_bench.sh: the producer API benchmark of docs/benchmarks.md ("## Producer API").
#
# How fast `outbox serve` takes messages over HTTP, durably (synchronous=full: every 202 is
# sent after its COMMIT), and how much group commit gains over one fsync per message:
#
#   fsync    the raw rate of single-row INSERT + COMMIT transactions (WAL, synchronous=FULL)
#            on the disk of the work directory (bench/api_fsync.c), measured for FSYNC_S
#            seconds right before every wrk run: this VM's disk varies several-fold within
#            a minute, so each run is compared with the floor measured next to it
#   single   wrk, keep-alive connections, one message per POST /v1/messages, with 1, 8 and 64
#            clients (CONNS), DURATION seconds each: throughput, p50/p90/p99 latency
#   batch    the same with BATCH (100) messages per POST: messages/s
#
# Every run has a fresh database. serve points at build/mock_partoo started with --down (it
# closes every request unanswered), so the sender finds Partoo unreachable, opens its circuit
# and backs off: the benchmark measures enqueueing, not a drain competing for the disk. wrk
# (bench/api_wrk.lua) gives every message a unique id. After each run the script checks that
# there was no error and that the database holds at least requests x BATCH rows.
#
#   make build && bench/api_bench.sh
#   DURATION=5 CONNS="1 64" bench/api_bench.sh
#
# Environment: BUILD (default <repo>/build), OUTBOX_BIN, MOCK_BIN, BENCH_DIR (parent of the
# temporary work directory, default $TMPDIR or /tmp: it must be on the disk to measure),
# DURATION (10), CONNS ("1 8 64"), BATCH (100), BATCH_CONNS ("1 8 64"; empty: none), FSYNC_S (3),
# KEEP_TMP=1 keeps the work directory. Prints Markdown on stdout, progress on stderr. Only
# talks to 127.0.0.1; every process it starts is killed on exit.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/lib/common.sh"   # log, now_ms, wait_until, stop_pids, fmt, commas, machine_rows
LOG_TAG=api_bench
BUILD=${BUILD:-$ROOT/build}
OUTBOX_BIN=${OUTBOX_BIN:-$BUILD/outbox}
MOCK_BIN=${MOCK_BIN:-$BUILD/mock_partoo}
DURATION=${DURATION:-10}
CONNS=${CONNS:-1 8 64}
BATCH=${BATCH:-100}
BATCH_CONNS=${BATCH_CONNS-1 8 64} # set but empty: no batch runs
FSYNC_S=${FSYNC_S:-3}

for x in "$OUTBOX_BIN" "$MOCK_BIN"; do
    [ -x "$x" ] || { log "$x not found; build first (make build)"; exit 1; }
done
for x in wrk gcc sqlite3 curl awk; do
    command -v "$x" >/dev/null || { log "the $x command is needed"; exit 1; }
done

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/obx-bench-api.XXXXXX")
PIDS=()
cleanup() {
    stop_pids 500 "${PIDS[@]:-}"
    wait 2>/dev/null
    [ "${KEEP_TMP:-0}" = 1 ] && log "kept $W" || rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies: a rebuild of build/ during the run must not change what is measured, and a
# `pkill outbox` elsewhere must not hit them.
mkdir -p "$W/bin"
cp "$OUTBOX_BIN" "$W/bin/obx-api-bench" && cp "$MOCK_BIN" "$W/bin/obx-api-bench-mock" ||
    { log "cannot copy the binaries"; exit 1; }
OUTBOX_BIN=$W/bin/obx-api-bench
MOCK_BIN=$W/bin/obx-api-bench-mock
gcc -O2 -o "$W/bin/api_fsync" "$ROOT/bench/api_fsync.c" -lsqlite3 ||
    { log "cannot build bench/api_fsync.c (libsqlite3-dev?)"; exit 1; }

# ---- the machine -------------------------------------------------------------------------------
echo "## Producer API benchmark (bench/api_bench.sh)"
echo
machine_rows "$W"
echo "| SQLite | $("$OUTBOX_BIN" version --json 2>/dev/null | sed -n 's/.*"sqlite":"\([^"]*\)".*/\1/p') |"
echo "| outbox | $("$OUTBOX_BIN" version | head -1) |"
echo "| wrk | $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2) |"
echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
echo

# ---- the fsync floor ------------------------------------------------------------------------------
# fsync_rate: single-row transactions for FSYNC_S seconds on a fresh file; prints commits/s.
fsync_rate() {
    local out
    rm -f "$W"/fsync.db*
    out=$("$W/bin/api_fsync" "$W/fsync.db" 1000000 "$FSYNC_S") || { log "api_fsync failed"; exit 1; }
    rm -f "$W"/fsync.db*
    echo "$out" | sed -n 's/.*per_s=\([0-9.]*\).*/\1/p'
}

# ---- the mock, down ----------------------------------------------------------------------------------
rm -f "$W/mock.port"
"$MOCK_BIN" --listen 127.0.0.1:0 --port-file "$W/mock.port" --quiet --rate-limit 0 --down \
    2>>"$W/mock.log" &
PIDS+=($!)
wait_until 10 '[ -s "$W/mock.port" ]' || { log "the mock did not start"; exit 1; }
MOCK_URL=http://127.0.0.1:$(cat "$W/mock.port")/v2

# run_wrk NAME CONNS BATCH: a fresh serve and database, wrk for DURATION s; sets R_* values.
run_wrk() {
    local name=$1 conns=$2 batch=$3 threads=2 db=$W/$1.db port rows res
    [ "$conns" -lt 2 ] && threads=1
    R_FSYNC=$(fsync_rate)
    OUTBOX_PARTOO_API_KEY=bench "$OUTBOX_BIN" serve --db "$db" --partoo-base-url "$MOCK_URL" \
        --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 --synchronous full \
        >"$W/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_until 15 'grep -q "msg=serving" "$W/$name.log"' ||
        { log "serve did not start"; cat "$W/$name.log" >&2; exit 1; }
    port=$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$W/$name.log" | head -1)
    log "$name: wrk -t$threads -c$conns -d${DURATION}s, $batch message(s) per request"
    res=$(WRK_RUN=$name BATCH=$batch wrk -t"$threads" -c"$conns" -d"${DURATION}s" --latency \
        --timeout 10s -s "$ROOT/bench/api_wrk.lua" "http://127.0.0.1:$port/v1/messages" 2>&1)
    echo "$res" > "$W/$name.wrk"
    kill -TERM "$pid"
    wait "$pid" 2>/dev/null
    rows=$(sqlite3 -batch -noheader "$db" "SELECT count(*) FROM outbox")
    local line
    line=$(echo "$res" | grep '^RESULT ')
    [ -n "$line" ] || { log "no RESULT from wrk:"; echo "$res" >&2; exit 1; }
    get() { echo "$line" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
    R_REQ=$(get requests)
    R_SECS=$(fmt "$(get duration_us) / 1000000" 3)
    R_ERR=$(( $(get non2xx) + $(get connect) + $(get read) + $(get write) + $(get timeout) ))
    R_P50=$(fmt "$(get p50_us) / 1000" 2)
    R_P90=$(fmt "$(get p90_us) / 1000" 2)
    R_P99=$(fmt "$(get p99_us) / 1000" 2)
    R_RPS=$(fmt "$R_REQ / $R_SECS")
    R_MPS=$(fmt "$R_REQ * $batch / $R_SECS")
    # wrk stops counting at the deadline; requests still in flight may have been committed.
    R_OK=yes
    [ "$R_ERR" -eq 0 ] && [ "$rows" -ge $((R_REQ * batch)) ] || R_OK="NO ($R_ERR errors, $rows rows)"
    rm -f "$db" "$db"-wal "$db"-shm
}

echo "### Results"
echo
echo "Single-message POSTs (keep-alive, ${DURATION} s each). \"fsync/s\" is the raw one-row"
echo "transaction rate measured on the same disk for ${FSYNC_S} s just before the run."
echo
echo "| clients | requests | messages/s | p50 ms | p90 ms | p99 ms | fsync/s before | × fsync | checked |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
TARGET=
for c in $CONNS; do
    run_wrk "single-c$c" "$c" 1
    x=$(fmt "$R_MPS / $R_FSYNC" 1)
    echo "| $c | $(commas "$R_REQ") | **$(commas "$R_MPS")** | $R_P50 | $R_P90 | $R_P99 | $(commas "$(fmt "$R_FSYNC")") | $x | $R_OK |"
    [ "$c" = 64 ] && TARGET="$R_MPS $R_FSYNC $x"
done
echo
if [ -n "${BATCH_CONNS// /}" ]; then
echo "Batches of $BATCH messages per POST:"
echo
echo "| clients | requests | batches/s | messages/s | p50 ms | p99 ms | fsync/s before | × fsync | checked |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for c in $BATCH_CONNS; do
    run_wrk "batch-c$c" "$c" "$BATCH"
    echo "| $c | $(commas "$R_REQ") | $(commas "$R_RPS") | **$(commas "$R_MPS")** | $R_P50 | $R_P99 | $(commas "$(fmt "$R_FSYNC")") | $(fmt "$R_MPS / $R_FSYNC" 1) | $R_OK |"
done
echo
fi
if [ -n "$TARGET" ]; then
    set -- $TARGET
    if awk "BEGIN { exit !($1 >= 10 * $2) }"; then verdict=met; else verdict="NOT met"; fi
    echo "Target (64 clients ≥ 10 × the one-fsync-per-message rate): **$verdict** ($(commas "$1") messages/s = $3 × $(commas "$(fmt "$2")") commits/s)."
    echo
fi
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
