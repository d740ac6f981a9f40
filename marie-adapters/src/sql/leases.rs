//! Sessions (`marie_sessions`) and the leases of running answers (`marie_answer_leases`):
//! rows that lapse at `expires_at`. A lapsed row reads as absent; a lapsed lease is taken
//! over by the next claim, and lapsed sessions are swept now and then.

use std::sync::atomic::Ordering;
use std::time::Duration;

use marie_core::{
    ActiveStream, ConversationId, SessionId, SessionRecord, StreamId, UserId, now_millis,
};
use sqlx::Row;

use super::{Fault, SqlStore, changed, corrupt, from_db, from_json, millis, to_db, to_json};

/// Every this many session writes, one sweeps the expired sessions.
const SWEEP_EVERY: u64 = 256;

impl SqlStore {
    pub(super) async fn write_session(&self, session: &SessionRecord) -> Result<(), Fault> {
        let now = now_millis();
        if session.expires_at <= now {
            return self.delete_session(&session.session_id).await;
        }
        if self.inner.session_writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY
            == SWEEP_EVERY - 1
        {
            sqlx::query("DELETE FROM marie_sessions WHERE expires_at <= $1")
                .bind(to_db(now))
                .execute(self.pool())
                .await?;
        }
        sqlx::query(
            "INSERT INTO marie_sessions (session_id, user_id, rooms, expires_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (session_id) DO UPDATE SET \
             user_id = excluded.user_id, rooms = excluded.rooms, expires_at = excluded.expires_at",
        )
        .bind(session.session_id.as_str())
        .bind(session.user_id.as_str())
        .bind(to_json(&session.rooms)?)
        .bind(to_db(session.expires_at))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(super) async fn read_session(
        &self,
        session: &SessionId,
    ) -> Result<Option<SessionRecord>, Fault> {
        let row = sqlx::query(
            "SELECT user_id, rooms, expires_at FROM marie_sessions \
             WHERE session_id = $1 AND expires_at > $2",
        )
        .bind(session.as_str())
        .bind(to_db(now_millis()))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let rooms: String = row.try_get(1)?;
        Ok(Some(SessionRecord {
            session_id: session.clone(),
            user_id: UserId::parse(row.try_get::<String, _>(0)?).map_err(corrupt)?,
            rooms: from_json(&rooms)?,
            expires_at: from_db(row.try_get(2)?),
        }))
    }

    pub(super) async fn delete_session(&self, session: &SessionId) -> Result<(), Fault> {
        sqlx::query("DELETE FROM marie_sessions WHERE session_id = $1")
            .bind(session.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

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
        active: &ActiveStream,
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
        .bind(active.stream_id.as_str())
        .bind(to_db(active.seq))
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
    ) -> Result<Option<ActiveStream>, Fault> {
        let row = sqlx::query(
            "SELECT stream_id, seq FROM marie_answer_leases \
             WHERE conversation_id = $1 AND expires_at > $2",
        )
        .bind(conversation.as_str())
        .bind(to_db(now_millis()))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ActiveStream {
            stream_id: StreamId::parse(row.try_get::<String, _>(0)?).map_err(corrupt)?,
            seq: from_db(row.try_get(1)?),
            pending_approval: None,
        }))
    }
}
