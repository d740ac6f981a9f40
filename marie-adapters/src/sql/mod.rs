//! [`SqlStore`]: a [`RoomStore`](marie_core::RoomStore) and a [`FileStore`] in SQLite or PostgreSQL, through `sqlx`'s
//! [`AnyPool`]: one file for one node, or one PostgreSQL shared by several nodes.
//!
//! - `mod.rs`: the store, its configuration, connecting, migrations and errors.
//! - `conversations.rs`: conversations, their members, each user's list and read marks.
//! - `history.rs`: messages, branches and the active branch.
//! - `leases.rs`: sessions and the leases of running answers.
//! - `approval.rs`: approvals of tool calls.
//! - `queue.rs`: sends queued behind a running answer.
//! - `usage.rs`: tokens used per user and budget window.
//! - `files.rs`: uploaded files and the bytes each user's take (the [`FileStore`]).
//! - `retention.rs`: deleting conversations idle for longer than [`SqlConfig::history_ttl`].
//! - `search.rs`: the full-text index of message text that `list_conversations` searches.
//!
//! ## Layout
//!
//! [`SqlStore::connect`] creates the tables, and later versions' changes, with the migrations
//! of `marie-adapters/migrations/` (one portable script for both databases; `sqlx` records
//! what ran in `_sqlx_migrations`). Every table starts with `marie_`. Times are milliseconds
//! since the Unix epoch.
//!
//! | table | key | holds |
//! |---|---|---|
//! | `marie_conversations` | `conversation_id` | `created_by`, `created_at`, `last_seq` (the last message `seq` given out), `title`, `model`, `system_prompt`, `answer_policy` (`always`, `mention` or `never`), `updated_at` (the last activity; index, for expiry), `last_message` (JSON), `deleted_at` (set when deleted: the row stays so the id is never used again) |
//! | `marie_members` | `conversation_id, user_id` | `position`: users with access, in the order they were let in (index on `conversation_id, position`); each member's `updated_at` and `archived`: their list is one range of the index `marie_members_list` (`user_id, archived, updated_at, conversation_id`) |
//! | `marie_messages` | `conversation_id, message_id` | every message of every branch: `parent_id` (NULL: a first message), `depth`, `seq` (the order messages came in), `role`, `content`, `user_id`, `created_at`, `parts` (JSON), `attachments` (JSON, the files' references without their bytes), `assistant` (the named assistant that wrote an answer); index on `conversation_id, parent_id, seq` for children and siblings, and `marie_messages_in_order` on `conversation_id, seq` for `unread` |
//! | `marie_reads` | `conversation_id, user_id` | `message_id`: the last message a member marked read, and `seq`, where it was stored (the mark never moves back by it); a list item's `unread` counts the messages stored after it, at most 100, a range of `marie_messages_in_order` |
//! | `marie_active_path` | `conversation_id, depth` | `message_id`: the active branch, one row per depth from 0 to its leaf |
//! | `marie_sessions` | `session_id` | `user_id`, `rooms` (JSON), `expires_at` (index, for sweeping) |
//! | `marie_answer_leases` | `conversation_id` | the running answer's lease: `stream_id`, `seq`, `expires_at` |
//! | `marie_send_queues` | `conversation_id` | `last_seq`: the last queued send's `seq` (a row every enqueue updates first) |
//! | `marie_queued_sends` | `conversation_id, stream_id` | `seq`, `send` (JSON): the sends waiting behind the running answer, next first (index on `conversation_id, seq`) |
//! | `marie_usage` | `user_id, window_start, window_end` | `tokens`: what a user used in a budget window (index on `window_end`, for sweeping) |
//! | `marie_files` | `file_id` | uploaded files: `user_id` (index), `conversation_id`, `name`, `content_type`, `size`, `created_at`, `data` (the bytes: `BYTEA` in PostgreSQL, a BLOB in SQLite) |
//! | `marie_file_usage` | `user_id` | `used`: the bytes a user's files take, what the upload quota counts (a row every upload updates first) |
//! | `marie_approvals` | `approval_id` | `conversation_id`, `request` (JSON), `decision` (JSON, NULL while pending), `created_at`, `keep_until` (indexes: the pending one per conversation, expiry) |
//!
//! A page of history is a range read of `marie_active_path`'s key joined to
//! `marie_messages`' key, so it costs what a page costs however long the conversation is.
//! `message_id` is compared for equality only in SQL; ordering ids (a `before` cursor that is
//! not on the active branch) is done in Rust, so the database's collation does not matter.
//! Read marks are compared by `seq` (where messages were stored), not by id.
//!
//! ## Consistency
//!
//! Every change is one statement or one transaction (a few methods also read back what a
//! change left, or sweep expired rows first). Writes to one conversation's members,
//! messages or active branch start by updating its `marie_conversations` row, which
//! serializes them: a row lock in PostgreSQL, and SQLite's write lock, taken at `BEGIN
//! IMMEDIATE`; enqueues do the same with the conversation's `marie_send_queues` row, and
//! uploads with their owner's `marie_file_usage` row (so the quota holds however many
//! uploads run at once).
//! Claims, renewals and decisions are single conditional statements (`INSERT ..
//! ON CONFLICT DO UPDATE .. WHERE`, `UPDATE .. WHERE decision IS NULL`): the first one wins.
//! An operation PostgreSQL aborts as a serialization failure or a deadlock (or SQLite as
//! busy) is retried, within [`SqlConfig::timeout`].
//!
//! Lease and session expiry compare the nodes' clocks: keep them in sync (NTP) to well
//! within the answers' lease `ttl`.
//!
//! ## SQLite
//!
//! Use a file (`sqlite://marie.db?mode=rwc` creates it). Connections use WAL, so readers do
//! not wait for the writer, `synchronous = NORMAL`, and a busy timeout of
//! [`SqlConfig::timeout`], so that concurrent writers wait for each other instead of failing.
//! An in-memory database (`sqlite::memory:`) is one connection that lives as long as the
//! store.
//!
//! ## Sharing a database
//!
//! `_sqlx_migrations` is one per schema: an application whose own `sqlx` migrations run in the
//! same schema should give MARIE a schema of its own (PostgreSQL:
//! `?options[search_path]=marie`) or a database of its own, or set `ignore_missing` on its
//! migrator. MARIE's migrator ignores migrations it does not know.

