#!/usr/bin/env bash
# bench/purge_latency.sh: do purge and retention stall the producers? (docs/benchmarks.md,
# "Purge and retention"; target of issue 12: 0 x 503 and p99 < 50 ms at 50 POST/s while
# 1,000,000 delivered messages are deleted).
#
# 1. A database of N (1,000,000) delivered messages: bench/lib.sh's template of N queued
#    messages, drained by serve into the mock on a read-only channel (accepted is terminal
#    there, SPEC §10), so every message has the rows a real delivery leaves: two
#    transitions, an attempt and three audit rows. Kept in BENCH_TEMPLATES when set.
# 2. Variants, each on a fresh copy, with producers POSTing RATE (50) messages/s to serve's
#    API (bench/purge_producer.py, 4 keep-alive connections, fixed schedule; latency is
#    answer time - due time):
#      cli     serve runs with retention off; after WARM_S, `outbox purge --older-than 0s`
#      serve   serve runs with `retention = 1s`; its hourly job's first pass starts 60 s
#              after start-up, in the event loop
#    Each prints one row: requests during the purge, 503s, other errors, p50/p99/max
#    latency, and the purge's own duration; plus a row for the WARM_S before it.
#
# Each copy is synced and left SETTLE_S (10) s before serve starts. RESULTS_DIR keeps the
# producers' per-request files and serve's log.
#
#   bench/purge_latency.sh
#   N=200000 VARIANTS=cli bench/purge_latency.sh
#
# Environment: see bench/lib.sh. Only 127.0.0.1; every process it starts is killed on exit.
set -uo pipefail
{

. "$(dirname "$0")/lib.sh"

N=${N:-1000000}
RATE=${RATE:-50}
WARM_S=${WARM_S:-10}
VARIANTS=${VARIANTS:-cli serve}
PRODUCER=$BENCH_ROOT/bench/purge_producer.py
command -v python3 >/dev/null || { log "python3 is needed"; exit 1; }

# copy_db SRC DST: a copy, flushed to the disk before serve starts, so that the kernel's
# writeback of a gigabyte of fresh page cache does not slow every fsync of the run.
copy_db() {
    cp "$1" "$2" && sync "$2"
    sleep "${SETTLE_S:-10}"
}
# keep FILE NAME: with RESULTS_DIR set, keeps a copy of a run's file there.
keep() { [ -n "${RESULTS_DIR:-}" ] && mkdir -p "$RESULTS_DIR" && cp "$1" "$RESULTS_DIR/$2"; return 0; }

count_accepted() { sql "$1" "SELECT count(*) FROM outbox WHERE state = 'accepted'"; }

# delivered_db: path of a database of N messages, all accepted on the read-only channel.
delivered_db() {
    local db=$BT/delivered-$N.db t0 q
    if [ -n "${BENCH_TEMPLATES:-}" ]; then
        db=$BENCH_TEMPLATES/delivered-$N-$("$OUTBOX_BIN" version | cksum | cut -d' ' -f1).db
    fi
    if [ ! -s "$db" ]; then
        q=$(fresh_db "$N" building-delivered)
        t0=$(now_ms)
        log "draining $N messages into the mock (read-only channel: accepted is final)"
        start_serve "$q" --readonly-channels bench-ch --retention 0 --max-inflight 32 \
            --synchronous normal
        wait_until 3600 '[ "$(count_accepted "$q")" = "$N" ]' ||
            { log "the drain did not finish"; exit 1; }
        stop_serve
        sql "$q" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
        rm -f "$q-wal" "$q-shm" "$q.lock"
        mv "$q" "$db"
        log "$N delivered messages ready in $(( $(now_ms) - t0 )) ms"
    fi
    echo "$db"
}

# start_producers DB: sets PROD_PID; writes $BT/prod.tsv once $BT/stop exists.
start_producers() {
    local port
    port=$(serve_api_port "$1") || { log "no API port"; exit 1; }
    rm -f "$BT/stop" "$BT/prod.tsv"
    python3 "$PRODUCER" send "$port" "$RATE" "$BT/stop" "$BT/prod.tsv" 4 &
    PROD_PID=$!
    PIDS+=("$PROD_PID")
}
stop_producers() {
    touch "$BT/stop"
    wait "$PROD_PID"
}

header() {
    echo
    echo "| variant | requests | 503 | other errors | p50 ms | p99 ms | max ms |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
}

run_cli() {
    local db t_warm t0 t1 out
    db=$BT/cli.db
    copy_db "$SRC" "$db"
    start_serve "$db" --retention 0 --log-level info
    start_producers "$db"
    t_warm=$(now_ms)
    sleep "$WARM_S"
    log "cli: outbox purge --older-than 0s over $N delivered messages"
    t0=$(now_ms)
    out=$("$OUTBOX_BIN" purge --db "$db" --older-than 0s --readonly-channels bench-ch --json)
    t1=$(now_ms)
    sleep 2
    stop_producers
    stop_serve
    keep "$BT/prod.tsv" cli-producers.tsv
    log "cli: $out"
    python3 "$PRODUCER" report "before the purge ($WARM_S s)" "$BT/prod.tsv" "$t_warm" "$t0"
    python3 "$PRODUCER" report "during outbox purge" "$BT/prod.tsv" "$t0" "$t1"
    CLI_LINE="outbox purge: $(( t1 - t0 )) ms; $out"
}

run_serve() {
    local db t_start t0 t1 dur line
    db=$BT/serve.db
    copy_db "$SRC" "$db"
    : >"$BT/serve.log"
    t_start=$(now_ms)
    start_serve "$db" --retention 1s --readonly-channels bench-ch --log-level info
    start_producers "$db"
    log "serve: waiting for the first retention pass (60 s after start-up)"
    wait_until 120 'grep -q "retention pass started" "$BT/serve.log"' ||
        { log "no retention pass started"; exit 1; }
    t0=$(now_ms)
    wait_until 3600 'grep -q "retention pass done" "$BT/serve.log"' ||
        { log "the retention pass did not end"; exit 1; }
    t1=$(now_ms)
    sleep 2
    stop_producers
    stop_serve
    keep "$BT/prod.tsv" serve-producers.tsv
    keep "$BT/serve.log" serve.log
    line=$(grep "retention pass done" "$BT/serve.log" | tail -1)
    dur=$(printf '%s' "$line" | sed -n 's/.*duration_ms=\([0-9]*\).*/\1/p')
    python3 "$PRODUCER" report "before the pass ($(( (t0 - t_start) / 1000 )) s)" "$BT/prod.tsv" "$t_start" "$t0"
    python3 "$PRODUCER" report "during serve's retention" "$BT/prod.tsv" "$t0" "$t1"
    SERVE_LINE="serve retention: ${dur} ms; ${line#*msg=}"
}

start_mock
SRC=$(delivered_db)
echo "## Purge and retention under producer load ($N delivered messages, $RATE POST/s)"
echo
machine_table
CLI_LINE= SERVE_LINE=
header
for v in $VARIANTS; do
    case $v in
    cli) run_cli ;;
    serve) run_serve ;;
    *) log "unknown variant $v" ;;
    esac
done
echo
[ -n "$CLI_LINE" ] && echo "- $CLI_LINE"
[ -n "$SERVE_LINE" ] && echo "- $SERVE_LINE"
exit 0
}
