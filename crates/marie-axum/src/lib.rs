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
//! Recorded through the [`metrics`] facade; the library installs no recorder.
//!
//! | name | kind | meaning |
//! |---|---|---|
//! | `marie_connections` | gauge | connected sockets on this node |
//! | `marie_rooms` | gauge | conversation rooms with a socket on this node |
//! | `marie_streams_started_total` | counter | answers started |
//! | `marie_streams_ended_total{status}` | counter | answers ended: complete, cancelled, interrupted, error |
//! | `marie_stream_chunks_total` | counter | `stream_chunk` events sent |
//! | `marie_stream_first_chunk_seconds` | histogram | time from request to first chunk (time to first token) |
//! | `marie_stream_tokens_per_second` | histogram | generation speed of each complete answer: tokens after the first, per second |
//! | `marie_provider_errors_total{kind}` | counter | provider failures by kind: unreachable, unauthorized, rate_limited, status, timeout, protocol, upstream, disconnected |
//! | `marie_provider_retries_total{provider,reason}` | counter | `marie-llm` HTTP providers: requests sent again, by the error kind that caused it |
//! | `marie_broadcast_failures_total` | counter | room events the cluster adapter could not publish (delivered on this node only) |
//! | `marie_redis_adapter_up` | gauge | `redis` feature: 1 while the adapter's Redis answers, 0 during an outage |

#[doc(hidden)]
pub mod __fuzz;
mod builder;
mod delivery;
mod handlers;
mod http;
pub mod limits;
mod net;
mod origin;
mod owned_parts;
mod protocol;
#[cfg(feature = "redis")]
pub mod redis;
mod resume;
mod rooms;
mod security;
mod sink;

pub use builder::{BuildError, Marie, MarieBuilder, MarieConfig, MarieHandle, MarieLayer};
pub use delivery::{DeliveryConfig, DeliveryStats};
pub use limits::{Limits, Rate};
pub use marie_core as core;
pub use net::nodelay;
pub use origin::{AllowedOrigins, OriginGuard};
pub use rooms::conversation_room;
pub use sink::SocketIoSink;
