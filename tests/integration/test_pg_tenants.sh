#!/usr/bin/env bash
# Tenants on PostgreSQL (issue 15 with SPEC §11): the registry of `outbox tenant` on a
# PostgreSQL db, and several nodes sharing the tenants:
#   - add, set and ls through the CLI, the key never printed, a channel owned twice refused;
#   - a producer's INSERT into a tenant's channel carries the tenant (the schema's trigger);
#   - three nodes spread six tenants (five and the default), each sends with its tenant's
#     key, paced per key (the mock enforces 300 per 60 s per key: no 429);
#   - a node killed with SIGKILL: its tenants move to the live nodes, everything delivered;
#   - a tenant added while the nodes run sends what already waited for its channel;
#   - the tenant routes (PUT, GET, DELETE /v1/tenants) on any node;
#   - /v1/stats on a node shows the pause of a tenant another node holds, as recorded there.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
tenant() { "$OUTBOX_BIN" tenant --db "$PG_URI" "$@"; }

# ---- the registry through the CLI -------------------------------------------------------------
for i in 1 2 3 4 5; do
    echo "key-$i-secret" | tenant add "t$i" --api-key-stdin --rate-limit 600/min --channel "ch$i" >/dev/null ||
        fail "tenant add t$i"
done
ls_json=$(tenant ls --json)
assert_eq "tenant ls: five tenants" "$(jget "$ls_json" '$[4].tenant'),$(jget "$ls_json" '$[5].tenant')" "t5,"
assert_eq "tenant ls: t3 owns ch3" "$(jget "$ls_json" '$[2].channels[0].channel_id')" ch3
assert_not_contains "tenant ls: no key printed" "$ls_json" "secret"
assert_not_contains "the database holds no key in a view" "$(q "SELECT string_agg(key_fingerprint, ',') FROM tenants")" "secret"
assert_status "a channel another tenant owns: refused" 1 tenant set t2 --channel ch1
assert_eq "... and nothing changed" "$(q "SELECT tenant FROM tenant_channels WHERE channel_id = 'ch1'")" t1
assert_status "tenant set: a new rate" 0 tenant set t5 --rate-limit 600/min
assert_eq "registry version bumped by every change" "$(q "SELECT version FROM tenant_registry")" 6

# ---- a producer's INSERT carries the tenant ------------------------------------------------------
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch' || c, 'm' || c || '-' || g, 'b', 'conv' || (g % 3), 'x', 'User' FROM generate_series(1, 5) c, generate_series(1, 20) g" >/dev/null
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch6', 'late' || g, 'b', 'c6', 'x', 'User' FROM generate_series(1, 5) g" >/dev/null
assert_eq "messages of a tenant's channel carry the tenant" \
    "$(q "SELECT count(*) FROM outbox WHERE tenant = 't' || substr(channel_id, 3)")" 100
assert_eq "... and those of an unowned channel none" "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'ch6' AND tenant IS NULL")" 5

# ---- three nodes share six tenants -------------------------------------------------------------
start_mock # 300 per 60 s per key
# No default key: the unowned channel ch6 waits for a tenant.
for n in A B C; do
    PG_NODE_KEY= start_pg_node "$n" --node-lease 3s
    eval "PID_$n=$NODE_PID PORT_$n=$NODE_PORT"
done
wait_until 15 '[ "$(q "SELECT count(*) FROM tenant_leases WHERE node IS NOT NULL AND expires_at_ms > outbox_now_ms()")" = 6 ]'
assert_eq "six tenants held" "$(q "SELECT count(*) FROM tenant_leases WHERE node IS NOT NULL AND expires_at_ms > outbox_now_ms()")" 6
spread() { q "SELECT string_agg(c::text, ',') FROM (SELECT count(*) c FROM tenant_leases WHERE expires_at_ms > outbox_now_ms() GROUP BY node) x"; }
# The first node to start takes all six, and gives back its surplus as the others join.
wait_until 15 '[ "$(spread)" = "2,2,2" ]'
assert_eq "spread: two per node" "$(q "SELECT string_agg(c::text, ',') FROM (SELECT count(*) c FROM tenant_leases WHERE expires_at_ms > outbox_now_ms() GROUP BY node) x")" "2,2,2"
wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" -ge 40 ]'

# ---- SIGKILL a node that holds tenants -----------------------------------------------------------
victim=$(q "SELECT node FROM tenant_leases WHERE tenant = 't1'")
eval "kill -KILL \$PID_$victim"
wait_until 15 '[ "$(q "SELECT count(*) FROM tenant_leases WHERE node <> '"'$victim'"' AND expires_at_ms > outbox_now_ms()")" = 6 ]'
assert_eq "SIGKILL: the live nodes hold all six tenants" \
    "$(q "SELECT count(*) FROM tenant_leases WHERE node <> '$victim' AND expires_at_ms > outbox_now_ms()")" 6
wait_until 60 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"' AND tenant IS NOT NULL")" = 100 ]'
assert_eq "every tenant's message delivered" "$(q "SELECT count(*) FROM outbox WHERE state = 'accepted' AND tenant IS NOT NULL")" 100
stats=$(mock_get stats)
for i in 1 2 3 4 5; do
    got=$(jget "$stats" "\$.by_key.\"key-$i-secret\".accepted")
    assert_ge "t$i's messages went with t$i's key ($got)" "${got:-0}" 20
