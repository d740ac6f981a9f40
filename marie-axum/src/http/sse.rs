//! Following one stream over HTTP ([`events`]): registered as a follower of its conversation
//! (so it gets the live events) before the log is read (so nothing falls in between), then
//! read from its own outbox until the stream's terminal event; and this protocol's SSE
//! response of it ([`follow`]).

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
    // `stream_start` is sent once, first, by the caller that has it; the log's is not a
    // resumer's business.
    let live = events(hub, conversation, stream, after)
        .await
        .filter(|out| std::future::ready(out.name() != "stream_start"))
        .map(|out| Ok::<_, Infallible>(sse_event(&out)));
    let first = start.map(|s| Ok(sse_event(&Out::stream(s))));
    Sse::new(futures_util::stream::iter(first).chain(live))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The events of `stream` after `after`, as one follower gets them: registered as a follower
/// of the conversation (for the live events) before the log is read (so that nothing falls
/// in between), the log's, then the live tail, up to and with the terminal event. Every
/// front end that follows one stream over HTTP (this one's SSE, the AI SDK's, AG-UI's)
/// reads it here.
pub(crate) async fn events<A: Adapter>(
    hub: &Arc<Hub<A>>,
    conversation: ConversationId,
    stream: StreamId,
    after: u64,
) -> impl futures_util::Stream<Item = Out> + Send + 'static {
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
    futures_util::stream::unfold(following, |mut f| async move {
        if f.done {
            return None;
        }
        let out = f.outbox.next().await?;
        f.outbox.sent(&out);
        f.done = out.is_terminal();
        Some((out, f))
    })
}

/// The id of the message the answer `stream` becomes, from its log; `None` once the log has
/// forgotten it.
pub(crate) async fn answer_message_id<A: Adapter>(
    hub: &Hub<A>,
    stream: &StreamId,
) -> Result<Option<marie_core::MessageId>, marie_core::Error> {
    Ok(hub
        .log
        .read(stream, 0, 1)
        .await?
        .map(|read| read.meta.message_id))
}

/// Where a client that answered `waited` (approvals, client tools' calls of answer `stream`)
/// follows the answer from: just after the last of them was asked (it saw everything before
/// that wait to answer it; a posted message also repeats the waits it answered earlier), so
/// that what the answer sent since (more calls of the same step, results, text) reaches it.
/// Read before the answers are applied: an answer that then ends forgets its waits.
/// `fallback` when the store knows none of them.
pub(crate) async fn continue_from(
    engine: &marie_core::ChatEngine,
    stream: &StreamId,
    waited: &[marie_core::Waited<'_>],
    fallback: u64,
) -> Result<u64, marie_core::Error> {
    let mut from: Option<u64> = None;
    for wait in waited {
        if let Some(seq) = engine.waited_at(stream, *wait).await? {
            from = Some(from.map_or(seq, |f| f.max(seq)));
        }
    }
    Ok(from.unwrap_or(fallback))
}

/// An encoder of one answer's events into a front end's own items (the AI SDK's chunks,
/// AG-UI's events): one implementation per wire format, one loop ([`encoded`]) for all.
pub(crate) trait Encode: Send + 'static {
    /// What it writes.
    type Item: Send + 'static;

    /// The items of `event`, appended to `out`; `true` when the stream ends after them (the
    /// answer ended, or waits for what this front end's client must do first).
    fn encode_event(&mut self, event: &StreamEvent, out: &mut Vec<Self::Item>) -> bool;
}

/// `events`, encoded by `encoder`, up to the item that ends the stream.
pub(crate) fn encoded<E: Encode>(
    events: impl futures_util::Stream<Item = Out> + Send + 'static,
    encoder: E,
) -> impl futures_util::Stream<Item = E::Item> + Send + 'static {
    let state = (encoder, Box::pin(events), false);
    futures_util::stream::unfold(state, |(mut encoder, mut events, done)| async move {
        if done {
            return None;
        }
        loop {
            let out = events.next().await?;
            let Some(event) = out.event() else { continue };
            let mut items = Vec::new();
            let over = encoder.encode_event(event, &mut items);
            if over || !items.is_empty() {
                return Some((items, (encoder, events, over)));
            }
        }
    })
    .flat_map(futures_util::stream::iter)
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
