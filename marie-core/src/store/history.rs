//! [`History`]: each conversation's messages, a tree of branches, and its active branch.

use async_trait::async_trait;

use crate::{ChatMessage, ConversationId, MessageId, PromptMessage, StoreError};

/// Which part of a conversation's active branch to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only the messages before this one on the active branch (its ancestors). A cursor that
    /// is not on the active branch cuts by id order instead: the messages whose ids sort
    /// before it.
    pub before: Option<MessageId>,
    /// At most this many messages: the newest ones that match, oldest first.
    pub limit: usize,
}

impl HistoryQuery {
    /// The newest `limit` messages of the active branch.
    pub fn newest(limit: usize) -> Self {
        Self {
            before: None,
            limit,
        }
    }
}

/// Conversations' messages.
///
/// History is a tree: every message names the message it follows (`parent_id`), and an
/// edit or a regenerated answer is a sibling of the message it replaces; nothing is ever
/// deleted. Each conversation has one *active branch*, a path from a first message to a
/// leaf, which is what [`history`](Self::history) pages through and what the model is shown.
/// [`append_message`](Self::append_message) makes the branch through the new message the
/// active one; [`switch_branch`](Self::switch_branch) moves it. A store keeps the active
/// branch so that a page of it costs what a page costs, however long the conversation.
#[async_trait]
pub trait History: Send + Sync + 'static {
    /// Adds a message after `message.parent_id` (`None`: a first message) and makes the
    /// branch through it the active one: its parent's ancestors, its parent, and it. A parent
    /// the store does not hold (trimmed away, say) makes the message the start of the branch.
    /// Its `siblings` are not stored. [`StoreError::NotFound`] when there is no such
    /// conversation.
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError>;

    /// Adds `message` after the active branch's leaf, whatever `message.parent_id` says, and
    /// returns it as stored (its `parent_id` the leaf; `None` in an empty conversation). The
    /// read of the leaf and the append are one step: two messages appended at once, from
    /// any node, follow each other instead of becoming siblings (people talking in a group,
    /// an answer stored while they do).
    ///
    /// The default reads [`active_leaf`](Self::active_leaf), then appends: a store where two
    /// writers can meet must override it.
    async fn append_to_active(
        &self,
        conversation: &ConversationId,
        mut message: ChatMessage,
    ) -> Result<ChatMessage, StoreError> {
        message.parent_id = self.active_leaf(conversation).await?;
        self.append_message(conversation, message.clone()).await?;
        Ok(message)
    }

    /// Reads the active branch: its newest `query.limit` messages before `query.before`,
    /// oldest first, each with its `siblings` when it has any.
    async fn history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<ChatMessage>, StoreError>;

    /// Like [`history`](Self::history), as the model is given the messages (role, text and
    /// parts): what the engine sends with every question. The default reads
    /// [`history`](Self::history); a store that can leave out what it would copy for nothing
    /// should.
    async fn prompt_history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<PromptMessage>, StoreError> {
        let history = self.history(conversation, query).await?;
        Ok(history
            .into_iter()
            .map(|m| PromptMessage {
                role: m.role,
                content: m.content,
                parts: m.parts,
                attachments: m.attachments,
                author: (m.role == crate::MessageRole::User)
                    .then(|| m.user_id.map(|u| u.as_str().to_owned()))
                    .flatten(),
            })
            .collect())
    }

    /// Reads one message of `conversation`, on any branch (without its `siblings`).
    async fn message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, StoreError>;

    /// The last message of the active branch, which a new message follows.
    async fn active_leaf(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        let newest = self.history(conversation, HistoryQuery::newest(1)).await?;
        Ok(newest.into_iter().next().map(|m| m.message_id))
    }

    /// Makes the branch through `message` the active one, down to its newest leaf (from
    /// `message`, the newest child at each step), and returns that leaf; `None`, changing
    /// nothing, when `conversation` holds no such message.
    async fn switch_branch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError>;

    /// Deletes every message of `conversation`, on every branch (its conversation is being
    /// deleted). Nothing when it has none.
    async fn delete_history(&self, conversation: &ConversationId) -> Result<(), StoreError>;

    /// Every message of `conversation`, on every branch, in the order they were stored (the
    /// oldest first), without `siblings` (`parent_id` gives the tree): a member's copy of the
    /// conversation (`GET /api/chat/conversations/{id}/export`). It costs what the
    /// conversation holds, so it is not on any path an answer takes. Empty when there is no
    /// such conversation.
    async fn all_messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<ChatMessage>, StoreError>;
}

#[async_trait]
impl<T: History + ?Sized> History for std::sync::Arc<T> {
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        (**self).append_message(conversation, message).await
    }
    async fn append_to_active(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<ChatMessage, StoreError> {
        (**self).append_to_active(conversation, message).await
    }
    async fn history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        (**self).history(conversation, query).await
    }
    async fn prompt_history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<PromptMessage>, StoreError> {
        (**self).prompt_history(conversation, query).await
    }
    async fn message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, StoreError> {
        (**self).message(conversation, message).await
    }
    async fn active_leaf(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        (**self).active_leaf(conversation).await
    }
    async fn switch_branch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        (**self).switch_branch(conversation, message).await
    }
    async fn delete_history(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        (**self).delete_history(conversation).await
    }
    async fn all_messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        (**self).all_messages(conversation).await
    }
}
