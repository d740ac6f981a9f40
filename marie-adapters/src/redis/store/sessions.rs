//! [`Sessions`] in Redis: one key per session, expiring with it.

use async_trait::async_trait;
use marie_core::{SessionId, SessionRecord, Sessions, StoreError, now_millis};
use redis::AsyncCommands;

use super::{RedisStore, from_json, to_json};

impl RedisStore {
    fn session_key(&self, session: &SessionId) -> String {
        format!("{}:session:{{{session}}}", self.inner.config.prefix)
    }
}

#[async_trait]
impl Sessions for RedisStore {
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        let key = self.session_key(&session.session_id);
        let ttl = session.expires_at.saturating_sub(now_millis());
        if ttl == 0 {
            return self.remove_session(&session.session_id).await;
        }
        let json = to_json(&session)?;
        self.run("put_session", |mut c| async move {
            c.pset_ex::<_, _, ()>(key, json, ttl).await
        })
        .await
    }

    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.session_key(session);
        let raw: Option<String> = self
            .run("session", |mut c| async move { c.get(key).await })
            .await?;
        let record: Option<SessionRecord> = raw.as_deref().map(from_json).transpose()?;
        Ok(record.filter(|s| s.expires_at > now_millis()))
    }

    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        let key = self.session_key(session);
        self.run("remove_session", |mut c| async move {
            c.del::<_, ()>(key).await
        })
        .await
    }
}
