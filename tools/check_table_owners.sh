#!/bin/sh
# tools/check_table_owners.sh: one writer module per table (issue 13; docs/architecture.md,
# "Who owns which table"). Finds every INSERT INTO / UPDATE / DELETE FROM of a table of
# schema/schema.sql in the C sources (lib/, cmd/; adjacent string literals are joined first,
# so a statement split over lines is still seen) and fails when a table is written from two
# files. Triggers are the schema of the table they write: they count as its owner's.
# SHARED_TODO lists the tables that still have two writer modules, each with why; it may only
# shrink: the check also fails on a listed table that has one writer again.
# The PostgreSQL backend is a database of its own: its tables (schema/postgresql.sql) are
# checked the same way over its files (lib/*pg*.c), and those files are left out of the
# SQLite pass. `tools/check_table_owners.sh -v` prints the writers of every table.
cd "$(dirname "$0")/.." || exit 1
# Empty: every table has one writer (the last two, outbox and actions, moved to their owners:
# obx_store_bulk_transition, obx_store_dash_prune_actions). The mechanism stays for new code.
SHARED_TODO='
'
verbose=0
[ "$1" = "-v" ] && verbose=1
status=0
# check SCHEMA_FILE FILES...: one writer file per table of SCHEMA_FILE among FILES.
check() {
schema=$1
shift
tables=$(sed -nE 's/^CREATE TABLE ([a-z_0-9]+).*/\1/p' "$schema" | sort -u)
[ -n "$tables" ] || { echo "table owners: no table found in $schema" >&2; exit 1; }
writes=$(for f in "$@"; do
    tr '\n' ' ' <"$f" | sed 's/"[[:space:]]*"//g' |
        grep -oE '(INSERT( OR [A-Z]+)? INTO|UPDATE|DELETE FROM)[[:space:]]+[a-z_][a-z_0-9]*' |
        awk -v f="$f" '{ print $NF, f }'
done | sort -u)
for t in $tables; do
    owners=$(printf '%s\n' "$writes" | awk -v t="$t" '$1 == t { print $2 }')
    n=$(printf '%s\n' "$owners" | grep -c .)
    [ $verbose = 1 ] && echo "$t:" $owners
    listed=0
    printf '%s\n' $SHARED_TODO | grep -qxF "$t" && listed=1
    if [ "$n" -gt 1 ] && [ $listed = 0 ]; then
        echo "table owners: $t is written from" $owners "- one module owns a table: move" \
             "the writes into its owner (docs/architecture.md, \"Who owns which table\")" >&2
        status=1
    elif [ "$n" -le 1 ] && [ $listed = 1 ]; then
        echo "table owners: $t has one writer now: remove it from SHARED_TODO in $0" >&2
        status=1
    fi
done
}
check schema/schema.sql $(find lib cmd -name '*.c' ! -name '*pg*.c' | sort)
for t in $SHARED_TODO; do
    printf '%s\n' $tables | grep -qxF "$t" ||
        { echo "table owners: SHARED_TODO names $t, which schema/schema.sql lacks" >&2; status=1; }
done
check schema/postgresql.sql $(find lib -name '*pg*.c' | sort)
[ $status = 0 ] && echo "table owners: ok"
exit $status
