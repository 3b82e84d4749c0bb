# tests/torture/common.sh: helpers shared by the reliability scripts (bash; sourced after
# tests/integration/lib.sh, which provides $T, start_mock, start_serve, sql, jget, assert_*,
# and through tests/lib/common.sh free_port, mock_pubkey, make_signer, sign_file, rss_kb,
# fd_count).
#
# - private copies of the binaries (a concurrent rebuild of build/ must not swap them mid-run)
# - the webhook signing seed, our own signer (openssl), serve port discovery

# A work directory of our own name: a broad `rm -rf /tmp/obx-it.*` run by someone else
# while a long torture or soak runs must not pull the database from under it.
_obx_lib_T=$T
T=$(mktemp -d "${TMPDIR:-/tmp}/outbox-rel.XXXXXX") && rmdir "$_obx_lib_T" 2>/dev/null
DB=$T/outbox.db

# python3 resolved once: a pyenv shim costs over a second per call.
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
[ -x "$PY" ] || PY=python3

# The mock's webhook seed (--webhook-seed); `make_signer "$SEED"` gives our own signer.
SEED=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60

# Private copies of outbox and mock_partoo under $T/bin.
torture_private_bins() {
    mkdir -p "$T/bin"
    cp "$OUTBOX_BIN" "$T/bin/outbox" && cp "$MOCK_BIN" "$T/bin/mock_partoo" ||
        { echo "cannot copy the binaries (build first: make build)"; exit 1; }
    OUTBOX_BIN=$T/bin/outbox
    MOCK_BIN=$T/bin/mock_partoo
}

# serve_ports: API_PORT and WH_PORT from the `msg=serving` line of $SERVE_PID in
# $T/serve.log (printed at log level info or lower).
serve_ports() {
    local line
    wait_until 10 'grep "msg=serving" "$T/serve.log" | grep -q " pid=$SERVE_PID\>"' || return 1
    line=$(grep 'msg=serving' "$T/serve.log" | grep " pid=$SERVE_PID\>" | tail -1)
    API_PORT=$(printf '%s\n' "$line" | sed -n 's/.*api_port=\([0-9]*\).*/\1/p')
    WH_PORT=$(printf '%s\n' "$line" | sed -n 's/.*webhook_port=\([0-9]*\).*/\1/p')
    API=http://127.0.0.1:$API_PORT
    WH_URL=http://127.0.0.1:$WH_PORT/webhooks/partoo
    [ -n "$API_PORT" ] && [ -n "$WH_PORT" ]
}

# http_code METHOD URL [curl args]: the status code only (000 = no answer).
http_code() {
    local m=$1 u=$2
    shift 2
    curl -sS -o /dev/null -m 10 -w '%{http_code}' -X "$m" "$@" "$u" 2>/dev/null
}

# post_msg KEY [CONTENT]: one message through the producer API; prints the status.
post_msg() {
    local key=$1 content=${2:-hello}
    curl -sS -o "$T/post.out" -m 10 -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d '{"channel_id":"ch","external_message_id":"'"$key"'","business_id":"b1","external_conversation_id":"c-'"$key"'","content":"'"$content"'","sender_type":"Consumer"}' \
        "$API/v1/messages" 2>/dev/null
}

# lost_bytes LOG KIND: bytes "definitely"/"indirectly" lost in a valgrind log;
# 0 when valgrind says "All heap blocks were freed" and prints no LEAK SUMMARY.
lost_bytes() {
    local n
    n=$(grep -E "$2 lost:" "$1" | sed 's/.*lost: *\([0-9,]*\) bytes.*/\1/' | tr -d ',' | head -1)
    echo "${n:-0}"
}
