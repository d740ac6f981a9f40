//! [`MemoryStore`]: every [`RoomStore`] record in this process's memory.
//!
//! - `mod.rs`: the store and its records.
//! - `tree.rs`: one conversation's history, every branch of it, and its active branch.
//! - `files.rs`: [`MemoryFileStore`], uploaded files.

mod files;
mod tree;

pub use files::MemoryFileStore;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use marie_core::{
    ActiveStream, ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, ChatMessage,
    ConversationId, ConversationInfo, HistoryQuery, MessageId, PromptMessage, QueuedSend,
    RoomStore, SessionId, SessionRecord, StoreError, StreamId, UsageWindow, UserId, now_millis,
};

use tree::HistoryTree;

/// A [`RoomStore`] in memory: the embedded default, for one node and for tests.
///
/// Cheap to clone; clones share the data. Nothing survives the process, and history grows
/// without bound unless [`MemoryStore::with_history_cap`] sets a cap per conversation.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

/// Each conversation has a lock of its own: every send reads and writes its conversation
/// several times, and one lock for all of them would make concurrent conversations wait
/// for each other (`docs/benchmarks.md`, item 17). The rest shares one lock.
#[derive(Debug, Default)]
struct Shared {
    conversations: RwLock<HashMap<ConversationId, Arc<Mutex<Conversation>>>>,
    data: Mutex<Data>,
    history_cap: Option<usize>,
}

#[derive(Debug, Default)]
struct Data {
    sessions: HashMap<SessionId, SessionRecord>,
    /// Leases of running answers, with the instant each lapses.
    answers: HashMap<ConversationId, (ActiveStream, Instant)>,
    approvals: HashMap<ApprovalId, ApprovalRecord>,
    /// The approval each conversation waits for.
    pending: HashMap<ConversationId, ApprovalId>,
    /// The sends waiting in each conversation, next first.
    queues: HashMap<ConversationId, VecDeque<QueuedSend>>,
    /// Tokens used per user and budget window.
    usage: HashMap<(UserId, UsageWindow), u64>,
}

impl Data {
    /// The unexpired lease on `conversation`, dropping a lapsed one.
    fn lease(&mut self, conversation: &ConversationId) -> Option<&mut (ActiveStream, Instant)> {
        if self
            .answers
            .get(conversation)
            .is_some_and(|(_, until)| *until <= Instant::now())
        {
            self.answers.remove(conversation);
        }
        self.answers.get_mut(conversation)
    }

    /// Forgets approvals kept long enough (see [`ApprovalRecord::keep_until`]).
    fn prune_approvals(&mut self) {
        let now = now_millis();
        self.approvals.retain(|_, a| a.keep_until() > now);
        let approvals = &self.approvals;
        self.pending.retain(|_, id| approvals.contains_key(id));
    }
}

