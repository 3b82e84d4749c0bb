#!/usr/bin/env bash
# No secret anywhere: a whole run with a distinctive Partoo API key and API token — a 401 from
# Partoo (the mock knows another key), a SIGHUP reload, delivery, debug logging — then every
# place an operator or a scraper can look: the serve log, --print-config (text and JSON),
# status, ls, show, audit (jsonl, csv, verify), the API's JSON answers, /metrics, and the
# database (.dump and the raw files). Neither the key nor the token may appear, nor the keys
# of two tenants (one given to `outbox tenant add`, one to PUT /v1/tenants; sealed).
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

KEY=sekret-KEY-123456
TOK=tok-ABCDEF-987-secret
WRONG_TOK=tok-WRONG-555      # offered by a client, refused: must not be echoed either
TKEY=tenant-KEY-CLI-777      # tenants' keys (SPEC §11): one given to the CLI, one to the API
TKEY2=tenant-KEY-API-888
OUT=$T/outputs               # every command output goes here, one file each
mkdir -p "$OUT"

api() { # NAME PATH [CURL OPTIONS]: GET with the token, body into $OUT/api-NAME
    local name=$1 path=$2
    shift 2
    curl -sS -o "$OUT/api-$name" -w '%{http_code}' -H "Authorization: Bearer $TOK" "$@" "$API$path"
}
run() { # NAME CMD...: stdout and stderr of CMD into $OUT/NAME, with the key in the environment
    local name=$1
    shift
    OUTBOX_PARTOO_API_KEY=$KEY "$@" >"$OUT/$name" 2>&1
    echo "$?" >"$OUT/$name.rc"
}
msg() { # EXT_ID CONVERSATION: JSON of one message on channel ch
    printf '{"channel_id":"ch","external_message_id":"%s","business_id":"b1","external_conversation_id":"%s","content":"hello %s","sender_type":"Consumer"}' "$1" "$2" "$1"
}

head -c 32 /dev/urandom >"$T/secrets.key"
chmod 600 "$T/secrets.key"
cat >"$T/outbox.conf" <<EOF
secrets_key_file = $T/secrets.key
retry_base = 100ms
retry_cap = 300ms
rate_limit = 0
EOF

# ---- phase 1: Partoo refuses the key (401), sending pauses -------------------------------------
start_mock --rate-limit 0 --api-keys other-key-1
PORT=$MOCK_PORT
API_KEY=$KEY OUTBOX_API_TOKEN=$TOK start_serve --config "$T/outbox.conf" --log-level debug \
    --auth-probe-interval 60s
wait_until 10 '[ -n "$(serve_port api)" ]' || { echo "no serving line"; cat "$T/serve.log"; exit 1; }
API=http://127.0.0.1:$(serve_port api)
wait_until 10 'curl -fsS -o /dev/null "$API/healthz"' || { echo "api not up"; exit 1; }

for i in 1 2 3; do
    code=$(curl -sS -o "$OUT/post-$i" -w '%{http_code}' -X POST -H "Authorization: Bearer $TOK" \
        -H 'Content-Type: application/json' -d "$(msg s$i c$i)" "$API/v1/messages")
    assert_eq "enqueue s$i over the API: 202" "$code" 202
done
code=$(curl -sS -o "$OUT/post-wrong" -w '%{http_code}' -X POST -H "Authorization: Bearer $WRONG_TOK" \
    -H 'Content-Type: application/json' -d "$(msg s9 c9)" "$API/v1/messages")
assert_eq "a wrong token is refused: 401" "$code" 401
code=$(curl -sS -o "$OUT/post-keyastoken" -w '%{http_code}' -X POST -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d "$(msg s9 c9)" "$API/v1/messages")
assert_eq "the Partoo key is not an API token: 401" "$code" 401
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 401")" -ge 1 ]'
assert_eq "the mock answered 401 with the key serve sent" \
    "$(jget "$(mock_get last_request)" '$.headers.x-APIKey')" "$KEY"
wait_until 5 '"$OUTBOX_BIN" status --db "$DB" | grep -q PAUSED'
run status-paused "$OUTBOX_BIN" status --db "$DB"
run status-paused-json "$OUTBOX_BIN" status --db "$DB" --json
assert_contains "status shows the auth pause" "$(cat "$OUT/status-paused")" "PAUSED (auth)"
assert_eq "metrics while paused: 200" "$(api metrics-paused /metrics)" 200
assert_eq "stats while paused: 200" "$(api stats-paused /v1/stats)" 200

# ---- phase 2: Partoo knows the key now; SIGHUP with a changed config resumes -------------------
kill -TERM "$MOCK_PID"; wait "$MOCK_PID" 2>/dev/null
start_mock --rate-limit 0 --api-keys "$KEY" --listen "127.0.0.1:$PORT"
assert_eq "the new mock listens on the same port" "$MOCK_PORT" "$PORT"
echo "max_inflight = 4" >>"$T/outbox.conf"
kill -HUP "$SERVE_PID"
wait_until 15 '[ "$(count_state accepted)" = 3 ]'
assert_eq "all delivered after the reload" "$(count_state accepted)" 3
assert_contains "the reload was logged" "$(cat "$T/serve.log")" "configuration reloaded"
# An attempt that failed in transport (the mock's restart) is fine; a 200 with our key must exist.
assert_eq "the mock accepted with the key" "$(mock_stat '$.accepted')" 3

