-- 0002_nodes (PostgreSQL): several `serve` processes on one database (SPEC §12). Each node
-- holds the tenants it sends for under leases with a fencing epoch; the functions below are
-- the only writers of these tables, each one statement-atomic, so that nodes agree through
-- PostgreSQL's row locks rather than through messages of their own. Time is PostgreSQL's
-- clock (clock_timestamp), so nodes whose clocks disagree still agree on who holds what;
-- a test passes now_ms to step through time.

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
-- lease it still holds, and returns them (tenant, epoch). A node that finds a tenant gone
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
        UPDATE tenant_leases AS l SET expires_at_ms = now_ms + p_lease_ms
        WHERE l.node = p_node AND l.expires_at_ms > now_ms
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
        UPDATE tenant_leases AS l SET node = NULL, expires_at_ms = 0
        WHERE l.tenant IN (SELECT x.tenant FROM tenant_leases x
                           WHERE x.node = p_node AND x.expires_at_ms > now_ms
                           ORDER BY x.tenant DESC LIMIT held - share);
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
    WHERE l.node = p_node AND NOT (l.tenant = ANY (p_tenants));
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
