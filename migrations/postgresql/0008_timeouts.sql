-- 0008_timeouts (PostgreSQL): the accepted messages whose confirmation is overdue, which
-- serve's periodic job re-sends (or gives up on) every second, found through a partial index
-- of their own, as SQLite's outbox_confirm_due, instead of a walk of every accepted message.
-- (Expired leases need none: outbox_state's range of `sending` rows is a node's in-flight
-- messages, a few hundred at most.)

CREATE INDEX outbox_confirm_due ON outbox (confirm_due_at_ms)
    WHERE state = 'accepted' AND confirm_due_at_ms IS NOT NULL;