mod approvals;
mod conversations;
mod files;
mod history;
mod leases;
mod queue;
mod retention;
mod search;
mod sessions;
mod usage;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use async_trait::async_trait;
use marie_core::{
    Bytes, ConversationId, FileId, FileMeta, FileStore, PutOutcome, StoreError, StoredFile, UserId,
};
use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{Any, AnyPool, Executor, Transaction};

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        let (backend, compiled) = match scheme {
            "sqlite" => (Self::Sqlite, cfg!(feature = "sqlite")),
            "postgres" | "postgresql" => (Self::Postgres, cfg!(feature = "postgres")),
            _ => {
                return Err(StoreError::Unavailable(format!(
                    "a SQL store URL starts with sqlite: or postgres:, not {scheme:?}"
                )));
            }
        };
        if !compiled {
            return Err(StoreError::Unavailable(format!(
                "{scheme}: URLs need marie-adapters' `{}` feature",
                backend.feature()
            )));
        }
        Ok(backend)
    }

    fn feature(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Where the database is and how MARIE uses it. `SqlConfig::new(url)` fits most deployments.
#[derive(Clone)]
#[non_exhaustive]
pub struct SqlConfig {
    /// `sqlite://<path>?mode=rwc` (a file, created if missing) or
    /// `postgres://[user[:password]@]host[:port]/database` (no TLS). PostgreSQL options go in
    /// the query, e.g. `?options[search_path]=marie` for a schema of its own.
    pub url: String,
    /// The most connections the pool opens (10).
    pub max_connections: u32,
    /// The longest one operation may take, waiting for a connection or a lock included,
    /// before it fails with `StoreError::Unavailable` (5 s). Also SQLite's busy timeout.
    pub timeout: Duration,
    /// Conversations nobody wrote to for this long are deleted with their history and
    /// files ([`SqlStore::expire_conversations`]; `None`, the default: kept until deleted).
    /// A sweep runs every tenth of it, at most every 10 minutes, so a conversation goes
    /// that much after its time at the latest.
    pub history_ttl: Option<Duration>,
}

impl SqlConfig {
    /// The defaults, for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            timeout: Duration::from_secs(5),
            history_ttl: None,
        }
    }

    /// Sets [`history_ttl`](Self::history_ttl): keep conversations `ttl` after their last
    /// message or change.
    pub fn history_ttl(mut self, ttl: Duration) -> Self {
        self.history_ttl = Some(ttl);
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl std::fmt::Debug for SqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlConfig")
            .field("url", &redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .field("history_ttl", &self.history_ttl)
            .finish()
    }
}

