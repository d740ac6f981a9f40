//! `typing` → `user_typing`: a member is writing (`docs/protocol.md` section 7).
//!
//! Typing is volatile presence, not content: it is never logged, never queued in a socket's
//! outbox behind a burst of chunks (a late "bob is typing" is worse than none), and sent to
//! the other members of the room with socketioxide's volatile broadcast, on every node. A
//! socket's `typing:true` is forwarded at most once per [`FORWARD_EVERY`] per conversation
//! (the repeats only keep it alive), and a typing state that is not repeated within
//! [`MarieConfig::typing_timeout`](crate::MarieConfig::typing_timeout) ends by itself with a
//! `user_typing {typing:false}`, as do leaving the room and disconnecting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use marie_core::{ConversationId, Error, Identity};
use serde::Serialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use tokio::time::Instant;

use crate::rooms::{conversation_room, in_room};
use crate::state::Shared;

/// The most often a socket's `typing:true` is forwarded, per conversation.
pub(crate) const FORWARD_EVERY: Duration = Duration::from_secs(1);

/// `user_typing`.
#[derive(Debug, Serialize)]
struct UserTyping<'a> {
    conversation_id: &'a ConversationId,
    user_id: &'a marie_core::UserId,
    typing: bool,
}

/// The `typing` ack's fields.
#[derive(Debug, Serialize)]
pub(super) struct TypingAck {
    conversation_id: ConversationId,
    typing: bool,
}

/// A socket's typing state per conversation, in its extensions.
#[derive(Clone, Default)]
struct TypingState(Arc<Mutex<HashMap<ConversationId, Typing>>>);

struct Typing {
    /// When the last `typing:true` was forwarded.
    forwarded_at: Instant,
    /// When it ends without a repeat.
    expires_at: Instant,
}

impl TypingState {
    fn of<A: Adapter>(socket: &SocketRef<A>) -> Self {
        if let Some(state) = socket.extensions.get::<TypingState>() {
            return state;
        }
        let state = TypingState::default();
        socket.extensions.insert(state.clone());
        state
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConversationId, Typing>> {
        // Entries are replaced or removed whole: a poisoned lock holds consistent data.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `typing {conversation_id, typing}` from a socket in the conversation's room.
pub(super) async fn typing<A: Adapter>(
    shared: &Arc<Shared<A>>,
    socket: &SocketRef<A>,
    who: &Arc<Identity>,
    conversation: ConversationId,
    typing: bool,
) -> Result<TypingAck, Error> {
    // The room is entered only after `join_conversation` checked access: being in it is
    // the permission, and costs no store read per keystroke.
    if !in_room(socket, &conversation) {
        return Err(Error::Forbidden("join the conversation first"));
    }
    let state = TypingState::of(socket);
    let now = Instant::now();
    let timeout = shared.config.typing_timeout;
    let (forward, start_timer) = {
        let mut entries = state.lock();
        match (typing, entries.get_mut(&conversation)) {
            (true, Some(entry)) => {
                entry.expires_at = now + timeout;
                let due = now.duration_since(entry.forwarded_at) >= FORWARD_EVERY;
                if due {
                    entry.forwarded_at = now;
                }
                (due, false)
            }
            (true, None) => {
                entries.insert(
                    conversation.clone(),
                    Typing {
                        forwarded_at: now,
                        expires_at: now + timeout,
                    },
                );
                (true, true)
            }
            (false, entry) => {
                let was = entry.is_some();
                entries.remove(&conversation);
                (was, false)
            }
        }
    };
    if forward {
        tell(socket, who, &conversation, typing).await;
    }
    if start_timer {
        expire_later(socket.clone(), state, who.clone(), conversation.clone());
    }
    Ok(TypingAck {
        conversation_id: conversation,
        typing,
    })
}

/// Ends the typing state of `conversation` when it is not repeated in time.
fn expire_later<A: Adapter>(
    socket: SocketRef<A>,
    state: TypingState,
    who: Arc<Identity>,
    conversation: ConversationId,
) {
    tokio::spawn(async move {
        loop {
            let Some(expires_at) = state.lock().get(&conversation).map(|t| t.expires_at) else {
                return; // ended by `typing:false`, a leave or the disconnect
            };
            tokio::time::sleep_until(expires_at).await;
            let expired = {
                let mut entries = state.lock();
                let lapsed = entries
                    .get(&conversation)
                    .is_some_and(|t| t.expires_at <= Instant::now());
                if lapsed {
                    entries.remove(&conversation);
                }
                lapsed
            };
            if expired {
                if socket.connected() {
                    tell(&socket, &who, &conversation, false).await;
                }
                return;
            }
        }
    });
}

/// The socket stops typing in `conversation` (it leaves the room, or disconnects).
pub(super) async fn stop<A: Adapter>(
    socket: &SocketRef<A>,
    who: &Identity,
    conversation: &ConversationId,
) {
    let Some(state) = socket.extensions.get::<TypingState>() else {
        return;
    };
    let was = state.lock().remove(conversation).is_some();
    if was {
        tell(socket, who, conversation, false).await;
    }
}

/// `user_typing` to the room but the socket, volatile, on every node.
async fn tell<A: Adapter>(
    socket: &SocketRef<A>,
    who: &Identity,
    conversation: &ConversationId,
    typing: bool,
) {
    let data = UserTyping {
        conversation_id: conversation,
        user_id: &who.user_id,
        typing,
    };
    let room = conversation_room(conversation);
    if let Err(e) = socket.to(room).volatile().emit("user_typing", &data).await {
        // Volatile: a member who misses it sees the next one, or the end of it.
        tracing::debug!(error = %e, "user_typing not delivered everywhere");
    }
}
