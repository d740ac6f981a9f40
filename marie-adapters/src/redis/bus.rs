//! [`RedisControlBus`]: control messages over Redis pub/sub.

use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use marie_core::{ControlBus, ControlHandler, ControlMessage, StoreError};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushInfo, PushKind, Value};

use super::{RedisConfig, unavailable};

/// A [`ControlBus`] on Redis pub/sub: every node subscribes to `<prefix>:control`.
///
/// The subscription lives on a RESP3 connection that reconnects and subscribes again by
/// itself; a health check every [`RedisConfig::health_interval`] makes it notice an outage
/// and try again even when nothing is published. Messages published while a node is cut off
/// are lost for that node (pub/sub keeps nothing).
///
/// ```no_run
/// # async fn run() -> Result<(), marie_core::StoreError> {
/// use marie_adapters::{RedisConfig, RedisControlBus};
///
/// let bus = RedisControlBus::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// # let _ = bus;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisControlBus {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    channel: String,
    config: RedisConfig,
    handlers: Arc<Mutex<Vec<ControlHandler>>>,
}

impl std::fmt::Debug for RedisControlBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisControlBus")
            .field("channel", &self.inner.channel)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl RedisControlBus {
    /// Connects and subscribes. Needs Redis 6 or later (RESP3).
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let handlers: Arc<Mutex<Vec<ControlHandler>>> = Arc::default();
        let channel = format!("{}:control", config.prefix);
        let push = {
            let handlers = handlers.clone();
            let channel = channel.clone();
            ConnectionManagerConfig::new()
                .set_push_sender(move |push: PushInfo| {
                    deliver(&channel, &handlers, push);
                    Ok::<(), std::convert::Infallible>(())
                })
                .set_automatic_resubscription()
        };
        let mut conn = config.connect(Some(push)).await?;
        tokio::time::timeout(config.timeout, conn.subscribe(&channel))
            .await
            .map_err(|_| StoreError::Unavailable("timed out subscribing".into()))?
            .map_err(unavailable)?;
        let inner = Arc::new(Inner {
            conn,
            channel,
            config,
            handlers,
        });
        tokio::spawn(health_check(Arc::downgrade(&inner)));
        Ok(Self { inner })
    }
}

/// Hands a pushed message of our channel to every handler.
fn deliver(channel: &str, handlers: &Mutex<Vec<ControlHandler>>, push: PushInfo) {
    if push.kind != PushKind::Message {
        return;
    }
    let [Value::BulkString(chan), Value::BulkString(payload)] = push.data.as_slice() else {
        return;
    };
    if chan.as_slice() != channel.as_bytes() {
        return;
    }
    let message = match serde_json::from_slice::<ControlMessage>(payload) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring a control message MARIE cannot read");
            return;
        }
    };
    let handlers = handlers.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for handler in handlers {
        handler(message.clone());
    }
}

/// Pings Redis now and then for as long as the bus exists: a failed ping makes the
/// connection manager reconnect (and subscribe again) once Redis is back, even on a node
/// that publishes nothing.
async fn health_check(inner: Weak<Inner>) {
    let mut healthy = true;
    loop {
        let Some(interval) = inner.upgrade().map(|i| i.config.health_interval) else {
            return;
        };
        tokio::time::sleep(interval).await;
        let Some((mut conn, timeout)) = inner.upgrade().map(|i| (i.conn.clone(), i.config.timeout))
        else {
            return;
        };
        let ok = matches!(
            tokio::time::timeout(timeout, redis::cmd("PING").query_async::<Value>(&mut conn)).await,
            Ok(Ok(_))
        );
        if ok != healthy {
            if ok {
                tracing::info!("control bus: Redis answers again");
            } else {
                tracing::warn!("control bus: Redis does not answer; reconnecting");
            }
            metrics::gauge!("marie_redis_bus_up").set(if ok { 1.0 } else { 0.0 });
            healthy = ok;
        }
    }
}

#[async_trait]
impl ControlBus for RedisControlBus {
    async fn publish(&self, message: ControlMessage) -> Result<(), StoreError> {
        let payload =
            serde_json::to_vec(&message).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.inner.conn.clone();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.inner.channel).arg(payload);
        let published = publish.query_async::<()>(&mut conn);
        match tokio::time::timeout(self.inner.config.timeout, published).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(StoreError::Unavailable(
                "timed out publishing a control message".into(),
            )),
        }
    }

    fn subscribe(&self, handler: ControlHandler) {
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler);
    }
}
