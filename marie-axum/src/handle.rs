//! [`MarieHandle`]: MARIE driven from outside the handlers.

use std::sync::Arc;
use std::time::Duration;

use marie_core::{ChatEngine, ConversationId, UserId};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::{Adapter, LocalAdapter};

use crate::commands::Announcement;
use crate::rooms::{conversation_room, user_room};
use crate::socketio::expiry;
use crate::state::NodeState;

/// Drives MARIE from outside the handlers: run commands, emit to a conversation, announce,
/// revoke a user, serve the HTTP routes, shut down.
///
/// Cheap to clone.
pub struct MarieHandle<A: Adapter = LocalAdapter> {
    shared: Arc<NodeState<A>>,
}

impl<A: Adapter> Clone for MarieHandle<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<A: Adapter> std::fmt::Debug for MarieHandle<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarieHandle")
            .field("engine", &self.shared.engine)
            .finish_non_exhaustive()
    }
}

impl<A: Adapter> MarieHandle<A> {
    pub(crate) fn new(shared: Arc<NodeState<A>>) -> Self {
        Self { shared }
    }

    /// The engine, to run commands on behalf of a user (from HTTP routes, jobs, ...).
    pub fn engine(&self) -> &ChatEngine {
        &self.shared.engine
    }

    /// Counters of per-client delivery: chunks merged for slow clients, clients evicted,
    /// the most bytes one client had queued.
    pub fn delivery_stats(&self) -> crate::delivery::DeliveryStats {
        self.shared.hub.stats.snapshot()
    }

    /// The underlying socketioxide handle.
    pub fn io(&self) -> &SocketIo<A> {
        &self.shared.io
    }

    /// The HTTP routes of the protocol, to merge into the app's `Router`:
    ///
    /// - `POST /api/chat/send` (`Authorization: Bearer <token>`, JSON body
    ///   `{conversation_id, message, client_message_id?}`): sends the message and answers with
    ///   the streamed answer as Server-Sent Events: `stream_start`, then `stream_chunk`s (the
    ///   SSE `id:` is the chunk's `seq`), then `stream_end` or `stream_error`, with the same
    ///   payloads as over Socket.IO. Errors before the answer starts are JSON
    ///   `{code, message}` with a matching HTTP status.
    /// - `GET /api/chat/streams/{stream_id}?after_seq=N` (or the `Last-Event-ID` header, which
    ///   wins): the chunks after `N`, then the live tail, then the end, as SSE.
    ///   `stream_error {code:"resume_unavailable"}` when the log cannot continue from `N`.
    /// - `GET /healthz`: `200 ok` while the process serves.
    /// - `GET /readyz`: `200` when the store answers and the server is not shutting down,
    ///   `503` otherwise.
    pub fn http_routes(&self) -> axum::Router {
        crate::http::routes(self.shared.clone(), true)
    }

    /// Only the SSE routes of [`http_routes`](Self::http_routes) (`/api/chat/...`), for an
    /// app that serves its own health probes.
    pub fn chat_routes(&self) -> axum::Router {
        crate::http::routes(self.shared.clone(), false)
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
            Some(ns) => ns.emit("announcement", &Announcement { message }).await,
            None => Ok(()),
        }
    }

    /// Ends every connection of `user`, on every node of a cluster (through the Socket.IO
    /// adapter): each gets `error {code:"unauthorized", message:"your access was revoked"}`
    /// and is disconnected.
    ///
    /// This does not stop the user from connecting again: revoke their credentials in your
    /// [`Authenticator`](marie_core::Authenticator) first (for instance
    /// `StaticAuthenticator::revoke`, or your JWT issuer's deny list).
    pub async fn revoke_user(&self, user: &UserId) -> Result<(), socketioxide::BroadcastError> {
        let namespace = &self.shared.config.namespace;
        let of = || self.io().of(namespace);
        let Some(ns) = of() else {
            return Ok(());
        };
        let room = user_room(user);
        tracing::info!(user = %user, "revoking every connection of the user");
        if let Err(e) = ns.to(room.clone()).emit("error", &expiry::revoked()).await {
            tracing::warn!(error = %e, "revocation notice not delivered everywhere");
        }
        let Some(ns) = of() else {
            return Ok(());
        };
        match ns.to(room.clone()).disconnect().await {
            Ok(()) => Ok(()),
            Err(e) => {
                // The other nodes are out of reach: end this node's connections at least.
                if let Some(ns) = of() {
                    let _ = ns.local().to(room).disconnect().await;
                }
                Err(e)
            }
        }
    }

    /// Graceful shutdown: running answers get up to `grace` to finish, the rest end with
    /// `stream_end {status:"interrupted"}`; then every socket is closed.
    pub async fn shutdown(&self, grace: Duration) {
        self.shared.engine.shutdown(grace).await;
        self.shared.io.close().await;
    }
}
