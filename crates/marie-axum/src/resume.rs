//! `resume_stream` over Socket.IO, and what a disconnect does to the streams a socket asked
//! for.

use std::sync::{Arc, Mutex};

use marie_core::{ConversationId, Error, StreamId};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::builder::Shared;
use crate::handlers::{Ctx, enter_room};
use crate::protocol;
use crate::sink::SocketOutbox;

/// `resume_stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResumeStream {
    conversation_id: String,
    stream_id: String,
    last_seq: u64,
}

/// `resume_stream {conversation_id, stream_id, last_seq}`: access is checked again, the
/// socket joins the conversation's room (so that it follows the live tail), then every chunk
/// after `last_seq` is queued from the log, followed by the live tail, with no gap and no
/// duplicate (see `crate::delivery`). An answer that already ended is followed by its
/// terminal event. A position the log cannot continue from is `resume_unavailable`, also
/// sent as `stream_error {code:"resume_unavailable"}`.
pub(crate) async fn resume_stream<A: Adapter>(
    ctx: Ctx<A>,
    p: ResumeStream,
) -> Result<Value, Error> {
    let conversation = protocol::conversation_id(p.conversation_id)?;
    let stream = StreamId::parse(p.stream_id)?;
    let engine = &ctx.shared.engine;
    let check = engine
        .read_stream(&ctx.who, Some(&conversation), &stream, p.last_seq, 1)
        .await;
    let read = match check {
        Ok(read) => read,
        Err(e @ Error::ResumeUnavailable(_)) => {
            let _ = ctx.socket.emit(
                "stream_error",
                &json!({
                    "conversation_id": conversation,
                    "stream_id": stream,
                    "code": e.code(),
                    "error": e.client_message(),
                    "retryable": false,
                    "after_seq": p.last_seq,
                }),
            );
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    // Subscribe first (the room), then read the log: nothing falls in between.
    enter_room(&ctx.shared, &ctx.socket, &ctx.who, &conversation).await;
    let Some(SocketOutbox(outbox)) = ctx.socket.extensions.get::<SocketOutbox>() else {
        return Err(Error::Internal("the connection cannot receive streams"));
    };
    crate::delivery::resume(
        &ctx.shared.hub.log,
        &outbox,
        &conversation,
        &stream,
        p.last_seq,
    )
    .await?;
    Ok(json!({
        "conversation_id": conversation,
        "stream_id": stream,
        "from_seq": p.last_seq + 1,
        "last_seq": read.last_seq,
        "ended": read.end.is_some(),
    }))
}

/// The answers a socket started, for [`MarieConfig::cancel_on_asker_disconnect`].
///
/// [`MarieConfig::cancel_on_asker_disconnect`]: crate::MarieConfig::cancel_on_asker_disconnect
#[derive(Clone, Default)]
struct Asked(Arc<Mutex<Vec<(ConversationId, StreamId)>>>);

/// Records that the socket started `stream` (when disconnects cancel).
pub(crate) fn asked<A: Adapter>(
    shared: &Shared<A>,
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

/// A socket went away: its queue is freed; and when so configured, the answers it asked for
/// that still run are cancelled. By default a disconnect cancels nothing: others may be
/// watching, and the asker may resume.
pub(crate) async fn on_disconnected<A: Adapter>(shared: &Shared<A>, socket: &SocketRef<A>) {
    if let Some(SocketOutbox(outbox)) = socket.extensions.get::<SocketOutbox>() {
        outbox.close();
    }
    let Some(asked) = socket.extensions.get::<Asked>() else {
        return;
    };
    let Some(who) = socket
        .extensions
        .get::<crate::handlers::Authenticated>()
        .map(|a| a.identity)
    else {
        return;
    };
    let list = std::mem::take(&mut *asked.0.lock().unwrap_or_else(|e| e.into_inner()));
    for (conversation, stream) in list {
        match shared
            .engine
            .cancel(&who, &conversation, Some(&stream))
            .await
        {
            Ok(_) => tracing::debug!(%stream, "answer cancelled: its asker disconnected"),
            Err(Error::NotFound(_)) => {}
            Err(e) => tracing::warn!(error = %e, %stream, "could not cancel on disconnect"),
        }
    }
}
