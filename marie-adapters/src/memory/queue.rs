//! [`SendQueue`] in memory.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use marie_core::{ConversationId, QueuedSend, SendQueue, StoreError, StreamId};

use super::{MemoryStore, lock};

/// The sends waiting in each conversation, next first.
pub(super) type Queues = HashMap<ConversationId, VecDeque<QueuedSend>>;

#[async_trait]
impl SendQueue for MemoryStore {
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError> {
        let mut queues = lock(&self.tables.queues);
        let queue = queues.entry(send.conversation_id.clone()).or_default();
        if let Some(at) = queue.iter().position(|q| q.stream_id == send.stream_id) {
            return Ok(Some(at + 1));
        }
        if queue.len() >= max {
            return Ok(None);
        }
        queue.push_back(send.clone());
        Ok(Some(queue.len()))
    }

    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError> {
        Ok(lock(&self.tables.queues)
            .get(conversation)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError> {
        let mut queues = lock(&self.tables.queues);
        let Some(queue) = queues.get_mut(conversation) else {
            return Ok(false);
        };
        let Some(at) = queue.iter().position(|q| q.stream_id == *stream_id) else {
            return Ok(false);
        };
        queue.remove(at);
        if queue.is_empty() {
            queues.remove(conversation);
        }
        Ok(true)
    }
}
