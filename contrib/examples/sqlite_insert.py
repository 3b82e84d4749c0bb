#!/usr/bin/env python3
"""The transactional outbox from Python's sqlite3: the business change and the message are
committed together, or neither is (docs/schema.md, "The SQL contract").

    python3 sqlite_insert.py /var/lib/outbox/outbox.db ORDER_ID CHANNEL BUSINESS CONVERSATION

Marks order ORDER_ID ready in the application's `orders` table (created here for the
example; yours lives in the same database file as the outbox) and, in the same
transaction, enqueues "Your order <id> is ready." for `outbox serve`, which picks the row up
within a second. Run again with the same ORDER_ID, it changes nothing: the message key
order-<id>-ready is inserted with OR IGNORE. Prints the message's id and state.
"""
import sqlite3
import sys


def main(argv):
    if len(argv) != 6:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    db, order_id, channel, business, conversation = argv[1:]
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. A writer waits up to 10 s for
    # serve's short write transactions instead of failing with "database is locked".
    con = sqlite3.connect(db, timeout=10, isolation_level=None)
    try:
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        key = "order-%s-ready" % order_id
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("INSERT INTO orders (id, status) VALUES (?, 'ready') "
                        "ON CONFLICT (id) DO UPDATE SET status = 'ready'", (int(order_id),))
            # Only the message's own columns: the bookkeeping columns belong to serve.
            con.execute(
                "INSERT OR IGNORE INTO outbox (channel_id, external_message_id, business_id,"
                " external_conversation_id, content, sender_type) VALUES (?, ?, ?, ?, ?, 'User')",
                (channel, key, business, conversation, "Your order %s is ready." % order_id))
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        row = con.execute("SELECT id, state FROM outbox WHERE channel_id = ? AND "
                          "external_message_id = ?", (channel, key)).fetchone()
        print("id=%d state=%s key=%s" % (row[0], row[1], key))
    finally:
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
