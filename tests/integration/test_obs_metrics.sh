#!/usr/bin/env bash
# GET /metrics on the producer API: bearer token, a strict check of the whole exposition
# (prom_check.py, Prometheus text format 0.0.4), and counters that move with real traffic:
# attempts by status, messages by channel and state, API results, the latency histogram,
# and label escaping of a channel id holding a quote and a backslash.
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

PROM_DIR="$(cd "$(dirname "$0")" && pwd)"
PROM_CHECK="$PROM_DIR/prom_check.py"
TOKEN=tok-metrics-42-secret

# metrics [CURL OPTIONS]: GET /metrics into $T/metrics.txt (headers in $T/metrics.hdr);
# prints the HTTP status.
metrics() {
    curl -sS -o "$T/metrics.txt" -D "$T/metrics.hdr" -w '%{http_code}' "$@" "$API/metrics"
}
auth_metrics() { metrics -H "Authorization: Bearer $TOKEN"; }
# mvals --get NAME [LABEL=VALUE ...] [--get ...]: checks $T/metrics.txt strictly, then sets
# V[0..] to the value of each series ("absent" when missing; "INVALID" when the exposition
# is broken). One python run for many values: python starts slowly on a loaded machine.
mvals() {
    local out a n=0
    for a in "$@"; do [ "$a" = --get ] && n=$((n + 1)); done
    out=$(python3 "$PROM_CHECK" "$@" <"$T/metrics.txt" 2>"$T/prom_check.err") || out=INVALID
    mapfile -t V <<<"$out"
    while [ "${#V[@]}" -lt "$n" ]; do V+=(INVALID); done
}
zero_if_absent() { if [ "$1" = absent ]; then echo 0; else echo "$1"; fi; }
# has_line LINE: the exact sample line is in $T/metrics.txt (for cheap polling).
has_line() { grep -Fxq -- "$1" "$T/metrics.txt"; }
# post_messages JSON: POST /v1/messages with the token; prints the HTTP status.
post_messages() {
    curl -sS -o "$T/post.out" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
        -H 'Content-Type: application/json' -d "$1" "$API/v1/messages"
}
# msgs_json PREFIX N [CHANNEL_JSON]: a batch of N messages in distinct conversations.
msgs_json() {
    local prefix=$1 n=$2 ch=${3:-'"ch"'} sep=''
    printf '{"messages":['
    for i in $(seq 1 "$n"); do
        printf '%s{"channel_id":%s,"external_message_id":"%s%d","business_id":"b1","external_conversation_id":"%s-c%d","content":"hello %d","sender_type":"Consumer"}' \
            "$sep" "$ch" "$prefix" "$i" "$prefix" "$i" "$i"
        sep=,
    done
    printf ']}'
}

# ---- the checker itself ---------------------------------------------------------------------
assert_status "prom_check.py --self-test rejects every broken sample" 0 \
    python3 "$PROM_CHECK" --self-test

start_mock --rate-limit 0
OUTBOX_API_TOKEN=$TOKEN start_serve --rate-limit 0 --retry-base 100ms --retry-cap 300ms
wait_until 10 '[ -n "$(serve_port api)" ]' || { echo "no serving line"; cat "$T/serve.log"; exit 1; }
API=http://127.0.0.1:$(serve_port api)
wait_until 10 'curl -fsS -o /dev/null "$API/healthz"' || { echo "api not up"; exit 1; }

# ---- authentication -----------------------------------------------------------------------
assert_eq "/metrics without a token: 401" "$(metrics)" 401
assert_eq "/metrics with a wrong token: 401" "$(metrics -H 'Authorization: Bearer nope')" 401
assert_eq "/metrics with a token of another scheme: 401" \
    "$(metrics -H "Authorization: Basic $TOKEN")" 401
assert_eq "/metrics with the token: 200" "$(auth_metrics)" 200
ctype=$(tr -d '\r' <"$T/metrics.hdr" | sed -n 's/^[Cc]ontent-[Tt]ype: *//p')
assert_contains "Content-Type is text/plain" "$ctype" "text/plain"
assert_contains "Content-Type names version 0.0.4" "$ctype" "version=0.0.4"

# ---- the whole exposition, strictly, before any traffic ------------------------------------
cp "$T/metrics.txt" "$T/metrics.idle"
mvals --get outbox_delivery_attempts_total status=200 \
    --get outbox_api_messages_total result=accepted \
    --get outbox_api_messages_total result=duplicate \
    --get outbox_delivery_request_duration_seconds_count \
    --get outbox_process_start_time_seconds
assert_eq "idle exposition passes prom_check" "$(cat "$T/prom_check.err" 2>/dev/null)" ""
base_200=$(zero_if_absent "${V[0]}")
base_api=$(zero_if_absent "${V[1]}")
base_dup=$(zero_if_absent "${V[2]}")
base_cnt=$(zero_if_absent "${V[3]}")
assert_eq "idle: no request yet in the histogram" "$base_cnt" 0
assert_eq "process start time is within the last minute (${V[4]})" \
    "$(awk -v s="${V[4]}" -v now="$(date +%s)" 'BEGIN { print (s + 0 > 0 && now - 60 <= s && s <= now + 1) ? 1 : 0 }')" 1
