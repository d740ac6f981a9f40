//! [`Out`]: what a follower is sent, as its outbox holds it.

use std::sync::{Arc, OnceLock};

use marie_core::{StreamEvent, StreamId};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};

/// One item of an outbox.
#[derive(Clone, Debug)]
pub(crate) enum Out {
    /// An answer's event. NodeState by every follower of a live event and serialized once for
    /// all of them; a merge makes the follower's own copy.
    Stream(Arc<Encoded>),
    /// A reply to the socket's own event (its `error`, `joined`, ack, ...) or a notice of
    /// its connection. A socket's only; never merged, never dropped while it is connected.
    Reply(Arc<Reply>),
}

/// A stream event and its payload serialized, once.
#[derive(Debug)]
pub(crate) struct Encoded {
    event: StreamEvent,
    json: OnceLock<Box<RawValue>>,
}

impl Clone for Encoded {
    fn clone(&self) -> Self {
        // A copy is made to be changed (merged): its payload is serialized again.
        Self::new(self.event.clone())
    }
}

impl Encoded {
    fn new(event: StreamEvent) -> Self {
        Self {
            event,
            json: OnceLock::new(),
        }
    }

    /// The event's payload serialized, once for every follower that shares it.
    pub(crate) fn json(&self) -> &RawValue {
        self.json.get_or_init(|| {
            // Cannot fail: the payloads are structs of strings, numbers and booleans.
            serde_json::value::to_raw_value(&self.event.payload()).unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not serialize a stream event");
                RawValue::NULL.to_owned()
            })
        })
    }
}

/// Sends a reply to its socket: built by the Socket.IO front end, which knows what it is.
pub(crate) type SendReply = Box<dyn Fn() -> Emitted + Send + Sync>;

/// A reply to one socket, ready to send (and to try again while its buffer is full).
pub(crate) struct Reply {
    /// What it is, for logs: the event name, or `ack`.
    name: &'static str,
    /// Its payload's size, counted against the outbox's bound.
    bytes: usize,
    send: SendReply,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("name", &self.name)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl Reply {
    pub(crate) fn new(name: &'static str, bytes: usize, send: SendReply) -> Self {
        Self { name, bytes, send }
    }
}

/// What became of an attempt to hand an item to socketioxide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Emitted {
    /// It is in the socket's buffer.
    Sent,
    /// The socket's buffer is full: try again later.
    Full,
    /// The socket is gone (or the item cannot be sent at all): drop it.
    Gone,
}

impl Emitted {
    /// What socketioxide's answer to an emit means.
    pub(crate) fn of(result: Result<(), SendError>) -> Self {
        match result {
            Ok(()) => Self::Sent,
            Err(SendError::Socket(SocketError::InternalChannelFull)) => Self::Full,
            Err(_) => Self::Gone,
        }
    }
}

impl Out {
    /// A stream event, to push to every follower of its conversation.
    pub(crate) fn stream(event: StreamEvent) -> Out {
        Out::Stream(Arc::new(Encoded::new(event)))
    }

    /// The stream event, if this is one.
    pub(crate) fn event(&self) -> Option<&StreamEvent> {
        match self {
            Out::Stream(encoded) => Some(&encoded.event),
            Out::Reply(_) => None,
        }
    }

    /// The stream this item belongs to; `None` for a reply.
    pub(crate) fn stream_id(&self) -> Option<&StreamId> {
        self.event().and_then(StreamEvent::stream_id)
    }

    /// The event name (a reply's, or `ack`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Out::Stream(encoded) => encoded.event.name(),
            Out::Reply(reply) => reply.name,
        }
    }

    /// The `seq` of a numbered stream event (an SSE `id:`).
    pub(crate) fn seq(&self) -> Option<u64> {
        self.event().and_then(StreamEvent::seq)
    }

    /// A piece of text or reasoning: merged with the next of its kind for a client that is
    /// behind, and part of a burst.
    pub(crate) fn is_mergeable(&self) -> bool {
        self.event().is_some_and(StreamEvent::is_mergeable)
    }

    pub(crate) fn is_terminal(&self) -> bool {
        self.event().is_some_and(StreamEvent::is_terminal)
    }

    /// The payload as JSON text (an SSE `data:`).
    pub(crate) fn json(&self) -> Option<&str> {
        match self {
            Out::Stream(encoded) => Some(encoded.json().get()),
            Out::Reply(_) => None,
        }
    }

    /// What this item counts against the outbox's bound.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            // Content only, so that merging keeps the count exact; the number of items is
            // bounded by `queue_len` besides.
            Out::Stream(encoded) => match &encoded.event {
                StreamEvent::Chunk(c) => c.content.len(),
                StreamEvent::Reasoning(r) => r.content.len(),
                // NodeState by every follower: what one follower adds is the handle.
                _ => 64,
            },
            Out::Reply(reply) => reply.bytes,
        }
    }

    /// Appends `next` when it continues this event (text after text, reasoning after
    /// reasoning, the next position of the same stream).
    pub(crate) fn merge(&mut self, next: &Out) -> bool {
        let (Out::Stream(this), Some(next)) = (&mut *self, next.event()) else {
            return false;
        };
        // Checked on the shared event first: a copy is made only when it will merge.
        if !this.event.can_merge(next) {
            return false;
        }
        // NodeState: copied first (and serialized again when sent).
        let encoded = Arc::make_mut(this);
        encoded.json = OnceLock::new();
        encoded.event.merge(next)
    }

    /// Hands this item to `socket`.
    pub(crate) fn emit_to<A: Adapter>(&self, socket: &SocketRef<A>) -> Emitted {
        match self {
            Out::Stream(encoded) => Emitted::of(socket.emit(encoded.event.name(), &Wire(encoded))),
            Out::Reply(reply) => (reply.send)(),
        }
    }
}

/// A stream event's payload, for `emit`: shared by other followers, it is serialized once for
/// all; a follower's own (merged, or the last follower's) goes straight into its packet.
struct Wire<'a>(&'a Arc<Encoded>);

impl Serialize for Wire<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded = self.0;
        if Arc::strong_count(encoded) > 1 || encoded.json.get().is_some() {
            encoded.json().serialize(serializer)
        } else {
            encoded.event.payload().serialize(serializer)
        }
    }
}
