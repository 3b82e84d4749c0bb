#!/usr/bin/env bash
# tests/integration/test_openapi.sh: docs/openapi.yaml describes exactly the producer API's
# routes (issue 4).
#
# 1. Route coverage: the `routes[]` table of lib/api.c (method + pattern, "*" segments being
#    path parameters, and the `open` flag) against the paths and methods of docs/openapi.yaml
#    (a parameter's name does not matter for the match; `security: []` must mark exactly the
#    open routes). Both directions: a route the document lacks and an operation the router
#    lacks are failures.
# 2. The checker can fail: it is run on mutated copies (a route added to the table, a path
#    removed from the document, an extra method, an open flag flipped, no table at all) and
#    must reject each of them.
# 3. The document is valid OpenAPI 3.1 (openapi-spec-validator, when installed).
# 4. Live: `outbox serve` with a token answers a request on every route (success and error
#    paths); each status must be documented for its operation, and each JSON body must
#    validate against the documented schema (jsonschema, when installed).
#
# The route check needs only python3's standard library (PyYAML, when present, is used to
# double-check the line-based reading of the YAML).
#
#   OUTBOX_BIN=build/outbox bash tests/integration/test_openapi.sh
. "$(dirname "$0")/lib.sh"

hermetic_env
API_C=$SRC/lib/api.c
SPEC=$SRC/docs/openapi.yaml

# ---- the checker ------------------------------------------------------------------------------------
cat > "$T/routes.py" <<'EOF'
"""routes.py API_C OPENAPI_YAML: exit 0 when the router and the document agree."""
import re
import sys

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def die(msg):
    print(f"routes.py: {msg}")
    sys.exit(2)


