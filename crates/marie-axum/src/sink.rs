//! [`SocketIoSink`]: room events out through socketioxide.

use async_trait::async_trait;
use marie_core::{ConversationId, RoomEvent, SinkError, StreamSink};
use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::{BroadcastError, SocketIo};

use crate::rooms::conversation_room;

/// A [`StreamSink`] that broadcasts each event to the conversation's Socket.IO room.
///
/// With a cluster adapter on the `SocketIo`, the broadcast reaches every node. When the
/// adapter cannot reach the other nodes (Redis is away), the event still goes to this node's
/// members, and `emit` reports the failure.
#[derive(Debug)]
pub struct SocketIoSink<A: Adapter = LocalAdapter> {
    io: SocketIo<A>,
    namespace: String,
}

impl<A: Adapter> Clone for SocketIoSink<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

impl<A: Adapter> SocketIoSink<A> {
    /// A sink on `namespace` of `io`.
    pub fn new(io: SocketIo<A>, namespace: impl Into<String>) -> Self {
        Self {
            io,
            namespace: namespace.into(),
        }
    }
}

#[async_trait]
impl<A: Adapter> StreamSink for SocketIoSink<A> {
    async fn emit(&self, conversation: &ConversationId, event: RoomEvent) -> Result<(), SinkError> {
        let ns = self
            .io
            .of(&self.namespace)
            .ok_or_else(|| SinkError::Delivery("namespace not registered".into()))?;
        let room = conversation_room(conversation);
        match ns.clone().to(room.clone()).emit(event.name(), &event).await {
            Ok(()) => Ok(()),
            Err(BroadcastError::Adapter(e)) => {
                // A cluster adapter publishes to the other nodes before it delivers locally,
                // so a failed publish reached no one: deliver to this node's members at least.
                metrics::counter!("marie_broadcast_failures_total").increment(1);
                let local = ns.local().to(room).emit(event.name(), &event).await;
                Err(SinkError::Delivery(match local {
                    Ok(()) => format!("delivered on this node only: {e}"),
                    Err(local) => format!("{e}; on this node: {local}"),
                }))
            }
            Err(e) => Err(SinkError::Delivery(e.to_string())),
        }
    }
}
