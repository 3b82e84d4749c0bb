#!/usr/bin/env python3
"""A tiny inbox_url receiver for the integration tests (python3 standard library only).

    inbox_receiver.py --port-file FILE --log FILE [--fail N] [--fail-status S] [--listen HOST]

Answers every POST with S (default 500) the first N times, then 200 {"ok":true}. Every
request it gets is appended to the log as one JSON object per line:
{"n": <1-based request number>, "method", "path", "headers": {name: value}, "body": "<raw>",
 "status": <status answered>, "time_ms": <epoch ms>}. The port it bound (port 0 = a free one)
is written to FILE.tmp, then FILE.tmp is renamed to FILE. SIGTERM stops it.
"""
import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--fail", type=int, default=0)
    ap.add_argument("--fail-status", type=int, default=500)
    args = ap.parse_args()

    lock = threading.Lock()
    state = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet
            pass

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                state["n"] += 1
                n = state["n"]
                status = args.fail_status if n <= args.fail else 200
                entry = {
                    "n": n,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k: v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                    "status": status,
                    "time_ms": int(time.time() * 1000),
                }
                with open(args.log, "a", encoding="utf-8") as f:
                    f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            out = b'{"ok":true}' if status == 200 else b'{"error":"injected"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = _handle
        do_PUT = _handle
        do_GET = _handle

    srv = ThreadingHTTPServer((args.listen, args.port), Handler)
    srv.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, args.port_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
