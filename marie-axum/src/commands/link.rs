//! [`Link`]: what a front end does for a command that concerns the connection it came on.
//!
//! Commands are written once ([`dispatch`](super::dispatch)); what differs between a
//! Socket.IO connection and an HTTP request is behind this trait: a socket is in rooms and
//! follows their streams, an HTTP request has no room and follows at most the stream it
//! started, as Server-Sent Events, after its command answered.

use std::future::Future;

use marie_core::{ConversationId, Error, StreamId};
use serde_json::value::RawValue;

use crate::typing::Typist;

/// How many conversations a link follows, for
/// [`Limits::max_rooms_per_socket`](crate::Limits::max_rooms_per_socket).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoomCount {
    /// Conversations followed now.
    pub(crate) joined: usize,
    /// Whether the one asked about is one of them.
    pub(crate) already_in: bool,
}

/// The connection a command came on.
pub(crate) trait Link: Send + Sync {
    /// How many conversations this link follows, and whether `conversation` is one.
    fn rooms(&self, conversation: &ConversationId) -> RoomCount;

    /// Follows `conversation` from now on (the caller checked access): a socket joins its
    /// room (the others are told) and saves it in its session.
    fn enter(&self, conversation: &ConversationId) -> impl Future<Output = ()> + Send;

    /// Stops following `conversation`; whether it did.
    fn leave(&self, conversation: &ConversationId) -> impl Future<Output = bool> + Send;

    /// Sends this link an event of its own (`joined`, `left`, the `stream_error` of a resume
    /// that cannot be served), in order with its replies. Nothing where the link has no
    /// channel but the command's answer (HTTP).
    fn tell(&self, event: &'static str, payload: Box<RawValue>);

    /// This link asked for the answer `stream` (cancelled when a socket that asked leaves,
    /// if so configured).
    fn asked(&self, conversation: &ConversationId, stream: &StreamId);

    /// Replays `stream` after `after_seq`, then its live tail (the caller checked access).
    /// Nothing for a link that follows streams by itself after the command (HTTP).
    fn resume(
        &self,
        conversation: &ConversationId,
        stream: &StreamId,
        after_seq: u64,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Whether `on_busy: "enqueue"` can be honoured: the link is still there when the
    /// queued send's turn comes (a socket, a JSON request that only wants the ack), not a
    /// response that must stream the answer now.
    fn can_wait_in_queue(&self) -> bool;

    /// Who types in `conversation`, for the `typing` command, and how their access is
    /// known.
    fn typist(&self, conversation: &ConversationId) -> TypingAccess;
}

/// Who may type in a conversation, as a link knows it.
#[derive(Clone, Debug)]
pub(crate) enum TypingAccess {
    /// A socket in the conversation's room: the room is the permission (it was entered after
    /// an access check), and a keystroke costs no store read.
    Member(Typist),
    /// A socket that has not joined: `forbidden`.
    NotJoined,
    /// A link without rooms: access is checked with the engine.
    Check(Typist),
}
