#!/usr/bin/env bash
# Soak: steady traffic for a long time, sampling serve's memory and file descriptors.
#
#   bench/soak.sh [--seconds 600] [--rate 50] [--interval 10]
#
# `outbox serve` (unpaced, against build/mock_partoo with --echo, so every delivery comes back
# as a signed message_created webhook) receives --rate POST /v1/messages per second over
# keep-alive connections, plus one signed reply webhook per second, for --seconds. Every
# --interval seconds it samples VmRSS (/proc/PID/status), the number of open fds
# (/proc/PID/fd), the database size and the backlog, and prints a table. Pass = flat:
#   - RSS: the largest sample of the last third is within 10 % + 2 MiB of the largest of the
#     first third (after a 30 s warm-up);
#   - fds: the last sample is at most the first + 4;
#   - backlog: nothing piles up (queued + sending at the end < 5 s worth of traffic) and
#     every message is confirmed after the load stops;
#   - the producers saw only 202s.
# Exit status 0 on pass. SOAK_REPORT=FILE appends one line of figures to FILE.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTBOX_BIN=${OUTBOX_BIN:-$ROOT/build/outbox}
OBX_BUILD_DIR=${OBX_BUILD_DIR:-$(dirname "$OUTBOX_BIN")}
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/torture/common.sh"

SECONDS_RUN=600
RATE=50
INTERVAL=10
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) SECONDS_RUN=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --interval) INTERVAL=$2; shift 2 ;;
        *) echo "usage: $0 [--seconds N] [--rate N] [--interval N]"; exit 2 ;;
    esac
done
torture_private_bins

WH_PORT=$(free_port)
WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo
start_mock --rate-limit 0 --webhook-url "$WH_URL" --webhook-seed "$SEED" --echo --delay-ms 5 \
    --keep-bodies 0
PUB=$(mock_pubkey) || exit 1
start_serve --webhook-listen "127.0.0.1:$WH_PORT" --webhook-public-key "$PUB" --rate-limit 0 \
    --max-inflight 16
serve_ports || { echo "serve did not start"; cat "$T/serve.log"; exit 1; }

echo "soak: ${SECONDS_RUN}s at ${RATE} POST/s + 1 reply webhook/s; serve pid $SERVE_PID; dir $T"
"$PY" "$ROOT/tests/torture/loadgen.py" --api "$API" --rate "$RATE" --seconds "$SECONDS_RUN" \
    --mock "http://127.0.0.1:$MOCK_PORT" --replies-per-s 1 >"$T/load.json" 2>"$T/load.err" &
LOAD_PID=$!
PIDS+=("$LOAD_PID")

printf '%6s %9s %5s %9s %8s %9s %9s %7s\n' t_s rss_kb fds db_kb queued accepted confirmed inbox |
    tee "$T/samples.txt"
t0=$(now_ms)
while kill -0 "$LOAD_PID" 2>/dev/null; do
    sleep "$INTERVAL"
    kill -0 "$SERVE_PID" 2>/dev/null || { echo "serve died"; break; }
    t=$(( ($(now_ms) - t0) / 1000 ))
    db_kb=$(( ($(stat -c %s "$DB") + $(stat -c %s "$DB-wal" 2>/dev/null || echo 0)) / 1024 ))
    counts=$(sql "$DB" "SELECT sum(state IN ('queued','sending')), sum(state = 'accepted'), sum(state = 'confirmed') FROM outbox")
    printf '%6s %9s %5s %9s %8s %9s %9s %7s\n' "$t" "$(rss_kb "$SERVE_PID")" \
        "$(fd_count "$SERVE_PID")" "$db_kb" "$(echo "$counts" | cut -d'|' -f1)" \
        "$(echo "$counts" | cut -d'|' -f2)" "$(echo "$counts" | cut -d'|' -f3)" \
        "$(sql "$DB" "SELECT count(*) FROM inbox")" | tee -a "$T/samples.txt"
done
wait "$LOAD_PID"
echo "load: $(cat "$T/load.json")"
backlog_end=$(tail -1 "$T/samples.txt" | awk '{print $5}')
wait_until 60 '[ "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state <> '\''confirmed'\''")" = 0 ]'

# ---- verdict --------------------------------------------------------------------------------
verdict=$(awk -v warm=30 '
    NR == 1 { next }
    $1 >= warm { n++; t[n] = $1; rss[n] = $2; fd[n] = $3 }
    END {
        if (n < 3) { print "too_few_samples"; exit }
        third = int(n / 3); if (third < 1) third = 1
        for (i = 1; i <= third; i++) if (rss[i] > a) a = rss[i]
        for (i = n - third + 1; i <= n; i++) if (rss[i] > b) b = rss[i]
        printf "rss_first_third_max_kb=%d rss_last_third_max_kb=%d rss_growth_kb=%d rss_allowed_kb=%d fds_first=%d fds_last=%d\n",
            a, b, b - a, a * 0.10 + 2048, fd[1], fd[n]
    }' "$T/samples.txt")
echo "soak: $verdict"
get() { printf '%s\n' "$verdict" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
assert_eq "enough samples after warm-up" "$(case $verdict in too_few*) echo no ;; *) echo yes ;; esac)" yes
if [ "$(get rss_growth_kb)" != "" ]; then
    assert_le "RSS flat (growth within 10 % + 2 MiB)" "$(get rss_growth_kb)" "$(get rss_allowed_kb)"
    assert_le "fds flat (last <= first + 4)" "$(get fds_last)" $(( $(get fds_first) + 4 ))
fi
assert_le "no backlog piling up (queued+sending at the end < 5 s of traffic)" "${backlog_end:-0}" $(( RATE * 5 ))
assert_eq "every message confirmed after the load" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE state <> 'confirmed'")" 0
codes=$(jget "$(cat "$T/load.json")" '$.codes')
assert_eq "producers saw only 202" "$(sqlite3 :memory: "SELECT group_concat(key) FROM json_each('$codes')")" 202
assert_eq "mock unique == messages" "$(mock_stat '$.unique')" "$(sql "$DB" "SELECT count(*) FROM outbox")"
assert_eq "PRAGMA integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "SIGTERM exit 0" "$?" 0
if [ -n "${SOAK_REPORT:-}" ]; then
    echo "$(date -u +%FT%TZ) seconds=$SECONDS_RUN rate=$RATE $verdict load=$(cat "$T/load.json") passed=$PASSED failed=$FAILED" >>"$SOAK_REPORT"
    cat "$T/samples.txt" >>"$SOAK_REPORT"
fi
finish
