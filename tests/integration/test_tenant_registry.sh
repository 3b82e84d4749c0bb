#!/usr/bin/env bash
# tests/integration/test_tenant_registry.sh: the tenant registry's interfaces (SPEC §11).
#
# CLI `outbox tenant add|set|rm|ls [--json]` (key from a file or stdin only), the API
# (PUT/GET/DELETE /v1/tenants/{name}, GET /v1/tenants), a channel claimed twice (409 / exit 1,
# nothing changed), each bad input a 400 naming its field, keys sealed under secrets_key_file,
# doctor's tenant_keys check, and delivery with a tenant's key right after a PUT. Then every
# place an operator can look: no tenant key in ls, ls --json, the API's answers, serve's log,
# --print-config, the audit export, doctor, argv, the database (sealed) or a backup of it.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_tenant_registry.sh
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

B=$OUTBOX_BIN
K1=tk1-ACME-SECRET-4711        # every key is distinctive: the leak checks grep for them
K2=tk2-BETA-SECRET-0815
K3=tk3-API-SECRET-9999
K4=tk4-ROTATED-SECRET-2222
OUT=$T/outputs                 # what an operator sees: every file here is grepped for keys
mkdir -p "$OUT"
TOK=tok-registry-0123456789
printf '%s\n' "$K1" >"$T/k1"
chmod 600 "$T/k1"
head -c 32 /dev/urandom >"$T/secrets.key"
chmod 600 "$T/secrets.key"
j() { jget "$1" "$2"; } # JSON value at an SQLite JSON path

# ---- CLI: usage errors (exit 2), nothing created ------------------------------------------
assert_status "add without a key flag: usage" 2 "$B" tenant add acme --db "$DB"
assert_contains "... naming --api-key-file" "$(cat "$T/last.err")" "--api-key-file"
assert_status "there is no --api-key flag" 2 "$B" tenant add acme --db "$DB" --api-key "$K1"
assert_not_contains "... and the value is not echoed" "$(cat "$T/last.err")" "$K1"
assert_status "name 'default' is reserved" 2 "$B" tenant add default --db "$DB" --api-key-file "$T/k1"
assert_contains "... saying so" "$(cat "$T/last.err")" "reserved"
assert_status "a bad name" 2 "$B" tenant add 'a b' --db "$DB" --api-key-file "$T/k1"
assert_contains "... saying what a name is" "$(cat "$T/last.err")" "A-Z a-z 0-9"
assert_status "a bare number is no rate" 2 "$B" tenant add acme --db "$DB" --api-key-file "$T/k1" \
    --rate-limit 5
assert_status "an ftp:// base URL" 2 "$B" tenant add acme --db "$DB" --api-key-file "$T/k1" \
    --base-url ftp://partoo.example/v2
assert_status "both key flags" 2 "$B" tenant add acme --db "$DB" --api-key-file "$T/k1" --api-key-stdin
assert_status "an unknown action" 2 "$B" tenant frob acme --db "$DB"
: >"$T/empty"
assert_status "an empty key file fails" 1 "$B" tenant add acme --db "$DB" --api-key-file "$T/empty"
head -c 5000 /dev/zero | tr '\0' k >"$T/big"
assert_status "a key over 4096 bytes fails" 1 "$B" tenant add acme --db "$DB" --api-key-file "$T/big"
assert_eq "nothing was created" "$("$B" tenant ls --db "$DB" --json)" "[]"

# ---- CLI: add, ls, set, the key from stdin with nothing in argv ----------------------------
assert_status "add acme from a file" 0 "$B" tenant add acme --db "$DB" --api-key-file "$T/k1" \
    --rate-limit 5/s --rate-burst 3 --channel c1 --readonly-channel c2
# The key comes through a pipe that stays open while we look at the process's argv.
mkfifo "$T/keypipe"
"$B" tenant add beta --db "$DB" --api-key-stdin --channel c3 \
    --base-url https://sandbox.partoo.example/v2 <"$T/keypipe" >"$OUT/add-beta" 2>&1 &
