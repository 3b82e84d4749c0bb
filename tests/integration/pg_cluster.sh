# Sourced by tests that need PostgreSQL: a throwaway cluster from Debian's packages
# (postgresql, installed by scripts/install-deps.sh), made with initdb in a temporary
# directory, run by an unprivileged user (initdb refuses root), listening on a Unix socket
# in that directory only (no TCP port), and stopped and removed by pg_cluster_stop, which
# the sourcing test calls from its EXIT trap. Nothing started by hand is ever used.
#
#   pg_cluster_start DIR   sets PG_URI (postgresql:///postgres?host=DIR/sock&user=outbox_test)
#                          and PG_PSQL (a psql command line for it); returns 1 when no
#                          PostgreSQL server binaries are installed
#   pg_cluster_restart S   stops the server at once and starts it again S seconds later
#   pg_cluster_durable     restarts it with fsync on (for the benchmarks)
#   pg_cluster_stop        stops the server (immediate mode) and removes its files
#   pg_sql SQL...          runs SQL with psql (ON_ERROR_STOP), unaligned, tuples only
#
# For the tests of serve on PostgreSQL (after lib.sh):
#   pg_outbox_cluster      a cluster stopped at exit, with the outbox migrated (schema outbox)
#   q SQL...               pg_sql in the schema outbox
#   start_pg_node NAME [serve options]
#                          serve on the cluster against the mock as node NAME, log in
#                          $T/NAME.log; returns once it serves; sets NODE_PID, NODE_PORT.
#                          The default key is test-key, PG_NODE_KEY when set (empty: none)

pg_bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

PG_DIR=
PG_RUN_AS=

pg_cluster_start() {
    local bin dir=$1
    bin=$(pg_bindir) || { echo "pg_cluster: no PostgreSQL server (apt-get install postgresql)" >&2; return 1; }
    PG_DIR=$dir/pg
    mkdir -p "$PG_DIR/sock"
    PG_RUN_AS=()
    if [ "$(id -u)" = 0 ]; then
        # initdb and postgres refuse to run as root: the package's own user runs them.
        chown -R postgres: "$PG_DIR"
        chmod 755 "$dir"
        PG_RUN_AS=(runuser -u postgres --)
    fi
    "${PG_RUN_AS[@]}" "$bin/initdb" -D "$PG_DIR/data" -U outbox_test -A trust -E UTF8 \
        --no-sync >"$PG_DIR/initdb.log" 2>&1 || { cat "$PG_DIR/initdb.log" >&2; return 1; }
    "${PG_RUN_AS[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR/sock' -c fsync=off" \
        start >/dev/null || { cat "$PG_DIR/server.log" >&2; return 1; }
    PG_BIN=$bin
    PG_URI="postgresql:///postgres?host=$PG_DIR/sock&user=outbox_test"
    PG_PSQL=("$bin/psql" -X -q -v ON_ERROR_STOP=1 -d "$PG_URI")
}

# pg_cluster_restart SECONDS: the server stops at once (as in a crash or a failover) and
# comes back SECONDS later, on the same socket.
pg_cluster_restart() {
    "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
    sleep "$1"
    "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR/sock' -c fsync=off" \
        start >/dev/null
}

# pg_cluster_durable: restarts the server with PostgreSQL's durable defaults (fsync on), which
# the benchmarks measure; the tests' clusters run with fsync off.
pg_cluster_durable() {
    "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null &&
        "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w \
            -o "-c listen_addresses='' -c unix_socket_directories='$PG_DIR/sock'" start >/dev/null ||
        { cat "$PG_DIR/server.log" >&2; return 1; }
}

pg_cluster_stop() {
    [ -n "$PG_DIR" ] && [ -d "$PG_DIR/data" ] || return 0
    "${PG_RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "$PG_DIR"
    PG_DIR=
}

pg_sql() {
    "${PG_PSQL[@]}" -A -t -c "$*"
}

pg_outbox_cluster() {
    # The nodes first: stopped after their database, they log errors they would not have.
    trap 'stop_pids $((OBX_COV_BUILD * 10000)) "${PIDS[@]:-}"; pg_cluster_stop; cleanup' EXIT
    pg_cluster_start "$T" || { echo "FAIL cannot start a PostgreSQL cluster"; exit 1; }
    "$OUTBOX_BIN" migrate --db "$PG_URI" >/dev/null || { echo "FAIL migrate"; exit 1; }
}

q() { pg_sql "SET search_path = outbox; $*"; }

start_pg_node() {
    local name=$1 before
    shift
    before=$(grep -c "msg=serving" "$T/$name.log" 2>/dev/null)
    OUTBOX_PARTOO_API_KEY=${PG_NODE_KEY-test-key} "$OUTBOX_BIN" serve --db "$PG_URI" --partoo-base-url "$MOCK_URL" \
        --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0 --node-name "$name" \
        "$@" >>"$T/$name.log" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    wait_until 15 '[ "$(grep -c "msg=serving" "$T/$name.log")" -gt "${before:-0}" ]' ||
        { log "serve $name did not start"; tail -n 50 "$T/$name.log" >&2; exit 1; }
    NODE_PORT=$(grep -Eo '"?api_port"?[=:][0-9]+' "$T/$name.log" | tail -1 | grep -Eo '[0-9]+$')
}
