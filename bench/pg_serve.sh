#!/usr/bin/env bash
# bench/pg_serve.sh: `outbox serve` on PostgreSQL against `outbox serve` on SQLite, in the same
# run, alternating (issue 15's targets; docs/benchmarks.md, "PostgreSQL: serve"):
#
#   drain    N (100,000) queued messages over 10,000 conversations, serve and the mock
#            unthrottled, --max-inflight 32; messages/s from the first to the last acceptance
#            as the database recorded them, serve's CPU (utime + stime) per message, and on
#            PostgreSQL the cluster's CPU per message (pg_ticks)
#   enqueue  one message per POST /v1/messages, 32 keep-alive connections (wrk -t2 -c32,
#            bench/api_wrk.lua) for API_S (10) seconds into an empty outbox
#
# Both durable: SQLite synchronous=full (serve's default), PostgreSQL with its defaults
# (fsync on, synchronous_commit on), its cluster from Debian's packages in a temporary
# directory on the same disk, over a Unix socket. ROUNDS (2) rounds, each SQLite then
# PostgreSQL.
#
#   bench/pg_serve.sh
#   N=20000 ROUNDS=1 bench/pg_serve.sh
#   KINDS=postgresql bench/pg_serve.sh     # one backend only
set -uo pipefail
{
. "$(dirname "$0")/lib.sh"
. "$BENCH_ROOT/tests/integration/pg_cluster.sh"

N=${N:-100000}
ROUNDS=${ROUNDS:-2}
API_S=${API_S:-10}
INFLIGHT=${INFLIGHT:-32}
KINDS=${KINDS:-sqlite postgresql}

trap 'pg_cluster_stop; bench_cleanup' EXIT
pg_cluster_start "$BT" || exit 1
pg_cluster_durable || exit 1
"$OUTBOX_BIN" migrate --db "$PG_URI" >/dev/null || { log "migrate failed"; exit 1; }
q() { pg_sql "SET search_path = outbox; $*"; }

# The PostgreSQL server's CPU so far: every process of the cluster (backends, writers,
# autovacuum), in clock ticks. A process that exits meanwhile takes its ticks with it, so
# the figure is a floor; the backends serve holds live until it stops.
pg_ticks() {
    local pm
    pm=$(head -1 "$PG_DIR/data/postmaster.pid")
    cat /proc/"$pm"/stat $(pgrep -P "$pm" | sed 's|.*|/proc/&/stat|') 2>/dev/null |
        awk '{ sub(/^.*\) /, ""); t += $12 + $13 } END { print t + 0 }'
}

# The same messages as bench/lib.sh's gen_jsonl, written by PostgreSQL itself.
pg_fill() {
    q "TRUNCATE outbox, transitions, attempts, count_deltas, stats_deltas, state_counts, stats_minute; DELETE FROM tenant_leases; DELETE FROM nodes" >/dev/null
    q "INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id, content, sender_type)
       SELECT 'bench-ch', 'm-' || i, 'biz-' || ((i % 10000) % 10), 'conv-' || (i % 10000),
              'Bench message ' || i || ': hello, this is a typical short chat message body.', 'Consumer'
       FROM generate_series(1, $1) i ORDER BY i" >/dev/null
    q "VACUUM ANALYZE outbox" >/dev/null 2>&1 || pg_sql "VACUUM ANALYZE outbox.outbox" >/dev/null
}

# run_serve DB LOG [options]: serve in the background; sets PID and PORT.
run_serve() {
    local db=$1 logf=$2
    shift 2
    OUTBOX_PARTOO_API_KEY=$BENCH_API_KEY "$OUTBOX_BIN" serve --db "$db" --partoo-base-url "$MOCK_URL" \
        --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 --rate-limit 0 \
        --max-inflight "$INFLIGHT" --node-name bench "$@" >"$logf" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_until 30 'grep -q "msg=serving" "$logf"' || { log "serve did not start"; cat "$logf" >&2; exit 1; }
    PORT=$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$logf" | head -1)
}

# drain KIND: prints "rate cpu_us pg_cpu_us" (pg_cpu_us "-" on SQLite)
drain() {
    local kind=$1 db count t0 ticks first last pg0 pg1
    if [ "$kind" = sqlite ]; then
        db=$(fresh_db "$N" "drain-sqlite")
        count() { sql "$db" "SELECT count(*) FROM outbox WHERE state = 'accepted'"; }
        span() { sql "$db" "SELECT min(accepted_at_ms) || ' ' || max(accepted_at_ms) FROM outbox"; }
    else
        pg_fill "$N"
        db=$PG_URI
        count() { q "SELECT count(*) FROM outbox WHERE state = 'accepted'"; }
        span() { q "SELECT min(accepted_at_ms) || ' ' || max(accepted_at_ms) FROM outbox"; }
    fi
    [ "$kind" = sqlite ] || pg0=$(pg_ticks)
    run_serve "$db" "$BT/drain-$kind.log" --log-level info
    wait_until 600 '[ "$(count)" -ge '"$N"' ]' || log "$kind: drain did not finish"
    ticks=$(cpu_ticks "$PID")
    [ "$kind" = sqlite ] || pg1=$(pg_ticks)
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null
    read -r first last <<<"$(span)"
    fmt "($N - 1) * 1000 / ($last - $first)"
    printf ' '
    fmt "$ticks * 1000000 / $CLK_TCK / $N"
    printf ' '
    if [ "$kind" = sqlite ]; then printf -- '-'; else fmt "($pg1 - $pg0) * 1000000 / $CLK_TCK / $N"; fi
    echo
}

# enqueue KIND: prints messages/s
enqueue() {
    local kind=$1 db res line
    if [ "$kind" = sqlite ]; then
        db=$BT/enqueue.db
        rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
    else
        q "TRUNCATE outbox, transitions, attempts, count_deltas, stats_deltas, state_counts, stats_minute; DELETE FROM tenant_leases; DELETE FROM nodes" >/dev/null
        db=$PG_URI
    fi
    # The mock is stopped so that serve does not drain what the producers enqueue meanwhile.
    run_serve "$db" "$BT/enqueue-$kind.log" --log-level info --partoo-base-url http://127.0.0.1:9/v2
    res=$(WRK_RUN="$kind-$RANDOM" BATCH=1 wrk -t2 -c32 -d"${API_S}s" --timeout 10s \
        -s "$BENCH_ROOT/bench/api_wrk.lua" "http://127.0.0.1:$PORT/v1/messages" 2>&1)
    kill -TERM "$PID"
    wait "$PID" 2>/dev/null
    line=$(echo "$res" | grep '^RESULT ')
    get() { echo "$line" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
    [ "$(get non2xx)" = 0 ] || log "$kind: $(get non2xx) answers were not 2xx"
    fmt "$(get requests) * 1000000 / $(get duration_us)"
    echo
}

start_mock
echo "## PostgreSQL: serve (bench/pg_serve.sh, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "N=$N, --max-inflight $INFLIGHT, both unthrottled; PostgreSQL $(pg_sql 'SHOW server_version')" \
    "(fsync $(pg_sql 'SHOW fsync'), synchronous_commit $(pg_sql 'SHOW synchronous_commit')), SQLite synchronous=full"
echo
echo "| round | backend | drain msg/s | serve CPU µs/msg | PostgreSQL's CPU µs/msg | HTTP enqueue msg/s (32 clients, one message each) |"
echo "|---|---|---:|---:|---:|---:|"
for r in $(seq 1 "$ROUNDS"); do
    for kind in $KINDS; do
        log "round $r: $kind drain"
        read -r rate cpu pgcpu <<<"$(drain $kind)"
        log "round $r: $kind enqueue"
        enq=$(enqueue $kind)
        echo "| $r | $kind | $(commas "$rate") | $cpu | $pgcpu | $(commas "$enq") |"
    done
done
exit 0
}
