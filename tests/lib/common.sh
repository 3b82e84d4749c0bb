# tests/lib/common.sh: the shell helpers shared by the integration tests, the torture and soak
# scripts and the benchmarks (bash; sourced, not run). Each helper is defined here once.
#
# Sourced first by tests/integration/lib.sh and bench/lib.sh, and directly by the benchmarks
# that do not use bench/lib.sh (api_bench.sh, webhook_bench.sh). It only defines functions:
# no trap, no work directory, no global variable, so any script can source it. The script
# that sources it provides what the helpers read:
#   T         the work directory (port file, mock log, scratch files)
#   PIDS      array of the processes to kill on exit; start_mock adds the mock to it
#   DB        the database serve_holds_lock looks at when given none
#   MOCK_BIN  the mock; MOCK_OPTS (array, optional) options every start_mock passes first
#   OUTBOX_BIN, MOCK_URL, API_KEY (default test-key): what start_serve runs, against what
#   SERVE_ARGS (array, optional) options every start_serve passes before the caller's
#   SERVE_START_S (default 10) how long start_serve waits; SERVE_STOP_S (optional) seconds
#             before stop_serve kills a serve that does not exit
#   PY        the python3 interpreter, one path (optional, default python3)
#   LOG_TAG   the prefix of log lines (optional)

# log MSG...: a progress or error line on stderr, "LOG_TAG: MSG".
log() { echo "${LOG_TAG:+$LOG_TAG: }$*" >&2; }

# now_ms: wall-clock milliseconds, from bash's own clock (no process per call, so polling
# loops and timed sections stay cheap). [!0-9]: the separator follows the locale.
now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $(( t / 1000 )); }

# wait_until TIMEOUT_S 'SHELL CONDITION': evaluates the condition every 50 ms until it holds;
# returns 1 when TIMEOUT_S (whole seconds) pass first. Quote it so command substitutions
# inside run on every poll, not once.
wait_until() {
    local deadline=$(( $(now_ms) + $1 * 1000 ))
    shift
    while ! eval "$*" >/dev/null 2>&1; do
        [ "$(now_ms)" -ge "$deadline" ] && return 1
        sleep 0.05
    done
    return 0
}

# sql DB QUERY: one query through the sqlite3 shell, list mode.
sql() { sqlite3 -batch -noheader -cmd ".timeout 10000" "$1" "$2"; }
# jget JSON PATH: extracts a value with SQLite's JSON functions (no jq needed).
jget() {
    local json=$1 path=$2
    printf '%s' "$json" > "$T/jget.json"
    sqlite3 -batch -noheader :memory: "SELECT json_extract(readfile('$T/jget.json'), '$path')"
}

# free_port: a TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    "${PY:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# hermetic_env: unsets every OUTBOX_* variable of the caller's environment except OUTBOX_BIN,
# so that a developer's settings cannot change what a test sees.
hermetic_env() {
    local v
    for v in $(compgen -e | grep '^OUTBOX_' || true); do
        [ "$v" = OUTBOX_BIN ] || unset "$v"
    done
}

# pid_alive PID: the process still runs (an exited child not yet reaped, a zombie, does not).
pid_alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# stop_pids GRACE_MS PID...: SIGTERM to each process, up to GRACE_MS for all of them to exit,
# then SIGKILL to any left, and reaps them (GRACE_MS 0: SIGKILL at once). Empty PIDs are
# skipped, so "${PIDS[@]:-}" may be passed as it is.
stop_pids() {
    local grace=$1 p alive deadline
    shift
    if [ "$grace" -gt 0 ]; then
        for p; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done
        deadline=$(( $(now_ms) + grace ))
        while [ "$(now_ms)" -lt "$deadline" ]; do
            alive=0
            for p; do [ -n "$p" ] && pid_alive "$p" && alive=1; done
            [ "$alive" = 0 ] && break
            sleep 0.05
        done
    fi
    for p; do [ -n "$p" ] && kill -KILL "$p" 2>/dev/null; done
    for p; do [ -n "$p" ] && wait "$p" 2>/dev/null; done
    return 0
}

# ---- the mock (tests/mock_partoo) -------------------------------------------------------------

# start_mock [mock options]: the mock on a free port of 127.0.0.1, log in $T/mock.log.
# Sets MOCK_PID, MOCK_PORT and MOCK_URL (base URL with /v2).
start_mock() {
    rm -f "$T/mock.port"
    "$MOCK_BIN" --listen 127.0.0.1:0 --port-file "$T/mock.port" --quiet \
        ${MOCK_OPTS[@]+"${MOCK_OPTS[@]}"} "$@" 2>>"$T/mock.log" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    wait_until 10 '[ -s "$T/mock.port" ]' || { log "mock did not start"; cat "$T/mock.log" >&2; exit 1; }
    MOCK_PORT=$(cat "$T/mock.port")
    MOCK_URL=http://127.0.0.1:$MOCK_PORT/v2
}
# mock_get PATH: GET /_mock/PATH (stats, received, ...).
mock_get() { curl -sS --max-time 10 "http://127.0.0.1:$MOCK_PORT/_mock/$1"; }
# mock_stat NAME | mock_stat '$.PATH': one value of /_mock/stats. A bare NAME is a top-level
# integer, read with sed (no process but curl's: benchmarks poll it); a JSON path goes through
# jget.
mock_stat() {
    case $1 in
    '$'*) jget "$(mock_get stats)" "$1" ;;
    *) mock_get stats | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p" ;;
    esac
}

# ---- serve ------------------------------------------------------------------------------------

# serve_holds_lock [DB]: true while some process holds the flock on DB.lock (default $DB),
# seen in /proc/locks without taking it.
serve_holds_lock() {
    local db=${1:-$DB} ino
    [ -e "$db.lock" ] || return 1
    ino=$(stat -c %i "$db.lock")
    grep -q ":$ino " /proc/locks
}

