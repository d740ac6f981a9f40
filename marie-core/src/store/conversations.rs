//! [`Conversations`]: which conversations exist, and who may enter them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, StoreError, UserId};

/// A conversation's record: who created it and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its creator, who may always join and invite.
    pub created_by: UserId,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// Conversations and their access lists.
///
/// The [`AccessPolicy`](crate::AccessPolicy) reads them on every command that names a
/// conversation, so a grant takes effect at once, on every node.
#[async_trait]
pub trait Conversations: Send + Sync + 'static {
    /// Creates a conversation and grants its creator access. Returns `false`, changing
    /// nothing, when it already exists.
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError>;

    /// Reads a conversation's record.
    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError>;

    /// Lets `user` join `conversation` (an invite). Idempotent.
    /// [`StoreError::NotFound`] when there is no such conversation.
    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError>;

    /// Whether `user` was granted access to `conversation` (creators always are).
    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError>;

    /// Every user with access to `conversation`, in the order they were let in.
    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError>;
}

#[async_trait]
impl<T: Conversations + ?Sized> Conversations for std::sync::Arc<T> {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        (**self).create_conversation(info).await
    }
    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        (**self).conversation(conversation).await
    }
    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        (**self).grant_access(conversation, user).await
    }
    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        (**self).has_access(conversation, user).await
    }
    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError> {
        (**self).members(conversation).await
    }
}
