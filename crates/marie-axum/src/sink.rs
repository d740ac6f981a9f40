//! [`SocketIoSink`]: room events out through socketioxide.

use async_trait::async_trait;
use marie_core::{ConversationId, RoomEvent, SinkError, StreamSink};
use socketioxide::SocketIo;

use crate::rooms::conversation_room;

/// A [`StreamSink`] that broadcasts each event to the conversation's Socket.IO room.
///
/// With a cluster adapter on the `SocketIo`, the broadcast reaches every node.
#[derive(Clone, Debug)]
pub struct SocketIoSink {
    io: SocketIo,
    namespace: String,
}

impl SocketIoSink {
    /// A sink on `namespace` of `io`.
    pub fn new(io: SocketIo, namespace: impl Into<String>) -> Self {
        Self {
            io,
            namespace: namespace.into(),
        }
    }
}

#[async_trait]
impl StreamSink for SocketIoSink {
    async fn emit(&self, conversation: &ConversationId, event: RoomEvent) -> Result<(), SinkError> {
        let ns = self
            .io
            .of(&self.namespace)
            .ok_or_else(|| SinkError::Delivery("namespace not registered".into()))?;
        ns.to(conversation_room(conversation))
            .emit(event.name(), &event)
            .await
            .map_err(|e| SinkError::Delivery(e.to_string()))
    }
}
