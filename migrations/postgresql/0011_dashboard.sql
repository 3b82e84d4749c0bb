-- 0011_dashboard (PostgreSQL): the counts the dashboard reads without counting the outbox
-- (SPEC §13: every call under 100 ms with 1,000,000 messages), as SQLite's state_counts and
-- stats_minute (0008, 0011): messages per channel and state, and per minute the sends and
-- the messages accepted, failed and confirmed (7 days kept).
--
-- SQLite keeps them with an upsert per row: its writers take turns. Here an upsert of one
-- counter row by every statement would make every writer (nodes, producers) wait for the
-- others' commits on that row. So statements only append their changes (count_deltas,
-- stats_deltas: one row per channel and state, or minute and kind, a statement changed; no
-- row is ever updated there), from statement triggers over their transition tables; once a
-- second a node folds them into the counts (dashboard_compact), and a read adds the deltas
-- not folded yet.

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

-- What is there already.
INSERT INTO state_counts (channel_id, state, n)
SELECT channel_id, state, count(*) FROM outbox GROUP BY channel_id, state;
INSERT INTO stats_minute (minute, kind, n)
SELECT started_at_ms / 60000, 'sent', count(*) FROM attempts
WHERE started_at_ms >= outbox_now_ms() - 7 * 86400000 GROUP BY 1;
INSERT INTO stats_minute (minute, kind, n)
SELECT at_ms / 60000, to_state, count(*) FROM transitions
WHERE to_state IN ('accepted', 'failed', 'confirmed') AND at_ms >= outbox_now_ms() - 7 * 86400000
GROUP BY 1, 2;

-- A state change: its transition (0003), the counts it moves, and the minute's outcomes, in
-- one pass over the statement's transition tables.
CREATE OR REPLACE FUNCTION outbox_record_transitions() RETURNS trigger LANGUAGE plpgsql
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
