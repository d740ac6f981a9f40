//! [`MarieBuilder`]: backends and settings in, `(MarieLayer, MarieHandle)` out.

use std::future::Future;
use std::sync::Arc;

use marie_core::{
    AccessPolicy, Authenticator, BudgetPolicy, ChatEngine, ControlBus, DefaultAccessPolicy,
    FileStore, LlmProvider, Stores, StreamLog, Tool, Toolbox, ToolboxError,
};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::{ParserConfig, SocketIo, TransportType};
use socketioxide_core::adapter::{DefinedAdapter, Spawnable};

use crate::config::MarieConfig;
use crate::delivery::{Hub, SocketIoSink};
use crate::guards::Guards;
use crate::guards::limits::Limits;
use crate::guards::origin::AllowedOrigins;
use crate::handle::MarieHandle;
use crate::layer::MarieLayer;
use crate::reads::ReadBoard;
use crate::rooms::RoomCounts;
use crate::socketio;
use crate::state::NodeState;
use crate::typing::TypingBoard;

/// Why [`MarieBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A required backend was not given.
    #[error("MARIE needs a {0}: call MarieBuilder::{0}(...)")]
    Missing(&'static str),
    /// The Socket.IO adapter could not start (a cluster adapter could not subscribe).
    #[error("the Socket.IO adapter could not start: {0}")]
    Adapter(String),
    /// A tool cannot be offered (its name is invalid or taken, or its schema is invalid).
    #[error(transparent)]
    Tool(#[from] ToolboxError),
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
///
/// ## Several nodes
///
/// Behind a load balancer, every node gets the same shared backends: a shared store (which
/// also holds the leases of running answers), a [`ControlBus`] that reaches the other nodes
/// ([`control_bus`](Self::control_bus)), and a Socket.IO adapter that carries room events
/// between them ([`with_adapter`](Self::with_adapter); with the `redis` feature,
/// [`redis`](Self::redis)). Build with [`build_async`](Self::build_async) so that the
/// adapter is subscribed before the first client connects. See `docs/cluster.md`.
#[must_use]
pub struct MarieBuilder<A: Adapter = LocalAdapter> {
    authenticator: Option<Arc<dyn Authenticator>>,
    stores: Option<Stores>,
    provider: Option<Arc<dyn LlmProvider>>,
    policy: Option<Arc<dyn AccessPolicy>>,
    bus: Option<Arc<dyn ControlBus>>,
    log: Option<Arc<dyn StreamLog>>,
    tools: Toolbox,
    budget: Option<Arc<dyn BudgetPolicy>>,
    files: Option<Arc<dyn FileStore>>,
    /// The first tool that could not be added: [`build`](Self::build) reports it.
    tool_error: Option<ToolboxError>,
    adapter: A::State,
    config: MarieConfig,
}

impl Default for MarieBuilder {
    fn default() -> Self {
        Self {
            authenticator: None,
            stores: None,
            provider: None,
            policy: None,
            bus: None,
            log: None,
            tools: Toolbox::new(),
            budget: None,
            files: None,
            tool_error: None,
            adapter: (),
            config: MarieConfig::default(),
        }
    }
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

impl<A: Adapter> MarieBuilder<A> {
    /// Who may connect. Takes any [`Authenticator`], `Arc<dyn Authenticator>` included.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticator = Some(Arc::new(authenticator));
        self
    }

    /// Where conversations, history, sessions and the rest live: one
    /// [`RoomStore`](marie_core::RoomStore) (`MemoryStore`, `RedisStore`, `SqlStore`, yours),
    /// or [`Stores`] given in parts (history in PostgreSQL, leases and queues in Redis, say).
    pub fn store(mut self, store: impl Into<Stores>) -> Self {
        self.stores = Some(store.into());
        self
    }

    /// The model that answers.
    pub fn provider(mut self, provider: impl LlmProvider) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }

    /// Offers a tool to the model (see [`Tool`]; [`marie_core::tool_fn`] makes one of a
    /// closure). A tool whose name is invalid or taken, or whose schema is not a valid JSON
    /// Schema, makes [`build`](Self::build) fail with [`BuildError::Tool`].
    pub fn tool(mut self, tool: impl Tool) -> Self {
        if let Err(e) = self.tools.add(Arc::new(tool)) {
            self.tool_error.get_or_insert(e);
        }
        self
    }

    /// Gives users token budgets (a fixed [`marie_core::Budget`] gives everyone the same;
    /// [`marie_core::budget_fn`] decides per user). Usage is counted in the store, so a
    /// cluster's nodes share one figure per user. Without one, nothing is counted.
    pub fn budget(mut self, policy: impl BudgetPolicy) -> Self {
        self.budget = Some(Arc::new(policy));
        self
    }

    /// Takes files from users: `POST /api/chat/files` stores them in `store`, and
    /// `send_message.attachments` names them (see `docs/protocol.md`, "Files"). Without one,
    /// uploads answer `404 not_found` and a message with attachments is refused.
    pub fn files(mut self, store: impl FileStore) -> Self {
        self.files = Some(Arc::new(store));
        self
    }

    /// Who may join and invite ([`DefaultAccessPolicy`] when not set).
    pub fn policy(mut self, policy: impl AccessPolicy) -> Self {
        self.policy = Some(Arc::new(policy));
        self
    }

    /// How nodes send each other what Socket.IO does not carry (`cancel_stream` for an
    /// answer running on another node). The default, an in-process bus, serves one node.
    pub fn control_bus(mut self, bus: impl ControlBus) -> Self {
        self.bus = Some(Arc::new(bus));
        self
    }

    /// Replaces the Socket.IO adapter (the default, [`LocalAdapter`], serves one node) with
    /// `B`, built from `state`: for instance a cluster adapter, so that room events reach
    /// the members connected to other nodes.
    pub fn with_adapter<B: Adapter>(self, state: B::State) -> MarieBuilder<B> {
        MarieBuilder {
            authenticator: self.authenticator,
            stores: self.stores,
            provider: self.provider,
            policy: self.policy,
            bus: self.bus,
            log: self.log,
            tools: self.tools,
            budget: self.budget,
            files: self.files,
            tool_error: self.tool_error,
            adapter: state,
            config: self.config,
        }
    }

    /// Where every chunk is recorded for resuming (the default, an in-memory ring buffer,
    /// serves one node; give the nodes of a cluster a shared one, such as
    /// `marie_adapters::RedisStreamLog`, so that a stream resumes on any node).
    pub fn stream_log(mut self, log: impl StreamLog) -> Self {
        self.log = Some(Arc::new(log));
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: MarieConfig) -> Self {
        self.config = config;
        self
    }

    /// The models conversations may use, the first the default: a member picks one with
    /// `update_conversation.model`, and the provider gets it in `LlmRequest::model` (see
    /// [`EngineConfig::models`](marie_core::EngineConfig::models)). Call it after
    /// [`config`](Self::config), which replaces the whole configuration.
    pub fn models<I, S>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.config.engine = std::mem::take(&mut self.config.engine).models(models);
        self
    }

    /// How conversations get their titles (see [`TitlePolicy`](marie_core::TitlePolicy)).
    /// Call it after [`config`](Self::config).
    pub fn titles(mut self, policy: marie_core::TitlePolicy) -> Self {
        self.config.engine.titles = policy;
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

    /// Per-event, per-socket and per-user limits (`docs/security.md`).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Only these `Origin`s may open the Socket.IO endpoint; others get `403`.
    pub fn allowed_origins(mut self, origins: AllowedOrigins) -> Self {
        self.config.allowed_origins = origins;
        self
    }

    /// Builds the layer to add to an axum `Router` and the handle to drive it from outside.
    ///
    /// With a cluster adapter, its initialization (subscribing to Redis, for instance) runs
    /// in the background and a failure is only logged; prefer
    /// [`build_async`](Self::build_async) there.
    pub fn build(self) -> Result<(MarieLayer<A>, MarieHandle<A>), BuildError>
    where
        A: DefinedAdapter,
    {
        let (layer, handle, init) = self.assemble()?;
        init.spawn();
        Ok((layer, handle))
    }

    /// Builds like [`build`](Self::build), then waits until the Socket.IO adapter is
    /// initialized (a cluster adapter has subscribed), so that events other nodes send to
    /// this node's clients arrive from its first connection on.
    pub async fn build_async<E>(self) -> Result<(MarieLayer<A>, MarieHandle<A>), BuildError>
    where
        A: DefinedAdapter,
        A::InitRes: Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        let (layer, handle, init) = self.assemble()?;
        init.await.map_err(|e| BuildError::Adapter(e.to_string()))?;
        Ok((layer, handle))
    }

    fn assemble(self) -> Result<Assembled<A>, BuildError>
    where
        A: DefinedAdapter,
    {
        let authenticator = self
            .authenticator
            .ok_or(BuildError::Missing("authenticator"))?;
        let stores = self.stores.ok_or(BuildError::Missing("store"))?;
        let provider = self.provider.ok_or(BuildError::Missing("provider"))?;
        let policy = self.policy.unwrap_or_else(|| Arc::new(DefaultAccessPolicy));
        if let Some(e) = self.tool_error {
            return Err(e.into());
        }
        let config = self.config;

        let (layer, io) = SocketIo::builder()
            .ping_interval(config.ping_interval)
            .ping_timeout(config.ping_timeout)
            .max_payload(config.max_payload)
            // socketioxide applies `max_payload` to long-polling only; WebSocket messages
            // have their own limits (64 MiB by default): hold them to the same.
            .ws_max_message_size(usize::try_from(config.max_payload).unwrap_or(usize::MAX))
            .ws_max_frame_size(usize::try_from(config.max_payload).unwrap_or(usize::MAX))
            .ws_read_buffer_size(config.ws_read_buffer_size.max(64))
            .with_parser(
                ParserConfig::common()
                    .max_incoming_binaries(config.limits.hard_binary_attachments)
                    .max_incoming_binary_buf_size(
                        usize::try_from(config.max_payload).unwrap_or(usize::MAX),
                    ),
            )
            .transports([TransportType::Polling, TransportType::Websocket])
            .with_adapter::<A>(self.adapter)
            .build_layer();
        let log = self
            .log
            .unwrap_or_else(|| Arc::new(marie_core::MemoryStreamLog::new()));
        let hub = Hub::new(
            io.clone(),
            config.namespace.clone(),
            log.clone(),
            config.delivery.clone(),
            self.bus.clone(),
        );
        let sink = SocketIoSink::with_hub(hub.clone());
        let mut engine = ChatEngine::builder(stores, provider, Arc::new(sink))
            .policy(policy)
            .stream_log(log)
            .tools(self.tools)
            .config(config.engine.clone());
        if let Some(bus) = self.bus {
            engine = engine.control_bus(bus);
        }
        if let Some(budget) = self.budget {
            engine = engine.budget(budget);
        }
        if let Some(files) = self.files {
            engine = engine.files(files);
        }
        let guards = Guards::new(config.limits.clone());
        let typing = TypingBoard::new(io.clone(), config.namespace.clone(), config.typing_timeout);
        let reads = ReadBoard::new(io.clone(), config.namespace.clone());
        let shared = Arc::new(NodeState {
            engine: engine.build(),
            authenticator,
            io,
            config,
            rooms: RoomCounts::default(),
            hub,
            guards,
            typing,
            reads,
        });
        shared
            .hub
            .on_notice(socketio::notices::handler(Arc::downgrade(&shared)));
        let init = socketio::register(&shared);
        let layer = MarieLayer::new(layer, shared.config.allowed_origins.clone());
        Ok((layer, MarieHandle::new(shared), init))
    }
}

/// The layer, the handle, and the adapter's initialization still to run.
type Assembled<A> = (
    MarieLayer<A>,
    MarieHandle<A>,
    <A as socketioxide_core::adapter::CoreAdapter<socketioxide::adapter::Emitter>>::InitRes,
);
