# tests/torture/common.sh: helpers shared by the reliability scripts (bash; sourced after
# tests/integration/lib.sh, which provides $T, start_mock, start_serve, sql, jget, assert_*).
#
# - private copies of the binaries (a concurrent rebuild of build/ must not swap them mid-run)
# - free ports, the webhook signing seed, our own signer (openssl), serve port discovery

# A work directory of our own name: a broad `rm -rf /tmp/obx-it.*` run by someone else
# while a long torture or soak runs must not pull the database from under it.
_obx_lib_T=$T
T=$(mktemp -d "${TMPDIR:-/tmp}/outbox-rel.XXXXXX") && rmdir "$_obx_lib_T" 2>/dev/null
DB=$T/outbox.db

# python3 resolved once: a pyenv shim costs over a second per call.
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null)
[ -x "$PY" ] || PY=python3

SEED=9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60

# Private copies of outbox and mock_partoo under $T/bin.
torture_private_bins() {
    mkdir -p "$T/bin"
    cp "$OUTBOX_BIN" "$T/bin/outbox" && cp "$MOCK_BIN" "$T/bin/mock_partoo" ||
        { echo "cannot copy the binaries (build first: make build)"; exit 1; }
    OUTBOX_BIN=$T/bin/outbox
    MOCK_BIN=$T/bin/mock_partoo
}

free_port() {
    "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The webhook public key the mock printed for --webhook-seed $SEED.
mock_pubkey() {
    local pub
    pub=$(sed -n 's/.*webhook public key \([0-9a-f]\{64\}\).*/\1/p' "$T/mock.log" | tail -1)
    [ ${#pub} = 64 ] || { echo "no webhook public key in the mock's log" >&2; return 1; }
    echo "$pub"
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

# Our own Ed25519 signer with the mock's seed: sign_file FILE prints the base64 signature.
make_signer() {
    "$PY" -c "import sys; open(sys.argv[2], 'wb').write(bytes.fromhex('302e020100300506032b657004220420' + sys.argv[1]))" \
        "$SEED" "$T/seed.der"
    openssl pkey -inform DER -in "$T/seed.der" -out "$T/key.pem" 2>/dev/null ||
        { echo "openssl cannot load the seed"; exit 1; }
}
sign_file() { openssl pkeyutl -sign -rawin -inkey "$T/key.pem" -in "$1" | base64 -w0; }

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

# proc_rss_kb PID / proc_fds PID: VmRSS in kB and the number of open fds.
proc_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
proc_fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
