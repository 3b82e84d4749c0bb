-- schema/schema.sql: the current schema of the partoo-outbox database, and the SQL contract.
--
-- This file is documentation and the reference for the drift test: applying every file of
-- migrations/ to an empty database must give exactly these tables, indexes and triggers
-- (tests/unit/test_migrate.c compares them). Change the schema with a new migration, then
-- update this file.
--
-- THE SQL CONTRACT (SPEC §1). A producer in any language may enqueue a message from its own
-- transaction with a plain INSERT; the defaults and constraints below make the row a valid
-- queued message, and `outbox serve` notices it within a second:
--
--   INSERT INTO outbox (channel_id, external_message_id, business_id, external_conversation_id,
--                       content, sender_type, consumer_name, consumer_image)
--   VALUES ('ch-1', 'msg-1001', 'biz-1', 'conv-42', 'Hello', 'Consumer', 'John Doe', NULL);
--
-- - (channel_id, external_message_id) is the key: a second plain INSERT of the same key fails
--   on the UNIQUE constraint; INSERT OR IGNORE makes the insert idempotent.
-- - sender_type must be 'User' or 'Consumer'; every required field must be non-empty text.
--   SQLite itself rejects other rows (CHECK and NOT NULL constraints).
-- - priority (optional, default 0) may be given as an extra column: higher is sent first.
-- - Do not write the bookkeeping columns (state and below); the service owns them.
--
-- Times are epoch milliseconds (columns ending in _at_ms). PRAGMA user_version holds the
-- schema version (the number of the last applied migration).

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
    tenant                   TEXT,     -- the tenant owning channel_id; NULL = default (0012)

    UNIQUE (channel_id, external_message_id),
    -- A dot segment would be removed from the request path (RFC 3986 5.2.4), sending the
    -- message and its x-APIKey to another path of Partoo's host (0006).
    CONSTRAINT channel_id_not_dot_segment CHECK (channel_id NOT IN ('.', '..'))
);

-- The claim index: due heads of conversations, by tenant (0012), then priority, then
-- business (round-robin), then due time. Only rows that can be claimed are in it, so it
-- stays small even with millions of delivered rows, and claiming is a range scan.
CREATE INDEX outbox_claim ON outbox (tenant, priority DESC, business_id, next_attempt_at_ms, id)
    WHERE state = 'queued' AND head = 1;

-- Listing by state, newest first (ls --state, GET /v1/messages?state=).
CREATE INDEX outbox_state ON outbox (state, id);

-- Expired leases.
CREATE INDEX outbox_lease ON outbox (lease_expires_at_ms) WHERE state = 'sending';

-- Every state change is recorded, whoever makes it (library, CLI or plain SQL).
-- (0009_lean_audit: no foreign key, so that purging a message keeps the events the audit chain
-- covers; AUTOINCREMENT, so that an id is never reused inside a sealed range.)
CREATE TABLE transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  INTEGER NOT NULL,
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
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id        INTEGER NOT NULL,
    started_at_ms     INTEGER NOT NULL,
    duration_ms       INTEGER NOT NULL,
    http_status       INTEGER,          -- NULL when no HTTP answer (transport error)
    outcome           TEXT NOT NULL,    -- accepted|fatal|auth|rate_limited|retry|transport
    error             TEXT,             -- transport error or short reason
    response_excerpt  TEXT              -- first bytes of the response body
);
CREATE INDEX attempts_message ON attempts (message_id, id);
CREATE INDEX attempts_started ON attempts (started_at_ms);

-- ---- added by 0002_webhooks_inbox ------------------------------------------------------
-- (outbox.unconfirmed_at_ms and confirm_due_at_ms are declared in the CREATE TABLE above.)

-- Accepted messages waiting for their confirmation webhook, by due time.
CREATE INDEX outbox_confirm_due ON outbox (confirm_due_at_ms)
    WHERE state = 'accepted' AND confirm_due_at_ms IS NOT NULL;

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
-- Retention keeps an event while an inbox row still needs it: a probe, not a scan (0004).
CREATE INDEX inbox_event ON inbox (event_id);

-- ---- added by 0003_audit_chain -------------------------------------------------------

