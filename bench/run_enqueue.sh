#!/usr/bin/env bash
# bench/run_enqueue.sh: the enqueue benchmarks of docs/benchmarks.md ("Enqueue").
#
# Builds nothing: expects build/enqueue_bench and build/outbox (cmake --build build).
# Prints the machine description, runs the library benchmark (bench/enqueue_bench.c), then
# times `outbox enqueue` reading N JSON Lines from a file, and prints Markdown tables.
#
#   bench/run_enqueue.sh                 # N = 1,000,000, databases in $TMPDIR or /tmp
#   N=100000 BENCH_DIR=/var/tmp bench/run_enqueue.sh [enqueue_bench options...]
#
# Environment: BUILD (default <repo>/build), OUTBOX_BIN, ENQUEUE_BENCH, N, BENCH_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build}
OUTBOX=${OUTBOX_BIN:-$BUILD/outbox}
BENCH=${ENQUEUE_BENCH:-$BUILD/enqueue_bench}
N=${N:-1000000}
DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}

for x in "$OUTBOX" "$BENCH"; do
    [ -x "$x" ] || { echo "run_enqueue.sh: $x not found; build first (cmake --build build)" >&2; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "run_enqueue.sh: the sqlite3 shell is needed" >&2; exit 1; }

WORK=$(mktemp -d "$DIR/obx-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---- the machine ----------------------------------------------------------------------
disk_of() { # the block device under a directory, and whether it is rotational
    local src dev
    src=$(df --output=source "$1" | tail -1)
    dev=$(lsblk -no PKNAME "$src" 2>/dev/null | head -1)
    [ -n "$dev" ] || dev=$(basename "$src")
    echo "$src ($(df --output=fstype "$1" | tail -1)), $(lsblk -dno ROTA,MODEL "/dev/$dev" 2>/dev/null |
        awk '{ r = $1 == 1 ? "rotational" : "non-rotational"; $1 = ""; print r " (as lsblk reports it)" ($0 ~ /[^ ]/ ? "," $0 : "") }')"
}
echo "## Machine"
echo
echo "- CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1), $(nproc) CPUs available"
echo "- memory: $(free -h | awk '/^Mem:/ { print $2 }')"
echo "- disk: $(disk_of "$WORK")"
echo "- kernel: $(uname -sr)"
echo "- SQLite: library $("$OUTBOX" version --json | sed 's/.*"sqlite":"\([^"]*\)".*/\1/'), shell $(sqlite3 --version | cut -d' ' -f1)"
echo "- outbox: $("$OUTBOX" version | cut -d' ' -f2)"
echo "- date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo

# ---- the library ------------------------------------------------------------------------
echo "## Library (bench/enqueue_bench -n $N${*:+ $*})"
echo
"$BENCH" -n "$N" -d "$WORK" "$@"
echo

# ---- the CLI: JSON Lines on stdin ---------------------------------------------------------
# Same shape as the library benchmark: 1000 conversations over 10 businesses, ~100-byte content.
awk -v n="$N" 'BEGIN {
    split("Bonjour, votre commande n°|Hello! Your appointment #|Merci pour votre message (ticket |Hi, we received your return request ", pre, "|");
    split(" est prête. Vous pouvez la retirer en magasin dès demain 9h.| is confirmed for Tuesday at 10:30. Reply here to reschedule.|). Un conseiller vous répond dans les 24 heures.|; the refund will be issued within 5 business days.", post, "|");
    for (i = 0; i < n; i++) {
        conv = i % 1000; t = i % 4 + 1;
        extra = "";
        if (i % 10 < 7) {
            sender = "Consumer"; extra = sprintf(",\"consumer_name\":\"Client %d\"", conv);
            if (conv % 3 == 0) extra = extra sprintf(",\"consumer_image\":\"https://cdn.example.com/avatars/%d.png\"", conv);
        } else sender = "User";
        printf "{\"channel_id\":\"ch-bench\",\"external_message_id\":\"cli-%09d\",\"business_id\":\"biz-%02d\",\"external_conversation_id\":\"conv-%04d\",\"content\":\"%s%07d%s\",\"sender_type\":\"%s\"%s}\n",
            i, conv % 10, conv, pre[t], i, post[t], sender, extra;
    } }' > "$WORK/messages.jsonl"
DB=$WORK/cli.db
"$OUTBOX" migrate --db "$DB" > /dev/null
START=$(date +%s.%N)
"$OUTBOX" enqueue --db "$DB" < "$WORK/messages.jsonl" > "$WORK/enqueue.out"
END=$(date +%s.%N)
grep -q "^accepted $N, duplicate 0, conflict 0, invalid 0$" "$WORK/enqueue.out" ||
    { echo "run_enqueue.sh: unexpected enqueue result: $(tail -1 "$WORK/enqueue.out")" >&2; exit 1; }
sqlite3 "$DB" "PRAGMA wal_checkpoint(TRUNCATE)" > /dev/null
SIZE=$(stat -c %s "$DB")
echo "## CLI (outbox enqueue < $N JSON Lines)"
echo
echo "| benchmark | count | seconds | result | notes |"
echo "|---|---:|---:|---:|---|"
awk -v n="$N" -v s="$(awk -v a="$START" -v b="$END" 'BEGIN { print b - a }')" -v size="$SIZE" -v bytes="$(stat -c %s "$WORK/messages.jsonl")" 'BEGIN {
    printf "| outbox enqueue (JSON Lines on stdin) | %d | %.2f | **%.0f messages/s** | %.0f MB of input; parse + validate + batches of 5000 (cmd_enqueue.c BATCH), synchronous=full |\n", n, s, n / s, bytes / 1e6;
    printf "| database size per message | %d | - | **%.0f bytes** | after PRAGMA wal_checkpoint(TRUNCATE) |\n", n, size / n }'
