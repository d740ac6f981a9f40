//! [`Conversations`] in memory: each conversation, its members and its history under a
//! lock of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;
use marie_core::{ConversationId, ConversationInfo, Conversations, StoreError, UserId};

use super::MemoryStore;
use super::tree::HistoryTree;

/// Every conversation, each behind its own lock.
#[derive(Debug, Default)]
pub(super) struct Rooms(RwLock<HashMap<ConversationId, Arc<Mutex<Conversation>>>>);

#[derive(Debug)]
pub(super) struct Conversation {
    pub(super) info: ConversationInfo,
    /// In the order they were let in; the creator first.
    pub(super) members: Vec<UserId>,
    pub(super) history: HistoryTree,
}

impl MemoryStore {
    /// Runs `f` on `conversation` under its lock; `None` when there is no such conversation.
    pub(super) fn with_conversation<T>(
        &self,
        conversation: &ConversationId,
        f: impl FnOnce(&mut Conversation) -> T,
    ) -> Option<T> {
        let conv = self
            .tables
            .conversations
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(conversation)
            .cloned()?;
        // Every mutation of a conversation is a single step that cannot panic halfway, so a
        // poisoned lock still guards consistent data.
        let mut guard = conv.lock().unwrap_or_else(PoisonError::into_inner);
        Some(f(&mut guard))
    }
}

#[async_trait]
impl Conversations for MemoryStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        let mut conversations = self
            .tables
            .conversations
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if conversations.contains_key(&info.conversation_id) {
            return Ok(false);
        }
        conversations.insert(
            info.conversation_id.clone(),
            Arc::new(Mutex::new(Conversation {
                members: vec![info.created_by.clone()],
                info,
                history: HistoryTree::default(),
            })),
        );
        Ok(true)
    }

    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        Ok(self.with_conversation(conversation, |c| c.info.clone()))
    }

    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        self.with_conversation(conversation, |conv| {
            if !conv.members.contains(user) {
                conv.members.push(user.clone());
            }
        })
        .ok_or_else(StoreError::no_such_conversation)
    }

    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .with_conversation(conversation, |c| c.members.contains(user))
            .unwrap_or(false))
    }

    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError> {
        Ok(self
            .with_conversation(conversation, |c| c.members.clone())
            .unwrap_or_default())
    }
}
