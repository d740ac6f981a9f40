//! Redis backends: [`RedisStore`] (a [`RoomStore`](marie_core::RoomStore)) and
//! [`RedisControlBus`] (a [`ControlBus`](marie_core::ControlBus)), for several MARIE nodes
//! sharing one Redis.
//!
//! ## Keys
//!
//! Every key starts with the configured prefix (`marie` by default). A conversation's keys
//! carry its id as a hash tag, `{<conversation_id>}`, so they all live in one slot of a Redis
//! Cluster and the scripts that touch several of them stay valid there.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:conv:{<id>}:info` | string | the conversation's record (JSON) |
//! | `<prefix>:conv:{<id>}:members` | sorted set | users with access, scored in the order they were let in |
//! | `<prefix>:conv:{<id>}:ids` | sorted set | message ids (all score 0: ordered by id, i.e. by time) |
//! | `<prefix>:conv:{<id>}:msgs` | hash | message id → message (JSON) |
//! | `<prefix>:conv:{<id>}:tree` | hash | message id → `"<depth> <parent id>"` |
//! | `<prefix>:conv:{<id>}:kids` | hash | parent id (`""`: first messages) → its children's ids, comma-separated, oldest first |
//! | `<prefix>:conv:{<id>}:path` | list | the active branch's message ids, oldest first |
//! | `<prefix>:conv:{<id>}:order` | sorted set | message ids scored by their storage position: the order they were stored in (an answer is stored when it ends, after what was posted meanwhile, though its id is older); a replaced message keeps its score |
//! | `<prefix>:conv:{<id>}:seq` | string | the last storage position given out (`INCR`; positions are never reused, so it goes with the conversation, not with its history) |
//! | `<prefix>:conv:{<id>}:reads` | hash | member → `"<position> <message id>"`: the storage position of the last message they marked read (never moves back) and its id; a list's `unread` is the `ZCOUNT` of `order` after the position (`ZCARD` of `ids` without a mark), at most 100 |
//! | `<prefix>:conv:{<id>}:queue` | list | the sends waiting their turn, next first: `"<stream id> <JSON>"` |
//! | `<prefix>:conv:{<id>}:answer` | hash | the running answer's lease: `stream_id`, `seq`; expires unless renewed |
//! | `<prefix>:usage:{<user_id>}:<start>-<end>` | string | tokens the user used in a budget window; expires a day after it |
//! | `<prefix>:session:{<id>}` | string | a session (JSON); expires with the session |
//! | `<prefix>:log:{<stream_id>}` | stream | an answer's chunks, entry id = `seq` ([`RedisStreamLog`]) |
//! | `<prefix>:log:{<stream_id>}:meta` | hash | the answer's log: `meta`, `first`, `last`, `end` |
//!
//! Control messages travel on the pub/sub channel `<prefix>:control`.
//!
//! ## When Redis goes away
//!
//! Connections are [`ConnectionManager`]s: they reconnect by
//! themselves (the bus subscribes again), and every operation gives up after
//! [`RedisConfig::timeout`] with [`StoreError::Unavailable`](marie_core::StoreError) rather
//! than wait for Redis to come back.

mod bus;
mod log;
mod store;

use std::time::Duration;

use marie_core::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion};

pub use bus::RedisControlBus;
pub use log::RedisStreamLog;
pub use store::RedisStore;

/// Where Redis is and how MARIE uses it. `RedisConfig::new(url)` fits most deployments.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (or `rediss://` with a TLS-enabled `redis`).
    pub url: String,
    /// Put before every key and channel name (`marie`). Nodes that serve the same users must
    /// use the same prefix; different apps on one Redis use different ones.
    pub prefix: String,
    /// The longest one operation may take, reconnecting included, before it fails with
    /// `StoreError::Unavailable` (2 s).
    pub timeout: Duration,
    /// The longest one attempt to open a connection may take (1 s).
    pub connect_timeout: Duration,
    /// When set, a conversation (record, members, history) expires after this long without a
    /// new message or invite: the history TTL. `None` (the default) keeps conversations.
    pub conversation_ttl: Option<Duration>,
    /// When set, keeps only the newest this many messages per conversation.
    pub history_limit: Option<usize>,
    /// How often an idle pub/sub connection checks that Redis still answers, so that it
    /// reconnects and subscribes again soon after an outage (1 s).
    pub health_interval: Duration,
}

impl RedisConfig {
    /// The defaults, for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "marie".into(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            conversation_ttl: None,
            history_limit: None,
            health_interval: Duration::from_secs(1),
        }
    }

    /// Sets [`prefix`](Self::prefix).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`conversation_ttl`](Self::conversation_ttl).
    pub fn conversation_ttl(mut self, ttl: Duration) -> Self {
        self.conversation_ttl = Some(ttl);
        self
    }

    /// Sets [`history_limit`](Self::history_limit).
    pub fn history_limit(mut self, messages: usize) -> Self {
        self.history_limit = Some(messages.max(1));
        self
    }

    /// Sets [`health_interval`](Self::health_interval).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// Checks the settings that cannot work.
    fn validate(&self) -> Result<(), StoreError> {
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(StoreError::Unavailable(
                "the Redis key prefix must be non-empty and hold no braces".into(),
            ));
        }
        Ok(())
    }

    /// A connection manager to this Redis, RESP3 when `push` is set.
    async fn connect(
        &self,
        push: Option<ConnectionManagerConfig>,
    ) -> Result<ConnectionManager, StoreError> {
        self.validate()?;
        let resp3 = push.is_some();
        let mut info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        if resp3 {
            let settings = info
                .redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3);
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(unavailable)?;
        let config = push
            .unwrap_or_default()
            .set_response_timeout(Some(self.timeout))
            .set_connection_timeout(Some(self.connect_timeout))
            // Fail fast while Redis is away: one retry, then the next command tries again.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        match tokio::time::timeout(
            self.timeout + self.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(Ok(manager)) => Ok(manager),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(
                "timed out connecting to Redis".into(),
            )),
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("conversation_ttl", &self.conversation_ttl)
            .field("history_limit", &self.history_limit)
            .field("health_interval", &self.health_interval)
            .finish()
    }
}

/// The URL without its credentials, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// A Redis failure as a store error. The text is for logs; clients see a generic message.
fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("redis: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_in_debug() {
        let c = RedisConfig::new("redis://user:hunter2@example:6379/0");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("example:6379"), "{shown}");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        assert!(
            RedisConfig::new("redis://x")
                .prefix("a{b")
                .validate()
                .is_err()
        );
        assert!(RedisConfig::new("redis://x").prefix("").validate().is_err());
        assert!(
            RedisConfig::new("redis://x")
                .prefix("app:1")
                .validate()
                .is_ok()
        );
    }
}