ADD_PID=$!
exec 7>"$T/keypipe"
wait_until 5 '[ -r /proc/$ADD_PID/cmdline ]'
tr '\0' ' ' <"/proc/$ADD_PID/cmdline" >"$OUT/argv-beta"
ps -o args= -p "$ADD_PID" >>"$OUT/argv-beta" 2>&1
printf '%s\n' "$K2" >&7
exec 7>&-
wait "$ADD_PID"
assert_eq "add beta from stdin" "$?" 0
assert_contains "argv was seen" "$(cat "$OUT/argv-beta")" "--api-key-stdin"
"$B" tenant ls --db "$DB" >"$OUT/ls" 2>&1
"$B" tenant ls --db "$DB" --json >"$OUT/ls.json" 2>&1
LS=$(cat "$OUT/ls.json")
assert_eq "ls --json: two tenants" "$(jx "$LS" "json_array_length(j)") $(j "$LS" '$[1].tenant')" "2 beta"
assert_eq "acme's rate, per minute" "$(j "$LS" '$[0].rate_limit_per_min')" 300
assert_eq "acme's burst" "$(j "$LS" '$[0].rate_burst')" 3
assert_eq "acme's channels" "$(j "$LS" '$[0].channels')" \
    '[{"channel_id":"c1","readonly":false},{"channel_id":"c2","readonly":true}]'
assert_eq "beta's base URL" "$(j "$LS" '$[1].partoo_base_url')" https://sandbox.partoo.example/v2
assert_eq "beta's rate is the configured one (null)" "$(j "$LS" '$[1].rate_limit_per_min')" ""
assert_eq "no key sealed without secrets_key_file" "$(j "$LS" '$[0].key_sealed')" 0
assert_eq "the fingerprint is a SHA-256 prefix" "$(j "$LS" '$[0].key_fingerprint')" \
    "$(printf '%s' "$K1" | sha256sum | cut -c1-12)"
assert_contains "ls shows the fingerprint" "$(cat "$OUT/ls")" "$(j "$LS" '$[0].key_fingerprint')"
assert_contains "ls marks a read-only channel" "$(cat "$OUT/ls")" "c2 (ro)"
assert_contains "ls says the keys are in the clear" "$(cat "$OUT/ls")" "CLEAR"

FP1=$(j "$LS" '$[0].key_fingerprint')
assert_status "set without a key flag" 0 "$B" tenant set acme --db "$DB" --rate-limit 290/min \
    --remove-channel c2 --channel c4
LS=$("$B" tenant ls --db "$DB" --json)
assert_eq "... keeps the key" "$(j "$LS" '$[0].key_fingerprint')" "$FP1"
assert_eq "... changes the rate" "$(j "$LS" '$[0].rate_limit_per_min')" 290
assert_eq "... and the channels" "$(j "$LS" '$[0].channels')" \
    '[{"channel_id":"c1","readonly":false},{"channel_id":"c4","readonly":false}]'
assert_status "set of an unknown tenant" 1 "$B" tenant set nobody --db "$DB" --rate-limit 1/s
assert_status "rm of an unknown tenant" 1 "$B" tenant rm nobody --db "$DB"

# ---- CLI: a channel claimed twice ---------------------------------------------------------
printf '%s\n' "$K3" >"$T/k3"
BEFORE=$(sql "$DB" "SELECT group_concat(name || ':' || updated_at_ms) FROM tenants")
assert_status "a channel another tenant owns" 1 "$B" tenant set beta --db "$DB" --channel c1 \
    --rate-limit 1/s
assert_contains "... names the channel and its owner" "$(cat "$T/last.err")" "'c1' belongs to tenant 'acme'"
assert_status "... also for a new tenant" 1 "$B" tenant add gamma --db "$DB" --api-key-file "$T/k3" \
    --channel c9 --channel c4
assert_eq "nothing changed" "$(sql "$DB" "SELECT group_concat(name || ':' || updated_at_ms) FROM tenants")" "$BEFORE"
assert_eq "c1 is still acme's, c9 nobody's" \
    "$(sql "$DB" "SELECT group_concat(channel_id || '=' || tenant) FROM tenant_channels WHERE channel_id IN ('c1','c9')")" \
    "c1=acme"

