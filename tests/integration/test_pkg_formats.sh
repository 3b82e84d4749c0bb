#!/usr/bin/env bash
# tests/integration/test_pkg_formats.sh: the formats we publish, checked by the tools their
# consumers use (issue 17).
#
# (a) docs/openapi.yaml is valid OpenAPI 3.1 for an independent validator
#     (@seriousme/openapi-schema-validator's validate-api, installed by install-deps);
#     test_openapi.sh compares it with the router both ways.
# (b) A live /metrics scrape (serve + mock, messages delivered, so every per-channel and
#     histogram series is there) is parsed by Debian's python3-prometheus-client, passes
#     `promtool check metrics` (the promlint rules), and every name follows the Prometheus
#     conventions (counters _total, durations _seconds, sizes _bytes, base units only).
# (c) contrib/prometheus/alerts.yml passes `promtool check rules` and its unit tests
#     (alerts_test.yml); every expression of contrib/grafana/outbox.json parses as PromQL;
#     every outbox_* metric either file uses exists in the live scrape.
# Each checker is also fed a broken input and must reject it.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_pkg_formats.sh
. "$(dirname "$0")/lib.sh"

hermetic_env
# Debian's interpreter, where python3-prometheus-client lives (python3 on PATH may be another).
PY=/usr/bin/python3
need() { command -v "$1" >/dev/null || { fail "$1 is not installed (run scripts/install-deps.sh)"; finish; exit 1; }; }
need validate-api
need promtool
"$PY" -c 'import prometheus_client' 2>/dev/null ||
    { fail "python3-prometheus-client is not installed (run scripts/install-deps.sh)"; finish; exit 1; }

# ---- (a) OpenAPI ------------------------------------------------------------------------------
# validate-api exits 0 either way and prints {"valid": true|false, "errors": [...]}.
openapi_valid() {
    validate-api "$1" >"$T/oas.out" 2>&1
    "$PY" -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["valid"] is True else 1)' "$T/oas.out"
}
if openapi_valid "$SRC/docs/openapi.yaml"; then pass "openapi.yaml: valid OpenAPI 3.1 (validate-api)"; else
    fail "openapi.yaml is not valid OpenAPI: $(head -c 1500 "$T/oas.out")"
fi
sed 's/^openapi: 3\.1\.0$/openapi: 3.1.0\nservers: not-a-list/' "$SRC/docs/openapi.yaml" >"$T/oas-bad1.yaml"
! openapi_valid "$T/oas-bad1.yaml" && pass "validator rejects a bad servers member" || fail "validator accepted servers: not-a-list"
sed 's/^\(  *\)responses:$/\1responsez:/' "$SRC/docs/openapi.yaml" >"$T/oas-bad2.yaml"
! openapi_valid "$T/oas-bad2.yaml" && pass "validator rejects operations without responses" || fail "validator accepted responsez"

# ---- (b) a live scrape ------------------------------------------------------------------------
start_mock --rate-limit 0
start_serve --rate-limit 0
wait_until 10 'grep -q " api_port=[1-9]" "$T/serve.log"' || { fail "serve logged no api_port"; finish; exit 1; }
API=http://127.0.0.1:$(sed -n 's/.* api_port=\([0-9]*\).*/\1/p' "$T/serve.log" | head -1)
for i in 1 2 3; do
    curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' "$API/v1/messages" -d \
        "{\"channel_id\":\"ch-$i\",\"external_message_id\":\"m$i\",\"business_id\":\"b\",\"external_conversation_id\":\"c\",\"content\":\"hi\",\"sender_type\":\"User\"}"
done
wait_until 15 '[ "$(count_state accepted)" = 3 ]' || fail "messages were not delivered"
curl -fsS "$API/metrics" >"$T/metrics.txt"
assert_ge "scrape has samples" "$(grep -vc '^#' "$T/metrics.txt")" 50

cat >"$T/prom_parse.py" <<'PY'
"""prom_parse.py FILE: parse with prometheus_client's text parser; every # TYPE family must
come out of it with its type and at least one sample."""
import re, sys
from prometheus_client.parser import text_string_to_metric_families
text = open(sys.argv[1], encoding="utf-8").read()
declared = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
parsed = {}
for fam in text_string_to_metric_families(text):
    parsed[fam.name + ("_total" if fam.type == "counter" else "")] = (fam.type, len(fam.samples))
bad = [n for n, t in declared.items() if n not in parsed or parsed[n][0] != t or parsed[n][1] == 0]
if bad:
    sys.exit("families missing, mistyped or empty after parsing: %s" % bad)
print("%d families" % len(parsed))
PY
if "$PY" "$T/prom_parse.py" "$T/metrics.txt" >"$T/pp.out" 2>&1; then
    pass "prometheus_client parses the scrape ($(cat "$T/pp.out"))"
else
    fail "prometheus_client: $(tail -3 "$T/pp.out")"
fi
printf '# TYPE outbox_x gauge\noutbox_x{a="1"} one\n' >"$T/broken.txt"
! "$PY" "$T/prom_parse.py" "$T/broken.txt" >/dev/null 2>&1 && pass "prometheus_client rejects a broken sample" ||
    fail "prometheus_client accepted a broken sample"

if promtool check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1 && [ ! -s "$T/promtool.out" ]; then
    pass "promtool check metrics: no problem"
else
    fail "promtool check metrics: $(head -20 "$T/promtool.out")"
