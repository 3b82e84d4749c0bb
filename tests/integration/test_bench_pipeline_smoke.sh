#!/usr/bin/env bash
# bench/pipeline.sh (issue 13's targets in one run) must keep working as the code under it
# changes: QUICK=1 runs every part with tiny counts (~20 s) and this checks that each target's
# row is in the summary with a figure and a verdict, and that the Markdown file written is what
# was printed. Figures are not asserted: they mean nothing at these counts.
. "$(dirname "$0")/lib.sh"

missing=
for x in wrk gcc pkg-config python3 sqlite3 curl column timeout; do
    command -v "$x" >/dev/null || missing="$missing $x"
done
[ -x "$OBX_BUILD_DIR/curl_floor" ] || missing="$missing $OBX_BUILD_DIR/curl_floor"
if [ -n "$missing" ]; then
    echo "# skip: bench/pipeline.sh needs$missing"
    finish
    exit
fi

QUICK=1 BUILD=$OBX_BUILD_DIR OUTBOX_BIN=$OUTBOX_BIN MOCK_BIN=$MOCK_BIN BENCH_DIR=$T \
    REPORT=$T/report.md timeout -k 10 300 bash "$SRC/bench/pipeline.sh" >"$T/out.md" 2>"$T/err.txt"
rc=$?
if [ "$rc" = 0 ]; then pass "pipeline.sh QUICK=1 exits 0"; else
    fail "pipeline.sh QUICK=1 exits 0: exit $rc; stderr: $(tail -20 "$T/err.txt")"
fi

summary=$(sed -n '/^### Summary/,$p' "$T/out.md")
for id in a1 a2 b1 b2 c d e f; do
    line=$(grep -E "^\| $id \| " <<< "$summary")
    # | id | target | measured (with a digit) | ratio | pass or **FAIL** |
    if grep -qE "^\| $id \| [^|]+ \| [^|]*[0-9][^|]* \| [0-9.]+ ×[^|]* \| (pass|\*\*FAIL\*\*) \|$" <<< "$line"; then
        pass "summary row $id: $line"
    else
        fail "summary row $id measured and judged: '${line:-missing}'"
    fi
done
for h in "### a." "### b." "### c." "### d." "### e."; do
    assert_contains "section $h printed" "$(grep -F "$h" "$T/out.md")" "$h"
done
assert_eq "the Markdown file holds what was printed" "$(cmp -s "$T/out.md" "$T/report.md" && echo same)" same
assert_contains "plain-text summary on stderr" "$(cat "$T/err.txt")" "bench/pipeline.sh summary"
assert_eq "no benchmark process left running" \
    "$(pgrep -f "$T/" >/dev/null && echo left || echo none)" none
finish
