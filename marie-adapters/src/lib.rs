//! # marie-adapters
//!
//! Backends for [MARIE](https://github.com/marie-rs/marie): stores that implement
//! [`RoomStore`](marie_core::RoomStore) and authenticators that implement
//! [`Authenticator`](marie_core::Authenticator). Pick them with cargo features.
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `memory` | yes | [`MemoryStore`] and [`MemoryFileStore`]: everything in this process's memory |
//! | `jwt` | no | [`JwtAuthenticator`]: bearer JWTs (HS256, RS256, ES256) via `jsonwebtoken` |
//! | `redis` | no | [`RedisStore`], [`RedisControlBus`] and [`RedisStreamLog`]: state shared by several nodes in Redis, see [`redis`] |
//! | `disk` | no | [`DiskFileStore`]: uploaded files in a directory, for one node whose files survive restarts |
//! | `sqlite` | no | [`SqlStore`] on a SQLite file: one node's state that survives restarts, see [`sql`] |
//! | `postgres` | no | [`SqlStore`] on PostgreSQL: state shared by several nodes, see [`sql`] |
//!
//! [`SqlStore`] is a [`FileStore`](marie_core::FileStore) too: uploaded files in the same
//! database as history.
//!
//! [`StaticAuthenticator`], a table of tokens for development and tests, is always there.
//!
//! ## Example
//!
//! ```
//! use marie_adapters::{MemoryStore, StaticAuthenticator};
//! use marie_core::{Identity, UserId};
//!
//! let store = MemoryStore::new();
//! let auth = StaticAuthenticator::new()
//!     .with_token("dev-token-alice", Identity::new(UserId::parse("alice").unwrap()));
//! # let _ = (store, auth);
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "disk")]
mod disk;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sql")]
pub mod sql;
mod static_auth;

#[cfg(feature = "disk")]
pub use disk::DiskFileStore;
#[cfg(feature = "jwt")]
pub use jsonwebtoken::{Algorithm, DecodingKey};
#[cfg(feature = "jwt")]
pub use jwt::{JwtAuthenticator, JwtKeyError};
/// The in-memory [`StreamLog`](marie_core::StreamLog) (it lives in `marie-core`, as every
/// engine's default).
#[cfg(feature = "memory")]
pub use marie_core::{MemoryLogConfig, MemoryStreamLog};
#[cfg(feature = "memory")]
pub use memory::{MemoryFileStore, MemoryStore};
#[cfg(feature = "redis")]
pub use redis::{RedisConfig, RedisControlBus, RedisStore, RedisStreamLog};
#[cfg(feature = "sql")]
pub use sql::{SqlConfig, SqlStore};
pub use static_auth::StaticAuthenticator;
