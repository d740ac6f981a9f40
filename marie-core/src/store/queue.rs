//! [`SendQueue`]: sends waiting behind a running answer (`on_busy: "enqueue"`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, Identity, MessageId, StoreError, StreamId, UserId};

/// A send waiting for its turn, as the store keeps it. Its ids are given when it is queued,
/// so that `queued` can name its stream and `cancel_stream` can take it out of the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedSend {
    /// Where it waits.
    pub conversation_id: ConversationId,
    /// Who sent it.
    pub user_id: UserId,
    /// The sender's roles, for the access check when its turn comes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The user's text.
    pub message: String,
    /// The files it carries (checked when it was queued).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::Attachment>,
    /// `true`: streamed; `false`: one `message_response`.
    pub stream: bool,
    /// The user message it becomes.
    pub message_id: MessageId,
    /// The assistant message its answer becomes.
    pub answer_message_id: MessageId,
    /// Its answer's stream.
    pub stream_id: StreamId,
    /// Milliseconds since the Unix epoch.
    pub queued_at: u64,
    /// The tools its sender's client runs, offered with its answer (`docs/protocol.md`
    /// section 11).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tools: Vec<crate::ToolSpec>,
}

impl QueuedSend {
    /// The sender, as the engine checks and answers them.
    pub fn identity(&self) -> Identity {
        let mut who = Identity::new(self.user_id.clone());
        who.roles = self.roles.clone();
        who
    }
}

/// Each conversation's queue of sends.
///
/// A send made with `on_busy: "enqueue"` while an answer runs waits in its conversation's
/// queue ([`enqueue_send`](Self::enqueue_send)), in the store so that any node may answer it:
/// the node that ends an answer takes the lease for the queue's first send and then
/// [`remove_queued`](Self::remove_queued)s it.
#[async_trait]
pub trait SendQueue: Send + Sync + 'static {
    /// Queues a send behind its conversation's running answer, if fewer than `max` wait:
    /// its position (1: next), or `None`, changing nothing, when the queue is full. A send
    /// already queued (same `stream_id`) is not queued twice: its position is returned.
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError>;

    /// The sends waiting in `conversation`, next first.
    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError>;

    /// Takes the send of `stream_id` out of the queue; `false` when it is not (or no longer)
    /// there. Exactly one of several concurrent calls gets `true`.
    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError>;
}

#[async_trait]
impl<T: SendQueue + ?Sized> SendQueue for std::sync::Arc<T> {
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError> {
        (**self).enqueue_send(send, max).await
    }
    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError> {
        (**self).queued_sends(conversation).await
    }
    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError> {
        (**self).remove_queued(conversation, stream_id).await
    }
}
