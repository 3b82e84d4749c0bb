#!/usr/bin/env bash
# tests/integration/test_install.sh: packaging.
#
# (a) docs/cli.md is what scripts/gen-cli-doc.sh makes from the binary's help text today;
# (b) `cmake --install <build> --prefix $T/prefix` installs the binary, the example
#     configuration, the docs and the systemd unit, and the installed binary works
#     (version, migrate, enqueue, status on a fresh database);
# (c) the installed unit points at the installed binary, carries the hardening, and passes
#     `systemd-analyze verify` when that tool exists.
#
#   OBX_BUILD_DIR=build bash tests/integration/test_install.sh

. "$(dirname "$0")/lib.sh"

hermetic_env
BUILD=${OBX_BUILD_DIR:-$SRC/build}
[ -x "$BUILD/outbox" ] || { echo "no binary in $BUILD"; exit 1; }

# ---- (a) docs/cli.md is up to date ----------------------------------------------------------
if bash "$SRC/scripts/gen-cli-doc.sh" "$BUILD/outbox" >"$T/cli.md" 2>"$T/gen.err"; then
    pass "gen-cli-doc runs"
else
    fail "gen-cli-doc runs: $(cat "$T/gen.err")"
fi
if diff -u "$SRC/docs/cli.md" "$T/cli.md" >"$T/cli.diff"; then
    pass "docs/cli.md is up to date"
else
    fail "docs/cli.md is out of date: run 'scripts/gen-cli-doc.sh $BUILD/outbox > docs/cli.md'"
    head -40 "$T/cli.diff"
fi
for cmd in serve migrate enqueue status doctor backup version; do
    assert_contains "cli.md documents $cmd" "$(cat "$T/cli.md")" "## outbox $cmd"
done

# ---- (b) cmake --install ----------------------------------------------------------------------
P=$T/prefix
assert_status "cmake --install --prefix" 0 cmake --install "$BUILD" --prefix "$P"
DOC=$P/share/doc/partoo-outbox
for f in bin/outbox share/doc/partoo-outbox/outbox.conf.example share/doc/partoo-outbox/README.md \
    share/doc/partoo-outbox/cli.md share/doc/partoo-outbox/operations.md \
    lib/systemd/system/outbox.service; do
    [ -s "$P/$f" ] && pass "installed $f" || fail "installed $f: missing or empty"
done
[ -x "$P/bin/outbox" ] && pass "installed binary is executable" || fail "bin/outbox not executable"
assert_eq "installed cli.md is the committed one" "$(cmp -s "$DOC/cli.md" "$SRC/docs/cli.md"; echo $?)" 0

OBX=$P/bin/outbox
IDB=$T/installed.db
assert_status "installed: version" 0 "$OBX" version
assert_contains "installed: version text" "$(cat "$T/last.out")" "outbox "
# The shipped example configuration loads as it is (its active lines are the defaults).
assert_status "installed: migrate with the example config" 0 \
    "$OBX" migrate --config "$DOC/outbox.conf.example" --db "$IDB"
assert_contains "installed: migrated" "$(cat "$T/last.out")" "migrated schema"
assert_status "installed: enqueue" 0 "$OBX" enqueue --db "$IDB" --channel ch --message-id m1 \
    --business b1 --conversation c1 --content hello --sender Consumer
assert_status "installed: status --json" 0 "$OBX" status --db "$IDB" --json
assert_eq "installed: one queued message" "$(jget "$(cat "$T/last.out")" '$.counts.queued')" 1
assert_status "installed: doctor" 0 env OUTBOX_PARTOO_API_KEY=k "$OBX" doctor --db "$IDB" \
    --api-listen 127.0.0.1:0 --webhook-listen 127.0.0.1:0

# ---- (c) the systemd unit --------------------------------------------------------------------
UNIT=$P/lib/systemd/system/outbox.service
u=$(cat "$UNIT")
assert_contains "unit: ExecStart is the installed binary" "$u" \
    "ExecStart=$P/bin/outbox serve --db /var/lib/outbox/outbox.db"
assert_not_contains "unit: no default prefix left" "$u" "/usr/local/"
for line in "User=outbox" "StateDirectory=outbox" "ProtectSystem=strict" "ProtectHome=yes" \
    "PrivateTmp=yes" "NoNewPrivileges=yes" "ReadWritePaths=/var/lib/outbox" \
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" 'ExecReload=/bin/kill -HUP $MAINPID' \
    "KillSignal=SIGTERM" "Environment=OUTBOX_CONFIG=/etc/outbox/outbox.conf" \
    "EnvironmentFile=-/etc/outbox/secrets"; do
    assert_contains "unit: $line" "$u" "$line"
done
# TimeoutStopSec must leave serve its shutdown_timeout (default 10s) to drain.
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\?$/\1/p' "$UNIT")
assert_ge "unit: TimeoutStopSec > default shutdown_timeout" "${stop:-0}" 11
if command -v systemd-analyze >/dev/null; then
    if systemd-analyze verify "$UNIT" >"$T/verify.out" 2>&1; then
        pass "systemd-analyze verify"
    else
        fail "systemd-analyze verify: $(cat "$T/verify.out")"
    fi
else
    echo "skip systemd-analyze verify (not installed)"
fi

finish
