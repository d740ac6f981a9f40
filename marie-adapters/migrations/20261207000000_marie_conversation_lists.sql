-- Conversations people can find, name, configure and delete (`docs/protocol.md` section 9):
-- each conversation's title, settings, last activity and last message, a mark on those
-- deleted (their row stays, so their id is never used again), and each member's copy of the
-- last activity with their archive flag: every user's list is one range of
-- `marie_members_list`, however many conversations they have.

ALTER TABLE marie_conversations ADD COLUMN title TEXT;
ALTER TABLE marie_conversations ADD COLUMN model TEXT;
ALTER TABLE marie_conversations ADD COLUMN system_prompt TEXT;
ALTER TABLE marie_conversations ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
-- The last message in short (JSON {role, preview, created_at}), NULL before the first.
ALTER TABLE marie_conversations ADD COLUMN last_message TEXT;
-- When it was deleted; NULL while it exists.
ALTER TABLE marie_conversations ADD COLUMN deleted_at BIGINT;

ALTER TABLE marie_members ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE marie_members ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;
CREATE INDEX marie_members_list ON marie_members (user_id, archived, updated_at, conversation_id);

-- Conversations from before: last active when their newest message was written.
UPDATE marie_conversations SET updated_at = COALESCE(
    (SELECT MAX(m.created_at) FROM marie_messages m
     WHERE m.conversation_id = marie_conversations.conversation_id),
    created_at);
UPDATE marie_members SET updated_at = (
    SELECT c.updated_at FROM marie_conversations c
    WHERE c.conversation_id = marie_members.conversation_id);

-- A deleted conversation's files are found by it.
CREATE INDEX marie_files_by_conversation ON marie_files (conversation_id);

-- Expiry (`SqlConfig::history_ttl`) finds the conversations idle the longest.
CREATE INDEX marie_conversations_by_activity ON marie_conversations (updated_at);
