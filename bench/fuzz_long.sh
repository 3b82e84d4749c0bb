#!/usr/bin/env bash
# bench/fuzz_long.sh: the long fuzzing run, FUZZ_SECONDS (default 600) per target.
#
#   bench/fuzz_long.sh                     every target, one after the other
#   bench/fuzz_long.sh config signature    only these
#   FUZZ_SECONDS=3600 FUZZ_JOBS=2 bench/fuzz_long.sh
#
# Configures and builds build-fuzz with clang (OBX_FUZZ=ON) when needed, then runs
# tests/fuzz/run.sh for each target with FUZZ_WORKDIR=bench/results/fuzz/<target>
# (git-ignored): the corpus grown there is kept and reused by the next long run, and
# never written into tests/fuzz/corpus/. To promote interesting inputs to the seeds, merge
# by hand: build-fuzz/fuzz_<t> -merge=1 tests/fuzz/corpus/<t> bench/results/fuzz/<t>/corpus
# FUZZ_OUT replaces bench/results/fuzz. FUZZ_JOBS (default 1) targets run at the same time.
# A crash stops that target; its input is kept in bench/results/fuzz/artifacts/<target>/.
# Exit status 1 when any target failed. Prints a Markdown table (exec/s, coverage, corpus
# size, result). Not meant for bench/run_all.sh: it takes FUZZ_SECONDS x targets.
set -uo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
OUT=${FUZZ_OUT:-bench/results/fuzz}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac
export FUZZ_SECONDS=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-1}
ALL=(msg_json jsonl_line webhook_event config retry_after signature)
if [ $# -gt 0 ]; then targets=("$@"); else targets=("${ALL[@]}"); fi

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    CC=clang cmake -S . -B "$BUILD" -DOBX_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug >&2 || exit 1
fi
cmake --build "$BUILD" -j"${JOBS_BUILD:-2}" $(printf -- '--target fuzz_%s ' "${targets[@]}") >&2 ||
    exit 1
mkdir -p "$OUT"

run_one() {
    local t=$1
    FUZZ_WORKDIR="$OUT/$t" FUZZ_ARTIFACTS="$OUT/artifacts/$t" \
        bash tests/fuzz/run.sh "$ROOT/$BUILD/fuzz_$t" "$t" >"$OUT/$t.log" 2>&1
    echo $? >"$OUT/$t.rc"
}

running=0
for t in "${targets[@]}"; do
    echo "bench/fuzz_long.sh: $t for ${FUZZ_SECONDS}s" >&2
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$JOBS" ]; then
        wait -n
        running=$((running - 1))
    fi
done
wait

rc=0
echo "| target | seconds | exec/s | cov | ft | corpus | result |"
echo "|---|---|---|---|---|---|---|"
for t in "${targets[@]}"; do
    log=$OUT/$t.log
    status=$(cat "$OUT/$t.rc" 2>/dev/null || echo 1)
    last=$(grep -a -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$last")
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    result=clean
    if [ "$status" -ne 0 ]; then
        result="FAILED (see $log)"
        rc=1
    fi
    echo "| $t | $FUZZ_SECONDS | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $result |"
done
exit $rc
