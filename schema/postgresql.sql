-- schema/postgresql.sql: the PostgreSQL schema that migrations/postgresql/ produce, written
-- out whole (the counterpart of schema/schema.sql). The drift test (tests/integration/
-- test_pg_migrate.sh) loads it into one schema, runs `outbox migrate` into another and
-- compares pg_dump's view of both. Loaded with search_path set to the target schema.

-- Written by `outbox migrate` (lib/migrate_pg.c) before the first migration.
CREATE TABLE schema_version (
    id integer PRIMARY KEY CHECK (id = 1),
    version integer NOT NULL
);

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
-- What serve re-sends for lack of a confirmation (0008).
CREATE INDEX outbox_confirm_due ON outbox (confirm_due_at_ms)
    WHERE state = 'accepted' AND confirm_due_at_ms IS NOT NULL;

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
-- (0013_planned_triggers: the row triggers hold their statements themselves, not calls to
-- SQL functions, which PostgreSQL before 18 plans again at every row.)
CREATE FUNCTION outbox_order() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    -- The conversation's lock: two producers inserting into one conversation take turns,
    -- so each sees the other's row when it decides which is head.
    PERFORM pg_advisory_xact_lock(
        hashtextextended(NEW.channel_id || chr(31) || NEW.external_conversation_id, 0));
    NEW.id := nextval('outbox_id_seq');
    NEW.conv_seq := NEW.id;
    NEW.head := NEW.state IN ('queued', 'sending')
        AND NOT EXISTS (SELECT 1 FROM outbox o
                        WHERE o.channel_id = NEW.channel_id
                          AND o.external_conversation_id = NEW.external_conversation_id
                          AND o.state IN ('queued', 'sending') AND o.id <> NEW.id);
    NEW.tenant := (SELECT c.tenant FROM tenant_channels c WHERE c.channel_id = NEW.channel_id);
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
    PERFORM pg_advisory_xact_lock(
        hashtextextended(NEW.channel_id || chr(31) || NEW.external_conversation_id, 0));
    IF is_now THEN
        NEW.conv_seq := nextval('outbox_id_seq');
        NEW.head := NOT EXISTS (SELECT 1 FROM outbox o
                                WHERE o.channel_id = NEW.channel_id
                                  AND o.external_conversation_id = NEW.external_conversation_id
                                  AND o.state IN ('queued', 'sending') AND o.id <> NEW.id);
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
RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE outbox x SET head = true
    FROM (SELECT DISTINCT ON (o.channel_id, o.external_conversation_id) o.id
          FROM unnest(p_channels, p_conversations) AS c(channel_id, conversation)
          JOIN outbox o ON o.channel_id = c.channel_id
                       AND o.external_conversation_id = c.conversation
                       AND o.state IN ('queued', 'sending')
          ORDER BY o.channel_id, o.external_conversation_id, o.conv_seq) nx
    WHERE x.id = nx.id AND NOT x.head;
END $$;

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
    PERFORM pg_advisory_xact_lock(
        hashtextextended(OLD.channel_id || chr(31) || OLD.external_conversation_id, 0));
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

-- 0002_nodes: several serve processes (migrations/postgresql/0002_nodes.sql explains).

CREATE TABLE nodes (
    name            text PRIMARY KEY CHECK (octet_length(name) BETWEEN 1 AND 255),
    started_at_ms   bigint NOT NULL,
    beat_at_ms      bigint NOT NULL,
    expires_at_ms   bigint NOT NULL      -- the last beat + node_lease: dead after this
);

-- One row per tenant a node has ever held ("default" is the configured key). The epoch
-- goes up by one each time the tenant changes hands, never down: a write made under an
-- older epoch is refused by lease_check.
CREATE TABLE tenant_leases (
    tenant          text PRIMARY KEY CHECK (octet_length(tenant) BETWEEN 1 AND 64),
    node            text,                -- NULL: free
    epoch           bigint NOT NULL DEFAULT 0,
    expires_at_ms   bigint NOT NULL DEFAULT 0
);

-- Pacing that must survive a takeover, so the next holder neither bursts past Partoo's
-- limit nor sends into a pause: Retry-After and auth pauses, the circuit, and when the
-- tenant last sent (its bucket starts empty on the new node from then).
CREATE TABLE tenant_pacing (
    tenant              text PRIMARY KEY CHECK (octet_length(tenant) BETWEEN 1 AND 64),
    paused_until_ms     bigint NOT NULL DEFAULT 0,   -- 429 Retry-After
    auth_paused         boolean NOT NULL DEFAULT false,
    circuit_open_until_ms bigint NOT NULL DEFAULT 0,
    last_sent_at_ms     bigint NOT NULL DEFAULT 0,
    updated_at_ms       bigint NOT NULL DEFAULT 0
);