done
assert_eq "no 429 from the per-key limit" "$(jget "$stats" '$.rate_limited')" 0
assert_eq "the unowned channel waits" "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'ch6' AND state = 'queued'")" 5

# ---- a tenant added while the nodes run ---------------------------------------------------------
t0=$(now_ms)
echo "key-6-secret" | tenant add t6 --api-key-stdin --channel ch6 >/dev/null
wait_until 20 '[ "$(q "SELECT count(*) FROM outbox WHERE channel_id = '"'ch6'"' AND state = '"'accepted'"'")" = 5 ]'
took=$(( $(now_ms) - t0 ))
assert_eq "a tenant added while serve runs sends what waited" \
    "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'ch6' AND state = 'accepted'")" 5
log "t6's five waiting messages delivered ${took} ms after tenant add"
assert_eq "... with its own key" "$(jget "$(mock_get stats)" '$.by_key."key-6-secret".accepted')" 5

# ---- the tenant routes on PostgreSQL (any node) ---------------------------------------------------
for n in A B C; do [ "$n" != "$victim" ] && live=$n; done
eval "url=http://127.0.0.1:\$PORT_$live/v1/tenants"
tapi() { curl -sS -o "$T/tbody" -w '%{http_code}' -H 'Content-Type: application/json' "$@"; }
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'ch7', 'w7-' || g, 'b', 'c7', 'waiting', 'User' FROM generate_series(1, 3) g" >/dev/null
t0=$(now_ms)
code=$(tapi -X PUT "$url/t7" -d '{"api_key":"key-7-secret","rate_limit":600,"channels":[{"channel_id":"ch7"}]}')
assert_eq "PUT /v1/tenants/t7: 201" "$code" 201
assert_eq "... its view" "$(jget "$(cat "$T/tbody")" '$.tenant') $(jget "$(cat "$T/tbody")" '$.channels[0].channel_id')" "t7 ch7"
assert_not_contains "... never its key" "$(cat "$T/tbody")" "key-7-secret"
wait_until 20 '[ "$(q "SELECT count(*) FROM outbox WHERE channel_id = '"'ch7'"' AND state = '"'accepted'"'")" = 3 ]'
log "t7's three waiting messages delivered $(( $(now_ms) - t0 )) ms after its PUT"
assert_eq "... its waiting messages delivered with its key" "$(jget "$(mock_get stats)" '$.by_key."key-7-secret".accepted')" 3
assert_eq "GET /v1/tenants/t7: 200" "$(tapi "$url/t7")" 200
assert_eq "GET /v1/tenants: all seven" "$(tapi "$url") $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["tenants"]))' "$T/tbody")" "200 7"
code=$(tapi -X PUT "$url/t8" -d '{"api_key":"key-8-secret","channels":[{"channel_id":"ch1"}]}')
assert_eq "a channel t1 owns: 409" "$code $(jget "$(cat "$T/tbody")" '$.error.field')" "409 channels[0].channel_id"
assert_contains "... naming t1" "$(cat "$T/tbody")" "tenant 't1'"
code=$(tapi "${url%/tenants}/stats")
assert_eq "GET /v1/stats: 200, with each tenant's counts and channels" \
    "$code $(python3 -c 'import json,sys; t={x["tenant"]: x for x in json.load(open(sys.argv[1]))["tenants"]}; print(t["t7"]["counts"]["accepted"], t["t1"]["counts"]["accepted"], [c for c in t["t7"]["channels"]])' "$T/tbody")" \
    "200 3 20 ['ch7']"
# A tenant the other live node holds, paused there by a 429 (its finish records the pause in
# tenant_pacing): this node's idle lane for it must not report it running.
other=$(q "SELECT tenant FROM tenant_leases WHERE node NOT IN ('$live', '$victim') AND tenant LIKE 't%' AND expires_at_ms > outbox_now_ms() ORDER BY tenant LIMIT 1")
q "INSERT INTO tenant_pacing (tenant, paused_until_ms, auth_paused, last_sent_at_ms, updated_at_ms) VALUES ('$other', outbox_now_ms() + 600000, false, 0, outbox_now_ms()) ON CONFLICT (tenant) DO UPDATE SET paused_until_ms = excluded.paused_until_ms" >/dev/null
code=$(tapi "${url%/tenants}/stats")
assert_eq "GET /v1/stats on a node that does not hold $other: its holder's pause" \
    "$code $(python3 -c 'import json,sys; t={x["tenant"]: x for x in json.load(open(sys.argv[1]))["tenants"]}; print((t[sys.argv[2]]["paused"] or {}).get("reason"))' "$T/tbody" "$other")" \
    "200 rate_limited"
q "UPDATE tenant_pacing SET paused_until_ms = 0 WHERE tenant = '$other'" >/dev/null
assert_eq "DELETE /v1/tenants/t7: 200" "$(tapi -X DELETE "$url/t7")" 200
assert_eq "GET it again: 404" "$(tapi "$url/t7") $(jget "$(cat "$T/tbody")" '$.error.message')" "404 no such tenant"

finish
