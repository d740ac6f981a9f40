//! [`RoomStore`]: conversations, who may enter them, their history, and sessions.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::{
    ActiveStream, ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, ChatMessage,
    ConversationId, ConversationInfo, MessageId, PromptMessage, QueuedSend, SessionId, StoreError,
    StreamId, UsageWindow, UserId,
};

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

/// Where MARIE keeps conversations, access lists, history, sessions and the leases of
/// running answers.
///
/// Implementations must be safe to share between nodes when they are backed by a shared
/// store: every method is a single, atomic operation on the backend. Methods return
/// [`StoreError::Unavailable`] rather than blocking forever when the backend is away.
///
/// ## Running answers
///
/// One answer runs per conversation at a time, cluster-wide. The node that starts an answer
/// takes a *lease* on the conversation ([`claim_answer`](Self::claim_answer)), renews it while
/// the answer runs ([`renew_answer`](Self::renew_answer), which also records the last `seq`
/// sent) and gives it back at the end ([`release_answer`](Self::release_answer)). A lease not
/// renewed within its `ttl` lapses, so a node that dies cannot leave a conversation busy
/// forever. [`active_answer`](Self::active_answer) is what `joined.active_stream` reports.
///
/// ## Branches
///
/// History is a tree: every message names the message it follows (`parent_id`), and an
/// edit or a regenerated answer is a sibling of the message it replaces; nothing is ever
/// deleted. Each conversation has one *active branch*, a path from a first message to a
/// leaf, which is what [`history`](Self::history) pages through and what the model is shown.
/// [`append_message`](Self::append_message) makes the branch through the new message the
/// active one; [`switch_branch`](Self::switch_branch) moves it. A store keeps the active
/// branch so that a page of it costs what a page costs, however long the conversation.
///
/// ## Queued sends
///
/// A send made with `on_busy: "enqueue"` while an answer runs waits in its conversation's
/// queue ([`enqueue_send`](Self::enqueue_send)), in the store so that any node may answer it:
/// the node that ends an answer takes the lease for the queue's first send and then
/// [`remove_queued`](Self::remove_queued)s it.
///
/// ## Token budgets
///
/// With a [`BudgetPolicy`](crate::BudgetPolicy), the tokens of each answer are added to its
/// user's figure for the budget's current window ([`add_usage`](Self::add_usage)), once per
/// answer, by the node that ran it; every node reads the same figure
/// ([`usage`](Self::usage)).
///
/// ## Approvals
///
/// A tool call that needs a member's approval is recorded ([`create_approval`](Self::create_approval))
/// before its request is sent; any node may then decide it, and
/// [`decide_approval`](Self::decide_approval) lets exactly one decision win, cluster-wide.
/// A record is kept at least an hour past its expiry (a late `approve_tool` is told
/// `conflict`, not `not_found`), and removed when its answer ends without a decision.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Creates a conversation and grants its creator access. Returns `false`, changing
    /// nothing, when it already exists.
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError>;

    /// Reads a conversation's record.
    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError>;

    /// Lets `user` join `conversation` (an invite). Idempotent.
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

    /// Adds a message after `message.parent_id` (`None`: a first message) and makes the
    /// branch through it the active one: its parent's ancestors, its parent, and it. A parent
    /// the store does not hold (trimmed away, say) makes the message the start of the branch.
    /// Its `siblings` are not stored.
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError>;

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

    /// Creates or replaces a session.
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError>;

    /// Reads a session that has not expired.
    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// Forgets a session.
    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError>;

    /// Takes the lease of `conversation` for the answer `stream_id` (at `seq` 0) for `ttl`.
    /// Returns `false`, changing nothing, while another answer holds an unexpired lease.
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Extends the lease of `active.stream_id` by `ttl` from now and records `active.seq`.
    /// A lease that lapsed meanwhile is taken again. Returns `false`, changing nothing, when
    /// another answer holds the lease.
    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        active: &ActiveStream,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives back the lease of `stream_id`. Does nothing when another answer holds it.
    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError>;

    /// The answer holding an unexpired lease on `conversation`, with the last `seq` recorded.
    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ActiveStream>, StoreError>;

    /// Records a pending approval (its `decision` is `None`); it is its conversation's
    /// pending approval until decided or removed.
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError>;

    /// Reads an approval, decided or not.
    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Decides an approval, atomically: the first decision wins, later ones change nothing.
    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError>;

    /// The approval of `conversation` waiting for a decision, if any.
    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Forgets an approval whose answer ended before it was decided.
    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError>;

    /// Adds `tokens` to what `user` has used in `window` and returns the new total. Atomic:
    /// adds from several nodes at once all count. A store may forget a window once it has
    /// ended.
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError>;

    /// What `user` has used in `window`: 0 when nothing was counted.
    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError>;

    /// Queues a send behind its conversation's running answer, if fewer than `max` wait:
    /// its position (1: next), or `None`, changing nothing, when the queue is full. A send
    /// already queued (same `stream_id`) is not queued twice: its position is returned.
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError>;

    /// The sends waiting in `conversation`, next first.
    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError>;

    /// Takes the send of `stream_id` out of the queue; `false` when it is not (or no longer)
    /// there. Exactly one of several concurrent calls gets `true`.
    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError>;
}

/// Forwards every call, so an `Arc<dyn RoomStore>` (or `Arc<S>`) is a store too.
#[async_trait]
impl<T: RoomStore + ?Sized> RoomStore for std::sync::Arc<T> {
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
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        (**self).append_message(conversation, message).await
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
    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        (**self).put_session(session).await
    }
    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        (**self).session(session).await
    }
    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        (**self).remove_session(session).await
    }
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        (**self).claim_answer(conversation, stream_id, ttl).await
    }
    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        active: &ActiveStream,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        (**self).renew_answer(conversation, active, ttl).await
    }
    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError> {
        (**self).release_answer(conversation, stream_id).await
    }
    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ActiveStream>, StoreError> {
        (**self).active_answer(conversation).await
    }
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        (**self).create_approval(approval).await
    }
    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        (**self).approval(approval).await
    }
    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        (**self).decide_approval(approval, decision).await
    }
    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        (**self).pending_approval(conversation).await
    }
    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        (**self).remove_approval(approval).await
    }
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        (**self).add_usage(user, window, tokens).await
    }
    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        (**self).usage(user, window).await
    }
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError> {
        (**self).enqueue_send(send, max).await
    }
    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError> {
        (**self).queued_sends(conversation).await
    }
    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError> {
        (**self).remove_queued(conversation, stream_id).await
    }
}
