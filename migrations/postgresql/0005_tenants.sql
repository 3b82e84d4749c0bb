-- 0005_tenants (PostgreSQL): the tenant registry (SPEC §11), as on SQLite (0012_tenants):
-- one Partoo organisation per tenant, its API key, its pace and the channels it owns. Written
-- by lib/store_pg_tenant.c only; every change bumps tenant_registry.version, which serve
-- polls. The key is the key as given, or (key_sealed) its AES-256-GCM sealing under
-- secrets_key_file with the tenant's name as associated data (lib/secretbox.h).

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

-- A channel belongs to one tenant: the primary key is the channel.
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

-- A message carries its channel's tenant (NULL: the default key sends it), the leading column
-- of the claim index: set at insert, a producer's own INSERT included (the tenant is looked
-- up in the same trigger that orders the conversation), ...
CREATE OR REPLACE FUNCTION outbox_order() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM outbox_lock_conversation(NEW.channel_id, NEW.external_conversation_id);
    NEW.id := nextval('outbox_id_seq');
    NEW.conv_seq := NEW.id;
    NEW.head := NEW.state IN ('queued', 'sending')
        AND NOT outbox_unfinished_in(NEW.channel_id, NEW.external_conversation_id, NEW.id);
    NEW.tenant := (SELECT c.tenant FROM tenant_channels c WHERE c.channel_id = NEW.channel_id);
    RETURN NEW;
END $$;

-- ... and kept true for every message of a channel when the channel changes hands.
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
