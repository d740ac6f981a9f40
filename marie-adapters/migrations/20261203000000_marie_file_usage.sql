-- What each user's uploaded files take in all (the sum of their `marie_files.size`): what
-- the upload quota counts. Storing a file updates its owner's row first and changes it in
-- the same transaction as `marie_files`, which serializes one user's uploads (a row lock in
-- PostgreSQL; SQLite has one writer at a time anyway), so that concurrent uploads cannot
-- both slip under the quota.
--
-- (`marie_files.data` is BYTEA: SQLite gives that type NUMERIC affinity, which leaves a
-- bound blob as it is, so the bytes come back as the BLOB they went in as.)
CREATE TABLE marie_file_usage (
    user_id TEXT NOT NULL PRIMARY KEY,
    used BIGINT NOT NULL
);

-- Users' files already stored count from the start.
INSERT INTO marie_file_usage (user_id, used)
SELECT user_id, SUM(size) FROM marie_files GROUP BY user_id;
