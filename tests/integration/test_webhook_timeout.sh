#!/usr/bin/env bash
# Confirmation timeouts (SPEC §3 "Confirmation", §10): without a message_created webhook an
# accepted message is re-sent after confirm_timeout (same key), up to max_resends times, then
# reported unconfirmed by `status`, `ls`, GET /v1/stats, GET /v1/messages and /metrics. A
# read-only channel's message stays accepted and is never re-sent. A late webhook still
# confirms; `retry` resets the resend count.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"
# mock_sends EXT_ID: how many deliveries of that key the mock received.
mock_sends() { mock_get received | awk -F'\t' -v k="$1" '$6 == k' | wc -l | tr -d ' '; }
# ------------------------------------------------------------------------------------------

start_wh_mock # no --echo: Partoo never confirms
wh_serve --confirm-timeout 2s --max-resends 1 --readonly-channels ro
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id t-1 --business b1 \
    --conversation c1 --content 'never echoed' --sender Consumer >/dev/null
"$OUTBOX_BIN" enqueue --db "$DB" --channel ro --message-id r-1 --business b1 \
    --conversation c1 --content 'read-only channel' --sender Consumer >/dev/null
wait_until 10 '[ "$(state_of ch t-1)" = accepted ] && [ "$(state_of ro r-1)" = accepted ]'
assert_eq "both accepted at first" "$(state_of ch t-1)/$(state_of ro r-1)" "accepted/accepted"
wait_until 15 '[ "$(sql "$DB" "SELECT unconfirmed_at_ms IS NOT NULL FROM outbox WHERE external_message_id = '\''t-1'\''")" = 1 ]'
doc=$("$OUTBOX_BIN" show --db "$DB" --json ch t-1)
assert_eq "t-1: still accepted, reported unconfirmed" "$(jget "$doc" '$.state') $(jget "$doc" '$.unconfirmed')" "accepted 1"
assert_eq "t-1: resends 1, attempts 2" "$(jget "$doc" '$.resends') $(jget "$doc" '$.attempts')" "1 2"
assert_eq "t-1: the mock got it twice" "$(mock_sends t-1)" 2
assert_eq "mock: one duplicate in all" "$(mock_stat '$.duplicates')" 1
assert_contains "t-1: a re-send transition was recorded" \
    "$(sql "$DB" "SELECT group_concat(from_state || '>' || to_state || ':' || reason, '|') FROM transitions t JOIN outbox o ON o.id = t.message_id WHERE o.external_message_id = 't-1'")" \
    "accepted>queued:no confirmation in time; re-sending"
gap=$(sql "$DB" "SELECT max(started_at_ms) - min(started_at_ms) FROM attempts a JOIN outbox o ON o.id = a.message_id WHERE o.external_message_id = 't-1'")
assert_ge "t-1: re-sent no earlier than confirm_timeout after acceptance" "$gap" 1900
assert_le "t-1: re-sent within confirm_timeout + 4 s" "$gap" 6000
given_up=$(sql "$DB" "SELECT unconfirmed_at_ms - accepted_at_ms FROM outbox WHERE external_message_id = 't-1'")
assert_ge "t-1: reported no earlier than confirm_timeout after the re-send was accepted" "$given_up" 1900
sleep 3
assert_eq "t-1: never a third send (max_resends 1)" "$(mock_sends t-1)" 2
assert_eq "r-1 (read-only): still accepted, sent once, not unconfirmed" \
    "$(state_of ro r-1) $(mock_sends r-1) $(msg_field ro r-1 '$.unconfirmed') $(msg_field ro r-1 '$.resends')" "accepted 1 0 0"

st=$("$OUTBOX_BIN" status --db "$DB" --json)
assert_eq "status --json: unconfirmed 1" "$(jget "$st" '$.unconfirmed')" 1
assert_eq "status --json: both still counted as accepted" "$(jget "$st" '$.counts.accepted')" 2
assert_eq "status --json: per channel" \
    "$(sql "$DB" "SELECT 1" >/dev/null; printf '%s' "$st" > "$T/st.json"; sqlite3 :memory: "SELECT group_concat(json_extract(value, '\$.channel_id') || '=' || json_extract(value, '\$.unconfirmed'), ',') FROM (SELECT value FROM json_each(json_extract(readfile('$T/st.json'), '\$.channels')) ORDER BY json_extract(value, '\$.channel_id'))")" \
    "ch=1,ro=0"