CREATE FUNCTION outbox_now_ms() RETURNS bigint LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
    SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint
$$;

-- A node's heartbeat: registers it, keeps it alive until now + lease_ms, renews every
-- lease it still holds (locked in tenant order, as claims and finishes lock them: 0007),
-- and returns them (tenant, epoch). A node that finds a tenant gone
-- from the result has lost it and must stop sending for it at once.
CREATE FUNCTION node_beat(p_node text, p_lease_ms bigint, p_now bigint DEFAULT NULL)
RETURNS TABLE (tenant text, epoch bigint) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_ms bigint := coalesce(p_now, outbox_now_ms());
BEGIN
    INSERT INTO nodes AS n (name, started_at_ms, beat_at_ms, expires_at_ms)
    VALUES (p_node, now_ms, now_ms, now_ms + p_lease_ms)
    ON CONFLICT (name) DO UPDATE
        SET beat_at_ms = excluded.beat_at_ms, expires_at_ms = excluded.expires_at_ms;
    -- Nodes dead for a day are forgotten (status lists the live ones anyway).
    DELETE FROM nodes AS n WHERE n.expires_at_ms < now_ms - 86400000;
    RETURN QUERY
        WITH mine AS (SELECT x.tenant FROM tenant_leases x
                      WHERE x.node = p_node AND x.expires_at_ms > now_ms
                      ORDER BY x.tenant FOR UPDATE)
        UPDATE tenant_leases AS l SET expires_at_ms = now_ms + p_lease_ms
        FROM mine WHERE l.tenant = mine.tenant
        RETURNING l.tenant, l.epoch;
END $$;

-- Spreads p_tenants over the live nodes: this node takes free or expired tenants until it
-- holds its fair share (ceil(tenants / live nodes)), and gives back what it holds beyond
-- it, so a node that joins gets work and the tenants of a dead node move once its lease
-- ran out. Every node calls it after each beat; SKIP LOCKED lets two of them take
-- different tenants at the same time. Returns what this node holds afterwards.
CREATE FUNCTION lease_rebalance(p_node text, p_tenants text[], p_lease_ms bigint,
                                p_now bigint DEFAULT NULL)
RETURNS TABLE (tenant text, epoch bigint) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_ms bigint := coalesce(p_now, outbox_now_ms());
    live int;
    share int;
    held int;
BEGIN
    INSERT INTO tenant_leases (tenant) SELECT DISTINCT t FROM unnest(p_tenants) AS t
    ON CONFLICT DO NOTHING;
    SELECT count(*) INTO live FROM nodes n WHERE n.expires_at_ms > now_ms OR n.name = p_node;
    share := ceil(cardinality(p_tenants)::numeric / greatest(live, 1));
    SELECT count(*) INTO held FROM tenant_leases l
        WHERE l.node = p_node AND l.expires_at_ms > now_ms AND l.tenant = ANY (p_tenants);
    IF held > share THEN
        -- The last ones are given back (takers take from the first), locked in tenant order.
        UPDATE tenant_leases AS l SET node = NULL, expires_at_ms = 0
        FROM (SELECT y.tenant FROM tenant_leases y
              WHERE y.tenant IN (SELECT x.tenant FROM tenant_leases x
                                 WHERE x.node = p_node AND x.expires_at_ms > now_ms
                                 ORDER BY x.tenant DESC LIMIT held - share)
              ORDER BY y.tenant FOR UPDATE) AS given
        WHERE l.tenant = given.tenant;
    ELSIF held < share THEN
        UPDATE tenant_leases AS l
        SET node = p_node, epoch = l.epoch + 1, expires_at_ms = now_ms + p_lease_ms
        WHERE l.tenant IN (SELECT x.tenant FROM tenant_leases x
                           WHERE x.tenant = ANY (p_tenants)
                             AND (x.node IS NULL OR x.expires_at_ms <= now_ms)
                           ORDER BY x.tenant LIMIT share - held
                           FOR UPDATE SKIP LOCKED);
    END IF;
    -- A tenant removed from the registry is let go.
    UPDATE tenant_leases AS l SET node = NULL, expires_at_ms = 0
    FROM (SELECT x.tenant FROM tenant_leases x
          WHERE x.node = p_node AND NOT (x.tenant = ANY (p_tenants))
          ORDER BY x.tenant FOR UPDATE) AS gone
    WHERE l.tenant = gone.tenant;
    RETURN QUERY SELECT l.tenant, l.epoch FROM tenant_leases l
        WHERE l.node = p_node AND l.expires_at_ms > now_ms ORDER BY l.tenant;