#[derive(Debug)]
struct Conversation {
    info: ConversationInfo,
    /// In the order they were let in; the creator first.
    members: Vec<UserId>,
    history: HistoryTree,
}

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

    /// Runs `f` on `conversation` under its lock; `None` when there is no such conversation.
    fn with_conversation<T>(
        &self,
        conversation: &ConversationId,
        f: impl FnOnce(&mut Conversation) -> T,
    ) -> Option<T> {
        let conv = self
            .shared
            .conversations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(conversation)
            .cloned()?;
        // Every mutation of a conversation is a single step that cannot panic halfway, so a
        // poisoned lock still guards consistent data.
        let mut guard = conv.lock().unwrap_or_else(PoisonError::into_inner);
        Some(f(&mut guard))
    }

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps at most `cap` messages per conversation, dropping the
    /// oldest.
    pub fn with_history_cap(cap: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                history_cap: Some(cap.max(1)),
                ..Shared::default()
            }),
        }
    }

    fn data(&self) -> MutexGuard<'_, Data> {
        // Every mutation below is a single step that cannot panic halfway, so a poisoned
        // lock still guards consistent data.
        self.shared
            .data
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl RoomStore for MemoryStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        let mut conversations = self
            .shared
            .conversations
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
        .ok_or_else(no_such_conversation)
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

    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        let cap = self.shared.history_cap;
        self.with_conversation(conversation, |conv| {
            conv.history.insert(message);
            if let Some(cap) = cap {
                conv.history.trim(cap);
            }
        })
        .ok_or_else(no_such_conversation)
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

    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        let mut data = self.data();
        // Sweep expired sessions now and then on write, so the map cannot grow without
        // bound and a connect does not pay for a full scan each time.
        if data.sessions.len() % 1024 == 1023 {
            let now = now_millis();
            data.sessions.retain(|_, s| s.expires_at > now);
        }
        data.sessions.insert(session.session_id.clone(), session);
        Ok(())
    }

    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .data()
            .sessions
            .get(session)
            .filter(|s| s.expires_at > now_millis())
            .cloned())
    }

    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        self.data().sessions.remove(session);
        Ok(())
    }

    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut data = self.data();
        if data.lease(conversation).is_some() {
            return Ok(false);
        }
        let active = ActiveStream {
            stream_id: stream_id.clone(),
            seq: 0,
            pending_approval: None,
        };
        data.answers
            .insert(conversation.clone(), (active, Instant::now() + ttl));
        Ok(true)
    }

    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        active: &ActiveStream,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut data = self.data();
        if data
            .lease(conversation)
            .is_some_and(|(held, _)| held.stream_id != active.stream_id)
        {
            return Ok(false);
        }
        data.answers
            .insert(conversation.clone(), (active.clone(), Instant::now() + ttl));
        Ok(true)
    }

    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError> {
        let mut data = self.data();
        if data
            .answers
            .get(conversation)
            .is_some_and(|(held, _)| held.stream_id == *stream_id)
        {
            data.answers.remove(conversation);
        }
        Ok(())
    }

    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ActiveStream>, StoreError> {
        Ok(self.data().lease(conversation).map(|(a, _)| a.clone()))
    }

    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let mut data = self.data();
        data.prune_approvals();
        let request = &approval.request;
        if approval.decision.is_none() {
            data.pending
                .insert(request.conversation_id.clone(), request.approval_id.clone());
        }
        data.approvals
            .insert(request.approval_id.clone(), approval.clone());
        Ok(())
    }

    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(self.data().approvals.get(approval).cloned())
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        let mut data = self.data();
        let Some(record) = data.approvals.get_mut(approval) else {
            return Ok(ApprovalOutcome::NotFound);
        };
        if record.decision.is_some() {
            return Ok(ApprovalOutcome::AlreadyDecided(record.clone()));
        }
        record.decision = Some(decision.clone());
        let decided = record.clone();
        let conversation = &decided.request.conversation_id;
        if data.pending.get(conversation) == Some(approval) {
            data.pending.remove(conversation);
        }
        Ok(ApprovalOutcome::Decided(decided))
    }

    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let data = self.data();
        Ok(data
            .pending
            .get(conversation)
            .and_then(|id| data.approvals.get(id))
            .filter(|a| a.decision.is_none())
            .cloned())
    }

    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        let mut data = self.data();
        if let Some(record) = data.approvals.remove(approval) {
            let conversation = &record.request.conversation_id;
            if data.pending.get(conversation) == Some(approval) {
                data.pending.remove(conversation);
            }
        }
        Ok(())
    }

    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let mut data = self.data();
        // Ended windows are read no more: forget them now and then.
        if data.usage.len() % 1024 == 1023 {
            let now = now_millis();
            data.usage.retain(|(_, w), _| w.end > now);
        }
        let used = data.usage.entry((user.clone(), window)).or_default();
        *used = used.saturating_add(tokens);
        Ok(*used)
    }

    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        Ok(self
            .data()
            .usage
            .get(&(user.clone(), window))
            .copied()
            .unwrap_or(0))
    }

    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError> {
        let mut data = self.data();
        let queue = data.queues.entry(send.conversation_id.clone()).or_default();
        if let Some(at) = queue.iter().position(|q| q.stream_id == send.stream_id) {
            return Ok(Some(at + 1));
        }
        if queue.len() >= max {
            return Ok(None);
        }
        queue.push_back(send.clone());
        Ok(Some(queue.len()))
    }

    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError> {
        Ok(self
            .data()
            .queues
            .get(conversation)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError> {
        let mut data = self.data();
        let Some(queue) = data.queues.get_mut(conversation) else {
            return Ok(false);
        };
        let Some(at) = queue.iter().position(|q| q.stream_id == *stream_id) else {
            return Ok(false);
        };
        queue.remove(at);
        if queue.is_empty() {
            data.queues.remove(conversation);
        }
        Ok(true)
    }
}

fn no_such_conversation() -> StoreError {
    StoreError::Unavailable("no such conversation".into())
}
