//! The provider part of an answer: its model steps, until the model is done, fails, or the
//! answer is cancelled or interrupted.
//!
//! Each step asks the model ([`step`]); when the model called tools, their results
//! (`tools.rs`) go back to it in the next step, for at most
//! [`max_steps`](crate::EngineConfig::max_steps) steps. Each turn of a step's loop is one
//! burst: wait for the provider's next item ([`next`]), take what else it has ready
//! ([`burst::take`]), log and send it ([`burst::send`]), and stop on anything that is not part
//! of the answer.

use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};

use super::burst::{self, Item, Then};
use super::text::Text;
use super::{AnswerJob, ChatEngine, Outcome, Stop, tools};
use crate::{
    EndStatus, Error, FinishReason, LlmEvent, LlmRequest, LlmStream, MessageRole, PromptMessage,
    ProviderError, StreamEvent, StreamReset, Usage, estimate_tokens,
};

/// How one model step ended, when it did not end the answer.
struct StepDone {
    usage: Option<Usage>,
    finish_reason: FinishReason,
}

/// How one model step ended the answer.
enum StepEnd {
    Stopped(Stop),
    /// The provider refused the request before its stream began (it has retried what it
    /// could by then: `marie-llm`'s providers retry connect errors, 5xx and 429).
    Refused(ProviderError),
    /// The stream began, then failed.
    Failed(ProviderError),
}

pub(super) async fn drive(engine: &ChatEngine, job: &AnswerJob, request: LlmRequest) -> Outcome {
    let mut text = Text::new();
    // Summed over the steps; a step whose provider reports none is estimated (and the sum
    // is then marked `estimated`).
    let mut usage = Usage::default();
    // What failed attempts used: their steps were asked again (`stream_reset`).
    let mut retried = Usage::default();
    // The first step's prompt was estimated when the request was built.
    let mut step_prompt = job.prompt_tokens;
    let config = &engine.shared.config;
    let max_steps = config.max_steps.max(1);
    // Without tools on offer there is no next step: the request goes to the provider as it
    // is, uncopied (the common case, and the hot path of `docs/benchmarks.md` item 14); a
    // retry builds it again.
    let base = (!engine.tools().is_empty()).then(|| request.clone());
    // The request of the next attempt, when it is built already (each step's first).
    let mut ready = Some(request);
    let mut step_number = 1;
    loop {
        let text_before = text.content().len();
        let estimate_step = |text: &Text| {
            let said = estimate_tokens(&text.content()[text_before..]);
            Usage::estimated(step_prompt, said)
        };
        let mark = text.mark(job.seq.load(Ordering::Acquire));
        let mut attempt = 0;
        let done = loop {
            let step_request = match (ready.take(), &base) {
                (Some(request), _) => request,
                (None, Some(base)) if step_number > 1 => next_request(base, &text),
                (None, Some(base)) => base.clone(),
                (None, None) => match rebuild(engine, job).await {
                    Ok(request) => request,
                    Err(e) => return store_failed(e, usage + retried),
                },
            };
            let prompts = usage.prompt_tokens + step_prompt + retried.total_tokens;
            let failed = match step(engine, job, step_request, &mut text, prompts).await {
                Ok(done) => break done,
                Err(StepEnd::Stopped(stop)) => {
                    // What the step had said when it was stopped counts too.
                    let usage = usage + estimate_step(&text);
                    return stopped(engine, job, stop, text, usage, retried).await;
                }
                Err(StepEnd::Refused(e)) => {
                    return provider_failed(e, usage + retried + estimate_step(&text));
                }
                Err(StepEnd::Failed(e)) => e,
            };
            if attempt >= config.mid_stream_retries || !failed.retryable_mid_stream() {
                return provider_failed(failed, usage + retried + estimate_step(&text));
            }
            attempt += 1;
            retried = retried + estimate_step(&text);
            text.rollback(&mark);
            if let Err(stop) = reset(engine, job, mark.seq(), attempt, &failed).await {
                return stopped(engine, job, stop, text, usage, retried).await;
            }
        };
        usage = usage + done.usage.unwrap_or_else(|| estimate_step(&text));
        let total = Some(usage);
        let calls = text.take_calls();
        if calls.is_empty() {
            text.record_speed();
            return finished(
                text,
                EndStatus::Complete,
                total,
                done.finish_reason,
                retried,
            );
        }
        let Some(base) = &base else {
            // The model called tools although none are offered: each call is told so (there
            // is no such tool), and the answer ends there, with the model's finish reason.
            if let Err(stop) = tools::run(engine, job, calls, &mut text).await {
                return stopped(engine, job, stop, text, usage, retried).await;
            }
            return finished(
                text,
                EndStatus::Complete,
                total,
                done.finish_reason,
                retried,
            );
        };
        if step_number >= max_steps {
            tools::refuse(engine, job, calls, &mut text).await;
            return finished(
                text,
                EndStatus::Complete,
                total,
                FinishReason::MaxSteps,
                retried,
            );
        }
        if let Err(stop) = tools::run(engine, job, calls, &mut text).await {
            return stopped(engine, job, stop, text, usage, retried).await;
        }
        let next = next_request(base, &text);
        step_prompt = prompt_estimate(&next);
        ready = Some(next);
        step_number += 1;
    }
}

