-- 0012_tenant_pauses (PostgreSQL): a whole tenant can be paused (SPEC §13, `outbox pause
-- --tenant T`, POST /v1/pause {"tenant"}), as a channel can (0010). The claim skips the
-- messages of a paused tenant ("default" holds the channels no tenant owns), and the time
-- they are held does not count toward max_age.
--
-- The nodes must hear of it at once, as of a channel pause, to give back what they claimed
-- ahead for the tenant: the notification says which scope. A channel pause keeps the payload
-- "pause <channel_id>" that nodes of the version before understand; a tenant pause says
-- "pause-tenant <name>", which those nodes ignore (they see it at their next claim).

CREATE OR REPLACE FUNCTION pause_notify() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    -- A resume is like an insert: messages may be due.
    PERFORM pg_notify(TG_TABLE_SCHEMA || '.outbox',
                      CASE WHEN TG_OP <> 'INSERT' THEN ''
                           WHEN NEW.scope = 'tenant' THEN 'pause-tenant ' || NEW.key
                           ELSE 'pause ' || NEW.key END);
    RETURN NULL;
END $$;
