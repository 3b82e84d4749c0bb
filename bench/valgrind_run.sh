#!/usr/bin/env bash
# Valgrind run: `outbox serve` under valgrind --leak-check=full through a short scenario —
# enqueue (HTTP single and batch, CLI, SQL), deliveries with injected 500s and retries, echoed
# confirmations, a reply, a replayed and a forged webhook, every read route, bad requests
# (400/413/415/404), inbox ack, retry/cancel, SIGHUP, SIGTERM — then the offline CLI
# commands, each under valgrind too. Pass: exit status of every run != 99 (valgrind's
# --error-exitcode), "definitely lost: 0" and "indirectly lost: 0", "ERROR SUMMARY: 0".
#
#   bench/valgrind_run.sh            (about 1 minute)
# VALGRIND_REPORT=FILE appends the summaries to FILE.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUTBOX_BIN=${OUTBOX_BIN:-$ROOT/build/outbox}
OBX_BUILD_DIR=${OBX_BUILD_DIR:-$(dirname "$OUTBOX_BIN")}
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/tests/torture/common.sh"
command -v valgrind >/dev/null || { echo "SKIP: valgrind is not installed"; exit 0; }
torture_private_bins
make_signer "$SEED"

REAL=$OUTBOX_BIN
VG_OPTS=(--leak-check=full --show-leak-kinds=definite,indirect,possible
    --errors-for-leak-kinds=definite,indirect --error-exitcode=99 --num-callers=30)
cat >"$T/vg-outbox" <<EOF
#!/bin/sh
exec valgrind ${VG_OPTS[*]} --log-file=$T/vg.\$\$.log "$REAL" "\$@"
EOF
chmod +x "$T/vg-outbox"

WH_PORT=$(free_port)
WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo
start_mock --rate-limit 0 --webhook-url "$WH_URL" --webhook-seed "$SEED" --echo
PUB=$(mock_pubkey) || exit 1
"$REAL" migrate --db "$DB" >/dev/null
mock_post faults '{"script":[500,500,0,200]}' >/dev/null
OUTBOX_BIN=$T/vg-outbox
printf 'max_db_size = 0\n' >"$T/outbox.conf"
t0=$(now_ms)
start_serve --config "$T/outbox.conf" --webhook-listen "127.0.0.1:$WH_PORT" \
    --webhook-public-key "$PUB" --rate-limit 0 --retry-base 100ms --retry-cap 300ms \
    --max-inflight 4
wait_until 30 'grep "msg=serving" "$T/serve.log" | grep -q " pid=$SERVE_PID\>"' ||
    { echo "serve did not start under valgrind"; cat "$T/serve.log"; exit 1; }
serve_ports
VG_LOG=$T/vg.$SERVE_PID.log
echo "serve under valgrind up after $(( $(now_ms) - t0 )) ms (pid $SERVE_PID)"
OUTBOX_BIN=$REAL

# ---- enqueue ---------------------------------------------------------------------------------
for i in $(seq 1 10); do post_msg "v$i" >/dev/null; done
curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' "$API/v1/messages" \
    -d '{"messages":[{"channel_id":"ch","external_message_id":"vb1","business_id":"b","external_conversation_id":"cb","content":"a","sender_type":"User"},{"channel_id":"ch","external_message_id":"vb2","business_id":"b","external_conversation_id":"cb","content":"b","sender_type":"User"},{"bad":1}]}'
post_msg v1 >/dev/null # duplicate
curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' "$API/v1/messages" \
    -d '{"channel_id":"ch","external_message_id":"v1","business_id":"b1","external_conversation_id":"c-v1","content":"other","sender_type":"Consumer"}' # conflict
"$REAL" enqueue --db "$DB" --channel ch --message-id vc1 --business b --conversation cc \
    --content cli --sender Consumer >/dev/null
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('ch', 'vs1', 'b', 'cs', 'sql', 'Consumer')"
total=$(sql "$DB" "SELECT count(*) FROM outbox")
wait_until 40 '[ "$(count_state confirmed)" = "$total" ]'
assert_eq "every message confirmed under valgrind" "$(count_state confirmed)" "$total"

# ---- webhooks --------------------------------------------------------------------------------
assert_eq "reply webhook 200" "$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c-v1","partoo_message_id":4242,"content":"hi"}')" '$.status')" 200
assert_eq "forged webhook 401" "$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c-v1","forge":true}')" '$.status')" 401
printf '{"type":"message_created","payload":{"message":{"id":4243,"sender_type":"User","content":"x","custom_channel":null},"conversation":{"id":1,"custom_channel":{"id":"ch","external_conversation_id":"c1"}}}}' >"$T/ev.json"
sig=$(sign_file "$T/ev.json")
for i in 1 2; do
    curl -sS -o /dev/null -X POST -H "X-Partoo-Signature-v1: $sig" --data-binary @"$T/ev.json" "$WH_URL"
