#!/bin/sh
# tools/check_cli_boundary.sh: the library/tool split (issue 18, curl's lib/ and src/). The
# command-line tool (cmd/) reaches the database and the network only through the library
# (lib/): no sqlite3_*, curl_* or libpq (PQ*) call, no <sqlite3.h>, <curl/curl.h> or
# <libpq-fe.h>, in any file under cmd/.
cd "$(dirname "$0")/.." || exit 1
if grep -rnE '\b(sqlite3|curl)_[a-z_0-9]+|\bPQ[a-z][A-Za-z]+\(|#include *<(sqlite3\.h|curl/|libpq)' cmd --include='*.c' \
    --include='*.h' >&2; then
    echo "cli boundary: cmd/ calls SQLite, libcurl or libpq directly: use lib/ (store*, pg," \
        "http_client, partoo_request)" >&2
    exit 1
fi
echo "cli boundary: ok"
