//! The engine's side of the burst protocol, whose one explanation is the module
//! documentation of `crate::sink`: the deltas a provider has ready at once are taken
//! together ([`take`], at most [`BURST_MAX`]), logged with one call and sent with one
//! ([`send`]); before the answer waits for its provider, and at its end, the sink is told to
//! [`flush`].

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};

use super::draft::Draft;
use super::{AnswerJob, ChatEngine};
use crate::{
    LlmEvent, LlmStream, ProviderError, StreamChunk, StreamEvent, StreamReasoning, ToolCallDelta,
    ToolCallReady, ToolCallStart,
};

/// The most deltas taken as one burst.
pub(super) const BURST_MAX: usize = 32;

/// One item of a provider's stream; `None` once the stream has ended.
pub(super) type Item = Option<Result<LlmEvent, ProviderError>>;

/// The items a provider had ready at once (text, reasoning, tool calls), as events to send,
/// and what ended the burst.
pub(super) struct Burst {
    /// The chunks, numbered after the last `seq` sent (none for an unstreamed answer).
    pub(super) events: Vec<StreamEvent>,
    /// What ended the burst.
    pub(super) then: Then,
    /// The provider panicked while it was asked for more: the burst's events go out first,
    /// as if they had come one by one, then the panic goes on to the task's guard.
    pub(super) panic: Option<Box<dyn Any + Send>>,
}

/// What ended a burst.
pub(super) enum Then {
    /// Nothing more ready yet, [`BURST_MAX`] deltas, or the answer was cancelled: go on.
    More,
    /// The provider's next item is not part of the answer: its `Done`, an error, or the end
    /// of its stream.
    Item(Item),
}

/// Takes `first` and every item after it that `stream` has ready without waiting.
pub(super) fn take(
    first: Item,
    stream: &mut LlmStream,
    job: &AnswerJob,
    draft: &mut Draft,
) -> Burst {
    let mut burst = Burst {
        events: Vec::new(),
        then: Then::More,
        panic: None,
    };
    let mut item = first;
    loop {
        let seq = job.seq.load(Ordering::Acquire) + burst.events.len() as u64 + 1;
        let event = match item {
            Some(Ok(LlmEvent::Delta(delta))) => draft.add(delta).map(|content| {
                StreamEvent::Chunk(StreamChunk {
                    conversation_id: job.conversation_id.clone(),
                    stream_id: job.stream_id.clone(),
                    seq,
                    content,
                    done: false,
                    tokens_used: draft.tokens(),
                    first_seq: None,
                })
            }),
            Some(Ok(LlmEvent::Reasoning(delta))) => draft.add_reasoning(delta).map(|content| {
                StreamEvent::Reasoning(StreamReasoning {
                    conversation_id: job.conversation_id.clone(),
                    stream_id: job.stream_id.clone(),
                    seq,
                    content,
                    first_seq: None,
                })
            }),
            Some(Ok(LlmEvent::ReasoningSignature(signature))) => {
                // Kept with the reasoning for the next request; nothing to send.
                draft.sign_reasoning(signature);
                None
            }
            Some(Ok(LlmEvent::RedactedReasoning(data))) => {
                // Opaque, for the provider alone: kept as a part, never streamed.
                draft.add_redacted_reasoning(data);
                None
            }
            Some(Ok(LlmEvent::ToolCallStart { id, name })) => {
                Some(StreamEvent::ToolCallStart(ToolCallStart {
                    conversation_id: job.conversation_id.clone(),
                    stream_id: job.stream_id.clone(),
                    seq,
                    tool_call_id: id,
                    client: job.setup.client_tools.contains(&name),
                    name,
                }))
            }
            Some(Ok(LlmEvent::ToolCallDelta { id, delta })) => (!delta.is_empty()).then(|| {
                StreamEvent::ToolCallDelta(ToolCallDelta {
                    conversation_id: job.conversation_id.clone(),
                    stream_id: job.stream_id.clone(),
                    seq,
                    tool_call_id: id,
                    delta,
                })
            }),
            Some(Ok(LlmEvent::ToolCall(call))) => {
                let event = StreamEvent::ToolCall(ToolCallReady {
                    conversation_id: job.conversation_id.clone(),
                    stream_id: job.stream_id.clone(),
                    seq,
                    tool_call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    // Only a call that will wait for a client: one whose arguments do not fit
                    // is answered at once with the misfit (`tools.rs`).
                    client: job.setup.client_tools.contains(&call.name)
                        && job
                            .setup
                            .client_tools
                            .validate(&call.name, &call.arguments)
                            .is_ok(),
                });
                draft.add_call(call);
                Some(event)
            }
            other => {
                burst.then = Then::Item(other);
                return burst;
            }
        };
        // An unstreamed answer sends nothing before its end.
        if let Some(event) = event
            && job.streamed
        {
            burst.events.push(event);
        }
        if burst.events.len() >= BURST_MAX || job.cancel.is_cancelled() {
            return burst;
        }
        match std::panic::catch_unwind(AssertUnwindSafe(|| stream.next().now_or_never())) {
            Ok(Some(next)) => item = next,
            Ok(None) => return burst,
            Err(panic) => {
                burst.panic = Some(panic);
                return burst;
            }
        }
    }
}

/// Logs a burst's events, then sends them. Logged before they are sent: a client that
/// resumes after subscribing and reading the log misses nothing.
pub(super) async fn send(engine: &ChatEngine, job: &AnswerJob, events: Vec<StreamEvent>) {
    let Some(last) = events.last().and_then(StreamEvent::seq) else {
        return;
    };
    let chunks = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::Chunk(_)))
        .count() as u64;
    if let Err(e) = engine.shared.log.append(&job.stream_id, &events).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "could not log a chunk");
    }
    job.seq.store(last, Ordering::Release);
    if let Err(e) = engine.shared.sink.emit_many(events).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "sink could not deliver an event");
    }
    job.progress.notify_one();
    metrics::counter!("marie_stream_chunks_total").increment(chunks);
}

/// Logs and sends one event numbered next in the answer's sequence (`make` gets its `seq`),
/// then flushes: what comes next may take long (an approval, a tool). An unstreamed answer
/// sends nothing.
pub(super) async fn send_one(
    engine: &ChatEngine,
    job: &AnswerJob,
    make: impl FnOnce(u64) -> StreamEvent,
) {
    if !job.streamed {
        return;
    }
    let seq = job.seq.load(Ordering::Acquire) + 1;
    send(engine, job, vec![make(seq)]).await;
    flush(engine, job).await;
}

/// The `seq` the next event of the answer will have.
pub(super) fn next_seq(job: &AnswerJob) -> u64 {
    job.seq.load(Ordering::Acquire) + 1
}

/// Tells the sink the answer has nothing more ready for now.
pub(super) async fn flush(engine: &ChatEngine, job: &AnswerJob) {
    if let Err(e) = engine.shared.sink.flush(&job.conversation_id).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "sink could not flush");
    }
}
