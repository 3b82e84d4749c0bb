#!/usr/bin/env python3
"""held_requests.py HOST PORT PATH: requests whose answer the server defers, plus more bytes.

libevent 2.1 aborts the whole process ("illegal connection state") when bytes arrive on a
connection whose body-less request a handler is still holding. The webhook listener holds
every request while its signature is checked on a worker thread, so this keeps the workers
busy with 1 MiB bodies under well-formed but wrong signatures, sends body-less POSTs that
queue behind them, then one more byte on each of those connections. Prints
"answered N of M" for the body-less requests (the server must answer them all, 401).
"""
import socket
import sys
import time

host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
junk_sig = "A" * 86 + "=="  # the right length for an Ed25519 signature: it gets verified
big = b"{" + b"x" * (1024 * 1024) + b"}"


def request(body):
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "X-Partoo-Signature-v1: %s\r\nContent-Length: %d\r\n\r\n" % (path, junk_sig, len(body)))
    return head.encode() + body


busy = []
for _ in range(60):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(request(big))
    busy.append(s)
time.sleep(0.05)  # the server has read the first bodies and queued them for verification
held = []
for _ in range(40):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(request(b""))
    held.append(s)
for s in held:
    try:
        s.sendall(b"G")  # the start of a next request, while the first one is held
    except OSError:
        pass
answered = 0
for s in held:
    try:
        if s.recv(4096).startswith(b"HTTP/1.1 401"):
            answered += 1
    except OSError:
        pass
for s in busy + held:
    s.close()
print("answered %d of %d" % (answered, len(held)))
