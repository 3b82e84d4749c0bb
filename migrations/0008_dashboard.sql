-- 0008_dashboard: pauses that hold messages, and per-minute counts for the dashboard charts.
--
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
-- dropped by the attempt trigger, so the table stays under 4 * 10080 rows.
CREATE TABLE stats_minute (
    minute  INTEGER NOT NULL,             -- at_ms / 60000
    kind    TEXT NOT NULL CHECK (kind IN ('sent', 'accepted', 'failed', 'confirmed')),
    n       INTEGER NOT NULL,
    PRIMARY KEY (minute, kind)
) WITHOUT ROWID;

CREATE TRIGGER stats_attempt AFTER INSERT ON attempts
BEGIN
    INSERT INTO stats_minute (minute, kind, n) VALUES (NEW.started_at_ms / 60000, 'sent', 1)
    ON CONFLICT (minute, kind) DO UPDATE SET n = n + 1;
    DELETE FROM stats_minute WHERE minute < NEW.started_at_ms / 60000 - 10080;
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
    n           INTEGER NOT NULL,
    PRIMARY KEY (channel_id, state)
) WITHOUT ROWID;

CREATE TRIGGER counts_link AFTER UPDATE OF head ON outbox
WHEN OLD.head IS NULL AND NEW.head IS NOT NULL
BEGIN
    INSERT INTO state_counts (channel_id, state, n) VALUES (NEW.channel_id, NEW.state, 1)
    ON CONFLICT (channel_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER counts_state AFTER UPDATE OF state ON outbox
WHEN OLD.state <> NEW.state AND OLD.head IS NOT NULL
BEGIN
    UPDATE state_counts SET n = n - 1 WHERE channel_id = OLD.channel_id AND state = OLD.state;
    INSERT INTO state_counts (channel_id, state, n) VALUES (NEW.channel_id, NEW.state, 1)
    ON CONFLICT (channel_id, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER counts_delete AFTER DELETE ON outbox
WHEN OLD.head IS NOT NULL
BEGIN
    UPDATE state_counts SET n = n - 1 WHERE channel_id = OLD.channel_id AND state = OLD.state;
END;

-- The messages already stored (once, at the upgrade).
INSERT INTO state_counts (channel_id, state, n)
SELECT channel_id, state, count(*) FROM outbox WHERE head IS NOT NULL GROUP BY channel_id, state;