# ---- every view, while serve runs ------------------------------------------------------------
assert_eq "metrics: 200" "$(api metrics /metrics)" 200
assert_eq "stats: 200" "$(api stats /v1/stats)" 200
assert_eq "list: 200" "$(api list /v1/messages)" 200
assert_eq "one message: 200" "$(api one /v1/messages/ch/s1)" 200
assert_eq "/metrics without a token: 401" \
    "$(curl -sS -o "$OUT/api-metrics-noauth" -w '%{http_code}' "$API/metrics")" 401
assert_eq "/metrics with the wrong token: 401" \
    "$(curl -sS -o "$OUT/api-metrics-wrong" -w '%{http_code}' -H "Authorization: Bearer $WRONG_TOK" "$API/metrics")" 401
printf '%s\n' "$TKEY" | "$OUTBOX_BIN" tenant add org2 --db "$DB" --config "$T/outbox.conf" \
    --api-key-stdin --channel tch2 >"$OUT/tenant-add" 2>&1
assert_eq "a tenant added from stdin" "$?" 0
assert_eq "tenant PUT: 201" "$(api tenant-put /v1/tenants/org3 -X PUT -H 'Content-Type: application/json' \
    -d "{\"api_key\":\"$TKEY2\",\"channels\":[{\"channel_id\":\"tch3\"}]}")" 201
assert_eq "tenants: 200" "$(api tenants /v1/tenants)" 200
run tenant-ls "$OUTBOX_BIN" tenant ls --db "$DB"
run tenant-ls-json "$OUTBOX_BIN" tenant ls --db "$DB" --json
run doctor "$OUTBOX_BIN" doctor --db "$DB" --config "$T/outbox.conf"
assert_contains "both tenant keys are sealed" "$(cat "$OUT/doctor")" "2 tenant keys sealed"
run status "$OUTBOX_BIN" status --db "$DB"
run status-json "$OUTBOX_BIN" status --db "$DB" --json
run ls "$OUTBOX_BIN" ls --db "$DB"
run ls-json "$OUTBOX_BIN" ls --db "$DB" --json
run show "$OUTBOX_BIN" show --db "$DB" ch s1
run show-json "$OUTBOX_BIN" show --db "$DB" --json ch s1
run audit "$OUTBOX_BIN" audit --db "$DB"
run audit-csv "$OUTBOX_BIN" audit --db "$DB" --format csv
run audit-verify "$OUTBOX_BIN" audit --db "$DB" verify
run audit-verify-json "$OUTBOX_BIN" audit --db "$DB" verify --json
run inbox "$OUTBOX_BIN" inbox --db "$DB" --json
run print-config env OUTBOX_API_TOKEN="$TOK" "$OUTBOX_BIN" serve --db "$DB" --config "$T/outbox.conf" --print-config
run print-config-json env OUTBOX_API_TOKEN="$TOK" "$OUTBOX_BIN" serve --db "$DB" --config "$T/outbox.conf" \
    --print-config --json
echo "$KEY" >"$T/keyfile"
echo "api_token = $TOK" >"$T/tok.conf"
run print-config-file env -u OUTBOX_PARTOO_API_KEY "$OUTBOX_BIN" serve --db "$DB" \
    --config "$T/tok.conf" --partoo-api-key-file "$T/keyfile" --print-config
for c in status status-json ls ls-json show show-json audit audit-csv audit-verify \
    audit-verify-json inbox print-config print-config-json print-config-file tenant-ls \
    tenant-ls-json; do
    assert_eq "$c exits 0" "$(cat "$OUT/$c.rc")" 0
done
assert_contains "print-config masks the key" "$(cat "$OUT/print-config")" "partoo_api_key = ********"
assert_contains "print-config masks the token" "$(cat "$OUT/print-config")" "api_token = ********"
assert_contains "print-config masks a key from a file" "$(cat "$OUT/print-config-file")" \
    "partoo_api_key = ********"
assert_contains "print-config masks a token from a file" "$(cat "$OUT/print-config-file")" \
    "api_token = ********"
assert_contains "the audit export holds the attempts" "$(cat "$OUT/audit")" '"http_status":401'
assert_contains "status --json while paused says auth" "$(cat "$OUT/status-paused-json")" '"auth"'

kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "serve exits 0" "$?" 0
run status-stopped "$OUTBOX_BIN" status --db "$DB"
sqlite3 "$DB" .dump >"$OUT/db-dump" 2>&1
assert_contains "the dump holds the messages" "$(cat "$OUT/db-dump")" "hello s1"

# ---- the secrets appear nowhere ---------------------------------------------------------------
cp "$T/serve.log" "$OUT/serve.log"
nfiles=$(ls "$OUT" | wc -l)
assert_ge "outputs collected" "$nfiles" 30
for s in "$KEY" "$TOK" "$WRONG_TOK" "KEY-123456" "ABCDEF-987" "$TKEY" "$TKEY2" KEY-CLI KEY-API; do
    hits=$(grep -l -a -F -- "$s" "$OUT"/* 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
    assert_eq "'$s' in no output, log, metrics or dump" "$hits" ""
done
for f in "$DB" "$DB-wal" "$DB-shm" "$T/outbox.conf"; do
    [ -e "$f" ] || continue
    assert_eq "key bytes not in $(basename "$f")" "$(grep -c -a -F -- "$KEY" "$f")" 0
    assert_eq "token bytes not in $(basename "$f")" "$(grep -c -a -F -- "$TOK" "$f")" 0
    assert_eq "tenant key bytes not in $(basename "$f")" \
        "$(grep -c -a -e "$TKEY" -e "$TKEY2" "$f")" 0
done

finish
