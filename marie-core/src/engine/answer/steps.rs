//! The provider part of an answer: its model steps, until the model is done, fails, or the
//! answer is cancelled or interrupted.
//!
//! [`run_steps`] holds the answer's state ([`Steps`]): each step asks the model ([`step`]),
//! again after a `stream_reset` when its stream failed; when the model called tools, their results
//! (`tools.rs`) go back to it in the next step, for at most
//! [`max_steps`](crate::EngineConfig::max_steps) steps. Each turn of a step's loop is one
//! burst: wait for the provider's next item ([`next`]), take what else it has ready
//! ([`burst::take`]), log and send it ([`burst::send`]), and stop on anything that is not part
//! of the answer.

use std::sync::atomic::Ordering;

use futures_util::{FutureExt, StreamExt};

use super::burst::{self, Item, Then};
use super::client;
use super::draft::Draft;
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

/// How the provider part of an answer ends.
enum End {
    /// The model is done (or the answer ends at its step limit).
    Finished(FinishReason),
    /// A cancel, the shutdown or the budget stopped it, having used `Usage`.
    Stopped(Stop, Usage),
    /// It failed: the outcome says how.
    Failed(Outcome),
}

/// The provider part of an answer as it goes: what it has said, what it has used, and the
/// request of its next step.
struct Steps<'a> {
    engine: &'a ChatEngine,
    job: &'a AnswerJob,
    draft: Draft,
    /// Summed over the steps; a step whose provider reports none is estimated (and the sum
    /// is then marked `estimated`).
    usage: Usage,
    /// What failed attempts used: their steps were asked again (`stream_reset`).
    retried: Usage,
    /// The current step's prompt, estimated (the first step's when its request was built).
    step_prompt: u64,
    /// The user's request, kept for the steps after the first. Without tools on offer there
    /// is no next step: the request goes to the provider as it is, uncopied (the common
    /// case, and the hot path of `docs/benchmarks.md` item 14); a retry builds it again.
    base: Option<LlmRequest>,
    /// The request of the next attempt, when it is built already (each step's first).
    ready: Option<LlmRequest>,
    /// The current step, from 1.
    number: usize,
}

/// The model's steps of an answer, until it is done, fails, or is stopped.
pub(super) async fn run_steps(
    engine: &ChatEngine,
    job: &AnswerJob,
    request: LlmRequest,
) -> Outcome {
    let mut steps = Steps {
        engine,
        job,
        draft: Draft::new(),
        usage: Usage::default(),
        retried: Usage::default(),
        step_prompt: job.prompt_tokens,
        // Tools offered (the app's, or the client's): their results go to a next step.
        base: (!request.tools.is_empty()).then(|| request.clone()),
        ready: Some(request),
        number: 1,
    };
    let end = loop {
        let done = match steps.step().await {
            Ok(done) => done,
            Err(end) => break end,
        };
        if let Err(end) = steps.after(done).await {
            break end;
        }
    };
    steps.end(end).await
}