for fam in outbox_delivery_attempts_total outbox_delivery_request_duration_seconds \
    outbox_messages outbox_api_messages_total outbox_process_start_time_seconds; do
    assert_eq "family $fam has one TYPE line" "$(grep -c "^# TYPE $fam " "$T/metrics.idle")" 1
done

# The checker really looks at this output: mutations of it must each be rejected.
mutate() { # NAME SED-SCRIPT
    NMUT=$((NMUT + 1))
    sed "$2" "$T/metrics.idle" >"$T/mut.$NMUT"
    echo "$1" >"$T/mut.$NMUT.name"
}
NMUT=0
mutate "a duplicated sample" '/^outbox_circuit_state{state="open"}/p'
mutate "a second TYPE line" '/^# TYPE outbox_messages /p'
mutate "a HELP line dropped" '/^# HELP outbox_inflight_requests /d'
mutate "a sample moved after another family" '/^outbox_inflight_requests /{h;d};$G'
mutate "a non-cumulative bucket" 's/^\(outbox_delivery_request_duration_seconds_bucket{le="0.005"}\) .*/\1 7/'
mutate "the +Inf bucket dropped" '/_bucket{le="+Inf"}/d'
mutate "an unescaped quote" 's/^outbox_circuit_state{state="open"}/outbox_circuit_state{state="op"en"}/'
mutate "a counter renamed without _total" 's/outbox_api_requests_total/outbox_api_requests/g'
mutate "a value that is not a float" 's/^outbox_inflight_requests .*/outbox_inflight_requests zero/'
mutate "no final newline" ''
head -c -1 "$T/metrics.idle" >"$T/mut.$NMUT"
python3 - "$PROM_DIR" "$T" "$NMUT" >"$T/mut.out" 2>&1 <<'EOF'
import sys
sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, sys.argv[1])
import prom_check
t, n = sys.argv[2], int(sys.argv[3])
idle = open(t + "/metrics.idle", "rb").read()
for i in range(1, n + 1):
    name = open("%s/mut.%d.name" % (t, i)).read().strip()
    data = open("%s/mut.%d" % (t, i), "rb").read()
    if data == idle:
        print("%s: the mutation changed nothing" % name)
        continue
    try:
        prom_check.Checker().check(data)
        print("%s: accepted" % name)
    except prom_check.Violation as e:
        print("%s: rejected (%s)" % (name, e))
EOF
assert_eq "ten mutations made" "$NMUT" 10
for i in $(seq 1 "$NMUT"); do
    name=$(cat "$T/mut.$i.name")
    assert_contains "prom_check rejects the real output with $name" "$(grep -F "$name:" "$T/mut.out")" \
        "$name: rejected"
done

# ---- traffic: N messages over the API, all delivered ----------------------------------------
N=7
assert_eq "POST of $N messages: 202" "$(post_messages "$(msgs_json m $N)")" 202
wait_until 30 '[ "$(count_state accepted)" = $N ]'
assert_eq "all $N accepted" "$(count_state accepted)" "$N"
assert_eq "a repeated message: 202" "$(post_messages "$(msgs_json m 1)")" 202
wait_until 20 '[ "$(auth_metrics)" = 200 ] &&
    has_line "outbox_delivery_attempts_total{status=\"200\"} $((base_200 + N))"'
mvals --get outbox_delivery_attempts_total status=200 \
    --get outbox_delivery_outcomes_total outcome=accepted \
    --get outbox_messages channel=ch state=accepted \
    --get outbox_messages channel=ch state=queued \
    --get outbox_api_messages_total result=accepted \
    --get outbox_api_messages_total result=duplicate \
    --get outbox_delivery_attempts_total status=500 \
    --get outbox_delivery_request_duration_seconds_count \
    --get outbox_delivery_request_duration_seconds_bucket le=+Inf \
    --get outbox_delivery_request_duration_seconds_sum
assert_eq "exposition after traffic passes prom_check" "$(cat "$T/prom_check.err" 2>/dev/null)" ""
assert_eq "attempts{status=200} grew by $N" "${V[0]}" $((base_200 + N))
assert_eq "outcomes{accepted} = $N" "${V[1]}" "$N"
assert_eq "messages{ch,accepted} = $N" "${V[2]}" "$N"
assert_eq "messages{ch,queued} = 0" "${V[3]}" 0
assert_eq "api_messages{accepted} grew by $N" "${V[4]}" $((base_api + N))
assert_eq "api_messages{duplicate} grew by 1" "${V[5]}" $((base_dup + 1))
assert_eq "no status 500 yet" "${V[6]}" absent
assert_eq "histogram _count grew by $N" "${V[7]}" $((base_cnt + N))
assert_eq "histogram +Inf bucket = _count" "${V[8]}" "${V[7]}"
db_sum=$(sql "$DB" "SELECT sum(duration_ms) FROM attempts")
assert_eq "histogram _sum (${V[9]} s) is the recorded durations ($db_sum ms, 1 ms per request)" \
    "$(awk -v s="${V[9]}" -v d="$db_sum" -v n="$N" 'BEGIN { x = s * 1000 - d; if (x < 0) x = -x; print (x <= n + 1) ? 1 : 0 }')" 1

