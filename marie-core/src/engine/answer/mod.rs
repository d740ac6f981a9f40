//! The answer task: one per answer, from the provider's first byte to the terminal event.
//!
//! It owns the answer: it numbers chunks, builds `full_content`, stores the final message and
//! sends exactly one terminal event whatever happens (provider error, cancel, shutdown, or a
//! panic in a backend).
//!
//! - `mod.rs`: [`run`], the task: start, the provider part, the stored message, the end.
//! - `steps.rs`: the provider part: the model's steps, each polled until it is done, fails or
//!   is stopped.
//! - `tools.rs`: the calls of a step: checked, approved where needed, run, their results.
//! - `approval.rs`: a call that waits for a member's approval.
//! - `client.rs`: a call of a client's tool, which waits for a member's result.
//! - `burst.rs`: the engine's side of the burst protocol (see `crate::sink`): log, send, flush.
//! - `lease.rs`: the answer's lease on its conversation, renewed while it runs.
//! - `draft.rs`: the answer so far: its text and parts, its token count and timing metrics.

mod approval;
mod burst;
mod client;
mod draft;
mod lease;
mod steps;
mod tools;

pub(super) use approval::Approvals;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ChatEngine;
use super::group::Place;
use crate::{
    AnswerFailed, ChatMessage, ConversationId, EndStatus, Error, ErrorCode, FinishReason,
    LlmRequest, MessageId, MessagePart, MessageResponse, MessageRole, StartStatus, StreamEnd,
    StreamEvent, StreamFailed, StreamId, StreamStart, Usage, UserId, estimate_tokens, now_millis,
};

pub(super) struct AnswerJob {
    pub(super) conversation_id: ConversationId,
    /// The user whose message is answered (the tools' context).
    pub(super) user_id: UserId,
    pub(super) stream_id: StreamId,
    /// The id of the assistant message this answer becomes.
    pub(super) message_id: MessageId,
    /// The user message it answers: the stored answer's parent, unless `at_leaf`.
    pub(super) parent_id: MessageId,
    /// Whether the answer goes after the active branch's leaf when it is stored (a send or
    /// an edit: messages people posted meanwhile come before it), rather than after
    /// `parent_id` (a regeneration, beside the answer it replaces).
    pub(super) at_leaf: bool,
    /// The history the model's request was built from, to build it again for a retry.
    pub(super) prompt: crate::HistoryQuery,
    /// The request's size in estimated tokens, for the usage of a provider that reports none.
    pub(super) prompt_tokens: u64,
    /// `false` for `send_message {stream:false}`: no start/chunk events, one
    /// `message_response` at the end.
    pub(super) streamed: bool,
    pub(super) cancel: CancellationToken,
    /// The last `seq` sent.
    pub(super) seq: Arc<AtomicU64>,
    /// Signalled after each burst is sent, so that the lease keeper records the new `seq`.
    pub(super) progress: Arc<Notify>,
    /// The approval the answer waits for, shared with the engine.
    pub(super) approvals: Arc<Approvals>,
    /// The asker's token budget, when they have one.
    pub(super) budget: Option<Allowance>,
    /// The conversation's settings, as the answer started.
    pub(super) setup: super::send::AnswerSetup,
    /// The client tools' calls recorded in the store (`client.rs`), forgotten when a step
    /// is asked again and when the answer ends.
    pub(super) client_calls: std::sync::Mutex<Vec<crate::ApprovalId>>,
}

