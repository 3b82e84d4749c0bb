-- 0007_audit_keyed: an optional keyed audit chain (HMAC-SHA256 instead of plain SHA-256).
--
-- Anyone who can write the database can rewrite audit rows and recompute a plain SHA-256
-- chain. With audit_key_file set, serve (and the CLI) seal rows with HMAC-SHA256 under a key
-- that is not in the database; the rows below record from which audit_log row on the chain is
-- keyed, and with which key (lib/audit.h). No row here: the whole chain is plain SHA-256.
CREATE TABLE audit_chain_modes (
    id              INTEGER PRIMARY KEY,
    from_id         INTEGER NOT NULL,     -- first audit_log id sealed in this mode
    mode            TEXT NOT NULL CHECK (mode IN ('sha256', 'hmac-sha256')),
    key_id          TEXT,                 -- hmac: identifies the key (never the key itself)
    mac             TEXT,                 -- hmac: HMAC of this record, so from_id cannot move
    created_at_ms   INTEGER NOT NULL
);
