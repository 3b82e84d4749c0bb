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
    -- Order within a conversation (outbox_order below): head marks the one message of the
    -- conversation that may be sent now, conv_seq its place in line (the id at insert, a
    -- new number when a message is queued again, which puts it at the end).
    head                     boolean NOT NULL DEFAULT false,
    conv_seq                 bigint NOT NULL DEFAULT 0,

    CONSTRAINT outbox_key UNIQUE (channel_id, external_message_id),
    -- A dot segment would be removed from the request path (RFC 3986 5.2.4), sending the
    -- message and its x-APIKey to another path of Partoo's host (SQLite's 0006).
    CONSTRAINT channel_id_not_dot_segment CHECK (channel_id NOT IN ('.', '..'))
);

ALTER SEQUENCE outbox_id_seq OWNED BY outbox.id;

-- The unfinished messages of a conversation in their order, and what may be claimed now.
CREATE INDEX outbox_conversation ON outbox (channel_id, external_conversation_id, conv_seq)
    WHERE state IN ('queued', 'sending');
CREATE INDEX outbox_claim ON outbox (tenant, priority DESC, next_attempt_at_ms, id)
    WHERE state = 'queued' AND head;
CREATE INDEX outbox_state ON outbox (state, id);

-- Order per conversation with many producers at once. An id taken from the sequence when
-- the row is built does not follow commit order: a producer that took id 10 may commit
-- after one that took id 11, and a sender that had already sent 11 would send 10 after
-- it. So the id is taken under a lock on the conversation, held until the transaction
-- ends: inserts into one conversation follow each other, and within a conversation id
-- order is commit order. Other conversations are not held up (a hash collision only
-- makes two conversations wait for each other). A producer that inserts into several
-- conversations in one transaction should do so in a consistent order, as with any lock.
--
-- The same lock guards `head`, the one message of a conversation that may be sent: set
-- at insert when nothing else of the conversation is unfinished, handed to the next in
-- line (lowest conv_seq) when the head finishes, and given to a message queued again only
-- when the conversation has nothing else unfinished (otherwise it joins the end of the
-- line). Without the lock, an insert could look while the head's finish is uncommitted,
-- and the finish pick its successor before the insert committed: no head, and the
-- conversation would wait for ever.
--
-- The functions run with the search_path of the migration (SET search_path FROM CURRENT),
-- so that a producer's own search_path neither breaks nor redirects them. The trigger
-- functions run as the outbox's owner (SECURITY DEFINER, safe with that fixed search_path):
-- a producer's role needs only USAGE on the schema and INSERT on outbox, not the right to
-- read the outbox or to draw from its sequence.
CREATE FUNCTION outbox_lock_conversation(p_channel text, p_conversation text)
RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT pg_advisory_xact_lock(hashtextextended(p_channel || chr(31) || p_conversation, 0))
$$;

CREATE FUNCTION outbox_unfinished_in(p_channel text, p_conversation text, p_except bigint)
RETURNS boolean LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM outbox o
                   WHERE o.channel_id = p_channel AND o.external_conversation_id = p_conversation
                     AND o.state IN ('queued', 'sending') AND o.id <> p_except)
$$;

CREATE FUNCTION outbox_order() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM outbox_lock_conversation(NEW.channel_id, NEW.external_conversation_id);
    NEW.id := nextval('outbox_id_seq');
    NEW.conv_seq := NEW.id;
    NEW.head := NEW.state IN ('queued', 'sending')
        AND NOT outbox_unfinished_in(NEW.channel_id, NEW.external_conversation_id, NEW.id);
    RETURN NEW;
END $$;

CREATE TRIGGER outbox_order BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_order();

-- A message leaving the line (accepted, failed, cancelled, ...) or joining it again.
CREATE FUNCTION outbox_line_change() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    was boolean := OLD.state IN ('queued', 'sending');
    is_now boolean := NEW.state IN ('queued', 'sending');