done
printf 'not json at all' >"$T/junk.json"
curl -sS -o /dev/null -X POST -H "X-Partoo-Signature-v1: $(sign_file "$T/junk.json")" --data-binary @"$T/junk.json" "$WH_URL"
wait_until 20 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'

# ---- reads, admin routes, bad requests --------------------------------------------------------
for p in /healthz /readyz /v1/stats /metrics "/v1/messages?limit=3" "/v1/messages?state=confirmed&limit=2" \
    /v1/messages/ch/v1 /v1/messages/ch/nope /v1/inbox /nope "/v1/messages?limit=abc"; do
    curl -sS -o /dev/null "$API$p"
done
cursor=$(jget "$(curl -sS "$API/v1/messages?limit=2")" '$.next_cursor')
curl -sS -o /dev/null "$API/v1/messages?limit=2&cursor=$cursor"
iid=$(jget "$(curl -sS "$API/v1/inbox")" '$.items[0].id')
curl -sS -o /dev/null -X POST "$API/v1/inbox/${iid:-1}/ack"
curl -sS -o /dev/null -X POST "$API/v1/messages/ch/v2/retry"
mock_post faults '{"down":true}' >/dev/null
post_msg vq >/dev/null
curl -sS -o /dev/null -X POST "$API/v1/messages/ch/vq/cancel"
mock_post faults '{"down":false}' >/dev/null
curl -sS -o /dev/null -X POST -H 'Content-Type: text/plain' -d x "$API/v1/messages"
curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' -d '{"a":' "$API/v1/messages"
head -c 1200000 /dev/zero | tr '\0' a | curl -sS -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- "$API/v1/messages"
curl -sS -o /dev/null -X DELETE "$API/v1/messages"
kill -HUP "$SERVE_PID"
wait_until 10 'grep -q "configuration reloaded" "$T/serve.log"'
post_msg v-after-hup >/dev/null
wait_until 20 '[ "$(sql "$DB" "SELECT state FROM outbox WHERE external_message_id = '\''v-after-hup'\''")" = confirmed ]'

# ---- SIGTERM ---------------------------------------------------------------------------------
kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
st=$?
echo "serve under valgrind: exit status $st; whole run $(( $(now_ms) - t0 )) ms"
assert_eq "serve: exit status 0 (99 = valgrind errors)" "$st" 0
summary() { # LOG: the leak and error summary in one line
    echo "$(grep -E 'definitely lost:|indirectly lost:|possibly lost:|ERROR SUMMARY:' "$1" |
        sed 's/^==[0-9]*== *//' | tr '\n' ';')"
}
check_log() { # NAME LOG
    local s
    s=$(summary "$2")
    echo "$1: $s"
    assert_eq "$1: valgrind log written" "$([ -s "$2" ] && echo yes)" yes
    assert_eq "$1: ERROR SUMMARY 0" "$(grep -c 'ERROR SUMMARY: 0 errors' "$2")" 1
    assert_eq "$1: definitely lost 0 bytes" "$(lost_bytes "$2" definitely)" 0
    assert_eq "$1: indirectly lost 0 bytes" "$(lost_bytes "$2" indirectly)" 0
    [ -n "${VALGRIND_REPORT:-}" ] && echo "$(date -u +%FT%TZ) $1: $s" >>"$VALGRIND_REPORT"
    return 0
}
check_log "serve" "$VG_LOG"

# ---- offline CLI commands under valgrind -------------------------------------------------------
cli_vg() { # NAME ARGS...
    local name=$1
    shift
    valgrind "${VG_OPTS[@]}" --log-file="$T/vg.cli.$name.log" "$REAL" "$@" >/dev/null 2>"$T/cli.err" </dev/null
    local st=$?
    assert_eq "cli $name: exit status not 99 (got $st)" "$([ "$st" != 99 ] && echo ok)" ok
    check_log "cli $name" "$T/vg.cli.$name.log"
}
cli_vg status status --db "$DB" --json
cli_vg ls ls --db "$DB" --limit 5
cli_vg show show --db "$DB" ch v1
cli_vg audit-verify audit verify --db "$DB"
cli_vg audit-export audit --db "$DB" --format csv
cli_vg inbox inbox --db "$DB"
cli_vg enqueue enqueue --db "$DB" --channel ch --message-id vv1 --business b --conversation c9 --content x --sender User
printf '{"channel_id":"ch","external_message_id":"j1","business_id":"b","external_conversation_id":"c","content":"x","sender_type":"User"}\n{"bad\n' >"$T/in.jsonl"
valgrind "${VG_OPTS[@]}" --log-file="$T/vg.cli.jsonl.log" "$REAL" enqueue --db "$DB" <"$T/in.jsonl" >/dev/null 2>&1
assert_eq "cli enqueue jsonl (one bad line): exit 1, not 99" "$?" 1
check_log "cli enqueue-jsonl" "$T/vg.cli.jsonl.log"
cli_vg retry retry --db "$DB" ch v1
cli_vg purge purge --db "$DB" --older-than 1s
finish
