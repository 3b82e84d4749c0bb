#!/usr/bin/env bash
# Disk full, quota and read-only database (SPEC §8, §10 "max_db_size refusal"):
#   1. max_db_size quota: POST answers 507 quota_exceeded, `outbox enqueue` exit 1 with the
#      reason, /healthz 200, /readyz 503, nothing half-written, delivery keeps draining;
#      space freed by purge/retention and a quota raised by SIGHUP let messages in again.
#   2. a real full filesystem (a 4 MiB tmpfs, when we may mount): 503 + Retry-After, CLI
#      exit 1, signed webhooks 503, serve alive, integrity ok, every 202'd key present; space
#      returns (a filler file deleted, less than an unbounded WAL would hold) -> 202 again,
#      100 more messages fit (the WAL is bounded by the free space and does not wedge), and
#      delivery resumes, without a restart.
#   3. a database that cannot be written while serve runs (ext4 immutable flag on the DB,
#      WAL and directory: writes on open fds fail with EPERM; `mount -o remount,ro` is refused
#      by the kernel with EBUSY while serve holds the files open for writing): 503, CLI exit 1,
#      recovery when writable again. And serve started on a read-only tmpfs.
# Parts 2 and 3 are skipped, saying why, when this sandbox forbids mount/chattr.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../torture/common.sh"
torture_private_bins

MNT=
my_cleanup() {
    for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    [ -d "$T/ro" ] && chattr -R -i "$T/ro" 2>/dev/null
    [ -n "$MNT" ] && umount -l "$MNT" 2>/dev/null
    cleanup
}
trap my_cleanup EXIT

BIG=$(head -c 60000 /dev/zero | tr '\0' a)
# post KEY CHANNEL CONTENT: prints the status; body in $T/post.out, headers in $T/post.h.
post() {
    printf '{"channel_id":"%s","external_message_id":"%s","business_id":"b1","external_conversation_id":"c-%s","content":"%s","sender_type":"Consumer"}' \
        "$2" "$1" "$1" "$3" |
        curl -sS -m 20 -o "$T/post.out" -D "$T/post.h" -w '%{http_code}' -X POST \
            -H 'Content-Type: application/json' --data-binary @- "$API/v1/messages" 2>/dev/null
}
# fill PREFIX CHANNEL MAX: POSTs big messages until one is not 202; keys answered 202 are
# appended to $T/acked; LAST is the first other status.
fill() {
    local i code
    for i in $(seq 1 "$3"); do
        code=$(post "$1$i" "$2" "$BIG")
        if [ "$code" = 202 ]; then echo "$1$i" >>"$T/acked"; else LAST=$code; return 0; fi
    done
    LAST=202
}
acked_missing() { # keys answered 202 but absent from $DB
    local k miss=0
    while read -r k; do
        [ "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id = '$k'")" = 1 ] || miss=$((miss + 1))
    done <"$T/acked"
    echo "$miss"
}
readyz() { http_code GET "$API/readyz"; }
healthz() { http_code GET "$API/healthz"; }
cli_enqueue() { # KEY [extra options]: runs outbox enqueue, output in $T/cli.out / $T/cli.err
    local k=$1
    shift
    "$OUTBOX_BIN" enqueue --db "$DB" "$@" --channel ch --message-id "$k" --business b1 \
        --conversation c1 --content small --sender Consumer >"$T/cli.out" 2>"$T/cli.err"
}

start_mock --rate-limit 0 --webhook-seed "$SEED"
PUB=$(mock_pubkey) || exit 1