END $$;

-- Fencing: called first in every transaction a sender commits for a tenant. It locks the
-- lease row (FOR SHARE) until that transaction ends, so a takeover, which updates the row,
-- waits for the write to commit and then sees it; and it raises, rolling the transaction
-- back, unless p_node still holds the lease under p_epoch and it has not expired. A node
-- that was paused past its lease (SIGSTOP, a long GC, a partition) records nothing more.
CREATE FUNCTION lease_check(p_tenant text, p_node text, p_epoch bigint,
                            p_now bigint DEFAULT NULL)
RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    now_ms bigint := coalesce(p_now, outbox_now_ms());
    l tenant_leases%ROWTYPE;
BEGIN
    SELECT * INTO l FROM tenant_leases x WHERE x.tenant = p_tenant FOR SHARE;
    IF NOT FOUND OR l.node IS DISTINCT FROM p_node OR l.epoch <> p_epoch
       OR l.expires_at_ms <= now_ms THEN
        RAISE EXCEPTION 'lease lost: tenant % is not held by node % under epoch %',
            p_tenant, p_node, p_epoch
            USING ERRCODE = 'OBX01';
    END IF;
END $$;

-- A node that stops cleanly gives its tenants back at once instead of after node_lease.
CREATE FUNCTION node_leave(p_node text) RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    UPDATE tenant_leases SET node = NULL, expires_at_ms = 0 WHERE node = p_node;
    DELETE FROM nodes WHERE name = p_node;
$$;

-- 0003_history: transitions and attempts (migrations/postgresql/0003_history.sql explains).

CREATE TABLE transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  bigint NOT NULL,
    at_ms       bigint NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    reason      text NOT NULL,
    xact        xid8 NOT NULL DEFAULT pg_current_xact_id()  -- 0009: the transaction (audit)
);
CREATE INDEX transitions_message ON transitions (message_id, id);
CREATE INDEX transitions_at ON transitions (at_ms);

CREATE TABLE attempts (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id        bigint NOT NULL,
    started_at_ms     bigint NOT NULL,
    duration_ms       bigint NOT NULL,
    http_status       integer,          -- NULL when no HTTP answer (transport error)
    outcome           text NOT NULL,    -- accepted|fatal|auth|rate_limited|retry|transport
    error             text,
    response_excerpt  text,
    lease_token       bigint,           -- 0004: the claim it was made under
    xact              xid8 NOT NULL DEFAULT pg_current_xact_id()  -- 0009 (audit)
);
CREATE INDEX attempts_message ON attempts (message_id, id);
CREATE INDEX attempts_started ON attempts (started_at_ms);
-- 0004_attempt_once: written once, even when an outcome is written again after a lost reply
CREATE UNIQUE INDEX attempts_once ON attempts (message_id, lease_token);
CREATE INDEX transitions_xact ON transitions (xact);
CREATE INDEX attempts_xact ON attempts (xact);

