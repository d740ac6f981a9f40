//! The guards: enforcement of [`Limits`], and the `Origin` check of the layer
//! ([`AllowedOrigins`](origin::AllowedOrigins)). (Connections whose credentials expire or
//! whose user is revoked are ended by `crate::socketio`'s `expiry`.)
//!
//! [`Guards`] are called at four points: the Socket.IO CONNECT middleware
//! ([`Guards::admit_connection`]), and, in the command layer every front end goes through
//! (`crate::commands::dispatch`), every command before its payload is decoded
//! ([`Guards::admit_event`]), a command that starts an answer ([`Guards::admit_message`]),
//! and `join_conversation` ([`Guards::check_rooms`]). Each answers with an [`Error`] whose code the
//! client sees; nothing here disconnects a client.

pub mod limits;
pub(crate) mod origin;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use governor::DefaultKeyedRateLimiter;
use marie_core::{Error, Identity, UserId};
use socketioxide::adapter::Adapter;
use socketioxide::handler::{FromMessageParts, Value as PacketValue};
use socketioxide::socket::Socket;
use tokio::sync::Notify;

use limits::Limits;

/// Rate limiters and connection counts, shared by every socket of a node.
pub(crate) struct Guards {
    limits: Limits,
    events: Option<DefaultKeyedRateLimiter<UserId>>,
    messages: Option<DefaultKeyedRateLimiter<UserId>>,
    connections: Arc<Mutex<HashMap<UserId, usize>>>,
    checks: AtomicU64,
}

impl Guards {
    pub(crate) fn new(limits: Limits) -> Self {
        Self {
            events: limits.events.quota().map(DefaultKeyedRateLimiter::keyed),
            messages: limits.messages.quota().map(DefaultKeyedRateLimiter::keyed),
            connections: Default::default(),
            checks: AtomicU64::new(0),
            limits,
        }
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
    pub(crate) fn admit_event(&self, who: &Identity, size: &PacketSize) -> Result<(), Error> {
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
        Ok(())
    }

    /// [`Limits::messages`]: one more answer started by `who`. Checked only for a send that
    /// will start one: a repeat of an earlier `client_message_id` starts nothing and is not
    /// counted.
    pub(crate) fn admit_message(&self, who: &Identity) -> Result<(), Error> {
        match &self.messages {
            Some(limiter) if limiter.check_key(&who.user_id).is_err() => Err(Error::RateLimited),
            _ => Ok(()),
        }
    }

    /// `join_conversation`: refuses a new conversation beyond
    /// [`Limits::max_rooms_per_socket`], given how many the socket is in and whether it is
    /// in this one already.
    pub(crate) fn check_rooms(&self, joined: usize, already_in: bool) -> Result<(), Error> {
        if already_in || joined < self.limits.max_rooms_per_socket {
            Ok(())
        } else {
            Err(Error::RateLimited)
        }
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

    /// Resolves once the slot is released: the connection is over.
    pub(crate) async fn closed(&self) {
        self.0.closed.notified().await;
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
#[derive(Debug, Default)]
pub(crate) struct PacketSize {
    /// Bytes of the packet's text: the event name and its JSON arguments.
    pub(crate) text: usize,
    /// Binary attachments.
    pub(crate) binaries: usize,
}

impl PacketSize {
    /// A packet of `bytes` of text and no attachment (an HTTP body, a WebSocket frame).
    pub(crate) fn text(bytes: usize) -> Self {
        Self {
            text: bytes,
            binaries: 0,
        }
    }
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