impl AnswerJob {
    /// The client calls recorded. Never held across an `.await`.
    fn client_calls(&self) -> std::sync::MutexGuard<'_, Vec<crate::ApprovalId>> {
        // Only pushed to and taken whole: a poisoned lock still holds a consistent value.
        self.client_calls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What an answer may spend of its asker's token budget.
#[derive(Clone, Copy, Debug)]
pub(in crate::engine) struct Allowance {
    /// The budget's current window, where the answer's tokens are counted.
    pub(in crate::engine) window: crate::UsageWindow,
    /// Tokens left in it when the answer started.
    pub(in crate::engine) remaining: u64,
}

/// Why an answer stopped before it was done (while its model streamed, an approval waited,
/// or a tool ran).
pub(super) enum Stop {
    /// A user cancelled it.
    Cancelled,
    /// The server's shutdown grace period is over.
    Interrupted,
    /// The answer used what was left of its asker's token budget.
    Budget,
}

/// How the provider part of an answer went.
enum Outcome {
    Finished {
        content: String,
        /// Draft, reasoning, tool calls and results, in order.
        parts: Vec<MessagePart>,
        status: EndStatus,
        usage: Option<Usage>,
        finish_reason: FinishReason,
        /// What failed attempts of its steps used (estimated): counted for the budget, not
        /// part of `stream_end.usage`, which describes the answer kept.
        retried: Usage,
    },
    Failed {
        error: Error,
        retryable: bool,
        /// What the answer had used when it failed (estimated), for its asker's budget.
        usage: Usage,
    },
}

/// The answer's task.
pub(super) async fn run(engine: ChatEngine, job: AnswerJob, request: LlmRequest) {
    metrics::counter!("marie_streams_started_total").increment(1);
    // What naming the conversation after this answer needs (only when it has no title: the
    // question is copied for nothing otherwise).
    let naming = (job.setup.untitled && engine.shared.config.titles != super::TitlePolicy::Off)
        .then(|| super::title::Naming {
            conversation: job.conversation_id.clone(),
            asker: job.user_id.clone(),
            question: request.last_user_message().unwrap_or_default().to_owned(),
            model: job.setup.model.clone(),
            budget: job.budget,
        });
    // A panic in a provider, sink or store must not leave the room without a terminal event
    // nor the conversation stuck "busy": each step is guarded, and a panic ends the stream
    // with `internal`.
    let outcome = guarded(&job, "the answer", async {
        if job.streamed {
            emit(&engine, &job, start_event(&job)).await;
        }
        // Boxed: the steps' state machine is large (a provider's stream, tool calls,
        // approvals), and every move of this task's future would copy it (`docs/benchmarks.md`,
        // item 18).
        let steps = Box::pin(steps::run_steps(&engine, &job, request));
        let outcome = lease::with_lease(&engine, &job, steps).await;
        // What a burst left held goes out before the answer is stored.
        burst::flush(&engine, &job).await;
        outcome
    })
    .await
    .unwrap_or_else(internal_failure);
    let terminal = guarded(&job, "storing the answer", finalize(&engine, &job, outcome))
        .await
        .unwrap_or_else(|| failure(&job, &internal_error(), true));
    count_end(&terminal);
    // Free the conversation before the terminal event goes out: a client that has received
    // it may send its next message at once, on any node, and must not be told "busy".
    guarded(
        &job,
        "releasing the answer's lease",
        engine.finish(&job.conversation_id, &job.stream_id),
    )
    .await;
    end(&engine, &job, terminal).await;
    // Named after the end, whatever it was: a failed first answer must not leave the
    // conversation untitled. A task of its own (tracked: shutdown waits for it), so that
    // the queue behind this answer does not wait for a title.
    if let Some(naming) = naming {
        let namer = engine.clone();
        engine.shared.tasks.spawn(async move {
            let caught = AssertUnwindSafe(namer.name_conversation(naming))
                .catch_unwind()
                .await;
            if caught.is_err() {
                tracing::error!("naming a conversation panicked");
            }
        });
    }
    // The next queued send's turn (queued on any node).
    guarded(
        &job,
        "starting the next queued send",
        engine.start_queued(&job.conversation_id),
    )
    .await;
}

/// Runs `work`, catching a panic: `None` (logged) when it panicked.
async fn guarded<T>(
    job: &AnswerJob,
    what: &'static str,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let caught = AssertUnwindSafe(work).catch_unwind().await;
    if caught.is_err() {
        tracing::error!(stream_id = %job.stream_id, "{what} panicked");
    }
    caught.ok()
}

fn internal_error() -> Error {
    Error::Internal("the answer failed on the server")
}

fn internal_failure() -> Outcome {
    Outcome::Failed {
        error: internal_error(),
        retryable: true,
        usage: Usage::default(),
    }
}

fn start_event(job: &AnswerJob) -> StreamEvent {
    StreamEvent::Start(StreamStart {
        conversation_id: job.conversation_id.clone(),
        stream_id: job.stream_id.clone(),
        message_id: job.message_id.clone(),
        parent_id: Some(job.parent_id.clone()),
        assistant: job.setup.assistant.as_ref().map(|a| a.name.clone()),
        status: StartStatus::Streaming,
    })
}

/// Stores the answer and builds the terminal event.
async fn finalize(engine: &ChatEngine, job: &AnswerJob, outcome: Outcome) -> StreamEvent {
    let (content, parts, status, usage, finish_reason, retried) = match outcome {
        Outcome::Finished {
            content,
            parts,
            status,
            usage,
            finish_reason,
            retried,
        } => (content, parts, status, usage, finish_reason, retried),
        Outcome::Failed {
            error,
            retryable,
            usage,
        } => {
            count_usage(engine, job, usage).await;
            return failure(job, &error, retryable);
        }
    };

    // The answer is stored before its end is announced, so a client that reads history
    // right after `stream_end` finds it — cancelled and interrupted answers included.
    let said_anything = !parts.is_empty();
    // A text-only answer is its text: its parts are sent and kept only when there is more
    // (a long answer would otherwise go out and be stored twice).
    let parts = if parts.iter().all(MessagePart::is_text) {
        Vec::new()
    } else {
        parts
    };
    if said_anything {
        let message = ChatMessage {
            message_id: job.message_id.clone(),
            role: MessageRole::Assistant,
            content: content.clone(),
            user_id: None,
            created_at: now_millis(),
            parts: parts.clone(),
            parent_id: Some(job.parent_id.clone()),
            siblings: Vec::new(),
            attachments: Vec::new(),
            assistant: job.setup.assistant.as_ref().map(|a| a.name.clone()),
        };
        let place = if job.at_leaf {
            Place::Leaf
        } else {
            Place::After(message.parent_id.clone())
        };
        if let Err(e) = engine
            .store_message(&job.conversation_id, message, place)
            .await
        {
            tracing::error!(error = %e, stream_id = %job.stream_id, "could not store the answer");
            return failure(job, &e, true);
        }
    }

    let usage =
        usage.unwrap_or_else(|| Usage::estimated(job.prompt_tokens, estimate_tokens(&content)));
    count_usage(engine, job, usage + retried).await;

    if job.streamed {
        StreamEvent::End(StreamEnd {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            message_id: job.message_id.clone(),
            full_content: content,
            status,
            usage,
            finish_reason,
            parts,
        })
    } else {
        StreamEvent::Response(MessageResponse {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            message_id: job.message_id.clone(),
            message: content,
        })
    }
}

/// Adds the answer's tokens to its asker's budget: once per answer, whatever its end. Not
/// fatal when the store is away: the answer is not lost for it, only its count.
async fn count_usage(engine: &ChatEngine, job: &AnswerJob, usage: Usage) {
    let Some(budget) = &job.budget else { return };
    if let Err(e) = engine
        .shared
        .stores
        .usage_ledger()
        .add_usage(&job.user_id, budget.window, usage.total_tokens)
        .await
    {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "could not count an answer's tokens");
    }
}