-- Until 0009_lean_audit: one row per transition and per attempt, copied by trigger when they
-- were written (the triggers are gone; the rows stay, the start of the chain). It has no
-- foreign key: purging messages keeps their audit rows. `hash` chains each row to the previous one (lib/audit.c seals rows in id
-- order: hash = sha256(previous hash || '\n' || canonical row)); NULL until sealed.
CREATE TABLE audit_log (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused, even after a prune
    at_ms                INTEGER NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('transition', 'attempt')),
    channel_id           TEXT NOT NULL,
    external_message_id  TEXT NOT NULL,
    record               TEXT NOT NULL,   -- JSON object: what happened
    hash                 TEXT
);
CREATE INDEX audit_log_unsealed ON audit_log (id) WHERE hash IS NULL;
CREATE INDEX audit_log_at ON audit_log (at_ms);

-- When old audit rows are pruned, the hash of the last removed row is kept here so the
-- rest of the chain still verifies.
CREATE TABLE audit_checkpoints (
    id              INTEGER PRIMARY KEY,
    upto_id         INTEGER NOT NULL,     -- last audit_log id removed
    hash            TEXT NOT NULL,        -- its hash: the chain continues from it
    created_at_ms   INTEGER NOT NULL
);

-- What the running `outbox serve` reports about itself (pause reasons, circuit, rate),
-- refreshed every few seconds; `outbox status` reads it.
CREATE TABLE service_state (
    key            TEXT PRIMARY KEY,
    value          TEXT,
    updated_at_ms  INTEGER NOT NULL
);

-- ---- added by 0005_conversation_chain -------------------------------------------------
-- (outbox.prev_id is declared in the CREATE TABLE above.) Per-conversation order: each
-- unfinished message that waits points at the one it waits for (prev_id); conversations
-- remembers each conversation's last message. See the migration for the picture.

CREATE TABLE conversations (
    id                        INTEGER PRIMARY KEY,
    channel_id                TEXT NOT NULL,
    external_conversation_id  TEXT NOT NULL,
    tail_id                   INTEGER NOT NULL,   -- the last message appended (any state)
    UNIQUE (channel_id, external_conversation_id)
);

-- The successor of an unfinished message: keyed by recent ids, so inserts append.
CREATE INDEX outbox_next ON outbox (prev_id) WHERE state IN ('queued', 'sending');

-- Rows inserted through the SQL contract arrive with head NULL. The store appends them to
-- their conversations, in id order: every claim links some (lib/store.c, link_unlinked),
-- so they are sent within a second, and a library enqueue first links those of the
-- conversations it appends to, so a later message never overtakes them. Within a
-- conversation unlinked rows are always newer than linked ones. No insert trigger does
-- it: a trigger on outbox, even one whose WHEN is false, costs a bulk insert a quarter of
-- its speed (docs/benchmarks.md).
CREATE INDEX outbox_unlinked ON outbox (channel_id, external_conversation_id, id)
    WHERE head IS NULL;

-- A message leaves the unfinished states (SPEC §3: n+1 waits for n). If it was the head,
-- its successor becomes the head. If it left from the middle (cancelled, or confirmed
-- while still queued), it is unlinked: its successor now waits for its predecessor, and
-- if it was the tail, its predecessor is the tail again. Two triggers (0011), so that each
-- case runs only its own statements.
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

-- A message that re-enters the queue (retry of a failed one, re-send of an unconfirmed
-- one) goes to the back of its conversation: the head only when nothing else is unfinished.
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
    -- (an update, then an insert if there was none: no upsert, see 0011)
    UPDATE conversations SET tail_id = NEW.id
    WHERE channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    INSERT INTO conversations (channel_id, external_conversation_id, tail_id)
    SELECT NEW.channel_id, NEW.external_conversation_id, NEW.id
    WHERE NOT EXISTS (SELECT 1 FROM conversations WHERE channel_id = NEW.channel_id
                      AND external_conversation_id = NEW.external_conversation_id);
END;

