//! [`History`] in memory: each conversation's [`HistoryTree`](super::tree::HistoryTree).

use async_trait::async_trait;
use marie_core::{
    ChatMessage, ConversationId, History, HistoryQuery, MessageId, PromptMessage, StoreError,
};

use super::MemoryStore;
use super::tree::HistoryTree;

impl MemoryStore {
    /// A page of the active branch of `conversation` (see [`HistoryTree::page`]), each
    /// message as `copy` makes it from the conversation's tree and the message.
    fn read_history<T>(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
        copy: impl Fn(&HistoryTree, &ChatMessage) -> T,
    ) -> Vec<T> {
        self.with_conversation(conversation, |conv| {
            let tree = &conv.history;
            tree.page(query).map(|n| copy(tree, &n.message)).collect()
        })
        .unwrap_or_default()
    }
}

#[async_trait]
impl History for MemoryStore {
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        let cap = self.tables.history_cap;
        self.with_conversation(conversation, |conv| {
            conv.history.insert(message);
            if let Some(cap) = cap {
                conv.history.trim(cap);
            }
        })
        .ok_or_else(StoreError::no_such_conversation)
    }

    async fn history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        Ok(
            self.read_history(conversation, &query, |tree, m| ChatMessage {
                siblings: tree.siblings(m).to_vec(),
                ..m.clone()
            }),
        )
    }

    /// Copies only what the model is shown of each message (no siblings: this is read with
    /// every question).
    async fn prompt_history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<PromptMessage>, StoreError> {
        Ok(
            self.read_history(conversation, &query, |_, m| PromptMessage {
                role: m.role,
                content: m.content.clone(),
                parts: m.parts.clone(),
                attachments: m.attachments.clone(),
            }),
        )
    }

    async fn message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, StoreError> {
        Ok(self
            .with_conversation(conversation, |c| c.history.get(message).cloned())
            .flatten())
    }

    async fn active_leaf(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        Ok(self
            .with_conversation(conversation, |c| c.history.leaf().cloned())
            .flatten())
    }

    async fn switch_branch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        Ok(self
            .with_conversation(conversation, |c| c.history.switch(message))
            .flatten())
    }

    async fn delete_history(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        // A deleted conversation's history went with it; one still here is emptied.
        self.with_conversation(conversation, |c| c.history = HistoryTree::default());
        Ok(())
    }

    async fn all_messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        Ok(self
            .with_conversation(conversation, |c| c.history.all().cloned().collect())
            .unwrap_or_default())
    }
}
