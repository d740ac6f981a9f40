//! [`Sessions`](marie_core::Sessions) in memory.

use std::collections::HashMap;

use async_trait::async_trait;
use marie_core::{SessionId, SessionRecord, StoreError, now_millis};

use super::{MemoryStore, lock};

pub(super) type Sessions = HashMap<SessionId, SessionRecord>;

#[async_trait]
impl marie_core::Sessions for MemoryStore {
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        let mut sessions = lock(&self.tables.sessions);
        // Sweep expired sessions now and then on write, so the map cannot grow without
        // bound and a connect does not pay for a full scan each time.
        if sessions.len() % 1024 == 1023 {
            let now = now_millis();
            sessions.retain(|_, s| s.expires_at > now);
        }
        sessions.insert(session.session_id.clone(), session);
        Ok(())
    }

    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(lock(&self.tables.sessions)
            .get(session)
            .filter(|s| s.expires_at > now_millis())
            .cloned())
    }

    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        lock(&self.tables.sessions).remove(session);
        Ok(())
    }
}
