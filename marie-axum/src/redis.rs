//! Several nodes: a Socket.IO adapter on Redis pub/sub (feature `redis`).
//!
//! [`socketioxide-redis`](socketioxide_redis) carries room broadcasts between the nodes that
//! share a Redis. Its own driver holds one connection that never comes back after Redis
//! restarts; [`ReconnectingDriver`] is a driver on a
//! [`ConnectionManager`] instead: it reconnects by itself,
//! subscribes to its channels again, fails fast while Redis is away (so that answers go on
//! for the members on the same node, see [`SocketIoSink`](crate::SocketIoSink)), and checks
//! Redis now and then so that a quiet node notices an outage and recovers from it too.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use marie_axum::Marie;
//! use marie_axum::redis::RedisAdapterOptions;
//!
//! let adapter = RedisAdapterOptions::new("redis://127.0.0.1:6379").connect().await?;
//! # let (auth, store, provider) = (marie_adapters::StaticAuthenticator::new(), marie_adapters::MemoryStore::new(), marie_llm::EchoProvider::default());
//! let (layer, handle) = Marie::builder()
//!     .authenticator(auth)
//!     .store(store)          // a shared store: marie_adapters::RedisStore
//!     .provider(provider)
//!     .redis(adapter)
//!     .build_async()
//!     .await?;
//! # let _ = (layer, handle);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value};
use socketioxide::adapter::{Adapter, Emitter};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{CustomRedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::sync::mpsc;

use crate::builder::MarieBuilder;

/// The Socket.IO adapter of a MARIE cluster: socketioxide-redis on a [`ReconnectingDriver`].
pub type RedisAdapter = CustomRedisAdapter<Emitter, ReconnectingDriver>;

/// What [`MarieBuilder::redis`] takes: the adapter's shared state (its driver and settings).
pub type RedisAdapterState = RedisAdapterCtr<ReconnectingDriver>;

impl<A: Adapter> MarieBuilder<A> {
    /// Cluster mode: room events reach the members connected to every node sharing the Redis
    /// of `adapter`. Build with [`build_async`](MarieBuilder::build_async).
    pub fn redis(self, adapter: RedisAdapterState) -> MarieBuilder<RedisAdapter> {
        self.with_adapter::<RedisAdapter>(adapter)
    }
}

/// How to reach Redis for the Socket.IO adapter.
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisAdapterOptions {
    /// `redis://[user:password@]host:port[/db]`. Needs Redis 6 or later (RESP3).
    pub url: String,
    /// Put before every channel name (`marie:sio`); nodes that serve the same users use the
    /// same prefix.
    pub prefix: String,
    /// The longest a publish may take before the broadcast fails (1 s). While Redis is away,
    /// publishing fails at once.
    pub timeout: Duration,
    /// The longest one attempt to open a connection may take (1 s).
    pub connect_timeout: Duration,
    /// How often the connection checks that Redis still answers (1 s).
    pub health_interval: Duration,
    /// How long to wait for the other nodes' answers to a request (socketioxide-redis's
    /// `request_timeout`, 5 s).
    pub request_timeout: Duration,
}

impl std::fmt::Debug for RedisAdapterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAdapterOptions")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("health_interval", &self.health_interval)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisAdapterOptions {
    /// The defaults, for the Redis at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "marie:sio".into(),
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            health_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
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

    /// Sets [`health_interval`](Self::health_interval).
    pub fn health_interval(mut self, interval: Duration) -> Self {
        self.health_interval = interval;
        self
    }

    /// Connects the driver and returns the adapter state for [`MarieBuilder::redis`].
    pub async fn connect(self) -> Result<RedisAdapterState, redis::RedisError> {
        let driver = ReconnectingDriver::connect(&self).await?;
        let config = RedisAdapterConfig::new()
            .with_prefix(self.prefix)
            .with_request_timeout(self.request_timeout);
        Ok(RedisAdapterCtr::new_with_driver(driver, config))
    }
}

type Handlers = HashMap<String, mpsc::Sender<ChanItem>>;

