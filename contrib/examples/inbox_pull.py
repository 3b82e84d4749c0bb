#!/usr/bin/env python3
"""Pull the replies Partoo users wrote, and acknowledge each one once it is handled
(Python standard library; docs/webhooks.md, "Pull API and CLI").

    PARTOO_OUTBOX_URL=http://127.0.0.1:8787 OUTBOX_API_TOKEN=... python3 inbox_pull.py

Prints each reply as one JSON line (replace handle() with your own processing), then
POSTs /v1/inbox/{id}/ack. A reply is acknowledged only after handle() returned, so a crash
in between shows it again next time: handle() must tolerate seeing a reply twice (key it
by partoo_message_id). Pages are followed with next_cursor until it is null.
"""
import json
import os
import sys
import urllib.parse
import urllib.request

API = os.environ.get("PARTOO_OUTBOX_URL", "http://127.0.0.1:8787")
TOKEN = os.environ.get("OUTBOX_API_TOKEN")


def call(method, path):
    req = urllib.request.Request(API + path, method=method)
    if TOKEN:
        req.add_header("Authorization", "Bearer " + TOKEN)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def handle(reply):
    print(json.dumps({k: reply[k] for k in ("id", "channel_id", "external_conversation_id",
                                            "partoo_message_id", "sender_label", "content")},
                     ensure_ascii=False), flush=True)


def main():
    # Acknowledged replies leave the listing, so each pass starts again from the oldest.
    handled, seen = 0, set()
    while True:
        page = call("GET", "/v1/inbox?limit=100")
        replies = [r for r in page["replies"] if r["id"] not in seen]
        if not replies:
            if page["replies"]:
                sys.exit("acknowledged replies are still listed: %r" % sorted(seen))
            break
        for reply in replies:
            seen.add(reply["id"])
            handle(reply)
            ack = call("POST", "/v1/inbox/%s/ack" % urllib.parse.quote(str(reply["id"])))
            if ack.get("state") != "acked":
                sys.exit("unexpected ack answer: %r" % ack)
            handled += 1
    print("handled %d replies" % handled, file=sys.stderr)


if __name__ == "__main__":
    main()
