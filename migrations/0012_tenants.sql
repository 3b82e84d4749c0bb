-- 0012_tenants: many Partoo organisations in one service (SPEC §11).
--
-- A tenant is one Partoo organisation: its API key, its pace and the channels it owns. The
-- registry is two tables written by lib/store_tenant.c only, changed while serve runs: serve
-- notices a change by the version row below, which every change bumps in its own transaction.
--
-- The key column holds the key as given, or (key_sealed = 1) its AES-256-GCM sealing under
-- secrets_key_file with the tenant's name as associated data (lib/secretbox.h). Nothing reads
-- it but serve's delivery; every view shows key_fingerprint instead.
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

-- Each message carries the tenant that owns its channel (NULL: no tenant, so the implicit
-- tenant `default` sends it, if a default key is configured). The claim selects a tenant's
-- due messages by this column, as the leading column of the claim index, so serving one of
-- thousands of tenants is one range of the index. The store writes it on enqueue and when it
-- links a row inserted through plain SQL; the triggers below keep it true when a channel
-- changes hands, for every row of the channel (any of them may be queued again by a retry).
ALTER TABLE outbox ADD COLUMN tenant TEXT;

DROP INDEX outbox_claim;
CREATE INDEX outbox_claim ON outbox (tenant, priority DESC, business_id, next_attempt_at_ms, id)
    WHERE state = 'queued' AND head = 1;

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
