#!/bin/sh
# tools/check_format.sh: the C sources are formatted as .clang-format says (STYLE.md 23,
# issue 18). Fails listing each file and line clang-format would change; `make format` (or
# `tools/check_format.sh --fix`) rewrites them in place.
#
# Checked: every .c and .h under lib/ cmd/ tests/ bench/. Nothing there is vendored (cJSON,
# libevent, libcurl, SQLite come from the system), and the generated sources
# (migrations_embedded.c, ui_embedded.c) are written into the build directory, not the tree.
# EXCLUDE lists paths to skip, each with why; it is empty today.
cd "$(dirname "$0")/.." || exit 1
CLANG_FORMAT=${CLANG_FORMAT:-clang-format}
EXCLUDE='
'
fix=0
[ "$1" = "--fix" ] && fix=1
command -v "$CLANG_FORMAT" >/dev/null || { echo "format: $CLANG_FORMAT not found" >&2; exit 1; }
files=$(find lib cmd tests bench -name '*.[ch]' | sort)
for e in $EXCLUDE; do
    files=$(printf '%s\n' "$files" | grep -vxF "$e")
done
# shellcheck disable=SC2086 # one word per file name; none has spaces
if [ $fix = 1 ]; then
    "$CLANG_FORMAT" -i --style=file $files || exit 1
    echo "format: applied to $(printf '%s\n' "$files" | grep -c .) files"
    exit 0
fi
# shellcheck disable=SC2086
if ! out=$("$CLANG_FORMAT" --dry-run -Werror --style=file $files 2>&1); then
    printf '%s\n' "$out" | grep -E '^[^ ].*error:' >&2
    n=$(printf '%s\n' "$out" | grep -E '^[^ ].*error:' | cut -d: -f1,2 | sort -u | grep -c .)
    echo "format: $n lines to reformat ($("$CLANG_FORMAT" --version)); run 'make format'" >&2
    exit 1
fi
echo "format: ok ($(printf '%s\n' "$files" | grep -c .) files)"
