#!/usr/bin/env bash
# tests/integration/test_pkg_deb.sh: the Debian package (issue 17).
#
# Builds it (`cmake --build <build> --target deb`, what `make deb` runs), then checks:
# the control data (Depends derived by dpkg-shlibdeps, the conffile, maintainer scripts
# that parse), the files (`dpkg -x` into a scratch root: the binary runs `version`, the
# shipped conffile loads as it is, the man pages render with `man -l` without a groff
# warning, the completion script passes `bash -n`), the packaged unit (packaged paths,
# hardening kept) and `lintian` (no error; warnings are printed). Skipped in sanitizer
# builds: the package is made from the release build.
#
#   OBX_BUILD_DIR=build bash tests/integration/test_pkg_deb.sh
. "$(dirname "$0")/lib.sh"

hermetic_env
BUILD=${OBX_BUILD_DIR:-$SRC/build}
if grep -q '^OBX_SANITIZE:STRING=.\+' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    echo "# skip: sanitizer build ($BUILD); the package is built from the release build"
    finish
    exit $?
fi
for tool in cpack dpkg-deb dpkg-shlibdeps file man lintian; do
    command -v "$tool" >/dev/null || { fail "$tool is not installed (scripts/install-deps.sh)"; finish; exit 1; }
done

# ---- build ------------------------------------------------------------------------------------
rm -f "$BUILD"/partoo-outbox_*.deb
if cmake --build "$BUILD" --target deb >"$T/deb.log" 2>&1; then pass "make deb"; else
    fail "make deb: $(tail -20 "$T/deb.log")"; finish; exit 1
fi
DEB=$(ls "$BUILD"/partoo-outbox_*.deb 2>/dev/null | head -1)
[ -s "$DEB" ] && pass "package file $(basename "$DEB")" || { fail "no package file"; finish; exit 1; }

# ---- control data -----------------------------------------------------------------------------
ctl=$(dpkg-deb -f "$DEB")
assert_contains "control: package name" "$ctl" "Package: partoo-outbox"
dep=$(dpkg-deb -f "$DEB" Depends)
for lib in libc6 libsqlite3-0 libcurl4 libevent-2.1-7 libcjson1 libssl3; do
    assert_contains "Depends (shlibdeps) names $lib" "$dep" "$lib"
done
mkdir -p "$T/ctl"
dpkg-deb -e "$DEB" "$T/ctl"
assert_eq "conffiles" "$(cat "$T/ctl/conffiles")" "/etc/partoo-outbox/outbox.conf"
for s in postinst prerm postrm; do
    [ -x "$T/ctl/$s" ] && sh -n "$T/ctl/$s" && pass "$s is executable and parses" || fail "$s"
done
assert_contains "postinst creates the system user" "$(cat "$T/ctl/postinst")" "useradd --system"
assert_contains "postinst creates the secrets file 0600" "$(cat "$T/ctl/postinst")" "umask 077"
assert_eq "maintainer scripts never delete the database" \
    "$(cat "$T/ctl/postrm" "$T/ctl/prerm" "$T/ctl/postinst" | grep -v '^ *#' | grep -c 'rm .*/var/lib')" 0

# ---- files ------------------------------------------------------------------------------------
R=$T/root
dpkg -x "$DEB" "$R"
for f in usr/bin/outbox etc/partoo-outbox/outbox.conf lib/systemd/system/outbox.service \
    usr/share/man/man1/outbox.1.gz usr/share/man/man5/outbox.conf.5.gz \
    usr/share/bash-completion/completions/outbox usr/share/doc/partoo-outbox/copyright \
    usr/share/doc/partoo-outbox/changelog.gz usr/share/doc/partoo-outbox/README.md \
    usr/share/doc/partoo-outbox/configuration.md usr/share/doc/partoo-outbox/openapi.yaml \
    usr/share/doc/partoo-outbox/contrib/examples/enqueue.py \
    usr/share/doc/partoo-outbox/contrib/prometheus/alerts.yml \
    usr/share/doc/partoo-outbox/contrib/grafana/outbox.json; do
    [ -s "$R/$f" ] && pass "packaged /$f" || fail "packaged /$f: missing or empty"
done
assert_status "packaged binary: version" 0 "$R/usr/bin/outbox" version
assert_contains "packaged binary: version text" "$(cat "$T/last.out")" "outbox "
assert_status "packaged conffile loads as it is" 0 \
    "$R/usr/bin/outbox" serve --print-config --config "$R/etc/partoo-outbox/outbox.conf"
assert_eq "packaged conffile holds the defaults" "$(cat "$T/last.out")" \
    "$("$R/usr/bin/outbox" serve --print-config)"
assert_status "packaged binary: migrate a scratch database" 0 "$R/usr/bin/outbox" migrate --db "$T/p.db"
for page in usr/share/man/man1/outbox.1.gz usr/share/man/man5/outbox.conf.5.gz; do
    if LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$R/$page" >"$T/man.out" 2>"$T/man.err" &&
        [ ! -s "$T/man.err" ] && [ "$(wc -l <"$T/man.out")" -gt 20 ]; then
        pass "man -l $(basename "$page"): renders without warnings"
    else
        fail "man -l $(basename "$page"): $(head -5 "$T/man.err")"
    fi
done
assert_status "completion: bash -n" 0 bash -n "$R/usr/share/bash-completion/completions/outbox"

# ---- the packaged unit ------------------------------------------------------------------------
u=$(cat "$R/lib/systemd/system/outbox.service")
for line in "ExecStart=/usr/bin/outbox serve --db /var/lib/outbox/outbox.db" \
    "Environment=OUTBOX_CONFIG=/etc/partoo-outbox/outbox.conf" \
    "EnvironmentFile=-/etc/partoo-outbox/secrets" "User=outbox" "StateDirectory=outbox" \
    "ProtectSystem=strict" "NoNewPrivileges=yes" "CapabilityBoundingSet="; do
    assert_contains "unit: $line" "$u" "$line"
done
assert_not_contains "unit: no /usr/local left" "$u" "/usr/local/"
assert_not_contains "unit: no /etc/outbox/ left" "$u" "/etc/outbox/"

# ---- lintian ----------------------------------------------------------------------------------
# lintian exits non-zero on an error tag (--fail-on error, its default) or when it cannot run.
if lintian --tag-display-limit 0 "$DEB" >"$T/lintian.out" 2>"$T/lintian.err"; then rc=0; else rc=$?; fi
sed 's/^/# lintian: /' "$T/lintian.out"
if [ "$rc" = 0 ] && ! grep -q '^E:' "$T/lintian.out"; then
    pass "lintian: no error ($(grep -c '^W:' "$T/lintian.out") warnings)"
else
    fail "lintian (exit $rc): $(grep '^E:' "$T/lintian.out" | head -10) $(grep -v 'root privileges' "$T/lintian.err" | head -5)"
fi

finish
