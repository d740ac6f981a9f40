//! The answer task: one per answer, from the provider's first byte to the terminal event.
//!
//! It owns the answer: it numbers chunks, builds `full_content`, stores the final message and
//! sends exactly one terminal event whatever happens (provider error, cancel, shutdown, or a
//! panic in a backend).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures_util::{FutureExt, StreamExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ChatEngine;
use crate::{
    ActiveStream, AnswerFailed, ChatMessage, ConversationId, EndStatus, Error, ErrorCode,
    FinishReason, LlmEvent, LlmRequest, LoggedChunk, LoggedEnd, MessageId, MessageResponse,
    MessageRole, ProviderError, RoomEvent, StreamChunk, StreamEnd, StreamFailed, StreamId,
    StreamStart, Usage, estimate_tokens, now_millis,
};

pub(super) struct AnswerJob {
    pub(super) conversation_id: ConversationId,
    pub(super) stream_id: StreamId,
    /// The id of the assistant message this answer becomes.
    pub(super) message_id: MessageId,
    /// The request's size in estimated tokens, for the usage of a provider that reports none.
    pub(super) prompt_tokens: u64,
    /// `false` for `send_message {stream:false}`: no start/chunk events, one
    /// `message_response` at the end.
    pub(super) streamed: bool,
    pub(super) cancel: CancellationToken,
    pub(super) seq: Arc<AtomicU64>,
    /// Signalled after each chunk is sent, so that the lease keeper records the new `seq`.
    pub(super) progress: Arc<Notify>,
}

/// How the provider part of an answer went.
enum Outcome {
    Finished {
        content: String,
        status: EndStatus,
        usage: Option<Usage>,
        finish_reason: FinishReason,
    },
    Failed {
        error: Error,
        retryable: bool,
    },
}

pub(super) async fn run(engine: ChatEngine, job: AnswerJob, request: LlmRequest) {
    metrics::counter!("marie_streams_started_total").increment(1);

    // A panic in a provider, sink or store must not leave the room without a terminal event
    // nor the conversation stuck "busy": catch it and end the stream with `internal`.
    let outcome = AssertUnwindSafe(async {
        if job.streamed {
            emit(
                &engine,
                &job,
                RoomEvent::StreamStart(StreamStart {
                    conversation_id: job.conversation_id.clone(),
                    stream_id: job.stream_id.clone(),
                    message_id: job.message_id.clone(),
                    status: "streaming",
                }),
            )
            .await;
        }
        let outcome = with_lease(&engine, &job, drive(&engine, &job, request)).await;
        // What a burst left held goes out before the answer is stored.
        flush(&engine, &job).await;
        outcome
    })
    .catch_unwind()
    .await
    .unwrap_or_else(|_| {
        tracing::error!(stream_id = %job.stream_id, "answer task panicked");
        Outcome::Failed {
            error: Error::Internal("the answer failed on the server"),
            retryable: true,
        }
    });

    let terminal = AssertUnwindSafe(finalize(&engine, &job, outcome))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(stream_id = %job.stream_id, "storing the answer panicked");
            failure(
                &job,
                &Error::Internal("the answer failed on the server"),
                true,
                job.seq.load(Ordering::Acquire),
            )
        });
    let status = match &terminal {
        RoomEvent::StreamEnd(end) => end.status.as_str(),
        RoomEvent::MessageResponse(_) => "complete",
        _ => "error",
    };
    metrics::counter!("marie_streams_ended_total", "status" => status).increment(1);
    // Free the conversation before the terminal event goes out: a client that has received
    // it may send its next message at once, on any node, and must not be told "busy".
    if AssertUnwindSafe(engine.finish(&job.conversation_id, &job.stream_id))
        .catch_unwind()
        .await
        .is_err()
    {
        tracing::error!(stream_id = %job.stream_id, "releasing the answer's lease panicked");
    }
    if terminal.is_terminal() {
        // Logged before it is sent, like every chunk, so a resume finds it.
        let end = LoggedEnd {
            event: terminal.name().to_owned(),
            payload: serde_json::to_value(&terminal).unwrap_or_default(),
        };
        if let Err(e) = engine.shared.log.close(&job.stream_id, &end).await {
            tracing::warn!(error = %e, stream_id = %job.stream_id, "could not log the stream's end");
        }
    }
    emit(&engine, &job, terminal).await;
    flush(&engine, &job).await;
}