BEGIN
    IF was = is_now THEN
        RETURN NEW;
    END IF;
    PERFORM outbox_lock_conversation(NEW.channel_id, NEW.external_conversation_id);
    IF is_now THEN
        NEW.conv_seq := nextval('outbox_id_seq');
        NEW.head := NOT outbox_unfinished_in(NEW.channel_id, NEW.external_conversation_id,
                                             NEW.id);
    ELSE
        NEW.head := false;
    END IF;
    RETURN NEW;
END $$;

-- Only for a change in or out of the line: a claim (queued -> sending) does not call it.
CREATE TRIGGER outbox_line_change BEFORE UPDATE OF state ON outbox
    FOR EACH ROW WHEN ((OLD.state IN ('queued', 'sending'))
                       IS DISTINCT FROM (NEW.state IN ('queued', 'sending')))
    EXECUTE FUNCTION outbox_line_change();

-- The next in line (lowest conv_seq) of each given conversation becomes head, unless it
-- is already: what a head leaving the line, by a state change or a DELETE, hands over.
CREATE FUNCTION outbox_promote_heads(p_channels text[], p_conversations text[])
RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE outbox x SET head = true
    FROM (SELECT DISTINCT ON (o.channel_id, o.external_conversation_id) o.id
          FROM unnest(p_channels, p_conversations) AS c(channel_id, conversation)
          JOIN outbox o ON o.channel_id = c.channel_id
                       AND o.external_conversation_id = c.conversation
                       AND o.state IN ('queued', 'sending')
          ORDER BY o.channel_id, o.external_conversation_id, o.conv_seq) nx
    WHERE x.id = nx.id AND NOT x.head
$$;

-- Heads that left the line (accepted, failed, cancelled, ...): the next in each of their
-- conversations becomes head, under the locks outbox_line_change took. Once per statement
-- over its transition tables, so that a sender finishing 256 messages in one UPDATE pays
-- one set-based UPDATE here, not 256 (each row's own trigger measured 62 µs).
CREATE FUNCTION outbox_next_heads() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    channels text[];
    conversations text[];
BEGIN
    SELECT array_agg(c.channel_id), array_agg(c.external_conversation_id)
    INTO channels, conversations
    FROM (SELECT DISTINCT n.channel_id, n.external_conversation_id
          FROM left_old l JOIN left_new n ON n.id = l.id
          WHERE l.head AND l.state IN ('queued', 'sending')
            AND n.state NOT IN ('queued', 'sending')) c;
    -- The promotion's own UPDATE fires this again: with no head leaving, it must not run
    -- another (even one that changes no row), or it would recurse without end.
    IF channels IS NOT NULL THEN
        PERFORM outbox_promote_heads(channels, conversations);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_next_heads AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS left_old NEW TABLE AS left_new
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_next_heads();

-- A head deleted while still in line (a producer's DELETE, a purge of a cancelled line):
-- the next in its conversation becomes head, under the conversation's lock as for a finish.
CREATE FUNCTION outbox_lock_deleted_head() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM outbox_lock_conversation(OLD.channel_id, OLD.external_conversation_id);
    RETURN OLD;
END $$;

CREATE TRIGGER outbox_lock_deleted_head BEFORE DELETE ON outbox
    FOR EACH ROW WHEN (OLD.head AND OLD.state IN ('queued', 'sending'))
    EXECUTE FUNCTION outbox_lock_deleted_head();

CREATE FUNCTION outbox_next_heads_deleted() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM outbox_promote_heads(array_agg(g.channel_id), array_agg(g.external_conversation_id))
    FROM gone g WHERE g.head AND g.state IN ('queued', 'sending');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_next_heads_deleted AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_next_heads_deleted();

-- serve LISTENs on "<schema>.outbox": one notification per committing transaction that
-- inserted rows (PostgreSQL delivers them at COMMIT, never for a rolled-back one, and
-- folds identical ones of a transaction into one). Polling covers a missed one.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
