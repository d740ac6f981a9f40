-- Conversations of several people (`docs/protocol.md` section 10): which user messages the
-- model answers, which named assistant wrote each answer, and how far each member has read.

-- `always`, `mention` or `never` (`AnswerPolicy`); conversations from before answer always.
ALTER TABLE marie_conversations ADD COLUMN answer_policy TEXT NOT NULL DEFAULT 'always';

-- Of an assistant message: the name of the assistant that wrote it, NULL for none.
ALTER TABLE marie_messages ADD COLUMN assistant TEXT;

-- Each member's read mark: the last message they marked read, `message_id`, and where it
-- was stored, `seq` (`marie_messages.seq`: the order messages were stored in, which is not
-- the order of their ids, as an answer is stored when it ends, after the messages posted
-- meanwhile). A mark moves forward only, by `seq`. A list item's `unread` counts the
-- conversation's messages whose `seq` is after it, at most 100: a range of
-- `marie_messages_in_order`. Deleting a conversation, or removing a member, deletes the
-- marks.
CREATE TABLE marie_reads (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);

-- A conversation's messages in the order they were stored: what `unread` counts.
CREATE INDEX marie_messages_in_order ON marie_messages (conversation_id, seq);
