//! `typing` → `user_typing`: a member is writing (`docs/protocol.md` section 7), from a socket
//! or an HTTP client alike.
//!
//! Typing is volatile presence, not content: it is never logged, never queued in a socket's
//! outbox behind a burst of chunks (a late "bob is typing" is worse than none), and sent to
//! the other members of the room with socketioxide's volatile broadcast, on every node. A
//! typist's `typing:true` is forwarded at most once per [`FORWARD_EVERY`] per conversation
//! (the repeats only keep it alive), and a typing state that is not repeated within
//! [`MarieConfig::typing_timeout`](crate::MarieConfig::typing_timeout) ends by itself with a
//! `user_typing {typing:false}`, as do leaving the room and disconnecting.
//!
//! The states live in one map per node ([`TypingBoard`]), keyed by who types: a socket, or
//! a user over HTTP (whose requests share one state). An entry exists only while someone
//! types.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use marie_core::{ConversationId, UserId};
use serde::Serialize;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use tokio::time::Instant;

use crate::rooms::{conversation_room, user_room};

/// The most often a typist's `typing:true` is forwarded, per conversation.
pub(crate) const FORWARD_EVERY: Duration = Duration::from_secs(1);

/// Who types: a socket (the others in the room are told, its own tabs included), or a user
/// over HTTP (the user's own sockets are not told).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Typist {
    Socket(Sid),
    User(UserId),
}

/// `user_typing`.
#[derive(Debug, Serialize)]
struct UserTyping<'a> {
    conversation_id: &'a ConversationId,
    user_id: &'a UserId,
    typing: bool,
}

struct Typing {
    /// When the last `typing:true` was forwarded.
    forwarded_at: Instant,
    /// When it ends without a repeat.
    expires_at: Instant,
}

/// Every typing state of this node, and what it takes to tell the rooms.
///
/// Cheap to clone: clones share the states (an expiry timer holds one).
pub(crate) struct TypingBoard<A: Adapter> {
    entries: Arc<Mutex<HashMap<(Typist, ConversationId), Typing>>>,
    io: SocketIo<A>,
    namespace: String,
    /// [`MarieConfig::typing_timeout`](crate::MarieConfig::typing_timeout).
    timeout: Duration,
}

impl<A: Adapter> Clone for TypingBoard<A> {
    fn clone(&self) -> Self {
        Self {
            entries: self.entries.clone(),
            io: self.io.clone(),
            namespace: self.namespace.clone(),
            timeout: self.timeout,
        }
    }
}

impl<A: Adapter> TypingBoard<A> {
    pub(crate) fn new(io: SocketIo<A>, namespace: String, timeout: Duration) -> Self {
        Self {
            entries: Arc::default(),
            io,
            namespace,
            timeout,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(Typist, ConversationId), Typing>> {
        // Entries are replaced or removed whole: a poisoned lock holds consistent data.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `typing {conversation_id, typing}` of `typist`, who may (the caller checked).
    pub(crate) async fn typing(
        &self,
        typist: Typist,
        user: &UserId,
        conversation: &ConversationId,
        typing: bool,
    ) {
        let now = Instant::now();
        let key = (typist, conversation.clone());
        let (forward, start_timer) = {
            let mut entries = self.lock();
            match (typing, entries.get_mut(&key)) {
                (true, Some(entry)) => {
                    entry.expires_at = now + self.timeout;
                    let due = now.duration_since(entry.forwarded_at) >= FORWARD_EVERY;
                    if due {
                        entry.forwarded_at = now;
                    }
                    (due, false)
                }
                (true, None) => {
                    entries.insert(
                        key.clone(),
                        Typing {
                            forwarded_at: now,
                            expires_at: now + self.timeout,
                        },
                    );
                    (true, true)
                }
                (false, entry) => {
                    let was = entry.is_some();
                    entries.remove(&key);
                    (was, false)
                }
            }
        };
        if forward {
            self.tell(&key.0, user, conversation, typing).await;
        }
        if start_timer {
            self.expire_later(key, user.clone());
        }
    }

    /// Ends the typing state of `key` when it is not repeated in time.
    fn expire_later(&self, key: (Typist, ConversationId), user: UserId) {
        let board = self.clone();
        tokio::spawn(async move {
            loop {
                let Some(expires_at) = board.lock().get(&key).map(|t| t.expires_at) else {
                    return; // ended by `typing:false`, a leave or the disconnect
                };
                tokio::time::sleep_until(expires_at).await;
                let expired = {
                    let mut entries = board.lock();
                    let lapsed = entries
                        .get(&key)
                        .is_some_and(|t| t.expires_at <= Instant::now());
                    if lapsed {
                        entries.remove(&key);
                    }
                    lapsed
                };
                if expired {
                    board.tell(&key.0, &user, &key.1, false).await;
                    return;
                }
            }
        });
    }

    /// `typist` stops typing in `conversation` (it leaves the room, or disconnects).
    pub(crate) async fn stop(&self, typist: Typist, user: &UserId, conversation: &ConversationId) {
        let key = (typist, conversation.clone());
        let was = self.lock().remove(&key).is_some();
        if was {
            self.tell(&key.0, user, conversation, false).await;
        }
    }

    /// `user_typing` to the room but the typist, volatile, on every node.
    async fn tell(
        &self,
        typist: &Typist,
        user: &UserId,
        conversation: &ConversationId,
        typing: bool,
    ) {
        let Some(ns) = self.io.of(&self.namespace) else {
            return;
        };
        let data = UserTyping {
            conversation_id: conversation,
            user_id: user,
            typing,
        };
        let room = conversation_room(conversation);
        let others = match typist {
            // The socket's own broadcast leaves it out. A socket that is gone (a timer that
            // ends its typing after it left) is in no room: the room is everyone else.
            Typist::Socket(sid) => match ns.get_socket(*sid) {
                Some(socket) => socket.to(room),
                None => ns.to(room),
            },
            Typist::User(user) => ns.to(room).except(user_room(user)),
        };
        if let Err(e) = others.volatile().emit("user_typing", &data).await {
            // Volatile: a member who misses it sees the next one, or the end of it.
            tracing::debug!(error = %e, "user_typing not delivered everywhere");
        }
    }
}
