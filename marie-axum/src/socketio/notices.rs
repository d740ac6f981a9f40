//! Notices ([`Notice`]) to this node's connections of the users they are for: each socket
//! in the user's own room (`user:<id>`) gets the notice, whether or not it follows the
//! conversation, so that a list on screen stays current; a notice that ends their following
//! (the conversation deleted, the user removed) first takes the socket out of the room, as
//! `leave_conversation` would.

use std::sync::{Arc, Weak};

use marie_core::{Notice, UserId};
use socketioxide::adapter::Adapter;

use super::membership::{leave_room, save_session};
use super::reply;
use crate::commands::{Caller, raw};
use crate::delivery::{NoticeHandler, SocketOutbox};
use crate::rooms::user_room;
use crate::state::NodeState;

/// What the hub calls with every notice for this node (its own, and those of other nodes).
pub(crate) fn handler<A: Adapter>(shared: Weak<NodeState<A>>) -> NoticeHandler {
    Arc::new(move |notice, users| {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // Called from the engine's task or the bus's: leaving rooms awaits, so a task of
        // its own.
        tokio::spawn(async move { deliver(&shared, notice, users).await });
    })
}

async fn deliver<A: Adapter>(shared: &Arc<NodeState<A>>, notice: Notice, users: Vec<UserId>) {
    let Some(ns) = shared.io.of(&shared.config.namespace) else {
        return;
    };
    let payload = raw(&notice.payload());
    let conversation = notice.conversation_id();
    for user in &users {
        for socket in ns.clone().local().to(user_room(user)).sockets() {
            if notice.ends_following()
                && let Some(caller) = socket.extensions.get::<Caller>()
            {
                let who = caller.identity();
                if leave_room(shared, &socket, who, conversation).await {
                    if let Some(SocketOutbox(outbox)) = socket.extensions.get::<SocketOutbox>() {
                        outbox.forget(conversation);
                    }
                    save_session(shared, &socket, who).await;
                }
            }
            reply::event(&socket, notice.name(), payload.clone());
        }
    }
}