# ---- doctor: keys in the clear are a warning ----------------------------------------------
"$B" doctor --db "$DB" --json >"$OUT/doctor-clear.json" 2>&1
D=$(cat "$OUT/doctor-clear.json")
check_status() { # FILE NAME: the status of doctor --json's check NAME
    sqlite3 -batch -noheader :memory: "SELECT json_extract(value, '\$.status') FROM
        json_each(readfile('$1'), '\$.checks') WHERE json_extract(value, '\$.name') = '$2'"
}
assert_eq "doctor warns about keys in the clear" "$(check_status "$OUT/doctor-clear.json" tenant_keys)" warn
assert_contains "... and says to set secrets_key_file" "$D" "secrets_key_file"
assert_eq "the clear key is in the file" "$(grep -c -a -F -- "$K1" "$DB")" 1

# ---- sealed: secrets_key_file ----------------------------------------------------------------
SK=(--secrets-key-file "$T/secrets.key")
assert_status "set acme's key again, sealed" 0 "$B" tenant set acme --db "$DB" "${SK[@]}" \
    --api-key-file "$T/k1"
printf '%s\n' "$K2" | "$B" tenant set beta --db "$DB" "${SK[@]}" --api-key-stdin >/dev/null
assert_eq "... both sealed" "$(sql "$DB" "SELECT group_concat(key_sealed) FROM tenants")" "1,1"
assert_eq "no stored key holds its plaintext" \
    "$(sql "$DB" "SELECT count(*) FROM tenants WHERE instr(api_key, CAST('$K1' AS BLOB)) OR instr(api_key, CAST('$K2' AS BLOB))")" 0
assert_eq "the fingerprint stays" "$(j "$("$B" tenant ls --db "$DB" --json)" '$[0].key_fingerprint')" "$FP1"
"$B" doctor --db "$DB" "${SK[@]}" >"$OUT/doctor-sealed" 2>&1
assert_contains "doctor: all sealed is ok" "$(grep tenant_keys "$OUT/doctor-sealed")" "ok"
"$B" doctor --db "$DB" >"$OUT/doctor-nokey" 2>&1
assert_contains "doctor: sealed keys without secrets_key_file cannot open" \
    "$(grep tenant_keys "$OUT/doctor-nokey")" "FAIL"

# ---- API: serve with a token and the sealing key; the mock knows only tenant keys ----------
start_mock --rate-limit 0 --api-keys "$K3,$K4"
cat >"$T/outbox.conf" <<EOF
secrets_key_file = $T/secrets.key
rate_limit = 0
retry_base = 100ms
retry_cap = 200ms
EOF
OUTBOX_API_TOKEN=$TOK api_serve --config "$T/outbox.conf"
TOKEN=$TOK
put() { req PUT "/v1/tenants/$1" "$2"; echo "$RESP" >>"$OUT/api-answers"; }

put gamma "{\"api_key\":\"$K3\",\"rate_limit\":600,\"channels\":[{\"channel_id\":\"g1\"},{\"channel_id\":\"g2\",\"readonly\":true}]}"
assert_eq "PUT creates: 201" "$CODE" 201
assert_eq "... the view" "$(j "$RESP" '$.tenant') $(j "$RESP" '$.rate_limit_per_min') $(j "$RESP" '$.key_sealed') $(j "$RESP" '$.channels[1].readonly')" \
    "gamma 600 1 1"
put gamma '{"rate_limit":"10/s","rate_burst":null,"partoo_base_url":null}'
assert_eq "PUT updates: 200" "$CODE" 200
assert_eq "... keeping the channels when none are given" "$(jx "$RESP" "json_array_length(j, '\$.channels')")" 2
assert_eq "... rate 10/s = 600/min" "$(j "$RESP" '$.rate_limit_per_min')" 600
put gamma "{\"api_key\":\"$K3\",\"channels\":[{\"channel_id\":\"g1\"}]}"
assert_eq "PUT with channels replaces the set" "$CODE $(j "$RESP" '$.channels')" \
    '200 [{"channel_id":"g1","readonly":false}]'
