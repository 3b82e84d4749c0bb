#!/usr/bin/env bash
# The dashboard (SPEC §13) in a real browser on PostgreSQL: headless Chromium driven by
# Selenium (tests/integration/ui_browser_pg.py) against two `outbox serve` nodes with an
# api_token sharing one throwaway cluster and the mock, the dashboard opened on the node that
# does NOT send (the other holds the default tenant's lease). In the browser: the overview's
# totals equal a count of the outbox in PostgreSQL; a message's transitions and attempt; the
# nodes (both live, the sender holding "default" with its epoch) and tenants view; a pause of
# the default tenant from that view holds a message inserted by SQL (no attempt, nothing
# sent) until Resume; the audit chain verifies. Fails on any browser console error or
# request to another origin. Screenshots go to $OBX_BUILD_DIR/ui-screenshots/pg-*.png.
# The short companion of test_ui_browser.sh (SQLite), which walks every view.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"
hermetic_env

PY=/usr/bin/python3 # the Debian python with python3-selenium, not a pyenv one first on PATH
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] || ! $PY -c 'import selenium' 2>/dev/null; then
    echo "FAIL chromium, chromium-driver and python3-selenium are needed (scripts/install-deps.sh)"
    exit 1
fi

TOKEN=tok-pgui-0123456789abcdef
pg_outbox_cluster
start_mock --rate-limit 0
# serve reads the token from OUTBOX_API_TOKEN; a prefix assignment before a shell function
# reaches the commands it runs (start_pg_node passes its environment through).
OUTBOX_API_TOKEN=$TOKEN start_pg_node A --rate-limit 0 --retry-base 100ms
A_PORT=$NODE_PORT
OUTBOX_API_TOKEN=$TOKEN start_pg_node B --rate-limit 0 --retry-base 100ms
B_PORT=$NODE_PORT
wait_until 15 '[ -n "$(q "SELECT node FROM tenant_leases WHERE tenant = '"'default'"' AND expires_at_ms > outbox_now_ms()")" ]' ||
    { fail "a node holds the default tenant"; finish; exit 1; }
holder=$(q "SELECT node FROM tenant_leases WHERE tenant = 'default'")
if [ "$holder" = A ]; then
    SEND_PORT=$A_PORT OTHER=B OTHER_PORT=$B_PORT
else
    SEND_PORT=$B_PORT OTHER=A OTHER_PORT=$A_PORT
fi
log "node $holder sends; the dashboard is opened on node $OTHER"

# Messages delivered before the walk: 20 by a producer's SQL, 2 through the sender's API.
q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) SELECT 'sql', 's' || g, 'b1', 'c' || g, 'x', 'User' FROM generate_series(1, 20) g" >/dev/null
for i in 1 2; do
    code=$(curl -sS -o "$T/body" -w '%{http_code}' -H 'Content-Type: application/json' \
        -H "Authorization: Bearer $TOKEN" -X POST "http://127.0.0.1:$SEND_PORT/v1/messages" \
        -d '{"channel_id":"api","external_message_id":"api-'$i'","business_id":"b1","external_conversation_id":"c-api'$i'","content":"hello '$i'","sender_type":"Consumer"}')
    assert_eq "POST /v1/messages api-$i on the sending node: 202" "$code" 202
done
wait_until 30 '[ "$(q "SELECT count(*) FROM outbox WHERE state = '"'accepted'"'")" = 22 ]' ||
    fail "the 22 messages were accepted ($(q "SELECT string_agg(state || ':' || n, ' ') FROM (SELECT state, count(*) n FROM outbox GROUP BY state) s"))"

mkdir -p "$OBX_BUILD_DIR/ui-screenshots"
rm -f "$OBX_BUILD_DIR/ui-screenshots/pg-failure.png"
started=$(now_ms)
if OBX_UI_URL=http://127.0.0.1:$OTHER_PORT OBX_UI_TOKEN=$TOKEN OBX_UI_MOCK=http://127.0.0.1:$MOCK_PORT \
    OBX_UI_SHOTS=$OBX_BUILD_DIR/ui-screenshots OBX_UI_TMP=$T \
    OBX_PG_PSQL=$PG_BIN/psql OBX_PG_URI=$PG_URI OBX_PG_SENDER=$holder OBX_PG_OTHER=$OTHER \
    timeout 120 $PY "$(dirname "$0")/ui_browser_pg.py"; then
    pass "browser walk-through on PostgreSQL ($(( ($(now_ms) - started) / 1000 )) s)"
else
    fail "browser walk-through on PostgreSQL (screenshot: $OBX_BUILD_DIR/ui-screenshots/pg-failure.png)"
fi

# What the browser did is in PostgreSQL too.
assert_eq "the tenant's pause is recorded as the dashboard's, and resumed" \
    "$(q "SELECT count(*) FROM pauses WHERE scope = 'tenant' AND key = 'default' AND by = 'dashboard' AND resumed_at_ms >= paused_at_ms")" 1
assert_eq "no pause is left open" "$(q "SELECT count(*) FROM pauses WHERE resumed_at_ms IS NULL")" 0
assert_eq "the held message used no attempt while held, then one" \
    "$(q "SELECT state || ' ' || attempts FROM outbox WHERE external_message_id = 'held-1'")" "accepted 1"
assert_eq "the pause and the resume are audit events, by the dashboard" \
    "$(q "SELECT string_agg(action || ' ' || key || ' ' || by, ', ' ORDER BY id) FROM actions")" \
    "pause default dashboard, resume default dashboard"
for n in A B; do
    assert_eq "no error logged by node $n" "$(grep -c 'level=error' "$T/$n.log")" 0
done
finish
