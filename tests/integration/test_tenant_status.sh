#!/usr/bin/env bash
# Tenants are visible where an operator looks (SPEC §11): `status` (table and --json),
# GET /v1/stats and /metrics carry per-tenant counts, pause and pace; a tenant whose key
# Partoo refuses shows paused "auth" and the other does not; a channel no tenant owns while
# there is no default key waits `queued` and `status` names it (nothing fails), and it goes
# out once its channel gets a tenant; a message shows its tenant.
#
# Tenants are written with sqlite3 (as `outbox tenant add` would), then the registry's
# version is bumped so that serve applies them within a second.
. "$(dirname "$0")/lib.sh"
[ "${KEEP_TMP:-0}" = 1 ] && echo "work dir: $T"

PROM_CHECK="$(cd "$(dirname "$0")" && pwd)/prom_check.py"
status_txt() { "$OUTBOX_BIN" status --db "$DB" 2>&1; }
status_json() { "$OUTBOX_BIN" status --db "$DB" --json 2>&1; }
# tenant_of_json JSON NAME PATH: PATH inside the tenant NAME's entry of the tenants array.
tenant_get() {
    printf '%s' "$1" > "$T/tg.json"
    sql ":memory:" "SELECT json_extract(t.value, '$3') FROM json_each(json_extract(readfile('$T/tg.json'), '\$.tenants')) t WHERE json_extract(t.value, '\$.tenant') = '$2'"
}
# channel_get JSON CHANNEL PATH: PATH inside the channel's entry of the channels array.
channel_get() {
    printf '%s' "$1" > "$T/cg.json"
    sql ":memory:" "SELECT json_extract(c.value, '$3') FROM json_each(json_extract(readfile('$T/cg.json'), '\$.channels')) c WHERE json_extract(c.value, '\$.channel_id') = '$2'"
}
bump() { sql "$DB" "UPDATE tenant_registry SET version = version + 1"; }

# ---- the registry: acme's key is good, beta's is refused; ch-free has no tenant ---------------
for ch in ch-acme ch-beta; do
    for i in 1 2; do enqueue_one "$ch" "$ch-$i" "c$i"; done
done
enqueue_one ch-free free-1 c1
sql "$DB" "INSERT INTO tenants (name, api_key, key_sealed, key_fingerprint, created_at_ms, updated_at_ms)
           VALUES ('acme', CAST('key-acme' AS BLOB), 0, 'aaaaaaaaaaaa', 0, 0),
                  ('beta', CAST('key-beta' AS BLOB), 0, 'bbbbbbbbbbbb', 0, 0);
           INSERT INTO tenant_channels (channel_id, tenant, readonly)
           VALUES ('ch-acme', 'acme', 0), ('ch-beta', 'beta', 0);"
bump
assert_eq "the triggers gave the messages their tenant" \
    "$(sql "$DB" "SELECT group_concat(coalesce(tenant, '-'), ' ') FROM (SELECT tenant FROM outbox ORDER BY id)")" \
    "acme acme beta beta -"

# ---- serve without a default key ----------------------------------------------------------------
start_mock --rate-limit 0 --api-keys key-acme
(
    unset OUTBOX_PARTOO_API_KEY
    exec "$OUTBOX_BIN" serve --db "$DB" --partoo-base-url "$MOCK_URL" "${SERVE_ARGS[@]}" \
        --rate-limit 0 --auth-probe-interval 60s >>"$T/serve.log" 2>&1
) &
SERVE_PID=$!
PIDS+=("$SERVE_PID")
wait_until 10 'serve_holds_lock "$DB" && [ -n "$(serve_port api)" ]' ||
    { tail -n 50 "$T/serve.log"; exit 1; }
API=http://127.0.0.1:$(serve_port api)

