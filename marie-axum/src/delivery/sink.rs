//! [`SocketIoSink`]: the engine's [`StreamSink`] on Socket.IO.

use std::sync::Arc;

use async_trait::async_trait;
use marie_core::{ConversationId, Notice, SinkError, StreamEvent, StreamSink, UserId};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::{BroadcastError, SocketIo};

use super::Hub;
use crate::rooms::{conversation_room, user_room};

/// A [`StreamSink`] that sends an answer's events to its conversation's Socket.IO room.
///
/// Built by [`Marie::builder`](crate::Marie::builder), it gives each event to every local
/// member through its own bounded queue (chunks merge, never drop, when a client is slow), and
/// to the other nodes of a cluster over the control bus (`crate::delivery`).
///
/// [`SocketIoSink::new`] makes a plain one for an app that runs its own `SocketIo`: each event
/// is a room broadcast, which reaches every node through the `SocketIo`'s adapter, but a
/// client whose socketioxide buffer is full loses it. When the adapter cannot reach the other
/// nodes (Redis is away), the event still goes to this node's members, and `emit` reports the
/// failure.
#[derive(Debug)]
pub struct SocketIoSink<A: Adapter = LocalAdapter> {
    target: Target<A>,
}

#[derive(Debug)]
enum Target<A: Adapter> {
    Rooms { io: SocketIo<A>, namespace: String },
    Hub(Arc<Hub<A>>),
}

impl<A: Adapter> Clone for SocketIoSink<A> {
    fn clone(&self) -> Self {
        let target = match &self.target {
            Target::Rooms { io, namespace } => Target::Rooms {
                io: io.clone(),
                namespace: namespace.clone(),
            },
            Target::Hub(hub) => Target::Hub(hub.clone()),
        };
        Self { target }
    }
}

impl<A: Adapter> SocketIoSink<A> {
    /// A sink on `namespace` of `io` that broadcasts every event to the conversation's room
    /// (no per-client queues: a client whose socketioxide buffer is full loses events).
    pub fn new(io: SocketIo<A>, namespace: impl Into<String>) -> Self {
        Self {
            target: Target::Rooms {
                io,
                namespace: namespace.into(),
            },
        }
    }

    pub(crate) fn with_hub(hub: Arc<Hub<A>>) -> Self {
        Self {
            target: Target::Hub(hub),
        }
    }
}

/// One event as a room broadcast.
async fn broadcast<A: Adapter>(
    io: &SocketIo<A>,
    namespace: &str,
    event: &StreamEvent,
) -> Result<(), SinkError> {
    let ns = io
        .of(namespace)
        .ok_or_else(|| SinkError::Delivery("namespace not registered".into()))?;
    let room = conversation_room(event.conversation_id());
    let payload = event.payload();
    match ns
        .clone()
        .to(room.clone())
        .emit(event.name(), &payload)
        .await
    {
        Ok(()) => Ok(()),
        Err(BroadcastError::Adapter(e)) => {
            // A cluster adapter publishes to the other nodes before it delivers locally, so a
            // failed publish reached no one: deliver to this node's members at least.
            metrics::counter!("marie_broadcast_failures_total").increment(1);
            let local = ns.local().to(room).emit(event.name(), &payload).await;
            Err(SinkError::Delivery(match local {
                Ok(()) => format!("delivered on this node only: {e}"),
                Err(local) => format!("{e}; on this node: {local}"),
            }))
        }
        Err(e) => Err(SinkError::Delivery(e.to_string())),
    }
}

#[async_trait]
impl<A: Adapter> StreamSink for SocketIoSink<A> {
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError> {
        match &self.target {
            Target::Hub(hub) => hub.deliver(vec![event]).await,
            Target::Rooms { io, namespace } => broadcast(io, namespace, &event).await,
        }
    }

    /// A burst: delivered here one by one, sent to the other nodes in one message.
    async fn emit_many(&self, events: Vec<StreamEvent>) -> Result<(), SinkError> {
        match &self.target {
            Target::Hub(hub) => hub.deliver(events).await,
            Target::Rooms { .. } => marie_core::emit_each(self, events).await,
        }
    }

    async fn flush(&self, conversation: &ConversationId) -> Result<(), SinkError> {
        if let Target::Hub(hub) = &self.target {
            hub.flush(conversation);
        }
        Ok(())
    }

    /// With MARIE's front end, each node tells its own connections of the users (and takes
    /// them out of the room when the notice ends their following). A plain sink broadcasts
    /// the notice to each user's room and, when it ends their following, takes their
    /// sockets out of the conversation's room, through the `SocketIo`'s adapter.
    async fn notify(&self, notice: Notice, users: Vec<UserId>) -> Result<(), SinkError> {
        match &self.target {
            Target::Hub(hub) => hub.notify(notice, users).await,
            Target::Rooms { io, namespace } => {
                let ns = io
                    .of(namespace)
                    .ok_or_else(|| SinkError::Delivery("namespace not registered".into()))?;
                let rooms: Vec<String> = users.iter().map(user_room).collect();
                if rooms.is_empty() {
                    return Ok(());
                }
                if notice.ends_following() {
                    ns.clone()
                        .to(rooms.clone())
                        .leave(conversation_room(notice.conversation_id()))
                        .await
                        .map_err(|e| SinkError::Delivery(e.to_string()))?;
                }
                ns.to(rooms)
                    .emit(notice.name(), &notice.payload())
                    .await
                    .map_err(|e| SinkError::Delivery(e.to_string()))
            }
        }
    }
}
