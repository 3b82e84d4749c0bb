#!/usr/bin/env bash
# bench/upload_rss.sh: serve's memory under many concurrent maximum-size uploads from clients
# that are not authorised (issue 19 finding 3).
#
# N connections (default 400) to the producer API each send the headers and all but the last
# byte of a max_body_bytes body (1 MiB), without a token or with a wrong one, then wait until
# all have done so (or were cut off); serve's peak RSS (VmHWM) is read at that moment; then
# each sends its last byte and reads its answer. serve runs with api_token set, so every
# complete request would be 401: what is measured is what serve holds before it can say so.
#
#   bash bench/upload_rss.sh [OUTBOX_BIN] [N]
#
# Prints one line per case: "case peak_rss_mb answers".
set -euo pipefail
BIN=${1:-$(dirname "$0")/../build/outbox}
N=${2:-400}
BT=$(mktemp -d "${TMPDIR:-/tmp}/obx-upload.XXXXXX")
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$BT"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

run_case() { # NAME AUTH_HEADER
    rm -f "$BT"/db*
    OUTBOX_PARTOO_API_KEY=k OUTBOX_API_TOKEN=bench-token-0123456789 "$BIN" serve --db "$BT/db" --partoo-base-url http://127.0.0.1:9/v2 \
        --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 \
        >"$BT/serve.log" 2>&1 &
    PID=$!
    for _ in $(seq 100); do grep -q 'msg=serving' "$BT/serve.log" && break; sleep 0.1; done
    local port
    port=$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$BT/serve.log")
    python3 - "$port" "$N" "$PID" "$1" "$2" <<'PY'
import collections, socket, sys, threading
port, n, pid, name, auth = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
size = 1 << 20
head = (f"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"{auth + chr(13) + chr(10) if auth else ''}Content-Length: {size}\r\n\r\n").encode()
body = b" " * (size - 1)
barrier = threading.Barrier(n + 1, timeout=60)
answers = collections.Counter()
lock = threading.Lock()

def one():
    s = None
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        s.sendall(head + body)
    except OSError:
        pass
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    status = "cut"
    try:
        s.sendall(b" ")
    except (OSError, AttributeError):
        pass
    try:
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
            if b"\r\n\r\n" in data and data.startswith(b"HTTP/"):
                break
        if data.startswith(b"HTTP/"):
            status = data.split(b" ")[1].decode()
    except (OSError, AttributeError):
        pass
    with lock:
        answers[status] += 1
    if s:
        s.close()

threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads:
    t.start()
try:
    barrier.wait()
except threading.BrokenBarrierError:
    pass
hwm = [l for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM")][0].split()[1]
for t in threads:
    t.join()
print(f"{name} peak_rss_mb={int(hwm) / 1024:.0f} answers={dict(sorted(answers.items()))}")
PY
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}

run_case no_token ""
run_case wrong_token "Authorization: Bearer wrong"
