#!/usr/bin/env bash
# bench/webhook_bench.sh: the webhook benchmark of docs/benchmarks.md ("## Webhooks").
#
# Measures how many verified Partoo webhooks per second `outbox serve` stores and reconciles.
# N (50,000) messages are enqueued into a template database and marked `accepted` with
# sqlite3 (so that echoes can confirm them; nothing is left to deliver); bench/webhook_events.c
# signs N distinct message_created echoes of those keys plus REPLY_PCT % (10) replies typed
# by a Partoo user; wrk (bench/webhook_wrk.lua, keep-alive, CONNS connections) fires each
# event exactly once at the webhook listener. Every run gets its own copy of the template.
#
# Reported per run (synchronous x connections):
#   stored/s      events / (time from wrk's start until count(*) of webhook_events = events)
#   reconciled/s  events / (time until every event has processed_at_ms set), i.e. stored,
#                 verified, answered and turned into confirmations and inbox rows
#   req/s         wrk's own figure (includes the few repeats sent while the last answers are
#                 awaited; see bench/webhook_wrk.lua)
#   latency       wrk's per-request latency percentiles
#   CPU           serve's utime + stime over the run, per 1,000 events
# and checks: all N messages confirmed, N * REPLY_PCT / 100 inbox rows, no non-200 answer.
#
#   make build && bench/webhook_bench.sh
#   N=20000 CONNS="32" SYNCS=full bench/webhook_bench.sh
#
# Environment: BUILD (default <repo>/build), OUTBOX_BIN, N, REPLY_PCT, CONNS ("16 64"),
# SYNCS ("full normal"), THREADS (wrk threads, 1), RUN_TIMEOUT (120 s per run), BENCH_DIR,
# KEEP_TMP=1. Markdown on stdout, progress on stderr. Only talks to 127.0.0.1; every process
# it starts is killed on exit. Needs wrk, sqlite3, curl, gcc and OpenSSL's libcrypto headers.
set -uo pipefail
{

ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/tests/lib/common.sh"   # log, now_ms, sql, stop_pids, cpu_ticks, machine_rows
LOG_TAG=webhook_bench
BUILD=${BUILD:-$ROOT/build}
OUTBOX_BIN=${OUTBOX_BIN:-$BUILD/outbox}
N=${N:-50000}
REPLY_PCT=${REPLY_PCT:-10}
CONNS=${CONNS:-16 64}
SYNCS=${SYNCS:-full normal}
THREADS=${THREADS:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
SEED=4f3c2a1b0e9d8c7b6a5948372615f4e3d2c1b0a99887766554433221100ffeed
CHANNEL=bench-ch
CLK_TCK=$(getconf CLK_TCK)
PIDS=()

newest_done_ms() { stat -c %.3Y "$BT"/done/* | sort -n | tail -1 | tr -d .; }

for x in wrk sqlite3 curl gcc pkg-config awk; do
    command -v "$x" >/dev/null || { log "the $x command is needed"; exit 1; }
done
[ -x "$OUTBOX_BIN" ] || { log "$OUTBOX_BIN not found; build first (make build)"; exit 1; }

BT=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/obx-bench-webhook.XXXXXX")
# A FIFO nobody writes to: `read -t S -u $NAP_FD` is a sleep that forks no process.
mkfifo "$BT/nap" && exec {NAP_FD}<>"$BT/nap"
cleanup() {
    stop_pids 200 "${PIDS[@]:-}"
    wait 2>/dev/null
    [ "${KEEP_TMP:-0}" = 1 ] && log "kept $BT" || rm -rf "$BT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy of the binary under a name of its own: a rebuild or a `pkill outbox` elsewhere
# does not touch the process being measured.
cp "$OUTBOX_BIN" "$BT/obx-webhook-bench" || exit 1
OUTBOX_BIN=$BT/obx-webhook-bench

# ---- events -------------------------------------------------------------------------------
gcc -O2 -o "$BT/webhook_events" "$ROOT/bench/webhook_events.c" $(pkg-config --cflags --libs libcrypto) ||
    { log "cannot build bench/webhook_events.c"; exit 1; }
LOAD_AT_START=$(cut -d' ' -f1-3 /proc/loadavg)
N_REPLY=$(( N * REPLY_PCT / 100 ))
TOTAL=$(( N + N_REPLY ))
t=$(now_ms)
"$BT/webhook_events" "$SEED" "$N" "$N_REPLY" "$CHANNEL" > "$BT/events.tsv" 2> "$BT/events.err" ||
    { log "event generation failed"; cat "$BT/events.err" >&2; exit 1; }
PUB=$(sed -n 's/^public key //p' "$BT/events.err")
log "signed $TOTAL events ($N echoes, $N_REPLY replies) in $(( $(now_ms) - t )) ms; body $(head -1 "$BT/events.tsv" | cut -f2 | wc -c) bytes"

# ---- template database: N accepted messages awaiting confirmation ----------------------------
TEMPLATE=$BT/template.db
t=$(now_ms)
"$OUTBOX_BIN" migrate --db "$TEMPLATE" >/dev/null || { log "migrate failed"; exit 1; }
awk -v n="$N" -v ch="$CHANNEL" 'BEGIN { for (i = 1; i <= n; i++)
    printf "{\"channel_id\":\"%s\",\"external_message_id\":\"wb-%d\",\"business_id\":\"biz-1\",\"external_conversation_id\":\"conv-%d\",\"content\":\"hello %d\",\"sender_type\":\"Consumer\"}\n", ch, i, i % 1000, i }' |
    "$OUTBOX_BIN" enqueue --db "$TEMPLATE" >/dev/null || { log "enqueue failed"; exit 1; }
sql "$TEMPLATE" "UPDATE outbox SET state = 'accepted', state_reason = 'bench: marked accepted',
    state_at_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER), accepted_at_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER),
    attempts = 1, last_http_status = 200,
    confirm_due_at_ms = CAST(unixepoch('subsec') * 1000 AS INTEGER) + 86400000;
    PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null 2>&1 ||
sql "$TEMPLATE" "UPDATE outbox SET state = 'accepted', state_reason = 'bench: marked accepted',
    state_at_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
    accepted_at_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
    attempts = 1, last_http_status = 200,
    confirm_due_at_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) + 86400000;
    PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null || { log "cannot mark the messages accepted"; exit 1; }
[ "$(sql "$TEMPLATE" "SELECT count(*) FROM outbox WHERE state = 'accepted'")" = "$N" ] ||
    { log "template: not all $N messages are accepted"; exit 1; }
log "template: $N accepted messages in $(( $(now_ms) - t )) ms"

# run SYNC CONNS: one measured run; appends a Markdown row to $BT/rows.md.
run() {
    local sync=$1 conns=$2 db=$BT/run-$1-$2.db port url t0 t_stored=0 t_done=0 c0 c1
    local stored pending deadline wrk_pid wait_done out=$BT/wrk-$1-$2.out
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
    cp "$TEMPLATE" "$db"
    : > "$BT/serve-$sync-$conns.log"
    OUTBOX_PARTOO_API_KEY=bench "$OUTBOX_BIN" serve --db "$db" --partoo-base-url http://127.0.0.1:9/v2 \
        --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 --webhook-public-key "$PUB" \
        --synchronous "$sync" --confirm-timeout 1h --log-level info \
        >>"$BT/serve-$sync-$conns.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    deadline=$(( $(now_ms) + 10000 ))
    port=
    while [ -z "$port" ] && [ "$(now_ms)" -lt "$deadline" ]; do
        port=$(sed -n 's/.* webhook_port=\([0-9]*\).*/\1/p' "$BT/serve-$sync-$conns.log" | head -1)
        [ -z "$port" ] && sleep 0.05
    done
    [ -n "$port" ] || { log "serve did not start"; cat "$BT/serve-$sync-$conns.log" >&2; exit 1; }
    url=http://127.0.0.1:$port/webhooks/partoo
    c0=$(cpu_ticks "$SERVE_PID")
    t0=$(now_ms)
    rm -rf "$BT/done"; mkdir -p "$BT/done"
    WEBHOOK_EVENTS=$BT/events.tsv WEBHOOK_THREADS=$THREADS WEBHOOK_DONE_DIR=$BT/done \
        wrk -t"$THREADS" -c"$conns" \
        -d"${RUN_TIMEOUT}s" --timeout 10s -s "$ROOT/bench/webhook_wrk.lua" "$url" > "$out" 2>&1 &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    deadline=$(( t0 + RUN_TIMEOUT * 1000 ))
    # Each wrk thread creates its done file once every one of its events was answered 200,
    # i.e. committed: the newest file's time is when the last event was stored. The wait
    # forks nothing (no $(...), no sleep process): on 2 CPUs shared with serve and wrk, a
    # polling loop that forks costs the measured run a quarter of the machine.
    local ndone=0 now=0 tick files
    while :; do
        files=("$BT"/done/*)
        [ -e "${files[0]}" ] && ndone=${#files[@]} || ndone=0
        tick=${EPOCHREALTIME/./}; now=$(( tick / 1000 ))
        [ "$ndone" -lt "$THREADS" ] && [ "$now" -lt "$deadline" ] || break
        read -r -t 0.05 -u "$NAP_FD" || true
    done
    if [ "$ndone" -ge "$THREADS" ]; then
        t_stored=$(newest_done_ms)
        while [ "$(now_ms)" -lt "$deadline" ]; do
            pending=$(sql "$db" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")
            if [ "$pending" = 0 ]; then t_done=$(now_ms); break; fi
            read -r -t 0.02 -u "$NAP_FD" || true
        done
        stored=$(sql "$db" "SELECT count(*) FROM webhook_events")
        [ "$stored" = "$TOTAL" ] || { log "only $stored of $TOTAL events stored"; t_done=0; }
    fi
    kill -INT "$wrk_pid" 2>/dev/null
    wait "$wrk_pid"
    c1=$(cpu_ticks "$SERVE_PID")
    kill -TERM "$SERVE_PID"
    wait "$SERVE_PID" 2>/dev/null
    if [ "$t_done" = 0 ]; then
        log "run sync=$sync conns=$conns did not finish within ${RUN_TIMEOUT}s"
        echo "| $sync | $conns | did not finish in ${RUN_TIMEOUT} s | | | | | | |" >> "$BT/rows.md"
        return
    fi
    local confirmed inbox non200 repeats errors reqs dur p50 p90 p99 p999 max
    confirmed=$(sql "$db" "SELECT count(*) FROM outbox WHERE state = 'confirmed'")
    inbox=$(sql "$db" "SELECT count(*) FROM inbox")
    non200=$(sed -n 's/^WEBHOOK_NON200 //p' "$out")
    repeats=$(sed -n 's/^WEBHOOK_REPEATS //p' "$out")
    errors=$(sed -n 's/^WEBHOOK_ERRORS //p' "$out")
    reqs=$(sed -n 's/^WEBHOOK_REQUESTS //p' "$out")
    dur=$(sed -n 's/^WEBHOOK_DURATION_US //p' "$out")
    p50=$(sed -n 's/^WEBHOOK_LAT_P50_US //p' "$out")
    p90=$(sed -n 's/^WEBHOOK_LAT_P90_US //p' "$out")
    p99=$(sed -n 's/^WEBHOOK_LAT_P99_US //p' "$out")
    p999=$(sed -n 's/^WEBHOOK_LAT_P99.9_US //p' "$out")
    max=$(sed -n 's/^WEBHOOK_LAT_MAX_US //p' "$out")
    local ok="yes"
    [ "$confirmed" = "$N" ] && [ "$inbox" = "$N_REPLY" ] && [ "${non200:-x}" = 0 ] && [ "${errors:-x}" = 0 ] || ok="NO"
    log "sync=$sync conns=$conns: stored in $(( t_stored - t0 )) ms, reconciled in $(( t_done - t0 )) ms;" \
        "confirmed $confirmed/$N, inbox $inbox/$N_REPLY, non-200 $non200, errors $errors, repeats $repeats"
    awk -v sync="$sync" -v conns="$conns" -v total="$TOTAL" -v ts="$(( t_stored - t0 ))" \
        -v td="$(( t_done - t0 ))" -v reqs="$reqs" -v dur="$dur" -v p50="$p50" -v p90="$p90" \
        -v p99="$p99" -v p999="$p999" -v max="$max" -v cpu="$(( c1 - c0 ))" -v tck="$CLK_TCK" \
        -v ok="$ok" 'BEGIN {
        printf "| %s | %d | %\047d | %\047d | %\047d | %.1f / %.1f / %.1f / %.1f / %.1f | %.0f ms | %s |\n",
            sync, conns, total / (ts / 1000), total / (td / 1000), reqs / (dur / 1e6),
            p50 / 1000, p90 / 1000, p99 / 1000, p999 / 1000, max / 1000,
            cpu / tck * 1000 / total * 1000, ok }' >> "$BT/rows.md"
}

: > "$BT/rows.md"
for sync in $SYNCS; do
    for conns in $CONNS; do
        log "run: synchronous=$sync, $conns connections"
        run "$sync" "$conns"
    done
done

# ---- report -----------------------------------------------------------------------------------
echo "Machine:"
echo
machine_rows "$BT"
echo "| outbox version | $("$OUTBOX_BIN" version 2>/dev/null | head -1) |"
echo "| wrk | $(wrk -v 2>&1 | head -1 | awk '{ print $1, $2 }'), $THREADS thread(s), on the same machine |"
echo "| Ed25519 verifications/s, one core (openssl speed) | $(openssl speed -seconds 2 ed25519 2>/dev/null | awk '/Ed25519/ { printf "%d", $NF }') |"
echo "| load average at start | $LOAD_AT_START (other work on the machine shares the CPUs) |"
echo "| date | $(date -u +%Y-%m-%dT%H:%MZ) |"
echo
echo "$TOTAL signed events per run ($N message_created echoes confirming accepted messages," \
     "$N_REPLY user replies going to the inbox), body ~$(head -1 "$BT/events.tsv" | cut -f2 | wc -c) bytes," \
     "each sent once over keep-alive connections:"
echo
echo "| synchronous | connections | stored/s | stored + reconciled/s | wrk req/s | latency p50 / p90 / p99 / p99.9 / max (ms) | serve CPU per 1,000 events | all confirmed, replies in inbox, no non-200 |"
echo "|---|---|---|---|---|---|---|---|"
cat "$BT/rows.md"

}
