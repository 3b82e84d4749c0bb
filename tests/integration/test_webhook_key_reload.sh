#!/usr/bin/env bash
# A webhook key rotation by SIGHUP while signed webhooks are being verified (SPEC §4, issue 13).
#
# The verification threads (lib/verify_pool.c) check signatures with the configured key while
# the loop thread swaps it on a reload. Four senders post signed replies through the mock
# while the key in the configuration file goes back and forth between the mock's key and
# another one, a reload after each change. Every reply must be answered 200 (stored) or 401
# (nothing stored), and the inbox must hold exactly the ones answered 200; at rest the
# reloaded key decides (the other key: 401, nothing stored; the mock's key again: 200); and
# SIGTERM still exits 0. Under `make test-tsan` this is also the run that has a key swap
# racing in-flight verifications.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"

# RFC 8032 section 7.1 TEST 2's public key: a valid key that did not sign the mock's events.
OTHER=3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c
SENDERS=4
PER_SENDER=40

start_wh_mock
set_key() { printf 'webhook_public_key = %s\n' "$1" >"$T/outbox.conf"; }
reloads() { grep -c "configuration reloaded" "$T/serve.log"; }
# reload KEY: writes KEY to the configuration and waits for serve to have reloaded it.
reload() {
    local before
    before=$(reloads)
    set_key "$1"
    kill -HUP "$SERVE_PID"
    wait_until 20 '[ "$(reloads)" -gt "$before" ]' || { echo "no reload"; tail "$T/serve.log"; exit 1; }
}
inbox_n() { sql "$DB" "SELECT count(*) FROM inbox"; }
reply() {
    printf '{"channel_id":"ch","external_conversation_id":"c-%s","partoo_message_id":%s,"content":"r%s"}' \
        "$1" "$2" "$2"
}

set_key "$PUB"
wh_serve_nokey --config "$T/outbox.conf"
assert_eq "the mock's key: a signed reply answered 200" "$(wh_send "$(reply k 900001)")" 200

# ---- the key swapped back and forth while senders post ----------------------------------------
# sender N: PER_SENDER replies, the receiver's status for each on a line of $T/st.N (not
# through jget, whose scratch file the senders would share).
for s in $(seq 1 $SENDERS); do
    (
        for i in $(seq 1 $PER_SENDER); do
            r=$(mock_post webhook "$(reply "s$s" $((s * 1000 + i)))")
            r=${r#*\"status\":}
            echo "${r%%[!0-9]*}"
        done >"$T/st.$s"
    ) &
    PIDS+=($!)
    SENDER_PIDS+=($!)
done
for k in "$OTHER" "$PUB" "$OTHER" "$PUB" "$OTHER" "$PUB" "$OTHER" "$PUB"; do
    reload "$k"
    sleep 0.2
done
wait "${SENDER_PIDS[@]}"
cat "$T"/st.* >"$T/statuses"
n200=$(grep -cx 200 "$T/statuses")
n401=$(grep -cx 401 "$T/statuses")
echo "during the swaps: $n200 answered 200, $n401 answered 401"
assert_eq "every reply during the swaps answered 200 or 401" "$((n200 + n401))" \
    $((SENDERS * PER_SENDER))
wait_until 20 '[ "$(inbox_n)" = $((n200 + 1)) ]'
assert_eq "the inbox holds exactly the replies answered 200 (and the first)" "$(inbox_n)" \
    $((n200 + 1))

# ---- at rest, the reloaded key decides ----------------------------------------------------------
reload "$OTHER"
assert_eq "after a reload to another key: the mock's reply answered 401" \
    "$(wh_send "$(reply k 900002)")" 401
reload "$PUB"
assert_eq "after a reload back to the mock's key: answered 200" "$(wh_send "$(reply k 900003)")" 200
wait_until 20 '[ "$(inbox_n)" = $((n200 + 2)) ]'
assert_eq "only the reply answered 200 was stored" \
    "$(sql "$DB" "SELECT group_concat(partoo_message_id) FROM inbox WHERE partoo_message_id IN ('900002', '900003')")" \
    900003

kill -TERM "$SERVE_PID"
wait "$SERVE_PID"
assert_eq "SIGTERM: exit status 0" "$?" 0
finish
