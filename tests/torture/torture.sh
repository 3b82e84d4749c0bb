#!/usr/bin/env bash
# Crash torture: `outbox serve` is killed with SIGKILL at random moments and restarted while
#   - HTTP producers POST /v1/messages (single and batch), recording every key answered 202,
#   - a SQL producer INSERTs through the SQL contract (sqlite3), recording committed keys,
#   - a CLI producer runs `outbox enqueue`, recording keys of exit status 0,
#   - the mock answers 20 % of requests 500 with a changing small delay and echoes every
#     accepted message as a signed message_created webhook (redeliveries too),
#   - a webhook sender posts genuine replies (recorded when answered 200) and forgeries.
# After the last restart and a final drain (faults off), the invariants of SPEC §3 and §8:
#   every acknowledged key is in the DB, every DB key reached the mock (same key sets),
#   deliveries the DB never recorded <= max_inflight x kills, nothing left in `sending`,
#   every message confirmed, every stored webhook processed, every acknowledged reply in the
#   inbox, no forgery stored, per-conversation order of first deliveries, PRAGMA
#   integrity_check ok, `outbox audit verify` exit 0, serve never died on its own.
#
# usage: torture.sh [--kills N] [--duration S] [--inflight N] [--seed N] [--drain-timeout S]
# (or the environment: TORTURE_KILLS, TORTURE_DURATION, TORTURE_INFLIGHT, TORTURE_SEED).
# TORTURE_REPORT=FILE appends one line of figures to FILE.
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/common.sh"

KILLS=${TORTURE_KILLS:-8}
DURATION=${TORTURE_DURATION:-45}
INFLIGHT=${TORTURE_INFLIGHT:-8}
RSEED=${TORTURE_SEED:-$$}
DRAIN_TIMEOUT=${TORTURE_DRAIN_TIMEOUT:-60}
while [ $# -gt 0 ]; do
    case $1 in
        --kills) KILLS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --inflight) INFLIGHT=$2; shift 2 ;;
        --seed) RSEED=$2; shift 2 ;;
        --drain-timeout) DRAIN_TIMEOUT=$2; shift 2 ;;
        *) echo "usage: $0 [--kills N] [--duration S] [--inflight N] [--seed N] [--drain-timeout S]"; exit 2 ;;
    esac
done
RANDOM=$RSEED
NCONV=40
echo "torture: kills=$KILLS duration=${DURATION}s max_inflight=$INFLIGHT seed=$RSEED dir=$T"

torture_private_bins
WH_PORT=$(free_port)
API_PORT=$(free_port)
WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo
API=http://127.0.0.1:$API_PORT

start_mock --rate-limit 0 --webhook-url "$WH_URL" --webhook-seed "$SEED" --echo \
    --echo-redeliveries --error-rate 0.2 --delay-ms 3 --seed "$RSEED"
PUB=$(mock_pubkey) || exit 1

SERVE_OPTS=(--webhook-listen "127.0.0.1:$WH_PORT" --api-listen "127.0.0.1:$API_PORT"
    --webhook-public-key "$PUB" --rate-limit 0 --max-inflight "$INFLIGHT"
    --retry-base 50ms --retry-cap 500ms --confirm-timeout 2s --max-resends 20
    --log-level warn)
STARTS=0
serve_up() {
    STARTS=$((STARTS + 1))
    echo "---- start $STARTS" >>"$T/serve.log"
    start_serve "${SERVE_OPTS[@]}"
}
serve_up
wait_until 10 'curl -fsS -o /dev/null "$API/healthz"' || { echo "api not up"; cat "$T/serve.log"; exit 1; }

: >"$T/keys.http"; : >"$T/keys.sql"; : >"$T/keys.cli"; : >"$T/replies.ok"; : >"$T/forged.ok"
rm -f "$T/stop"