/// A socketioxide-redis [`Driver`] on a connection that reconnects and subscribes again by
/// itself. Clones share the connection.
#[derive(Clone)]
pub struct ReconnectingDriver {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    handlers: Arc<RwLock<Handlers>>,
    timeout: Duration,
    health_interval: Duration,
}

impl std::fmt::Debug for ReconnectingDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingDriver").finish_non_exhaustive()
    }
}

impl ReconnectingDriver {
    async fn connect(options: &RedisAdapterOptions) -> Result<Self, redis::RedisError> {
        let info = options.url.as_str().into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let handlers: Arc<RwLock<Handlers>> = Arc::default();
        let push = handlers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |msg: PushInfo| {
                deliver(&push, msg);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_response_timeout(Some(options.timeout))
            .set_connection_timeout(Some(options.connect_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = match tokio::time::timeout(
            options.timeout + options.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        {
            Ok(conn) => conn?,
            Err(_) => return Err(timed_out()),
        };
        let inner = Arc::new(Inner {
            conn,
            handlers,
            timeout: options.timeout,
            health_interval: options.health_interval,
        });
        tokio::spawn(health_check(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }

    async fn bounded<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>>,
    ) -> redis::RedisResult<T> {
        tokio::time::timeout(self.inner.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    }
}

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "timed out waiting for Redis"))
}

/// Hands a pushed message to the stream of its channel.
fn deliver(handlers: &RwLock<Handlers>, msg: PushInfo) {
    if !matches!(msg.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let [Value::BulkString(chan), Value::BulkString(payload)] = msg.data.as_slice() else {
        return;
    };
    let Ok(chan) = std::str::from_utf8(chan) else {
        return;
    };
    let handlers = handlers.read().unwrap_or_else(|e| e.into_inner());
    if let Some(tx) = handlers.get(chan)
        && let Err(e) = tx.try_send((chan.to_owned(), payload.clone()))
    {
        tracing::warn!(chan, error = %e, "socket.io adapter: channel full, message dropped");
    }
}

/// Pings Redis now and then while the driver exists: a failed ping makes the connection
/// manager reconnect, and subscribe again, as soon as Redis is back.
async fn health_check(inner: Weak<Inner>) {
    let mut healthy = true;
    loop {
        let Some(interval) = inner.upgrade().map(|i| i.health_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some((mut conn, timeout)) = inner.upgrade().map(|i| (i.conn.clone(), i.timeout)) else {
            return;
        };
        let ok = matches!(
            tokio::time::timeout(timeout, redis::cmd("PING").query_async::<Value>(&mut conn)).await,
            Ok(Ok(_))
        );
        if ok != healthy {
            if ok {
                tracing::info!("socket.io adapter: Redis answers again");
            } else {
                tracing::warn!("socket.io adapter: Redis does not answer; reconnecting");
            }
            metrics::gauge!("marie_redis_adapter_up").set(if ok { 1.0 } else { 0.0 });
            healthy = ok;
        }
    }
}

impl Driver for ReconnectingDriver {
    type Error = redis::RedisError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        let mut conn = self.inner.conn.clone();
        self.bounded(conn.publish::<_, _, Value>(chan, val))
            .await
            .map(drop)
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        // The handler first, so that no message arriving right after SUBSCRIBE is lost.
        let (tx, rx) = mpsc::channel(size);
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(chan.clone(), tx);
        let mut conn = self.inner.conn.clone();
        if let Err(e) = self.bounded(conn.subscribe(chan.as_str())).await {
            self.inner
                .handlers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&chan);
            return Err(e);
        }
        Ok(MessageStream::new(rx))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.inner
            .handlers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&chan);
        let mut conn = self.inner.conn.clone();
        self.bounded(conn.unsubscribe(chan)).await
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let mut conn = self.inner.conn.clone();
        let (_, count): (String, u16) = self
            .bounded(
                redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(chan)
                    .query_async(&mut conn),
            )
            .await?;
        Ok(count)
    }
}