/// The URL without its credentials, for logs.
fn redact(url: &str) -> String {
    let Some(scheme) = url.find("://") else {
        return url.to_owned();
    };
    let authority_end = url[scheme + 3..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme + 3 + i);
    match url[..authority_end].rfind('@') {
        Some(at) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Every store trait of `marie-core` (so a [`RoomStore`](marie_core::RoomStore)) in SQLite or PostgreSQL: conversations, access lists, history with its
/// branches, sessions, the leases of running answers and approvals; and a [`FileStore`]:
/// uploaded files, bytes included. On PostgreSQL it is shared by every node that uses the
/// same database (and schema).
///
/// Cheap to clone; clones share one connection pool. See the [module docs](crate::sql) for
/// the table layout.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    config: SqlConfig,
    /// Counts session writes, to sweep expired sessions now and then.
    session_writes: AtomicU64,
    /// Counts usage adds, to sweep ended windows now and then.
    usage_writes: AtomicU64,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.inner.backend)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SqlStore {
    /// Connects to the database at `url` with the defaults of [`SqlConfig::new`]: SQLite for
    /// `sqlite:` URLs, PostgreSQL for `postgres:` ones. Creates or updates the tables.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), marie_core::StoreError> {
    /// use marie_adapters::SqlStore;
    ///
    /// // One node: a file, created if missing.
    /// let store = SqlStore::connect("sqlite://marie.db?mode=rwc").await?;
    /// // Several nodes: one PostgreSQL.
    /// let shared = SqlStore::connect("postgres://marie:secret@db.internal/marie").await?;
    /// # let _ = (store, shared);
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(SqlConfig::new(url)).await
    }

    /// Connects with `config`. Fails when the database cannot be reached now or its tables
    /// cannot be created; once connected, the pool reconnects by itself.
    pub async fn connect_with(config: SqlConfig) -> Result<Self, StoreError> {
        let backend = Backend::of(&config.url)?;
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.timeout);
        if backend == Backend::Sqlite {
            let busy = config.timeout.as_millis();
            options = options.after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(
                        format!(
                            "PRAGMA busy_timeout = {busy}; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL;"
                        )
                        .as_str(),
                    )
                    .await
                    .map(drop)
                })
            });
            if config.url.contains(":memory:") || config.url.contains("mode=memory") {
                // Each connection to `:memory:` is a database of its own: keep exactly one.
                options = options
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None);
            }
        }
        let pool = tokio::time::timeout(config.timeout, options.connect(&config.url))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to the database".into()))?
            .map_err(|e| StoreError::Unavailable(format!("sql: {e}")))?;
        let mut migrator = sqlx::migrate!();
        migrator.set_ignore_missing(true);
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("sql migrations: {e}")))?;
        search::ensure_index(&pool, backend)
            .await
            .map_err(|e| StoreError::Unavailable(format!("sql search index: {e}")))?;
        let history_ttl = config.history_ttl;
        let inner = Arc::new(Inner {
            pool,
            backend,
            config,
            session_writes: AtomicU64::new(0),
            usage_writes: AtomicU64::new(0),
        });
        if let Some(ttl) = history_ttl {
            retention::spawn_expiry(&inner, ttl);
        }
        Ok(Self { inner })
    }

    /// The configuration.
    pub fn config(&self) -> &SqlConfig {
        &self.inner.config
    }

    /// Checks that the database answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", || async {
            sqlx::query("SELECT 1")
                .execute(&self.inner.pool)
                .await
                .map(drop)?;
            Ok(())
        })
        .await
    }

    /// Closes the pool's connections; operations after this fail.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// Begins a transaction that writes: SQLite takes its write lock now (`BEGIN IMMEDIATE`),
    /// so that the transaction never has to upgrade a read lock.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.inner.backend {
            Backend::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool().begin().await,
        }
    }

    /// Begins a transaction that only reads, seeing one snapshot throughout.
    async fn begin_read(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.inner.backend {
            Backend::Sqlite => self.pool().begin().await,
            Backend::Postgres => {
                self.pool()
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await
            }
        }
    }

    /// Runs one operation under the configured timeout, retrying it (within that time)
    /// when the database aborted it only because of a concurrent one, and mapping failures.
    async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Fault>>,
    {
        let deadline = tokio::time::Instant::now() + self.inner.config.timeout;
        let mut attempt: u32 = 1;
        let result = loop {
            let result = tokio::time::timeout_at(deadline, f())
                .await
                .unwrap_or_else(|_| {
                    Err(Fault::Store(StoreError::Unavailable(
                        "timed out waiting for the database".into(),
                    )))
                });
            match result {
                Err(Fault::Sql(e))
                    if is_transient(&e) && tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(op, attempt, error = %e, "sql operation retried");
                    let pause = Duration::from_millis(5 << attempt.min(6));
                    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + pause))
                        .await;
                    attempt += 1;
                }
                other => break other,
            }
        };
        result.map_err(|fault| {
            let error = match fault {
                Fault::Sql(e) => sql_error(e),
                Fault::Store(e) => e,
            };
            if error.is_fault() {
                metrics::counter!("marie_store_errors_total", "store" => "sql", "op" => op)
                    .increment(1);
                tracing::debug!(op, error = %error, "sql operation failed");
            }
            error
        })
    }
}

