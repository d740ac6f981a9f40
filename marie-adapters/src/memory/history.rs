//! [`History`] in memory: each conversation's [`HistoryTree`](super::tree::HistoryTree).

use async_trait::async_trait;
use marie_core::{
    ChatMessage, ConversationId, History, HistoryQuery, MessageId, MessageRole, PromptMessage,
    StoreError,
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

impl MemoryStore {
    /// Stores `message` under its conversation's lock, in one step: a new message after the
    /// active branch's leaf when `at_leaf` (whatever its `parent_id` says), otherwise after
    /// its `parent_id`; a message already held is replaced where it is. Returns the parent
    /// it is stored after.
    fn store_message(
        &self,
        conversation: &ConversationId,
        mut message: ChatMessage,
        at_leaf: bool,
    ) -> Result<Option<MessageId>, StoreError> {
        let cap = self.tables.history_cap;
        self.with_conversation(conversation, |conv| {
            let tree = &mut conv.history;
            if let Some(held) = tree.get(&message.message_id) {
                message.parent_id = held.parent_id.clone();
            } else if at_leaf {
                message.parent_id = tree.leaf().cloned();
            }
            let parent = message.parent_id.clone();
            tree.insert(message);
            if let Some(cap) = cap {
                tree.trim(cap);
            }
            parent
        })
        .ok_or_else(StoreError::no_such_conversation)
    }
}

#[async_trait]
impl History for MemoryStore {
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        self.store_message(conversation, message, false).map(drop)
    }

    /// Reads the leaf and appends under the conversation's lock: one step.
    async fn append_to_active(
        &self,
        conversation: &ConversationId,
        mut message: ChatMessage,
    ) -> Result<ChatMessage, StoreError> {
        message.siblings = Vec::new();
        message.parent_id = self.store_message(conversation, message.clone(), true)?;
        Ok(message)
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
                author: match m.role {
                    MessageRole::User => m.user_id.as_ref().map(ToString::to_string),
                    _ => None,
                },
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
        self.with_conversation(conversation, |c| c.history.clear());
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
