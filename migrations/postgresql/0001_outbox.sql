-- 0001_outbox (PostgreSQL): the outbox table a producer inserts into inside its own
-- transaction (SPEC §12), with the same columns, bounds and states as SQLite's outbox.
-- Applied by `outbox migrate` with search_path set to db_schema (default "outbox"), so
-- nothing here names the schema. Released migrations are never edited (docs/schema.md).

CREATE SEQUENCE outbox_id_seq AS bigint;

CREATE TABLE outbox (
    -- Set by outbox_order below, never by the producer (a value given is replaced).
    id                       bigint PRIMARY KEY,
    channel_id               text NOT NULL
        CHECK (octet_length(channel_id) BETWEEN 1 AND 255),
    external_message_id      text NOT NULL
        CHECK (octet_length(external_message_id) BETWEEN 1 AND 255),
    business_id              text NOT NULL
        CHECK (octet_length(business_id) BETWEEN 1 AND 255),
    external_conversation_id text NOT NULL
        CHECK (octet_length(external_conversation_id) BETWEEN 1 AND 255),
    content                  text NOT NULL
        CHECK (octet_length(content) BETWEEN 1 AND 1048576),
    sender_type              text NOT NULL CHECK (sender_type IN ('User', 'Consumer')),
    consumer_name            text CHECK (octet_length(consumer_name) <= 255),
    consumer_image           text CHECK (octet_length(consumer_image) <= 2048),
    priority                 integer NOT NULL DEFAULT 0,

    state                    text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sending', 'accepted', 'confirmed', 'failed', 'cancelled')),
    state_reason             text NOT NULL DEFAULT 'enqueued',
    state_at_ms              bigint NOT NULL
        DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    attempts                 integer NOT NULL DEFAULT 0,
    counted_attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at_ms       bigint NOT NULL DEFAULT 0,
    lease_token              bigint,
    lease_expires_at_ms      bigint,
    created_at_ms            bigint NOT NULL
        DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    accepted_at_ms           bigint,
    confirmed_at_ms          bigint,
    resends                  integer NOT NULL DEFAULT 0,
    last_http_status         integer,
    last_error               text,
    partoo_message_id        text,
    partoo_status            text,
    unconfirmed_at_ms        bigint,
    confirm_due_at_ms        bigint,
    tenant                   text,

    CONSTRAINT outbox_key UNIQUE (channel_id, external_message_id),
    -- A dot segment would be removed from the request path (RFC 3986 5.2.4), sending the
    -- message and its x-APIKey to another path of Partoo's host (SQLite's 0006).
    CONSTRAINT channel_id_not_dot_segment CHECK (channel_id NOT IN ('.', '..'))
);

ALTER SEQUENCE outbox_id_seq OWNED BY outbox.id;

-- Sending order: the oldest unfinished message of a conversation goes first.
CREATE INDEX outbox_conversation ON outbox (channel_id, external_conversation_id, id)
    WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_state ON outbox (state, id);

-- Order per conversation with many producers at once. An id taken from the sequence when
-- the row is built does not follow commit order: a producer that took id 10 may commit
-- after one that took id 11, and a sender that had already sent 11 would send 10 after
-- it. So the id is taken under a lock on the conversation, held until the transaction
-- ends: inserts into one conversation follow each other, and within a conversation id
-- order is commit order. Other conversations are not held up (a hash collision only
-- makes two conversations wait for each other). A producer that inserts into several
-- conversations in one transaction should do so in a consistent order, as with any lock.
CREATE FUNCTION outbox_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(
        hashtextextended(NEW.channel_id || chr(31) || NEW.external_conversation_id, 0));
    NEW.id := nextval(format('%I.outbox_id_seq', TG_TABLE_SCHEMA)::regclass);
    RETURN NEW;
END $$;

CREATE TRIGGER outbox_order BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_order();

-- serve LISTENs on "<schema>.outbox": one notification per committing transaction that
-- inserted rows (PostgreSQL delivers them at COMMIT, never for a rolled-back one, and
-- folds identical ones of a transaction into one). Polling covers a missed one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
