-- 0007_lease_order (PostgreSQL): a node's own writes to its leases lock them in tenant order,
-- the order in which a claim or finish locks them (FOR SHARE, lib/store_pg.c). A heartbeat
-- that renewed its leases in the table's physical order could hold one lease a finish of the
-- same node waits for while waiting for another that finish holds: a deadlock, which
-- PostgreSQL breaks after deadlock_timeout by failing one of the two (measured: a finish
-- every minute or two with 300 tenants on three nodes, each a second of delivery lost).

CREATE OR REPLACE FUNCTION node_beat(p_node text, p_lease_ms bigint, p_now bigint DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION lease_rebalance(p_node text, p_tenants text[], p_lease_ms bigint,
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
