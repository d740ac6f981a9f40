//! [`MemoryStore`]: every store trait of `marie-core` in this process's memory.
//!
//! ## Layout
//!
//! One file per concern, each with its part of the state and its trait's impl:
//! `conversations.rs` (conversations, members, and each one's history, kept together under
//! the conversation's lock), `history.rs` and `tree.rs` (the tree of branches), `sessions.rs`,
//! `leases.rs`, `approvals.rs`, `queue.rs`, `usage.rs`; `files.rs` is [`MemoryFileStore`].

mod approvals;
mod conversations;
mod files;
mod history;
mod leases;
mod queue;
mod sessions;
mod tree;
mod usage;

pub use files::MemoryFileStore;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Every store trait of `marie-core` (so a [`RoomStore`](marie_core::RoomStore)) in
/// memory: the embedded default, for one node and for tests.
///
/// Cheap to clone; clones share the data. Nothing survives the process, and history grows
/// without bound unless [`MemoryStore::with_history_cap`] sets a cap per conversation.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    tables: Arc<Tables>,
}

/// One lock per concern, and one per conversation: every send reads and writes its
/// conversation several times, takes a lease and gives it back, and one lock for all of it
/// would make concurrent conversations wait for each other (`docs/benchmarks.md`, item 17).
#[derive(Debug, Default)]
struct Tables {
    conversations: conversations::Rooms,
    lists: Mutex<conversations::Lists>,
    sessions: Mutex<sessions::Sessions>,
    leases: Mutex<leases::Leases>,
    approvals: Mutex<approvals::Pending>,
    queues: Mutex<queue::Queues>,
    usage: Mutex<usage::Counts>,
    history_cap: Option<usize>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that keeps at most `cap` messages per conversation, dropping the
    /// oldest.
    pub fn with_history_cap(cap: usize) -> Self {
        Self {
            tables: Arc::new(Tables {
                history_cap: Some(cap.max(1)),
                ..Tables::default()
            }),
        }
    }
}

/// Locks one concern's state. Every mutation of it is a single step that cannot panic
/// halfway, so a poisoned lock still guards consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
