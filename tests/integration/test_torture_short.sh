#!/usr/bin/env bash
# Crash torture, short CI variant (tests/torture/torture.sh): 8 SIGKILLs of `outbox serve` in
# 50 s of mixed load (HTTP, SQL and CLI producers, 20 % injected 5xx, echoed and genuine signed
# webhooks, forgeries), then a final drain and the invariants of SPEC §3 and §8. <= 90 s.
# The long variant is bench/torture_long.sh.
exec bash "$(dirname "$0")/../torture/torture.sh" --kills "${TORTURE_KILLS:-8}" \
    --duration "${TORTURE_DURATION:-50}" --drain-timeout 30 "$@"