/// Runs `work` while keeping the answer's lease in the store alive.
async fn with_lease<T>(
    engine: &ChatEngine,
    job: &AnswerJob,
    work: impl std::future::Future<Output = T>,
) -> T {
    let keeper = keep_lease(engine, job);
    tokio::pin!(keeper, work);
    tokio::select! {
        biased;
        out = &mut work => out,
        never = &mut keeper => match never {},
    }
}

/// How often at most the lease records the answer's progress (`joined.active_stream.seq`,
/// a hint for a late joiner, who resumes from it or from 0). Every chunk would be a store
/// write per chunk: with Redis, a third round trip per chunk beside the log and the publish.
const SEQ_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// Renews the lease every third of its length, and records the last `seq` sent at most every
/// [`SEQ_EVERY`]. Never returns; dropped when the answer's work is done.
async fn keep_lease(engine: &ChatEngine, job: &AnswerJob) -> std::convert::Infallible {
    let store = &engine.shared.store;
    let ttl = engine.answer_lease();
    let period = ttl / 3;
    let mut recorded = 0;
    let mut renew_at = tokio::time::Instant::now() + period;
    let mut failing = false;
    let started = tokio::time::Instant::now();
    let mut written_at = started.checked_sub(SEQ_EVERY).unwrap_or(started);
    loop {
        // Progress not yet recorded is written at the next `SEQ_EVERY` tick, not at once.
        let behind = job.seq.load(Ordering::Acquire) != recorded;
        let wake_at = if behind {
            renew_at.min(written_at + SEQ_EVERY)
        } else {
            renew_at
        };
        tokio::select! {
            () = job.progress.notified(), if !behind => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
        let seq = job.seq.load(Ordering::Acquire);
        let now = tokio::time::Instant::now();
        if now < renew_at && (seq == recorded || now < written_at + SEQ_EVERY) {
            continue;
        }
        written_at = now;
        let active = ActiveStream {
            stream_id: job.stream_id.clone(),
            seq,
        };
        match store.renew_answer(&job.conversation_id, &active, ttl).await {
            Ok(held) => {
                if !held {
                    tracing::warn!(stream_id = %job.stream_id, "another answer took this answer's lease");
                }
                if failing {
                    tracing::info!(stream_id = %job.stream_id, "the answer's lease is renewed again");
                    failing = false;
                }
                recorded = seq;
                renew_at = tokio::time::Instant::now() + period;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, stream_id = %job.stream_id, "could not renew the answer's lease");
                    failing = true;
                }
                // Try again at the next chunk, or soon.
                renew_at =
                    tokio::time::Instant::now() + period.min(std::time::Duration::from_secs(1));
            }
        }
    }
}

