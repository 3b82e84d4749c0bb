#!/bin/sh
# tools/check_export_prefix.sh: names point to their file (STYLE.md rule 1, issue 18). Every
# symbol the library exports is obx_<mod>_... and is defined in lib/<mod>.c, so that seeing
# obx_store_claim tells you to open lib/store.c.
#
# The symbols come from nm on the objects of the built library (libobx.a), not from the
# headers: nm also sees a helper someone forgot to make static, and a definition in one file
# of a function declared in another file's header. The script builds the obx target of
# BUILD_DIR first (default build/, configured as `make lint` does), so the objects are those
# of the sources in the tree.
#
# A symbol obx_<rest> names the module m for which <rest> is m or starts with m_, the
# longest such m among lib/*.c (so obx_store_inbox_x names store_inbox.c, not store.c), or
# through ALIASES. The check fails, naming each symbol, when that module is not the file that
# defines it, when the symbol names no module at all, or when it does not start with obx_.
#
# The exceptions are three short tables; each entry says why. The check also fails on an
# entry that no longer matches anything, so the tables stay true.
#
# Usage: tools/check_export_prefix.sh [BUILD_DIR]      (-v: print every symbol and its file)
cd "$(dirname "$0")/.." || exit 1
verbose=0
[ "$1" = "-v" ] && { verbose=1; shift; }
build=${1:-build}

# Short prefixes a file may use instead of obx_<file>_ (prefix -> module). Keep it tiny.
#   storeq -> store_queue: the store thread's handle and jobs (obx_storeq_call, struct
#     obx_storeq_job) are named at many call sites in api.c, inbox.c, server.c and in
#     docs/architecture.md; "storeq" is no other module's name nor the start of one, so a
#     grep for obx_storeq_ still lands in one file, and obx_store_queue_ would read as the
#     store module's "queue" at a glance.
ALIASES='
storeq:store_queue
'

# Exact names a file may export although they carry no module prefix (file:symbol).
#   err.c:obx_strerror, store.c:obx_enqueue, store.c:obx_enqueue_sqlite: the public C API
#     (lib/outbox.h), which producers link against and README.md, docs/schema.md and
#     docs/operations.md teach; renaming them would break every producer. STYLE.md rule 4
#     names obx_strerror itself. The check verifies each is declared in lib/outbox.h.
#   mem.c:obx_malloc ... obx_strndup: the allocator wrappers STYLE.md rule 9 names ("all
#     allocation goes through obx_malloc/obx_calloc/obx_free in lib/mem.c"): the libc names
#     with obx_ in front, as git's xmalloc; obx_mem_malloc would add noise to every
#     allocation and say nothing more.
EXACT='
err.c:obx_strerror
store.c:obx_enqueue
store.c:obx_enqueue_sqlite
mem.c:obx_malloc
mem.c:obx_calloc
mem.c:obx_realloc
mem.c:obx_free
mem.c:obx_strdup
mem.c:obx_strndup
'
# Public names: each EXACT entry outside mem.c must be declared in this header.
PUBLIC_HEADER=lib/outbox.h

# Generated sources compiled into the library (object basename -> module that owns them).
#   migrations_embedded (cmake/embed_migrations.cmake): the migrations, read by migrate.c.
#   migrations_pg_embedded (the same, from migrations/postgresql): read by migrate_pg.c.
#   ui_embedded (cmake/embed_ui.cmake): the dashboard's files, served by ui.c.
GENERATED='
migrations_embedded:migrate
migrations_pg_embedded:migrate_pg
ui_embedded:ui
'

if ! out=$(cmake --build "$build" --target obx -j"${JOBS:-2}" 2>&1); then
    printf '%s\n' "$out" >&2
    echo "export prefix: cannot build the obx target in $build (configure it first)" >&2
    exit 1
fi
lib="$build/libobx.a"
[ -f "$lib" ] || { echo "export prefix: no $lib" >&2; exit 1; }

modules=$(for f in lib/*.c; do basename "$f" .c; done)
# Lines "object symbol", e.g. "store.c.o obx_store_claim".
syms=$(nm -A -g --defined-only "$lib" | awk '{ n = split($1, p, ":"); print p[n-1], $NF }')
[ -n "$syms" ] || { echo "export prefix: nm found no symbol in $lib" >&2; exit 1; }

# module_of REST: the module the name obx_REST points to, or nothing.
module_of() {
    best=
    for m in $modules; do
        case "$1" in "$m" | "$m"_*) [ ${#m} -gt ${#best} ] && best=$m ;; esac
    done
    for a in $ALIASES; do
        p=${a%%:*}
        case "$1" in "$p" | "$p"_*) [ ${#p} -gt ${#best} ] && best=${a#*:} ;; esac
    done
    printf '%s' "$best"
}

status=0
used=
while read -r obj sym; do
    base=${obj%.o}
    base=${base%.c}
    file=lib/$base.c
    owner=$base
    for g in $GENERATED; do
        [ "${g%%:*}" = "$base" ] && { owner=${g#*:}; file="generated $base.c (module $owner)"; }
    done
    [ $verbose = 1 ] && echo "$sym $file"
    if printf '%s\n' "$EXACT" | grep -qxF "$base.c:$sym"; then
        used="$used $base.c:$sym"
        continue
    fi
    case "$sym" in
    obx_*) ;;
    *)
        echo "export prefix: $file exports $sym: no obx_ prefix (make it static, or name it obx_${owner}_...)" >&2
        status=1
        continue
        ;;
    esac
    m=$(module_of "${sym#obx_}")
    [ "$m" = "$owner" ] && continue
    if [ -z "$m" ]; then
        echo "export prefix: $file exports $sym: the name points to no file (expected obx_${owner}_...)" >&2
    else
        echo "export prefix: $file exports $sym: the name points to lib/$m.c (expected obx_${owner}_...)" >&2
    fi
    status=1
done <<EOF
$syms
EOF

# Keep the tables true.
for e in $EXACT; do
    case " $used " in *" $e "*) ;; *)
        echo "export prefix: $e is no longer exported: remove it from EXACT in $0" >&2
        status=1 ;;
    esac
    case "$e" in mem.c:*) continue ;; esac
    if ! grep -qE "[^a-z_0-9]${e#*:}\(" "$PUBLIC_HEADER"; then
        echo "export prefix: ${e#*:} is not declared in $PUBLIC_HEADER: only public API may be listed in EXACT" >&2
        status=1
    fi
done
for a in $ALIASES; do
    if ! printf '%s\n' "$syms" | grep -q " obx_${a%%:*}_"; then
        echo "export prefix: no symbol uses the alias obx_${a%%:*}_: remove it from ALIASES in $0" >&2
        status=1
    fi
    if ! printf '%s\n' "$modules" | grep -qxF "${a#*:}"; then
        echo "export prefix: alias ${a%%:*} names lib/${a#*:}.c, which does not exist" >&2
        status=1
    fi
done
[ $status = 0 ] && echo "export prefix: ok ($(printf '%s\n' "$syms" | grep -c .) symbols)"
exit $status
