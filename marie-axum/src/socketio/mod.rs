//! The Socket.IO front end: authentication and the session on CONNECT, then one handler that
//! hands every event to the command layer ([`crate::commands`]).
//!
//! A connection's handlers exist before its CONNECT reply leaves (they are registered by the
//! CONNECT middleware), so an event a client sends the moment it reads CONNECT is handled;
//! its answers wait in the socket's outbox behind the greeting (`connected` or
//! `reconnected`). Answers run in the engine's background tasks, so no handler waits for a
//! model.
//!
//! ## Layout
//!
//! - `mod.rs`: [`register`], what a connected socket carries.
//! - `connect.rs`: the CONNECT middleware (credentials, handlers, session), the greeting,
//!   the disconnect handler.
//! - `handler.rs`: one event, handed to the command layer and answered.
//! - `link.rs`: the socket as the command layer's [`Link`](crate::commands::Link).
//! - `membership.rs`: the rooms a socket enters and leaves, and its session.
//! - `notices.rs`: a conversation's changes told to its members' connections here.
//! - `reply.rs`: replies and acks through the outbox.
//! - `payloads.rs`: the CONNECT `auth`, and the notices of a connection.
//! - `expiry.rs`: the end of a connection whose credentials expire, or whose user is
//!   revoked.
//! - `asked.rs`: the answers a socket asked for, to cancel them when it leaves (if so
//!   configured).

mod asked;
mod connect;
pub(crate) mod expiry;
mod handler;
mod link;
mod membership;
pub(crate) mod notices;
mod payloads;
mod reply;

use std::sync::Arc;

use marie_core::SessionId;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::DefinedAdapter;

pub(crate) use payloads::ConnectAuth;

use crate::state::NodeState;

/// The socket's session handle, set when it connects.
#[derive(Clone)]
struct Session(SessionId);

/// Registers the protocol on the namespace. The result initializes the adapter (for a
/// cluster adapter: subscribes); the caller awaits or spawns it.
pub(crate) fn register<A: Adapter + DefinedAdapter>(shared: &Arc<NodeState<A>>) -> A::InitRes {
    let for_middleware = shared.clone();
    let middleware = move |s: SocketRef<A>, TryData(auth): TryData<ConnectAuth>| {
        let shared = for_middleware.clone();
        async move { connect::admit(&shared, &s, auth.unwrap_or_default()).await }
    };
    let greeter = connect::Greeter {
        shared: shared.clone(),
    };
    shared
        .io
        .ns(shared.config.namespace.clone(), greeter.with(middleware))
}
