//! # marie-axum
//!
//! Real-time AI chat for an axum app: [MARIE](https://github.com/marie-rs/marie)'s
//! Socket.IO protocol as a tower layer, on [socketioxide](https://docs.rs/socketioxide).
//!
//! Build a [`MarieLayer`] and a [`MarieHandle`] with [`Marie::builder`], giving it an
//! authenticator, a store and a model provider; add the layer to your `Router`. Clients
//! connect with any Socket.IO v5 client on `/socket.io/` (see `docs/protocol.md`).
//!
//! ```no_run
//! use marie_adapters::{MemoryStore, StaticAuthenticator};
//! use marie_axum::Marie;
//! use marie_core::{Identity, UserId};
//! use marie_llm::EchoProvider;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = StaticAuthenticator::new()
//!     .with_token("alice-token", Identity::new(UserId::parse("alice")?));
//! let (layer, _handle) = Marie::builder()
//!     .authenticator(auth)
//!     .store(MemoryStore::new())
//!     .provider(EchoProvider::default())
//!     .build()?;
//! let app = axum::Router::new().layer(layer);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(marie_axum::nodelay(listener), app).await?;
//! # Ok(()) }
//! ```
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | no | [`redis`]: the Socket.IO adapter for several nodes sharing a Redis (`socketioxide-redis` on a connection that reconnects by itself) |
//!
//! Backends (stores, control buses, providers) are picked in `marie-adapters` and
//! `marie-llm`.
//!
//! ## Metrics
//!
//! Recorded through the [`metrics`] facade; the library installs no recorder. The table of
//! every metric of MARIE (the engine's, the providers', the stores') is in
//! `docs/embedding.md`; this crate records:
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `marie_connections` | gauge | connected sockets on this node |
//! | `marie_rooms` | gauge | conversation rooms with a socket on this node |
//! | `marie_slow_clients_evicted_total` | counter | clients disconnected for not keeping up ([`DeliveryConfig`]) |
//! | `marie_broadcast_failures_total` | counter | bursts of stream events that could not be published to the other nodes (delivered on this node only) |
//! | `marie_redis_adapter_up` | gauge | `redis` feature: 1 while the adapter's Redis answers, 0 during an outage |
//!
//! ## Layout
//!
//! - `builder.rs`, `config.rs`, `layer.rs`, `handle.rs`: [`Marie::builder`] and what it
//!   returns; `state.rs`: what the front ends share.
//! - `commands/`: the command layer: the table of client commands, their checks and their
//!   bodies, which every front end goes through.
//! - `socketio/`: the Socket.IO front end (connect, one handler for every event, replies).
//! - `http/`: the HTTP front end (every command as `POST /api/chat/events/{event}`, SSE
//!   answers and resumes, files, health probes).
//! - `typing.rs`: `typing` → `user_typing`, volatile, throttled, ending by itself;
//!   `reads.rs`: `mark_read` → `read` to the room, volatile, throttled.
//! - `delivery/`: per-client delivery of stream events and replies (outboxes, the hub).
//! - `guards/`: limits and the `Origin` check.
//! - `rooms.rs`, `net.rs`, `owned_parts.rs`, `redis.rs`: room names, `TCP_NODELAY`, request
//!   parts, the Redis adapter.
//!
//! `docs/architecture.md` follows a message in and an answer out through these modules.

#[doc(hidden)]
pub mod __fuzz;
mod builder;
mod commands;
mod config;
mod delivery;
mod guards;
mod handle;
mod http;
mod layer;
mod net;
mod owned_parts;
mod reads;
#[cfg(feature = "redis")]
pub mod redis;
mod rooms;
mod socketio;
mod state;
mod typing;

pub use builder::{BuildError, Marie, MarieBuilder};
pub use config::MarieConfig;
pub use delivery::{DeliveryConfig, DeliveryStats, SocketIoSink};
pub use guards::limits::{self, Limits, Rate};
pub use guards::origin::{AllowedOrigins, OriginGuard};
pub use handle::MarieHandle;
pub use layer::MarieLayer;
pub use marie_core as core;
pub use net::nodelay;
pub use rooms::conversation_room;

/// The README's code compiles as shown.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