/// Tells the room that a failed step is asked again (`stream_reset`, numbered and logged
/// like any part), then waits the backoff: stopped meanwhile by a cancel or a shutdown.
async fn reset(
    engine: &ChatEngine,
    job: &AnswerJob,
    after_seq: u64,
    attempt: u32,
    failed: &ProviderError,
) -> Result<(), Stop> {
    tracing::info!(stream_id = %job.stream_id, attempt, error = %failed, "a model step failed mid-stream; asking again");
    metrics::counter!("marie_stream_resets_total", "kind" => failed.kind()).increment(1);
    let reason = Error::Provider(failed.clone()).client_message();
    burst::send_one(engine, job, |seq| {
        StreamEvent::Reset(StreamReset {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            seq,
            after_seq,
            attempt,
            reason,
        })
    })
    .await;
    let backoff = engine.shared.config.retry_backoff * 2u32.saturating_pow(attempt - 1);
    tokio::select! {
        biased;
        _ = job.cancel.cancelled() => Err(Stop::Cancelled),
        _ = engine.shared.interrupt.cancelled() => Err(Stop::Interrupted),
        _ = tokio::time::sleep(backoff) => Ok(()),
    }
}

/// The first step's request, built again from the store for a retry: the answer is not
/// stored yet and its lease keeps the branch as it was, so it is the request first sent.
async fn rebuild(engine: &ChatEngine, job: &AnswerJob) -> Result<LlmRequest, Error> {
    let messages = engine
        .prompt_history(&job.conversation_id, job.prompt.clone())
        .await?;
    Ok(engine.llm_request(&job.user_id, &job.conversation_id, messages))
}

/// The estimated size of a request, in tokens: its texts, and the calls and results of the
/// answer so far.
fn prompt_estimate(request: &LlmRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| {
            let calls: u64 = m
                .assistant_turns()
                .iter()
                .flat_map(|t| &t.results)
                .map(|r| estimate_tokens(&r.content))
                .sum();
            estimate_tokens(&m.content) + calls
        })
        .sum()
}

/// The request of a step after the first: the user's request, then the answer so far as one
/// assistant message whose parts hold the calls and their results.
fn next_request(request: &LlmRequest, text: &Text) -> LlmRequest {
    let mut next = request.clone();
    next.messages.push(PromptMessage {
        role: MessageRole::Assistant,
        content: text.content().to_owned(),
        parts: text.parts(),
        attachments: Vec::new(),
    });
    next
}

/// One model step: ask, then take its items until it is done, or until the answer has used
/// what was left of its asker's budget (`prompts`: the prompt tokens of its steps so far).
async fn step(
    engine: &ChatEngine,
    job: &AnswerJob,
    request: LlmRequest,
    text: &mut Text,
    prompts: u64,
) -> Result<StepDone, StepEnd> {
    let mut stream = match open(engine, job, request).await {
        Ok(stream) => stream,
        Err(Ok(stop)) => return Err(StepEnd::Stopped(stop)),
        Err(Err(e)) => return Err(StepEnd::Refused(e)),
    };
    loop {
        let item = next(engine, job, &mut stream)
            .await
            .map_err(StepEnd::Stopped)?;
        let burst = burst::take(item, &mut stream, job, text);
        burst::send(engine, job, burst.events).await;
        if let Some(panic) = burst.panic {
            std::panic::resume_unwind(panic);
        }
        match burst.then {
            Then::More => {}
            Then::Item(item) => return ended(item),
        }
        if job
            .budget
            .is_some_and(|b| prompts + text.tokens() >= b.remaining)
        {
            return Err(StepEnd::Stopped(Stop::Budget));
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

/// The provider's last word in a step: its `Done`, an error, or a stream that ended
/// without `Done`.
fn ended(item: Item) -> Result<StepDone, StepEnd> {
    match item {
        Some(Ok(LlmEvent::Done {
            usage,
            finish_reason,
        })) => Ok(StepDone {
            usage,
            finish_reason,
        }),
        Some(Err(e)) => Err(StepEnd::Failed(e)),
        // `burst::take` takes every other item.
        Some(Ok(_)) | None => Err(StepEnd::Failed(ProviderError::Protocol(
            "the answer stream ended before the provider said it was done".into(),
        ))),
    }
}

fn finished(
    text: Text,
    status: EndStatus,
    usage: Option<Usage>,
    finish_reason: FinishReason,
    retried: Usage,
) -> Outcome {
    let (content, parts) = text.into_content();
    Outcome::Finished {
        content,
        parts,
        status,
        usage,
        finish_reason,
        retried,
    }
}

/// A stopped answer keeps what it has said so far, and its usage so far (the step that was
/// stopped estimated); a call it made that has no result gets one saying so, so that the
/// stored answer is one a model can be given again.
async fn stopped(
    engine: &ChatEngine,
    job: &AnswerJob,
    stop: Stop,
    mut text: Text,
    usage: Usage,
    retried: Usage,
) -> Outcome {
    let (status, finish_reason, why) = match stop {
        Stop::Cancelled => (
            EndStatus::Cancelled,
            FinishReason::Cancelled,
            "the answer was cancelled before this call finished",
        ),
        Stop::Interrupted => (
            EndStatus::Interrupted,
            FinishReason::Interrupted,
            "the server stopped before this call finished",
        ),
        Stop::Budget => (
            EndStatus::Complete,
            FinishReason::Budget,
            "the answer used its token budget before this call finished",
        ),
    };
    tools::close_open_calls(engine, job, &mut text, why).await;
    finished(text, status, Some(usage), finish_reason, retried)
}

/// The store could not give the request again for a retry.
fn store_failed(error: Error, usage: Usage) -> Outcome {
    tracing::warn!(%error, "could not build the request again for a retry");
    Outcome::Failed {
        retryable: true,
        error,
        usage,
    }
}

fn provider_failed(error: ProviderError, usage: Usage) -> Outcome {
    tracing::warn!(%error, kind = error.kind(), "provider failed");
    metrics::counter!("marie_provider_errors_total", "kind" => error.kind()).increment(1);
    Outcome::Failed {
        retryable: error.retryable(),
        error: Error::Provider(error),
        usage,
    }
}
