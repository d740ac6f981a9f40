//! [`ControlBus`]: messages between the nodes of a cluster that Socket.IO does not carry.
//!
//! Presence events reach every node through the Socket.IO adapter; an answer's
//! [`StreamEvent`]s travel on this bus ([`ControlMessage::Stream`]) so that each node delivers
//! them through its own per-client queues. Some commands must reach the node that *runs*
//! something instead: `cancel_stream` received by node A for an answer that node B runs. The
//! engine publishes those as [`ControlMessage`]s on a bus that every node subscribes to; the
//! node that runs the answer acts on it, the others ignore it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, Notice, StoreError, StreamEvent, StreamId, UserId};

/// A command for whichever node it concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ControlMessage {
    /// Stop the answer `stream_id` of `conversation_id`, wherever it runs.
    CancelAnswer {
        /// The conversation.
        conversation_id: ConversationId,
        /// The answer.
        stream_id: StreamId,
    },
    /// A member decided the approval the answer `stream_id` waits for: its node reads the
    /// decision from the store at once (it also looks by itself now and then, as this
    /// message may be lost).
    ApprovalDecided {
        /// The conversation.
        conversation_id: ConversationId,
        /// The answer.
        stream_id: StreamId,
    },
    /// Events of one answer (one, or a burst of several ready at once), for the members of
    /// its conversation connected to other nodes: each node delivers them to its own clients
    /// through their per-client queues. The node of `origin` ignores its own.
    Stream {
        /// The node that sent it.
        origin: String,
        /// The events, in order.
        events: Vec<StreamEvent>,
    },
    /// A change of a conversation for some users ([`Notice`]): each node tells those of
    /// them connected to it. The node of `origin` ignores its own.
    Notice {
        /// The node that sent it.
        origin: String,
        /// The notice.
        notice: Notice,
        /// Whom it is for.
        users: Vec<UserId>,
    },
}

/// What a bus calls for every message. It must return quickly and never block: it may run
/// on the bus's I/O task.
pub type ControlHandler = Arc<dyn Fn(ControlMessage) + Send + Sync>;

/// Carries [`ControlMessage`]s to every node of a cluster, this one included.
///
/// Delivery is at most once: a message published while a node is cut off from the bus is
/// not delivered to it later. Implementations reconnect (and subscribe again) by themselves.
#[async_trait]
pub trait ControlBus: Send + Sync + 'static {
    /// Sends `message` to the handlers of every node.
    async fn publish(&self, message: ControlMessage) -> Result<(), StoreError>;

    /// Calls `handler` with every message published from now on, by any node.
    fn subscribe(&self, handler: ControlHandler);
}

/// The in-process bus: one node, or several engines in one process.
///
/// `publish` calls every handler before it returns.
#[derive(Default)]
pub struct LocalControlBus {
    handlers: Mutex<Vec<ControlHandler>>,
}

impl LocalControlBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for LocalControlBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.handlers.lock().map(|h| h.len()).unwrap_or(0);
        f.debug_struct("LocalControlBus")
            .field("handlers", &n)
            .finish()
    }
}

#[async_trait]
impl ControlBus for LocalControlBus {
    async fn publish(&self, message: ControlMessage) -> Result<(), StoreError> {
        // Called outside the lock: a handler may publish or subscribe in turn.
        let handlers = self
            .handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for handler in handlers {
            handler(message.clone());
        }
        Ok(())
    }

    fn subscribe(&self, handler: ControlHandler) {
        self.handlers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handler);
    }
}

#[async_trait]
impl<T: ControlBus + ?Sized> ControlBus for Arc<T> {
    async fn publish(&self, message: ControlMessage) -> Result<(), StoreError> {
        (**self).publish(message).await
    }

    fn subscribe(&self, handler: ControlHandler) {
        (**self).subscribe(handler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_a_stable_wire_form() {
        let m = ControlMessage::CancelAnswer {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "cancel_answer", "conversation_id": "c", "stream_id": "s"})
        );
        assert_eq!(serde_json::from_value::<ControlMessage>(json).unwrap(), m);
    }

    #[tokio::test]
    async fn local_bus_reaches_every_handler() {
        let bus = LocalControlBus::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..2 {
            let seen = seen.clone();
            bus.subscribe(Arc::new(move |m| seen.lock().unwrap().push(m)));
        }
        let m = ControlMessage::CancelAnswer {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
        };
        bus.publish(m.clone()).await.unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![m.clone(), m]);
    }
}
