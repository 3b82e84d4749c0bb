#!/usr/bin/env bash
# `outbox status` reports what serve publishes: running with its pid, the auth pause while
# Partoo answers 401 (human output and --json, consistent with /metrics), the last error per
# channel, and "serve: not running" once serve has stopped.
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

PROM_CHECK="$(cd "$(dirname "$0")" && pwd)/prom_check.py"
status_txt() { "$OUTBOX_BIN" status --db "$DB" 2>&1; }
status_json() { "$OUTBOX_BIN" status --db "$DB" --json 2>&1; }

# ---- before serve ever ran ----------------------------------------------------------------
enqueue_n 3 st
assert_contains "no serve yet: not running" "$(status_txt)" "serve: not running"
assert_eq "no serve yet: not paused" "$(jget "$(status_json)" '$.paused')" ""

# ---- serve with a key Partoo refuses ----------------------------------------------------------
start_mock --rate-limit 0 --api-keys good
API_KEY=bad-key start_serve --rate-limit 0 --auth-probe-interval 60s
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 401")" -ge 1 ]'
wait_until 5 'status_txt | grep -q PAUSED'
txt=$(status_txt)
assert_contains "human status: running with serve's pid" "$txt" "serve: running (pid $SERVE_PID,"
assert_contains "human status: sending PAUSED (auth)" "$txt" "sending PAUSED (auth)"
assert_contains "human status: the 401 is the last error" "$txt" "401"
js=$(status_json)
assert_eq "status --json: paused.reason = auth" "$(jget "$js" '$.paused.reason')" auth
assert_eq "status --json: channel ch paused.reason = auth" \
    "$(jget "$js" '$.channels[0].channel_id') $(jget "$js" '$.channels[0].paused.reason')" "ch auth"
assert_eq "status --json: 3 queued" "$(jget "$js" '$.counts.queued')" 3
assert_eq "status --json: nothing failed" "$(jget "$js" '$.counts.failed')" 0
until=$(jget "$js" '$.paused.until')
assert_eq "status --json: paused.until is the next probe, about 60 s ahead ($until)" \
    "$(python3 -c "
import datetime, sys, time
try:
    t = datetime.datetime.strptime('$until'.replace('Z', '+0000'), '%Y-%m-%dT%H:%M:%S.%f%z')
except ValueError:
    t = datetime.datetime.strptime('$until'.replace('Z', '+0000'), '%Y-%m-%dT%H:%M:%S%z')
print(int(30 <= t.timestamp() - time.time() <= 61))")" 1

API=http://127.0.0.1:$(serve_port api)
curl -sS "$API/metrics" >"$T/metrics.txt"
assert_eq "/metrics agrees: paused for auth" \
    "$(python3 "$PROM_CHECK" --get outbox_sending_paused reason=auth <"$T/metrics.txt")" 1
assert_eq "/v1/stats agrees: paused for auth" \
    "$(jget "$(curl -sS "$API/v1/stats")" '$.paused.reason')" auth

# ---- stopped ------------------------------------------------------------------------------
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
txt=$(status_txt)
assert_contains "after stop: serve: not running" "$txt" "serve: not running"
assert_not_contains "after stop: no PAUSED" "$txt" "PAUSED"
assert_eq "after stop: status --json no longer paused" "$(jget "$(status_json)" '$.paused')" ""
assert_eq "after stop: status still exits 0" "$("$OUTBOX_BIN" status --db "$DB" >/dev/null 2>&1; echo $?)" 0

finish
