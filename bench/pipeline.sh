#!/usr/bin/env bash
# bench/pipeline.sh: the targets of issue 13 (pipelined delivery), every one measured in ONE run
# so that the ratios compare figures taken minutes apart on the same machine
# (docs/benchmarks.md, "Pipelined delivery (issue 13)").
#
#   floor+drain  REPEAT (3) rounds, each: bench/curl_floor.sh with only the new-handle client
#                (KINDS=new, FLOOR_S (10) s), then an unthrottled drain of N_DRAIN (100,000)
#                queued messages (10,000 conversations), --max-inflight 32,
#                --synchronous full. Interleaved, so that each drain sees the machine its floor
#                saw. Drain rate = (accepted - 1) / (last - first accepted_at_ms); serve CPU
#                per message = utime + stime of the serve process (/proc/PID/stat, every
#                thread, start-up included) read once all N_DRAIN are accepted, / N_DRAIN.
#                Targets: the median of the rounds' drain / floor >= 0.4; median CPU <= 50 µs.
#   scale        SCALE_REPEAT (7) rounds, each: a whole drain of N_SMALL (1,000) queued, then a drain of
#                N_BIG (1,000,000) queued stopped after BIG_STOP (20,000) acceptances; both
#                over SCALE_CONVS (100) conversations so that only the queue's length differs.
#                Both rates are taken over the SAME number of messages: the first N_SMALL
#                acceptances of each run ((N_SMALL - 1) / (their last - first
#                accepted_at_ms)), i.e. the whole small drain and the first 1,000 of the big
#                one. Target: the median of the rounds' big / small within 10 % (0.90-1.10). The big
#                run's rate over all its BIG_STOP acceptances, and the median over its
#                consecutive windows of N_SMALL acceptances, are shown too. Peak RSS: serve's
#                VmHWM (/proc/PID/status) in the big runs, the largest of them < 40 MB.
#   api          bench/api_bench.sh with CONNS="32" x REPEAT, no batches: one message per
#                POST /v1/messages, 32 keep-alive connections (wrk -t2 -c32), API_S (10) s,
#                synchronous full, a fresh database each. Target: median >= 25,000 msg/s.
#   webhook      bench/webhook_bench.sh with CONNS="16" x REPEAT, SYNCS=full, WH_N (50,000)
#                echoes + 10 % replies, each signed event sent once. Figure: "stored/s"
#                (events / time until the last one was answered 200, i.e. verified and
#                committed). Target: median >= 5,000/s.
#   latency+idle bench/drain.sh with SECTIONS="latency idle": LAT_RATE (50) single POSTs per
#                second for LAT_S (20) s from one keep-alive client (bench/latency_client.py),
#                serve and mock unthrottled, synchronous full, empty outbox; latency = the
#                mock's arrival time of the request - the client's clock just before it wrote
#                the POST (ms). Target: p99 < 20 ms. Then serve with an empty outbox for
#                IDLE_S (60) s after 2 s of start-up: CPU s per minute = utime + stime * 60 /
#                IDLE_S. Target: < 0.5.
#
# Prints Markdown on stdout (machine, per-run tables, then the summary table: target,
# measured, ratio, pass/fail), progress and a plain-text copy of the summary on stderr, and
# writes the Markdown to REPORT (default bench/results/pipeline-<UTC time>.md). Exit status 0
# when everything was measured (targets missed or not), 1 when a part could not be measured.
#
#   cmake --build build && bench/pipeline.sh                   # ~6 min
#   QUICK=1 bench/pipeline.sh                                  # smoke run, tiny counts, ~30 s
#   PARTS="floor scale" REPEAT=5 bench/pipeline.sh
#   OUTBOX_BIN=/tmp/before/outbox bench/pipeline.sh             # another build of serve
#
# Environment: PARTS ("floor scale api webhook latency"; floor includes the 100,000 drain,
# latency includes idle), REPEAT, SCALE_REPEAT, FLOOR_S, N_DRAIN, N_SMALL, N_BIG, BIG_STOP, SCALE_CONVS,
# API_S, WH_N, LAT_RATE, LAT_S, IDLE_S, REPORT, and bench/lib.sh's (BUILD, OUTBOX_BIN, MOCK_BIN,
# BENCH_DIR, BENCH_TEMPLATES, KEEP_TMP). Every sub-script gets this run's private copies of
# outbox, mock_partoo and curl_floor, so one build is measured throughout. Builds nothing.
# Only 127.0.0.1; every process it starts is killed on exit.
set -uo pipefail

