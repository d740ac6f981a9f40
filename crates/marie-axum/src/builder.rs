//! [`MarieBuilder`]: backends and settings in, `(MarieLayer, MarieHandle)` out.

use std::sync::Arc;
use std::time::Duration;

use marie_core::{
    AccessPolicy, Authenticator, ChatEngine, ConversationId, DefaultAccessPolicy, EngineConfig,
    LlmProvider, RoomStore,
};
use serde::Serialize;
use socketioxide::layer::SocketIoLayer;
use socketioxide::service::SocketIoService;
use socketioxide::{SocketIo, TransportType};
use tower_layer::Layer;

use crate::handlers;
use crate::rooms::{RoomCounts, conversation_room};
use crate::sink::SocketIoSink;

/// Settings of the Socket.IO front end. `Default` follows PROTOCOL.md.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MarieConfig {
    /// The Socket.IO namespace the protocol is mounted on (`"/"`).
    pub namespace: String,
    /// Accept `?token=` in the handshake URL when the CONNECT `auth` has none (the seed's
    /// way, off by default: URLs end up in logs and proxies).
    pub allow_query_token: bool,
    /// How long a session can be resumed after its last change.
    pub session_ttl: Duration,
    /// Engine.IO ping interval (25 s).
    pub ping_interval: Duration,
    /// Engine.IO ping timeout (60 s).
    pub ping_timeout: Duration,
    /// The largest HTTP long-polling payload, in bytes.
    pub max_payload: u64,
    /// The engine's limits.
    pub engine: EngineConfig,
}

impl Default for MarieConfig {
    fn default() -> Self {
        Self {
            namespace: "/".into(),
            allow_query_token: false,
            session_ttl: Duration::from_secs(3600),
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(60),
            max_payload: 1024 * 1024,
            engine: EngineConfig::default(),
        }
    }
}

/// What the handlers share: built once, cheap to clone behind an `Arc`.
pub(crate) struct Shared {
    pub(crate) engine: ChatEngine,
    pub(crate) authenticator: Arc<dyn Authenticator>,
    pub(crate) io: SocketIo,
    pub(crate) config: MarieConfig,
    pub(crate) rooms: RoomCounts,
}

/// Why [`MarieBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required backend was not given.
    #[error("MARIE needs a {0}: call MarieBuilder::{0}(...)")]
    Missing(&'static str),
}

/// Builds MARIE's tower layer and its handle.
///
/// ```
/// use marie_adapters::{MemoryStore, StaticAuthenticator};
/// use marie_axum::Marie;
/// use marie_llm::EchoProvider;
///
/// let (layer, handle) = Marie::builder()
///     .authenticator(StaticAuthenticator::new())
///     .store(MemoryStore::new())
///     .provider(EchoProvider::default())
///     .build()
///     .expect("all backends given");
/// let app: axum::Router = axum::Router::new().layer(layer);
/// # let _ = (app, handle);
/// ```
#[derive(Default)]
#[must_use]
pub struct MarieBuilder {
    authenticator: Option<Arc<dyn Authenticator>>,
    store: Option<Arc<dyn RoomStore>>,
    provider: Option<Arc<dyn LlmProvider>>,
    policy: Option<Arc<dyn AccessPolicy>>,
    config: MarieConfig,
}

/// The entry point: [`Marie::builder`].
#[derive(Debug)]
pub struct Marie;

impl Marie {
    /// Starts building.
    pub fn builder() -> MarieBuilder {
        MarieBuilder::default()
    }
}

impl MarieBuilder {
    /// Who may connect. Takes any [`Authenticator`], `Arc<dyn Authenticator>` included.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Where conversations, history and sessions live.
    pub fn store(mut self, store: impl RoomStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The model that answers.
    pub fn provider(mut self, provider: impl LlmProvider) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }

    /// Who may join and invite ([`DefaultAccessPolicy`] when not set).
    pub fn policy(mut self, policy: impl AccessPolicy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: MarieConfig) -> Self {
        self.config = config;
        self
    }

    /// Mounts the protocol on another namespace (e.g. `/chat`).
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config.namespace = namespace.into();
        self
    }

    /// Accepts `?token=` in the handshake URL (seed compatibility; off by default).
    pub fn allow_query_token(mut self, allow: bool) -> Self {
        self.config.allow_query_token = allow;
        self
    }

    /// Builds the layer to add to an axum `Router` and the handle to drive it from outside.
    pub fn build(self) -> Result<(MarieLayer, MarieHandle), BuildError> {
        let authenticator = self
            .authenticator
            .ok_or(BuildError::Missing("authenticator"))?;
        let store = self.store.ok_or(BuildError::Missing("store"))?;
        let provider = self.provider.ok_or(BuildError::Missing("provider"))?;
        let policy = self.policy.unwrap_or_else(|| Arc::new(DefaultAccessPolicy));
        let config = self.config;

        let (layer, io) = SocketIo::builder()
            .ping_interval(config.ping_interval)
            .ping_timeout(config.ping_timeout)
            .max_payload(config.max_payload)
            .transports([TransportType::Polling, TransportType::Websocket])
            .build_layer();
        let sink = SocketIoSink::new(io.clone(), config.namespace.clone());
        let engine = ChatEngine::builder(store, provider, Arc::new(sink))
            .policy(policy)
            .config(config.engine.clone())
            .build();
        let shared = Arc::new(Shared {
            engine,
            authenticator,
            io,
            config,
            rooms: RoomCounts::default(),
        });
        handlers::register(&shared);
        Ok((MarieLayer { inner: layer }, MarieHandle { shared }))
    }
}

/// The tower layer that serves MARIE's Socket.IO endpoint (`/socket.io/`) in front of the
/// app's own routes. Add it to an axum `Router` with `.layer(...)`.
#[derive(Clone)]
pub struct MarieLayer {
    inner: SocketIoLayer,
}

impl std::fmt::Debug for MarieLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarieLayer").finish_non_exhaustive()
    }
}

impl<S: Clone> Layer<S> for MarieLayer {
    type Service = SocketIoService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.inner.layer(inner)
    }
}

/// Drives MARIE from outside the handlers: emit to a conversation, announce, shut down.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct MarieHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MarieHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarieHandle")
            .field("engine", &self.shared.engine)
            .finish_non_exhaustive()
    }
}

impl MarieHandle {
    /// The engine, to run commands on behalf of a user (from HTTP routes, jobs, ...).
    pub fn engine(&self) -> &ChatEngine {
        &self.shared.engine
    }

    /// The underlying socketioxide handle.
    pub fn io(&self) -> &SocketIo {
        &self.shared.io
    }

    /// Sends `event` with `data` to every member of `conversation`.
    pub async fn emit_to_conversation<T: Serialize + ?Sized>(
        &self,
        conversation: &ConversationId,
        event: &str,
        data: &T,
    ) -> Result<(), socketioxide::BroadcastError> {
        match self.shared.io.of(&self.shared.config.namespace) {
            Some(ns) => {
                ns.to(conversation_room(conversation))
                    .emit(event, data)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Sends `announcement {message}` to every connected client.
    pub async fn announce(&self, message: &str) -> Result<(), socketioxide::BroadcastError> {
        match self.shared.io.of(&self.shared.config.namespace) {
            Some(ns) => {
                ns.emit("announcement", &serde_json::json!({ "message": message }))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Graceful shutdown: running answers get up to `grace` to finish, the rest end with
    /// `stream_end {status:"interrupted"}`; then every socket is closed.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.engine.shutdown(grace).await;
        self.shared.io.close().await;
    }
}
