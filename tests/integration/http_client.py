#!/usr/bin/env python3
"""Small stdlib HTTP clients for test_http_errors.sh (not a test itself).

  http_client.py post PORT PATH SIZE [content]
      POST a body of SIZE bytes with http.client, which writes the whole body before it
      reads; "content" sends a valid message whose content field makes up the size.
  http_client.py raw PORT TEXT
      sends TEXT (Python escapes allowed, e.g. \\r\\n) on a fresh socket and reads the
      answer until the server closes.
  http_client.py slow PORT
      sends the start of a request and then nothing; reads what comes back.
  http_client.py many PORT N
      opens N connections at once, sends "GET /healthz" (Connection: close) on each, then
      reads every answer; prints one line per connection.
  http_client.py flood PORT PATH N SIZE
      N connections each send the headers and SIZE-1 bytes of a SIZE-byte body, all
      together, then the last byte, and read their answers; prints one line per
      connection ("ERROR ..." when one was cut off before an answer).

Each prints "STATUS<TAB>CONTENT-TYPE<TAB>BODY" (BODY on one line), or "ERROR <exception>".
"""
import http.client
import json
import socket
import sys
import threading


def show(status, ctype, body):
    print(f"{status}\t{ctype}\t{body.decode(errors='replace').replace(chr(10), ' ')}")


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = lines[0].split(" ")[1] if " " in lines[0] else "?"
    ctype = ""
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-type":
            ctype = v.strip()
    show(status, ctype, body)


def read_all(s):
    out = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    try:
        if mode == "post":
            path, size = sys.argv[3], int(sys.argv[4])
            if len(sys.argv) > 5 and sys.argv[5] == "content":
                msg = {"channel_id": "ch", "external_message_id": "big", "business_id": "b",
                       "external_conversation_id": "c", "sender_type": "User", "content": ""}
                msg["content"] = "x" * (size - len(json.dumps(msg)))
                body = json.dumps(msg).encode()
            else:
                body = b" " * size
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            c.request("POST", path, body, {"Content-Type": "application/json"})
            r = c.getresponse()
            show(r.status, r.getheader("Content-Type"), r.read())
        elif mode == "raw":
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(sys.argv[3].encode().decode("unicode_escape").encode("latin-1"))
            parse(read_all(s))
        elif mode == "many":
            socks = [socket.create_connection(("127.0.0.1", port), timeout=60)
                     for _ in range(int(sys.argv[3]))]
            for s in socks:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            for s in socks:
                try:
                    parse(read_all(s))
                except OSError as e:
                    print(f"ERROR {e!r}")
        elif mode == "flood":
            path, n, size = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
            head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Authorization: Bearer wrong\r\nContent-Length: {size}\r\n\r\n").encode()
            socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(n)]
            results = [None] * n

            def one(i):
                try:
                    socks[i].sendall(head + b" " * (size - 1))
                    try:
                        barrier.wait()
                    except threading.BrokenBarrierError:
                        pass
                    socks[i].sendall(b" ")
                except OSError:
                    pass  # answered early and closed: read what came below
                try:
                    results[i] = read_all(socks[i])
                except OSError as e:
                    results[i] = e
            barrier = threading.Barrier(n, timeout=20)
            threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for r in results:
                if isinstance(r, bytes) and r:
                    parse(r)
                else:
                    print(f"ERROR {r!r}")
        elif mode == "slow":
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            parse(read_all(s))
    except Exception as e:  # noqa: BLE001 - the test wants to see any failure
        print(f"ERROR {e!r}")


main()
