#!/usr/bin/env bash
# Installs the Debian packages partoo-outbox builds, tests and benchmarks with.
# Idempotent: packages already present are not touched, and apt is not called at all
# when nothing is missing (so the script also works for non-root users on a ready machine).
set -euo pipefail

packages=(
    build-essential cmake pkg-config git
    libsqlite3-dev libcurl4-openssl-dev libcjson-dev libevent-dev libssl-dev
    sqlite3 curl clang llvm procps python3 util-linux wrk
    clang-tidy cppcheck valgrind
    # make coverage: per-file line coverage from gcov
    gcovr
    # make deb and its checks; the client examples (node); the formats' own tools (promtool)
    dpkg-dev file lintian man-db nodejs python3-prometheus-client prometheus
    # PostgreSQL (issue 15): libpq to build with, the server for the tests' throwaway
    # clusters (tests/integration/pg_cluster.sh; the package's own cluster is not used)
    libpq-dev postgresql
    # the dashboard's browser test (tests/integration/test_ui_browser.sh)
    chromium chromium-driver python3-selenium
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

# The OpenAPI 3.1 validator of `make check` (Debian's validators stop at OpenAPI 3.0): one
# pinned npm package, installed globally with Debian's npm; its command is validate-api.
OPENAPI_VALIDATOR=@seriousme/openapi-schema-validator@2.11.0
command -v npm >/dev/null || missing+=(npm)
need_validator=0
command -v validate-api >/dev/null || need_validator=1

if [ ${#missing[@]} -eq 0 ] && [ $need_validator = 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages and not root; run: sudo apt-get install -y ${missing[*]}" \
        "&& sudo npm install -g $OPENAPI_VALIDATOR" >&2
    exit 1
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ $need_validator = 1 ]; then
    echo "install-deps: installing $OPENAPI_VALIDATOR (npm)"
    npm install -g --no-fund --no-audit --loglevel=error "$OPENAPI_VALIDATOR" >/dev/null
fi
