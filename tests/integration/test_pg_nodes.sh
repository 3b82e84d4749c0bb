#!/usr/bin/env bash
# PostgreSQL, several nodes (issue 15, SPEC §12): the leases of migrations/postgresql/0002,
# against a real throwaway cluster, stepping PostgreSQL's functions through time (now_ms
# given) for three nodes A, B, C and six tenants:
#   - the tenants are spread over the live nodes, each tenant held by one node;
#   - a node that stops beating loses its tenants once its lease ran out, to live nodes,
#     each with a higher epoch; one that joins gets a share; one that leaves frees its own;
#   - fencing: a write under a lost lease is refused and rolls its transaction back
#     (the node paused past its lease records nothing); a taker skips a tenant whose
#     holder is in the middle of a write.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/pg_cluster.sh"

trap 'pg_cluster_stop; cleanup' EXIT
pg_cluster_start "$T" || { echo "FAIL cannot start a PostgreSQL cluster"; exit 1; }
"$OUTBOX_BIN" migrate --db "$PG_URI" >/dev/null || { echo "FAIL migrate"; exit 1; }

L=10000 # node_lease, ms
TENANTS="ARRAY['default','t1','t2','t3','t4','t5']"
q() { pg_sql "SET search_path = outbox; $*"; }
beat() { q "SELECT count(*) FROM node_beat('$1', $L, $2)" >/dev/null; }
rebalance() { q "SELECT string_agg(tenant, ',') FROM lease_rebalance('$1', $TENANTS, $L, $2)"; }
holders() { q "SELECT string_agg(tenant || '=' || coalesce(node, '-'), ' ' ORDER BY tenant) FROM tenant_leases WHERE expires_at_ms > $1"; }
held_by() { q "SELECT count(*) FROM tenant_leases WHERE node = '$1' AND expires_at_ms > $2"; }
# check TENANT NODE EPOCH NOW: lease_check in a transaction that also writes; prints ok or the error
check() {
    if q "BEGIN; SELECT lease_check('$1', '$2', $3, $4); INSERT INTO tenant_pacing (tenant, last_sent_at_ms) VALUES ('$1', $4) ON CONFLICT (tenant) DO UPDATE SET last_sent_at_ms = excluded.last_sent_at_ms; COMMIT;" >/dev/null 2>"$T/check.err"; then
        echo ok
    else
        grep -o 'lease lost' "$T/check.err" | head -1
    fi
}
epoch() { q "SELECT epoch FROM tenant_leases WHERE tenant = '$1'"; }

# t = 0: three nodes beat, then each rebalances: two tenants each.
for n in A B C; do beat $n 0; done
for n in A B C; do rebalance $n 0 >/dev/null; done
assert_eq "spread: A holds 2" "$(held_by A 0)" 2
assert_eq "spread: B holds 2" "$(held_by B 0)" 2
assert_eq "spread: C holds 2" "$(held_by C 0)" 2
assert_eq "spread: every tenant held once" "$(q "SELECT count(DISTINCT tenant) FROM tenant_leases WHERE node IS NOT NULL")" 6
C_T=$(q "SELECT min(tenant) FROM tenant_leases WHERE node = 'C'")
C_EPOCH=$(epoch "$C_T")
assert_eq "fencing: the holder may write" "$(check "$C_T" C "$C_EPOCH" 1000)" ok
assert_eq "fencing: another node may not" "$(check "$C_T" A "$C_EPOCH" 1000)" "lease lost"

# C stops beating (kill -9, or SIGSTOP). At 5 s nothing moves: its lease still runs.
for n in A B; do beat $n 5000; rebalance $n 5000 >/dev/null; done
assert_eq "before C's lease ends: C keeps its tenants" "$(held_by C 5000)" 2
# At 10.001 s C's lease has ended: A and B take its tenants at their next beat.
for n in A B; do beat $n 10001; rebalance $n 10001 >/dev/null; done
assert_eq "takeover: A holds 3" "$(held_by A 10001)" 3
assert_eq "takeover: B holds 3" "$(held_by B 10001)" 3
assert_eq "takeover: nobody holds nothing" "$(q "SELECT count(*) FROM tenant_leases WHERE node IS NULL OR expires_at_ms <= 10001")" 0
assert_eq "takeover: the epoch went up" "$(epoch "$C_T")" $((C_EPOCH + 1))
NEW_HOLDER=$(q "SELECT node FROM tenant_leases WHERE tenant = '$C_T'")
# C wakes up (SIGCONT): it records nothing more, and its beat tells it what it lost.
assert_eq "fencing: C after losing its lease records nothing" "$(check "$C_T" C "$C_EPOCH" 10002)" "lease lost"
assert_eq "fencing: ... and its transaction left nothing" \
    "$(q "SELECT last_sent_at_ms FROM tenant_pacing WHERE tenant = '$C_T'")" 1000
