//! The Socket.IO front end: authentication on CONNECT, then one handler that routes every
//! event by name through the table of [`crate::events`].
//!
//! Each event is checked by the guards, decoded into a [`Command`](crate::events::Command),
//! run on the [`ChatEngine`](marie_core::ChatEngine), and answered through the socket's outbox
//! (`reply.rs`). Answers run in the engine's background tasks, so no handler waits for a
//! model.
//!
//! ## Layout
//!
//! - `mod.rs`: [`register`], what a connected socket carries.
//! - `connect.rs`: the CONNECT middleware, the connect and disconnect handlers.
//! - `commands.rs`: one event, from its guards to its answer, and each command.
//! - `membership.rs`: the rooms a socket enters and leaves, and its session.
//! - `reply.rs`: replies and acks through the outbox.
//! - `payloads.rs`: the payloads of the events and acks this front end sends.
//! - `asked.rs`: the answers a socket asked for, to cancel them when it leaves (if so
//!   configured).
//! - `typing.rs`: `typing` → `user_typing`, volatile, throttled, ending by itself.

mod asked;
mod commands;
mod connect;
mod membership;
mod payloads;
mod reply;
mod typing;

use std::sync::Arc;

use marie_core::{Identity, SessionId};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::DefinedAdapter;

pub(crate) use payloads::Announcement;

use crate::events::ConnectAuth;
use crate::state::Shared;

/// Set on a socket by the CONNECT middleware once its credentials are valid.
#[derive(Clone)]
pub(crate) struct Authenticated {
    pub(crate) identity: Arc<Identity>,
    resume: Option<SessionId>,
}

/// The socket's session handle, set by the connect handler.
#[derive(Clone)]
struct Session(SessionId);

/// Registers the protocol on the namespace. The result initializes the adapter (for a
/// cluster adapter: subscribes); the caller awaits or spawns it.
pub(crate) fn register<A: Adapter + DefinedAdapter>(shared: &Arc<Shared<A>>) -> A::InitRes {
    let for_middleware = shared.clone();
    let for_handler = shared.clone();
    let middleware = move |s: SocketRef<A>, TryData(auth): TryData<ConnectAuth>| {
        let shared = for_middleware.clone();
        async move { connect::authenticate(&shared, &s, auth.unwrap_or_default()).await }
    };
    let handler = move |s: SocketRef<A>| {
        let shared = for_handler.clone();
        async move { connect::on_connect(shared, s).await }
    };
    shared
        .io
        .ns(shared.config.namespace.clone(), handler.with(middleware))
}