def router(path):
    src = open(path, encoding="utf-8").read()
    m = re.search(r"static const struct route routes\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    if not m:
        die(f"no `static const struct route routes[]` table in {path}")
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    entries = re.findall(r"\{\s*EVHTTP_REQ_([A-Z]+)\s*,\s*\{([^}]*)\}\s*,\s*(\w+)\s*,\s*([01])\s*\}", body)
    if len(entries) != body.count("EVHTTP_REQ_"):
        die("could not read every entry of routes[] (the entry format changed?)")
    if not entries:
        die("routes[] is empty")
    out = {}
    for method, pattern, fn, open_ in entries:
        segs = re.findall(r'"([^"]*)"', pattern)
        key = (method.lower(), "/" + "/".join("{}" if s == "*" else s for s in segs))
        if key in out:
            die(f"route listed twice: {key}")
        out[key] = {"fn": fn, "open": open_ == "1"}
    return out


def normalise(p):
    return re.sub(r"\{[^}/]+\}", "{}", p)


def document_lines(path):
    """Line-based reading of the style docs/openapi.yaml is written in (2-space indents)."""
    ops, in_paths, cur_path, cur_op = {}, False, None, None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if re.match(r"^\S", line):
            in_paths = line.startswith("paths:")
            cur_path = cur_op = None
            continue
        if not in_paths or not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.match(r"^  (/\S*):\s*$", line)
        if m:
            cur_path, cur_op = m.group(1), None
            continue
        m = re.match(r"^    ([a-z]+):", line)
        if m and cur_path:
            cur_op = m.group(1) if m.group(1) in METHODS else None
            if cur_op:
                ops[(cur_op, cur_path)] = {"open": False}
            continue
        if cur_op and re.match(r"^      security:\s*\[\s*\]\s*$", line):
            ops[(cur_op, cur_path)]["open"] = True
    return ops


def document_yaml(path):
    import yaml  # optional
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    ops = {}
    for p, item in (doc.get("paths") or {}).items():
        for method, op in item.items():
            if method in METHODS:
                ops[(method, p)] = {"open": op.get("security", None) == []}
    return ops


def main(api_c, spec):
    routes = router(api_c)
    ops = document_lines(spec)
    try:
        yops = document_yaml(spec)
    except ImportError:
        yops = None
    if yops is not None and yops != ops:
        die(f"the line-based reading of {spec} differs from PyYAML's: {sorted(set(yops) ^ set(ops))}")
    docs = {}
    for (method, p), v in ops.items():
        key = (method, normalise(p))
        if key in docs:
            die(f"two document paths match the same route: {method.upper()} {p}")
        docs[key] = dict(v, path=p)
    bad = []
    for key in sorted(routes):
        if key not in docs:
            bad.append(f"{key[0].upper()} {key[1]} ({routes[key]['fn']}) is routed but not in the document")
        elif routes[key]["open"] != docs[key]["open"]:
            want = "open (security: [])" if routes[key]["open"] else "behind the token"
            bad.append(f"{key[0].upper()} {docs[key]['path']}: the router has it {want}")
    for key in sorted(docs):
        if key not in routes:
            bad.append(f"{key[0].upper()} {docs[key]['path']} is documented but not routed")
    for b in bad:
        print(b)
    print(f"routes.py: {len(routes)} routes, {len(docs)} documented operations, {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
EOF

# ---- 1. the real files agree ----------------------------------------------------------------------------
python3 "$T/routes.py" "$API_C" "$SPEC" > "$T/routes.out" 2>&1
rc=$?
cat "$T/routes.out" | sed 's/^/# /'
assert_eq "every route of lib/api.c is in docs/openapi.yaml and nothing else is" "$rc" 0
assert_contains "the checker read the route table" "$(cat "$T/routes.out")" " routes, "
nroutes=$(sed -n 's/^routes.py: \([0-9]*\) routes.*/\1/p' "$T/routes.out")
assert_ge "at least the 11 routes of SPEC §5" "${nroutes:-0}" 11
# The SPEC's names for the path parameters.
for p in "/v1/messages/{channel_id}/{external_message_id}:" \
    "/v1/messages/{channel_id}/{external_message_id}/retry:" \
    "/v1/messages/{channel_id}/{external_message_id}/cancel:"; do
    assert_contains "the document names the parameters as SPEC §5: $p" "$(grep -F "  $p" "$SPEC")" "$p"
done

# ---- 2. the checker fails when they disagree --------------------------------------------------------------
must_fail() { # NAME API_C SPEC
    python3 "$T/routes.py" "$2" "$3" > "$T/mut.out" 2>&1
    local rc=$?
    if [ "$rc" -ne 0 ]; then pass "$1 ($(grep -v '^routes.py: [0-9]' "$T/mut.out" | head -1))"; else
        fail "$1: the checker passed: $(cat "$T/mut.out")"
    fi
}
sed 's|^\(    {EVHTTP_REQ_GET, {"v1", "stats"}, on_stats, 0},\)$|\1\n    {EVHTTP_REQ_POST, {"v1", "messages", "*", "*", "requeue"}, on_retry, 0},|' \
    "$API_C" > "$T/api_extra.c"
assert_eq "mutation applied: a route added to the table" "$(grep -c requeue "$T/api_extra.c")" 1
must_fail "a route missing from the document is caught" "$T/api_extra.c" "$SPEC"
sed 's|{EVHTTP_REQ_GET, {"healthz"}, on_healthz, 1}|{EVHTTP_REQ_GET, {"healthz"}, on_healthz, 0}|' \
    "$API_C" > "$T/api_closed.c"
must_fail "an open flag that disagrees with security: [] is caught" "$T/api_closed.c" "$SPEC"
sed 's|static const struct route routes\[\]|static const struct route table[]|' "$API_C" > "$T/api_none.c"
must_fail "a missing route table is an error, not a pass" "$T/api_none.c" "$SPEC"
awk 'BEGIN { skip = 0 }
     /^  \/v1\/stats:/ { skip = 1; next }
     skip && /^  [^ ]/ { skip = 0 }
     !skip' "$SPEC" > "$T/spec_missing.yaml"
must_fail "a route removed from the document is caught" "$API_C" "$T/spec_missing.yaml"
sed 's|^  /v1/stats:$|  /v1/stats:\n    delete:\n      responses:\n        '"'"'204'"'"': {description: gone}|' \
    "$SPEC" > "$T/spec_extra.yaml"
must_fail "an operation the router lacks is caught" "$API_C" "$T/spec_extra.yaml"
sed 's|^  /v1/inbox/{id}/ack:$|  /v1/inbox/{id}/acknowledge:|' "$SPEC" > "$T/spec_renamed.yaml"
must_fail "a path spelled differently is caught" "$API_C" "$T/spec_renamed.yaml"

# ---- 3. a valid OpenAPI 3.1 document ----------------------------------------------------------------------
if python3 -c 'import yaml, openapi_spec_validator' 2>/dev/null; then
    out=$(python3 -c '
import sys, yaml
from openapi_spec_validator import validate
doc = yaml.safe_load(open(sys.argv[1]))
assert doc["openapi"].startswith("3.1"), doc["openapi"]
validate(doc)
print("valid")' "$SPEC" 2>&1)
    assert_eq "docs/openapi.yaml is valid OpenAPI 3.1" "$out" valid
else
    echo "# skip: openapi-spec-validator or PyYAML not installed"
fi

# ---- 4. live responses match the document ---------------------------------------------------------------------
start_mock --rate-limit 0
rm -f "$T/api.port"
before=$(grep -c 'msg=serving' "$T/serve.log" 2>/dev/null)
OUTBOX_API_TOKEN=doc-token-0123456789 start_serve --rate-limit 0 --retry-base 5s --retry-cap 10s \
    --max-body-bytes 4K --max-content-bytes 1K
wait_until 10 '[ "$(grep -c "msg=serving" "$T/serve.log")" -gt '"${before:-0}"' ]' ||
    { echo "serve did not start"; cat "$T/serve.log"; exit 1; }
API=http://127.0.0.1:$(sed -n 's/.*msg=serving .* api_port=\([0-9]*\).*/\1/p' "$T/serve.log" | tail -1)

python3 - "$SPEC" "$API" "$MOCK_PORT" "$API_C" "$T/routes.py" > "$T/live.out" 2>&1 <<'EOF'
import http.client, json, re, sys, time
spec_path, api, mock_port, api_c, routes_py = sys.argv[1:]
sys.path.insert(0, routes_py.rsplit("/", 1)[0])
import routes as R

try:
    import yaml
    doc = yaml.safe_load(open(spec_path))
except ImportError:
    doc = None
try:
    import jsonschema
except ImportError:
    jsonschema = None
if doc is None or jsonschema is None:
    print("# skip schema validation: PyYAML or jsonschema not installed (statuses still checked)")

host, port = api.split("//")[1].split(":")
TOKEN = "doc-token-0123456789"
exercised = set()


def call(method, path, body=None, token=TOKEN, ctype="application/json", where=(host, int(port))):
    c = http.client.HTTPConnection(*where, timeout=30)
    h = {}
    if body is not None:
        h["Content-Type"] = ctype
    if token:
        h["Authorization"] = "Bearer " + token
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data


def mock(path, body):
    return call("POST", "/_mock/" + path, json.dumps(body), token=None, where=("127.0.0.1", int(mock_port)))


def deref(node):
    while isinstance(node, dict) and "$ref" in node:
        cur = doc
        for part in node["$ref"][2:].split("/"):
            cur = cur[part.replace("~1", "/").replace("~0", "~")]
        node = cur
    return node


def check(name, method, template, path, body=None, want=None, **kw):
    status, headers, data = call(method, path, body, **kw)
    exercised.add((method.lower(), R.normalise(template)))
    problems = []
    if want is not None and status != want:
        problems.append(f"status {status}, expected {want}")
    if doc is not None:
        op = doc["paths"][template][method.lower()]
        resp = op["responses"].get(str(status))
        if resp is None:
            problems.append(f"status {status} is not documented for {method} {template}")
        else:
            resp = deref(resp)
            ctype = headers.get("content-type", "").split(";")[0]
            content = resp.get("content", {})
            if ctype not in content:
                problems.append(f"content type {ctype!r} not documented for {status}")
            elif ctype == "application/json" and jsonschema is not None:
                schema = dict(content[ctype]["schema"], components=doc["components"])
                try:
                    jsonschema.Draft202012Validator(schema).validate(json.loads(data))
                except jsonschema.ValidationError as e:
                    problems.append(f"body does not match the schema: {e.message} at "
                                    f"{'/'.join(map(str, e.absolute_path))}: {data[:300]!r}")
            for h in resp.get("headers", {}):
                if h.lower() not in headers:
                    problems.append(f"documented header {h} missing")
    print(("FAIL " if problems else "ok   ") + f"live: {name}" + (": " + "; ".join(problems) if problems else ""))
    return status, data


def msg(ext, **kw):
    m = {"channel_id": "doc", "external_message_id": ext, "business_id": "biz",
         "external_conversation_id": "c-" + ext, "content": "hello", "sender_type": "User"}
    m.update(kw)
    return m


def state(ext):
    return json.loads(call("GET", f"/v1/messages/doc/{ext}")[2])["state"]


def wait_state(ext, want, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if state(ext) == want:
            return True
        time.sleep(0.05)
    return False


M = "/v1/messages"
ONE = "/v1/messages/{channel_id}/{external_message_id}"
check("GET /healthz", "GET", "/healthz", "/healthz", want=200, token=None)
check("GET /readyz", "GET", "/readyz", "/readyz", want=200, token=None)
check("POST one message", "POST", M, M, json.dumps(msg("d1", consumer_name="Jo", priority=2)), 202)
check("POST a duplicate", "POST", M, M, json.dumps(msg("d1", consumer_name="Jo", priority=2)), 202)
check("POST a conflict", "POST", M, M, json.dumps(msg("d1", content="other")), 409)
check("POST a mixed batch", "POST", M, M,
      json.dumps({"messages": [msg("d2"), {"channel_id": 5}, msg("d1", content="x"), "x"]}), 202)
check("POST an invalid message", "POST", M, M, json.dumps(msg("d3", sender_type="Bot")), 400)
check("POST invalid JSON", "POST", M, M, "{", 400)
check("POST a bad envelope", "POST", M, M, json.dumps({"messages": []}), 400)
check("POST text/plain", "POST", M, M, json.dumps(msg("d4")), 415, ctype="text/plain")
check("POST too large", "POST", M, M, json.dumps(msg("d5")) + " " * 5000, 413)
check("POST without the token", "POST", M, M, json.dumps(msg("d6")), 401, token=None)
check("POST with a wrong token", "POST", M, M, json.dumps(msg("d6")), 401, token="nope")
wait_state("d1", "accepted")
check("GET one", "GET", ONE, "/v1/messages/doc/d1", want=200)
check("GET one, unknown", "GET", ONE, "/v1/messages/doc/nope", want=404)
check("GET list", "GET", M, M + "?limit=2", want=200)
check("GET list by state and channel", "GET", M, M + "?state=accepted&channel_id=doc", want=200)
check("GET list, bad limit", "GET", M, M + "?limit=0", want=400)
check("GET list without the token", "GET", M, M, want=401, token=None)
# retry: a message that failed on a 400 from Partoo
mock("faults", {"script": [400]})
check("POST for retry", "POST", M, M, json.dumps(msg("r1")), 202)
wait_state("r1", "failed")
check("POST retry (failed)", "POST", ONE + "/retry", "/v1/messages/doc/r1/retry", want=200)
wait_state("r1", "accepted")
check("POST retry (unknown)", "POST", ONE + "/retry", "/v1/messages/doc/nope/retry", want=404)
# cancel: a message kept queued behind one that cannot be delivered (mock down)
mock("faults", {"down": True})
check("POST for cancel", "POST", M, M,
      json.dumps({"messages": [msg("k1", external_conversation_id="ck"),
                               msg("k2", external_conversation_id="ck")]}), 202)
end = time.time() + 15
while time.time() < end and json.loads(call("GET", "/v1/messages/doc/k1")[2])["attempts"] < 1:
    time.sleep(0.05)
check("POST retry (queued: invalid state)", "POST", ONE + "/retry", "/v1/messages/doc/k2/retry", want=409)
check("POST cancel (queued)", "POST", ONE + "/cancel", "/v1/messages/doc/k2/cancel", want=200)
check("POST cancel (cancelled: invalid state)", "POST", ONE + "/cancel", "/v1/messages/doc/k2/cancel", want=409)
check("POST cancel (unknown)", "POST", ONE + "/cancel", "/v1/messages/doc/nope/cancel", want=404)
check("GET one with attempts and transitions", "GET", ONE, "/v1/messages/doc/k1", want=200)
check("GET stats (Partoo down)", "GET", "/v1/stats", "/v1/stats", want=200)
mock("faults", {"down": False})
check("GET inbox", "GET", "/v1/inbox", "/v1/inbox", want=200)
check("GET inbox, bad cursor", "GET", "/v1/inbox", "/v1/inbox?cursor=x", want=400)
check("POST ack (unknown)", "POST", "/v1/inbox/{id}/ack", "/v1/inbox/12345/ack", want=404)
# the dashboard's routes (SPEC §13)
check("GET auth (open)", "GET", "/v1/auth", "/v1/auth", want=200, token=None)
check("POST pause", "POST", "/v1/pause", "/v1/pause", json.dumps({"channel_id": "held"}), 200)
check("POST pause without channel", "POST", "/v1/pause", "/v1/pause", json.dumps({}), 400)
check("POST resume", "POST", "/v1/resume", "/v1/resume", json.dumps({"channel_id": "held"}), 200)
check("POST pause, tenant", "POST", "/v1/pause", "/v1/pause", json.dumps({"tenant": "default"}), 200)
check("POST pause, unknown tenant", "POST", "/v1/pause", "/v1/pause", json.dumps({"tenant": "t"}), 404)
check("POST pause, tenant and channel", "POST", "/v1/pause", "/v1/pause",
      json.dumps({"tenant": "default", "channel_id": "held"}), 400)
check("POST resume, tenant", "POST", "/v1/resume", "/v1/resume", json.dumps({"tenant": "default"}), 200)
check("POST resume, neither", "POST", "/v1/resume", "/v1/resume", json.dumps({}), 400)
check("GET nodes", "GET", "/v1/nodes", "/v1/nodes", want=200)
check("GET stats with holds", "GET", "/v1/stats", "/v1/stats", want=200)
check("GET overview", "GET", "/v1/stats/overview", "/v1/stats/overview", want=200)
check("GET history", "GET", "/v1/stats/history", "/v1/stats/history?range=week", want=200)
check("GET history, bad range", "GET", "/v1/stats/history", "/v1/stats/history?range=x", want=400)
check("GET count", "GET", "/v1/messages/count", "/v1/messages/count?state=accepted", want=200)
check("GET count, bad state", "GET", "/v1/messages/count", "/v1/messages/count?state=x", want=400)
check("GET find", "GET", "/v1/messages/find", "/v1/messages/find?external_message_id=d1", want=200)
check("GET find, no id", "GET", "/v1/messages/find", "/v1/messages/find", want=400)
check("POST bulk retry", "POST", "/v1/messages/retry", "/v1/messages/retry?state=failed&limit=10", want=200)
check("POST bulk retry, queued", "POST", "/v1/messages/retry", "/v1/messages/retry?state=queued", want=409)
check("POST bulk cancel", "POST", "/v1/messages/cancel", "/v1/messages/cancel?channel_id=none", want=200)
check("POST bulk cancel, bad limit", "POST", "/v1/messages/cancel", "/v1/messages/cancel?limit=0", want=400)
CONV = "/v1/conversations/{channel_id}/{external_conversation_id}"
check("GET conversation", "GET", CONV, "/v1/conversations/doc/ck", want=200)
check("GET conversation, bad limit", "GET", CONV, "/v1/conversations/doc/ck?limit=0", want=400)
check("GET conversation, unknown", "GET", CONV, "/v1/conversations/doc/nope", want=200)
check("GET audit verify", "GET", "/v1/audit/verify", "/v1/audit/verify", want=200)
check("GET audit verify, bad cursor", "GET", "/v1/audit/verify", "/v1/audit/verify?cursor=x", want=400)
check("GET audit export", "GET", "/v1/audit/export", "/v1/audit/export?since_ms=0", want=200)
check("GET audit export, bad since", "GET", "/v1/audit/export", "/v1/audit/export?since_ms=x", want=400)
TEN = "/v1/tenants/{tenant}"
TB = json.dumps({"api_key": "doc-tenant-key", "rate_limit": "5/s",
                 "channels": [{"channel_id": "tc1"}, {"channel_id": "tc2", "readonly": True}]})
check("PUT tenant (create)", "PUT", TEN, "/v1/tenants/doc", TB, 201)
check("PUT tenant (update)", "PUT", TEN, "/v1/tenants/doc", json.dumps({"rate_burst": 2}), 200)
check("PUT tenant, no key for a new one", "PUT", TEN, "/v1/tenants/doc2", json.dumps({}), 400)
check("PUT tenant, channel owned by another", "PUT", TEN, "/v1/tenants/doc2",
      json.dumps({"api_key": "k", "channels": [{"channel_id": "tc1"}]}), 409)
check("GET tenants", "GET", "/v1/tenants", "/v1/tenants", want=200)
check("GET tenant", "GET", TEN, "/v1/tenants/doc", want=200)
check("GET tenant, unknown", "GET", TEN, "/v1/tenants/nope", want=404)
check("DELETE tenant", "DELETE", TEN, "/v1/tenants/doc", want=200)
check("DELETE tenant, unknown", "DELETE", TEN, "/v1/tenants/doc", want=404)
check("GET metrics", "GET", "/metrics", "/metrics", want=200)
check("GET metrics without the token", "GET", "/metrics", "/metrics", want=401, token=None)

routes = set(R.router(api_c))
missing = sorted(routes - exercised)
print(("FAIL " if missing else "ok   ") + "live: every route was exercised" +
      (f": not {missing}" if missing else ""))
EOF
rc=$?
while IFS= read -r line; do
    case "$line" in
        "ok   "*) pass "${line#ok   }" ;;
        "FAIL "*) fail "${line#FAIL }" ;;
        *) echo "$line" ;;
    esac
done < "$T/live.out"
assert_eq "the live check ran to its end" "$rc" 0
kill -TERM "$SERVE_PID"
wait "$SERVE_PID" 2>/dev/null

finish
