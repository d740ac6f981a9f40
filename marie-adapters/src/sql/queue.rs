//! Queued sends (`marie_queued_sends`, `marie_send_queues`): the sends waiting behind a
//! conversation's running answer, next first by `seq`. Enqueueing updates the conversation's
//! `marie_send_queues` row first, which serializes the enqueuers of one conversation (the
//! position and the `max` check stay exact); taking a send out is one `DELETE`, which
//! exactly one of several concurrent callers gets.

use async_trait::async_trait;
use marie_core::{ConversationId, QueuedSend, SendQueue, StoreError, StreamId};

use super::{Fault, SqlStore, changed, from_json, to_json};

impl SqlStore {
    pub(super) async fn enqueue(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, Fault> {
        let conversation = send.conversation_id.as_str();
        let mut tx = self.begin_write().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO marie_send_queues (conversation_id, last_seq) VALUES ($1, 1) \
             ON CONFLICT (conversation_id) DO UPDATE \
             SET last_seq = marie_send_queues.last_seq + 1 RETURNING last_seq",
        )
        .bind(conversation)
        .fetch_one(&mut *tx)
        .await?;
        let queued: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM marie_queued_sends WHERE conversation_id = $1 AND stream_id = $2",
        )
        .bind(conversation)
        .bind(send.stream_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(at) = queued {
            let position: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM marie_queued_sends WHERE conversation_id = $1 AND seq <= $2",
            )
            .bind(conversation)
            .bind(at)
            .fetch_one(&mut *tx)
            .await?;
            tx.rollback().await?;
            return Ok(Some(usize::try_from(position).unwrap_or(usize::MAX)));
        }
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM marie_queued_sends WHERE conversation_id = $1",
        )
        .bind(conversation)
        .fetch_one(&mut *tx)
        .await?;
        let waiting = usize::try_from(waiting).unwrap_or(usize::MAX);
        if waiting >= max {
            tx.rollback().await?;
            return Ok(None);
        }
        sqlx::query(
            "INSERT INTO marie_queued_sends (conversation_id, stream_id, seq, send) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(conversation)
        .bind(send.stream_id.as_str())
        .bind(seq)
        .bind(to_json(send)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(waiting + 1))
    }

    pub(super) async fn queue(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, Fault> {
        let sends: Vec<String> = sqlx::query_scalar(
            "SELECT send FROM marie_queued_sends WHERE conversation_id = $1 ORDER BY seq",
        )
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        Ok(sends
            .iter()
            .map(|send| from_json(send))
            .collect::<Result<_, _>>()?)
    }

    pub(super) async fn dequeue(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, Fault> {
        let removed = sqlx::query(
            "DELETE FROM marie_queued_sends WHERE conversation_id = $1 AND stream_id = $2",
        )
        .bind(conversation.as_str())
        .bind(stream_id.as_str())
        .execute(self.pool())
        .await?;
        Ok(changed(&removed))
    }
}

#[async_trait]
impl SendQueue for SqlStore {
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError> {
        self.run("enqueue_send", || self.enqueue(send, max)).await
    }

    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError> {
        self.run("queued_sends", || self.queue(conversation)).await
    }

    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError> {
        self.run("remove_queued", || self.dequeue(conversation, stream_id))
            .await
    }
}
