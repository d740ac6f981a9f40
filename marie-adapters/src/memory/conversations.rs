//! [`Conversations`] in memory: each conversation, its members, their read marks and its
//! history under a lock of its own, and each user's list of conversations as an ordered set.
//!
//! Locks are taken in one order, so that none waits for another in a circle: the map of
//! conversations, then one conversation, then the users' lists. A page of a list is read
//! under the lists' lock alone, then each conversation's record under its own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use async_trait::async_trait;
use marie_core::{
    ConversationChange, ConversationId, ConversationInfo, ConversationPage, Conversations,
    LastMessage, ListCursor, ListQuery, ListedConversation, MessageId, StoreError, UserId,
};

use super::MemoryStore;
use super::tree::HistoryTree;

/// Every conversation, each behind its own lock, and the ids of those deleted (never used
/// again).
#[derive(Debug, Default)]
pub(super) struct Rooms(RwLock<RoomMap>);

#[derive(Debug, Default)]
struct RoomMap {
    live: HashMap<ConversationId, Arc<Mutex<Conversation>>>,
    deleted: HashSet<ConversationId>,
}

#[derive(Debug)]
pub(super) struct Conversation {
    pub(super) info: ConversationInfo,
    /// In the order they were let in; the creator first.
    pub(super) members: Vec<UserId>,
    /// Each member's read mark: the position the message they marked read was stored at
    /// (what `unread` counts from, and what moves only forward), and that message.
    pub(super) reads: HashMap<UserId, (u64, MessageId)>,
    pub(super) history: HistoryTree,
}

/// A position in a user's list: most recently active last (read backwards).
type Entry = (u64, ConversationId);

/// Each user's conversations in order of activity, and each conversation's title in lower
/// case (what a query is matched against).
#[derive(Debug, Default)]
pub(super) struct Lists {
    by_user: HashMap<UserId, UserList>,
    titles: HashMap<ConversationId, String>,
}

#[derive(Debug, Default)]
struct UserList {
    active: BTreeSet<Entry>,
    archived: BTreeSet<Entry>,
}

impl Lists {
    /// `user` follows `conversation` from now on, unarchived.
    fn add(&mut self, user: &UserId, conversation: &ConversationId, at: u64) {
        let list = self.by_user.entry(user.clone()).or_default();
        list.active.insert((at, conversation.clone()));
    }

    /// `user` no longer has `conversation` in their list.
    fn remove(&mut self, user: &UserId, conversation: &ConversationId, at: u64) {
        if let Some(list) = self.by_user.get_mut(user) {
            let entry = (at, conversation.clone());
            list.active.remove(&entry);
            list.archived.remove(&entry);
            if list.active.is_empty() && list.archived.is_empty() {
                self.by_user.remove(user);
            }
        }
    }

    /// `conversation` was active at `to` (it was at `from`): it moves up every member's list.
    fn moved(&mut self, members: &[UserId], conversation: &ConversationId, from: u64, to: u64) {
        if from == to {
            return;
        }
        let (old, new) = ((from, conversation.clone()), (to, conversation.clone()));
        for user in members {
            if let Some(list) = self.by_user.get_mut(user) {
                for set in [&mut list.active, &mut list.archived] {
                    if set.remove(&old) {
                        set.insert(new.clone());
                    }
                }
            }
        }
    }
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
            .live
            .get(conversation)
            .cloned()?;
        // Every mutation of a conversation is a single step that cannot panic halfway, so a
        // poisoned lock still guards consistent data.
        let mut guard = conv.lock().unwrap_or_else(PoisonError::into_inner);
        Some(f(&mut guard))
    }

    fn lists(&self) -> MutexGuard<'_, Lists> {
        super::lock(&self.tables.lists)
    }
}

