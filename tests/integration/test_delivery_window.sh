#!/usr/bin/env bash
# The crash window of the pipelined worker: the store thread commits outcomes while the loop
# keeps sending, so "in flight" must include answered requests whose outcome is not committed
# yet. While another process holds the write lock nothing can be committed; a kill -9 then
# may cost at most max_inflight duplicates, however many messages were claimed ahead.
. "$(dirname "$0")/lib.sh"

N=120
INFLIGHT=4
# Slow answers: the worker has claimed messages ready (up to 2 x max_inflight) while it
# waits, which is what it must not send when it cannot record.
start_mock --rate-limit 0 --delay-ms 100
enqueue_n $N w 50
start_serve --rate-limit 0 --max-inflight $INFLIGHT --log-level warn
wait_until 30 '[ "$(count_state accepted)" -ge 20 ]'

# Hold the write lock for 4 s (a producer's long transaction, a backup...).
python3 - "$DB" "$T/locked" <<'PY' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(4)
db.execute("ROLLBACK")
PY
LOCKER=$!
wait_until 10 '[ -e "$T/locked" ]'
before=$(mock_stat '$.requests')
sleep 2
during=$(( $(mock_stat '$.requests') - before ))
kill -9 "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null
wait "$LOCKER"
assert_le "while nothing can be committed, at most max_inflight requests" "$during" $INFLIGHT

start_serve --rate-limit 0 --max-inflight $INFLIGHT --log-level warn
wait_until 60 '[ "$(count_state accepted)" = $N ]'
echo "requests while locked: $during; duplicates: $(mock_stat '$.duplicates')"
assert_eq "every message accepted after restart" "$(count_state accepted)" $N
assert_eq "mock saw every key" "$(mock_stat '$.unique')" $N
assert_le "extra deliveries <= max_inflight" "$(mock_stat '$.duplicates')" $INFLIGHT
assert_eq "nothing stuck in sending" "$(count_state sending)" 0
finish
