-- 0005_conversation_chain: per-conversation order without a per-message index keyed by
-- conversation.
--
-- Until now the next head of a conversation was found through outbox_conversation
-- (channel_id, external_conversation_id, id). A bulk enqueue spread over many conversations
-- put each new entry of that index on a different page, so a batch of 1,000 messages dirtied
-- about 1,000 pages: ~10 KB written per 300-byte message, the bulk rate stuck near 15,000/s
-- (docs/benchmarks.md, "Enqueue").
--
-- Now each unfinished message that waits behind another points at it (prev_id), and a
-- small table remembers the last message of each conversation (its tail). Enqueueing
-- appends to the tail; when a message leaves the unfinished states its successor (the row
-- whose prev_id is the finished message) becomes the head. Both new index entries are keyed
-- by recent ids, so a batch appends to the ends of the indexes instead of touching every
-- page.
--
--   conversations: (ch, conv) -> tail_id ----------------------------.
--                                                                     v
--   outbox:  m1 (head) <--prev_id-- m5 <--prev_id-- m9 <--prev_id-- m14
--
-- A message that re-enters the queue (retry, re-send) goes to the back of its conversation.

CREATE TABLE conversations (
    id                        INTEGER PRIMARY KEY,
    channel_id                TEXT NOT NULL,
    external_conversation_id  TEXT NOT NULL,
    tail_id                   INTEGER NOT NULL,   -- the last message appended (any state)
    UNIQUE (channel_id, external_conversation_id)
);

ALTER TABLE outbox ADD COLUMN prev_id INTEGER;

-- Existing unfinished messages: the head first, then the others in id order.
WITH chained AS (
    SELECT id, lag(id) OVER (PARTITION BY channel_id, external_conversation_id
                             ORDER BY head DESC, id) AS prev
    FROM outbox WHERE state IN ('queued', 'sending'))
UPDATE outbox SET prev_id = chained.prev FROM chained WHERE outbox.id = chained.id;

INSERT INTO conversations (channel_id, external_conversation_id, tail_id)
SELECT channel_id, external_conversation_id,
       coalesce(max(CASE WHEN head = 1 THEN NULL ELSE id END), max(id))
FROM outbox WHERE state IN ('queued', 'sending')
GROUP BY channel_id, external_conversation_id;

DROP TRIGGER outbox_head_on_insert;
DROP TRIGGER outbox_head_promote;
DROP TRIGGER outbox_head_requeue;
DROP INDEX outbox_conversation;

-- Webhooks without a channel id are matched channel by channel through the key index
-- (lib/store.c, find_unambiguous): the channels are few, and every enqueued row saves an
-- index entry.
DROP INDEX outbox_external_message_id;

-- The successor of an unfinished message: keyed by recent ids, so inserts append.
CREATE INDEX outbox_next ON outbox (prev_id) WHERE state IN ('queued', 'sending');

-- Rows inserted through the SQL contract arrive with head NULL. The store appends them to
-- their conversations, in id order: every claim links some (lib/store.c, link_unlinked),
-- so they are sent within a second, and a library enqueue first links those of the
-- conversations it appends to, so a later message never overtakes them. Within a
-- conversation unlinked rows are always newer than linked ones. No insert trigger does
-- it: a trigger on outbox, even one whose WHEN is false, costs a bulk insert a quarter of
-- its speed (docs/benchmarks.md).
CREATE INDEX outbox_unlinked ON outbox (channel_id, external_conversation_id, id)
    WHERE head IS NULL;

-- A message leaves the unfinished states (SPEC §3: n+1 waits for n). If it was the head,
-- its successor becomes the head. If it left from the middle (cancelled, or confirmed
-- while still queued), it is unlinked: its successor now waits for its predecessor, and
-- if it was the tail, its predecessor is the tail again.
CREATE TRIGGER outbox_chain_leave AFTER UPDATE OF state ON outbox
WHEN OLD.state IN ('queued', 'sending') AND NEW.state NOT IN ('queued', 'sending')
BEGIN
    UPDATE outbox SET head = 1
    WHERE NEW.head = 1 AND prev_id = NEW.id AND state IN ('queued', 'sending')
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    UPDATE outbox SET prev_id = NEW.prev_id
    WHERE NEW.head IS NOT 1 AND prev_id = NEW.id AND state IN ('queued', 'sending')
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
    UPDATE conversations SET tail_id = NEW.prev_id
    WHERE NEW.head IS NOT 1 AND NEW.prev_id IS NOT NULL AND tail_id = NEW.id
      AND channel_id = NEW.channel_id AND external_conversation_id = NEW.external_conversation_id;
END;

-- A message that re-enters the queue (retry of a failed one, re-send of an unconfirmed
-- one) goes to the back of its conversation: the head only when nothing else is unfinished.
CREATE TRIGGER outbox_chain_requeue AFTER UPDATE OF state ON outbox
WHEN OLD.state NOT IN ('queued', 'sending') AND NEW.state IN ('queued', 'sending')
BEGIN
    UPDATE outbox SET
        prev_id = (SELECT t.id FROM conversations c
                   JOIN outbox t ON t.id = c.tail_id AND t.channel_id = c.channel_id
                                AND t.external_conversation_id = c.external_conversation_id
                   WHERE c.channel_id = NEW.channel_id
                     AND c.external_conversation_id = NEW.external_conversation_id
                     AND t.state IN ('queued', 'sending') AND t.id <> NEW.id),
        head = NOT EXISTS (SELECT 1 FROM conversations c
                   JOIN outbox t ON t.id = c.tail_id AND t.channel_id = c.channel_id
                                AND t.external_conversation_id = c.external_conversation_id
                   WHERE c.channel_id = NEW.channel_id
                     AND c.external_conversation_id = NEW.external_conversation_id
                     AND t.state IN ('queued', 'sending') AND t.id <> NEW.id)
    WHERE id = NEW.id;
    INSERT INTO conversations (channel_id, external_conversation_id, tail_id)
    VALUES (NEW.channel_id, NEW.external_conversation_id, NEW.id)
    ON CONFLICT (channel_id, external_conversation_id) DO UPDATE SET tail_id = excluded.tail_id;
END;
