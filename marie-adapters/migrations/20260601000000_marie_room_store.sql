-- The tables of MARIE's SQL RoomStore (marie-adapters, `SqlStore`). One portable script for
-- SQLite and PostgreSQL: plain TEXT and BIGINT columns, no foreign keys, no database-
-- specific types. Ids are only ever compared for equality in SQL (ordering them is done in
-- Rust), so the database's collation does not matter. Times are milliseconds since the
-- Unix epoch.

-- One row per conversation. Every write to a conversation's members, messages or active
-- branch first updates its row, which serializes those writers (a row lock in PostgreSQL;
-- SQLite has one writer at a time anyway).
CREATE TABLE marie_conversations (
    conversation_id TEXT NOT NULL PRIMARY KEY,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- The last `marie_messages.seq` given out.
    last_seq BIGINT NOT NULL DEFAULT 0
);

-- Who may enter a conversation, in the order they were let in (the creator at 0).
CREATE TABLE marie_members (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX marie_members_by_position ON marie_members (conversation_id, position);

-- Every message of every branch. `depth` is how many ancestors the store holds of it (0: a
-- first message, or one whose parent the store does not hold); `seq` orders a message's
-- children as they came (siblings oldest first, the newest child last).
CREATE TABLE marie_messages (
    conversation_id TEXT NOT NULL,
    message_id TEXT NOT NULL,
    parent_id TEXT,
    depth BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    user_id TEXT,
    created_at BIGINT NOT NULL,
    -- The parts (JSON array), NULL when there are none.
    parts TEXT,
    PRIMARY KEY (conversation_id, message_id)
);
CREATE INDEX marie_messages_by_parent ON marie_messages (conversation_id, parent_id, seq);

-- The active branch of each conversation, one row per message from depth 0 to its leaf:
-- a page of history is a range of this primary key, however long the conversation.
CREATE TABLE marie_active_path (
    conversation_id TEXT NOT NULL,
    depth BIGINT NOT NULL,
    message_id TEXT NOT NULL,
    PRIMARY KEY (conversation_id, depth)
);

-- Resumable sessions; `rooms` is a JSON array of conversation ids.
CREATE TABLE marie_sessions (
    session_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    rooms TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX marie_sessions_by_expiry ON marie_sessions (expires_at);

-- The lease of the answer running in a conversation; free once `expires_at` has passed.
CREATE TABLE marie_answer_leases (
    conversation_id TEXT NOT NULL PRIMARY KEY,
    stream_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- The sends waiting their turn behind a conversation's running answer (`on_busy: enqueue`):
-- one row per conversation that has queued a send, `last_seq` the last `seq` given out; every
-- enqueue updates the row first, which serializes them per conversation.
CREATE TABLE marie_send_queues (
    conversation_id TEXT NOT NULL PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

-- The sends themselves, next first by `seq`; `send` is the queued send (JSON).
CREATE TABLE marie_queued_sends (
    conversation_id TEXT NOT NULL,
    stream_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    send TEXT NOT NULL,
    PRIMARY KEY (conversation_id, stream_id)
);
CREATE INDEX marie_queued_sends_in_order ON marie_queued_sends (conversation_id, seq);

-- Tokens a user used in one budget window `[window_start, window_end)`; may go a day after
-- the window ends.
CREATE TABLE marie_usage (
    user_id TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    PRIMARY KEY (user_id, window_start, window_end)
);
CREATE INDEX marie_usage_by_end ON marie_usage (window_end);

-- Tool calls waiting for (or given) a member's approval. `request` is the request (JSON),
-- `decision` the decision (JSON), NULL while pending; the row may go after `keep_until`.
CREATE TABLE marie_approvals (
    approval_id TEXT NOT NULL PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    request TEXT NOT NULL,
    decision TEXT,
    created_at BIGINT NOT NULL,
    keep_until BIGINT NOT NULL
);
CREATE INDEX marie_approvals_pending ON marie_approvals (conversation_id, created_at)
    WHERE decision IS NULL;
CREATE INDEX marie_approvals_by_expiry ON marie_approvals (keep_until);
