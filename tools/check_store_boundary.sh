#!/bin/sh
# tools/check_store_boundary.sh: the store boundary (issue 13). Only the store implementation
# (lib/store*.c, lib/store/), the migrations runner (lib/migrate.c) and the db helper
# (lib/db.c, lib/db.h) may call sqlite3_*; only lib/pg.c and the store may call libpq (PQ*). ALLOWED_TODO lists the files that still do and are
# to move behind the store interface; it may only shrink: the check fails on any other file,
# and on a listed file that no longer needs its entry (so the list is kept true).
cd "$(dirname "$0")/.." || exit 1
ALLOWED='^(lib/store[^/]*\.[ch]|lib/store/.*|lib/migrate\.c|lib/db\.[ch])$'
ALLOWED_TODO='
'
status=0
found=$(grep -rlE '\bsqlite3_[a-z_0-9]+' lib cmd --include='*.c' --include='*.h' | sort)
for f in $found; do
    echo "$f" | grep -qE "$ALLOWED" && continue
    if printf '%s\n' $ALLOWED_TODO | grep -qxF "$f"; then
        continue
    fi
    echo "store boundary: $f calls sqlite3_*: use the store interface (lib/store.h)" >&2
    grep -nE '\bsqlite3_[a-z_0-9]+' "$f" | head -5 >&2
    status=1
done
for f in $ALLOWED_TODO; do
    if ! printf '%s\n' $found | grep -qxF "$f"; then
        echo "store boundary: $f no longer calls sqlite3_*: remove it from ALLOWED_TODO in $0" >&2
        status=1
    fi
done
# libpq likewise: only the PostgreSQL helper (lib/pg.c) and the store may call PQ*.
for f in $(grep -rlE '\bPQ[a-z][A-Za-z]+\(' lib cmd --include='*.c' --include='*.h' | sort); do
    echo "$f" | grep -qE '^(lib/pg\.c|lib/store[^/]*\.c|lib/store/.*)$' && continue
    echo "store boundary: $f calls libpq: use lib/pg.h" >&2
    status=1
done
[ $status = 0 ] && echo "store boundary: ok"
exit $status