#[async_trait]
impl Conversations for MemoryStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        let mut rooms = self
            .tables
            .conversations
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let id = &info.conversation_id;
        if rooms.live.contains_key(id) || rooms.deleted.contains(id) {
            return Ok(false);
        }
        {
            let mut lists = self.lists();
            lists.add(&info.created_by, id, info.updated_at);
            if let Some(title) = &info.title {
                lists.titles.insert(id.clone(), title.to_lowercase());
            }
        }
        rooms.live.insert(
            id.clone(),
            Arc::new(Mutex::new(Conversation {
                members: vec![info.created_by.clone()],
                info,
                reads: HashMap::new(),
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
                self.lists().add(user, conversation, conv.info.updated_at);
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

    async fn touch(
        &self,
        conversation: &ConversationId,
        last_message: &LastMessage,
    ) -> Result<(), StoreError> {
        self.with_conversation(conversation, |conv| {
            let from = conv.info.updated_at;
            let to = from.max(last_message.created_at);
            conv.info.updated_at = to;
            conv.info.last_message = Some(last_message.clone());
            self.lists().moved(&conv.members, conversation, from, to);
        });
        Ok(())
    }

    async fn update_conversation(
        &self,
        conversation: &ConversationId,
        change: &ConversationChange,
        at: u64,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        Ok(self.with_conversation(conversation, |conv| {
            let from = conv.info.updated_at;
            change.apply(&mut conv.info, at);
            let mut lists = self.lists();
            lists.moved(&conv.members, conversation, from, conv.info.updated_at);
            if let Some(title) = &conv.info.title {
                lists
                    .titles
                    .insert(conversation.clone(), title.to_lowercase());
            }
            conv.info.clone()
        }))
    }

    /// The user's ordered set, read backwards from the cursor; with a query, the titles are
    /// matched as the set is walked (so a search costs what the list holds, not a page).
    async fn list_conversations(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        let wanted = query.query.as_ref().map(|q| q.to_lowercase());
        let entries: Vec<Entry> = {
            let lists = self.lists();
            let Some(list) = lists.by_user.get(user) else {
                return Ok(ConversationPage::default());
            };
            let set = if query.archived {
                &list.archived
            } else {
                &list.active
            };
            let upper = match &query.before {
                Some(c) => Bound::Excluded((c.updated_at, c.conversation_id.clone())),
                None => Bound::Unbounded,
            };
            set.range((Bound::Unbounded, upper))
                .rev()
                .filter(|(_, id)| match &wanted {
                    Some(q) => lists.titles.get(id).is_some_and(|t| t.contains(q.as_str())),
                    None => true,
                })
                .take(query.limit.saturating_add(1))
                .cloned()
                .collect()
        };
        let more = entries.len() > query.limit;
        let mut page = ConversationPage::default();
        for (at, id) in entries.into_iter().take(query.limit) {
            let listed = self.with_conversation(&id, |c| {
                let mark = c.reads.get(user).map(|(position, _)| *position);
                let max = usize::try_from(ListedConversation::UNREAD_MAX).unwrap_or(usize::MAX);
                let unread = c.history.count_after(mark, max);
                (c.info.clone(), u64::try_from(unread).unwrap_or(u64::MAX))
            });
            if let Some((info, unread)) = listed {
                page.conversations.push(ListedConversation {
                    info,
                    archived: query.archived,
                    unread,
                });
            }
            if more {
                page.next_before = Some(ListCursor {
                    updated_at: at,
                    conversation_id: id,
                });
            }
        }
        Ok(page)
    }

    async fn set_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        Ok(self
            .with_conversation(conversation, |conv| {
                if !conv.members.contains(user) {
                    return false;
                }
                let entry = (conv.info.updated_at, conversation.clone());
                let mut lists = self.lists();
                let list = lists.by_user.entry(user.clone()).or_default();
                let (from, to) = if archived {
                    (&mut list.active, &mut list.archived)
                } else {
                    (&mut list.archived, &mut list.active)
                };
                from.remove(&entry);
                to.insert(entry);
                true
            })
            .unwrap_or(false))
    }

    async fn is_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .with_conversation(conversation, |conv| {
                let entry = (conv.info.updated_at, conversation.clone());
                self.lists()
                    .by_user
                    .get(user)
                    .is_some_and(|list| list.archived.contains(&entry))
            })
            .unwrap_or(false))
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        Ok(self
            .with_conversation(conversation, |conv| {
                if conv.info.created_by == *user || !conv.members.contains(user) {
                    return false;
                }
                conv.members.retain(|m| m != user);
                conv.reads.remove(user);
                self.lists()
                    .remove(user, conversation, conv.info.updated_at);
                true
            })
            .unwrap_or(false))
    }

    async fn delete_conversation(&self, conversation: &ConversationId) -> Result<bool, StoreError> {
        let mut rooms = self
            .tables
            .conversations
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(conv) = rooms.live.remove(conversation) else {
            return Ok(false);
        };
        rooms.deleted.insert(conversation.clone());
        let conv = conv.lock().unwrap_or_else(PoisonError::into_inner);
        let mut lists = self.lists();
        for user in &conv.members {
            lists.remove(user, conversation, conv.info.updated_at);
        }
        lists.titles.remove(conversation);
        Ok(true)
    }

    /// Nothing when there is no such conversation or `user` is no member of it (the mark
    /// would outlive what drops it). Marks compare the positions messages were stored at.
    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        Ok(self
            .with_conversation(conversation, |conv| {
                if !conv.members.contains(user) {
                    return None;
                }
                let held = conv.reads.get(user);
                match conv.history.position(message) {
                    // Forward (or on it): the mark moves to it.
                    Some(at) if held.is_none_or(|(mark, _)| at >= *mark) => {
                        conv.reads.insert(user.clone(), (at, message.clone()));
                        Some(message.clone())
                    }
                    // Back, or a message not held: the mark stays.
                    _ => held.map(|(_, kept)| kept.clone()),
                }
            })
            .flatten())
    }
}
