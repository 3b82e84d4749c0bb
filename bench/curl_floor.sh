#!/usr/bin/env bash
# bench/curl_floor.sh: the ceiling libcurl itself puts on delivery (issue #3).
#
# Issue #3 asks `outbox serve` to drain at >= 0.8 x the mock Partoo's capacity as wrk measures it
# (32 keep-alive connections, bench/drain.sh "mock"). This script asks whether a client that
# does nothing but send, the way serve sends (build/curl_floor: libcurl multi-socket on
# libevent, no database), can reach that. Against one build/mock_partoo on 127.0.0.1
# (--rate-limit 0 --keep-bodies 0 --quiet, as bench/lib.sh starts it), each round runs, one at a
# time and each against a freshly reset mock:
#
#   wrk          wrk -t1 -cCONCURRENCY -dDURATION s with bench/wrk_post.lua (the reference)
#   curl new     curl_floor: a new easy handle per request, as serve does now
#   curl reuse   curl_floor -r: one easy handle per slot, re-added with a new body
#
# and prints a Markdown table on stdout (progress on stderr): requests/s, the ratio to the wrk
# figure of the same round, client CPU per request (wrk: /usr/bin/time user + system;
# curl_floor: its own getrusage over the run) and mock CPU per request (utime + stime from
# /proc/PID/stat, clock ticks of 1/CLK_TCK s), then the median of each over the rounds.
#
#   bench/curl_floor.sh
#   DURATION=3 REPEAT=1 bench/curl_floor.sh
#
# Environment: DURATION (10) seconds per run, REPEAT (3) rounds, CONCURRENCY (32), KINDS
# ("wrk new reuse": which clients run, in that order; without wrk the ratio column is empty),
# FLOOR_BIN (build/curl_floor), and bench/lib.sh's (BUILD, MOCK_BIN, BENCH_DIR, KEEP_TMP;
# lib.sh also insists on build/outbox, which this script does not run). Builds nothing:
# `cmake --build build --target curl_floor mock_partoo` first. Every run is bounded by
# `timeout`; every process it starts is killed on exit.
set -uo pipefail

# The whole script is one compound command, parsed before it runs: editing this file during a
# run cannot derail the run.
{

. "$(dirname "$0")/lib.sh"

DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
CONCURRENCY=${CONCURRENCY:-32}
FLOOR_BIN=${FLOOR_BIN:-$BUILD/curl_floor}
RUN_LIMIT_S=$((DURATION + 45)) # a run's bound: DURATION, then the last answers (or timeouts)

for _x in wrk /usr/bin/time timeout; do
    command -v "$_x" >/dev/null || { log "the $_x command is needed"; exit 1; }
done
[ -x "$FLOOR_BIN" ] ||
    { log "$FLOOR_BIN not found; cmake --build build --target curl_floor"; exit 1; }
# A private copy, like lib.sh's: a rebuild during the run must not change the client under test.
cp "$FLOOR_BIN" "$BT/bin/curl-floor-bench" || { log "cannot copy $FLOOR_BIN"; exit 1; }
FLOOR_BIN=$BT/bin/curl-floor-bench

# field NAME FILE: NAME=value from the RESULT line in FILE (empty when absent).
field() { sed -n "s/^RESULT .*\<$1=\([0-9]*\).*/\1/p" "$2" | head -1; }
# median_stdin: of the numbers on stdin, one a line; of an even count, the mean of the two
# middle ones (common.sh's median, of its arguments, takes the lower middle).
median_stdin() {
    sort -g | awk '{ v[NR] = $1 }
        END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# forget_pid PID: drops a finished process from PIDS (its number may be reused).
forget_pid() {
    local p keep=()
    for p in "${PIDS[@]:-}"; do
        [ -n "$p" ] && [ "$p" != "$1" ] && keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# run_bounded OUT CMD...: runs CMD in the background under `timeout` (recorded in PIDS so
# that an interrupted script kills it), stdout and stderr to OUT; returns its status.
run_bounded() {
    local out=$1 pid rc
    shift
    timeout -k 5 "$RUN_LIMIT_S" "$@" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait "$pid"
    rc=$?
    forget_pid "$pid"
    return $rc
}

# run_client KIND ROUND: one run against a reset mock. Sets REQ, RPS, CLIENT_CPU_US (total µs,
# empty when unknown), MOCK_CPU_US and NOTES; RPS=0 when the run failed.
run_client() {
    local kind=$1 round=$2 out=$BT/client.out t0 t1 dur
    ensure_mock
    mock_reset
    t0=$(cpu_ticks "$MOCK_PID")
    case $kind in
    wrk)
        WRK_RUN="wrk$round" run_bounded "$out" /usr/bin/time -f "TIME %U %S" -o "$BT/time.out" \
            wrk -t1 -c"$CONCURRENCY" -d"${DURATION}s" --timeout 10s \
            -s "$BENCH_ROOT/bench/wrk_post.lua" "http://127.0.0.1:$MOCK_PORT/" ;;
    new) run_bounded "$out" "$FLOOR_BIN" -p "$MOCK_PORT" -c "$CONCURRENCY" -d "$DURATION" ;;
    reuse) run_bounded "$out" "$FLOOR_BIN" -p "$MOCK_PORT" -c "$CONCURRENCY" -d "$DURATION" -r ;;
    esac
    t1=$(cpu_ticks "$MOCK_PID")
    REQ=$(field requests "$out")
    dur=$(field duration_us "$out")
    if [ -z "$REQ" ] || [ -z "$dur" ] || [ "$REQ" -eq 0 ]; then
        log "$kind failed: $(tail -3 "$out")"
        REQ=0 RPS=0 CLIENT_CPU_US="" MOCK_CPU_US="" NOTES="failed"
        return
    fi
    RPS=$(fmt "$REQ / ($dur / 1e6)")
    MOCK_CPU_US=$(fmt "($t1 - $t0) * 1e6 / $CLK_TCK")
    if [ "$kind" = wrk ]; then
        CLIENT_CPU_US=$(awk '/^TIME / { printf "%.0f", ($2 + $3) * 1e6 }' "$BT/time.out")
        NOTES="non-2xx $(field non2xx "$out"), socket errors $(( $(field connect "$out") + \
$(field read "$out") + $(field write "$out") + $(field timeout "$out") ))"
    else
        CLIENT_CPU_US=$(field cpu_us "$out")
        NOTES="non-2xx $(field non2xx "$out"), errors $(field errors "$out"),\
 $(field connects "$out") connections"
    fi
    NOTES="$NOTES; mock accepted $(mock_stat unique) unique"
}

