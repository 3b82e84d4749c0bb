#!/usr/bin/env bash
# Big batches from many producers at once on PostgreSQL (docs/schema.md): each conversation a
# transaction writes into holds one entry of PostgreSQL's shared lock table until the COMMIT
# (about 12,000 on a default server). serve's group commit gathered every batch that arrived
# meanwhile into one transaction, and 24 clients posting 1,000 messages 4 times, every one in
# its own conversation, made it fail: "out of shared memory", answered 503 (17 of 96 here,
# 40 of 144 with 6 each). serve now commits at most OBX_STOREQ_PG_GROUP_WEIGHT conversations per
# transaction (and the API gathers at most 2,000 messages on PostgreSQL).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
start_mock --rate-limit 0
start_pg_node A --rate-limit 0
python3 - "$NODE_PORT" >"$T/codes" <<'PY'
import collections, json, sys, threading, urllib.error, urllib.request
port = sys.argv[1]
codes = collections.Counter()
lock = threading.Lock()
def client(k):
    for b in range(4):
        msgs = [{"channel_id": "bulk", "external_message_id": "m%d-%d-%d" % (k, b, i),
                 "business_id": "b", "external_conversation_id": "c%d-%d-%d" % (k, b, i),
                 "content": "x", "sender_type": "User"} for i in range(1000)]
        req = urllib.request.Request("http://127.0.0.1:%s/v1/messages" % port,
                                     data=json.dumps({"messages": msgs}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                code = r.status
        except urllib.error.HTTPError as e:
            code = e.code
        with lock:
            codes[code] += 1
ts = [threading.Thread(target=client, args=(k,)) for k in range(24)]
[t.start() for t in ts]
[t.join() for t in ts]
print(" ".join("%d:%d" % kv for kv in sorted(codes.items())))
PY
assert_eq "96 batches of 1,000 conversations from 24 clients at once: all 202" "$(cat "$T/codes")" "202:96"
assert_eq "... and all 96,000 stored" "$(q "SELECT count(*) FROM outbox WHERE channel_id = 'bulk'")" 96000
finish
