-- 0011_lean_triggers: the same rows, written by fewer statements per delivery.
--
-- Every delivery runs two state changes and one attempt insert, each with its triggers, on the
-- store thread; the triggers were most of its time (docs/benchmarks.md, "what the triggers
-- cost"). Nothing an auditor or the dashboard reads changes: the same transitions, attempts,
-- audit identities and counters are written. What changes is how many statements write them:
--
-- 1. audit_messages gets a message's identity with its first event, whoever writes it. The
--    triggers looked the message up and tried an INSERT OR IGNORE on every event; they now
--    run only when the identity is missing (a primary-key probe in WHEN), and insert without
--    OR IGNORE: the store's hot statements are UPDATE OR FAIL (lib/store.c, "statement
--    journals"), and an outer OR clause overrides a trigger's own, which would have turned
--    the IGNORE into a failure.
DROP TRIGGER audit_message;
DROP TRIGGER audit_message_attempt;
CREATE TRIGGER audit_message AFTER INSERT ON transitions
WHEN NOT EXISTS (SELECT 1 FROM audit_messages WHERE message_id = NEW.message_id)
BEGIN
    INSERT INTO audit_messages (message_id, channel_id, external_message_id)
    SELECT o.id, o.channel_id, o.external_message_id FROM outbox o WHERE o.id = NEW.message_id;
END;
CREATE TRIGGER audit_message_attempt AFTER INSERT ON attempts
WHEN NOT EXISTS (SELECT 1 FROM audit_messages WHERE message_id = NEW.message_id)
BEGIN
    INSERT INTO audit_messages (message_id, channel_id, external_message_id)
    SELECT o.id, o.channel_id, o.external_message_id FROM outbox o WHERE o.id = NEW.message_id;
END;

-- 2. The dashboard's counters move to tables whose n may be NULL (it never is). An upsert's
--    DO UPDATE checks NOT NULL with ABORT whatever the outer statement says, and an ABORT
--    that can happen makes SQLite journal the whole statement (lib/store.c, "statement
--    journals"); without the constraint the counters cost no journal. Copied aside and
--    created again rather than renamed into place (see 0006), with their triggers.
DROP TRIGGER counts_link;
DROP TRIGGER counts_state;
DROP TRIGGER counts_delete;
DROP TRIGGER stats_attempt;
DROP TRIGGER stats_transition;

CREATE TABLE state_counts_0011 AS SELECT * FROM state_counts;
DROP TABLE state_counts;
CREATE TABLE state_counts (
    channel_id  TEXT NOT NULL,
    state       TEXT NOT NULL,
    n           INTEGER,              -- never NULL; not declared so (above)
    PRIMARY KEY (channel_id, state)
) WITHOUT ROWID;
INSERT INTO state_counts (channel_id, state, n)
    SELECT channel_id, state, n FROM state_counts_0011;
DROP TABLE state_counts_0011;

CREATE TABLE stats_minute_0011 AS SELECT * FROM stats_minute;
DROP TABLE stats_minute;
CREATE TABLE stats_minute (
    minute  INTEGER NOT NULL,             -- at_ms / 60000
    kind    TEXT NOT NULL CHECK (kind IN ('sent', 'accepted', 'failed', 'confirmed')),
    n       INTEGER,                      -- never NULL; not declared so (above)
    PRIMARY KEY (minute, kind)
) WITHOUT ROWID;
INSERT INTO stats_minute (minute, kind, n) SELECT minute, kind, n FROM stats_minute_0011;
DROP TABLE stats_minute_0011;

CREATE TRIGGER counts_link AFTER UPDATE OF head ON outbox
WHEN OLD.head IS NULL AND NEW.head IS NOT NULL
BEGIN
    INSERT INTO state_counts (channel_id, state, n) VALUES (NEW.channel_id, NEW.state, 1)
    ON CONFLICT (channel_id, state) DO UPDATE SET n = n + 1;
END;

-- 3. A state change moves one count from the old state to the new one in one statement.
CREATE TRIGGER counts_state AFTER UPDATE OF state ON outbox
WHEN OLD.state <> NEW.state AND OLD.head IS NOT NULL
BEGIN
    INSERT INTO state_counts (channel_id, state, n)
    VALUES (OLD.channel_id, OLD.state, -1), (NEW.channel_id, NEW.state, 1)
    ON CONFLICT (channel_id, state) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER counts_delete AFTER DELETE ON outbox
WHEN OLD.head IS NOT NULL
BEGIN
    UPDATE state_counts SET n = n - 1 WHERE channel_id = OLD.channel_id AND state = OLD.state;
END;

CREATE TRIGGER stats_transition AFTER INSERT ON transitions
WHEN NEW.to_state IN ('accepted', 'failed', 'confirmed')
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.at_ms / 60000, NEW.to_state, 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
END;

-- Minutes older than 7 days were dropped on every attempt; once per new minute row is
-- enough (an upsert that updates an existing row fires no INSERT trigger).
CREATE TRIGGER stats_attempt AFTER INSERT ON attempts
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.started_at_ms / 60000, 'sent', 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER stats_minute_prune AFTER INSERT ON stats_minute
BEGIN
    DELETE FROM stats_minute WHERE minute < NEW.minute - 10080;
END;

-- 4. A message leaving the unfinished states either was its conversation's head (the usual
--    case: its successor becomes the head) or left from the middle (it is unlinked). Two
--    triggers, so that each runs only its own statements.
DROP TRIGGER outbox_chain_leave;
CREATE TRIGGER outbox_chain_leave_head AFTER UPDATE OF state ON outbox
WHEN OLD.state IN ('queued', 'sending') AND NEW.state NOT IN ('queued', 'sending')
     AND NEW.head = 1
BEGIN
    UPDATE outbox SET head = 1
    WHERE prev_id = NEW.id AND state IN ('queued', 'sending')
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
END;
CREATE TRIGGER outbox_chain_leave_middle AFTER UPDATE OF state ON outbox
WHEN OLD.state IN ('queued', 'sending') AND NEW.state NOT IN ('queued', 'sending')
     AND NEW.head IS NOT 1
BEGIN
    UPDATE outbox SET prev_id = NEW.prev_id
    WHERE prev_id = NEW.id AND state IN ('queued', 'sending')
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    UPDATE conversations SET tail_id = NEW.prev_id
    WHERE NEW.prev_id IS NOT NULL AND tail_id = NEW.id
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
END;

-- 5. A message re-entering the queue sets its conversation's tail by an update, then an
--    insert if there was none, rather than an upsert: an upsert's DO UPDATE checks NOT NULL
--    with ABORT (2 above), and this trigger is compiled into every state change of the
--    outbox, so it made every one of them journal.
DROP TRIGGER outbox_chain_requeue;
CREATE TRIGGER outbox_chain_requeue AFTER UPDATE OF state ON outbox
WHEN OLD.state NOT IN ('queued', 'sending') AND NEW.state IN ('queued', 'sending')
BEGIN
    UPDATE outbox SET
        prev_id = (SELECT t.id FROM conversations c
                   JOIN outbox t ON t.id = c.tail_id AND t.channel_id = c.channel_id
                                AND t.external_conversation_id = c.external_conversation_id
                   WHERE c.channel_id = NEW.channel_id
                     AND c.external_conversation_id = NEW.external_conversation_id
                     AND t.state IN ('queued', 'sending') AND t.id <> NEW.id),
        head = NOT EXISTS (SELECT 1 FROM conversations c
                   JOIN outbox t ON t.id = c.tail_id AND t.channel_id = c.channel_id
                                AND t.external_conversation_id = c.external_conversation_id
                   WHERE c.channel_id = NEW.channel_id
                     AND c.external_conversation_id = NEW.external_conversation_id
                     AND t.state IN ('queued', 'sending') AND t.id <> NEW.id)
    WHERE id = NEW.id;
    UPDATE conversations SET tail_id = NEW.id
    WHERE channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    INSERT INTO conversations (channel_id, external_conversation_id, tail_id)
    SELECT NEW.channel_id, NEW.external_conversation_id, NEW.id
    WHERE NOT EXISTS (SELECT 1 FROM conversations WHERE channel_id = NEW.channel_id
                      AND external_conversation_id = NEW.external_conversation_id);
END;
