-- 0009_lean_audit: the audit chain over the transitions and attempts themselves (issue 13).
--
-- Until now two triggers copied every transition and attempt into audit_log, the attempt with
-- the message's content: three audit rows of ~300 bytes for one delivered 60-byte message,
-- two thirds of the database. Now each fact is written once:
--
--   transitions, attempts   the events (unchanged columns), kept after their message is
--                           purged: they leave with the audit chain's prune (lib/audit.c)
--   audit_messages          once per message: its identity and the SHA-256 of what was sent
--                           (the Partoo fields, content included), so that the chain still
--                           verifies, and an export still names the message, after a purge
--   audit_seals             one row per seal (about one per second): the hash chain runs over
--                           every event, in a fixed order, and the seal keeps the chain's hash
--                           after its last event
--
-- The rows of audit_log written before this migration stay as they are, sealed or not: the
-- chain goes on from the last of them into the first seal (lib/audit.h, "Chain").

DROP TRIGGER audit_transition;
DROP TRIGGER audit_attempt;
-- Created again below, unchanged, once transitions is back.
DROP TRIGGER outbox_record_transition;

-- Rebuilt without the foreign key to outbox: deleting a message must not delete its events
-- while the audit chain covers them. AUTOINCREMENT: an id is never reused, so an event can
-- never land inside a range that is already sealed.
-- (Copied aside and created again rather than renamed into place: RENAME would rewrite the
-- table's SQL with a quoted name; see 0006.)
CREATE TABLE transitions_0009 AS SELECT * FROM transitions;
DROP TABLE transitions;
CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL
);
INSERT INTO transitions (id, message_id, at_ms, from_state, to_state, reason)
    SELECT id, message_id, at_ms, from_state, to_state, reason FROM transitions_0009 ORDER BY id;
DROP TABLE transitions_0009;
CREATE INDEX transitions_message ON transitions (message_id, id);
CREATE INDEX transitions_at ON transitions (at_ms);

CREATE TRIGGER outbox_record_transition AFTER UPDATE OF state ON outbox
WHEN OLD.state <> NEW.state
BEGIN
    INSERT INTO transitions (message_id, at_ms, from_state, to_state, reason)
    VALUES (NEW.id, NEW.state_at_ms, OLD.state, NEW.state, NEW.state_reason);
END;

CREATE TABLE attempts_0009 AS SELECT * FROM attempts;
DROP TABLE attempts;
CREATE TABLE attempts (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id        INTEGER NOT NULL,
    started_at_ms     INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    http_status       INTEGER,          -- NULL when no HTTP answer (transport error)
    outcome           TEXT NOT NULL,    -- accepted|fatal|auth|rate_limited|retry|transport
    error             TEXT,             -- transport error or short reason
    response_excerpt  TEXT              -- first bytes of the response body
);
INSERT INTO attempts (id, message_id, started_at_ms, duration_ms, http_status, outcome, error,
                      response_excerpt)
    SELECT id, message_id, started_at_ms, duration_ms, http_status, outcome, error,
           response_excerpt FROM attempts_0009 ORDER BY id;
DROP TABLE attempts_0009;
CREATE INDEX attempts_message ON attempts (message_id, id);
CREATE INDEX attempts_started ON attempts (started_at_ms);

-- Dropping the two tables dropped the dashboard's per-minute counters on them (0008):
-- created again, unchanged.
CREATE TRIGGER stats_attempt AFTER INSERT ON attempts
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.started_at_ms / 60000, 'sent', 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
    DELETE FROM stats_minute WHERE minute < NEW.started_at_ms / 60000 - 10080;
END;

CREATE TRIGGER stats_transition AFTER INSERT ON transitions
WHEN NEW.to_state IN ('accepted', 'failed', 'confirmed')
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.at_ms / 60000, NEW.to_state, 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
END;

-- The events already copied into audit_log are in the old chain: the new chain starts after
-- them.
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'transitions', coalesce((SELECT max(id) FROM transitions), 0)
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'transitions');
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'attempts', coalesce((SELECT max(id) FROM attempts), 0)
    WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'attempts');

