#!/usr/bin/env python3
"""bench/purge_producer.py: the producers and the report of bench/purge_latency.sh.

  purge_producer.py send PORT RATE STOP_FILE OUT [CONNS]
      POSTs single messages to http://127.0.0.1:PORT/v1/messages at RATE per second on a
      fixed schedule (request i is due at t0 + i / RATE) until STOP_FILE exists, spread over
      CONNS (default 4) keep-alive connections, one thread each, so that one slow answer
      does not hold back the next request. Writes one line per request to OUT:
          due_ms  acked_ms  status
      (wall clock, float ms). Latency is acked - due: the time a producer waited, including
      any wait for a free connection, so a stall shows in full (no coordinated omission).
      status 0 = no answer (connection error or a 10 s timeout).

  purge_producer.py report LABEL OUT FROM_MS TO_MS
      One Markdown table row for the requests due in [FROM_MS, TO_MS]: count, 503s, other
      errors, p50, p99, max (ms; nearest-rank percentiles).

Only the Python 3 standard library.
"""
import http.client
import json
import math
import os
import queue
import sys
import threading
import time


def worker(port, jobs, rows, lock):
    conn = None
    headers = {"Content-Type": "application/json"}
    while True:
        job = jobs.get()
        if job is None:
            return
        i, due = job
        body = json.dumps({
            "channel_id": "prod-ch",
            "external_message_id": "p-%d-%d" % (os.getpid(), i),
            "business_id": "biz-%d" % (i % 10),
            "external_conversation_id": "prod-conv-%d" % (i % 50),
            "content": "Producer message %d: hello, this is a typical short chat message." % i,
            "sender_type": "Consumer",
        }, separators=(",", ":"))
        status = 0
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/messages", body, headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        acked = time.time() * 1000.0
        with lock:
            rows.append("%.3f\t%.3f\t%d\n" % (due, acked, status))


def send(port, rate, stop_file, out, conns):
    jobs = queue.Queue()
    rows = []
    lock = threading.Lock()
    threads = [threading.Thread(target=worker, args=(port, jobs, rows, lock)) for _ in range(conns)]
    for t in threads:
        t.start()
    t0 = time.time() + 0.05
    i = 0
    while not os.path.exists(stop_file):
        due = t0 + i / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        jobs.put((i, due * 1000.0))
        i += 1
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join()
    with open(out, "w") as f:
        f.writelines(sorted(rows))
    return 0


def pct(vals, p):
    if not vals:
        return float("nan")
    return vals[max(1, math.ceil(p / 100.0 * len(vals))) - 1]


def report(label, out, lo, hi):
    lat, n503, other = [], 0, 0
    with open(out) as f:
        for line in f:
            due, acked, status = line.split("\t")
            due, acked, status = float(due), float(acked), int(status)
            if not lo <= due <= hi:
                continue
            lat.append(acked - due)
            if status == 503:
                n503 += 1
            elif status != 202:
                other += 1
    lat.sort()
    print("| %s | %d | %d | %d | %.0f | %.0f | %.0f |" % (
        label, len(lat), n503, other, pct(lat, 50), pct(lat, 99), lat[-1] if lat else float("nan")))
    return 0


def main(argv):
    if len(argv) >= 6 and argv[1] == "send":
        return send(int(argv[2]), float(argv[3]), argv[4], argv[5],
                    int(argv[6]) if len(argv) > 6 else 4)
    if len(argv) == 6 and argv[1] == "report":
        return report(argv[2], argv[3], float(argv[4]), float(argv[5]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
