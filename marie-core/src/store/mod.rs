//! Where MARIE keeps what outlives one command: one small trait per concern, and
//! [`RoomStore`], their sum.
//!
//! | trait | what it keeps |
//! |---|---|
//! | [`Conversations`] | conversations and who may enter them |
//! | [`History`] | messages, a tree of branches per conversation, and its active branch |
//! | [`Sessions`] | what a connection needs to resume after a reconnect |
//! | [`AnswerLeases`] | which answer runs in a conversation, one at a time across nodes |
//! | [`Approvals`] | tool calls waiting for a member's decision, decided once |
//! | [`SendQueue`] | sends waiting behind a running answer |
//! | [`UsageLedger`] | tokens spent per user and budget window |
//!
//! A backend usually implements all seven and is a [`RoomStore`] by the blanket impl; the
//! engine takes it whole, or in parts ([`Stores`]): leases and queues in Redis, history in
//! PostgreSQL, say. One contract suite (`marie-adapters/tests/contract.rs`) runs on every
//! backend.
//!
//! ## Rules every store keeps
//!
//! Implementations must be safe to share between nodes when they are backed by a shared
//! store: every method is a single, atomic operation on the backend. Methods return
//! [`StoreError::Unavailable`] rather than blocking forever when the backend is away, and
//! [`StoreError::NotFound`] when the record a change needs does not exist (no error is
//! recognised by its text).
//!
//! ## Layout
//!
//! One file per concern, each with its trait and the types a store keeps for it;
//! `mod.rs` holds the sum and [`Stores`].

mod approvals;
mod conversations;
mod history;
mod leases;
mod queue;
mod sessions;
mod usage;

use std::sync::Arc;

pub use approvals::{
    APPROVAL_RETENTION, ApprovalDecision, ApprovalOutcome, ApprovalRecord, Approvals,
};
pub use conversations::{
    AnswerPolicy, ConversationChange, ConversationInfo, ConversationPage, Conversations,
    LastMessage, ListCursor, ListQuery, ListedConversation,
};
pub use history::{History, HistoryQuery};
pub use leases::{AnswerLease, AnswerLeases};
pub use queue::{QueuedSend, SendQueue};
pub use sessions::{SessionRecord, Sessions};
pub use usage::{UsageLedger, UsageWindow};

/// Everything MARIE keeps, in one backend: the sum of the store traits, implemented by
/// every type that implements them all (`MemoryStore`, `RedisStore`, `SqlStore`).
pub trait RoomStore:
    Conversations + History + Sessions + AnswerLeases + Approvals + SendQueue + UsageLedger
{
}

impl<T> RoomStore for T where
    T: Conversations
        + History
        + Sessions
        + AnswerLeases
        + Approvals
        + SendQueue
        + UsageLedger
        + ?Sized
{
}

/// The stores an engine works with, one per concern: every part from one [`RoomStore`]
/// ([`Stores::new`]), any of them replaced by another backend (`with_*`).
///
/// ```
/// # use marie_core::{AnswerLeases, RoomStore, SendQueue, Stores};
/// fn split(history: impl RoomStore, shared: impl AnswerLeases + SendQueue + Clone) -> Stores {
///     // History in one database; leases and queues where every node sees them at once.
///     Stores::new(history)
///         .with_answer_leases(shared.clone())
///         .with_send_queue(shared)
/// }
/// ```
///
/// Cheap to clone. A store given in parts must still keep each part's rules on its own;
/// no operation spans two parts. The accessors give `&dyn` parts: a call then goes straight
/// to the backend, not through the forwarding impl of `Arc` (a second boxed future).
#[derive(Clone)]
pub struct Stores {
    conversations: Arc<dyn Conversations>,
    history: Arc<dyn History>,
    sessions: Arc<dyn Sessions>,
    leases: Arc<dyn AnswerLeases>,
    approvals: Arc<dyn Approvals>,
    queue: Arc<dyn SendQueue>,
    usage: Arc<dyn UsageLedger>,
}

impl<S: RoomStore> From<S> for Stores {
    fn from(store: S) -> Self {
        Self::new(store)
    }
}

impl Stores {
    /// Every part from one store.
    pub fn new(store: impl RoomStore) -> Self {
        Self::shared(Arc::new(store))
    }

    /// Every part from one shared store. (Given to [`new`](Self::new) or `into()`, an
    /// `Arc<dyn RoomStore>` would be wrapped once more, and each call would go through both.)
    pub fn shared(store: Arc<dyn RoomStore>) -> Self {
        Self {
            conversations: store.clone(),
            history: store.clone(),
            sessions: store.clone(),
            leases: store.clone(),
            approvals: store.clone(),
            queue: store.clone(),
            usage: store,
        }
    }

    /// Replaces where conversations and their access lists are kept.
    pub fn with_conversations(mut self, store: impl Conversations) -> Self {
        self.conversations = Arc::new(store);
        self
    }

    /// Replaces where messages are kept.
    pub fn with_history(mut self, store: impl History) -> Self {
        self.history = Arc::new(store);
        self
    }

    /// Replaces where sessions are kept.
    pub fn with_sessions(mut self, store: impl Sessions) -> Self {
        self.sessions = Arc::new(store);
        self
    }

    /// Replaces where answer leases are kept.
    pub fn with_answer_leases(mut self, store: impl AnswerLeases) -> Self {
        self.leases = Arc::new(store);
        self
    }

    /// Replaces where approvals are kept.
    pub fn with_approvals(mut self, store: impl Approvals) -> Self {
        self.approvals = Arc::new(store);
        self
    }

    /// Replaces where queued sends are kept.
    pub fn with_send_queue(mut self, store: impl SendQueue) -> Self {
        self.queue = Arc::new(store);
        self
    }

    /// Replaces where token usage is counted.
    pub fn with_usage_ledger(mut self, store: impl UsageLedger) -> Self {
        self.usage = Arc::new(store);
        self
    }

    /// Conversations and their access lists.
    pub fn conversations(&self) -> &dyn Conversations {
        &*self.conversations
    }

    /// Messages.
    pub fn history(&self) -> &dyn History {
        &*self.history
    }

    /// Sessions.
    pub fn sessions(&self) -> &dyn Sessions {
        &*self.sessions
    }

    /// Answer leases.
    pub fn answer_leases(&self) -> &dyn AnswerLeases {
        &*self.leases
    }

    /// The answer leases themselves, for a task that outlives the call (a release retried in
    /// the background).
    pub(crate) fn shared_answer_leases(&self) -> Arc<dyn AnswerLeases> {
        self.leases.clone()
    }

    /// Approvals.
    pub fn approvals(&self) -> &dyn Approvals {
        &*self.approvals
    }

    /// Queued sends.
    pub fn send_queue(&self) -> &dyn SendQueue {
        &*self.queue
    }

    /// Token usage.
    pub fn usage_ledger(&self) -> &dyn UsageLedger {
        &*self.usage
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}
