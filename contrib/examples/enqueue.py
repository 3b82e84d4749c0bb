#!/usr/bin/env python3
"""Enqueue one message over the producer API of `outbox serve` (Python standard library).

    PARTOO_OUTBOX_URL=http://127.0.0.1:8787 OUTBOX_API_TOKEN=... \\
        python3 enqueue.py CHANNEL MESSAGE_ID BUSINESS CONVERSATION CONTENT

Prints `id=<id> state=<state> duplicate=<true|false>` once the message is committed (HTTP
202). Re-sending the same key is safe: it answers duplicate=true and changes nothing, so
the request is retried after a timeout or a 503 (honouring Retry-After). Any other error
is printed with its code and field, and the exit status is 1. docs/api.md has the details.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

API = os.environ.get("PARTOO_OUTBOX_URL", "http://127.0.0.1:8787")
TOKEN = os.environ.get("OUTBOX_API_TOKEN")


def enqueue(message, attempts=5):
    body = json.dumps(message).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if TOKEN:
        headers["Authorization"] = "Bearer " + TOKEN
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(API + "/v1/messages", data=body, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as e:
            if e.code == 503 and attempt < attempts:
                time.sleep(float(e.headers.get("Retry-After", "1")))
                continue
            return e.code, json.load(e)
        except (urllib.error.URLError, TimeoutError):
            if attempt == attempts:
                raise
            time.sleep(1)  # not stored, or stored and the answer lost: re-sending is safe
    raise RuntimeError("unreachable")


def main(argv):
    if len(argv) != 6:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    channel, message_id, business, conversation, content = argv[1:]
    status, doc = enqueue({
        "channel_id": channel, "external_message_id": message_id, "business_id": business,
        "external_conversation_id": conversation, "content": content,
        "sender_type": "User",
    })
    if status == 202:
        if not isinstance(doc.get("id"), int) or not isinstance(doc.get("duplicate"), bool):
            print("unexpected answer: %r" % doc, file=sys.stderr)
            return 1
        print("id=%d state=%s duplicate=%s" % (doc["id"], doc["state"],
                                              "true" if doc["duplicate"] else "false"))
        return 0
    err = doc.get("error", {})
    print("HTTP %d %s: %s (field %s)" % (status, err.get("code"), err.get("message"),
                                         err.get("field")), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
