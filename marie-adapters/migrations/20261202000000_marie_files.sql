-- Files users upload (`POST /api/chat/files`) and the references messages keep of them.

-- A user message's attachments (JSON array of {file_id, name, content_type, size}), NULL
-- when there are none.
ALTER TABLE marie_messages ADD COLUMN attachments TEXT;

-- Uploaded files, bytes included. `size` is summed per user for the quota.
CREATE TABLE marie_files (
    file_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    name TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX marie_files_by_user ON marie_files (user_id);
