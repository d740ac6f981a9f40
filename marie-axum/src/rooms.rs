//! Socket.IO room names, and the count of rooms this node serves.
//!
//! Conversation rooms are named `conv:<id>`, users' rooms `user:<id>` (for revocation).
//! Socket ids never contain `:`, and clients never name a room directly: they name a
//! conversation, which is validated and then prefixed. So no client can get a socket into
//! another user's private room or a system room (`tests/security.rs` checks it).

use std::collections::HashMap;
use std::sync::Mutex;

use marie_core::ConversationId;

/// The Socket.IO room of a conversation.
pub fn conversation_room(conversation: &ConversationId) -> String {
    format!("conv:{conversation}")
}

/// The private room of every connection of a user (`user:<id>`), used to end them all at
/// once ([`MarieHandle::revoke_user`](crate::MarieHandle::revoke_user)). Clients can never
/// join it: they only ever name conversations, whose rooms all start with `conv:`.
pub(crate) fn user_room(user: &marie_core::UserId) -> String {
    format!("user:{user}")
}

/// Whether the socket is in the conversation's room: it joined, after an access check.
pub(crate) fn in_room<A: socketioxide::adapter::Adapter>(
    socket: &socketioxide::extract::SocketRef<A>,
    conversation: &ConversationId,
) -> bool {
    let room = conversation_room(conversation);
    socket.rooms().iter().any(|r| *r == room)
}

/// The conversation of a Socket.IO room, if it is one.
pub(crate) fn conversation_of(room: &str) -> Option<ConversationId> {
    room.strip_prefix("conv:")
        .and_then(|id| ConversationId::parse(id).ok())
}

/// How many local sockets are in each conversation room; drives the `marie_rooms` gauge.
#[derive(Debug, Default)]
pub(crate) struct RoomCounts {
    counts: Mutex<HashMap<ConversationId, usize>>,
}

impl RoomCounts {
    pub(crate) fn entered(&self, conversation: &ConversationId) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(conversation.clone()).or_default() += 1;
        metrics::gauge!("marie_rooms").set(counts.len() as f64);
    }

    pub(crate) fn left(&self, conversation: &ConversationId) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(conversation) {
            *n -= 1;
            if *n == 0 {
                counts.remove(conversation);
            }
        }
        metrics::gauge!("marie_rooms").set(counts.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_round_trip() {
        let c = ConversationId::parse("team.general").unwrap();
        assert_eq!(conversation_of(&conversation_room(&c)), Some(c));
        assert_eq!(conversation_of("Zx9_abc"), None);
        let u = marie_core::UserId::parse("alice").unwrap();
        assert_eq!(conversation_of(&user_room(&u)), None);
    }
}