# start_serve [DB] [serve options]: `outbox serve` on DB (default $DB; a first argument that
# does not start with "-" is the database) against the mock, SERVE_ARGS then the options,
# output appended to $T/serve.log. Returns once serve holds the single-instance lock and has
# opened the database. API_KEY is serve's default key: test-key when unset, none when set
# and empty (tenants only). Sets SERVE_PID and SERVE_CHILD, the serve process: with STRACE_OUT
# set, serve runs under `strace -f -c` counting fsync, fdatasync and sync_file_range (summary
# in $STRACE_OUT), SERVE_PID is strace and SERVE_CHILD serve.
start_serve() {
    local db=${DB:-} cmd
    case ${1:-} in '' | -*) ;; *) db=$1; shift ;; esac
    cmd=("$OUTBOX_BIN" serve --db "$db" --partoo-base-url "$MOCK_URL"
        ${SERVE_ARGS[@]+"${SERVE_ARGS[@]}"} "$@")
    [ -n "${STRACE_OUT:-}" ] &&
        cmd=(strace --seccomp-bpf -f -c -e 'trace=fsync,fdatasync,sync_file_range' -o "$STRACE_OUT" "${cmd[@]}")
    OUTBOX_PARTOO_API_KEY=${API_KEY-test-key} "${cmd[@]}" >>"$T/serve.log" 2>&1 &
    SERVE_PID=$!
    PIDS+=("$SERVE_PID")
    wait_until "${SERVE_START_S:-10}" 'serve_holds_lock "$db" && [ -s "$db" ]' ||
        { log "serve did not start"; tail -n 100 "$T/serve.log" >&2; exit 1; }
    SERVE_CHILD=$SERVE_PID
    [ -n "${STRACE_OUT:-}" ] && SERVE_CHILD=$(pgrep -P "$SERVE_PID" | head -1)
    return 0
}

# stop_serve: SIGTERM to serve (it drains and exits 0), then waits for it; returns its exit
# status. The signal goes to SERVE_CHILD when that is SERVE_PID's child (serve under strace),
# else to SERVE_PID (also when a script started serve itself and set SERVE_PID). With
# SERVE_STOP_S set, a serve still running after that long is killed.
stop_serve() {
    local sig=$SERVE_PID
    [ -n "${SERVE_CHILD:-}" ] && [ "$SERVE_CHILD" != "$SERVE_PID" ] &&
        grep -qx "PPid:[[:space:]]*$SERVE_PID" "/proc/$SERVE_CHILD/status" 2>/dev/null && sig=$SERVE_CHILD
    kill -TERM "$sig" 2>/dev/null
    if [ -n "${SERVE_STOP_S:-}" ]; then
        wait_until "$SERVE_STOP_S" '! kill -0 "$SERVE_PID"' || stop_pids 5000 "$SERVE_PID"
    fi
    wait "$SERVE_PID" 2>/dev/null
}

# ---- webhook signatures -------------------------------------------------------------------------

# mock_pubkey: the webhook public key the mock printed in $T/mock.log for its --webhook-seed.
mock_pubkey() {
    local pub
    pub=$(sed -n 's/.*webhook public key \([0-9a-f]\{64\}\).*/\1/p' "$T/mock.log" | tail -1)
    [ ${#pub} = 64 ] || { echo "no webhook public key in the mock's log" >&2; return 1; }
    echo "$pub"
}

# make_signer SEED_HEX: our own Ed25519 signer with the mock's seed, $T/key.pem (openssl on a
# PKCS#8 DER built from the seed).
make_signer() {
    "${PY:-python3}" -c "import sys; open(sys.argv[2], 'wb').write(bytes.fromhex('302e020100300506032b657004220420' + sys.argv[1]))" \
        "$1" "$T/seed.der"
    openssl pkey -inform DER -in "$T/seed.der" -out "$T/key.pem" 2>/dev/null ||
        { echo "openssl cannot load the seed"; exit 1; }
}
# sign_file FILE: the base64 signature of FILE with $T/key.pem (make_signer).
sign_file() { openssl pkeyutl -sign -rawin -inkey "$T/key.pem" -in "$1" | base64 -w0; }

# ---- /proc --------------------------------------------------------------------------------------

# cpu_ticks PID: utime + stime in clock ticks (0 once the process is gone). The fields are
# counted after the ") " that ends the command name, which may hold spaces.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# hwm_kb PID / rss_kb PID: peak and current resident set, kB. fd_count PID: open fds.
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# ---- reports (benchmarks) -----------------------------------------------------------------------

# fmt EXPR [DECIMALS]: evaluates an arithmetic expression (awk) and prints it rounded.
fmt() { awk "BEGIN { printf \"%.${2:-0}f\", ($1) }"; }
# commas INTEGER: with thousands separators.
commas() { echo "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
# median NUMBER...: of an even count, the lower middle; prints nothing for none.
median() { printf '%s\n' "$@" | sort -g | awk 'NF { v[++n] = $1 } END { if (n) print v[int((n + 1) / 2)] }'; }
# machine_rows DIR: a benchmark's machine table, its head and first rows (CPU, memory, the
# disk of DIR, kernel); the benchmark adds its own rows.
machine_rows() {
    echo "| what | value |"
    echo "|---|---|"
    echo "| CPU | $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), nproc = $(nproc) |"
    echo "| memory | $(free -h | awk '/^Mem:/ { print $2 }') |"
    echo "| disk of the work dir | $(df --output=source,fstype "$1" | tail -1 | tr -s ' ') |"
    echo "| kernel | $(uname -sr) |"
}