# ---- producers ------------------------------------------------------------------------------
msg_json() { # KEY CONV
    printf '{"channel_id":"ch","external_message_id":"%s","business_id":"b%d","external_conversation_id":"c%d","content":"torture %s","sender_type":"Consumer"}' \
        "$1" $(( $2 % 3 )) "$2" "$1"
}
http_producer() { # ID
    local i=0 key code conv body keys
    RANDOM=$((RSEED + $1))
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        if [ $((i % 7)) = 0 ]; then # a batch of 4
            body='{"messages":['
            keys=()
            for j in 1 2 3 4; do
                key=h$1-$i-$j
                keys+=("$key")
                [ "$j" = 1 ] || body+=,
                body+=$(msg_json "$key" $((RANDOM % NCONV)))
            done
            body+=']}'
            code=$(curl -sS -m 5 -o "$T/hp$1.out" -w '%{http_code}' -X POST \
                -H 'Content-Type: application/json' -d "$body" "$API/v1/messages" 2>/dev/null)
            if [ "$code" = 202 ] && ! grep -q '"error"' "$T/hp$1.out"; then
                printf '%s\n' "${keys[@]}" >>"$T/keys.http"
            fi
        else
            key=h$1-$i
            code=$(curl -sS -m 5 -o /dev/null -w '%{http_code} %{time_total}' -X POST \
                -H 'Content-Type: application/json' -d "$(msg_json "$key" $((RANDOM % NCONV)))" \
                "$API/v1/messages" 2>/dev/null)
            echo "$code" >>"$T/http_times"
            code=${code%% *}
            [ "$code" = 202 ] && echo "$key" >>"$T/keys.http"
        fi
        echo "$code" >>"$T/http_codes"
        sleep 0.0$((RANDOM % 3 + 1))
    done
}
sql_producer() {
    local i=0 conv
    RANDOM=$((RSEED + 100))
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        conv=$((RANDOM % NCONV))
        if [ $((i % 5)) = 0 ]; then # three rows in one producer transaction
            if sqlite3 -batch -bail -cmd ".timeout 5000" "$DB" "BEGIN IMMEDIATE;
                INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 's-$i-1', 'b1', 'c$conv', 'sql $i 1', 'Consumer');
                INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, consumer_name) VALUES ('ch', 's-$i-2', 'b2', 'c$conv', 'sql $i 2', 'User', 'Ann');
                INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 's-$i-3', 'b0', 'c$(((conv + 1) % NCONV))', 'sql $i 3', 'Consumer');
                COMMIT;" >/dev/null 2>>"$T/sql.err"; then
                printf 's-%d-1\ns-%d-2\ns-%d-3\n' $i $i $i >>"$T/keys.sql"
            fi
        elif sqlite3 -batch -bail -cmd ".timeout 5000" "$DB" \
            "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 's-$i', 'b1', 'c$conv', 'sql $i', 'Consumer')" \
            >/dev/null 2>>"$T/sql.err"; then
            echo "s-$i" >>"$T/keys.sql"
        fi
        sleep 0.0$((RANDOM % 5 + 2))
    done
}
cli_producer() {
    local i=0
    RANDOM=$((RSEED + 200))
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        if "$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id "e-$i" --business b2 \
            --conversation "c$((RANDOM % NCONV))" --content "cli $i" --sender Consumer \
            >/dev/null 2>>"$T/cli.err"; then
            echo "e-$i" >>"$T/keys.cli"
        fi
        sleep 0.0$((RANDOM % 5 + 3))
    done
}
webhook_sender() {
    local i=0 st pid
    RANDOM=$((RSEED + 300))
    while [ ! -e "$T/stop" ]; do
        i=$((i + 1))
        if [ $((i % 4)) = 0 ]; then # a forgery: never stored
            pid=$((900000 + i))
            st=$(jget "$(curl -sS -m 15 -X POST -H 'Content-Type: application/json' \
                -d '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":'$pid',"content":"forged '$i'","forge":'"$([ $((i % 8)) = 0 ] && echo true || echo '"flip"')"'}' \
                "http://127.0.0.1:$MOCK_PORT/_mock/webhook" 2>/dev/null)" '$.status')
            [ "$st" = 200 ] && echo "$pid" >>"$T/forged.ok"
        else # a genuine reply from a Partoo user
            pid=$((500000 + i))
            st=$(jget "$(curl -sS -m 15 -X POST -H 'Content-Type: application/json' \
                -d '{"channel_id":"ch","external_conversation_id":"c'$((RANDOM % NCONV))'","partoo_message_id":'$pid',"content":"reply '$i'","sender_label":"Agent"}' \
                "http://127.0.0.1:$MOCK_PORT/_mock/webhook" 2>/dev/null)" '$.status')
            [ "$st" = 200 ] && echo "$pid" >>"$T/replies.ok"
        fi
        echo "$st" >>"$T/webhook_codes"
        sleep 0.0$((RANDOM % 5 + 5))
    done
}

PROD_PIDS=()
http_producer 1 & PROD_PIDS+=($!)
http_producer 2 & PROD_PIDS+=($!)
http_producer 3 & PROD_PIDS+=($!)
sql_producer & PROD_PIDS+=($!)
cli_producer & PROD_PIDS+=($!)
webhook_sender & PROD_PIDS+=($!)
PIDS+=("${PROD_PIDS[@]}")

# ---- the killer ------------------------------------------------------------------------------
t_start=$(now_ms)
slot_ms=$(( DURATION * 1000 / KILLS ))
died_alone=0
for k in $(seq 1 "$KILLS"); do
    # A random moment in slot k (10 %..100 % into it), so the kills spread over the whole
    # duration; every 4th kill lands instead within 0.4 s of the last start (recovery).
    target=$(( (k - 1) * slot_ms + slot_ms / 10 + (RANDOM * 32768 + RANDOM) % (slot_ms * 9 / 10 + 1) ))
    [ $((k % 4)) = 0 ] && target=$(( $(now_ms) - t_start + RANDOM % 400 ))
    sleep_ms=$(( target - ($(now_ms) - t_start) ))
    [ "$sleep_ms" -gt 0 ] && sleep "$(printf '%d.%03d' $((sleep_ms / 1000)) $((sleep_ms % 1000)))"
    if ! kill -0 "$SERVE_PID" 2>/dev/null; then
        died_alone=$((died_alone + 1))
        echo "serve (start $STARTS) died on its own before kill $k"
    fi
    kill -9 "$SERVE_PID" 2>/dev/null
    wait "$SERVE_PID" 2>/dev/null
    echo "kill $k at $(( $(now_ms) - t_start )) ms; accepted so far $(sql "$DB" "SELECT count(*) FROM outbox WHERE state IN ('accepted','confirmed')")"
    # the mock changes its latency a little between lives
    mock_post faults '{"delay_ms":'$((RANDOM % 20))'}' >/dev/null
    [ $((RANDOM % 2)) = 0 ] && sleep 0.$((RANDOM % 5))
    serve_up
done
# Let the last life run while producers still write, then stop them.
while [ $(( $(now_ms) - t_start )) -lt $((DURATION * 1000)) ]; do sleep 0.5; done
kill -0 "$SERVE_PID" 2>/dev/null || { died_alone=$((died_alone + 1)); echo "serve died on its own in the last life"; }
touch "$T/stop"
for p in "${PROD_PIDS[@]}"; do wait "$p" 2>/dev/null; done

# ---- final drain: faults off ----------------------------------------------------------------
mock_post faults '{"error_rate":0,"delay_ms":0}' >/dev/null
t_drain=$(now_ms)
unfinished() { sql "$DB" "SELECT count(*) FROM outbox WHERE state <> 'confirmed'"; }
wait_until "$DRAIN_TIMEOUT" '[ "$(unfinished)" = 0 ] && [ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
drain_s=$(( ($(now_ms) - t_drain) / 1000 ))
kill -0 "$SERVE_PID" 2>/dev/null || { died_alone=$((died_alone + 1)); echo "serve died on its own during the final drain"; }

# ---- invariants -----------------------------------------------------------------------------
curl -sS "http://127.0.0.1:$MOCK_PORT/_mock/received" >"$T/received.tsv"
mock_get stats >"$T/mock_stats.json"
sql "$DB" "SELECT id, external_conversation_id, external_message_id FROM outbox WHERE channel_id = 'ch' ORDER BY id" >"$T/db_rows.txt"
cat "$T/keys.http" "$T/keys.sql" "$T/keys.cli" | sort >"$T/acked.txt"
n_acked=$(wc -l <"$T/acked.txt")
n_http=$(wc -l <"$T/keys.http"); n_sql=$(wc -l <"$T/keys.sql"); n_cli=$(wc -l <"$T/keys.cli")
n_db=$(sql "$DB" "SELECT count(*) FROM outbox")
cut -d'|' -f3 "$T/db_rows.txt" | sort >"$T/db_keys.txt"
awk -F'\t' '{print $6}' "$T/received.tsv" | sort -u >"$T/mock_keys.txt"
mock_deliveries=$(wc -l <"$T/received.tsv")
mock_unique=$(jget "$(cat "$T/mock_stats.json")" '$.unique')
mock_dups=$(jget "$(cat "$T/mock_stats.json")" '$.duplicates')
db_accepted_attempts=$(sql "$DB" "SELECT count(*) FROM attempts WHERE outcome = 'accepted'")
resends=$(sql "$DB" "SELECT coalesce(sum(resends), 0) FROM outbox")
unrecorded=$(( mock_deliveries - db_accepted_attempts ))
echo "figures: acked=$n_acked (http $n_http, sql $n_sql, cli $n_cli) db=$n_db mock_unique=$mock_unique" \
    "mock_deliveries=$mock_deliveries duplicates=$mock_dups resends=$resends" \
    "unrecorded_deliveries=$unrecorded starts=$STARTS final_drain=${drain_s}s" \
    "http_codes=$(sort "$T/http_codes" | uniq -c | awk '{printf "%s:%s ", $2, $1}')" \
    "webhook_codes=$(sort "$T/webhook_codes" | uniq -c | awk '{printf "%s:%s ", $2, $1}')"

assert_ge "producers got keys acknowledged (http)" "$n_http" 1
assert_ge "producers got keys acknowledged (sql)" "$n_sql" 1
assert_ge "producers got keys acknowledged (cli)" "$n_cli" 1
assert_eq "serve never died on its own" "$died_alone" 0
missing=$(comm -23 "$T/acked.txt" "$T/db_keys.txt" | head -5 | tr '\n' ' ')
assert_eq "every acknowledged key (202 / SQL commit / CLI exit 0) is in the DB" "$missing" ""
assert_eq "no key acknowledged twice" "$(uniq -d "$T/acked.txt" | head -3 | tr '\n' ' ')" ""
assert_eq "mock unique == messages in the DB" "$mock_unique" "$n_db"
assert_eq "mock key set == DB key set (DB only)" "$(comm -23 "$T/db_keys.txt" "$T/mock_keys.txt" | head -5 | tr '\n' ' ')" ""
assert_eq "mock key set == DB key set (mock only)" "$(comm -13 "$T/db_keys.txt" "$T/mock_keys.txt" | head -5 | tr '\n' ' ')" ""
assert_le "deliveries the DB never recorded <= max_inflight x kills" "$unrecorded" $((INFLIGHT * KILLS))
assert_ge "the DB records no delivery the mock did not get" "$unrecorded" 0
assert_le "mock duplicates <= max_inflight x kills + confirmation resends" "$mock_dups" $((INFLIGHT * KILLS + resends))
assert_eq "nothing stuck in sending" "$(count_state sending)" 0
assert_eq "every message confirmed (final drain ${drain_s}s)" "$(unfinished)" 0
assert_eq "every stored webhook processed" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0
sort -u "$T/replies.ok" >"$T/replies.sorted"
sql "$DB" "SELECT partoo_message_id FROM inbox" | sort -u >"$T/inbox.sorted"
assert_ge "genuine replies were acknowledged" "$(wc -l <"$T/replies.sorted")" 1
assert_eq "every reply answered 200 is in the inbox" \
    "$(comm -23 "$T/replies.sorted" "$T/inbox.sorted" | head -5 | tr '\n' ' ')" ""
assert_eq "no forged webhook answered 200" "$(wc -l <"$T/forged.ok")" 0
assert_eq "no forged webhook stored" \
    "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE CAST(partoo_message_id AS INTEGER) >= 900000")" 0
