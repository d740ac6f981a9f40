//! [`SocketLink`]: the [`Link`] of a Socket.IO connection: it follows conversations by being
//! in their rooms, and everything it is told goes through its outbox.

use std::sync::Arc;

use marie_core::{ConversationId, Error, StreamId};
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::membership::{enter_room, leave_room, save_session};
use super::{asked, reply};
use crate::commands::{Caller, Link, RoomCount, TypingAccess};
use crate::delivery::SocketOutbox;
use crate::rooms::{conversation_of, conversation_room, in_room};
use crate::state::NodeState;
use crate::typing::Typist;

/// A socket, as the command layer sees it.
pub(super) struct SocketLink<'a, A: Adapter> {
    pub(super) shared: &'a Arc<NodeState<A>>,
    pub(super) socket: &'a SocketRef<A>,
    pub(super) caller: &'a Caller,
}

impl<A: Adapter> Link for SocketLink<'_, A> {
    fn rooms(&self, conversation: &ConversationId) -> RoomCount {
        let rooms = self.socket.rooms();
        let room = conversation_room(conversation);
        RoomCount {
            joined: rooms
                .iter()
                .filter(|r| conversation_of(r).is_some())
                .count(),
            already_in: rooms.iter().any(|r| *r == room),
        }
    }

    async fn enter(&self, conversation: &ConversationId) {
        let who = self.caller.identity();
        enter_room(self.shared, self.socket, who, conversation).await;
        save_session(self.shared, self.socket, who).await;
    }

    /// The socket leaves the room and forgets the conversation's streams, so that a later
    /// join starts from the live tail (`docs/protocol.md` section 3).
    async fn leave(&self, conversation: &ConversationId) -> bool {
        let who = self.caller.identity();
        if !leave_room(self.shared, self.socket, who, conversation).await {
            return false;
        }
        if let Some(SocketOutbox(outbox)) = self.socket.extensions.get::<SocketOutbox>() {
            outbox.forget(conversation);
        }
        save_session(self.shared, self.socket, who).await;
        true
    }

    fn tell(&self, event: &'static str, payload: Box<RawValue>) {
        reply::event(self.socket, event, payload);
    }

    fn asked(&self, conversation: &ConversationId, stream: &StreamId) {
        asked::record(self.shared, self.socket, conversation, stream);
    }

    /// Into the room first, then the log: nothing falls in between.
    async fn resume(
        &self,
        conversation: &ConversationId,
        stream: &StreamId,
        after_seq: u64,
    ) -> Result<(), Error> {
        self.enter(conversation).await;
        let Some(SocketOutbox(outbox)) = self.socket.extensions.get::<SocketOutbox>() else {
            return Err(Error::Internal("the connection cannot receive streams"));
        };
        crate::delivery::resume(
            &self.shared.hub.log,
            &outbox,
            conversation,
            stream,
            after_seq,
        )
        .await
    }

    fn can_wait_in_queue(&self) -> bool {
        true
    }

    fn typist(&self, conversation: &ConversationId) -> TypingAccess {
        if in_room(self.socket, conversation) {
            TypingAccess::Member(Typist::Socket(self.socket.id))
        } else {
            TypingAccess::NotJoined
        }
    }
}
