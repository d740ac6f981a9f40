//! Conversations and their members: `marie_conversations`, `marie_members`.

use async_trait::async_trait;
use marie_core::{ConversationId, ConversationInfo, Conversations, StoreError, UserId};
use sqlx::Row;

use super::{Fault, SqlStore, changed, corrupt, from_db, to_db};

/// Locks a conversation's row for the rest of the transaction (and, in the messages' case,
/// hands out the next `seq`); no row: no such conversation.
pub(super) const LOCK_CONVERSATION: &str =
    "UPDATE marie_conversations SET last_seq = last_seq WHERE conversation_id = $1";

impl SqlStore {
    pub(super) async fn create(&self, info: &ConversationInfo) -> Result<bool, Fault> {
        let mut tx = self.begin_write().await?;
        let created = sqlx::query(
            "INSERT INTO marie_conversations (conversation_id, created_by, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT (conversation_id) DO NOTHING",
        )
        .bind(info.conversation_id.as_str())
        .bind(info.created_by.as_str())
        .bind(to_db(info.created_at))
        .execute(&mut *tx)
        .await?;
        if !changed(&created) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO marie_members (conversation_id, user_id, position) VALUES ($1, $2, 0)",
        )
        .bind(info.conversation_id.as_str())
        .bind(info.created_by.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn read_conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, Fault> {
        let row = sqlx::query(
            "SELECT created_by, created_at FROM marie_conversations WHERE conversation_id = $1",
        )
        .bind(conversation.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(ConversationInfo {
            conversation_id: conversation.clone(),
            created_by: user_id(row.try_get(0)?)?,
            created_at: from_db(row.try_get(1)?),
        }))
    }

    pub(super) async fn grant(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), Fault> {
        let mut tx = self.begin_write().await?;
        let locked = sqlx::query(LOCK_CONVERSATION)
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        if !changed(&locked) {
            tx.rollback().await?;
            return Err(StoreError::no_such_conversation().into());
        }
        // The conversation's row is locked: no other grant counts the members meanwhile.
        sqlx::query(
            "INSERT INTO marie_members (conversation_id, user_id, position) \
             VALUES ($1, $2, (SELECT COUNT(*) FROM marie_members WHERE conversation_id = $1)) \
             ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn is_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, Fault> {
        let row =
            sqlx::query("SELECT 1 FROM marie_members WHERE conversation_id = $1 AND user_id = $2")
                .bind(conversation.as_str())
                .bind(user.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    pub(super) async fn read_members(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<UserId>, Fault> {
        let rows = sqlx::query(
            "SELECT user_id FROM marie_members WHERE conversation_id = $1 \
             ORDER BY position, user_id",
        )
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok(user_id(row.try_get(0)?)?))
            .collect()
    }
}

fn user_id(raw: String) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(corrupt)
}

#[async_trait]
impl Conversations for SqlStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        self.run("create_conversation", || self.create(&info)).await
    }

    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        self.run("conversation", || self.read_conversation(conversation))
            .await
    }

    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        self.run("grant_access", || self.grant(conversation, user))
            .await
    }

    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        self.run("has_access", || self.is_member(conversation, user))
            .await
    }

    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError> {
        self.run("members", || self.read_members(conversation))
            .await
    }
}
