#!/usr/bin/env python3
"""A minimal receiver for inbox_url (Python standard library; docs/webhooks.md, "Relay to
inbox_url"): `outbox serve` POSTs each reply of a Partoo user here as JSON.

    python3 inbox_receiver.py [--listen 127.0.0.1] [--port 8790] [--out replies.jsonl]
    # outbox.conf: inbox_url = http://127.0.0.1:8790/replies

Relaying is at least once: a reply comes again after a crash or a lost answer, with the
same Idempotency-Key. The receiver appends each new reply to --out (one JSON line, synced
to disk) and answers 200 only after that, so nothing acknowledged is lost; a key it has
seen is answered 200 without writing again. Anything that is not a JSON object gets 400,
which serve retries with backoff, then marks the reply failed (it stays in GET /v1/inbox).
Bodies over 1 MiB are refused. Add TLS and a secret path segment before exposing it.
"""
import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8790)
    ap.add_argument("--out", default="replies.jsonl")
    ap.add_argument("--port-file", help="write the bound port here (for --port 0)")
    args = ap.parse_args()

    lock = threading.Lock()
    seen = set()
    if os.path.exists(args.out):
        with open(args.out, encoding="utf-8") as f:
            seen = {json.loads(line)["idempotency_key"] for line in f if line.strip()}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            pass

        def answer(self, status, doc):
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                return self.answer(413, {"error": "too large"})
            try:
                reply = json.loads(self.rfile.read(length))
            except ValueError:
                return self.answer(400, {"error": "not JSON"})
            key = self.headers.get("Idempotency-Key")
            if not isinstance(reply, dict) or not key:
                return self.answer(400, {"error": "a JSON object and an Idempotency-Key"})
            with lock:
                if key not in seen:
                    with open(args.out, "a", encoding="utf-8") as f:
                        f.write(json.dumps({"idempotency_key": key, "reply": reply},
                                           ensure_ascii=False) + "\n")
                        f.flush()
                        os.fsync(f.fileno())
                    seen.add(key)
            self.answer(200, {"ok": True})

    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        os.replace(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
