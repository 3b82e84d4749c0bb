#!/usr/bin/env bash
# tests/integration/test_hardening.sh: the binary is built hardened (issue 19 #14).
#
# readelf on $OUTBOX_BIN: full RELRO (a GNU_RELRO segment and BIND_NOW), stack canaries
# (__stack_chk_fail imported) and, in optimised builds without sanitizers, _FORTIFY_SOURCE's
# checked functions (__*_chk). The build type comes from the build directory's CMakeCache.
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_hardening.sh

. "$(dirname "$0")/lib.sh"

command -v readelf >/dev/null || { echo "# readelf missing: skipped"; finish; exit; }
B=$OUTBOX_BIN
cache=$OBX_BUILD_DIR/CMakeCache.txt
type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache" 2>/dev/null)
san=$(sed -n 's/^OBX_SANITIZE:[A-Z]*=//p' "$cache" 2>/dev/null)
echo "# $B: build type '${type}', sanitizers '${san}'"

readelf -lW "$B" > "$T/segments"
readelf -dW "$B" > "$T/dynamic"
readelf --dyn-syms -W "$B" > "$T/syms"
assert_contains "RELRO: a GNU_RELRO segment" "$(cat "$T/segments")" "GNU_RELRO"
assert_ge "BIND_NOW: symbols bound at start (full RELRO)" \
    "$(grep -cE "\(FLAGS\) +BIND_NOW|FLAGS_1.*[: ]NOW( |$)" "$T/dynamic")" 1
assert_ge "stack protector: __stack_chk_fail is imported" \
    "$(grep -c '__stack_chk_fail' "$T/syms")" 1
case "$type" in
Release | RelWithDebInfo | MinSizeRel)
    if [ -z "$san" ]; then
        assert_ge "FORTIFY_SOURCE: checked functions (__*_chk) are imported" \
            "$(grep -cE ' __[a-z]+_chk(@|$)' "$T/syms")" 1
    fi
    ;;
esac
finish