assert_eq "inbox has no duplicate reply" \
    "$(sql "$DB" "SELECT count(*) - count(DISTINCT partoo_message_id) FROM inbox")" 0
# Order: per conversation, the first deliveries arrive in enqueue (id) order.
order=$("$PY" - "$T/received.tsv" "$T/db_rows.txt" <<'EOF'
import sys
first = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) >= 7 and f[6] == "0":
        first.setdefault(f[5], int(f[0]))
conv = {}
for line in open(sys.argv[2]):
    i, c, k = line.rstrip("\n").split("|", 2)
    conv.setdefault(c, []).append(k)
bad = []
for c, keys in conv.items():
    seqs = [first.get(k, -1) for k in keys]
    if seqs != sorted(seqs) or -1 in seqs:
        bad.append(c)
print(" ".join(sorted(bad)[:5]))
EOF
)
assert_eq "per-conversation order of first deliveries" "$order" ""
assert_eq "PRAGMA integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
assert_eq "PRAGMA foreign_key_check" "$(sql "$DB" "PRAGMA foreign_key_check" | head -3)" ""
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
assert_eq "final SIGTERM: exit status 0" "$?" 0
assert_status "outbox audit verify exits 0" 0 "$OUTBOX_BIN" audit verify --db "$DB"
echo "audit: $(cat "$T/last.out")"
if [ -n "${TORTURE_REPORT:-}" ]; then
    echo "$(date -u +%FT%TZ) kills=$KILLS duration=${DURATION}s inflight=$INFLIGHT seed=$RSEED acked=$n_acked db=$n_db mock_unique=$mock_unique deliveries=$mock_deliveries duplicates=$mock_dups resends=$resends unrecorded=$unrecorded drain=${drain_s}s passed=$PASSED failed=$FAILED" >>"$TORTURE_REPORT"
fi
if [ "$FAILED" -gt 0 ]; then
    echo "---- serve.log (errors)"; grep -E 'level=(error|warn)' "$T/serve.log" | sort | uniq -c | sort -rn | head -20
fi
finish