req GET /v1/tenants/gamma
echo "$RESP" >>"$OUT/api-answers"
assert_eq "GET one: 200" "$CODE $(j "$RESP" '$.tenant')" "200 gamma"
req GET /v1/tenants
echo "$RESP" >>"$OUT/api-answers"
assert_eq "GET the list" "$CODE $(jx "$RESP" "json_array_length(j, '\$.tenants')")" "200 3"
req GET /v1/tenants/nobody
assert_eq "GET unknown: 404" "$(errsig)" "404 not_found -"
TOKEN= req GET /v1/tenants
assert_eq "no token: 401" "$CODE" 401
TOKEN= req PUT /v1/tenants/evil "{\"api_key\":\"x\"}"
assert_eq "no token, no PUT: 401" "$CODE" 401

# Delivery takes the new tenant's key at once (no restart, no poll needed by the test).
"$B" enqueue --db "$DB" --channel g1 --message-id m1 --business b1 --conversation cv1 \
    --content "hello tenant" --sender Consumer >/dev/null
wait_until 15 '[ "$(state_of g1 m1)" = accepted ]'
assert_eq "a message of gamma's channel went with gamma's key" "$(state_of g1 m1)" accepted
put gamma "{\"api_key\":\"$K4\"}"
assert_eq "the key rotates over the API" "$CODE" 200
"$B" enqueue --db "$DB" --channel g1 --message-id m2 --business b1 --conversation cv2 \
    --content "hello again" --sender Consumer >/dev/null
wait_until 15 '[ "$(state_of g1 m2)" = accepted ]'
assert_eq "... and the next message uses the new one" \
    "$(state_of g1 m2) $(printf '%s' "$(j "$(mock_get last_request)" '$.headers.x-APIKey')" | sha256sum | cut -c1-12)" \
    "accepted $(printf '%s' "$K4" | sha256sum | cut -c1-12)"

# ---- API: a channel claimed twice, bad inputs; nothing changes ------------------------------
SNAP=$(sql "$DB" "SELECT group_concat(name || ':' || updated_at_ms || ':' || key_fingerprint) FROM tenants")
CSNAP=$(sql "$DB" "SELECT group_concat(channel_id || '=' || tenant) FROM tenant_channels")
put gamma '{"channels":[{"channel_id":"g1"},{"channel_id":"c1"}]}'
assert_eq "a channel acme owns: 409 naming channels[1]" "$(errsig)" "409 conflict channels[1].channel_id"
assert_contains "... and acme" "$RESP" "acme"
put delta "{\"api_key\":\"$K3\",\"channels\":[{\"channel_id\":\"c3\"}]}"
assert_eq "a new tenant claiming beta's channel: 409" "$(errsig)" "409 conflict channels[0].channel_id"
put 'bad*name' "{\"api_key\":\"$K3\"}"
assert_eq "bad name: 400 tenant" "$(errsig)" "400 invalid_value tenant"
put default "{\"api_key\":\"$K3\"}"
assert_eq "'default': 400 tenant" "$(errsig)" "400 invalid_value tenant"
put delta "{\"api_key\":\"$K3\",\"rate_limit\":-5}"
assert_eq "negative rate_limit: 400 rate_limit" "$(errsig)" "400 invalid_value rate_limit"
put delta "{\"api_key\":\"$K3\",\"rate_limit\":\"5\"}"
assert_eq "an ambiguous rate: 400 rate_limit" "$(errsig)" "400 invalid_value rate_limit"
put delta "{\"api_key\":\"$K3\",\"rate_burst\":0}"
assert_eq "rate_burst 0: 400 rate_burst" "$(errsig)" "400 invalid_value rate_burst"
put delta "{\"api_key\":\"$K3\",\"partoo_base_url\":\"ftp://partoo.example/v2\"}"
assert_eq "an ftp:// base URL: 400 partoo_base_url" "$(errsig)" "400 invalid_value partoo_base_url"
put delta "{\"api_key\":\"$K3\",\"channels\":{\"channel_id\":\"d1\"}}"
assert_eq "channels not an array: 400 channels" "$(errsig)" "400 invalid_value channels"
put delta "{\"api_key\":\"$K3\",\"channels\":[{\"channel_id\":\"\"}]}"
assert_eq "an empty channel id: 400 channels[0].channel_id" "$(errsig)" \
    "400 invalid_value channels[0].channel_id"
