//! The answers a socket asked for, to cancel them when it leaves, for
//! [`MarieConfig::cancel_on_asker_disconnect`](crate::MarieConfig::cancel_on_asker_disconnect).
//! By default a disconnect cancels nothing: others may be watching, and the asker may resume.

use std::sync::{Arc, Mutex};

use marie_core::{ConversationId, Error, Identity, StreamId};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::state::NodeState;

/// The answers a socket started, newest per conversation.
#[derive(Clone, Default)]
struct Asked(Arc<Mutex<Vec<(ConversationId, StreamId)>>>);

/// Records that the socket started `stream` (when disconnects cancel).
pub(super) fn record<A: Adapter>(
    shared: &NodeState<A>,
    socket: &SocketRef<A>,
    conversation: &ConversationId,
    stream: &StreamId,
) {
    if !shared.config.cancel_on_asker_disconnect {
        return;
    }
    let asked = socket.extensions.get::<Asked>().unwrap_or_else(|| {
        let a = Asked::default();
        socket.extensions.insert(a.clone());
        a
    });
    let mut list = asked.0.lock().unwrap_or_else(|e| e.into_inner());
    list.retain(|(c, _)| c != conversation);
    list.push((conversation.clone(), stream.clone()));
}

/// Cancels the answers the socket asked for that still run (nothing when none was
/// recorded).
pub(super) async fn cancel_all<A: Adapter>(
    shared: &NodeState<A>,
    socket: &SocketRef<A>,
    who: &Identity,
) {
    let Some(asked) = socket.extensions.get::<Asked>() else {
        return;
    };
    // Taken out of the lock first: the lock is never held across an await.
    let list = std::mem::take(&mut *asked.0.lock().unwrap_or_else(|e| e.into_inner()));
    for (conversation, stream) in list {
        match shared
            .engine
            .cancel(who, &conversation, Some(&stream))
            .await
        {
            Ok(_) => tracing::debug!(%stream, "answer cancelled: its asker disconnected"),
            Err(Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, %stream, "could not cancel on disconnect"),
        }
    }
}
