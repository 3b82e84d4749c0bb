-- 0002_webhooks_inbox: verified webhook events, delivery confirmation bookkeeping, and the
-- inbox of replies written by Partoo users.

-- Set when a message stayed unconfirmed after max_resends re-sends (SPEC §3).
ALTER TABLE outbox ADD COLUMN unconfirmed_at_ms INTEGER;
-- When an accepted message of a bidirectional channel is re-sent (or given up) if no
-- confirmation came; NULL when nothing is awaited (read-only channels, confirmed, ...).
ALTER TABLE outbox ADD COLUMN confirm_due_at_ms INTEGER;

-- Accepted messages waiting for their confirmation webhook, by due time.
CREATE INDEX outbox_confirm_due ON outbox (confirm_due_at_ms)
    WHERE state = 'accepted' AND confirm_due_at_ms IS NOT NULL;

-- Webhooks that carry no channel id are matched on the external id alone.
CREATE INDEX outbox_external_message_id ON outbox (external_message_id);

-- Every verified webhook, stored before it is answered 200, once per distinct raw body.
CREATE TABLE webhook_events (
    id                 INTEGER PRIMARY KEY,
    body_sha256        TEXT NOT NULL UNIQUE,   -- dedup key: byte-identical bodies (SPEC §10)
    received_at_ms     INTEGER NOT NULL,
    body               BLOB NOT NULL,          -- the exact bytes that were signed
    event_type         TEXT,                   -- filled when processed; NULL if unparsable
    partoo_message_id  TEXT,
    processed_at_ms    INTEGER,                -- NULL until reconciled
    outcome            TEXT                    -- confirmed|reply|echo|unmatched|ignored|unparsable
);
CREATE INDEX webhook_events_pending ON webhook_events (id) WHERE processed_at_ms IS NULL;

-- Replies from Partoo users, relayed to inbox_url or pulled with GET /v1/inbox.
CREATE TABLE inbox (
    id                        INTEGER PRIMARY KEY,
    partoo_message_id         TEXT NOT NULL UNIQUE,
    event_id                  INTEGER NOT NULL REFERENCES webhook_events (id),
    channel_id                TEXT NOT NULL,
    external_conversation_id  TEXT,
    partoo_conversation_id    TEXT,
    business_id               TEXT,
    sender_type               TEXT,
    sender_label              TEXT,
    content_type              TEXT,
    content                   TEXT,
    message_date              TEXT,             -- as Partoo wrote it
    received_at_ms            INTEGER NOT NULL,
    state                     TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'acked', 'failed')),
    attempts                  INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms        INTEGER NOT NULL DEFAULT 0,
    last_http_status          INTEGER,
    last_error                TEXT,
    delivered_at_ms           INTEGER,
    acked_at_ms               INTEGER
);
CREATE INDEX inbox_due ON inbox (next_attempt_at_ms, id) WHERE state = 'pending';
