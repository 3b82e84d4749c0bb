#!/usr/bin/env bash
# tests/integration/test_pkg_docs.sh: the man pages and the bash completion follow the
# binary (issue 17).
#
# (a) outbox(1), built by scripts/gen-man.py, has a section for every command that
#     `outbox --help` lists and names every flag of its `--help`; outbox.conf(5) documents
#     every key `outbox serve --print-config` prints. gen-man.py refuses a key table that
#     lacks a key of the binary, or names one the binary does not know (run on mutated
#     copies of docs/configuration.md).
# (b) contrib/bash-completion/outbox completes every command, every flag of every command,
#     configuration keys as flags, and exactly the value lists the binary accepts (read
#     from its own error messages: states, --format, --sender, --log-level, ...).
#
#   OUTBOX_BIN=build/outbox OBX_BUILD_DIR=build bash tests/integration/test_pkg_docs.sh
. "$(dirname "$0")/lib.sh"

hermetic_env
BUILD=${OBX_BUILD_DIR:-$SRC/build}
export LC_ALL=C
BIN=$OUTBOX_BIN
export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}detect_leaks=0

cmds=$("$BIN" --help | awk '/^Commands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }')
assert_ge "outbox --help lists commands" "$(printf '%s\n' "$cmds" | wc -w)" 10
keys=$("$BIN" serve --print-config | sed -n 's/^\([a-z0-9_]*\) = .*/\1/p' | grep -vx partoo_api_key)
assert_ge "print-config lists keys" "$(printf '%s\n' "$keys" | wc -w)" 30
flags_of() { "$BIN" "$1" --help | grep -o -- '--[a-z][a-z0-9-]*' | grep -vx -- '--KEY' | sort -u; }

# ---- (a) man pages ----------------------------------------------------------------------------
M1=$BUILD/man/outbox.1.gz
M5=$BUILD/man/outbox.conf.5.gz
[ -s "$M1" ] && [ -s "$M5" ] && pass "man pages built" || { fail "no man pages in $BUILD/man"; finish; exit 1; }
src1=$(zcat "$M1")
page1=$(MANWIDTH=200 man -l "$M1" 2>/dev/null)
page5=$(MANWIDTH=200 man -l "$M5" 2>/dev/null)
missing=
for c in $cmds; do
    case $src1 in *".SS outbox ${c//-/\\-}"$'\n'*) ;; *) missing="$missing $c" ;; esac
    for f in $(flags_of "$c"); do
        case $page1 in *"$f"*) ;; *) missing="$missing $c:$f" ;; esac
    done
done
assert_eq "outbox(1): a section per command, every flag named" "${missing:-none}" none
missing=
for k in $keys; do
    case $page5 in *"$k ("*) ;; *) missing="$missing $k" ;; esac
done
assert_eq "outbox.conf(5): every key of --print-config" "${missing:-none}" none
assert_not_contains "outbox.conf(5): every key described in docs/configuration.md" "$page5" \
    "Not described in docs/configuration.md"

# gen-man.py --strict fails when docs/configuration.md and the binary disagree (the build
# runs it without --strict: it warns, and the page gets a stub the check above refuses).
gen() { python3 "$SRC/scripts/gen-man.py" --strict --bin "$BIN" --config-doc "$1" --version 0 --out-dir "$T/man"; }
assert_status "gen-man: the real key table" 0 gen "$SRC/docs/configuration.md"
grep -v '^| `rate_burst`' "$SRC/docs/configuration.md" >"$T/conf-missing.md"
assert_status "gen-man: a key missing from the table fails" 1 gen "$T/conf-missing.md"
assert_contains "gen-man: names the missing key" "$(cat "$T/last.err")" "rate_burst"
sed 's/^| `rate_burst` |/| `rate_burst` | integer | `1` | | x |\n| `rate_bust` |/' \
    "$SRC/docs/configuration.md" >"$T/conf-extra.md"
assert_status "gen-man: a key the binary lacks fails" 1 gen "$T/conf-extra.md"
assert_contains "gen-man: names the unknown key" "$(cat "$T/last.err")" "rate_bust"

# ---- (b) bash completion ----------------------------------------------------------------------
COMPL=$SRC/contrib/bash-completion/outbox
assert_status "completion: bash -n" 0 bash -n "$COMPL"
# complete WORDS...: the completions bash would offer for the last word (may be empty).
complete_words() {
    bash -c '. "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); _outbox
             printf "%s\n" "${COMPREPLY[@]}" | sort' _ "$COMPL" "$BIN" "$@"
}
words() { printf '%s\n' "$@" | tr ' ' '\n' | grep -v '^$' | sort | tr '\n' ' '; }
assert_eq "completion: commands" "$(complete_words '' | tr '\n' ' ')" "$(words $cmds)"
assert_eq "completion: a command prefix" "$(complete_words st | tr '\n' ' ')" "$(words status)"
missing=
for c in $cmds; do
    offered=$(complete_words "$c" --)
    for f in $(flags_of "$c"); do
        printf '%s\n' "$offered" | grep -qx -- "$f" || missing="$missing $c:$f"
    done
done
assert_eq "completion: every flag of every command" "${missing:-none}" none
assert_eq "completion: configuration keys as flags" "$(complete_words serve --rate-l | tr '\n' ' ')" \
    "--rate-limit "
missing=
offered=$(complete_words serve --)
for k in $keys; do
    printf '%s\n' "$offered" | grep -qx -- "--${k//_/-}" || missing="$missing $k"
done
assert_eq "completion: every key of --print-config" "${missing:-none}" none

# Value lists: what the binary says it accepts, in its own error messages.
accepted() { "$@" 2>&1 >/dev/null | sed -n "$SED" | tr -d ' ' | tr ',|' '\n\n' | grep -v '^$' | sort | tr '\n' ' '; }
SED='s/.*--state (\([^)]*\)).*/\1/p'
states=$(accepted "$BIN" ls --db "$T/c.db" --state nope)
assert_ge "binary names its states" "$(echo "$states" | wc -w)" 6
assert_eq "completion: --state" "$(complete_words ls --state '' | tr '\n' ' ')" "$states"
SED='s/.*--format (\([^)]*\)).*/\1/p'
assert_eq "completion: --format" "$(complete_words audit --format '' | tr '\n' ' ')" \
    "$(accepted "$BIN" audit --db "$T/c.db" --format nope)"
SED='s/.*must be "\([A-Za-z]*\)" or "\([A-Za-z]*\)".*/\1,\2/p'
assert_eq "completion: --sender" "$(complete_words enqueue --sender '' | tr '\n' ' ')" \
    "$(accepted "$BIN" enqueue --db "$T/c.db" --channel c --message-id m --business b \
        --conversation c --content t --sender nope)"
SED='s/.*expected one of \([a-z|]*\).*/\1/p'
for k in log-level log-format synchronous; do
    assert_eq "completion: --$k" "$(complete_words serve --$k '' | tr '\n' ' ')" \
        "$(accepted "$BIN" serve --print-config --$k nope)"
done
assert_eq "completion: the command after a global flag's value" \
    "$(complete_words --db x.db ls --st | tr '\n' ' ')" "--state "
assert_eq "completion: audit verify" "$(complete_words audit v | tr '\n' ' ')" "verify "

finish
