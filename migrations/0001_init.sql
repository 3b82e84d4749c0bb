-- 0001_init: the outbox, its transition log and its attempt log.
-- Released migrations are never edited; see docs/migrations.md for the procedure.

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

    UNIQUE (channel_id, external_message_id)
);

-- The claim index: due heads of conversations, by priority then business (round-robin)
-- then due time. Only rows that can be claimed are in it, so it stays small even with
-- millions of delivered rows, and claiming is a range scan.
CREATE INDEX outbox_claim ON outbox (priority DESC, business_id, next_attempt_at_ms, id)
    WHERE state = 'queued' AND head = 1;

-- Unfinished messages per conversation, in enqueue order: finds the next head.
CREATE INDEX outbox_conversation ON outbox (channel_id, external_conversation_id, id)
    WHERE state IN ('queued', 'sending');

-- Listing by state, newest first (ls --state, GET /v1/messages?state=).
CREATE INDEX outbox_state ON outbox (state, id);

-- Expired leases.
CREATE INDEX outbox_lease ON outbox (lease_expires_at_ms) WHERE state = 'sending';

-- A new row is the head of its conversation when no older unfinished message of
-- that conversation exists. Rows written by the library arrive with head already
-- computed; rows inserted through the SQL contract arrive with NULL.
CREATE TRIGGER outbox_head_on_insert AFTER INSERT ON outbox WHEN NEW.head IS NULL
BEGIN
    UPDATE outbox SET head = NOT EXISTS (
        SELECT 1 FROM outbox o
        WHERE o.channel_id = NEW.channel_id
          AND o.external_conversation_id = NEW.external_conversation_id
          AND o.state IN ('queued', 'sending') AND o.id < NEW.id)
    WHERE id = NEW.id;
END;

-- When a message leaves the unfinished states, the oldest unfinished message of its
-- conversation becomes the head (SPEC §3: n+1 waits for n).
CREATE TRIGGER outbox_head_promote AFTER UPDATE OF state ON outbox
WHEN OLD.state IN ('queued', 'sending') AND NEW.state NOT IN ('queued', 'sending')
BEGIN
    UPDATE outbox SET head = 1
    WHERE id = (SELECT id FROM outbox
                WHERE channel_id = NEW.channel_id
                  AND external_conversation_id = NEW.external_conversation_id
                  AND state IN ('queued', 'sending')
                ORDER BY id LIMIT 1)
      AND head IS NOT 1;
END;

-- A message that re-enters the queue (retry of a failed one) is a head only when its
-- conversation has no head already; otherwise it waits its turn.
CREATE TRIGGER outbox_head_requeue AFTER UPDATE OF state ON outbox
WHEN OLD.state NOT IN ('queued', 'sending') AND NEW.state IN ('queued', 'sending')
BEGIN
    UPDATE outbox SET head = NOT EXISTS (
        SELECT 1 FROM outbox o
        WHERE o.channel_id = NEW.channel_id
          AND o.external_conversation_id = NEW.external_conversation_id
          AND o.state IN ('queued', 'sending') AND o.head = 1 AND o.id <> NEW.id)
    WHERE id = NEW.id;
END;

-- Every state change is recorded, whoever makes it (library, CLI or plain SQL).
CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY,
    message_id  INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    at_ms       INTEGER NOT NULL,
    from_state  TEXT NOT NULL,
    to_state    TEXT NOT NULL,
    reason      TEXT NOT NULL
);
CREATE INDEX transitions_message ON transitions (message_id, id);
CREATE INDEX transitions_at ON transitions (at_ms);

CREATE TRIGGER outbox_record_transition AFTER UPDATE OF state ON outbox
WHEN OLD.state <> NEW.state
BEGIN
    INSERT INTO transitions (message_id, at_ms, from_state, to_state, reason)
    VALUES (NEW.id, NEW.state_at_ms, OLD.state, NEW.state, NEW.state_reason);
END;

-- One row per HTTP request made for a message.
CREATE TABLE attempts (
    id                INTEGER PRIMARY KEY,
    message_id        INTEGER NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    started_at_ms     INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    http_status       INTEGER,          -- NULL when no HTTP answer (transport error)
    outcome           TEXT NOT NULL,    -- accepted|fatal|auth|rate_limited|retry|transport
    error             TEXT,             -- transport error or short reason
    response_excerpt  TEXT              -- first bytes of the response body
);
CREATE INDEX attempts_message ON attempts (message_id, id);
CREATE INDEX attempts_started ON attempts (started_at_ms);
