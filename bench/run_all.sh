#!/usr/bin/env bash
# bench/run_all.sh: runs every script in bench/ and keeps their Markdown output.
#
#   make build && bench/run_all.sh        (or: make bench)
#   bench/run_all.sh --list               what would run, in order
#   BENCH_SKIP="fuzz_long soak torture_long valgrind_run" bench/run_all.sh   benchmarks only
#   BENCH_ONLY="run_enqueue drain" bench/run_all.sh
#
# Runs bench/run_enqueue.sh first (when present), then every other bench/*.sh in name order
# except the helpers (lib.sh, run_all.sh), each without arguments, so with its own defaults,
# and bounded by BENCH_SCRIPT_TIMEOUT seconds (default 3600). That includes the long checks
# (fuzz_long, soak, torture_long, valgrind_run) when they are present: skip them with
# BENCH_SKIP (names without .sh) when only the figures of docs/benchmarks.md are wanted.
# Output goes to stdout and to bench/results/<script>-<UTC time>.md (git-ignored; BENCH_OUT
# replaces the directory). Each script cleans up after itself; the exit status is 1 when any
# of them failed. Environment variables reach the scripts (e.g. N_DRAIN for bench/drain.sh).
set -uo pipefail

cd "$(dirname "$0")/.."
OUT=${BENCH_OUT:-bench/results}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)

listed() { case " $2 " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

scripts=()
[ -f bench/run_enqueue.sh ] && scripts+=(bench/run_enqueue.sh)
for s in bench/*.sh; do
    case "$(basename "$s")" in
        lib.sh | run_all.sh | run_enqueue.sh) ;;
        *) scripts+=("$s") ;;
    esac
done
selected=()
for s in "${scripts[@]}"; do
    name=$(basename "$s" .sh)
    [ -n "${BENCH_ONLY:-}" ] && ! listed "$name" "$BENCH_ONLY" && continue
    listed "$name" "${BENCH_SKIP:-}" && continue
    selected+=("$s")
done

if [ "${1:-}" = --list ]; then
    printf '%s\n' "${selected[@]}"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: bench/run_all.sh [--list]" >&2; exit 2; }

mkdir -p "$OUT"
rc=0
for s in "${selected[@]}"; do
    name=$(basename "$s" .sh)
    echo "bench/run_all.sh: $s" >&2
    timeout -k 30 "${BENCH_SCRIPT_TIMEOUT:-3600}" bash "$s" | tee "$OUT/$name-$STAMP.md"
    status=${PIPESTATUS[0]}
    if [ "$status" -ne 0 ]; then
        echo "bench/run_all.sh: $s failed (exit $status)" >&2
        rc=1
    fi
    echo
done
echo "bench/run_all.sh: results in $OUT/*-$STAMP.md" >&2
exit $rc
