#!/usr/bin/env bash
# bench/drain.sh: the delivery benchmarks of docs/benchmarks.md ("## Delivery").
#
# Measures `outbox serve` draining a SQLite outbox into build/mock_partoo on 127.0.0.1, both
# unthrottled (--rate-limit 0 on each side), and prints Markdown tables on stdout (progress on
# stderr). Builds nothing: run `make build` first. Sections (SECTIONS, default all of them):
#
#   mock    mock capacity: wrk, 32 keep-alive connections, serve-like POST bodies
#   drain   N_DRAIN (100,000) queued messages, --max-inflight 32, synchronous full and normal
#   scale   N_SMALL (1,000) queued, whole drain (REPEAT = 3 runs, median) vs N_BIG (1,000,000)
#           queued, rate over the first BIG_SAMPLE (50,000) acceptances or BIG_TIMEOUT (180) s
#           (BIG_REPEAT = 1 run), interleaved; peak RSS (VmHWM) of serve. Both queues spread
#           over the same SCALE_CONVS (100) conversations, so that only the queue's length
#           differs: with the drain section's 10,000 conversations, 1,000 messages would be
#           1,000 lone heads and never promote a successor, which the 1,000,000 queue does for
#           every message
#   idle    CPU (utime + stime) of serve with an empty queue over IDLE_S (60) seconds
#   fsync   fsync/fdatasync calls per delivered message (strace -c) for FSYNC_N (5,000)
#           messages, synchronous full and normal, minus a start/stop run with no message
#   latency enqueue-to-request latency of single messages at light load: LAT_N (300) POSTs to
#           the producer API (one message each, LAT_CONVS (5) conversations) at LAT_RATE (20)
#           per second from one client (bench/latency_client.py), serve and mock unthrottled;
#           then LAT_PACED_N (90) at LAT_PACED_RATE (3) per second with serve's default pacing
#           (--rate-limit 290/min, burst 1) and the mock's default limit (300/min; LAT_PACED_N=0
#           skips it). Needs python3
#           and a build with the producer API
#   profile (only when named) where the time goes while draining N_PROFILE (100,000): plans and
#           timings of the claim queries, strace -c -w and perf record over PROFILE_S (8) s
#
# Rates are messages/s from the first to the last acceptance as recorded in the database
# ((count - 1) / (max(accepted_at_ms) - min(accepted_at_ms))); "wall" includes start-up.
# Every drain has its own copy of a template database, and bounded time (DRAIN_TIMEOUT).
#
#   bench/drain.sh
#   SECTIONS="drain idle" N_DRAIN=20000 bench/drain.sh
#   SECTIONS=profile bench/drain.sh
#
# Environment: see bench/lib.sh (BUILD, OUTBOX_BIN, MOCK_BIN, BENCH_DIR, KEEP_TMP) and the
# defaults below. Only talks to 127.0.0.1; every process it starts is killed on exit.
set -uo pipefail

