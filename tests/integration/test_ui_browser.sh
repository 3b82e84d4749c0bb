#!/usr/bin/env bash
# The dashboard (SPEC §13) in a real browser: headless Chromium driven by Selenium
# (tests/integration/ui_browser.py) against a real `outbox serve` with an api_token and the
# mock Partoo. It does what an operator does (token prompt, overview counts, lookup by id,
# attempts, retry, bulk cancel after the count, pause/hold/resume of a channel and of a
# tenant, the tenants and nodes view, deep-link reload) and
# fails on any browser console error or request to another origin. Screenshots of every
# view go to $OBX_BUILD_DIR/ui-screenshots/.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/api_lib.sh"

PY=/usr/bin/python3 # the Debian python with python3-selenium, not a pyenv one first on PATH
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] || ! $PY -c 'import selenium' 2>/dev/null; then
    echo "FAIL chromium, chromium-driver and python3-selenium are needed (scripts/install-deps.sh)"
    exit 1
fi

TOKEN=tok-ui-0123456789abcdef
start_mock --rate-limit 0
OUTBOX_API_TOKEN=$TOKEN api_serve --retry-base 100ms --retry-cap 300ms --rate-limit 0

# A message Partoo refuses once (400: failed at once), for the retry step.
mock_post faults '{"script":[400]}' >/dev/null
req POST /v1/messages '{"channel_id":"ch-a","external_message_id":"bad-1","business_id":"b1","external_conversation_id":"c-bad","content":"refused once","sender_type":"Consumer"}'
assert_eq "failing message accepted by the API" "$CODE" 202
wait_until 10 '[ "$(state_of ch-a bad-1)" = failed ]' || fail "bad-1 did not fail"
# Two tenants (SPEC §11) beside the configured key's "default", for the tenants view: one
# through the API, one through the CLI from another process while serve runs.
req PUT /v1/tenants/acme '{"api_key":"key-acme","rate_limit":"6000/min",
    "channels":[{"channel_id":"acme-sms"},{"channel_id":"acme-reviews","readonly":true}]}'
assert_eq "tenant acme registered through the API" "$CODE" 201
assert_status "tenant globex registered through the CLI" 0 \
    "$OUTBOX_BIN" tenant add globex --db "$DB" --api-key-stdin --rate-limit 6000/min --channel globex-1 <<<key-globex
unset TOKEN
# Five messages created a second apart on 2026-01-01 (plain SQL sets created_at), for the
# time-range step; sent before the walk so the overview's counts are still.
rows=""
for i in 0 1 2 3 4; do rows+="('ch-t', 't-$i', 'b1', 'c-t$i', 'x', 'Consumer', $((1767225600000 + i * 1000))),"; done
sql "$DB" "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type, created_at_ms) VALUES ${rows%,}"
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = '"'ch-t'"' AND state = '"'accepted'"'")" = 5 ]' ||
    fail "the time-range messages were sent"

mkdir -p "$OBX_BUILD_DIR/ui-screenshots"
rm -f "$OBX_BUILD_DIR/ui-screenshots/failure.png"
if OBX_UI_URL=$API OBX_UI_TOKEN=tok-ui-0123456789abcdef OBX_UI_MOCK=http://127.0.0.1:$MOCK_PORT \
    OBX_UI_SHOTS=$OBX_BUILD_DIR/ui-screenshots OBX_UI_TMP=$T \
    timeout 120 $PY "$(dirname "$0")/ui_browser.py"; then
    pass "browser walk-through"
else
    fail "browser walk-through"
fi

# What the browser did is in the database too.
assert_eq "bad-1 accepted after the dashboard retry" "$(state_of ch-a bad-1)" accepted
assert_eq "retry recorded as the dashboard's" \
    "$(sql "$DB" "SELECT count(*) FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 'bad-1' AND t.reason = 'retried from the dashboard'")" 1
assert_eq "bulk cancel touched the 3 held messages" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-c' AND state = 'cancelled' AND state_reason = 'cancelled in bulk by dashboard'")" 3
assert_eq "held messages used no attempt while paused, then drained" \
    "$(sql "$DB" "SELECT count(*) || ' ' || sum(attempts) FROM outbox WHERE channel_id = 'ch-b' AND state = 'accepted'")" "4 4"
assert_eq "the pause is recorded with who and when" \
    "$(sql "$DB" "SELECT count(*) FROM pauses WHERE key = 'ch-b' AND by = 'dashboard' AND resumed_at_ms >= paused_at_ms")" 1
assert_eq "the tenant's pause is recorded with who and when" \
    "$(sql "$DB" "SELECT count(*) FROM pauses WHERE scope = 'tenant' AND key = 'acme' AND by = 'dashboard' AND resumed_at_ms >= paused_at_ms")" 1
assert_eq "acme's held message used no attempt while held, then one" \
    "$(sql "$DB" "SELECT state || ' ' || attempts FROM outbox WHERE channel_id = 'acme-sms' AND external_message_id = 'a-1'")" "accepted 1"
finish