-- The keyed audit chain (0007): from which audit_log row on the chain is sealed with
-- HMAC-SHA256 under audit_key_file's key, and which key (lib/audit.h). No row: the whole
-- chain is plain SHA-256.
CREATE TABLE audit_chain_modes (
    id              INTEGER PRIMARY KEY,
    from_id         INTEGER NOT NULL,     -- first audit_log id sealed in this mode
    mode            TEXT NOT NULL CHECK (mode IN ('sha256', 'hmac-sha256')),
    key_id          TEXT,                 -- hmac: identifies the key (never the key itself)
    mac             TEXT,                 -- hmac: HMAC of this record, so from_id cannot move
    created_at_ms   INTEGER NOT NULL
);

-- ---- added by 0008_dashboard ------------------------------------------------------
-- A pause holds every queued message of its scope: the claim skips them, so they use no
-- attempt. Rows are kept after a resume (resumed_at_ms set) because the time a message spent
-- held does not count toward max_age: the worker subtracts the overlap of these intervals.
-- scope is 'channel' today; 'tenant' is the other scope SPEC §11 will add.
CREATE TABLE pauses (
    id              INTEGER PRIMARY KEY,
    scope           TEXT NOT NULL CHECK (scope IN ('channel', 'tenant')),
    key             TEXT NOT NULL,
    reason          TEXT NOT NULL,
    by              TEXT NOT NULL,        -- cli, api or dashboard
    paused_at_ms    INTEGER NOT NULL,
    resumed_at_ms   INTEGER                -- NULL while the pause holds
);
-- At most one open pause per scope and key; the claim looks it up by this index.
CREATE UNIQUE INDEX pauses_open ON pauses (scope, key) WHERE resumed_at_ms IS NULL;
CREATE INDEX pauses_key ON pauses (scope, key, paused_at_ms);

-- Counts per minute of attempts sent and of messages accepted, failed and confirmed, kept as
-- rows are written (no COUNT over the outbox for a chart). Minutes older than 7 days are
-- dropped whenever a new minute row appears (0011: not on every attempt), so the table stays
-- under 4 * 10080 rows.
CREATE TABLE stats_minute (
    minute  INTEGER NOT NULL,             -- at_ms / 60000
    kind    TEXT NOT NULL CHECK (kind IN ('sent', 'accepted', 'failed', 'confirmed')),
    n       INTEGER,                      -- never NULL; not declared so (0011, lib/store.c)
    PRIMARY KEY (minute, kind)
) WITHOUT ROWID;

CREATE TRIGGER stats_attempt AFTER INSERT ON attempts
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.started_at_ms / 60000, 'sent', 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
END;

-- An upsert that updates an existing row fires no INSERT trigger: this runs once per new row.
CREATE TRIGGER stats_minute_prune AFTER INSERT ON stats_minute
BEGIN
    DELETE FROM stats_minute WHERE minute < NEW.minute - 10080;
END;

CREATE TRIGGER stats_transition AFTER INSERT ON transitions
WHEN NEW.to_state IN ('accepted', 'failed', 'confirmed')
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.at_ms / 60000, NEW.to_state, 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
END;


-- Messages per channel and state for the dashboard's overview (GET /v1/stats/overview):
-- kept as rows change, so a refresh reads a few rows instead of counting the outbox. A row
-- is counted once it is linked into its conversation (head set): the store adds a batch of
-- library inserts in one statement per channel (lib/dash.c, obx_dash_count_inserted: an
-- insert trigger would cost a bulk enqueue a third of its speed), the trigger below adds
-- rows written through plain SQL when the store links them.
CREATE TABLE state_counts (
    channel_id  TEXT NOT NULL,
    state       TEXT NOT NULL,
    n           INTEGER,              -- never NULL; not declared so (0011, lib/store.c)
    PRIMARY KEY (channel_id, state)
) WITHOUT ROWID;

CREATE TRIGGER counts_link AFTER UPDATE OF head ON outbox
WHEN OLD.head IS NULL AND NEW.head IS NOT NULL
BEGIN
    INSERT INTO state_counts (channel_id, state, n) VALUES (NEW.channel_id, NEW.state, 1)
    ON CONFLICT (channel_id, state) DO UPDATE SET n = n + 1;
END;

-- A state change moves one count from the old state to the new one, in one statement (0011).
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

