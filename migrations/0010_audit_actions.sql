-- 0010_audit_actions: pauses and resumes are audit events (SPEC §13: every dashboard action
-- is in the audit trail: who, what, when).
--
-- Retries and cancels are transitions, already in the chain. A pause or a resume changes only
-- the pauses table, whose row is updated in place on resume and keeps only who paused: each
-- one now also appends one row here, in the same transaction, and the audit chain seals these
-- rows after the seal's transitions and attempts (lib/audit.h). AUTOINCREMENT: an id is never
-- reused, so an action can never land inside a range that is already sealed.
CREATE TABLE actions (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('pause', 'resume')),
    scope   TEXT NOT NULL,
    key     TEXT NOT NULL,
    reason  TEXT NOT NULL,                -- the pause's reason ("" for a resume)
    by      TEXT NOT NULL                 -- cli, api or dashboard
);

-- A seal also covers the actions with id in (previous seal's actions_upto, actions_upto]; the
-- seals written before have none (0), so their hashes stay as they are.
ALTER TABLE audit_seals ADD COLUMN actions_upto INTEGER NOT NULL DEFAULT 0;
