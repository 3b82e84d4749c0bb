#!/usr/bin/env python3
"""Raw HTTP helpers for the hostile-input tests (tests/integration/test_hostile.sh).

  rawhttp.py send HOST PORT [TIMEOUT]
      Sends stdin as-is, half-closes nothing, reads the answer until the server closes or
      TIMEOUT (default 5 s). Prints the status code of the first answer, "closed" when the
      server closed without an answer, or "timeout".

  rawhttp.py slowloris HOST PORT N SECONDS MODE
      Opens N connections and attacks them for SECONDS. MODE:
        stall-headers  a partial request head, then nothing
        trickle-headers  a partial request head, then one header byte per second per conn
        stall-body     a complete head with Content-Length: 100000, then nothing
        trickle-body   the same head, then one body byte per second per conn
      Prints one JSON object: opened, closed (by the server, with or without an answer),
      answered (closed with an HTTP answer), close_times (seconds after the start, sorted),
      still_open at the end.
"""
import json
import select
import socket
import sys
import time


def send(host, port, timeout):
    data = sys.stdin.buffer.read()
    s = socket.create_connection((host, port), timeout=5)
    s.settimeout(timeout)
    try:
        s.sendall(data)
    except OSError:
        pass  # the server may close while we still send; read what it said
    buf = b""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if b"\r\n\r\n" in buf:
                break
    except socket.timeout:
        if not buf:
            print("timeout")
            return
    except OSError:
        pass
    s.close()
    if buf.startswith(b"HTTP/"):
        print(buf.split(b" ", 2)[1].decode("ascii", "replace"))
    else:
        print("closed")


def slowloris(host, port, n, seconds, mode):
    start = time.time()
    conns = {}
    opened = 0
    for i in range(n):
        try:
            s = socket.create_connection((host, port), timeout=5)
        except OSError:
            continue
        s.setblocking(False)
        if mode.endswith("headers"):
            head = b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nX-Slow-%d: " % i
        else:
            head = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n{")
        try:
            s.send(head)
        except OSError:
            pass
        conns[s] = {"answered": False}
        opened += 1
    close_times = []
    answered = 0
    last_tick = time.time()
    while time.time() - start < seconds and conns:
        r, _, _ = select.select(list(conns), [], [], 0.2)
        for s in r:
            try:
                chunk = s.recv(65536)
            except OSError:
                chunk = b""
            if chunk:
                if chunk.startswith(b"HTTP/"):
                    conns[s]["answered"] = True
                continue
            close_times.append(round(time.time() - start, 1))
            answered += conns[s]["answered"]
            del conns[s]
            s.close()
        if mode.startswith("trickle") and time.time() - last_tick >= 1.0:
            last_tick = time.time()
            for s in list(conns):
                try:
                    s.send(b"a")
                except OSError:
                    close_times.append(round(time.time() - start, 1))
                    del conns[s]
                    s.close()
    print(json.dumps({"opened": opened, "closed": len(close_times), "answered": answered,
                      "close_times": sorted(close_times), "still_open": len(conns)}))
    for s in conns:
        s.close()


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "send":
        send(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 5.0)
    elif len(sys.argv) == 7 and sys.argv[1] == "slowloris":
        slowloris(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
