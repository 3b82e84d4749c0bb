#!/usr/bin/env bash
# `outbox status` on PostgreSQL (SPEC §11, §12): the same screen as on SQLite, with the nodes
# in place of the serve line, and each tenant's sending pause as the node that holds it
# recorded it (tenant_pacing: SQLite reads the running serve's publication instead, which
# PostgreSQL has not). A tenant whose key Partoo refuses shows "auth", from the command line
# of any machine, while the other tenants send.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

pg_outbox_cluster
start_mock --rate-limit 0 --api-keys test-key,key-good
echo key-good | "$OUTBOX_BIN" tenant add good --api-key-stdin --channel ch-good --db "$PG_URI" >/dev/null
echo key-refused | "$OUTBOX_BIN" tenant add refused --api-key-stdin --channel ch-refused --db "$PG_URI" >/dev/null
start_pg_node A --rate-limit 0
for ch in ch-good ch-refused; do
    q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type) VALUES ('$ch', 'm1', 'b', 'c1', 'x', 'User')" >/dev/null
done
wait_until 15 '[ "$(q "SELECT count(*) FROM attempts")" -ge 2 ]'
assert_eq "the good tenant's message is accepted" "$(q "SELECT state FROM outbox WHERE channel_id = 'ch-good'")" accepted
assert_eq "the refused one waits, its key refused once" \
    "$(q "SELECT o.state || ' ' || a.http_status FROM outbox o JOIN attempts a ON a.message_id = o.id WHERE o.channel_id = 'ch-refused'")" "queued 401"

"$OUTBOX_BIN" status --db "$PG_URI" --json >"$T/status.json"
assert_eq "status --json: the refused tenant is paused for its key, the other is not" "$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%s:%s" % (t["tenant"], (t["paused"] or {}).get("reason")) for t in d["tenants"] if t["tenant"] != "default"))' "$T/status.json")" \
    "refused:auth good:None"
"$OUTBOX_BIN" status --db "$PG_URI" >"$T/status.txt"
assert_contains "status: the tenant table says so" "$(grep '^refused ' "$T/status.txt")" "auth"
assert_contains "status: and lists the node" "$(cat "$T/status.txt")" "nodes: 1 live, 0 gone"
finish