# ============ 1. the max_db_size quota ========================================================
mkdir -p "$T/q"
DB=$T/q/outbox.db
CONF=$T/q.conf
printf 'max_db_size = 512K\nreadonly_channels = ro\n' >"$CONF"
: >"$T/acked"
start_serve --config "$CONF" --rate-limit 0 --max-inflight 4
serve_ports || { echo "no serving line"; cat "$T/serve.log"; exit 1; }
mock_post faults '{"delay_ms":50}' >/dev/null
fill q ro 100
assert_eq "quota: big POSTs end with 507" "$LAST" 507
assert_eq "quota: error code quota_exceeded" "$(jget "$(cat "$T/post.out")" '$.error.code')" quota_exceeded
n_q=$(wc -l <"$T/acked")
assert_ge "quota: some messages were accepted first" "$n_q" 3
assert_eq "quota: a small message is refused too (507)" "$(post q-small ro small)" 507
assert_eq "quota: /healthz 200" "$(healthz)" 200
# /readyz means "the database is writable" (SPEC §5): under the quota it still is (delivery
# and retention write), so 200 and 503 are both acceptable; shown for the record.
echo "quota: /readyz while refusing new messages: $(readyz)"
cli_enqueue q-cli --config "$CONF"
assert_eq "quota: outbox enqueue exit 1" "$?" 1
assert_contains "quota: outbox enqueue names the limit" "$(cat "$T/cli.err")" "max_db_size"
post q-msg ro small >/dev/null
api_msg=$(jget "$(cat "$T/post.out")" '$.error.message')
echo "quota: API message: $api_msg"
echo "quota: CLI message: $(cat "$T/cli.err")"
assert_contains "quota: the CLI gives the API's message (SPEC §10)" "$(cat "$T/cli.err")" "$api_msg"
assert_eq "quota: serve alive" "$(kill -0 "$SERVE_PID" 2>/dev/null && echo yes)" yes
assert_eq "quota: every 202'd key present" "$(acked_missing)" 0
assert_eq "quota: nothing refused was stored" \
    "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id IN ('q-small', 'q-cli', 'q$((n_q + 1))')")" 0
assert_eq "quota: integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
wait_until 30 '[ "$(count_state accepted)" = "$n_q" ]'
assert_eq "quota: delivery keeps draining while new messages are refused" "$(count_state accepted)" "$n_q"
assert_eq "quota: the mock got every message" "$(mock_stat '$.unique')" "$n_q"

# Space freed by purge (retention does the same hourly): read-only-channel accepted messages
# are terminal, so they go. SPEC §8: "retention frees space from confirmed messages first".
sleep 1
"$OUTBOX_BIN" purge --db "$DB" --config "$CONF" --older-than 1s >"$T/purge.out" 2>&1
echo "purge: $(cat "$T/purge.out")"
assert_eq "quota: purge removed the delivered messages" "$(sql "$DB" "SELECT count(*) FROM outbox")" 0
: >"$T/acked" # those keys were purged on purpose
echo "quota: after purge page_count=$(sql "$DB" "PRAGMA page_count") freelist_count=$(sql "$DB" "PRAGMA freelist_count") page_size=$(sql "$DB" "PRAGMA page_size")"
code=$(post q-after-purge ro small)
assert_eq "quota: after purge freed the space, a new message is accepted (202)" "$code" 202
[ "$code" = 202 ] && echo q-after-purge >>"$T/acked"

# Fill up to the quota again (if the purge did let messages in), then raise it with SIGHUP.
fill q2- ro 100
assert_eq "quota: full again (507)" "$LAST" 507
printf 'max_db_size = 64M\nreadonly_channels = ro\n' >"$CONF"
kill -HUP "$SERVE_PID"
wait_until 5 'grep -q "configuration reloaded" "$T/serve.log"'
assert_contains "quota: SIGHUP reloaded the configuration" "$(cat "$T/serve.log")" "configuration reloaded"
code=$(post q-after-hup ro small)
assert_eq "quota: raised by SIGHUP, a new message is accepted (202)" "$code" 202
[ "$code" = 202 ] && echo q-after-hup >>"$T/acked"
wait_until 3 '[ "$(readyz)" = 200 ]'
assert_eq "quota: raised by SIGHUP, /readyz 200" "$(readyz)" 200
cli_enqueue q-cli2 --config "$CONF"
assert_eq "quota: raised, outbox enqueue exit 0" "$?" 0
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
assert_eq "quota: SIGTERM exit 0" "$?" 0
# After a restart the raised quota certainly applies.
start_serve --config "$CONF" --rate-limit 0
serve_ports
assert_eq "quota: after a restart with the raised quota, 202" "$(post q-after-restart ro small)" 202
echo q-after-restart >>"$T/acked"
assert_eq "quota: every 202'd key present" "$(acked_missing)" 0
kill -TERM "$SERVE_PID"; wait "$SERVE_PID"

