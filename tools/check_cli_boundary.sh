#!/bin/sh
# tools/check_cli_boundary.sh: the library/tool split (issue 18, curl's lib/ and src/). The
# command-line tool (cmd/) reaches the database and the network only through the library
# (lib/): no sqlite3_* or curl_* call, no <sqlite3.h> or <curl/curl.h>, in any file under cmd/.
cd "$(dirname "$0")/.." || exit 1
if grep -rnE '\b(sqlite3|curl)_[a-z_0-9]+|#include *<(sqlite3\.h|curl/)' cmd --include='*.c' \
    --include='*.h' >&2; then
    echo "cli boundary: cmd/ calls SQLite or libcurl directly: use lib/ (store*, http_client," \
        "partoo_request)" >&2
    exit 1
fi
echo "cli boundary: ok"
