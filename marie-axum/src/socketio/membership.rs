//! The conversations a socket is in: entering and leaving their rooms (and telling the other
//! members), and the session that remembers them for a reconnect.

use marie_core::{ConversationId, Identity};
use socketioxide::BroadcastError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::Session;
use super::payloads::Presence;
use crate::rooms::{conversation_of, conversation_room, in_room};
use crate::state::NodeState;
use crate::typing::Typist;

/// Joins the socket to the conversation's room (once) and tells the others.
pub(super) async fn enter_room<A: Adapter>(
    shared: &NodeState<A>,
    socket: &SocketRef<A>,
    who: &Identity,
    conversation: &ConversationId,
) {
    if in_room(socket, conversation) {
        return;
    }
    socket.join(conversation_room(conversation));
    shared.rooms.entered(conversation);
    tell_others(socket, "user_joined", who, conversation).await;
}

/// Takes the socket out of the conversation's room, if it is in it, and tells the others.
/// Returns whether it was in.
pub(super) async fn leave_room<A: Adapter>(
    shared: &NodeState<A>,
    socket: &SocketRef<A>,
    who: &Identity,
    conversation: &ConversationId,
) -> bool {
    if !in_room(socket, conversation) {
        return false;
    }
    shared
        .typing
        .stop(Typist::Socket(socket.id), &who.user_id, conversation)
        .await;
    socket.leave(conversation_room(conversation));
    shared.rooms.left(conversation);
    tell_others(socket, "user_left", who, conversation).await;
    true
}

/// Sends `event {user_id, conversation_id}` to the conversation's room, except the socket.
/// Best effort: a member whose socketioxide buffer is full misses it (`joined.members` is
/// the authority).
pub(super) async fn tell_others<A: Adapter>(
    socket: &SocketRef<A>,
    event: &'static str,
    who: &Identity,
    conversation: &ConversationId,
) {
    let room = conversation_room(conversation);
    let data = Presence {
        user_id: &who.user_id,
        conversation_id: conversation,
    };
    if let Err(BroadcastError::Adapter(e)) = socket.to(room.clone()).emit(event, &data).await {
        // The other nodes are out of reach (Redis is away): tell this node's members at least.
        tracing::debug!(error = %e, event, "room event delivered on this node only");
        let _ = socket.local().to(room).emit(event, &data).await;
    }
}

/// Records the socket's current conversations in its session, for a later resume. Not
/// fatal when it fails: the connection works, only a later resume starts afresh.
pub(super) async fn save_session<A: Adapter>(
    shared: &NodeState<A>,
    socket: &SocketRef<A>,
    who: &Identity,
) {
    let Some(Session(session)) = socket.extensions.get::<Session>() else {
        return;
    };
    let rooms = socket
        .rooms()
        .iter()
        .filter_map(|r| conversation_of(r))
        .collect();
    let ttl = shared.config.session_ttl;
    if let Err(e) = shared.engine.save_session(who, &session, rooms, ttl).await {
        tracing::warn!(error = %e, "could not save the session");
    }
}