# The whole script is one compound command, parsed before it runs: editing this file during a
# run cannot derail the run.
{

# Which build is measured, for the report (lib.sh replaces OUTBOX_BIN by a private copy).
BIN_UNDER_TEST=$(readlink -f "${OUTBOX_BIN:-${BUILD:-$(dirname "$0")/../build}/outbox}")
. "$(dirname "$0")/lib.sh"

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    # Smoke: every part runs and every row is printed; the figures mean nothing.
    : "${REPEAT:=1}" "${SCALE_REPEAT:=1}" "${FLOOR_S:=1}" "${N_DRAIN:=1000}" "${N_SMALL:=200}" "${N_BIG:=5000}"
    : "${BIG_STOP:=600}" "${API_S:=1}" "${API_FSYNC_S:=1}" "${WH_N:=200}" "${LAT_RATE:=50}"
    : "${LAT_S:=1}" "${IDLE_S:=1}"
fi
PARTS=${PARTS:-floor scale api webhook latency}
REPEAT=${REPEAT:-3}
SCALE_REPEAT=${SCALE_REPEAT:-7}
FLOOR_S=${FLOOR_S:-10}
N_DRAIN=${N_DRAIN:-100000}
DRAIN_CONVS=${DRAIN_CONVS:-10000}
N_SMALL=${N_SMALL:-1000}
N_BIG=${N_BIG:-1000000}
BIG_STOP=${BIG_STOP:-20000}
SCALE_CONVS=${SCALE_CONVS:-100}
API_S=${API_S:-10}
API_FSYNC_S=${API_FSYNC_S:-3}
WH_N=${WH_N:-50000}
LAT_RATE=${LAT_RATE:-50}
LAT_S=${LAT_S:-20}
IDLE_S=${IDLE_S:-60}
INFLIGHT=32
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT=${REPORT:-$BENCH_ROOT/bench/results/pipeline-$STAMP.md}
FLOOR_BIN=${FLOOR_BIN:-$BUILD/curl_floor}
[ -x "$FLOOR_BIN" ] || { log "$FLOOR_BIN not found; cmake --build build --target curl_floor"; exit 1; }
cp "$FLOOR_BIN" "$BT/bin/curl-floor-pipeline" || exit 1
FLOOR_BIN=$BT/bin/curl-floor-pipeline
mkdir -p "$(dirname "$REPORT")" && : > "$REPORT" || { log "cannot write $REPORT"; exit 1; }

want() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# out LINE...: one line of the report, to stdout and to REPORT.
out() { printf '%s\n' "$*" | tee -a "$REPORT"; }
# spread NUMBER...: "min–max" of the arguments (median, fmt, commas: tests/lib/common.sh).
spread() {
    printf '%s\n' "$@" | sort -g | awk 'NF { v[++n] = $1 } END { if (n) print (n > 1 ? v[1] "–" v[n] : v[1]) }' |
        sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'
}
num() { tr -d ',* ' <<< "$1"; }   # "**13,810**" -> 13810
FAILED_PARTS=0
SUMMARY=$BT/summary.tsv   # id, target, measured, ratio, verdict
: > "$SUMMARY"
# row ID TARGET MEASURED RATIO PASS(1/0/"" for not measured)
row() {
    local v=n/a
    [ "$5" = 1 ] && v=pass
    [ "$5" = 0 ] && v=FAIL
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$v" >> "$SUMMARY"
}
# ok EXPR: 1 when the awk expression is true, else 0.
ok() { awk "BEGIN { print (($1) ? 1 : 0) }"; }

# sub NAME LIMIT_S SCRIPT [VAR=value...]: runs bench/SCRIPT with this run's binaries, bounded by
# LIMIT_S seconds, stdout to $BT/NAME.md, stderr to $BT/NAME.err and ours; returns its status.
sub() {
    local name=$1 limit=$2 script=$3 pid rc
    shift 3
    env OUTBOX_BIN="$OUTBOX_BIN" MOCK_BIN="$MOCK_BIN" FLOOR_BIN="$FLOOR_BIN" BENCH_DIR="$BT" \
        KEEP_TMP=0 "$@" \
        timeout -k 10 "$limit" bash "$BENCH_ROOT/bench/$script" > "$BT/$name.md" 2> >(tee "$BT/$name.err" >&2) &
    pid=$!
    PIDS+=("$pid")
    wait "$pid"
    rc=$?
    [ "$rc" = 0 ] || log "$script ($name) failed (exit $rc); its output: $BT/$name.md"
    return $rc
}

# drain_run LABEL N STOP_AT CONVS: serve drains a fresh copy of a template of N queued messages
# over CONVS conversations until STOP_AT are accepted (all: until the database has them all).
# Sets D_ACC (accepted in the database), D_RATE (msg/s over all of them), D_WRATE (msg/s over
# the first WINDOW of them, WINDOW from the caller, 0 = not wanted), D_CPU (µs of serve CPU per
# accepted message), D_HWM (kB), D_OTHER (attempts not accepted), D_DUPS (mock duplicates).
drain_run() {
    local label=$1 n=$2 stop_at=$3 convs=$4 db t0 acc=0 ticks row cnt span w_span
    db=$(fresh_db "$n" "drain-$label" "$convs")
    # The copy on the disk before serve starts: else the first checkpoint's fsync of the
    # database file also writes back the copy (240 MB for 1,000,000 messages) inside the run.
    sync "$db"
    ensure_mock
    mock_reset
    log "drain $label: $n queued ($convs conversations), until $stop_at accepted"
    start_serve "$db" --max-inflight "$INFLIGHT" --synchronous full
    t0=$(now_ms)
    D_RATE=0 D_WRATE=0 D_CPU=0 D_HWM=0 D_ACC=0 D_OTHER=- D_DUPS=-
    while :; do
        if ! kill -0 "$SERVE_CHILD" 2>/dev/null || ! kill -0 "$MOCK_PID" 2>/dev/null; then
            log "drain $label: serve or the mock died"
            stop_serve
            return 1
        fi
        acc=$(mock_stat unique)
        [ "${acc:-0}" -ge "$stop_at" ] && break
        if [ $(( $(now_ms) - t0 )) -ge $(( DRAIN_TIMEOUT * 1000 )) ]; then
            log "drain $label: $acc of $stop_at accepted after ${DRAIN_TIMEOUT}s; stopped"
            break
        fi
        sleep 0.2
    done
    if [ "$stop_at" -ge "$n" ]; then # the last outcomes recorded: the drain's whole CPU
        wait_until 60 '[ "$(sql "$db" "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge "$n" ]' ||
            log "drain $label: the database did not reach $n accepted"
    fi
    ticks=$(cpu_ticks "$SERVE_CHILD")
    D_HWM=$(hwm_kb "$SERVE_CHILD")
    D_DUPS=$(mock_stat duplicates)
    stop_serve
    row=$(sql "$db" "SELECT count(*), coalesce(max(accepted_at_ms) - min(accepted_at_ms), 0)
                     FROM outbox WHERE state = 'accepted'")
    IFS='|' read -r cnt span <<< "$row"
    D_ACC=$cnt
    D_RATE=$(fmt "($span > 0 ? ($cnt - 1) * 1000 / $span : 0)")
    D_CPU=$(fmt "($cnt > 0 ? $ticks * 1e6 / $CLK_TCK / $cnt : 0)")
    if [ "${WINDOW:-0}" -gt 0 ]; then
        w_span=$(sql "$db" "SELECT CASE WHEN count(*) = $WINDOW THEN max(a) - min(a) ELSE 0 END FROM
                            (SELECT accepted_at_ms AS a FROM outbox WHERE state = 'accepted'
                             ORDER BY accepted_at_ms LIMIT $WINDOW)")
        D_WRATE=$(fmt "(${w_span:-0} > 0 ? ($WINDOW - 1) * 1000 / $w_span : 0)")
    fi
    D_WMED=0
    if [ "${WINDOWS:-0}" = 1 ] && [ "${WINDOW:-0}" -gt 1 ]; then
        # the median over consecutive windows of WINDOW acceptances (whole windows only)
        # shellcheck disable=SC2046 # one rate a line, each an argument
        D_WMED=$(median $(sql "$db" "SELECT ($WINDOW - 1) * 1000.0 / (max(a) - min(a)) FROM
            (SELECT accepted_at_ms AS a, row_number() OVER (ORDER BY accepted_at_ms) AS rn
             FROM outbox WHERE state = 'accepted')
            GROUP BY (rn - 1) / $WINDOW HAVING count(*) = $WINDOW AND max(a) > min(a)"))
        D_WMED=$(fmt "${D_WMED:-0}")
    fi
    D_OTHER=$(sql "$db" "SELECT count(*) FROM attempts WHERE outcome <> 'accepted'")
    rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
    return 0
}

start_mock
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

out "## Pipelined delivery, issue 13 (bench/pipeline.sh)"
out
out "$(machine_table)"
out "| serve binary | \`$BIN_UNDER_TEST\`, sha256 $(sha256sum "$OUTBOX_BIN" | cut -c1-12), built $(date -u -r "$BIN_UNDER_TEST" +%Y-%m-%dT%H:%MZ 2>/dev/null); source tree at $(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$BENCH_ROOT" diff --quiet HEAD -- lib cmd 2>/dev/null || echo ' (lib/ or cmd/ modified)') |"
out "| run | REPEAT=$REPEAT$([ "$QUICK" = 1 ] && echo ", QUICK=1 (smoke counts: figures not meaningful)") |"
out

# ---- a. curl floor and the 100,000 drain, interleaved ------------------------------------------

if want floor; then
    floors=() rates=() cpus=() ratios=()
    out "### a. Unthrottled drain of $(commas "$N_DRAIN") vs the libcurl floor"
    out
    out "| round | curl_floor, new handles (req/s) | drain, synchronous=full (msg/s) | ratio | serve CPU per message | serve VmHWM | other attempts | mock duplicates | load (1 min) before |"
    out "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for i in $(seq 1 "$REPEAT"); do
        load=$(cut -d' ' -f1 /proc/loadavg)
        log "round $i/$REPEAT: curl_floor (new handles) for ${FLOOR_S}s"
        f=0
        if sub "floor-$i" $((FLOOR_S + 120)) curl_floor.sh KINDS=new REPEAT=1 DURATION="$FLOOR_S"; then
            f=$(awk -F'|' '$2 ~ /curl_floor \(new handles\)/ && NF == 9 { gsub(/ /, "", $4); print $4; exit }' "$BT/floor-$i.md")
        fi
        [ "${f:-0}" -gt 0 ] 2>/dev/null || { f=0; FAILED_PARTS=$((FAILED_PARTS + 1)); }
        WINDOW=0 drain_run "full-$i" "$N_DRAIN" "$N_DRAIN" "$DRAIN_CONVS" || FAILED_PARTS=$((FAILED_PARTS + 1))
        r=-
        [ "$f" -gt 0 ] && [ "$D_RATE" -gt 0 ] && r=$(fmt "$D_RATE / $f" 3) && ratios+=("$r")
        [ "$f" -gt 0 ] && floors+=("$f")
        [ "$D_RATE" -gt 0 ] && rates+=("$D_RATE") && cpus+=("$D_CPU")
        out "| $i | $(commas "$f") | $(commas "$D_RATE") | $r | $D_CPU µs | $(fmt "$D_HWM / 1024" 1) MB | $D_OTHER | $D_DUPS | $load |"
    done
    out
    F=$(median "${floors[@]:-}") R=$(median "${rates[@]:-}") C=$(median "${cpus[@]:-}")
    if [ -n "$F" ] && [ -n "$R" ]; then
        # Each round's drain over the floor measured just before it, the median of those: a
        # slow spell of the shared machine moves both figures of a round together.
        RR=$(fmt "$(median "${ratios[@]}")" 2)
        out "Medians: floor $(commas "$F") req/s ($(spread "${floors[@]}")), drain $(commas "$R") msg/s" \
            "($(spread "${rates[@]}")); the median of the rounds' ratios **$RR** ($(spread "${ratios[@]:-}"); the" \
            "ratio of the medians: $(fmt "$R / $F" 2)); serve CPU $C µs per message ($(spread "${cpus[@]}"))."
        row a1 "drain of $(commas "$N_DRAIN"), 32 in flight, synchronous=full ≥ 0.4 × curl floor (new handles)" \
            "$(commas "$R") msg/s vs $(commas "$F") req/s; rounds' ratios $(spread "${ratios[@]}")" "$RR ×" "$(ok "$RR >= 0.4")"
        row a2 "serve CPU per delivered message ≤ 50 µs (all threads)" "$C µs" \
            "$(fmt "$C / 50" 2) × target" "$(ok "$C <= 50")"
    else
        row a1 "drain of $(commas "$N_DRAIN") ≥ 0.4 × curl floor" "not measured" "-" ""
        row a2 "serve CPU per delivered message ≤ 50 µs" "not measured" "-" ""
    fi
    out
fi

# ---- b. 1,000 vs 1,000,000 queued ---------------------------------------------------------------

if want scale; then
    small=() big=() bigall=() hwms=() bigcpu=() bigwin=() pairs=()
    out "### b. $(commas "$N_SMALL") vs $(commas "$N_BIG") queued ($(commas "$SCALE_CONVS") conversations each)"
    out
    out "| round | queued | stopped after | accepted | rate over the first $(commas "$N_SMALL") (msg/s) | big / small, this round | rate over all accepted (msg/s) | median of its $(commas "$N_SMALL")-acceptance windows (msg/s) | serve CPU per message | serve VmHWM | other attempts | load (1 min) before |"
    out "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    # Templates first, so that building them is not inside any round.
    template_db "$N_SMALL" "$SCALE_CONVS" >/dev/null
    template_db "$N_BIG" "$SCALE_CONVS" >/dev/null
    for i in $(seq 1 "$SCALE_REPEAT"); do
        s_rate=0
        for kind in small big; do
            load=$(cut -d' ' -f1 /proc/loadavg)
            if [ "$kind" = small ]; then
                n=$N_SMALL stop=$N_SMALL
            else
                n=$N_BIG stop=$BIG_STOP
            fi
            WINDOW=$N_SMALL WINDOWS=1 drain_run "$kind-$i" "$n" "$stop" "$SCALE_CONVS" || FAILED_PARTS=$((FAILED_PARTS + 1))
            pr=-
            if [ "$kind" = small ]; then
                [ "$D_WRATE" -gt 0 ] && small+=("$D_WRATE") && s_rate=$D_WRATE
            else
                [ "$D_WRATE" -gt 0 ] && big+=("$D_WRATE") && bigall+=("$D_RATE") && bigcpu+=("$D_CPU") &&
                    bigwin+=("$D_WMED")
                [ "$D_WRATE" -gt 0 ] && [ "$s_rate" -gt 0 ] && pr=$(fmt "$D_WRATE / $s_rate" 2) && pairs+=("$pr")
                hwms+=("$D_HWM")
            fi
            out "| $i | $(commas "$n") | $(commas "$stop") | $(commas "$D_ACC") | **$(commas "$D_WRATE")** | $pr | $(commas "$D_RATE") | $([ "$kind" = big ] && commas "$D_WMED" || echo -) | $D_CPU µs | $(fmt "$D_HWM / 1024" 1) MB | $D_OTHER | $load |"
        done
    done
    out
    S=$(median "${small[@]:-}") B=$(median "${big[@]:-}")
    H=$(printf '%s\n' "${hwms[@]:-0}" | sort -g | tail -1)
    if [ -n "$S" ] && [ -n "$B" ]; then
        SR=$(fmt "$(median "${pairs[@]:-0}")" 2) # per round (adjacent runs), as for a1
        out "Medians over the first $(commas "$N_SMALL") acceptances: $(commas "$N_SMALL") queued $(commas "$S") msg/s" \
            "($(spread "${small[@]}")), $(commas "$N_BIG") queued $(commas "$B") msg/s ($(spread "${big[@]}")); the median of" \
            "the rounds' ratios **$SR** ($(spread "${pairs[@]:-}"); the ratio of the medians: $(fmt "$B / $S" 2)). The $(commas "$N_BIG")-queue runs over all their" \
            "acceptances: $(commas "$(median "${bigall[@]}")") msg/s ($(spread "${bigall[@]}")); the median of their" \
            "$(commas "$N_SMALL")-acceptance windows $(commas "$(median "${bigwin[@]}")") msg/s ($(spread "${bigwin[@]}"));" \
            "$(median "${bigcpu[@]}") µs of serve CPU per message. Peak RSS (largest VmHWM" \
            "of those runs): $(fmt "$H / 1024" 1) MB."
        row b1 "drain rate with $(commas "$N_BIG") queued within 10 % of $(commas "$N_SMALL") queued (first $(commas "$N_SMALL") acceptances each)" \
            "$(commas "$B") vs $(commas "$S") msg/s; rounds' ratios $(spread "${pairs[@]:-}")" "$SR ×" "$(ok "$SR >= 0.9 && $SR <= 1.1")"
    else
        row b1 "drain rate with $(commas "$N_BIG") queued within 10 % of $(commas "$N_SMALL") queued" "not measured" "-" ""
    fi
    if [ "${H:-0}" -gt 0 ]; then
        row b2 "serve peak RSS (VmHWM) with $(commas "$N_BIG") queued < 40 MB" "$(fmt "$H / 1024" 1) MB" \
            "$(fmt "$H / 1024 / 40" 2) × target" "$(ok "$H < 40 * 1024")"
    else
        row b2 "serve peak RSS with $(commas "$N_BIG") queued < 40 MB" "not measured" "-" ""
    fi
    out
fi

# ---- c. producer API, one message per POST, 32 clients -----------------------------------------

if want api; then
    out "### c. One-by-one HTTP enqueue, 32 clients, synchronous=full (bench/api_bench.sh)"
    out
    conns=$(for i in $(seq 1 "$REPEAT"); do printf '32 '; done)
    vals=() oks=()
    if sub api $(( REPEAT * (API_S + API_FSYNC_S + 60) + 60 )) api_bench.sh CONNS="$conns" BATCH_CONNS= \
        DURATION="$API_S" FSYNC_S="$API_FSYNC_S"; then
        out "| run | requests | messages/s | p50 ms | p90 ms | p99 ms | fsync/s before | checked |"
        out "|---:|---:|---:|---:|---:|---:|---:|---|"
        i=0
        while IFS='|' read -r _ _ req mps p50 p90 p99 fs _ chk _; do
            i=$((i + 1))
            vals+=("$(num "$mps")")
            case $chk in *yes*) ;; *) oks+=("run $i: $chk") ;; esac
            out "| $i |$req|$mps|$p50|$p90|$p99|$fs|$chk|"
        done < <(grep -E '^\| 32 \|' "$BT/api.md")
        out
    fi
    A=$(median "${vals[@]:-}")
    if [ -n "$A" ] && [ "${#oks[@]}" = 0 ]; then
        out "Median $(commas "$A") msg/s ($(spread "${vals[@]}")); every run checked (no error, every 202'd message in the database)."
        row c "one-by-one HTTP enqueue, 32 clients in flight, synchronous=full ≥ 25,000 msg/s" \
            "$(commas "$A") msg/s" "$(fmt "$A / 25000" 2) × target" "$(ok "$A >= 25000")"
    else
        FAILED_PARTS=$((FAILED_PARTS + 1))
        out "Not measured or not checked: ${oks[*]:-no result}."
        row c "one-by-one HTTP enqueue, 32 clients ≥ 25,000 msg/s" "not measured" "-" ""
    fi
    out
fi

# ---- d. webhooks, 16 concurrent deliveries ------------------------------------------------------

if want webhook; then
    out "### d. Webhooks verified and stored, 16 concurrent deliveries, synchronous=full (bench/webhook_bench.sh)"
    out
    conns=$(for i in $(seq 1 "$REPEAT"); do printf '16 '; done)
    vals=() oks=()
    if sub webhook $(( REPEAT * 150 + 120 )) webhook_bench.sh N="$WH_N" CONNS="$conns" SYNCS=full RUN_TIMEOUT=120; then
        out "| run | stored/s | stored + reconciled/s | latency p50 / p90 / p99 / p99.9 / max (ms) | serve CPU per 1,000 events | checked |"
        out "|---:|---:|---:|---|---:|---|"
        i=0
        while IFS='|' read -r _ _ _ stored recon _ lat cpu chk _; do
            i=$((i + 1))
            case $chk in *yes*) vals+=("$(num "$stored")") ;; *) oks+=("run $i: $stored $chk") ;; esac
            out "| $i | $(commas "$(num "$stored")") | $(commas "$(num "$recon")") |$lat|$cpu|$chk|"
        done < <(grep -E '^\| full \| 16 \|' "$BT/webhook.md")
        out
    fi
    W=$(median "${vals[@]:-}")
    if [ -n "$W" ] && [ "${#oks[@]}" = 0 ]; then
        out "Median $(commas "$W") events/s stored ($(spread "${vals[@]}")); every run: all echoes confirmed, replies in the inbox, only 200s."
        row d "webhooks verified and stored, 16 concurrent deliveries ≥ 5,000/s" "$(commas "$W") events/s" \
            "$(fmt "$W / 5000" 2) × target" "$(ok "$W >= 5000")"
    else
        FAILED_PARTS=$((FAILED_PARTS + 1))
        out "Not measured or not checked: ${oks[*]:-no result}."
        row d "webhooks verified and stored, 16 concurrent ≥ 5,000/s" "not measured" "-" ""
    fi
    out