-- Once per statement over its transition tables: a claim of 256 messages in one UPDATE
-- records its 256 transitions in one INSERT.
-- (0011_dashboard: it also records the counts and the minute's outcomes it moves.)
CREATE FUNCTION outbox_record_transitions() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    WITH ch AS MATERIALIZED (
        SELECT n.id, n.channel_id, o.state AS from_state, n.state AS to_state,
               n.state_at_ms, n.state_reason
        FROM changed_old o JOIN changed_new n ON n.id = o.id
        WHERE o.state <> n.state),
    t AS (INSERT INTO transitions (message_id, at_ms, from_state, to_state, reason)
          SELECT id, state_at_ms, from_state, to_state, state_reason FROM ch ORDER BY id),
    c AS (INSERT INTO count_deltas (channel_id, state, d)
          SELECT channel_id, state, sum(d) FROM (
              SELECT channel_id, from_state AS state, -1 AS d FROM ch
              UNION ALL SELECT channel_id, to_state, 1 FROM ch) x
          GROUP BY channel_id, state HAVING sum(d) <> 0)
    INSERT INTO stats_deltas (minute, kind, d)
    SELECT state_at_ms / 60000, to_state, count(*) FROM ch
    WHERE to_state IN ('accepted', 'failed', 'confirmed') GROUP BY 1, 2;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_record_transitions AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_record_transitions();

-- 0005_tenants: the tenant registry (migrations/postgresql/0005_tenants.sql explains).

CREATE TABLE tenants (
    name                text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    api_key             bytea NOT NULL,
    key_sealed          boolean NOT NULL,
    key_fingerprint     text NOT NULL,
    rate_limit_per_min  double precision,  -- NULL: the configured rate_limit
    rate_burst          bigint,            -- NULL: the configured rate_burst
    partoo_base_url     text,              -- NULL: the configured partoo_base_url
    created_at_ms       bigint NOT NULL,
    updated_at_ms       bigint NOT NULL
);

CREATE TABLE tenant_channels (
    channel_id  text PRIMARY KEY,
    tenant      text NOT NULL,
    readonly    boolean NOT NULL DEFAULT false
);
CREATE INDEX tenant_channels_tenant ON tenant_channels (tenant, channel_id);

CREATE TABLE tenant_registry (
    id       integer PRIMARY KEY CHECK (id = 1),
    version  bigint NOT NULL
);
INSERT INTO tenant_registry (id, version) VALUES (1, 0);

CREATE FUNCTION tenant_channel_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE outbox SET tenant = NULL WHERE channel_id = OLD.channel_id;
    ELSE
        UPDATE outbox SET tenant = NEW.tenant
        WHERE channel_id = NEW.channel_id AND tenant IS DISTINCT FROM NEW.tenant;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tenant_channel_changed AFTER INSERT OR DELETE OR UPDATE OF tenant
    ON tenant_channels FOR EACH ROW EXECUTE FUNCTION tenant_channel_changed();

-- 0006_webhooks: Partoo's webhooks and the replies (migrations/postgresql/0006_webhooks.sql explains).

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

-- 0009_audit: the audit chain (migrations/postgresql/0009_audit.sql explains).

-- Pauses and resumes (SPEC §6), events of the chain like transitions and attempts.
CREATE TABLE actions (
    id      bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at_ms   bigint NOT NULL,
    action  text NOT NULL CHECK (action IN ('pause', 'resume')),
    scope   text NOT NULL,
    key     text NOT NULL,
    reason  text NOT NULL,
    by      text NOT NULL,
    xact    xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX actions_xact ON actions (xact);

-- Each message's identity, and the SHA-256 of what was sent (audit.h, "sent_sha256"),
-- written by the sealer before it seals the message's first event, so that the chain still
-- verifies once the message itself is deleted.
CREATE TABLE audit_messages (
    message_id           bigint PRIMARY KEY,
    channel_id           text NOT NULL,
    external_message_id  text NOT NULL,
    sent_sha256          bytea
);
CREATE INDEX audit_messages_unhashed ON audit_messages (message_id) WHERE sent_sha256 IS NULL;

-- A message deleted before the sealer saw it keeps its identity for its events.
CREATE FUNCTION audit_keep_identity() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO audit_messages (message_id, channel_id, external_message_id)
    SELECT g.id, g.channel_id, g.external_message_id FROM gone g
    WHERE EXISTS (SELECT 1 FROM transitions t WHERE t.message_id = g.id)
       OR EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = g.id)
    ON CONFLICT (message_id) DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER audit_keep_identity AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION audit_keep_identity();

-- The chain's rows (audit.h): the legacy rows a SQLite outbox may bring, the seals, the
-- checkpoints a prune leaves, and the keyed segments.
CREATE TABLE audit_log (
    id                   bigint PRIMARY KEY,
    at_ms                bigint NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('transition', 'attempt')),
    channel_id           text NOT NULL,
    external_message_id  text NOT NULL,
    record               text NOT NULL,
    hash                 text
);

CREATE TABLE audit_seals (
    id                bigint PRIMARY KEY,  -- the previous seal's id + 1: two sealers collide
    transitions_upto  bigint NOT NULL,
    attempts_upto     bigint NOT NULL,
    actions_upto      bigint NOT NULL,
    xact_upto         xid8 NOT NULL,       -- '0': an id-range seal
    events            bigint NOT NULL,
    at_ms             bigint NOT NULL,
    hash              text NOT NULL
);
-- The base row: the chain starts from the genesis value (its hash is empty).
INSERT INTO audit_seals VALUES (0, 0, 0, 0, '0', 0, 0, '');

CREATE TABLE audit_checkpoints (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    upto_id         bigint NOT NULL,
    hash            text NOT NULL,
    created_at_ms   bigint NOT NULL
);

