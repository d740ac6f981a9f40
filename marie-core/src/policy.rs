//! [`AccessPolicy`]: who may join and invite.

use async_trait::async_trait;

use crate::{ConversationInfo, Conversations, Identity, StoreError};

/// Decides who may enter a conversation and who may invite others to it.
///
/// The engine asks it on every event that names a conversation, so a revoked grant takes
/// effect at once.
#[async_trait]
pub trait AccessPolicy: Send + Sync + 'static {
    /// Whether `who` may join, read and write `conversation`.
    async fn can_access(
        &self,
        who: &Identity,
        conversation: &ConversationInfo,
        store: &dyn Conversations,
    ) -> Result<bool, StoreError>;

    /// Whether `who` may let another user into `conversation`.
    async fn can_invite(
        &self,
        who: &Identity,
        conversation: &ConversationInfo,
        store: &dyn Conversations,
    ) -> Result<bool, StoreError> {
        self.can_access(who, conversation, store).await
    }
}

/// The default policy: a conversation's creator and the users it was granted to may enter
/// and invite; admins may enter any conversation.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultAccessPolicy;

#[async_trait]
impl AccessPolicy for DefaultAccessPolicy {
    async fn can_access(
        &self,
        who: &Identity,
        conversation: &ConversationInfo,
        store: &dyn Conversations,
    ) -> Result<bool, StoreError> {
        if who.is_admin() || conversation.created_by == who.user_id {
            return Ok(true);
        }
        store
            .has_access(&conversation.conversation_id, &who.user_id)
            .await
    }
}

#[async_trait]
impl<T: AccessPolicy + ?Sized> AccessPolicy for std::sync::Arc<T> {
    async fn can_access(
        &self,
        who: &Identity,
        conversation: &ConversationInfo,
        store: &dyn Conversations,
    ) -> Result<bool, StoreError> {
        (**self).can_access(who, conversation, store).await
    }

    async fn can_invite(
        &self,
        who: &Identity,
        conversation: &ConversationInfo,
        store: &dyn Conversations,
    ) -> Result<bool, StoreError> {
        (**self).can_invite(who, conversation, store).await
    }
}