/// Polls the provider until it is done, fails, or the answer is cancelled or interrupted.
async fn drive(engine: &ChatEngine, job: &AnswerJob, request: LlmRequest) -> Outcome {
    let interrupt = &engine.shared.interrupt;
    let started = Instant::now();
    let mut content = String::new();
    let mut deltas: u64 = 0;
    let mut first_chunk_at: Option<Instant> = None;

    let stopped = |cancelled: bool, content: String| Outcome::Finished {
        content,
        status: if cancelled {
            EndStatus::Cancelled
        } else {
            EndStatus::Interrupted
        },
        usage: None,
        finish_reason: if cancelled {
            FinishReason::Cancelled
        } else {
            FinishReason::Interrupted
        },
    };

    let mut stream = tokio::select! {
        biased;
        _ = job.cancel.cancelled() => return stopped(true, content),
        _ = interrupt.cancelled() => return stopped(false, content),
        started = engine.shared.provider.stream(request) => match started {
            Ok(stream) => stream,
            Err(e) => return provider_failed(e),
        },
    };

    loop {
        if job.cancel.is_cancelled() {
            return stopped(true, content);
        }
        // A chunk that is ready at once continues a burst; before waiting for the provider,
        // the sink sends what it held back of the burst (merged).
        let mut item = match stream.next().now_or_never() {
            Some(item) if !interrupt.is_cancelled() => item,
            _ => {
                flush(engine, job).await;
                tokio::select! {
                    biased;
                    _ = job.cancel.cancelled() => return stopped(true, content),
                    _ = interrupt.cancelled() => return stopped(false, content),
                    item = stream.next() => item,
                }
            }
        };
        // The deltas of a burst (those ready at once, up to BURST_MAX) are logged with one
        // call and sent with one: with Redis, one round trip each instead of one per chunk.
        let mut burst: Vec<LoggedChunk> = Vec::new();
        let mut panicked = None;
        let after = loop {
            match item {
                Some(Ok(LlmEvent::Delta(text))) => {
                    if !text.is_empty() {
                        deltas += 1;
                        if deltas == 1 {
                            first_chunk_at = Some(Instant::now());
                            metrics::histogram!("marie_stream_first_chunk_seconds")
                                .record(started.elapsed().as_secs_f64());
                        }
                        content.push_str(&text);
                        // An unstreamed answer sends nothing before its end.
                        if job.streamed {
                            burst.push(LoggedChunk {
                                seq: job.seq.load(Ordering::Acquire) + burst.len() as u64 + 1,
                                content: text,
                                tokens_used: deltas,
                            });
                        }
                    }
                    if burst.len() >= BURST_MAX || job.cancel.is_cancelled() {
                        break None;
                    }
                    // A provider that panics here has its earlier deltas sent first, as if
                    // they had come one by one; then the panic goes on to the task's guard.
                    match std::panic::catch_unwind(AssertUnwindSafe(|| {
                        stream.next().now_or_never()
                    })) {
                        Ok(Some(next)) => item = next,
                        Ok(None) => break None,
                        Err(panic) => {
                            panicked = Some(panic);
                            break None;
                        }
                    }
                }
                other => break Some(other),
            }
        };
        if !burst.is_empty() {
            send_burst(engine, job, burst).await;
        }
        if let Some(panic) = panicked {
            std::panic::resume_unwind(panic);
        }
        match after {
            None | Some(Some(Ok(LlmEvent::Delta(_)))) => {}
            Some(Some(Ok(LlmEvent::Done {
                usage,
                finish_reason,
            }))) => {
                record_speed(first_chunk_at, deltas);
                return Outcome::Finished {
                    content,
                    status: EndStatus::Complete,
                    usage,
                    finish_reason,
                };
            }
            Some(Some(Err(e))) => return provider_failed(e),
            Some(None) => {
                return provider_failed(ProviderError::Protocol(
                    "the answer stream ended before the provider said it was done".into(),
                ));
            }
        }
    }
}

/// The most deltas logged and sent as one burst.
const BURST_MAX: usize = 32;

/// Logs a burst of chunks, then sends them. Recorded before they are sent: a client that
/// resumes after reading the log and subscribing misses nothing.
async fn send_burst(engine: &ChatEngine, job: &AnswerJob, burst: Vec<LoggedChunk>) {
    if let Err(e) = engine.shared.log.append_many(&job.stream_id, &burst).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "could not log a chunk");
    }
    let n = burst.len() as u64;
    let last = burst.last().map_or(0, |c| c.seq);
    let events: Vec<RoomEvent> = burst
        .into_iter()
        .map(|c| {
            RoomEvent::StreamChunk(StreamChunk {
                conversation_id: job.conversation_id.clone(),
                stream_id: job.stream_id.clone(),
                seq: c.seq,
                content: c.content,
                done: false,
                tokens_used: c.tokens_used,
            })
        })
        .collect();
    job.seq.store(last, Ordering::Release);
    let sent = engine
        .shared
        .sink
        .emit_many(&job.conversation_id, events)
        .await;
    if let Err(e) = sent {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "sink could not deliver an event");
    }
    job.progress.notify_one();
    metrics::counter!("marie_stream_chunks_total").increment(n);
}