wait_until 15 '[ "$(state_of ch-acme ch-acme-2)" = accepted ] &&
    [ "$(sql "$DB" "SELECT count(*) FROM attempts WHERE http_status = 401")" -ge 1 ]' ||
    fail "acme's messages were not accepted or beta's key was never refused"
wait_until 5 'status_txt | grep -q "^beta .*auth"'

js=$(status_json)
assert_eq "status --json: acme counts (2 accepted, 0 queued)" \
    "$(tenant_get "$js" acme '$.counts.accepted') $(tenant_get "$js" acme '$.counts.queued')" "2 0"
assert_eq "status --json: beta counts (2 queued)" "$(tenant_get "$js" beta '$.counts.queued')" 2
assert_eq "status --json: beta paused for auth" "$(tenant_get "$js" beta '$.paused.reason')" auth
assert_eq "status --json: acme not paused" "$(tenant_get "$js" acme '$.paused')" ""
assert_eq "status --json: acme's channels" "$(tenant_get "$js" acme '$.channels')" '["ch-acme"]'
assert_eq "status --json: the default tenant serves ch-free, paused no_key, 1 queued" \
    "$(tenant_get "$js" default '$.channels') $(tenant_get "$js" default '$.paused.reason') $(tenant_get "$js" default '$.counts.queued')" \
    '["ch-free"] no_key 1'
assert_eq "status --json: not truncated" "$(jget "$js" '$.tenants_truncated')" 0
want_free="no tenant owns channel ch-free and no default API key is configured"
assert_eq "status --json: ch-free paused, the reason names the channel" \
    "$(channel_get "$js" ch-free '$.paused.reason')" "$want_free"
assert_eq "status --json: ch-beta paused for auth, ch-acme not paused" \
    "$(channel_get "$js" ch-beta '$.paused.reason') $(channel_get "$js" ch-acme '$.paused')" "auth "
assert_eq "status --json: nothing failed" "$(jget "$js" '$.counts.failed')" 0

txt=$(status_txt)
assert_contains "status: a tenants section" "$txt" "TENANT"
assert_contains "status: ch-free's reason named" "$txt" "$want_free"

st=$(curl -sS "$API/v1/stats")
assert_eq "/v1/stats: per-tenant counts" \
    "$(tenant_get "$st" acme '$.counts.accepted') $(tenant_get "$st" beta '$.counts.queued') $(tenant_get "$st" default '$.counts.queued')" \
    "2 2 1"
assert_eq "/v1/stats: beta paused for auth, acme not" \
    "$(tenant_get "$st" beta '$.paused.reason') $(tenant_get "$st" acme '$.paused')" "auth "
assert_eq "/v1/stats: acme's send rate is its 2 requests, its rate limit serve's (0)" \
    "$(tenant_get "$st" acme '$.send_rate_per_min') $(tenant_get "$st" acme '$.rate_limit')" "2 0"
assert_eq "/v1/stats: ch-free paused, the reason names the channel" \
    "$(channel_get "$st" ch-free '$.paused.reason')" "$want_free"

curl -sS "$API/metrics" >"$T/metrics.txt"
assert_eq "/metrics passes prom_check, with the tenant series" \
    "$(python3 "$PROM_CHECK" --get outbox_tenant_messages tenant=beta state=queued \
        --get outbox_tenant_messages tenant=acme state=queued \
        --get outbox_tenant_paused tenant=beta reason=auth \
        --get outbox_tenant_paused tenant=acme reason=auth \
        --get outbox_tenant_requests_total tenant=acme <"$T/metrics.txt" 2>&1 | tr '\n' ' ')" \
    "2 0 1 absent 2 "

m=$(curl -sS "$API/v1/messages/ch-acme/ch-acme-1")
assert_eq "GET /v1/messages: the message's tenant" "$(jget "$m" '$.tenant')" acme
m=$(curl -sS "$API/v1/messages/ch-free/free-1")
assert_eq "GET /v1/messages: no tenant is null" "$(jget "$m" '$.tenant')|$(jget "$m" '$.state')" "|queued"
assert_contains "ls --json carries the tenant" \
    "$("$OUTBOX_BIN" ls --db "$DB" --json --channel ch-beta 2>&1)" '"tenant":"beta"'
