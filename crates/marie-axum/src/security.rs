//! Enforcement of [`Limits`], unknown events, credential expiry and revocation.
//!
//! The handlers call in here at three points: the CONNECT middleware
//! ([`Security::admit_connection`]), every event before its payload is decoded
//! ([`Security::admit_event`]), and `join_conversation` ([`check_rooms`]). Everything here
//! answers with an [`Error`] whose code the client sees; nothing here disconnects a client
//! except expiry and revocation, which exist to.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::DefaultKeyedRateLimiter;
use marie_core::{ConversationId, Error, Identity, UserId, now_millis};
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromMessageParts, Value as PacketValue};
use socketioxide::socket::Socket;
use tokio::sync::Notify;

use crate::builder::{MarieHandle, Shared};
use crate::limits::Limits;
use crate::protocol;
use crate::rooms::{conversation_of, conversation_room, user_room};

/// Rate limiters and connection counts, shared by every socket of a node.
pub(crate) struct Security {
    limits: Limits,
    events: Option<DefaultKeyedRateLimiter<UserId>>,
    messages: Option<DefaultKeyedRateLimiter<UserId>>,
    connections: Arc<Mutex<HashMap<UserId, usize>>>,
    checks: AtomicU64,
}

/// The events that start a model answer, limited by [`Limits::messages`].
const MESSAGE_EVENTS: [&str; 2] = ["send_message", "send_message_with_ack"];

impl Security {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            events: limits.events.quota().map(DefaultKeyedRateLimiter::keyed),
            messages: limits.messages.quota().map(DefaultKeyedRateLimiter::keyed),
            connections: Default::default(),
            checks: AtomicU64::new(0),
            limits,
        }
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Takes one of the user's connection slots, or refuses when they hold
    /// [`Limits::max_connections_per_user`] already.
    pub(crate) fn admit_connection(&self, user: &UserId) -> Option<ConnectionGuard> {
        let mut counts = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(user.clone()).or_default();
        if *n >= self.limits.max_connections_per_user {
            return None;
        }
        *n += 1;
        Some(ConnectionGuard(Arc::new(GuardInner {
            user: user.clone(),
            connections: self.connections.clone(),
            released: AtomicBool::new(false),
            closed: Notify::new(),
        })))
    }

    /// Size, attachment and rate checks for one event of `who`, before its payload is
    /// decoded.
    pub(crate) fn admit_event(
        &self,
        who: &Identity,
        event: &str,
        size: &PacketSize,
    ) -> Result<(), Error> {
        self.sweep();
        if let Some(limiter) = &self.events
            && limiter.check_key(&who.user_id).is_err()
        {
            return Err(Error::RateLimited);
        }
        if size.text > self.limits.max_event_bytes {
            return Err(Error::PayloadTooLarge(format!(
                "the event is larger than {} bytes",
                self.limits.max_event_bytes
            )));
        }
        if size.binaries > self.limits.max_binary_attachments {
            return Err(Error::PayloadTooLarge(format!(
                "at most {} binary attachments per event",
                self.limits.max_binary_attachments
            )));
        }
        if MESSAGE_EVENTS.contains(&event)
            && let Some(limiter) = &self.messages
            && limiter.check_key(&who.user_id).is_err()
        {
            return Err(Error::RateLimited);
        }
        Ok(())
    }

    /// Forgets the rate state of users idle long enough to be back at full burst, every
    /// few thousand checks, so that the limiters' memory follows the active users.
    fn sweep(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for limiter in [&self.events, &self.messages].into_iter().flatten() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    }
}

/// A user's connection slot, held in the socket's extensions: released on disconnect, or at
/// the latest when the socket is dropped. Also wakes the socket's expiry timer on close.
#[derive(Clone)]
pub(crate) struct ConnectionGuard(Arc<GuardInner>);

struct GuardInner {
    user: UserId,
    connections: Arc<Mutex<HashMap<UserId, usize>>>,
    released: AtomicBool,
    closed: Notify,
}

impl ConnectionGuard {
    /// Releases the slot (once) and stops the expiry timer.
    pub(crate) fn release(&self) {
        self.0.release();
        self.0.closed.notify_one();
    }
}

