//! [`Sessions`]: what a connection needs to resume after a reconnect.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, SessionId, StoreError, UserId};

/// A connection's resumable state (`docs/protocol.md` section 1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The private resume handle.
    pub session_id: SessionId,
    /// Whose session it is; only this user may resume it.
    pub user_id: UserId,
    /// The conversations the connection had joined.
    pub rooms: Vec<ConversationId>,
    /// Milliseconds since the Unix epoch after which the session cannot be resumed.
    pub expires_at: u64,
}

/// Sessions of connections, by their private resume handle.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Creates or replaces a session.
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError>;

    /// Reads a session that has not expired.
    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// Forgets a session.
    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: Sessions + ?Sized> Sessions for std::sync::Arc<T> {
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        (**self).put_session(session).await
    }
    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        (**self).session(session).await
    }
    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        (**self).remove_session(session).await
    }
}