assert_contains "show prints the tenant" \
    "$("$OUTBOX_BIN" show --db "$DB" ch-beta ch-beta-1 2>&1)" "tenant       beta"

# ---- ch-free gets a tenant: its message goes out ------------------------------------------------
sql "$DB" "INSERT INTO tenant_channels (channel_id, tenant, readonly) VALUES ('ch-free', 'acme', 0)"
bump
wait_until 10 '[ "$(state_of ch-free free-1)" = accepted ]' ||
    fail "ch-free's message did not go out once acme owned the channel"
assert_eq "ch-free's message went out with acme's key" "$(state_of ch-free free-1)" accepted
js=$(status_json)
assert_eq "status --json: ch-free no longer paused" "$(channel_get "$js" ch-free '$.paused')" ""
assert_eq "status --json: acme owns both channels, 3 accepted" \
    "$(tenant_get "$js" acme '$.channels') $(tenant_get "$js" acme '$.counts.accepted')" \
    '["ch-acme","ch-free"] 3'
assert_eq "status --json: no default tenant any more (no key, no channel)" \
    "$(tenant_get "$js" default '$.tenant')" ""
assert_eq "nothing failed" "$(count_state failed)" 0

# ---- thousands of tenants: the documents stay bounded ------------------------------------------
sql "$DB" "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200)
           INSERT INTO tenants (name, api_key, key_sealed, key_fingerprint, created_at_ms, updated_at_ms)
           SELECT printf('t%04d', i), CAST('k' AS BLOB), 0, 'cccccccccccc', 0, 0 FROM n"
bump
js=$(status_json)
printf '%s' "$js" >"$T/many.json"
assert_eq "1202 tenants: status --json lists 1000, truncated, beta (backlog, paused) first" \
    "$(sql :memory: "SELECT json_array_length(readfile('$T/many.json'), '\$.tenants'),
                           json_extract(readfile('$T/many.json'), '\$.tenants_truncated'),
                           json_extract(readfile('$T/many.json'), '\$.tenants[0].tenant')")" \
    "1000|1|beta"
txt=$(status_txt)
assert_contains "1202 tenants: the table shows the first ones and says how many more" "$txt" \
    "... and 1182 more tenants"
wait_until 5 'curl -sS "$API/metrics" | grep -q "tenant=\"t1200\""'
curl -sS "$API/metrics" >"$T/metrics.txt"
assert_eq "1202 tenants: /metrics passes prom_check, 3 series per tenant not paused" \
    "$(python3 "$PROM_CHECK" <"$T/metrics.txt" >/dev/null && grep -c '^outbox_tenant_.*tenant="t[0-9]' "$T/metrics.txt")" \
    3600

# ---- no tenant and no default key: nothing at all can be sent -----------------------------------
sql "$DB" "DELETE FROM tenant_channels; DELETE FROM tenants"
bump
enqueue_one ch-free free-2 c2
wait_until 5 '[ "$(jget "$(status_json)" "\$.paused.reason")" = no_key ]'
js=$(status_json)
assert_eq "no tenant, no key: status --json top-level paused no_key" "$(jget "$js" '$.paused.reason')" no_key
assert_eq "no tenant, no key: /v1/stats top-level paused no_key" \
    "$(jget "$(curl -sS "$API/v1/stats")" '$.paused.reason')" no_key
assert_eq "no tenant, no key: ch-free's reason names it, the message waits queued" \
    "$(channel_get "$js" ch-free '$.paused.reason')|$(state_of ch-free free-2)" "$want_free|queued"

stop_serve
assert_eq "serve stops cleanly (exit 0; under ASan: no leak)" "$?" 0

finish