/// Records the generation speed of a finished answer: the tokens after the first (counted as
/// `tokens_used` counts them, one per provider delta) per second between the first delta and
/// the end. Answers of fewer than two tokens say nothing about speed and are not recorded.
fn record_speed(first_chunk_at: Option<Instant>, tokens: u64) {
    let Some(first) = first_chunk_at else { return };
    let seconds = first.elapsed().as_secs_f64();
    if tokens >= 2 && seconds > 0.0 {
        metrics::histogram!("marie_stream_tokens_per_second").record((tokens - 1) as f64 / seconds);
    }
}

fn provider_failed(error: ProviderError) -> Outcome {
    tracing::warn!(%error, kind = error.kind(), "provider failed");
    metrics::counter!("marie_provider_errors_total", "kind" => error.kind()).increment(1);
    Outcome::Failed {
        retryable: error.retryable(),
        error: Error::Provider(error),
    }
}

/// Stores the answer and builds the terminal event.
async fn finalize(engine: &ChatEngine, job: &AnswerJob, outcome: Outcome) -> RoomEvent {
    let after_seq = job.seq.load(Ordering::Acquire);
    let (content, status, usage, finish_reason) = match outcome {
        Outcome::Finished {
            content,
            status,
            usage,
            finish_reason,
        } => (content, status, usage, finish_reason),
        Outcome::Failed { error, retryable } => return failure(job, &error, retryable, after_seq),
    };

    // The answer is stored before its end is announced, so a client that reads history
    // right after `stream_end` finds it — cancelled and interrupted answers included.
    if !content.is_empty() {
        let message = ChatMessage {
            message_id: job.message_id.clone(),
            role: MessageRole::Assistant,
            content: content.clone(),
            user_id: None,
            created_at: now_millis(),
        };
        if let Err(e) = engine
            .shared
            .store
            .append_message(&job.conversation_id, message)
            .await
        {
            tracing::error!(error = %e, stream_id = %job.stream_id, "could not store the answer");
            return failure(job, &Error::Store(e), true, after_seq);
        }
    }

    let usage =
        usage.unwrap_or_else(|| Usage::estimated(job.prompt_tokens, estimate_tokens(&content)));

    if job.streamed {
        RoomEvent::StreamEnd(StreamEnd {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            message_id: job.message_id.clone(),
            full_content: content,
            status,
            usage,
            finish_reason,
        })
    } else {
        RoomEvent::MessageResponse(MessageResponse {
            conversation_id: job.conversation_id.clone(),
            message_id: job.message_id.clone(),
            message: content,
        })
    }
}

fn failure(job: &AnswerJob, error: &Error, retryable: bool, after_seq: u64) -> RoomEvent {
    let code = match error {
        Error::Provider(_) => ErrorCode::ProviderUnavailable,
        other => other.code(),
    };
    if job.streamed {
        RoomEvent::StreamError(StreamFailed {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            code,
            error: error.client_message(),
            retryable,
            after_seq,
        })
    } else {
        RoomEvent::AnswerFailed(AnswerFailed {
            code,
            message: error.client_message(),
            event: "send_message",
            conversation_id: job.conversation_id.clone(),
        })
    }
}

/// Tells the sink the answer has nothing more ready for now (see [`StreamSink::flush`]).
///
/// [`StreamSink::flush`]: crate::StreamSink::flush
async fn flush(engine: &ChatEngine, job: &AnswerJob) {
    if let Err(e) = engine.shared.sink.flush(&job.conversation_id).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "sink could not flush");
    }
}

/// Sends one event. A sink failure is logged, never fatal: the answer goes on for the
/// members the sink can still reach, and its terminal event is still attempted.
async fn emit(engine: &ChatEngine, job: &AnswerJob, event: RoomEvent) {
    if let Err(e) = engine.shared.sink.emit(&job.conversation_id, event).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "sink could not deliver an event");
    }
}
