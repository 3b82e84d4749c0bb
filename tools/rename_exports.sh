#!/bin/sh
# tools/rename_exports.sh: applies tools/export_renames.map (old -> new names of exported
# symbols, issue 18) to the sources, tests, benchmarks, build scripts and docs, as whole
# words (so obx_parse_size does not touch obx_parse_size_limit, and OBX_ macros are left
# alone). Idempotent: a second run changes nothing, and it can be run again on a later tree
# (e.g. after merging a branch that still uses old names).
#
#   tools/rename_exports.sh           rename; prints each file it changed
#   tools/rename_exports.sh --check   change nothing; fail listing the old names still used
#
# Only the map's names are renamed; moves of a function to another file are not done here
# (see the map's comments). Files without an old name are not rewritten (mtimes kept).
cd "$(dirname "$0")/.." || exit 1
MAP=tools/export_renames.map
PATHS='lib cmd tests bench fuzz docs cmake contrib scripts README.md CMakeLists.txt outbox.conf.example'
check=0
[ "$1" = "--check" ] && check=1

pairs=$(sed -e 's/#.*//' "$MAP" | awk 'NF == 2 { print $1, $2 } NF != 2 && NF { exit 1 }') || {
    echo "rename exports: $MAP: each line must be \"old new\"" >&2
    exit 1
}
olds=$(printf '%s\n' "$pairs" | awk '{ print $1 }')
news=$(printf '%s\n' "$pairs" | awk '{ print $2 }')
ident='^[A-Za-z_][A-Za-z_0-9]*$'
# Guard idempotency: no name twice, no new name that is also an old name (a chain would
# rename again on the next run), no new name holding an old one as a whole word.
if printf '%s\n' "$olds" "$news" | grep -vE "$ident" >&2; then
    echo "rename exports: not identifiers (above)" >&2
    exit 1
fi
if dup=$(printf '%s\n' "$olds" "$news" | sort | uniq -d | grep .); then
    echo "rename exports: listed twice or both old and new: $dup" >&2
    exit 1
fi
for n in $news; do
    for o in $olds; do
        if printf '%s\n' "$n" | grep -qw "$o"; then
            echo "rename exports: new name $n contains old name $o" >&2
            exit 1
        fi
    done
done

existing=$(for p in $PATHS; do [ -e "$p" ] && printf '%s\n' "$p"; done)
pattern=$(printf '%s\n' "$olds" | paste -sd'|')
# shellcheck disable=SC2086 # word splitting of the path list is intended
files=$(grep -rlIwE "$pattern" $existing | sort)
if [ $check = 1 ]; then
    [ -z "$files" ] && { echo "rename exports: ok"; exit 0; }
    for f in $files; do
        grep -nowE "$pattern" "$f" | sed "s|^|rename exports: $f:|" >&2
    done
    echo "rename exports: old names still used; run $0" >&2
    exit 1
fi
[ -n "$files" ] || { echo "rename exports: nothing to rename"; exit 0; }
script=$(printf '%s\n' "$pairs" | awk '{ printf "s/\\<%s\\>/%s/g\n", $1, $2 }')
for f in $files; do
    sed -i -e "$script" "$f" || exit 1
    echo "renamed in $f"
done
