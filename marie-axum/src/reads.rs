//! `mark_read` → `read {conversation_id, user_id, message_id}` to the room
//! (`docs/protocol.md` section 10), so that a page can show who has seen what.
//!
//! Like typing (`crate::typing`), a read is volatile presence: the mark itself is stored by
//! the engine, and the broadcast is sent with socketioxide's volatile emit to the whole room
//! (the reader's other tabs included), on every node. A reader's marks are forwarded at most
//! once per [`FORWARD_EVERY`] per conversation: a mark within that window is held, and the
//! newest one held goes out when the window ends, so the room always learns the last mark.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use marie_core::{ConversationId, MessageId, UserId};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use tokio::time::Instant;

use crate::rooms::conversation_room;
use crate::typing::FORWARD_EVERY;

/// `read`.
#[derive(Debug, Serialize)]
struct Read<'a> {
    conversation_id: &'a ConversationId,
    user_id: &'a UserId,
    message_id: &'a MessageId,
}

/// A reader's window in one conversation: a mark held for its end, if any. An entry exists
/// only while a window is open.
struct Window {
    held: Option<MessageId>,
}

/// This node's read windows, and what it takes to tell the rooms. Cheap to clone.
pub(crate) struct ReadBoard<A: Adapter> {
    windows: Arc<Mutex<HashMap<(UserId, ConversationId), Window>>>,
    io: SocketIo<A>,
    namespace: String,
}

impl<A: Adapter> Clone for ReadBoard<A> {
    fn clone(&self) -> Self {
        Self {
            windows: self.windows.clone(),
            io: self.io.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

impl<A: Adapter> ReadBoard<A> {
    pub(crate) fn new(io: SocketIo<A>, namespace: String) -> Self {
        Self {
            windows: Arc::default(),
            io,
            namespace,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(UserId, ConversationId), Window>> {
        // Entries are replaced or removed whole: a poisoned lock holds consistent data.
        self.windows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `user` marked `conversation` read up to `message` (stored already): told to the room
    /// now, or at the end of the user's current window.
    pub(crate) async fn read(
        &self,
        user: &UserId,
        conversation: &ConversationId,
        message: &MessageId,
    ) {
        let key = (user.clone(), conversation.clone());
        let open = {
            let mut windows = self.lock();
            match windows.get_mut(&key) {
                Some(window) => {
                    window.held = Some(message.clone());
                    false
                }
                None => {
                    windows.insert(key.clone(), Window { held: None });
                    true
                }
            }
        };
        if open {
            self.tell(user, conversation, message).await;
            self.close_later(key);
        }
    }

    /// Ends the window of `key` after [`FORWARD_EVERY`], telling the mark it holds, if any
    /// (which opens the next window).
    fn close_later(&self, key: (UserId, ConversationId)) {
        let board = self.clone();
        tokio::spawn(async move {
            let mut until = Instant::now() + FORWARD_EVERY;
            loop {
                tokio::time::sleep_until(until).await;
                let held = {
                    let mut windows = board.lock();
                    match windows.get_mut(&key).and_then(|w| w.held.take()) {
                        Some(held) => Some(held),
                        None => {
                            windows.remove(&key);
                            None
                        }
                    }
                };
                let Some(held) = held else { return };
                board.tell(&key.0, &key.1, &held).await;
                until = Instant::now() + FORWARD_EVERY;
            }
        });
    }

    /// `read` to the whole room, volatile, on every node.
    async fn tell(&self, user: &UserId, conversation: &ConversationId, message: &MessageId) {
        let Some(ns) = self.io.of(&self.namespace) else {
            return;
        };
        let data = Read {
            conversation_id: conversation,
            user_id: user,
            message_id: message,
        };
        let room = ns.to(conversation_room(conversation));
        if let Err(e) = room.volatile().emit("read", &data).await {
            // Volatile: a member who misses it sees the next one.
            tracing::debug!(error = %e, "read not delivered everywhere");
        }
    }
}
