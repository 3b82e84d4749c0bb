-- 0006_webhooks (PostgreSQL): Partoo's webhooks, as on SQLite (0002_webhooks_inbox, 0004):
-- every verified event stored once (the SHA-256 of its exact bytes is the replay guard)
-- before serve answers 200, then interpreted: a message_created for one of ours confirms
-- it, a reply written in Partoo goes to the inbox for the producer. Written by
-- lib/store_pg_inbox.c only.

CREATE TABLE webhook_events (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body_sha256        text NOT NULL UNIQUE,   -- dedup key: byte-identical bodies (SPEC §10)
    received_at_ms     bigint NOT NULL,
    body               bytea NOT NULL,         -- the exact bytes that were signed
    event_type         text,                   -- filled when interpreted; NULL if unparsable
    partoo_message_id  text,
    processed_at_ms    bigint,                 -- NULL until interpreted
    outcome            text                    -- confirmed|reply|echo|unmatched|ignored|unparsable
);
CREATE INDEX webhook_events_pending ON webhook_events (id) WHERE processed_at_ms IS NULL;

-- Replies from Partoo users, for the producer (the relay to inbox_url is SQLite's so far).
CREATE TABLE inbox (
    id                        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partoo_message_id         text NOT NULL UNIQUE,
    event_id                  bigint NOT NULL REFERENCES webhook_events (id),
    channel_id                text NOT NULL,
    external_conversation_id  text,
    partoo_conversation_id    text,
    business_id               text,
    sender_type               text,
    sender_label              text,
    content_type              text,
    content                   text,
    message_date              text,             -- as Partoo wrote it
    received_at_ms            bigint NOT NULL,
    state                     text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'acked', 'failed')),
    attempts                  integer NOT NULL DEFAULT 0,
    next_attempt_at_ms        bigint NOT NULL DEFAULT 0,
    last_http_status          integer,
    last_error                text,
    delivered_at_ms           bigint,
    acked_at_ms               bigint
);
CREATE INDEX inbox_event ON inbox (event_id);
