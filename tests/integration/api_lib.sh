# tests/integration/api_lib.sh: helpers shared by the test_api*.sh scripts (sourced after
# lib.sh; not a test itself, so CTest's test_*.sh glob does not pick it up).

# Hermetic: no OUTBOX_* from the caller's environment except the binary under test.
hermetic_env
# api_serve [serve options]: start_serve (API on 127.0.0.1:0), then API=http://127.0.0.1:PORT
# with the port from serve's "msg=serving ... api_port=N" log line.
api_serve() {
    local before
    before=$(grep -c 'msg=serving' "$T/serve.log" 2>/dev/null)
    start_serve "$@"
    wait_until 10 '[ "$(grep -c "msg=serving" "$T/serve.log")" -gt '"${before:-0}"' ]' ||
        { echo "serve did not log its api port"; cat "$T/serve.log"; exit 1; }
    API=http://127.0.0.1:$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$T/serve.log" | tail -1)
}
# req METHOD PATH [BODY]: one request to the API; sets CODE (HTTP status) and RESP (body),
# response headers in $T/resp.head. BODY "@FILE" sends a file. With a body, CT sets the
# Content-Type (default application/json; CT= sends none); TOKEN adds a bearer token.
req() {
    local args=(-sS -m 30 -o "$T/resp.body" -D "$T/resp.head" -w '%{http_code}' -X "$1")
    [ $# -ge 3 ] && args+=(--data-binary "$3" -H "Content-Type:${CT-application/json}")
    [ -n "${TOKEN:-}" ] && args+=(-H "Authorization: Bearer $TOKEN")
    CODE=$(curl "${args[@]}" "$API$2")
    RESP=$(cat "$T/resp.body")
}
# header NAME: a header of the last response (case-insensitive name).
header() { tr -d '\r' < "$T/resp.head" | sed -n "s/^$1: *//Ip" | tail -1; }
# jx JSON SQL-EXPR: evaluates an SQLite expression over the document bound as j.
jx() {
    printf '%s' "$1" > "$T/jx.json"
    sqlite3 -batch -noheader :memory: "SELECT $2 FROM (SELECT readfile('$T/jx.json') AS j)" 2>/dev/null
}
# errsig: "STATUS code field" of the last response ("-" for a null field).
errsig() {
    echo "$CODE $(jx "$RESP" "json_extract(j,'\$.error.code') || ' ' || ifnull(json_extract(j,'\$.error.field'),'-')")"
}
# mk [KEY=VALUE...]: a valid message object with KEY set to VALUE: raw JSON when VALUE looks
# like JSON (a number, true, false, null, or it starts with " { [), else a JSON string; KEY=
# with nothing removes the member. Pure bash: tests call it hundreds of times.
mk() {
    local -A v=([channel_id]=ch [external_message_id]=m [business_id]=biz
        [external_conversation_id]=conv [content]=hello [sender_type]=Consumer)
    local keys=(channel_id external_message_id business_id external_conversation_id content
        sender_type) a k x out="" sep=""
    for a; do
        k=${a%%=*}
        [[ " ${keys[*]} " == *" $k "* ]] || keys+=("$k")
        v[$k]=${a#*=}
    done
    for k in "${keys[@]}"; do
        x=${v[$k]}
        [ -n "$x" ] || continue
        if ! [[ $x =~ ^(-?[0-9][0-9.eE+-]*|true|false|null)$ || $x == [\"\{\[]* ]]; then
            x=${x//\\/\\\\}
            x="\"${x//\"/\\\"}\""
        fi
        out+="$sep\"$k\":$x"
        sep=,
    done
    printf '{%s}' "$out"
}
# pad N: a valid message padded with JSON whitespace to exactly N bytes, in $T/pad.json.
pad() {
    local m
    m=$(mk external_message_id=pad$1 external_conversation_id=c-pad)
    { printf '%s' "$m"; printf '%*s' $(($1 - ${#m})) ''; } > "$T/pad.json"
}
# ids: the external_message_ids of the last response's "messages", space-separated.
ids() { jx "$RESP" "(SELECT group_concat(json_extract(value,'\$.external_message_id'), ' ') FROM json_each(j,'\$.messages'))"; }
# batch ITEM...: {"messages":[ITEM,...]}
batch() { local IFS=,; printf '{"messages":[%s]}' "$*"; }
total() { sql "$DB" "SELECT count(*) FROM outbox"; }
# latency_probes N PAUSE_S PREFIX SENDER_TYPE: N messages (ids PREFIX0..), one POST each after
# PAUSE_S of quiet; prints "STATUS POST->202_MS POST->ARRIVAL_MS" per message (99999: did not
# arrive in 5 s). One Python process takes the time just before each POST (no process
# start-up inside the measurement) and polls the mock's log for the arrival time.
latency_probes() {
    python3 - "$API" "$MOCK_PORT" "$@" <<'EOF'
import http.client, json, sys, time
api = sys.argv[1].split("//")[1]
mock = ("127.0.0.1", int(sys.argv[2]))
def arrival(ext_id):
    c = http.client.HTTPConnection(*mock, timeout=10)
    c.request("GET", "/_mock/received")
    for line in c.getresponse().read().decode().splitlines():
        f = line.split("\t")
        if f[5] == ext_id:
            return int(f[1])
    return None
conn = http.client.HTTPConnection(api, timeout=10)
n, pause, prefix, sender = int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], sys.argv[6]
for i in range(n):
    time.sleep(pause)
    ext = f"{prefix}{i}"
    body = json.dumps({"channel_id": "ch", "external_message_id": ext, "business_id": "biz",
                       "external_conversation_id": f"c-{ext}", "content": "hi",
                       "sender_type": sender})
    t0 = time.time() * 1000
    conn.request("POST", "/v1/messages", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    t202 = time.time() * 1000
    deadline = time.time() + 5
    arr = None
    while arr is None and time.time() < deadline:
        arr = arrival(ext)
        if arr is None:
            time.sleep(0.005)
    print(r.status, int(t202 - t0), int(arr - t0) if arr else 99999)
EOF
}
# arrived EXT_ID: the mock's arrival time (epoch ms) of that message, empty before it arrives.
arrived() { mock_get received | awk -F'\t' -v id="$1" '$6 == id { print $2; exit }'; }
