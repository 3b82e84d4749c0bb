#!/usr/bin/env python3
"""Prints per-file line coverage for lib/ and cmd/ and the totals, from gcovr's JSON summary.

    scripts/coverage-report.py build-cov/coverage-summary.json

`make coverage` writes the summary (gcovr --json-summary) after running the whole ctest suite
in build-cov/; the table is Markdown, so it can be pasted into docs/testing.md as it is.
"""
import json
import sys


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        summary = json.load(f)
    files = sorted(summary["files"], key=lambda e: e["filename"])
    totals = {}
    print("| file | lines | covered | % |")
    print("|---|---:|---:|---:|")
    for e in files:
        name = e["filename"]
        top = name.split("/")[0] + "/"
        if top not in ("lib/", "cmd/"):
            continue
        total, covered = e["line_total"], e["line_covered"]
        t = totals.setdefault(top, [0, 0])
        t[0] += total
        t[1] += covered
        pct = 100.0 * covered / total if total else 100.0
        print(f"| {name} | {total} | {covered} | {pct:.1f} |")
    for top in ("lib/", "cmd/"):
        total, covered = totals.get(top, [0, 0])
        pct = 100.0 * covered / total if total else 0.0
        print(f"| **{top} total** | {total} | {covered} | **{pct:.1f}** |")


if __name__ == "__main__":
    main()