# ---- a 500 appears under its own status --------------------------------------------------------
mock_post faults '{"script":[500]}' >/dev/null
assert_eq "POST of one more: 202" "$(post_messages "$(msgs_json five 1)")" 202
wait_until 30 '[ "$(count_state accepted)" = $((N + 1)) ]'
wait_until 20 '[ "$(auth_metrics)" = 200 ] && has_line "outbox_delivery_attempts_total{status=\"500\"} 1"'
mvals --get outbox_delivery_attempts_total status=500 \
    --get outbox_delivery_attempts_total status=200 \
    --get outbox_delivery_outcomes_total outcome=retry \
    --get outbox_delivery_request_duration_seconds_count
assert_eq "exposition with a 500 passes prom_check" "$(cat "$T/prom_check.err" 2>/dev/null)" ""
assert_eq "attempts{status=500} = 1" "${V[0]}" 1
assert_eq "attempts{status=200} grew by $((N + 1))" "${V[1]}" $((base_200 + N + 1))
assert_eq "outcomes{retry} = 1" "${V[2]}" 1
assert_eq "histogram _count counts the 500 too" "${V[3]}" $((base_cnt + N + 2))

# ---- a channel id with a quote and a backslash ---------------------------------------------
# JSON "q\"uo\\te" is the channel id q"uo\te; on the wire: channel="q\"uo\\te".
# JSON "a\\b" is a\b; on the wire: channel="a\\b".
assert_eq "POST to channel q\"uo\\te: 202" "$(post_messages "$(msgs_json esc 2 '"q\"uo\\te"')")" 202
assert_eq "POST to channel a\\b: 202" "$(post_messages "$(msgs_json bs 1 '"a\\b"')")" 202
wait_until 30 '[ "$(count_state accepted)" = $((N + 4)) ]'
assert_eq "escaped channels delivered" "$(sql "$DB" "SELECT group_concat(channel_id, ' ') FROM (SELECT DISTINCT channel_id FROM outbox WHERE channel_id <> 'ch' ORDER BY 1)")" 'a\b q"uo\te'
assert_eq "metrics: 200" "$(auth_metrics)" 200
mvals --get outbox_messages 'channel=q"uo\te' state=accepted \
    --get outbox_messages 'channel=a\b' state=accepted \
    --get outbox_inflight_requests \
    --get outbox_circuit_state state=closed \
    --get outbox_sending_paused reason=auth \
    --get outbox_database_size_bytes \
    --get outbox_wal_size_bytes
assert_eq "exposition with escaped channels passes prom_check" "$(cat "$T/prom_check.err" 2>/dev/null)" ""
assert_eq "messages{channel=q\"uo\\te,accepted} = 2 after unescaping" "${V[0]}" 2
assert_eq "messages{channel=a\\b,accepted} = 1 after unescaping" "${V[1]}" 1
assert_eq "raw line escapes the quote and the backslash" \
    "$(grep -Fxc 'outbox_messages{channel="q\"uo\\te",state="accepted"} 2' "$T/metrics.txt")" 1
assert_eq "raw line escapes a lone backslash" \
    "$(grep -Fxc 'outbox_messages{channel="a\\b",state="accepted"} 1' "$T/metrics.txt")" 1
assert_eq "every channel label is escaped (unconfirmed gauge too)" \
    "$(grep -Fxc 'outbox_unconfirmed_messages{channel="q\"uo\\te"} 0' "$T/metrics.txt")" 1

# ---- gauges follow the process and the database ---------------------------------------------
assert_eq "inflight is 0 when idle" "${V[2]}" 0
assert_eq "circuit closed" "${V[3]}" 1
assert_eq "not paused for auth" "${V[4]}" 0
# WAL mode: the main file lags behind; the gauge is the logical size (pages x page size).
assert_eq "database_size_bytes is page_count x page_size" "${V[5]}" \
    "$(sql "$DB" "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")"
assert_eq "wal_size_bytes is a byte count > 0 in WAL mode" "$([ "${V[6]}" -gt 0 ] 2>/dev/null && echo yes)" yes

# ---- a row written by plain SQL with a channel id that is not UTF-8 ---------------------------
# The SQL contract lets producers INSERT directly and SQLite does not check UTF-8
# (docs/schema.md). One such row must not make the whole exposition invalid: Prometheus
# refuses a scrape with a label value that is not UTF-8.
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES (CAST(X'6261642DFF' AS TEXT), 'raw-1', 'b1', 'raw-c', 'x', 'User')"
wait_until 20 '[ "$(count_state accepted)" = $((N + 5)) ]'
assert_eq "metrics with a non-UTF-8 channel id: 200" "$(auth_metrics)" 200
python3 "$PROM_CHECK" "$T/metrics.txt" >"$T/prom_check.raw" 2>&1
rc=$?
assert_eq "exposition stays valid UTF-8 with a non-UTF-8 channel id in the database ($(cat "$T/prom_check.raw"))" "$rc" 0

kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
finish
