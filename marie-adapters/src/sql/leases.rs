//! The leases of running answers (`marie_answer_leases`): rows that lapse at `expires_at`.
//! A lapsed row reads as absent, and is taken over by the next claim.

use std::time::Duration;

use async_trait::async_trait;
use marie_core::{AnswerLease, AnswerLeases, ConversationId, StoreError, StreamId, now_millis};
use sqlx::Row;

use super::{Fault, SqlStore, changed, corrupt, from_db, millis, to_db};

impl SqlStore {
    /// One statement: inserts the lease, or takes over a lapsed one; changes nothing (no
    /// row affected) while another is unexpired, its own holder's included.
    pub(super) async fn claim(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, Fault> {
        let now = now_millis();
        let claimed = sqlx::query(
            "INSERT INTO marie_answer_leases (conversation_id, stream_id, seq, expires_at) \
             VALUES ($1, $2, 0, $3) ON CONFLICT (conversation_id) DO UPDATE SET \
             stream_id = excluded.stream_id, seq = 0, expires_at = excluded.expires_at \
             WHERE marie_answer_leases.expires_at <= $4",
        )
        .bind(conversation.as_str())
        .bind(stream_id.as_str())
        .bind(to_db(now.saturating_add(millis(ttl).max(1))))
        .bind(to_db(now))
        .execute(self.pool())
        .await?;
        Ok(changed(&claimed))
    }

    /// One statement: extends the lease its holder has, or takes a free or lapsed one.
    pub(super) async fn renew(
        &self,
        conversation: &ConversationId,
        lease: &AnswerLease,
        ttl: Duration,
    ) -> Result<bool, Fault> {
        let now = now_millis();
        let renewed = sqlx::query(
            "INSERT INTO marie_answer_leases (conversation_id, stream_id, seq, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (conversation_id) DO UPDATE SET \
             stream_id = excluded.stream_id, seq = excluded.seq, expires_at = excluded.expires_at \
             WHERE marie_answer_leases.stream_id = excluded.stream_id \
             OR marie_answer_leases.expires_at <= $5",
        )
        .bind(conversation.as_str())
        .bind(lease.stream_id.as_str())
        .bind(to_db(lease.seq))
        .bind(to_db(now.saturating_add(millis(ttl).max(1))))
        .bind(to_db(now))
        .execute(self.pool())
        .await?;
        Ok(changed(&renewed))
    }

    pub(super) async fn release(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), Fault> {
        sqlx::query(
            "DELETE FROM marie_answer_leases WHERE conversation_id = $1 AND stream_id = $2",
        )
        .bind(conversation.as_str())
        .bind(stream_id.as_str())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(super) async fn lease(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<AnswerLease>, Fault> {
        let row = sqlx::query(
            "SELECT stream_id, seq FROM marie_answer_leases \
             WHERE conversation_id = $1 AND expires_at > $2",
        )
        .bind(conversation.as_str())
        .bind(to_db(now_millis()))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AnswerLease {
            stream_id: StreamId::parse(row.try_get::<String, _>(0)?).map_err(corrupt)?,
            seq: from_db(row.try_get(1)?),
        }))
    }
}

#[async_trait]
impl AnswerLeases for SqlStore {
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.run("claim_answer", || self.claim(conversation, stream_id, ttl))
            .await
    }

    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        lease: &AnswerLease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.run("renew_answer", || self.renew(conversation, lease, ttl))
            .await
    }

    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError> {
        self.run("release_answer", || self.release(conversation, stream_id))
            .await
    }

    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<AnswerLease>, StoreError> {
        self.run("active_answer", || self.lease(conversation)).await
    }
}