-- ---- added by 0009_lean_audit ---------------------------------------------------------
-- The audit chain runs over transitions and attempts themselves (lib/audit.h): each fact is
-- written once. audit_messages: once per message, its identity and the SHA-256 of what was
-- sent; audit_seals: the chain's hash after each sealed range of events.
CREATE TABLE audit_messages (
    message_id           INTEGER PRIMARY KEY,
    channel_id           TEXT NOT NULL,
    external_message_id  TEXT NOT NULL,
    sent_sha256          BLOB
);
CREATE INDEX audit_messages_unhashed ON audit_messages (message_id) WHERE sent_sha256 IS NULL;

-- Only when the identity is missing (0011: a primary-key probe, rather than a lookup and an
-- INSERT OR IGNORE on every event; no OR IGNORE, see lib/store.c, "statement journals").
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

CREATE TABLE audit_seals (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    transitions_upto  INTEGER NOT NULL,
    attempts_upto     INTEGER NOT NULL,
    events            INTEGER NOT NULL,   -- events covered
    at_ms             INTEGER NOT NULL,   -- latest event time covered (prune by age)
    hash              TEXT NOT NULL       -- the chain's hash after the last event covered
    -- added by 0010 (ALTER TABLE ... ADD COLUMN, hence the comma): the actions covered
    , actions_upto INTEGER NOT NULL DEFAULT 0);

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

-- ---- added by 0010_audit_actions ------------------------------------------------------
-- Pauses and resumes, one row each, appended in the pause's or resume's transaction: the
-- audit chain seals them after each seal's transitions and attempts (lib/audit.h).
CREATE TABLE actions (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('pause', 'resume')),
    scope   TEXT NOT NULL,
    key     TEXT NOT NULL,
    reason  TEXT NOT NULL,                -- the pause's reason ("" for a resume)
    by      TEXT NOT NULL                 -- cli, api or dashboard
);

-- ---- added by 0012_tenants ------------------------------------------------------------
-- A tenant is one Partoo organisation (SPEC §11); written by lib/store_tenant.c only. The key
-- column holds the key, or (key_sealed = 1) its AES-256-GCM sealing under secrets_key_file.
CREATE TABLE tenants (
    name                TEXT PRIMARY KEY
        CHECK (typeof(name) = 'text' AND length(name) BETWEEN 1 AND 64
               AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    api_key             BLOB NOT NULL,
    key_sealed          INTEGER NOT NULL CHECK (key_sealed IN (0, 1)),
    key_fingerprint     TEXT NOT NULL,        -- first 12 hex digits of SHA-256(key)
    rate_limit_per_min  REAL,                 -- NULL: the configured rate_limit
    rate_burst          INTEGER,              -- NULL: the configured rate_burst
    partoo_base_url     TEXT,                 -- NULL: the configured partoo_base_url
    created_at_ms       INTEGER NOT NULL,
    updated_at_ms       INTEGER NOT NULL
) WITHOUT ROWID;

-- A channel belongs to one tenant: the primary key is the channel.
CREATE TABLE tenant_channels (
    channel_id  TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    readonly    INTEGER NOT NULL DEFAULT 0 CHECK (readonly IN (0, 1))
) WITHOUT ROWID;
CREATE INDEX tenant_channels_tenant ON tenant_channels (tenant, channel_id);

CREATE TABLE tenant_registry (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    version  INTEGER NOT NULL
);
INSERT INTO tenant_registry (id, version) VALUES (1, 0);

-- (outbox.tenant and the claim index's leading tenant column are declared above.) The
-- triggers keep outbox.tenant true for every row of a channel that changes hands.
CREATE TRIGGER tenant_channel_claimed AFTER INSERT ON tenant_channels
BEGIN
    UPDATE outbox SET tenant = NEW.tenant WHERE channel_id = NEW.channel_id;
END;
CREATE TRIGGER tenant_channel_moved AFTER UPDATE OF tenant ON tenant_channels
BEGIN
    UPDATE outbox SET tenant = NEW.tenant WHERE channel_id = NEW.channel_id;
END;
CREATE TRIGGER tenant_channel_released AFTER DELETE ON tenant_channels
BEGIN
    UPDATE outbox SET tenant = NULL WHERE channel_id = OLD.channel_id;
END;
