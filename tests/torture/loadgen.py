#!/usr/bin/env python3
"""Steady producer load for bench/soak.sh (keep-alive HTTP, paced, no dependencies).

  loadgen.py --api http://127.0.0.1:PORT --rate 50 --seconds 600 [--threads 4]
             [--mock http://127.0.0.1:MOCKPORT --replies-per-s 1] [--prefix soak]
             [--convs 200] [--stop-file FILE]

POSTs unique messages to /v1/messages at --rate per second in total (spread over --threads
keep-alive connections) and, with --mock, asks the mock to send a signed reply webhook
--replies-per-s times a second. Prints one JSON object at the end: sent, codes {status: n},
latency_ms {p50, p99, max}, replies {status: n}, achieved_rate.
"""
import argparse
import http.client
import json
import os
import threading
import time
import urllib.parse


def percentile(xs, p):
    if not xs:
        return 0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.codes = {}
        self.lat = []
        self.replies = {}

    def add(self, table, code, lat=None):
        with self.lock:
            table[code] = table.get(code, 0) + 1
            if lat is not None:
                self.lat.append(lat)


def conn_for(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def producer(args, idx, stats, stop):
    period = args.threads / args.rate
    c = conn_for(args.api)
    n = 0
    next_t = time.time() + idx * period / args.threads
    end = time.time() + args.seconds
    while time.time() < end and not stop():
        now = time.time()
        if now < next_t:
            time.sleep(next_t - now)
        next_t += period
        n += 1
        key = "%s-%d-%d" % (args.prefix, idx, n)
        body = json.dumps({"channel_id": "ch", "external_message_id": key, "business_id": "b%d" % (n % 5),
                           "external_conversation_id": "c%d" % ((n * args.threads + idx) % args.convs),
                           "content": "soak message %s " % key + "x" * (n % 200),
                           "sender_type": "Consumer"})
        t0 = time.time()
        try:
            c.request("POST", "/v1/messages", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            stats.add(stats.codes, str(r.status), (time.time() - t0) * 1000)
        except Exception:
            stats.add(stats.codes, "error")
            c.close()
            c = conn_for(args.api)


def replier(args, stats, stop):
    if not args.mock or args.replies_per_s <= 0:
        return
    c = conn_for(args.mock)
    n = 0
    end = time.time() + args.seconds
    while time.time() < end and not stop():
        n += 1
        body = json.dumps({"channel_id": "ch", "external_conversation_id": "c%d" % (n % args.convs),
                           "partoo_message_id": 3000000 + n, "content": "reply %d" % n})
        try:
            c.request("POST", "/_mock/webhook", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            stats.add(stats.replies, str(json.loads(r.read()).get("status")))
        except Exception:
            stats.add(stats.replies, "error")
            c.close()
            c = conn_for(args.mock)
        time.sleep(1.0 / args.replies_per_s)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--mock")
    ap.add_argument("--replies-per-s", type=float, default=1)
    ap.add_argument("--prefix", default="soak")
    ap.add_argument("--convs", type=int, default=200)
    ap.add_argument("--stop-file")
    args = ap.parse_args()
    stats = Stats()
    stop = (lambda: os.path.exists(args.stop_file)) if args.stop_file else (lambda: False)
    t0 = time.time()
    ts = [threading.Thread(target=producer, args=(args, i, stats, stop)) for i in range(args.threads)]
    ts.append(threading.Thread(target=replier, args=(args, stats, stop)))
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    elapsed = time.time() - t0
    sent = sum(stats.codes.values())
    print(json.dumps({"sent": sent, "codes": stats.codes,
                      "latency_ms": {"p50": round(percentile(stats.lat, 0.5), 1),
                                     "p99": round(percentile(stats.lat, 0.99), 1),
                                     "max": round(max(stats.lat or [0]), 1)},
                      "replies": stats.replies, "achieved_rate": round(sent / elapsed, 1)}))


if __name__ == "__main__":
    main()
