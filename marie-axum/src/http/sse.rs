//! An SSE response that follows one stream: registered as a follower of its conversation
//! (so it gets the live events) before the log is read (so nothing falls in between), then
//! written out from its own outbox until the stream's terminal event.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use marie_core::{ConversationId, StreamEvent, StreamFailed, StreamId};
use socketioxide::adapter::Adapter;

use crate::delivery::{self, Hub, Out, Outbox};

/// An SSE follower of one stream; unregistered when the response is dropped.
struct Following<A: Adapter> {
    hub: Arc<Hub<A>>,
    conversation: ConversationId,
    id: u64,
    outbox: Arc<Outbox>,
    done: bool,
}

impl<A: Adapter> Drop for Following<A> {
    fn drop(&mut self) {
        self.outbox.close();
        self.hub.followers.remove(&self.conversation, self.id);
    }
}

/// The SSE response of `stream` from `after`: `start` first when given (a new answer), then
/// the log after `after`, then the live tail, up to and with the terminal event.
pub(super) async fn follow<A: Adapter>(
    hub: &Arc<Hub<A>>,
    start: Option<StreamEvent>,
    conversation: ConversationId,
    stream: StreamId,
    after: u64,
) -> Response {
    let outbox = hub.new_outbox(Some(stream.clone()));
    let id = hub.followers.add(&conversation, outbox.clone());
    let following = Following {
        hub: hub.clone(),
        conversation: conversation.clone(),
        id,
        outbox: outbox.clone(),
        done: false,
    };
    if let Err(e) = delivery::resume(&hub.log, &outbox, &conversation, &stream, after).await {
        // The log went away between the check and now: say so and end.
        outbox.push(Out::stream(StreamEvent::Error(
            StreamFailed::cannot_resume(conversation, stream, &e, after),
        )));
    }
    let live = futures_util::stream::unfold(following, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            let out = f.outbox.next().await?;
            f.outbox.sent(&out);
            // `stream_start` is sent once, first, by the caller that has it; the log's is
            // not a resumer's business.
            if out.name() == "stream_start" {
                continue;
            }
            f.done = out.is_terminal();
            return Some((Ok::<_, Infallible>(sse_event(&out)), f));
        }
    });
    let first = start.map(|s| Ok(sse_event(&Out::stream(s))));
    Sse::new(futures_util::stream::iter(first).chain(live))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// One stream event as SSE: its name, its payload (serialized once, shared with the Socket.IO
/// side), its `seq` as the event id.
fn sse_event(out: &Out) -> Event {
    let mut event = Event::default()
        .event(out.name())
        .data(out.json().unwrap_or("null"));
    if let Some(seq) = out.seq() {
        event = event.id(seq.to_string());
    }
    event
}