CREATE TABLE audit_chain_modes (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    from_id         bigint NOT NULL,
    mode            text NOT NULL CHECK (mode IN ('sha256', 'hmac-sha256')),
    key_id          text,
    mac             text,
    created_at_ms   bigint NOT NULL
);

-- 0010_pauses: channel pauses (migrations/postgresql/0010_pauses.sql explains).

CREATE TABLE pauses (
    id              bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    scope           text NOT NULL CHECK (scope IN ('channel', 'tenant')),
    key             text NOT NULL,
    reason          text NOT NULL,
    by              text NOT NULL,        -- cli, api or dashboard
    paused_at_ms    bigint NOT NULL,
    resumed_at_ms   bigint                -- NULL while the pause holds
);
-- At most one open pause per scope and key; the claim looks it up by this index.
CREATE UNIQUE INDEX pauses_open ON pauses (scope, key) WHERE resumed_at_ms IS NULL;
-- A claimed message's time held: every pause of its channel since it was created.
CREATE INDEX pauses_key ON pauses (scope, key, paused_at_ms);

-- 0012_tenant_pauses: a tenant's pause says so ("pause-tenant <name>").
CREATE FUNCTION pause_notify() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- A resume is like an insert: messages may be due.
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox',
                      CASE WHEN TG_OP <> 'INSERT' THEN ''
                           WHEN NEW.scope = 'tenant' THEN 'pause-tenant ' || NEW.key
                           ELSE 'pause ' || NEW.key END);
    RETURN NULL;
END $$;

CREATE TRIGGER pause_notify AFTER INSERT OR UPDATE OF resumed_at_ms ON pauses
    FOR EACH ROW EXECUTE FUNCTION pause_notify();

-- 0011_dashboard: the dashboard's counts (migrations/postgresql/0011_dashboard.sql explains).

CREATE TABLE state_counts (
    channel_id  text NOT NULL,
    state       text NOT NULL,
    n           bigint NOT NULL,
    PRIMARY KEY (channel_id, state)
);
CREATE TABLE count_deltas (
    channel_id  text NOT NULL,
    state       text NOT NULL,
    d           bigint NOT NULL
);
CREATE TABLE stats_minute (
    minute  bigint NOT NULL,              -- at_ms / 60000
    kind    text NOT NULL CHECK (kind IN ('sent', 'accepted', 'failed', 'confirmed')),
    n       bigint NOT NULL,
    PRIMARY KEY (minute, kind)
);
CREATE TABLE stats_deltas (
    minute  bigint NOT NULL,
    kind    text NOT NULL,
    d       bigint NOT NULL
);

CREATE FUNCTION outbox_count_inserted() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO count_deltas (channel_id, state, d)
    SELECT channel_id, state, count(*) FROM added GROUP BY channel_id, state;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_count_inserted AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_inserted();

CREATE FUNCTION outbox_count_deleted() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO count_deltas (channel_id, state, d)
    SELECT channel_id, state, -count(*) FROM gone GROUP BY channel_id, state;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_count_deleted AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_count_deleted();

CREATE FUNCTION attempts_count_sent() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO stats_deltas (minute, kind, d)
    SELECT started_at_ms / 60000, 'sent', count(*) FROM added GROUP BY 1;
    RETURN NULL;
END $$;

CREATE TRIGGER attempts_count_sent AFTER INSERT ON attempts
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION attempts_count_sent();

-- Folds the deltas into the counts (serve, once a second, on every node; two at once fold
-- each delta once: the second DELETE finds the rows the first took gone) and forgets
-- minutes older than 7 days.
CREATE FUNCTION dashboard_compact() RETURNS void LANGUAGE sql
SET search_path FROM CURRENT AS $$
    WITH moved AS (DELETE FROM count_deltas RETURNING channel_id, state, d)
    INSERT INTO state_counts AS s (channel_id, state, n)
    SELECT channel_id, state, sum(d) FROM moved GROUP BY channel_id, state
    ORDER BY channel_id, state
    ON CONFLICT (channel_id, state) DO UPDATE SET n = s.n + excluded.n;
    WITH moved AS (DELETE FROM stats_deltas RETURNING minute, kind, d)
    INSERT INTO stats_minute AS s (minute, kind, n)
    SELECT minute, kind, sum(d) FROM moved GROUP BY minute, kind ORDER BY minute, kind
    ON CONFLICT (minute, kind) DO UPDATE SET n = s.n + excluded.n;
    DELETE FROM stats_minute WHERE minute < outbox_now_ms() / 60000 - 10080;
$$;
