-- 0006_channel_dot_segments: a channel id may not be "." or "..".
--
-- The channel id is a segment of the request path (POST .../custom-channels/{channel_id}/
-- messages). A dot segment is removed by URL normalisation (RFC 3986 5.2.4), so the message
-- and its x-APIKey would go to another path of Partoo's host (issue 19 finding 4). The C
-- validator refuses them for the API and the CLI; this constraint refuses them for a plain
-- SQL INSERT.
--
-- SQLite cannot add a CHECK constraint to an existing table, so the table is rebuilt the way
-- SQLite documents (https://sqlite.org/lang_altertable.html, "making other kinds of table
-- schema changes"), keeping every row and id, then its indexes and triggers are created
-- again. migrate.c runs every migration with foreign keys off (otherwise DROP TABLE would
-- first delete every row and cascade into attempts and transitions) and checks them with
-- PRAGMA foreign_key_check before committing. The rows go through a copy and back, rather
-- than a new table renamed into place, because RENAME would rewrite the table's SQL with a
-- quoted name and check the audit triggers of other tables while outbox does not exist.
--
-- A database that already holds a row with such a channel id stops here with
-- "CHECK constraint failed: channel_id_not_dot_segment" and nothing changed: such a message
-- could never reach a channel. Delete those rows, then start again (docs/schema.md).

CREATE TABLE outbox_0006 AS SELECT * FROM outbox;
DROP TABLE outbox;

CREATE TABLE outbox (
    id                       INTEGER PRIMARY KEY,
    channel_id               TEXT NOT NULL
        CHECK (typeof(channel_id) = 'text' AND length(CAST(channel_id AS BLOB)) BETWEEN 1 AND 255),
    external_message_id      TEXT NOT NULL
        CHECK (typeof(external_message_id) = 'text'
               AND length(CAST(external_message_id AS BLOB)) BETWEEN 1 AND 255),
    business_id              TEXT NOT NULL
        CHECK (typeof(business_id) = 'text' AND length(CAST(business_id AS BLOB)) BETWEEN 1 AND 255),
    external_conversation_id TEXT NOT NULL
        CHECK (typeof(external_conversation_id) = 'text'
               AND length(CAST(external_conversation_id AS BLOB)) BETWEEN 1 AND 255),
    content                  TEXT NOT NULL
        CHECK (typeof(content) = 'text' AND length(CAST(content AS BLOB)) BETWEEN 1 AND 1048576),
    sender_type              TEXT NOT NULL CHECK (sender_type IN ('User', 'Consumer')),
    consumer_name            TEXT
        CHECK (consumer_name IS NULL
               OR (typeof(consumer_name) = 'text' AND length(CAST(consumer_name AS BLOB)) <= 255)),
    consumer_image           TEXT
        CHECK (consumer_image IS NULL
               OR (typeof(consumer_image) = 'text' AND length(CAST(consumer_image AS BLOB)) <= 2048)),
    priority                 INTEGER NOT NULL DEFAULT 0 CHECK (typeof(priority) = 'integer'),

    state                    TEXT NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sending', 'accepted', 'confirmed', 'failed', 'cancelled')),
    state_reason             TEXT NOT NULL DEFAULT 'enqueued',
    state_at_ms              INTEGER NOT NULL
        DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)),
    head                     INTEGER CHECK (head IS NULL OR head IN (0, 1)),
    attempts                 INTEGER NOT NULL DEFAULT 0,
    counted_attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms       INTEGER NOT NULL DEFAULT 0,
    lease_token              INTEGER,
    lease_expires_at_ms      INTEGER,
    created_at_ms            INTEGER NOT NULL
        DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)),
    accepted_at_ms           INTEGER,
    confirmed_at_ms          INTEGER,
    resends                  INTEGER NOT NULL DEFAULT 0,
    last_http_status         INTEGER,
    last_error               TEXT,
    partoo_message_id        TEXT,
    partoo_status            TEXT,
    unconfirmed_at_ms        INTEGER,  -- resends exhausted without confirmation (0002)
    confirm_due_at_ms        INTEGER,  -- re-send if not confirmed by then; NULL = nothing awaited
    prev_id                  INTEGER,  -- the unfinished message this one waits for (0005)

    UNIQUE (channel_id, external_message_id),
    -- A dot segment would be removed from the request path (RFC 3986 5.2.4), sending the
    -- message and its x-APIKey to another path of Partoo's host (0006).
    CONSTRAINT channel_id_not_dot_segment CHECK (channel_id NOT IN ('.', '..'))
);

INSERT INTO outbox SELECT * FROM outbox_0006;
DROP TABLE outbox_0006;

CREATE INDEX outbox_claim ON outbox (priority DESC, business_id, next_attempt_at_ms, id)
    WHERE state = 'queued' AND head = 1;

CREATE INDEX outbox_state ON outbox (state, id);

CREATE INDEX outbox_lease ON outbox (lease_expires_at_ms) WHERE state = 'sending';

CREATE TRIGGER outbox_record_transition AFTER UPDATE OF state ON outbox
WHEN OLD.state <> NEW.state
BEGIN
    INSERT INTO transitions (message_id, at_ms, from_state, to_state, reason)
    VALUES (NEW.id, NEW.state_at_ms, OLD.state, NEW.state, NEW.state_reason);
END;

CREATE INDEX outbox_confirm_due ON outbox (confirm_due_at_ms)
    WHERE state = 'accepted' AND confirm_due_at_ms IS NOT NULL;

CREATE INDEX outbox_next ON outbox (prev_id) WHERE state IN ('queued', 'sending');

CREATE INDEX outbox_unlinked ON outbox (channel_id, external_conversation_id, id)
    WHERE head IS NULL;

CREATE TRIGGER outbox_chain_leave AFTER UPDATE OF state ON outbox
WHEN OLD.state IN ('queued', 'sending') AND NEW.state NOT IN ('queued', 'sending')
BEGIN
    UPDATE outbox SET head = 1
    WHERE NEW.head = 1 AND prev_id = NEW.id AND state IN ('queued', 'sending')
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    UPDATE outbox SET prev_id = NEW.prev_id
    WHERE NEW.head IS NOT 1 AND prev_id = NEW.id AND state IN ('queued', 'sending')
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    UPDATE conversations SET tail_id = NEW.prev_id
    WHERE NEW.head IS NOT 1 AND NEW.prev_id IS NOT NULL AND tail_id = NEW.id
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
END;

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
    INSERT INTO conversations (channel_id, external_conversation_id, tail_id)
    VALUES (NEW.channel_id, NEW.external_conversation_id, NEW.id)
    ON CONFLICT (channel_id, external_conversation_id) DO UPDATE SET tail_id = excluded.tail_id;
END;