# The whole script is one compound command, parsed before it runs: editing this file during a
# run cannot derail the run.
{

. "$(dirname "$0")/lib.sh"

SECTIONS=${SECTIONS:-mock drain scale idle fsync latency}
INFLIGHT=${INFLIGHT:-32}
WRK_DURATION=${WRK_DURATION:-10}
N_DRAIN=${N_DRAIN:-100000}
N_SMALL=${N_SMALL:-1000}
N_BIG=${N_BIG:-1000000}
BIG_SAMPLE=${BIG_SAMPLE:-50000}
BIG_TIMEOUT=${BIG_TIMEOUT:-180}
REPEAT=${REPEAT:-3}
BIG_REPEAT=${BIG_REPEAT:-1}
SCALE_CONVS=${SCALE_CONVS:-100}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
IDLE_S=${IDLE_S:-60}
FSYNC_N=${FSYNC_N:-5000}
LAT_N=${LAT_N:-300}
LAT_RATE=${LAT_RATE:-20}
LAT_CONVS=${LAT_CONVS:-5}
LAT_PACED_N=${LAT_PACED_N:-90}
LAT_PACED_RATE=${LAT_PACED_RATE:-3}

want() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

MOCK_CAP=""          # requests/s, from the mock section
declare -A RATE      # label -> messages/s
declare -A HWM       # label -> kB
declare -A CPUPM     # label -> µs of serve CPU per accepted message
SUMMARY=$BT/summary.md
: > "$SUMMARY"

start_mock

echo "## Delivery benchmarks (bench/drain.sh)"
echo
machine_table
echo

# ---- 1. mock capacity ----------------------------------------------------------------------

# wrk_run THREADS: one wrk run against a reset mock; prints a table row, sets WRK_RPS.
wrk_run() {
    local t=$1 out res req dur rps accepted
    mock_reset
    out=$(WRK_RUN="wrk$t" wrk -t"$t" -c"$INFLIGHT" -d"${WRK_DURATION}s" --timeout 10s \
        -s "$BENCH_ROOT/bench/wrk_post.lua" "http://127.0.0.1:$MOCK_PORT/" 2>&1)
    res=$(echo "$out" | sed -n 's/^RESULT //p')
    [ -n "$res" ] || { log "wrk failed: $out"; WRK_RPS=0; return; }
    eval "$(echo "$res" | tr ' ' '\n' | sed 's/^/W_/')"
    rps=$(awk -v r="$W_requests" -v d="$W_duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
    accepted=$(mock_stat unique)
    echo "| wrk -t$t -c$INFLIGHT -d${WRK_DURATION}s | $(commas "$W_requests") | $(commas "$rps") |" \
        "$(fmt "$W_p50_us / 1000" 2) / $(fmt "$W_p99_us / 1000" 2) ms |" \
        "$(commas "$accepted") unique accepted; non-2xx $W_non2xx, socket errors" \
        "$((W_connect + W_read + W_write + W_timeout)) |"
    WRK_RPS=$rps
}

if want mock; then
    command -v wrk >/dev/null || { log "wrk is needed for the mock section"; exit 1; }
    ensure_mock
    log "mock capacity (wrk, ${WRK_DURATION}s x 2)"
    echo "### Mock capacity"
    echo
    echo "| client | requests | requests/s | latency p50 / p99 | notes |"
    echo "|---|---:|---:|---:|---|"
    wrk_run 1
    MOCK_CAP=$WRK_RPS
    wrk_run 2
    [ "$WRK_RPS" -gt "$MOCK_CAP" ] && MOCK_CAP=$WRK_RPS
    echo
    echo "Reference capacity for the drains below: the better of the two, $(commas "$MOCK_CAP") requests/s."
    echo "The mock is single-threaded; with nproc = $(nproc) the client competes with it for the CPUs,"
    echo "as serve does."
    echo
fi

# ---- drains ----------------------------------------------------------------------------------

DRAIN_HEADER="| run | queued | stop after | accepted | first→last acceptance | **rate (msg/s)** | vs mock | wall (s) | start→first acceptance | serve CPU (s) | serve CPU per message | mock CPU per message | serve VmHWM | other attempts | load avg (1 min) before |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"

# run_drain LABEL N STOP_AT TIMEOUT_S [serve options]: one drain; prints a table row and sets
# RATE[LABEL], HWM[LABEL].
run_drain() {
    local label=$1 n=$2 stop_at=$3 timeout_s=$4 db t0 t_end acc=0 timed_out=0 aborted=0 load \
        mt0 sticks mticks hwm row cnt span first other rate vs wall
    shift 4
    db=$(fresh_db "$n" "drain-$label" "${DRAIN_CONVS:-10000}")
    [ -s "$db" ] || { log "drain $label: no database"; return 1; }
    ensure_mock
    mock_reset
    mt0=$(cpu_ticks "$MOCK_PID")
    log "drain $label: $n queued, until $stop_at accepted (at most ${timeout_s}s)"
    load=$(cut -d' ' -f1 /proc/loadavg)
    t0=$(now_ms)
    start_serve "$db" --max-inflight "$INFLIGHT" "$@"
    while :; do
        if ! kill -0 "$MOCK_PID" 2>/dev/null || ! kill -0 "$SERVE_CHILD" 2>/dev/null; then
            log "drain $label: $(kill -0 "$MOCK_PID" 2>/dev/null && echo serve || echo the mock) died; run aborted"
            aborted=1
            break
        fi
        acc=$(mock_stat unique)
        [ "${acc:-0}" -ge "$stop_at" ] && break
        if [ $(( $(now_ms) - t0 )) -ge $(( timeout_s * 1000 )) ]; then
            timed_out=1
            break
        fi
        sleep 0.2
    done
    if [ "$aborted" = 1 ]; then
        echo "| $label | $(commas "$n") | $(commas "$stop_at") | aborted: a process died after $(( ($(now_ms) - t0) / 1000 )) s | | | | | | | | | | | $load |"
        stop_serve
        RATE[$label]=0
        HWM[$label]=0
        CPUPM[$label]=0
        return 1
    fi
    if [ "$stop_at" -ge "$n" ] && [ "$timed_out" = 0 ]; then
        wait_until 60 '[ "$(sql "$db" "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge "$n" ]' ||
            log "drain $label: the database did not reach $n accepted"
    fi
    t_end=$(now_ms)
    hwm=$(hwm_kb "$SERVE_CHILD")
    sticks=$(cpu_ticks "$SERVE_CHILD") # start-up included (idle section: a few hundredths of a s)
    mticks=$(( $(cpu_ticks "$MOCK_PID") - mt0 ))
    stop_serve
    row=$(sql "$db" "SELECT count(*), coalesce(max(accepted_at_ms) - min(accepted_at_ms), 0),
                        coalesce(min(accepted_at_ms), 0) FROM outbox WHERE state = 'accepted'")
    IFS='|' read -r cnt span first <<< "$row"
    other=$(sql "$db" "SELECT count(*) FROM attempts WHERE outcome <> 'accepted'")
    rate=$(awk -v c="$cnt" -v s="$span" 'BEGIN { printf "%.0f", (s > 0 ? (c - 1) * 1000 / s : 0) }')
    vs="-"
    [ -n "$MOCK_CAP" ] && [ "$MOCK_CAP" -gt 0 ] && vs=$(fmt "$rate / $MOCK_CAP" 2)
    wall=$(fmt "($t_end - $t0) / 1000" 1)
    RATE[$label]=$rate
    HWM[$label]=$hwm
    CPUPM[$label]=$(fmt "($cnt > 0 ? $sticks * 1e6 / $CLK_TCK / $cnt : 0)")
    echo "| $label | $(commas "$n") | $(commas "$stop_at")$([ "$timed_out" = 1 ] && echo " (timed out at ${timeout_s}s)") |" \
        "$(commas "$cnt") | $(fmt "$span / 1000" 2) s | **$(commas "$rate")** | $vs | $wall |" \
        "$(( first > 0 ? first - t0 : -1 )) ms | $(ticks_to_s "$sticks") |" \
        "$(fmt "($cnt > 0 ? $sticks * 1e6 / $CLK_TCK / $cnt : 0)") µs | $(fmt "($cnt > 0 ? $mticks * 1e6 / $CLK_TCK / $cnt : 0)") µs |" \
        "$(fmt "$hwm / 1024" 1) MB | $other | $load |"
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
}


if want drain; then
    echo "### Unthrottled drain of $(commas "$N_DRAIN") messages (--max-inflight $INFLIGHT)"
    echo
    echo "$DRAIN_HEADER"
    run_drain "full" "$N_DRAIN" "$N_DRAIN" "$DRAIN_TIMEOUT"
    run_drain "normal" "$N_DRAIN" "$N_DRAIN" "$DRAIN_TIMEOUT" --synchronous normal
    echo
    echo "Rows: \`full\` is the default (\`synchronous = full\`), \`normal\` adds \`--synchronous normal\`."
    echo
    for l in full normal; do
        if [ -n "$MOCK_CAP" ] && [ "$MOCK_CAP" -gt 0 ]; then
            r=$(fmt "${RATE[$l]} / $MOCK_CAP" 2)
            echo "| drain of $(commas "$N_DRAIN"), synchronous=$l, ≥ 0.8 × mock capacity | $(commas "${RATE[$l]}") msg/s = $r × $(commas "$MOCK_CAP") | $(awk -v r="$r" 'BEGIN { print ((r >= 0.8) ? "met" : "**missed**") }') |" >> "$SUMMARY"
        fi
    done
fi

if want scale; then
    echo "### $(commas "$N_SMALL") vs $(commas "$N_BIG") messages queued, $(commas "$SCALE_CONVS") conversations each"
    echo
    DRAIN_CONVS=$SCALE_CONVS
    echo "$DRAIN_HEADER"
    small=() big=() small_cpu=() big_cpu=() big_hwm=0
    # Interleaved (small-1, big-1, small-2, big-2, ...) so that both see the same machine.
    for i in $(seq 1 "$(( REPEAT > BIG_REPEAT ? REPEAT : BIG_REPEAT ))"); do
        if [ "$i" -le "$REPEAT" ]; then
            run_drain "small-$i" "$N_SMALL" "$N_SMALL" "$DRAIN_TIMEOUT"
            small+=("${RATE[small-$i]}")
            small_cpu+=("${CPUPM[small-$i]}")
        fi
        if [ "$i" -le "$BIG_REPEAT" ]; then
            run_drain "big-$i" "$N_BIG" "$BIG_SAMPLE" "$BIG_TIMEOUT"
            big+=("${RATE[big-$i]}")
            big_cpu+=("${CPUPM[big-$i]}")
            [ "${HWM[big-$i]}" -gt "$big_hwm" ] && big_hwm=${HWM[big-$i]}
        fi
    done
    unset DRAIN_CONVS
    echo
    RS=$(median "${small[@]}")
    RB=$(median "${big[@]}")
    CS=$(median "${small_cpu[@]}")
    CB=$(median "${big_cpu[@]}")
    d=$(awk -v a="$RS" -v b="$RB" 'BEGIN { printf "%.0f", (a > 0 ? (b - a) * 100 / a : 0) }')
    dc=$(awk -v a="$CS" -v b="$CB" 'BEGIN { printf "%.0f", (a > 0 ? (b - a) * 100 / a : 0) }')
    echo "Medians: $(commas "$N_SMALL") queued (whole drain, $REPEAT runs) $(commas "$RS") msg/s and $CS µs of" \
        "serve CPU per message; $(commas "$N_BIG") queued (first acceptances, $BIG_REPEAT run(s))" \
        "$(commas "$RB") msg/s ($d %) and $CB µs per message ($dc %)."
    echo
    echo "| rate with $(commas "$N_BIG") queued within 10 % of $(commas "$N_SMALL") queued | $(commas "$RB") vs $(commas "$RS") msg/s ($d %); serve CPU per message $CB vs $CS µs ($dc %) | $(awk -v d="$d" 'BEGIN { print ((d <= 10 && d >= -10) ? "met" : "**missed**") }') |" >> "$SUMMARY"
    echo "| peak RSS (VmHWM) of serve with $(commas "$N_BIG") queued < 30 MB | $(fmt "$big_hwm / 1024" 1) MB | $(awk -v k="$big_hwm" 'BEGIN { print ((k < 30 * 1024) ? "met" : "**missed**") }') |" >> "$SUMMARY"
fi

# ---- idle CPU ---------------------------------------------------------------------------------

if want idle; then
    log "idle serve for ${IDLE_S}s"
    db=$(fresh_db 0 idle)
    start_serve "$db" --max-inflight "$INFLIGHT"
    sleep 2
    t0=$(cpu_ticks "$SERVE_CHILD")
    startup=$(ticks_to_s "$t0")
    s0=$(now_ms)
    sleep "$IDLE_S"
    t1=$(cpu_ticks "$SERVE_CHILD")
    s1=$(now_ms)
    hwm=$(hwm_kb "$SERVE_CHILD")
    stop_serve
    cpu=$(ticks_to_s $((t1 - t0)))
    echo "### Idle serve (empty queue)"
    echo
    echo "| interval | CPU (utime + stime) | VmHWM | CPU of the first 2 s (start-up) |"
    echo "|---:|---:|---:|---:|"
    echo "| $(fmt "($s1 - $s0) / 1000" 1) s | $cpu s | $(fmt "$hwm / 1024" 1) MB | $startup s |"
    echo
    echo "(/proc/PID/stat, $CLK_TCK ticks per second: the resolution is $(fmt "1 / $CLK_TCK" 2) s.)"
    echo
    echo "| idle serve CPU over ${IDLE_S} s < 0.5 s | $cpu s | $(awk -v c="$cpu" 'BEGIN { print ((c < 0.5) ? "met" : "**missed**") }') |" >> "$SUMMARY"
fi

# ---- fsyncs per message -----------------------------------------------------------------------

# fsync_run N [serve options]: total fsync + fdatasync calls of a serve that drains N messages.
fsync_run() {
    local n=$1 db out
    shift
    db=$(fresh_db "$n" "fsync")
    ensure_mock
    mock_reset
    out=$BT/strace.out
    rm -f "$out"
    STRACE_OUT=$out start_serve "$db" --max-inflight "$INFLIGHT" "$@"
    if [ "$n" -gt 0 ]; then
        wait_until "$DRAIN_TIMEOUT" '[ "$(mock_stat unique)" -ge '"$n"' ]' ||
            log "fsync run: not all $n messages were delivered in time"
        wait_until 60 '[ "$(sql "$db" "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge '"$n"' ]'
    else
        sleep 1
    fi
    stop_serve
    awk '$NF == "fsync" || $NF == "fdatasync" || $NF == "sync_file_range" { s += $4 } END { print s + 0 }' "$out"
}

if want fsync; then
    if command -v strace >/dev/null; then
        echo "### fsyncs per delivered message (strace -c, $(commas "$FSYNC_N") messages)"
        echo
        echo "| synchronous | fsync + fdatasync, drain of $(commas "$FSYNC_N") | same, start/stop with an empty queue | **per message** |"
        echo "|---|---:|---:|---:|"
        for mode in full normal; do
            log "fsync count, synchronous=$mode"
            base=$(fsync_run 0 --synchronous "$mode")
            total=$(fsync_run "$FSYNC_N" --synchronous "$mode")
            echo "| $mode | $total | $base | **$(fmt "($total - $base) / $FSYNC_N" 3)** |"
        done
        echo
        echo "(serve runs under \`strace --seccomp-bpf -f -c -e trace=fsync,fdatasync,sync_file_range\`;"
        echo "the start/stop run counts what start-up, migration check and shutdown cost.)"
        echo
    else
        echo "strace is not installed: fsyncs per message not measured."
        echo
    fi
fi

# ---- enqueue-to-request latency ---------------------------------------------------------------

# latency_run LABEL N RATE MOCK_LIMIT [serve options]: N single POSTs at RATE/s to a serve on an
# empty database (default synchronous, full), the mock limited to MOCK_LIMIT requests/min (0 =
# unlimited); prints three table rows (bench/latency_client.py report) and leaves the p99s in
# $BT/lat-LABEL.p99.
latency_run() {
    local label=$1 n=$2 rate=$3 mock_limit=$4 db port load uniq dups acc other delivered f
    shift 4
    f=$BT/lat-$label
    db=$(fresh_db 0 "lat-$label")
    ensure_mock
    mock_reset
    if [ "$mock_limit" != 0 ]; then
        curl -sS --max-time 10 -X POST -H 'Content-Type: application/json' \
            -d "{\"rate_limit\":$mock_limit}" "http://127.0.0.1:$MOCK_PORT/_mock/faults" >/dev/null
    fi
    start_serve "$db" "$@"
    port=$(serve_api_port "$db")
    if [ -z "$port" ]; then
        log "latency $label: no producer API port in service_state (a build without the API?)"
        stop_serve
        echo "| $label | not run: no producer API | | | | | | | | |"
        return 1
    fi
    sleep 1 # start-up work (reconcile, first state publication) out of the way
    load=$(cut -d' ' -f1 /proc/loadavg)
    log "latency $label: $n single messages at $rate/s to 127.0.0.1:$port"
    python3 "$BENCH_ROOT/bench/latency_client.py" send "$port" "$n" "$rate" "lat-$label" \
        "$LAT_CONVS" "$f.client" || log "latency $label: not every POST was answered 202 (new)"
    wait_until 30 '[ "$(mock_stat unique)" -ge '"$n"' ]' ||
        log "latency $label: the mock did not receive all $n messages in 30 s"
    wait_until 30 '[ "$(sql "$db" "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge '"$n"' ]' ||
        log "latency $label: the database did not reach $n accepted in 30 s"
    stop_serve
    uniq=$(mock_stat unique)
    dups=$(mock_stat duplicates)
    acc=$(sql "$db" "SELECT count(*) FROM outbox WHERE state = 'accepted'")
    other=$(sql "$db" "SELECT count(*) FROM attempts WHERE outcome <> 'accepted'")
    delivered=no
    [ "$uniq" = "$n" ] && [ "$acc" = "$n" ] && delivered=yes
    [ "$other" = 0 ] && [ "$dups" = 0 ] || delivered="$delivered ($other other attempts, $dups duplicates)"
    sql "$db" "SELECT o.external_message_id, o.created_at_ms, a.started_at_ms FROM outbox o
               JOIN attempts a ON a.id = (SELECT min(id) FROM attempts WHERE message_id = o.id)" > "$f.rows"
    mock_get received > "$f.mock"
    python3 "$BENCH_ROOT/bench/latency_client.py" report "$label" "$rate" "$delivered" "$load" \
        "$f.client" "$f.rows" "$f.mock" "$f.p99"
    mock_reset # back to the command line's settings (unlimited)
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
}

if want latency; then
    command -v python3 >/dev/null || { log "python3 is needed for the latency section"; exit 1; }
    echo "### Enqueue-to-request latency, single messages at light load"
    echo
    echo "| run | measure | messages | rate | p50 (ms) | p90 (ms) | **p99 (ms)** | max (ms) | all delivered | load avg (1 min) before |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---|---:|"
    latency_run unpaced "$LAT_N" "$LAT_RATE" 0
    [ "$LAT_PACED_N" -gt 0 ] && latency_run paced "$LAT_PACED_N" "$LAT_PACED_RATE" 300 --rate-limit 290/min
    echo
    echo "One client process POSTs one message per request over one keep-alive connection, on a"
    echo "fixed schedule, round-robin over $LAT_CONVS conversations; serve runs on an empty database with"
    echo "the default \`synchronous = full\` and its default \`max_inflight\`. \`unpaced\`: \`--rate-limit 0\` on"
    echo "serve and on the mock. \`paced\`: serve's default pacing (\`--rate-limit 290/min\`, burst 1) and"
    echo "the mock's default limit (300/min). Measures: \`created_at\` (taken when serve starts the"
    echo "transaction that stores the message, before its commit) to \`started_at\` of the first"
    echo "attempt (just before the request to Partoo is handed to curl), both from the database;"
    echo "the client's wall clock just before writing the POST, or just after reading the 202's"
    echo "headers, to the mock's arrival time of the request (\`GET /_mock/received\`); all on"
    echo "CLOCK_REALTIME of this machine, in whole ms (the mock and the database keep ms), so ±1 ms."
    echo "\"202 read → mock received\" can be 0 or negative: serve may start the request before the"
    echo "client has read its reply. Percentiles are nearest-rank (below 100 messages p99 is the"
    echo "maximum). With pacing and burst 1, two"
    echo "requests are never closer than 60/290 s ≈ 207 ms, so a message that follows the previous"
    echo "request more closely waits for the token by design; at a steady $LAT_PACED_RATE/s that happens only"
    echo "when the client's or serve's timing jitters."
    echo
    if [ -s "$BT/lat-unpaced.p99" ]; then
        read -r p_db p_sent p_ack < "$BT/lat-unpaced.p99"
        echo "| enqueue-to-request latency p99 < 20 ms (single messages, $LAT_RATE/s, unpaced) | p99 $p_db ms (database), $p_sent ms (POST sent → mock), $p_ack ms (202 → mock) | $(awk -v a="$p_db" -v b="$p_sent" -v c="$p_ack" 'BEGIN { print ((a < 20 && b < 20 && c < 20) ? "met" : "**missed**") }') |" >> "$SUMMARY"
    fi
    if [ -s "$BT/lat-paced.p99" ]; then
        read -r p_db p_sent p_ack < "$BT/lat-paced.p99"
        echo "| same with serve's default pacing (290/min, $LAT_PACED_RATE/s) | p99 $p_db ms (database), $p_sent ms (POST sent → mock) | (not a target: pacing may delay by design) |" >> "$SUMMARY"
    fi
fi

# ---- profile (not in the default SECTIONS) -------------------------------------------------------

# Where serve's time goes while it drains N_PROFILE messages: the claim query's plan and cost,
# the syscalls (strace -c -w) and the CPU profile (perf record --call-graph dwarf) over PROFILE_S
# seconds each, one after the other on two fresh copies.
N_PROFILE=${N_PROFILE:-100000}
PROFILE_S=${PROFILE_S:-8}

profile_window() { # profile_window KIND DB: attaches KIND (perf|strace) to a draining serve
    local kind=$1 db=$2 a0 a1
    ensure_mock
    mock_reset
    start_serve "$db" --max-inflight "$INFLIGHT"
    sleep 1
    a0=$(mock_stat unique)
    if [ "$kind" = perf ]; then
        perf record -q --call-graph dwarf,32768 -F 499 -p "$SERVE_CHILD" -o "$BT/perf.data" \
            -- sleep "$PROFILE_S" >/dev/null 2>&1
    else
        timeout -s INT "$PROFILE_S" strace -c -w -f -p "$SERVE_CHILD" -o "$BT/strace-w.out" \
            >/dev/null 2>&1
    fi
    a1=$(mock_stat unique)
    stop_serve
    echo $((a1 - a0))
}

if want profile; then
    command -v perf >/dev/null && command -v strace >/dev/null ||
        { log "the profile section needs perf and strace"; exit 1; }
    echo "### Profile of a drain ($(commas "$N_PROFILE") queued, synchronous=full)"
    echo
    src=$(template_db "$N_PROFILE")
    cp "$src" "$BT/plan.db"
    echo "Claim queries on $(commas "$N_PROFILE") queued rows (sqlite3 shell, second of two runs):"
    echo
    echo "| query | plan | time |"
    echo "|---|---|---:|"
    for q in "SELECT priority FROM outbox WHERE state = 'queued' AND head = 1 AND priority < 9223372036854775807 ORDER BY priority DESC LIMIT 1" \
             "SELECT priority FROM outbox WHERE state = 'queued' AND head = 1 AND priority < 0 ORDER BY priority DESC LIMIT 1" \
             "SELECT priority FROM outbox INDEXED BY outbox_claim WHERE state = 'queued' AND head = 1 AND priority < 9223372036854775807 ORDER BY priority DESC LIMIT 1" \
             "SELECT business_id FROM outbox WHERE state = 'queued' AND head = 1 AND priority = 0 AND business_id > 'biz-1' ORDER BY priority DESC, business_id LIMIT 1"; do
        plan=$(sql "$BT/plan.db" "EXPLAIN QUERY PLAN $q" | grep -v '^QUERY PLAN' |
            sed 's/^[-|` ]*//' | paste -sd ';' - | sed 's/;/; /g')
        t=$(printf '.timer on\n%s;\n%s;\n' "$q" "$q" | sqlite3 -batch "$BT/plan.db" 2>&1 |
            sed -n 's/^Run Time: real \([0-9.]*\).*/\1/p' | tail -1)
        echo "| \`$q\` | $plan | $(fmt "$t * 1000" 1) ms |"
    done
    echo
    n=$(profile_window strace "$(fresh_db "$N_PROFILE" profile)")
    echo "Syscalls of serve over ${PROFILE_S} s (\`strace -c -w -f -p\`), $(commas "$n") messages accepted meanwhile:"
    echo
    echo "| syscall | calls | per message | wall time (s) | µs per call |"
    echo "|---|---:|---:|---:|---:|"
    awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
        printf "| %s | %d | %.2f | %.3f | %d |\n", $NF, $4, (n > 0 ? $4 / n : 0), $2, $3 }' \
        "$BT/strace-w.out" | head -12
    echo
    n=$(profile_window perf "$(fresh_db "$N_PROFILE" profile)")
    echo "CPU profile of serve over ${PROFILE_S} s (\`perf record --call-graph dwarf -F 499\`," \
        "$(commas "$n") messages accepted meanwhile; inclusive share of on-CPU samples):"
    echo
    echo "| function | share |"
    echo "|---|---:|"
    perf report -i "$BT/perf.data" --stdio --children --percent-limit 0.3 -g none --sort sym 2>/dev/null |
        awk '$3 == "[.]" { name = $4; sub(/%/, "", $1); s[name] += $1 }
             END { split("pump obx_store_claim claim_level next_business pick_in_lane mark_sending send_one obx_http_client_post on_flush obx_store_finish record_attempt apply_transition obx_db_commit __GI_fdatasync curl_multi_socket_action curl_easy_init curl_easy_cleanup", order, " ");
                   for (i = 1; i in order; i++) if (order[i] in s) printf "| %s | %.1f %% |\n", order[i], s[order[i]] }'
    echo
    echo "(pump = claim + start requests; on_flush = record outcomes; curl_multi_socket_action ="
    echo "network I/O and HTTP; obx_db_commit and __GI_fdatasync are shared by claim and flush.)"
    echo
fi

# ---- targets ------------------------------------------------------------------------------------

if want mock || want drain || want scale || want idle || want latency; then
    echo "### Targets"
    echo
    echo "| target | measured | |"
    echo "|---|---|---|"
    cat "$SUMMARY"
    want latency || echo "| enqueue-to-request latency | not measured in this run (SECTIONS=latency) | - |"
    echo
fi
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (nproc = $(nproc))."
exit 0
}
