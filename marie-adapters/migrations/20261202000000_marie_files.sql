-- Files users upload (`POST /api/chat/files`) and the references messages keep of them.

-- A user message's attachments (JSON array of {file_id, name, content_type, size}), NULL
-- when there are none.
ALTER TABLE marie_messages ADD COLUMN attachments TEXT;

-- Uploaded files, bytes included. (`data` is BYTEA: SQLite gives that type NUMERIC
-- affinity, which leaves a bound blob as it is, so the bytes come back as the BLOB they went
-- in as.)
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

-- What each user's uploaded files take in all (the sum of their `marie_files.size`): what
-- the upload quota counts. Storing a file updates its owner's row first and changes it in
-- the same transaction as `marie_files`, which serializes one user's uploads (a row lock in
-- PostgreSQL; SQLite has one writer at a time anyway), so that concurrent uploads cannot
-- both slip under the quota.
CREATE TABLE marie_file_usage (
    user_id TEXT NOT NULL PRIMARY KEY,
    used BIGINT NOT NULL
);