start_mock

echo "## libcurl's ceiling on delivery (bench/curl_floor.sh)"
echo
machine_table
echo
echo "$REPEAT rounds of wrk, curl_floor (new handle per request) and curl_floor -r (reused"
echo "handles), ${DURATION} s each, $CONCURRENCY requests in flight, one mock (single-threaded) on"
echo "127.0.0.1, each run against a freshly reset mock. Ratio: requests/s over the wrk figure of"
echo "the same round."
echo
echo "| client | run | requests/s | ratio to wrk | client CPU µs/request" \
    "| mock CPU µs/request | notes |"
echo "|---|---:|---:|---:|---:|---:|---|"

declare -A LABEL=([wrk]="wrk -t1 -c$CONCURRENCY" [new]="curl_floor (new handles)"
    [reuse]="curl_floor -r (reused handles)")
declare -A ALL_RPS ALL_RATIO ALL_CCPU ALL_MCPU # kind -> newline-separated values over the rounds
KINDS=${KINDS:-wrk new reuse}
for round in $(seq 1 "$REPEAT"); do
    WRK_RPS=0
    for kind in $KINDS; do
        log "round $round/$REPEAT: ${LABEL[$kind]}, ${DURATION} s"
        run_client "$kind" "$round"
        [ "$kind" = wrk ] && WRK_RPS=$RPS
        ratio=-
        [ "$WRK_RPS" -gt 0 ] && [ "$RPS" -gt 0 ] && ratio=$(fmt "$RPS / $WRK_RPS" 2)
        ccpu=- mcpu=-
        [ -n "$CLIENT_CPU_US" ] && ccpu=$(fmt "$CLIENT_CPU_US / $REQ" 1)
        [ -n "$MOCK_CPU_US" ] && mcpu=$(fmt "$MOCK_CPU_US / $REQ" 1)
        echo "| ${LABEL[$kind]} | $round | $RPS | $ratio | $ccpu | $mcpu | $NOTES |"
        [ "$RPS" -gt 0 ] || continue
        ALL_RPS[$kind]+="$RPS"$'\n'
        [ "$ratio" != - ] && ALL_RATIO[$kind]+="$ratio"$'\n'
        [ "$ccpu" != - ] && ALL_CCPU[$kind]+="$ccpu"$'\n'
        ALL_MCPU[$kind]+="$mcpu"$'\n'
    done
done
echo
echo "Medians over the rounds (issue #3's target is a ratio of 0.8):"
echo
echo "| client | requests/s | ratio to wrk | client CPU µs/request | mock CPU µs/request |"
echo "|---|---:|---:|---:|---:|"
m() { printf '%s' "$1" | median_stdin; }
for kind in $KINDS; do
    echo "| ${LABEL[$kind]} | $(m "${ALL_RPS[$kind]:-}") | $(m "${ALL_RATIO[$kind]:-}") |" \
        "$(m "${ALL_CCPU[$kind]:-}") | $(m "${ALL_MCPU[$kind]:-}") |"
done
echo
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (nproc = $(nproc))."
exit 0
}