/// The terminal event of an answer that failed.
fn failure(job: &AnswerJob, error: &Error, retryable: bool) -> StreamEvent {
    let code = match error {
        Error::Provider(_) => ErrorCode::ProviderUnavailable,
        other => other.code(),
    };
    if job.streamed {
        StreamEvent::Error(StreamFailed {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            code,
            error: error.client_message(),
            retryable,
            after_seq: job.seq.load(Ordering::Acquire),
        })
    } else {
        StreamEvent::Failed(AnswerFailed {
            code,
            message: error.client_message(),
            event: "send_message".into(),
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
        })
    }
}

/// `marie_streams_ended_total{status}`.
fn count_end(terminal: &StreamEvent) {
    let status = match terminal {
        StreamEvent::End(end) => end.status.as_str(),
        StreamEvent::Response(_) => "complete",
        _ => "error",
    };
    metrics::counter!("marie_streams_ended_total", "status" => status).increment(1);
}

/// Logs the terminal event of a streamed answer, then sends it and flushes: logged before it
/// is sent, like every chunk, so a resume finds it.
async fn end(engine: &ChatEngine, job: &AnswerJob, terminal: StreamEvent) {
    if job.streamed
        && let Err(e) = engine.shared.log.close(&job.stream_id, &terminal).await
    {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "could not log the stream's end");
    }
    emit(engine, job, terminal).await;
    burst::flush(engine, job).await;
}

/// Sends one event. A sink failure is logged, never fatal: the answer goes on for the
/// members the sink can still reach, and its terminal event is still attempted.
async fn emit(engine: &ChatEngine, job: &AnswerJob, event: StreamEvent) {
    if let Err(e) = engine.shared.sink.emit(event).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "sink could not deliver an event");
    }
}
