-- 0008_timeouts (PostgreSQL): what serve's periodic jobs look for every second, each found
-- through a partial index of its own instead of a walk of every accepted or sending row
-- (as SQLite's outbox_confirm_due):
-- - accepted messages whose confirmation is overdue (re-sent, or given up on);
-- - messages whose claim's lease ran out without an outcome (returned to the queue).

CREATE INDEX outbox_confirm_due ON outbox (confirm_due_at_ms)
    WHERE state = 'accepted' AND confirm_due_at_ms IS NOT NULL;
CREATE INDEX outbox_lease_expiry ON outbox (lease_expires_at_ms) WHERE state = 'sending';