assert_eq "C's beat: it holds nothing now" "$(q "SELECT count(*) FROM node_beat('C', $L, 10002)")" 0
assert_eq "fencing: the new holder writes under the new epoch" \
    "$(check "$C_T" "$NEW_HOLDER" $((C_EPOCH + 1)) 10003)" ok
assert_eq "fencing: an expired lease cannot write, even its holder's" \
    "$(check "$C_T" "$NEW_HOLDER" $((C_EPOCH + 1)) 99999)" "lease lost"

# C is back and beating: A and B give back their surplus, C takes it.
for t in 12000 12001; do for n in A B C; do beat $n $t; rebalance $n $t >/dev/null; done; done
assert_eq "rejoin: A holds 2" "$(held_by A 12001)" 2
assert_eq "rejoin: B holds 2" "$(held_by B 12001)" 2
assert_eq "rejoin: C holds 2" "$(held_by C 12001)" 2

# A leaves cleanly: its tenants are free at once, and taken at the next rebalance.
q "SELECT node_leave('A')" >/dev/null
assert_eq "leave: A holds nothing" "$(held_by A 12002)" 0
for n in B C; do beat $n 12003; rebalance $n 12003 >/dev/null; done
assert_eq "leave: B and C hold all six" "$(( $(held_by B 12003) + $(held_by C 12003) ))" 6

# A taker skips a tenant whose holder is in the middle of a write (the lease row is locked
# FOR SHARE until the write commits); it takes it once the write is done.
B_T=$(q "SELECT min(tenant) FROM tenant_leases WHERE node = 'B'")
B_EPOCH=$(epoch "$B_T")
mkfifo "$T/w.in"
"${PG_PSQL[@]}" -A -t <"$T/w.in" >"$T/w.out" 2>&1 &
W=$!
PIDS+=("$W")
exec 9>"$T/w.in"
echo "SET search_path = outbox; BEGIN; SELECT lease_check('$B_T', 'B', $B_EPOCH, 12004); SELECT 'writing';" >&9
wait_until 10 'grep -q writing "$T/w.out"' || fail "writer did not start"
# B is gone from now on; at 40 s its lease is long over, but the write still holds the row.
beat C 40000
rebalance C 40000 >/dev/null
assert_eq "in-flight write: the taker skips that tenant" "$(q "SELECT node FROM tenant_leases WHERE tenant = '$B_T'")" B
echo "COMMIT;" >&9
exec 9>&-
wait "$W" 2>/dev/null
rebalance C 40001 >/dev/null
assert_eq "in-flight write done: the taker has it" "$(q "SELECT node FROM tenant_leases WHERE tenant = '$B_T'")" C
assert_eq "one node left: it holds all six" "$(held_by C 40001)" 6

# outbox status lists the nodes, live or gone, with the tenants each holds. N1 beats on
# PostgreSQL's clock; OLD beat two minutes ago (gone); A, B and C beat in 1970, more than a
# day ago: forgotten by the next beat.
q "SELECT count(*) FROM node_beat('OLD', 60000, outbox_now_ms() - 120000)" >/dev/null
q "SELECT count(*) FROM node_beat('N1', 60000)" >/dev/null
q "SELECT count(*) FROM lease_rebalance('N1', ARRAY['default', 't1'], 60000)" >/dev/null
out=$("$OUTBOX_BIN" status --db "$PG_URI" 2>&1)
assert_contains "status: the live node" "$out" "N1"
assert_contains "status: its tenants and epochs" "$out" "default (epoch"
assert_contains "status: live and gone counted" "$out" "nodes: 1 live, 1 gone"
out=$("$OUTBOX_BIN" status --db "$PG_URI" --json 2>&1)
assert_eq "status --json: N1 live with its two tenants" "$(printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
n = [x for x in d["nodes"] if x["name"] == "N1"][0]
print(d["backend"], n["live"], sorted(t["tenant"] for t in n["tenants"]), len(d["nodes"]), "queued" in d["counts"])')" \
    "postgresql True ['default', 't1'] 2 True"
finish
