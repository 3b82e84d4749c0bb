-- 0004_event_retention: retention reaches webhook events and relayed replies.
--
-- Retention deletes a processed webhook event only when no inbox row still needs it (a reply
-- not yet delivered or acknowledged keeps its event); this index makes that check a probe
-- instead of a scan of the inbox per event.
CREATE INDEX inbox_event ON inbox (event_id);
