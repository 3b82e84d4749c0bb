#!/usr/bin/env python3
"""bench/latency_client.py: the client and the report of the `latency` section of bench/drain.sh.

  latency_client.py send PORT N RATE PREFIX CONVS OUT
      POSTs N single messages to http://127.0.0.1:PORT/v1/messages over one keep-alive
      connection, one every 1/RATE s on a fixed schedule (t0 + i / RATE, so a slow reply does
      not shift the later ones), round-robin over CONVS conversations, external ids
      PREFIX-1 .. PREFIX-N. Writes one line per message to OUT:
          external_message_id  sent_ms  acked_ms  status
      sent_ms is the wall clock (CLOCK_REALTIME, float ms) just before the request is written,
      acked_ms just after the status line and headers of the reply were read (the body is read
      after that). Building the body and writing OUT stay outside the two readings.

  latency_client.py report LABEL RATE DELIVERED LOAD CLIENT_TSV DB_ROWS MOCK_TSV P99_OUT
      Prints three Markdown table rows (one per measure) from the client's file, the database
      rows (external_message_id|created_at_ms|started_at_ms of the first attempt, as sqlite3
      prints them) and the mock's GET /_mock/received (tab-separated, arrival_ms in column 2,
      external_message_id in column 6), and writes the three p99s, in row order, to P99_OUT.
      Percentiles are nearest-rank; every figure is rounded to whole ms, the resolution of the
      database's and the mock's timestamps.

Only the Python 3 standard library.
"""
import http.client
import json
import math
import sys
import time


def send(port, n, rate, prefix, convs, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.connect()  # the TCP handshake is not part of any message's interval
    headers = {"Content-Type": "application/json"}
    rows = []
    late = 0
    t0 = time.perf_counter() + 0.05
    for i in range(1, n + 1):
        body = json.dumps({
            "channel_id": "bench-ch",
            "external_message_id": "%s-%d" % (prefix, i),
            "business_id": "biz-%d" % (i % convs),
            "external_conversation_id": "lat-conv-%d" % (i % convs),
            "content": "Latency message %d: hello, this is a typical short chat message body." % i,
            "sender_type": "Consumer",
        }, separators=(",", ":"))
        due = t0 + (i - 1) / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        elif wait < -0.001:
            late += 1
        sent = time.time_ns()
        conn.request("POST", "/v1/messages", body, headers)
        resp = conn.getresponse()
        acked = time.time_ns()
        data = resp.read()
        status = resp.status
        if status == 202 and b'"duplicate":false' not in data:
            status = -202  # a duplicate: the id was not fresh
        rows.append("%s-%d\t%.3f\t%.3f\t%d\n" % (prefix, i, sent / 1e6, acked / 1e6, status))
    conn.close()
    with open(out, "w") as f:
        f.writelines(rows)
    if late:
        print("latency_client: %d of %d requests started more than 1 ms late" % (late, n),
              file=sys.stderr)
    return 0 if all(r.rstrip().endswith("\t202") for r in rows) else 1


def pct(sorted_vals, p):
    """Nearest-rank percentile of a sorted list (p in 0..100)."""
    if not sorted_vals:
        return float("nan")
    k = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[k - 1]


def ms(v):
    """Whole milliseconds, without a "-0"."""
    s = "%.0f" % v
    return "0" if s == "-0" else s


def report(label, rate, delivered, load, client_tsv, db_rows, mock_tsv, p99_out):
    client = {}
    with open(client_tsv) as f:
        for line in f:
            ext, sent, acked, status = line.rstrip("\n").split("\t")
            client[ext] = (float(sent), float(acked), int(status))
    db = {}
    with open(db_rows) as f:
        for line in f:
            parts = line.rstrip("\n").split("|")
            if len(parts) == 3 and parts[2]:
                db[parts[0]] = (int(parts[1]), int(parts[2]))
    mock = {}
    with open(mock_tsv) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 7 and parts[6] == "0" and parts[5] in client:
                mock.setdefault(parts[5], int(parts[1]))  # first arrival of the key
    measures = [
        ("DB: created_at → first attempt started_at",
         [s - c for (c, s) in db.values()]),
        ("client: POST sent → mock received",
         [mock[e] - client[e][0] for e in client if e in mock]),
        ("client: 202 read → mock received",
         [mock[e] - client[e][1] for e in client if e in mock]),
    ]
    n = len(client)
    p99s = []
    for name, vals in measures:
        vals.sort()
        cells = [ms(pct(vals, p)) for p in (50, 90, 99)] + [ms(vals[-1] if vals else float("nan"))]
        p99s.append(cells[2])
        print("| %s | %s | %s%s | %s/s | %s | %s | %s | %s | %s | %s |" % (
            label, name, len(vals), "" if len(vals) == n else " of %d" % n, rate,
            cells[0], cells[1], "**%s**" % cells[2], cells[3], delivered, load))
    with open(p99_out, "w") as f:
        f.write(" ".join(p99s) + "\n")
    return 0


def main(argv):
    if len(argv) == 8 and argv[1] == "send":
        return send(int(argv[2]), int(argv[3]), float(argv[4]), argv[5], int(argv[6]), argv[7])
    if len(argv) == 10 and argv[1] == "report":
        return report(*argv[2:10])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