# ============ 2. a full filesystem (tmpfs) =====================================================
mkdir -p "$T/fs"
if [ "$(id -u)" != 0 ]; then
    echo "SKIP disk full on tmpfs: not root (uid $(id -u)); the quota variant above ran"
elif ! mount -t tmpfs -o size=4m tmpfs "$T/fs" 2>"$T/mount.err"; then
    echo "SKIP disk full on tmpfs: mount not permitted here: $(cat "$T/mount.err")"
else
    MNT=$T/fs
    DB=$T/fs/outbox.db
    : >"$T/acked"
    mock_post reset "{}" >/dev/null
    # 1.25 MiB of filler: deleting it is "space returns".
    dd if=/dev/zero of="$T/fs/filler" bs=64k count=20 status=none
    start_serve --rate-limit 0 --max-inflight 4 --webhook-public-key "$PUB" --readonly-channels ro
    serve_ports
    mock_post faults '{"webhook_url":"'"$WH_URL"'","delay_ms":20}' >/dev/null
    fill f ro 200
    n_f=$(wc -l <"$T/acked")
    echo "disk full: $n_f messages of 60 KB accepted; df: $(df -k "$T/fs" | tail -1)"
    assert_eq "disk full: POST answers 503" "$LAST" 503
    assert_contains "disk full: Retry-After on the 503" "$(tr -d '\r' <"$T/post.h")" "Retry-After:"
    assert_eq "disk full: error body code" "$(jget "$(cat "$T/post.out")" '$.error.code')" unavailable
    assert_ge "disk full: messages were accepted before" "$n_f" 3
    # Keep it full: a small message may still fit in a page; top up with small ones.
    for i in $(seq 1 200); do
        code=$(post "fs$i" ro small)
        [ "$code" = 202 ] && echo "fs$i" >>"$T/acked"
        [ "$code" = 202 ] || break
    done
    assert_eq "disk full: small messages refused too (503)" "$code" 503
    assert_eq "disk full: a second attempt also 503 (no crash, no hang)" "$(post f-again ro small)" 503
    assert_eq "disk full: /healthz 200" "$(healthz)" 200
    assert_eq "disk full: /readyz 503" "$(readyz)" 503
    cli_enqueue f-cli
    st=$?
    assert_eq "disk full: outbox enqueue exit 1" "$st" 1
    echo "disk full: outbox enqueue said: $(head -c 300 "$T/cli.err")"
    assert_contains "disk full: outbox enqueue gives a reason" "$(cat "$T/cli.err")" "outbox enqueue:"
    # 503 (Partoo retries), or 200 only if it was committed: a WAL that was just reset is
    # rewritten in place, so a small write may still fit in space the file already has.
    wst=$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":610001,"content":"reply while full"}')" '$.status')
    wstored=$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE instr(body, 'reply while full') > 0")
    echo "disk full: signed webhook answered $wst, stored $wstored"
    assert_eq "disk full: a signed webhook gets 503, or 200 only once stored" \
        "$([ "$wst" = 503 ] && [ "$wstored" = 0 ] || { [ "$wst" = 200 ] && [ "$wstored" = 1 ]; } && echo yes)" yes
    assert_eq "disk full: serve alive" "$(kill -0 "$SERVE_PID" 2>/dev/null && echo yes)" yes
    assert_eq "disk full: integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
    assert_eq "disk full: every 202'd key present" "$(acked_missing)" 0
    # A read-only remount while serve holds the files open for writing: Linux refuses it
    # (EBUSY), which is why part 3 makes the files immutable instead.
    if mount -o remount,ro "$T/fs" 2>"$T/mount.err"; then
        echo "remount ro while serve runs: allowed by this kernel"
        assert_eq "remounted ro: POST 503" "$(post f-rofs ro small)" 503
        assert_eq "remounted ro: /readyz 503" "$(readyz)" 503
        mount -o remount,rw "$T/fs"
    else
        echo "remount ro while serve runs: refused by the kernel: $(head -1 "$T/mount.err")"
    fi
    rm -f "$T/fs/filler"
    t0=$(now_ms)
    wait_until 15 '[ "$(post f-back ro small)" = 202 ]'
    assert_eq "space returned: POST 202 again without a restart" "$(post f-back ro small)" 202
    echo f-back >>"$T/acked"
    echo "space returned: first 202 after $(( $(now_ms) - t0 )) ms"
    wait_until 5 '[ "$(readyz)" = 200 ]'
    assert_eq "space returned: /readyz 200" "$(readyz)" 200
    # Less space came back (1.25 MiB) than a WAL left to the 40 MB checkpoint interval
    # holds here (the whole 4 MiB filesystem). Every commit appends pages to the WAL, so
    # such a WAL eats what came back within a few dozen commits, and then neither a commit
    # nor a checkpoint fits: wedged. Bounded by the free space (lib/store.c
    # obx_store_guard_wal), the WAL is checkpointed and reused, and only real growth
    # (a few KB per small message) uses the space.
    echo "space returned: WAL $(stat -c %s "$DB-wal" 2>/dev/null || echo 0) bytes, df: $(df -k "$T/fs" | tail -1)"
    ok=0
    for i in $(seq 1 100); do
        code=$(post "g$i" ro small)
        [ "$code" = 202 ] && { echo "g$i" >>"$T/acked"; ok=$((ok + 1)); }
    done
    echo "space returned: WAL $(stat -c %s "$DB-wal" 2>/dev/null || echo 0) bytes after 100 more messages"
    assert_eq "space returned: 100 more small messages accepted (the WAL does not wedge)" "$ok" 100
    wst=$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":610001,"content":"reply while full"}')" '$.status')
    assert_eq "space returned: the webhook Partoo retries gets 200" "$wst" 200
    total=$(sql "$DB" "SELECT count(*) FROM outbox")
    wait_until 60 '[ "$(count_state accepted)" = "$total" ]'
    assert_eq "space returned: delivery continues, every message accepted" "$(count_state accepted)" "$total"
    assert_eq "space returned: the mock got every message" "$(mock_stat '$.unique')" "$total"
    assert_eq "space returned: nothing in sending" "$(count_state sending)" 0
    assert_eq "space returned: every 202'd key present" "$(acked_missing)" 0
    assert_eq "space returned: integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
    wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" = 0 ]'
    assert_eq "space returned: every stored webhook processed" \
        "$(sql "$DB" "SELECT count(*) FROM webhook_events WHERE processed_at_ms IS NULL")" 0
    assert_eq "space returned: the reply reached the inbox" \
        "$(sql "$DB" "SELECT count(*) FROM inbox WHERE partoo_message_id = '610001'")" 1
    kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
    assert_eq "disk full: SIGTERM exit 0" "$?" 0

    # ---- serve started on a read-only filesystem ---------------------------------------------
    if mount -o remount,ro "$T/fs" 2>"$T/mount.err"; then
        OUTBOX_PARTOO_API_KEY=k timeout 15 "$OUTBOX_BIN" serve --db "$DB" --partoo-base-url "$MOCK_URL" \
            --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 >"$T/serve_ro.log" 2>&1 &
        ro_pid=$!
        PIDS+=("$ro_pid")
        sleep 3
        if kill -0 "$ro_pid" 2>/dev/null; then
            line=$(grep 'msg=serving' "$T/serve_ro.log" | tail -1)
            API=http://127.0.0.1:$(printf '%s' "$line" | sed -n 's/.*api_port=\([0-9]*\).*/\1/p')
            echo "read-only start: serve runs; readyz=$(readyz)"
            assert_eq "read-only start: /healthz 200" "$(healthz)" 200
            assert_eq "read-only start: /readyz 503" "$(readyz)" 503
            assert_eq "read-only start: POST 503" "$(post f-ro ro small)" 503
            kill -TERM "$ro_pid"; wait "$ro_pid"
        else
            wait "$ro_pid"
            st=$?
            echo "read-only start: serve exited $st: $(tail -2 "$T/serve_ro.log")"
            assert_eq "read-only start: serve refuses with exit 1 (not a crash, not a hang)" "$st" 1
            assert_contains "read-only start: the log names the problem" "$(cat "$T/serve_ro.log")" "level=error"
        fi
        cli_enqueue f-ro-cli
        assert_eq "read-only fs: outbox enqueue exit 1" "$?" 1
        echo "read-only fs: outbox enqueue said: $(head -c 300 "$T/cli.err")"
        mount -o remount,rw "$T/fs"
    else
        echo "SKIP serve on a read-only tmpfs: remount refused: $(cat "$T/mount.err")"
    fi
    umount "$T/fs" && MNT=
