#!/usr/bin/env bash
# tests/fuzz/run.sh: runs one built libFuzzer target for a bounded time (ctest calls it).
#
#   tests/fuzz/run.sh BUILD/fuzz_msg_json msg_json [extra libFuzzer flags]
#
# 1. Replays every file of tests/fuzz/regressions/NAME/ once (inputs that crashed before).
# 2. Fuzzes for FUZZ_SECONDS (default 20) on a copy of tests/fuzz/corpus/NAME/ plus the
#    regressions, with -timeout=5 -rss_limit_mb=1024. The copy lives in a temporary
#    directory that is removed afterwards: new inputs never land in the repository. Set
#    FUZZ_WORKDIR to keep (and grow) the working corpus there across runs instead
#    (bench/fuzz_long.sh does).
# Builds nothing. Exits 1 on any crash, sanitizer report, leak, timeout or out-of-memory,
# after copying the offending inputs to FUZZ_ARTIFACTS (default ./fuzz-artifacts/NAME) and
# saying how to reproduce; 2 on a usage error.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 FUZZER NAME [libFuzzer flags...]" >&2
    exit 2
fi
bin=$1
name=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
secs=${FUZZ_SECONDS:-20}
seeds=$here/corpus/$name
regressions=$here/regressions/$name
artifacts=${FUZZ_ARTIFACTS:-$PWD/fuzz-artifacts/$name}

if [ ! -x "$bin" ]; then
    echo "run.sh: $bin is not an executable (build with -DOBX_FUZZ=ON first)" >&2
    exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/obx-fuzz-$name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
work=${FUZZ_WORKDIR:-$tmp/work}
mkdir -p "$work/corpus" "$tmp/crashes"

# Sanitizer reports must end the run with a failure, with a usable stack.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:symbolize=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
limits=(-timeout=5 -rss_limit_mb=1024)

fail() {
    mkdir -p "$artifacts"
    cp -f "$tmp"/crashes/* "$artifacts"/ 2>/dev/null || true
    echo "run.sh: $name: $1" >&2
    echo "run.sh: inputs kept in $artifacts; reproduce with: $bin <input>" >&2
    exit 1
}

# 1. Known crashers first: each must now run clean.
shopt -s nullglob
regs=("$regressions"/*)
if [ ${#regs[@]} -gt 0 ]; then
    echo "run.sh: $name: replaying ${#regs[@]} regression input(s)" >&2
    if ! "$bin" "${limits[@]}" -artifact_prefix="$tmp/replay-" "${regs[@]}"; then
        cp -f "${regs[@]}" "$tmp/crashes/"
        fail "a regression input fails again"
    fi
fi

# 2. Fuzz on a copy of the seeds (never write into the repository).
seed_files=("$seeds"/*)
[ ${#seed_files[@]} -gt 0 ] && cp -f "${seed_files[@]}" "$work/corpus/"
[ ${#regs[@]} -gt 0 ] && cp -f "${regs[@]}" "$work/corpus/"
echo "run.sh: $name: fuzzing for ${secs}s" >&2
status=0
"$bin" "${limits[@]}" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$tmp/crashes/" "$@" "$work/corpus" || status=$?
found=("$tmp"/crashes/*)
if [ "$status" -ne 0 ] || [ ${#found[@]} -gt 0 ]; then
    fail "fuzzer failed (exit $status, ${#found[@]} input(s) saved)"
fi
echo "run.sh: $name: clean" >&2
