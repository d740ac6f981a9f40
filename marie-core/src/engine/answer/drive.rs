//! The provider part of an answer: poll the model until it is done, fails, or the answer is
//! cancelled or interrupted. Each turn of [`drive`]'s loop is one burst: wait for the
//! provider's next item ([`next`]), take what else it has ready ([`burst::take`]), log and send
//! it ([`burst::send`]), and stop on anything that is not a delta.

use futures_util::{FutureExt, StreamExt};

use super::burst::{self, Item, Then};
use super::text::Text;
use super::{AnswerJob, ChatEngine, Outcome};
use crate::{EndStatus, Error, FinishReason, LlmEvent, LlmRequest, LlmStream, ProviderError};

/// Why an answer stopped before its provider was done.
enum Stop {
    /// A user cancelled it.
    Cancelled,
    /// The server's shutdown grace period is over.
    Interrupted,
}

pub(super) async fn drive(engine: &ChatEngine, job: &AnswerJob, request: LlmRequest) -> Outcome {
    let mut text = Text::new();
    let mut stream = match open(engine, job, request).await {
        Ok(stream) => stream,
        Err(Ok(stop)) => return stopped(stop, text),
        Err(Err(e)) => return provider_failed(e),
    };
    loop {
        let item = match next(engine, job, &mut stream).await {
            Ok(item) => item,
            Err(stop) => return stopped(stop, text),
        };
        let burst = burst::take(item, &mut stream, job, &mut text);
        burst::send(engine, job, burst.events).await;
        if let Some(panic) = burst.panic {
            std::panic::resume_unwind(panic);
        }
        match burst.then {
            Then::More => {}
            Then::Item(item) => return ended(item, text),
        }
    }
}

/// Asks the provider for the answer, unless the answer is stopped first.
async fn open(
    engine: &ChatEngine,
    job: &AnswerJob,
    request: LlmRequest,
) -> Result<LlmStream, Result<Stop, ProviderError>> {
    tokio::select! {
        biased;
        _ = job.cancel.cancelled() => Err(Ok(Stop::Cancelled)),
        _ = engine.shared.interrupt.cancelled() => Err(Ok(Stop::Interrupted)),
        started = engine.shared.provider.stream(request) => started.map_err(Err),
    }
}

/// The provider's next item: at once when it has one ready (it continues a burst); else,
/// after telling the sink to flush (the burst protocol), the first of the item, a cancel and
/// the end of the shutdown's grace period.
async fn next(engine: &ChatEngine, job: &AnswerJob, stream: &mut LlmStream) -> Result<Item, Stop> {
    let interrupt = &engine.shared.interrupt;
    if job.cancel.is_cancelled() {
        return Err(Stop::Cancelled);
    }
    if !interrupt.is_cancelled()
        && let Some(item) = stream.next().now_or_never()
    {
        return Ok(item);
    }
    burst::flush(engine, job).await;
    tokio::select! {
        biased;
        _ = job.cancel.cancelled() => Err(Stop::Cancelled),
        _ = interrupt.cancelled() => Err(Stop::Interrupted),
        item = stream.next() => Ok(item),
    }
}

/// The provider's last word: its `Done`, an error, or a stream that ended without `Done`.
fn ended(item: Item, text: Text) -> Outcome {
    match item {
        Some(Ok(LlmEvent::Done {
            usage,
            finish_reason,
        })) => {
            text.record_speed();
            let (content, parts) = text.into_content();
            Outcome::Finished {
                content,
                parts,
                status: EndStatus::Complete,
                usage,
                finish_reason,
            }
        }
        Some(Err(e)) => provider_failed(e),
        // `burst::take` takes every delta.
        Some(Ok(LlmEvent::Delta(_) | LlmEvent::Reasoning(_))) | None => {
            provider_failed(ProviderError::Protocol(
                "the answer stream ended before the provider said it was done".into(),
            ))
        }
    }
}

/// A stopped answer keeps what it has said so far.
fn stopped(stop: Stop, text: Text) -> Outcome {
    let (status, finish_reason) = match stop {
        Stop::Cancelled => (EndStatus::Cancelled, FinishReason::Cancelled),
        Stop::Interrupted => (EndStatus::Interrupted, FinishReason::Interrupted),
    };
    let (content, parts) = text.into_content();
    Outcome::Finished {
        content,
        parts,
        status,
        usage: None,
        finish_reason,
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
