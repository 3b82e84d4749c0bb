#!/usr/bin/env bash
# tests/integration/test_examples.sh: every client example of contrib/examples/ runs against
# a real `outbox serve` (with an api_token) and the mock Partoo (issue 17), so an API change
# that breaks one breaks this test:
#   enqueue.py (Python stdlib), enqueue.mjs (Node fetch, when node is installed), enqueue.sh
#   (curl): 202 and the answer's shape, a duplicate, a refusal without the token, a
#   message that reaches Partoo; sqlite_insert.py: the transactional INSERT, delivered;
#   inbox_receiver.py as inbox_url: replies relayed once each; inbox_pull.py: lists and
#   acknowledges them. The Python and Node clients also refuse an answer of another shape.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/webhook_lib.sh"

hermetic_env
EX=$SRC/contrib/examples
TOKEN=example-token-0123456789
export PARTOO_OUTBOX_URL=$API

start_wh_mock --echo
"$EX/inbox_receiver.py" --port 0 --port-file "$T/rcv.port" --out "$T/replies.jsonl" 2>"$T/rcv.err" &
PIDS+=("$!")
wait_until 30 '[ -s "$T/rcv.port" ]' || { echo "receiver did not start"; cat "$T/rcv.err"; exit 1; }
OUTBOX_API_TOKEN=$TOKEN wh_serve --inbox-url "http://127.0.0.1:$(cat "$T/rcv.port")/replies"

# enqueue_checks NAME CMD...: the example enqueues (ch-NAME, m1); runs it four times.
enqueue_checks() {
    local name=$1
    shift
    OUTBOX_API_TOKEN=$TOKEN "$@" "ch-$name" m1 biz-1 conv-1 "Bonjour – é" >"$T/$name.out" 2>"$T/$name.err"
    assert_eq "$name: exit 0" "$?" 0
    case $name in
        curl) assert_eq "$name: 202 answer" \
            "$(jget "$(cat "$T/$name.out")" '$.state') $(jget "$(cat "$T/$name.out")" '$.duplicate')" "queued 0" ;;
        *) assert_eq "$name: 202 answer" "$(sed 's/id=[0-9]*/id=N/' "$T/$name.out")" \
            "id=N state=queued duplicate=false" ;;
    esac
    OUTBOX_API_TOKEN=$TOKEN "$@" "ch-$name" m1 biz-1 conv-1 "Bonjour – é" >"$T/$name.out2" 2>&1
    assert_contains "$name: the same key again is a duplicate" "$(cat "$T/$name.out2")" "true"
    "$@" "ch-$name" m2 biz-1 conv-1 "no token" >"$T/$name.out3" 2>&1
    assert_eq "$name: without the token: exit 1" "$?" 1
    assert_contains "$name: without the token: 401 unauthorized" "$(cat "$T/$name.out3")" "unauthorized"
    OUTBOX_API_TOKEN=$TOKEN "$@" "ch-$name" m3 biz-1 conv-1 "" >"$T/$name.out4" 2>&1
    assert_eq "$name: empty content: exit 1" "$?" 1
    assert_contains "$name: empty content: the field is named" "$(cat "$T/$name.out4")" "content"
    wait_until 15 '[ "$(state_of "ch-$name" m1)" = confirmed ]'
    assert_eq "$name: the message reached Partoo and was confirmed" "$(state_of "ch-$name" m1)" confirmed
    assert_eq "$name: stored content exact" \
        "$(sql "$DB" "SELECT content FROM outbox WHERE channel_id = 'ch-$name'")" "Bonjour – é"
}

enqueue_checks python python3 "$EX/enqueue.py"
if command -v node >/dev/null; then
    enqueue_checks node node "$EX/enqueue.mjs"
else
    echo "# skip enqueue.mjs: node is not installed (Debian package nodejs)"
fi
enqueue_checks curl sh "$EX/enqueue.sh"

# An API whose answer changed shape: the clients refuse it instead of printing nonsense.
cat >"$T/changed_api.py" <<'PY'
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"message_id": "1", "status": "queued"}).encode()
        self.send_response(202); self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
s = HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + ".tmp", "w").write(str(s.server_address[1]))
import os; os.replace(sys.argv[1] + ".tmp", sys.argv[1])
s.serve_forever()
PY
python3 "$T/changed_api.py" "$T/changed.port" &
PIDS+=("$!")
wait_until 30 '[ -s "$T/changed.port" ]' || { echo "fake API did not start"; exit 1; }
CHANGED=http://127.0.0.1:$(cat "$T/changed.port")
PARTOO_OUTBOX_URL=$CHANGED python3 "$EX/enqueue.py" ch m1 b c x >"$T/ch.out" 2>&1
assert_eq "enqueue.py refuses an answer of another shape" "$?" 1
if command -v node >/dev/null; then
    PARTOO_OUTBOX_URL=$CHANGED node "$EX/enqueue.mjs" ch m1 b c x >"$T/ch.out" 2>&1
    assert_eq "enqueue.mjs refuses an answer of another shape" "$?" 1
fi

# ---- the transactional INSERT ----------------------------------------------------------------
out=$(python3 "$EX/sqlite_insert.py" "$DB" 42 ch-sql biz-1 conv-7)
assert_eq "sqlite_insert: committed" "$(echo "$out" | sed 's/id=[0-9]*/id=N/')" "id=N state=queued key=order-42-ready"
out2=$(python3 "$EX/sqlite_insert.py" "$DB" 42 ch-sql biz-1 conv-7)
assert_eq "sqlite_insert: again: the same message" "${out2%% *}" "${out%% *}"
assert_eq "sqlite_insert: the order row, same commit" "$(sql "$DB" "SELECT status FROM orders WHERE id = 42")" ready
assert_eq "sqlite_insert: one message" "$(sql "$DB" "SELECT count(*) FROM outbox WHERE channel_id = 'ch-sql'")" 1
wait_until 15 '[ "$(state_of ch-sql order-42-ready)" = confirmed ]'
assert_eq "sqlite_insert: serve delivered it" "$(state_of ch-sql order-42-ready)" confirmed

# ---- replies: relayed to the example receiver, pulled and acknowledged ----------------------
for i in 1 2; do
    st=$(wh_send "{\"channel_id\":\"ch-python\",\"external_conversation_id\":\"conv-1\",\"business_id\":\"biz-1\",\"partoo_message_id\":77770$i,\"sender_label\":\"Jane\",\"content\":\"reply $i\",\"date\":\"2026-11-24 09:15:0$i.000000+00:00\"}")
    assert_eq "webhook reply $i: 200" "$st" 200
done
wait_until 15 '[ "$(grep -c . "$T/replies.jsonl" 2>/dev/null)" = 2 ]'
assert_eq "receiver: both replies, once each" \
    "$(python3 -c 'import json,sys; print(sorted(json.loads(l)["idempotency_key"] for l in open(sys.argv[1])))' "$T/replies.jsonl")" \
    "['partoo-777701', 'partoo-777702']"
assert_eq "receiver: the reply's content" \
    "$(python3 -c 'import json,sys; print(sorted(json.loads(l)["reply"]["content"] for l in open(sys.argv[1])))' "$T/replies.jsonl")" \
    "['reply 1', 'reply 2']"
wait_until 10 '[ "$(sql "$DB" "SELECT count(*) FROM inbox WHERE state = '"'delivered'"'")" = 2 ]'
assert_eq "serve: both relayed" "$(sql "$DB" "SELECT count(*) FROM inbox WHERE state = 'delivered'")" 2

OUTBOX_API_TOKEN=$TOKEN python3 "$EX/inbox_pull.py" >"$T/pull.out" 2>"$T/pull.err"
assert_eq "inbox_pull: exit 0" "$?" 0
assert_eq "inbox_pull: both replies" "$(python3 -c 'import json,sys; print([json.loads(l)["content"] for l in open(sys.argv[1])])' "$T/pull.out")" \
    "['reply 1', 'reply 2']"
assert_contains "inbox_pull: handled 2" "$(cat "$T/pull.err")" "handled 2 replies"
assert_eq "inbox_pull: both acknowledged" "$(sql "$DB" "SELECT count(*) FROM inbox WHERE state = 'acked'")" 2
OUTBOX_API_TOKEN=$TOKEN python3 "$EX/inbox_pull.py" >"$T/pull2.out" 2>"$T/pull2.err"
assert_contains "inbox_pull: nothing left" "$(cat "$T/pull2.err")" "handled 0 replies"
python3 "$EX/inbox_pull.py" >/dev/null 2>"$T/pull3.err"
assert_eq "inbox_pull without the token fails" "$?" 1

finish