ls_json=$("$OUTBOX_BIN" ls --db "$DB" --state unconfirmed --json)
assert_contains "ls --state unconfirmed lists t-1" "$ls_json" '"external_message_id":"t-1"'
assert_not_contains "ls --state unconfirmed leaves r-1 out" "$ls_json" '"r-1"'
assert_contains "ls --state unconfirmed (table)" "$("$OUTBOX_BIN" ls --db "$DB" --state unconfirmed)" "t-1"
assert_contains "status (table) mentions unconfirmed" "$("$OUTBOX_BIN" status --db "$DB" | tr A-Z a-z)" "unconfirmed"
stats=$(curl -sS "$API/v1/stats")
assert_eq "GET /v1/stats: unconfirmed 1" "$(jget "$stats" '$.unconfirmed')" 1
api_ls=$(curl -sS "$API/v1/messages?state=unconfirmed")
assert_contains "GET /v1/messages?state=unconfirmed lists t-1" "$api_ls" '"external_message_id":"t-1"'
assert_not_contains "GET /v1/messages?state=unconfirmed leaves r-1 out" "$api_ls" '"r-1"'
assert_contains "/metrics: outbox_unconfirmed_messages for ch" \
    "$(curl -sS "$API/metrics")" 'outbox_unconfirmed_messages{channel="ch"} 1'

# ---- a late webhook still confirms, also in a read-only channel ------------------------------
assert_eq "late echo for t-1: 200" \
    "$(wh_send '{"channel_id":"ch","external_conversation_id":"c1","external_message_id":"t-1","sender_type":"Consumer"}')" 200
assert_eq "late echo for r-1 (read-only): 200" \
    "$(wh_send '{"channel_id":"ro","external_conversation_id":"c1","external_message_id":"r-1","sender_type":"Consumer"}')" 200
wait_until 5 '[ "$(state_of ch t-1)" = confirmed ] && [ "$(state_of ro r-1)" = confirmed ]'
assert_eq "late echoes confirm both" "$(state_of ch t-1)/$(state_of ro r-1)" "confirmed/confirmed"
assert_eq "t-1 no longer unconfirmed" "$(msg_field ch t-1 '$.unconfirmed')" 0
assert_eq "GET /v1/stats: unconfirmed 0" "$(jget "$(curl -sS "$API/v1/stats")" '$.unconfirmed')" 0

# ---- retry of an unconfirmed message: re-sent, resend count reset ------------------------------
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id t-2 --business b1 \
    --conversation c2 --content 'retried' --sender Consumer >/dev/null
wait_until 15 '[ "$(msg_field ch t-2 "\$.unconfirmed")" = 1 ]'
assert_eq "t-2: unconfirmed after one re-send" "$(mock_sends t-2) $(msg_field ch t-2 '$.resends')" "2 1"
assert_status "outbox retry of an unconfirmed message" 0 "$OUTBOX_BIN" retry --db "$DB" ch t-2
assert_eq "t-2: retry resets the resend count and the unconfirmed flag" \
    "$(sql "$DB" "SELECT resends || ' ' || (unconfirmed_at_ms IS NULL) FROM outbox WHERE external_message_id = 't-2'")" "0 1"
wait_until 10 '[ "$(mock_sends t-2)" -ge 3 ]'
assert_ge "t-2: sent again after retry" "$(mock_sends t-2)" 3
wait_until 15 '[ "$(msg_field ch t-2 "\$.unconfirmed")" = 1 ]'
assert_eq "t-2: a full new cycle (one more re-send) before unconfirmed again" \
    "$(mock_sends t-2) $(msg_field ch t-2 '$.resends')" "4 1"
stop_serve

# ---- max_resends 0: unconfirmed without any re-send ------------------------------------------
wh_serve --confirm-timeout 1s --max-resends 0
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id t-3 --business b1 \
    --conversation c3 --content 'no resend' --sender Consumer >/dev/null
wait_until 10 '[ "$(msg_field ch t-3 "\$.unconfirmed")" = 1 ]'
sleep 1.5
assert_eq "max_resends 0: sent once, reported unconfirmed" \
    "$(mock_sends t-3) $(msg_field ch t-3 '$.resends') $(msg_field ch t-3 '$.unconfirmed')" "1 0 1"
stop_serve

# ---- the default confirm_timeout (10m) does not re-send within seconds -------------------------
wh_serve
"$OUTBOX_BIN" enqueue --db "$DB" --channel ch --message-id t-4 --business b1 \
    --conversation c4 --content 'default timeout' --sender Consumer >/dev/null
wait_until 10 '[ "$(state_of ch t-4)" = accepted ]'
due=$(sql "$DB" "SELECT confirm_due_at_ms - accepted_at_ms FROM outbox WHERE external_message_id = 't-4'")
assert_ge "default confirm_timeout is 10 minutes (>= 599.5 s after acceptance)" "$due" 599500
assert_le "default confirm_timeout is 10 minutes (<= 600 s after acceptance)" "$due" 600000
stop_serve

finish
