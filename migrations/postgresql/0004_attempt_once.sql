-- 0004_attempt_once (PostgreSQL): an attempt is recorded once, whatever happens to the
-- COMMIT that records it. A claim gives its message a fresh lease token and a claim makes
-- at most one request, so (message_id, lease_token) names one attempt. When the
-- connection drops after the server committed but before serve heard so, serve writes the
-- outcome again: the attempt's second INSERT does nothing (ON CONFLICT) and the outcome's
-- guarded UPDATE matches no row.

ALTER TABLE attempts ADD COLUMN lease_token bigint;
CREATE UNIQUE INDEX attempts_once ON attempts (message_id, lease_token);