fi
printf '# HELP outbox_sent Sent.\n# TYPE outbox_sent counter\noutbox_sent 1\n' >"$T/lint.txt"
! promtool check metrics <"$T/lint.txt" >/dev/null 2>&1 && pass "promtool rejects a counter without _total" ||
    fail "promtool accepted a counter without _total"

# Naming conventions (https://prometheus.io/docs/practices/naming/), stricter than promlint.
cat >"$T/names.py" <<'PY'
"""names.py FILE: prints one line per naming problem; exit 1 when there is one that is not
a known exception."""
import re, sys
# Known exceptions: names that break a rule below and are kept for now, each with why.
# None today. A rename goes into lib/server.c (render_metrics) or lib/metrics.c, the docs
# and contrib/ (alerts, dashboard) in the same commit.
KNOWN_EXCEPTIONS = {}
NON_BASE = {"milliseconds", "millis", "ms", "microseconds", "us", "nanoseconds", "ns",
            "minutes", "hours", "days", "kilobytes", "kb", "kib", "megabytes", "mb", "mib",
            "gigabytes", "gb", "gib", "percent", "percentage", "bits"}
TIME_WORDS = {"age", "duration", "latency", "time", "timeout", "uptime", "delay", "lag"}
SIZE_WORDS = {"size", "bytes"}
text = open(sys.argv[1], encoding="utf-8").read()
problems = []
for name, typ in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
    words = name.split("_")
    why = []
    if not re.fullmatch(r"outbox_[a-z0-9_]+", name):
        why.append("not outbox_ snake_case")
    if typ == "counter" and not name.endswith("_total"):
        why.append("counter without _total")
    if typ != "counter" and name.endswith("_total"):
        why.append("_total on a %s" % typ)
    if NON_BASE & set(words):
        why.append("not a base unit (%s)" % ", ".join(sorted(NON_BASE & set(words))))
    base = name[:-len("_total")] if name.endswith("_total") else name
    if TIME_WORDS & set(words) and not base.endswith("_seconds"):
        why.append("a time without _seconds")
    if SIZE_WORDS & set(words) and not base.endswith("_bytes"):
        why.append("a size without _bytes")
    if why:
        problems.append((name, "; ".join(why)))
fatal = 0
for name, why in problems:
    known = name in KNOWN_EXCEPTIONS
    print("%s %s: %s" % ("known" if known else "BAD", name, why))
    fatal += not known
sys.exit(1 if fatal else 0)
PY
if "$PY" "$T/names.py" "$T/metrics.txt" >"$T/names.out" 2>&1; then
    pass "metric names follow the conventions"
    sed 's/^/# /' "$T/names.out"
else
    fail "metric names: $(cat "$T/names.out")"
fi
printf '# TYPE outbox_queue_age gauge\n# TYPE outbox_latency_ms gauge\n# TYPE outbox_db_size gauge\n' >"$T/badnames.txt"
"$PY" "$T/names.py" "$T/badnames.txt" >"$T/badnames.out" 2>&1
assert_eq "naming check flags _seconds, base units and _bytes" "$(grep -c '^BAD' "$T/badnames.out")" 3

# ---- (c) alert rules and dashboard ------------------------------------------------------------
PROM=$SRC/contrib/prometheus
DASH=$SRC/contrib/grafana/outbox.json
assert_status "promtool check rules alerts.yml" 0 promtool check rules "$PROM/alerts.yml"
if (cd "$PROM" && promtool test rules alerts_test.yml) >"$T/rtest.out" 2>&1; then
    pass "promtool test rules alerts_test.yml"
else
    fail "promtool test rules: $(grep -v '^$' "$T/rtest.out" | head -30)"
fi
# Every dashboard query parses as PromQL: each becomes a recording rule for promtool.
"$PY" - "$DASH" >"$T/dash_rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
assert exprs and all(exprs), "a panel without a query"
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    print("      - record: dashboard_query_%d\n        expr: %s" % (i, json.dumps(e.replace("$instance", ".*"))))
PY
assert_status "dashboard: every query parses (promtool check rules)" 0 promtool check rules "$T/dash_rules.yml"
assert_ge "dashboard: queries" "$(grep -c 'record:' "$T/dash_rules.yml")" 10
# Every outbox_* name the rules and the dashboard use is in the live scrape.
cat >"$T/used.py" <<'PY'
"""used.py SCRAPE FILE...: prints the outbox_* names the files use that the scrape lacks."""
import re, sys
text = open(sys.argv[1], encoding="utf-8").read()
fams = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
def known(n):
    if n in fams:
        return True
    for suf in ("_bucket", "_sum", "_count"):
        if n.endswith(suf) and fams.get(n[: -len(suf)]) == "histogram":
            return True
    return False
used = set()
for f in sys.argv[2:]:
    used |= set(re.findall(r"\boutbox_[a-z0-9_]*[a-z0-9]", open(f, encoding="utf-8").read()))
missing = sorted(n for n in used if not known(n))
print(" ".join(missing) if missing else "none", "(%d names used)" % len(used))
PY
out=$("$PY" "$T/used.py" "$T/metrics.txt" "$PROM/alerts.yml" "$PROM/alerts_test.yml" "$DASH")
assert_contains "alerts and dashboard use only scraped metrics: $out" "$out" "none "
sed 's/outbox_wal_size_bytes/outbox_wal_bytes/' "$DASH" >"$T/dash-bad.json"
assert_contains "a misspelled metric is caught" \
    "$("$PY" "$T/used.py" "$T/metrics.txt" "$T/dash-bad.json")" "outbox_wal_bytes"

finish