put delta "{\"api_key\":\"$K3\",\"channels\":[{\"channel_id\":\"d1\"},{\"channel_id\":\"d1\"}]}"
assert_eq "a channel twice: 400 channels[1].channel_id" "$(errsig)" \
    "400 invalid_value channels[1].channel_id"
put delta '{"rate_limit":60}'
assert_eq "no api_key for a new tenant: 400 api_key" "$(errsig)" "400 missing_field api_key"
put delta "{\"api_key\":\"$(head -c 4097 /dev/zero | tr '\0' k)\"}"
assert_eq "a key over 4096 bytes: 400 api_key" "$(errsig)" "400 too_large api_key"
put delta "{\"api_key\":\"\"}"
assert_eq "an empty key: 400 api_key" "$(errsig)" "400 invalid_value api_key"
put delta "{\"api_key\":\"$K3\",\"apikey\":\"x\"}"
assert_eq "an unknown field: 400 naming it" "$(errsig)" "400 unknown_field apikey"
put delta "{\"api_key\":\"$K3\",\"rate_limit\":60,\"rate_limit\":\"1/s\"}"
assert_eq "a field twice: 400 naming it" "$(errsig)" "400 duplicate_field rate_limit"
put delta '[1]'
assert_eq "not an object: 400" "$CODE" 400
assert_eq "nothing changed by any of them" \
    "$(sql "$DB" "SELECT group_concat(name || ':' || updated_at_ms || ':' || key_fingerprint) FROM tenants")" "$SNAP"
assert_eq "... not a channel either" "$(sql "$DB" "SELECT group_concat(channel_id || '=' || tenant) FROM tenant_channels")" "$CSNAP"

# ---- API: DELETE -------------------------------------------------------------------------------
req DELETE /v1/tenants/gamma
assert_eq "DELETE: 200 {deleted}" "$CODE $(j "$RESP" '$.deleted')" "200 gamma"
req GET /v1/tenants/gamma
assert_eq "... then GET: 404" "$CODE" 404
req DELETE /v1/tenants/gamma
assert_eq "DELETE again: 404" "$(errsig)" "404 not_found -"
assert_eq "its channel is released" "$(sql "$DB" "SELECT count(*) FROM tenant_channels WHERE tenant = 'gamma'")" 0

# ---- no key anywhere -----------------------------------------------------------------------------
run() { local name=$1; shift; "$@" >"$OUT/$name" 2>&1; }
run print-config "$B" serve --db "$DB" --config "$T/outbox.conf" --print-config
run print-config-json "$B" serve --db "$DB" --config "$T/outbox.conf" --print-config --json
run audit "$B" audit --db "$DB"
run audit-csv "$B" audit --db "$DB" --format csv
run status "$B" status --db "$DB" --json
run doctor "$B" doctor --db "$DB" --config "$T/outbox.conf" --json
run ls-final "$B" tenant ls --db "$DB"
run ls-final-json "$B" tenant ls --db "$DB" --json
run backup "$B" backup --db "$DB" "$T/backup.db"
req GET /v1/tenants
echo "$RESP" >"$OUT/api-list-final"
stop_serve
cp "$T/serve.log" "$OUT/serve.log"
assert_contains "serve logged the changes" "$(cat "$OUT/serve.log")" "tenant added"
assert_ge "outputs collected" "$(ls "$OUT" | wc -l)" 15
for k in "$K1" "$K2" "$K3" "$K4" ACME-SECRET BETA-SECRET API-SECRET ROTATED-SECRET; do
    hits=$(grep -l -a -F -- "$k" "$OUT"/* 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ')
    assert_eq "'$k' in no output, answer, log or argv" "$hits" ""
done
for f in "$DB" "$DB-wal" "$T/backup.db"; do
    [ -e "$f" ] || continue
    for k in "$K1" "$K2" "$K3" "$K4"; do
        assert_eq "$(basename "$f") does not hold ${k:0:8}..." "$(grep -c -a -F -- "$k" "$f")" 0
    done
done

finish
