//! Sessions (`marie_sessions`): rows that lapse at `expires_at`. A lapsed row reads as
//! absent, and lapsed sessions are swept now and then.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use marie_core::{SessionId, SessionRecord, Sessions, StoreError, UserId, now_millis};
use sqlx::Row;

use super::{Fault, SqlStore, corrupt, from_db, from_json, to_db, to_json};

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
}

#[async_trait]
impl Sessions for SqlStore {
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        self.run("put_session", || self.write_session(&session))
            .await
    }

    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.run("session", || self.read_session(session)).await
    }

    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        self.run("remove_session", || self.delete_session(session))
            .await
    }
}