impl Steps<'_> {
    /// One model step, asked again (after a `stream_reset`) when its stream fails in a way
    /// worth retrying, up to `mid_stream_retries` times.
    async fn step(&mut self) -> Result<StepDone, End> {
        let config = &self.engine.shared.config;
        let said_before = self.draft.content().len();
        let mark = self.draft.mark(self.job.seq.load(Ordering::Acquire));
        let mut attempt = 0;
        loop {
            let request = self.request().await?;
            let prompts = self.usage.prompt_tokens + self.step_prompt + self.retried.total_tokens;
            let failed = match step(self.engine, self.job, request, &mut self.draft, prompts).await
            {
                Ok(done) => {
                    let used = done.usage.unwrap_or_else(|| self.estimate(said_before));
                    self.usage = self.usage + used;
                    return Ok(done);
                }
                Err(StepEnd::Stopped(stop)) => {
                    // What the step had said when it was stopped counts too.
                    return Err(End::Stopped(stop, self.usage + self.estimate(said_before)));
                }
                Err(StepEnd::Refused(e)) => return Err(self.failed(e, said_before)),
                Err(StepEnd::Failed(e)) => e,
            };
            if attempt >= config.mid_stream_retries || !failed.retryable_mid_stream() {
                return Err(self.failed(failed, said_before));
            }
            attempt += 1;
            self.retried = self.retried + self.estimate(said_before);
            self.draft.rollback(&mark);
            // The failed attempt's client calls are dropped with it: nobody may answer them.
            client::forget(self.engine, self.job).await;
            if let Err(stop) = reset(self.engine, self.job, mark.seq(), attempt, &failed).await {
                return Err(End::Stopped(stop, self.usage));
            }
        }
    }

    /// After a step: the answer is done, or its calls run and the next step is prepared.
    async fn after(&mut self, done: StepDone) -> Result<(), End> {
        let calls = self.draft.take_calls();
        if calls.is_empty() {
            self.draft.record_speed();
            return Err(End::Finished(done.finish_reason));
        }
        let (engine, job) = (self.engine, self.job);
        let Some(base) = &self.base else {
            // The model called tools although none are offered: each call is told so (there
            // is no such tool), and the answer ends there, with the model's finish reason.
            tools::run(engine, job, calls, &mut self.draft)
                .await
                .map_err(|stop| End::Stopped(stop, self.usage))?;
            return Err(End::Finished(done.finish_reason));
        };
        if self.number >= engine.shared.config.max_steps.max(1) {
            tools::refuse(engine, job, calls, &mut self.draft).await;
            return Err(End::Finished(FinishReason::MaxSteps));
        }
        tools::run(engine, job, calls, &mut self.draft)
            .await
            .map_err(|stop| End::Stopped(stop, self.usage))?;
        let next = next_request(base, &self.draft);
        self.step_prompt = prompt_estimate(&next);
        self.ready = Some(next);
        self.number += 1;
        Ok(())
    }

    /// The request of the step's next attempt: built already, the user's request again
    /// (with the answer so far, after the first step), or built again from the store.
    async fn request(&mut self) -> Result<LlmRequest, End> {
        match (self.ready.take(), &self.base) {
            (Some(request), _) => Ok(request),
            (None, Some(base)) if self.number > 1 => Ok(next_request(base, &self.draft)),
            (None, Some(base)) => Ok(base.clone()),
            (None, None) => rebuild(self.engine, self.job)
                .await
                .map_err(|e| End::Failed(store_failed(e, self.usage + self.retried))),
        }
    }

    /// The usage of the current step so far, estimated from what it said since
    /// `said_before`.
    fn estimate(&self, said_before: usize) -> Usage {
        let said = estimate_tokens(&self.draft.content()[said_before..]);
        Usage::estimated(self.step_prompt, said)
    }

    fn failed(&self, error: ProviderError, said_before: usize) -> End {
        End::Failed(provider_failed(
            error,
            self.usage + self.retried + self.estimate(said_before),
        ))
    }

    async fn end(self, end: End) -> Outcome {
        // A result that comes after the answer is over is `not_found`, however it ended.
        client::forget(self.engine, self.job).await;
        match end {
            End::Finished(finish_reason) => finished(
                self.draft,
                EndStatus::Complete,
                Some(self.usage),
                finish_reason,
                self.retried,
            ),
            End::Stopped(stop, usage) => {
                stopped(self.engine, self.job, stop, self.draft, usage, self.retried).await
            }
            End::Failed(outcome) => outcome,
        }
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
    Ok(engine.llm_request(&job.user_id, &job.conversation_id, &job.setup, messages))
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
fn next_request(request: &LlmRequest, draft: &Draft) -> LlmRequest {
    let mut next = request.clone();
    next.messages.push(PromptMessage {
        role: MessageRole::Assistant,
        content: draft.content().to_owned(),
        parts: draft.parts(),
        attachments: Vec::new(),
        author: None,
    });
    next
}

/// One model step: ask, then take its items until it is done, or until the answer has used
/// what was left of its asker's budget (`prompts`: the prompt tokens of its steps so far).
async fn step(
    engine: &ChatEngine,
    job: &AnswerJob,
    request: LlmRequest,
    draft: &mut Draft,
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
        let burst = burst::take(item, &mut stream, job, draft);
        if !job.setup.client_tools.specs().is_empty() {
            client::record_calls(engine, job, &burst.events).await;
        }
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
            .is_some_and(|b| prompts + draft.tokens() >= b.remaining)
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
    draft: Draft,
    status: EndStatus,
    usage: Option<Usage>,
    finish_reason: FinishReason,
    retried: Usage,
) -> Outcome {
    let (content, parts) = draft.into_content();
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
    mut draft: Draft,
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
    tools::close_open_calls(engine, job, &mut draft, why).await;
    finished(draft, status, Some(usage), finish_reason, retried)
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