fi

# ---- e, f. latency at light load, idle CPU ------------------------------------------------------

if want latency; then
    out "### e. Enqueue-to-request latency at $LAT_RATE msg/s for $LAT_S s, f. idle CPU (bench/drain.sh)"
    out
    lat_n=$(( LAT_RATE * LAT_S ))
    p50='' p99='' idle=
    if sub latency $(( LAT_S + IDLE_S + 180 )) drain.sh SECTIONS="latency idle" LAT_N="$lat_n" \
        LAT_RATE="$LAT_RATE" LAT_PACED_N=0 IDLE_S="$IDLE_S"; then
        out "| measure | messages | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | all delivered once |"
        out "|---|---:|---:|---:|---:|---:|---|"
        while IFS='|' read -r _ _ measure n _ q50 q90 q99 qmax deliv _; do
            out "|$measure|$n|$q50|$q90|$q99|$qmax|$deliv|"
            case $measure in
            *"POST sent"*) p50=$(num "$q50") p99=$(num "$q99") delivered=$deliv ;;
            esac
        done < <(grep -E '^\| unpaced \|' "$BT/latency.md")
        out
        idle=$(awk -F'|' '$2 ~ /idle serve CPU over/ { gsub(/[ s]/, "", $3); print $3 }' "$BT/latency.md")
        out "Idle serve (empty outbox, after 2 s of start-up): $idle s of CPU over $IDLE_S s" \
            "(/proc/PID/stat, $(fmt "1 / $CLK_TCK" 2) s resolution)."
        out
    fi
    case ${delivered:-} in *yes*) ;; *) p99='' ;; esac
    # The client's own lateness (bench/latency_client.py): when many POSTs left late, the
    # machine starved the client too, and the tail says more about the machine than serve.
    late=$(sed -n 's/^latency_client: \([0-9]* of [0-9]*\) requests started more than 1 ms late.*/\1/p' "$BT/latency.err" 2>/dev/null | head -1)
    if [ -n "$p99" ] && [ "$p99" != nan ]; then
        row e "enqueue-to-request latency p99 < 20 ms at $LAT_RATE msg/s (POST sent → mock received)" \
            "p50 $p50 ms, p99 $p99 ms$([ -n "$late" ] && echo " ($late POSTs left > 1 ms late)")" \
            "$(fmt "$p99 / 20" 2) × target" "$(ok "$p99 < 20")"
    else
        FAILED_PARTS=$((FAILED_PARTS + 1))
        row e "enqueue-to-request latency p99 < 20 ms" "not measured (or not all delivered once)" "-" ""
    fi
    if [ -n "$idle" ]; then
        ipm=$(fmt "$idle * 60 / $IDLE_S" 2)
        row f "idle CPU, empty outbox, < 0.5 s per minute" "$ipm s/min ($idle s over $IDLE_S s)" \
            "$(fmt "$ipm / 0.5" 2) × target" "$(ok "$ipm < 0.5")"
    else
        FAILED_PARTS=$((FAILED_PARTS + 1))
        row f "idle CPU < 0.5 s per minute" "not measured" "-" ""
    fi
fi

# ---- summary ------------------------------------------------------------------------------------

out "### Summary (issue 13 targets, one run)"
out
out "| # | target | measured (median of $REPEAT; b1: of $SCALE_REPEAT) | ratio | |"
out "|---|---|---|---:|---|"
while IFS=$'\t' read -r id target measured ratio verdict; do
    case $verdict in FAIL) verdict="**FAIL**" ;; esac
    out "| $id | $target | $measured | $ratio | $verdict |"
done < "$SUMMARY"
out
out "Ratio: for a1 the median over the rounds of the drain's rate over the curl floor measured just"
out "before it; for b1 the median over the rounds of the $(commas "$N_BIG")-queue rate over the $(commas "$N_SMALL")-queue"
out "rate measured just before it; otherwise the measured figure over the target's."
out "Load average at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (nproc = $(nproc))."
{
    echo
    echo "bench/pipeline.sh summary (Markdown: $REPORT)"
    awk -F'\t' 'BEGIN { OFS = "\t" } { print $1, $5, $4, $3, $2 }' "$SUMMARY" | column -t -s $'\t'
} >&2
[ "$FAILED_PARTS" = 0 ] || { log "$FAILED_PARTS part(s) could not be measured"; exit 1; }
exit 0
}
