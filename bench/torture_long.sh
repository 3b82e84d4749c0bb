#!/usr/bin/env bash
# Crash torture, long variant: tests/torture/torture.sh with 40 SIGKILLs (max_inflight 16) of `outbox serve`
# over 300 s of mixed load (HTTP, SQL and CLI producers, 20 % injected 5xx with changing
# delays, echoed and genuine signed webhooks, forgeries), then the invariants of SPEC §3/§8.
#
#   bench/torture_long.sh [--kills N] [--duration S] [--rounds R] [--inflight N]
#
# Each round uses another random seed (printed, so a failure can be replayed with
# tests/torture/torture.sh --seed N). TORTURE_REPORT=FILE appends one line per round.
# Exit status 0 when every round passed.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export OUTBOX_BIN=${OUTBOX_BIN:-$ROOT/build/outbox}
export OBX_BUILD_DIR=${OBX_BUILD_DIR:-$(dirname "$OUTBOX_BIN")}
KILLS=40 DURATION=300 ROUNDS=1 INFLIGHT=16 # 16 = the default max_inflight
while [ $# -gt 0 ]; do
    case $1 in
        --kills) KILLS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --inflight) INFLIGHT=$2; shift 2 ;;
        *) echo "usage: $0 [--kills N] [--duration S] [--rounds R] [--inflight N]"; exit 2 ;;
    esac
done
failed=0
for r in $(seq 1 "$ROUNDS"); do
    seed=$(( $(date +%s) % 100000 + r ))
    echo "==== round $r/$ROUNDS: $KILLS kills in ${DURATION}s, seed $seed"
    bash "$ROOT/tests/torture/torture.sh" --kills "$KILLS" --duration "$DURATION" \
        --inflight "$INFLIGHT" --seed "$seed" --drain-timeout 180 || failed=$((failed + 1))
done
echo "torture_long: $((ROUNDS - failed)) of $ROUNDS rounds passed"
[ "$failed" = 0 ]