/// Why an operation failed: the database, or what it held.
enum Fault {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Fault {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// Whether the database aborted an operation only because of a concurrent one, so that
/// running it again may succeed: a PostgreSQL serialization failure or deadlock, SQLite
/// busy or locked past its busy timeout.
fn is_transient(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    match db.code().as_deref() {
        Some("40001" | "40P01") => true,
        Some(code) => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
        None => false,
    }
}

/// A `sqlx` failure as a store error: the data could not be read (`Corrupt`), or the
/// database could not do what was asked (`Unavailable`). The text is for logs; clients see a
/// generic message.
fn sql_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(format!("sql: {e}")),
        e => StoreError::Unavailable(format!("sql: {e}")),
    }
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// A time or counter as the `BIGINT` columns keep it: the same 64 bits, so that every `u64`
/// comes back as it went in (times and sequence numbers stay far below `i64::MAX`, where
/// the order of the two agrees).
fn to_db(value: u64) -> i64 {
    value as i64
}

/// The inverse of [`to_db`].
fn from_db(value: i64) -> u64 {
    value as u64
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

fn from_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(corrupt)
}

/// Whether a statement changed a row.
fn changed(result: &AnyQueryResult) -> bool {
    result.rows_affected() > 0
}

/// Files in the same database as history: one node's (SQLite) or every node's (PostgreSQL).
/// The bytes are read whole into memory, as the engine needs them.
#[async_trait]
impl FileStore for SqlStore {
    async fn put(
        &self,
        meta: &FileMeta,
        data: Bytes,
        quota: Option<u64>,
    ) -> Result<PutOutcome, StoreError> {
        self.run("put_file", || self.store_file(meta, &data, quota))
            .await
    }

    async fn meta(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        self.run("file_meta", || self.file_meta(file)).await
    }

    async fn get(&self, file: &FileId) -> Result<Option<StoredFile>, StoreError> {
        self.run("get_file", || self.file(file)).await
    }

    async fn used_bytes(&self, user: &UserId) -> Result<u64, StoreError> {
        self.run("file_used_bytes", || self.file_bytes_used(user))
            .await
    }

    async fn delete(&self, file: &FileId) -> Result<Option<FileMeta>, StoreError> {
        self.run("delete_file", || self.remove_file(file)).await
    }

    async fn delete_conversation_files(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<FileMeta>, StoreError> {
        self.run("delete_conversation_files", || {
            self.remove_conversation_files(conversation)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_in_debug() {
        let c = SqlConfig::new("postgres://marie:hunter2@db.internal:5432/marie");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db.internal:5432/marie"), "{shown}");
        assert_eq!(
            redact("sqlite://data/marie.db?mode=rwc"),
            "sqlite://data/marie.db?mode=rwc"
        );
        assert_eq!(
            redact("postgres://db/marie?options[search_path]=a@b"),
            "postgres://db/marie?options[search_path]=a@b"
        );
    }

    #[test]
    fn the_url_picks_the_backend() {
        assert!(Backend::of("mysql://localhost/marie").is_err());
        assert!(Backend::of("marie.db").is_err());
        assert_eq!(
            Backend::of("sqlite://marie.db").ok(),
            cfg!(feature = "sqlite").then_some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of("postgresql://db/marie").ok(),
            cfg!(feature = "postgres").then_some(Backend::Postgres)
        );
    }

    #[test]
    fn times_round_trip_through_bigint() {
        for v in [0, 1, 1_700_000_000_000, u64::MAX / 2, u64::MAX] {
            assert_eq!(from_db(to_db(v)), v);
        }
    }
}
