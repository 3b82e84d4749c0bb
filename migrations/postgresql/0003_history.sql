-- 0003_history (PostgreSQL): what happened to each message, as on SQLite (0001_init): every
-- state change (by a trigger, so a producer's own UPDATE is recorded too) and every HTTP
-- attempt. The audit chain over them comes with the store on PostgreSQL.

CREATE TABLE transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  bigint NOT NULL,
    at_ms       bigint NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    reason      text NOT NULL
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
    response_excerpt  text
);
CREATE INDEX attempts_message ON attempts (message_id, id);
CREATE INDEX attempts_started ON attempts (started_at_ms);

-- Once per statement over its transition tables: a claim of 256 messages in one UPDATE
-- records its 256 transitions in one INSERT.
CREATE FUNCTION outbox_record_transitions() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO transitions (message_id, at_ms, from_state, to_state, reason)
    SELECT n.id, n.state_at_ms, o.state, n.state, n.state_reason
    FROM changed_old o JOIN changed_new n ON n.id = o.id
    WHERE o.state <> n.state
    ORDER BY n.id;
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_record_transitions AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_record_transitions();