-- One row per message with events. sent_sha256 = SHA-256 (32 bytes) of the JSON object of
-- the fields sent to Partoo (lib/audit.h); filled by the sealer before it seals the message's
-- first event (NULL until then; empty when the message was gone before its first seal).
CREATE TABLE audit_messages (
    message_id           INTEGER PRIMARY KEY,
    channel_id           TEXT NOT NULL,
    external_message_id  TEXT NOT NULL,
    sent_sha256          BLOB
);
CREATE INDEX audit_messages_unhashed ON audit_messages (message_id) WHERE sent_sha256 IS NULL;

-- Every message gets its identity row with its first event after this migration, whoever
-- writes it.
CREATE TRIGGER audit_message AFTER INSERT ON transitions
BEGIN
    INSERT OR IGNORE INTO audit_messages (message_id, channel_id, external_message_id)
    SELECT o.id, o.channel_id, o.external_message_id FROM outbox o WHERE o.id = NEW.message_id;
END;
CREATE TRIGGER audit_message_attempt AFTER INSERT ON attempts
BEGIN
    INSERT OR IGNORE INTO audit_messages (message_id, channel_id, external_message_id)
    SELECT o.id, o.channel_id, o.external_message_id FROM outbox o WHERE o.id = NEW.message_id;
END;

-- A seal covers the transitions with id in (previous seal's transitions_upto, transitions_upto]
-- and the attempts with id in (previous attempts_upto, attempts_upto]. Its id continues
-- audit_log's ids, so that audit_chain_modes.from_id and audit_checkpoints.upto_id address
-- legacy rows and seals alike.
CREATE TABLE audit_seals (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    transitions_upto  INTEGER NOT NULL,
    attempts_upto     INTEGER NOT NULL,
    events            INTEGER NOT NULL,   -- events covered
    at_ms             INTEGER NOT NULL,   -- latest event time covered (prune by age)
    hash              TEXT NOT NULL       -- the chain's hash after the last event covered
);
INSERT INTO sqlite_sequence (name, seq)
    VALUES ('audit_seals', coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'audit_log'), 0));
-- The first seal starts after the events already in audit_log.
INSERT INTO audit_seals (id, transitions_upto, attempts_upto, events, at_ms, hash)
    SELECT 0, coalesce((SELECT max(id) FROM transitions), 0),
           coalesce((SELECT max(id) FROM attempts), 0), 0, 0, '';

-- A purged message's events stay while the chain needs them; those already behind the latest
-- checkpoint go with it (the audit prune removes the others once a checkpoint covers them:
-- lib/audit.c). Its identity row goes when nothing needs it any more: neither the message nor
-- an event of it.
CREATE TRIGGER audit_message_gone_outbox AFTER DELETE ON outbox
BEGIN
    DELETE FROM transitions WHERE message_id = OLD.id AND id <= coalesce(
        (SELECT s.transitions_upto FROM audit_seals s
         WHERE s.id = (SELECT max(upto_id) FROM audit_checkpoints)), 0);
    DELETE FROM attempts WHERE message_id = OLD.id AND id <= coalesce(
        (SELECT s.attempts_upto FROM audit_seals s
         WHERE s.id = (SELECT max(upto_id) FROM audit_checkpoints)), 0);
    DELETE FROM audit_messages WHERE message_id = OLD.id
        AND NOT EXISTS (SELECT 1 FROM transitions WHERE message_id = OLD.id)
        AND NOT EXISTS (SELECT 1 FROM attempts WHERE message_id = OLD.id);
END;
CREATE TRIGGER audit_message_gone_transition AFTER DELETE ON transitions
BEGIN
    DELETE FROM audit_messages WHERE message_id = OLD.message_id
        AND NOT EXISTS (SELECT 1 FROM outbox WHERE id = OLD.message_id)
        AND NOT EXISTS (SELECT 1 FROM transitions WHERE message_id = OLD.message_id)
        AND NOT EXISTS (SELECT 1 FROM attempts WHERE message_id = OLD.message_id);
END;
CREATE TRIGGER audit_message_gone_attempt AFTER DELETE ON attempts
BEGIN
    DELETE FROM audit_messages WHERE message_id = OLD.message_id
        AND NOT EXISTS (SELECT 1 FROM outbox WHERE id = OLD.message_id)
        AND NOT EXISTS (SELECT 1 FROM transitions WHERE message_id = OLD.message_id)
        AND NOT EXISTS (SELECT 1 FROM attempts WHERE message_id = OLD.message_id);
END;
