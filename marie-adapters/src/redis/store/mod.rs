//! [`RedisStore`]: every store trait of `marie-core` in Redis, shared by every node.
//!
//! ## Layout
//!
//! `mod.rs`: the store, its connection and what every concern shares (keys, errors, JSON);
//! then one file per concern, each with its Lua scripts, its keys and its trait's impl:
//! `conversations.rs`, `history.rs` (the tree of branches), `sessions.rs`, `leases.rs`,
//! `approvals.rs`, `queue.rs`, `usage.rs`.

mod approvals;
mod conversations;
mod history;
mod leases;
mod queue;
mod sessions;
mod usage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use marie_core::{ChatMessage, ConversationId, MessageId, StoreError};
use redis::aio::ConnectionManager;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RedisConfig, unavailable};

/// Refreshes the TTL of every key passed (a no-op without one): shared by the write scripts.
pub(super) const TOUCH: &str = r"
local function touch(ttl)
  if tonumber(ttl) > 0 then
    for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
";

/// Every store trait of `marie-core` (so a [`RoomStore`](marie_core::RoomStore)) in Redis:
/// conversations, access lists, history, sessions, the leases of running answers, approvals,
/// queued sends and token usage, shared by every node that uses the same Redis and prefix.
///
/// Cheap to clone; clones share one multiplexed connection, which reconnects by itself. See
/// the [module docs](crate::redis) for the key layout.
///
/// ```no_run
/// # async fn run() -> Result<(), marie_core::StoreError> {
/// use marie_adapters::{RedisConfig, RedisStore};
///
/// let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The keys of one conversation.
pub(super) struct ConvKeys {
    info: String,
    members: String,
    ids: String,
    msgs: String,
    tree: String,
    kids: String,
    path: String,
    order: String,
    seq: String,
    reads: String,
}

impl ConvKeys {
    /// In the order the scripts take them (the read marks last: no script of history reads
    /// them, but each one that refreshes the conversation's TTL refreshes theirs too).
    pub(super) fn all(&self) -> [&str; 10] {
        [
            &self.info,
            &self.members,
            &self.ids,
            &self.msgs,
            &self.tree,
            &self.kids,
            &self.path,
            &self.order,
            &self.seq,
            &self.reads,
        ]
    }
}

impl RedisStore {
    /// Connects to Redis. Fails when Redis cannot be reached now; once connected, the store
    /// reconnects by itself.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let conn = config.connect(None).await?;
        Ok(Self {
            inner: Arc::new(Inner { conn, config }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Checks that Redis answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(drop)
    }

    pub(super) fn conv_keys(&self, conversation: &ConversationId) -> ConvKeys {
        let base = format!("{}:conv:{{{conversation}}}", self.inner.config.prefix);
        ConvKeys {
            info: format!("{base}:info"),
            members: format!("{base}:members"),
            ids: format!("{base}:ids"),
            msgs: format!("{base}:msgs"),
            tree: format!("{base}:tree"),
            kids: format!("{base}:kids"),
            path: format!("{base}:path"),
            order: format!("{base}:order"),
            seq: format!("{base}:seq"),
            reads: format!("{base}:reads"),
        }
    }

    pub(super) fn ttl_ms(&self) -> u64 {
        self.inner
            .config
            .conversation_ttl
            .map_or(0, |t| millis(t).max(1))
    }

    /// Runs one Redis operation under the configured timeout, mapping failures.
    pub(super) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = tokio::time::timeout(self.inner.config.timeout, f(self.inner.conn.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "timed out waiting for Redis",
                )))
            });
        result.map_err(|e| {
            metrics::counter!("marie_store_errors_total", "store" => "redis", "op" => op)
                .increment(1);
            tracing::debug!(op, error = %e, "redis operation failed");
            unavailable(e)
        })
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: DeserializeOwned>(raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn message_id(raw: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A stored message, with the parent its tree node names (history written before branches
/// has no `parent_id` in its JSON).
pub(super) fn read_message(json: &str, parent: &str) -> Result<ChatMessage, StoreError> {
    let mut message: ChatMessage = from_json(json)?;
    message.parent_id = (!parent.is_empty())
        .then(|| message_id(parent))
        .transpose()?;
    Ok(message)
}
