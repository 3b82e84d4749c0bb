-- 0003_audit_chain: a tamper-evident audit log of every transition and delivery attempt,
-- and the live state `outbox serve` publishes for `outbox status`.

-- One row per transition and per attempt, copied by trigger when they are written, so the
-- log is complete whoever wrote them. It has no foreign key: purging messages keeps their
-- audit rows. `hash` chains each row to the previous one (lib/audit.c seals rows in id
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

CREATE TRIGGER audit_transition AFTER INSERT ON transitions
BEGIN
    INSERT INTO audit_log (at_ms, kind, channel_id, external_message_id, record)
    SELECT NEW.at_ms, 'transition', o.channel_id, o.external_message_id,
           json_object('message_id', NEW.message_id, 'from', NEW.from_state,
                       'to', NEW.to_state, 'reason', NEW.reason)
    FROM outbox o WHERE o.id = NEW.message_id;
END;

-- An attempt records what was sent (the Partoo fields) and what came back.
CREATE TRIGGER audit_attempt AFTER INSERT ON attempts
BEGIN
    INSERT INTO audit_log (at_ms, kind, channel_id, external_message_id, record)
    SELECT NEW.started_at_ms, 'attempt', o.channel_id, o.external_message_id,
           json_object('message_id', NEW.message_id, 'business_id', o.business_id,
                       'external_conversation_id', o.external_conversation_id,
                       'content', o.content, 'sender_type', o.sender_type,
                       'consumer_name', o.consumer_name, 'consumer_image', o.consumer_image,
                       'duration_ms', NEW.duration_ms, 'http_status', NEW.http_status,
                       'outcome', NEW.outcome, 'error', NEW.error,
                       'response_excerpt', NEW.response_excerpt)
    FROM outbox o WHERE o.id = NEW.message_id;
END;

-- What the running `outbox serve` reports about itself (pause reasons, circuit, rate),
-- refreshed every few seconds; `outbox status` reads it.
CREATE TABLE service_state (
    key            TEXT PRIMARY KEY,
    value          TEXT,
    updated_at_ms  INTEGER NOT NULL
);