fi

# ============ 3. the database becomes unwritable while serve runs ==============================
mkdir -p "$T/ro"
if [ "$(id -u)" != 0 ] || ! touch "$T/ro/probe" || ! chattr +i "$T/ro/probe" 2>"$T/chattr.err"; then
    echo "SKIP unwritable database: chattr +i not available here (uid $(id -u)): $(cat "$T/chattr.err" 2>/dev/null)"
else
    chattr -i "$T/ro/probe"; rm -f "$T/ro/probe"
    DB=$T/ro/outbox.db
    : >"$T/acked"
    mock_post reset "{}" >/dev/null
    start_serve --rate-limit 0 --max-inflight 4 --webhook-public-key "$PUB" --readonly-channels ro
    serve_ports
    mock_post faults '{"webhook_url":"'"$WH_URL"'"}' >/dev/null
    for i in 1 2 3; do [ "$(post r$i ro small)" = 202 ] && echo "r$i" >>"$T/acked"; done
    wait_until 10 '[ "$(count_state accepted)" = 3 ]'
    chattr +i "$DB" "$DB-wal" "$T/ro"
    code=$(post r-ro ro small)
    assert_eq "unwritable: POST answers 503" "$code" 503
    assert_contains "unwritable: Retry-After" "$(tr -d '\r' <"$T/post.h")" "Retry-After:"
    assert_eq "unwritable: again 503" "$(post r-ro2 ro small)" 503
    assert_eq "unwritable: /healthz 200" "$(healthz)" 200
    assert_eq "unwritable: /readyz 503" "$(readyz)" 503
    cli_enqueue r-cli
    assert_eq "unwritable: outbox enqueue exit 1" "$?" 1
    echo "unwritable: outbox enqueue said: $(head -c 300 "$T/cli.err")"
    wst=$(jget "$(mock_post webhook '{"channel_id":"ch","external_conversation_id":"c1","partoo_message_id":620001,"content":"reply while ro"}')" '$.status')
    assert_eq "unwritable: a signed webhook gets 503" "$wst" 503
    sleep 2 # the worker's housekeeping runs against the unwritable file
    assert_eq "unwritable: serve alive" "$(kill -0 "$SERVE_PID" 2>/dev/null && echo yes)" yes
    assert_eq "unwritable: integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
    chattr -i "$DB" "$DB-wal" "$T/ro"
    wait_until 15 '[ "$(post r-back ro small)" = 202 ]'
    assert_eq "writable again: POST 202 without a restart" "$(post r-back ro small)" 202
    echo r-back >>"$T/acked"
    wait_until 5 '[ "$(readyz)" = 200 ]'
    assert_eq "writable again: /readyz 200" "$(readyz)" 200
    total=$(sql "$DB" "SELECT count(*) FROM outbox")
    wait_until 30 '[ "$(count_state accepted)" = "$total" ]'
    assert_eq "writable again: delivery continues" "$(count_state accepted)" "$total"
    assert_eq "writable again: the mock got every message" "$(mock_stat '$.unique')" "$total"
    assert_eq "writable again: refused messages were not stored" \
        "$(sql "$DB" "SELECT count(*) FROM outbox WHERE external_message_id IN ('r-ro', 'r-ro2', 'r-cli')")" 0
    assert_eq "writable again: every 202'd key present" "$(acked_missing)" 0
    assert_eq "writable again: integrity_check" "$(sql "$DB" "PRAGMA integrity_check")" ok
    kill -TERM "$SERVE_PID"; wait "$SERVE_PID"
    assert_eq "unwritable: SIGTERM exit 0" "$?" 0
fi

finish
