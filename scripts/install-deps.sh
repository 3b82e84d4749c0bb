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
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages and not root; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