impl GuardInner {
    fn release(&self) {
        if self.released.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut counts = self.connections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl Drop for GuardInner {
    fn drop(&mut self) {
        self.release();
    }
}

/// The size of an incoming event's packet, taken before its payload is decoded.
pub(crate) struct PacketSize {
    /// Bytes of the packet's text: the event name and its JSON arguments.
    pub(crate) text: usize,
    /// Binary attachments.
    pub(crate) binaries: usize,
}

impl<A: Adapter> FromMessageParts<A> for PacketSize {
    type Error = Infallible;

    fn from_message_parts(
        _: &Arc<Socket<A>>,
        v: &mut PacketValue,
        _: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(match v {
            PacketValue::Str(text, bins) => PacketSize {
                text: text.len(),
                binaries: bins.as_ref().map_or(0, |b| b.len()),
            },
            PacketValue::Bytes(bytes) => PacketSize {
                text: bytes.len(),
                binaries: 0,
            },
        })
    }
}

/// `join_conversation`: refuses a new conversation beyond [`Limits::max_rooms_per_socket`].
pub(crate) fn check_rooms<A: Adapter>(
    shared: &Shared<A>,
    socket: &SocketRef<A>,
    conversation: &ConversationId,
) -> Result<(), Error> {
    let rooms = socket.rooms();
    let room = conversation_room(conversation);
    if rooms.iter().any(|r| *r == room) {
        return Ok(());
    }
    let joined = rooms
        .iter()
        .filter(|r| conversation_of(r).is_some())
        .count();
    let max = shared.security.limits().max_rooms_per_socket;
    if joined >= max {
        return Err(Error::RateLimited);
    }
    Ok(())
}

/// Answers events no handler knows: `error {code:"bad_request", message:"unknown event",
/// event}` and an error ack, after the same rate and size checks as every event.
/// Answers an event no handler has: `bad_request` "unknown event", or what the event limits
/// say first (a flood of unknown events is still a flood).
pub(crate) fn unknown_event<A: Adapter>(
    shared: &Shared<A>,
    socket: &SocketRef<A>,
    event: &str,
    size: &PacketSize,
    ack: AckSender<A>,
) {
    let who = socket
        .extensions
        .get::<crate::handlers::Authenticated>()
        .map(|a| a.identity);
    let outcome = match who {
        Some(who) => shared.security.admit_event(&who, event, size),
        None => Err(Error::Internal("the connection is not authenticated")),
    };
    let error = outcome
        .err()
        .unwrap_or_else(|| Error::BadRequest("unknown event".into()));
    // The name is the client's: echo at most a bounded piece of it.
    let name: String = event.chars().take(64).collect();
    tracing::debug!(sid = %socket.id, code = %error.code(), "unknown or refused event");
    let _ = socket.emit("error", &protocol::error_event(&error, &name));
    let _ = ack.send(&protocol::ack(&Err(error)));
}

/// The message sent before a connection is ended because its credentials expired.
fn expired() -> Value {
    json!({ "code": "unauthorized", "message": "your credentials expired", "event": "connect" })
}

/// The message sent before a connection is ended because its user was revoked.
fn revoked() -> Value {
    json!({ "code": "unauthorized", "message": "your access was revoked", "event": "connect" })
}

/// On a new connection: joins the user's private room (so that [`MarieHandle::revoke_user`]
/// reaches every connection of the user, on every node) and, when the identity expires and
/// the config says so, ends the connection at that moment.
pub(crate) fn on_connected<A: Adapter>(shared: &Shared<A>, socket: &SocketRef<A>, who: &Identity) {
    socket.join(user_room(&who.user_id));
    let (Some(expires_at), true) = (who.expires_at, shared.config.disconnect_on_expiry) else {
        return;
    };
    let Some(guard) = socket.extensions.get::<ConnectionGuard>() else {
        return;
    };
    let socket = socket.clone();
    tokio::spawn(async move {
        let left = Duration::from_millis(expires_at.saturating_sub(now_millis()));
        tokio::select! {
            _ = tokio::time::sleep(left) => {
                tracing::info!(sid = %socket.id, "credentials expired: ending the connection");
                let _ = socket.emit("error", &expired());
                let _ = socket.disconnect();
            }
            _ = guard.0.closed.notified() => {}
        }
    });
}

/// On disconnect: releases the connection slot and stops the expiry timer.
pub(crate) fn on_disconnected<A: Adapter>(socket: &SocketRef<A>) {
    if let Some(guard) = socket.extensions.get::<ConnectionGuard>() {
        guard.release();
    }
}

impl<A: Adapter> MarieHandle<A> {
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
        if let Err(e) = ns.to(room.clone()).emit("error", &revoked()).await {
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
}
