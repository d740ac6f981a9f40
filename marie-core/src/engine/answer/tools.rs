//! The tool part of an answer's step: the calls the model made are checked against their
//! schemas, approved where they need it (`approval.rs`), run (several at once) or, of a
//! client's tool, answered by a member (`client.rs`), and their results logged, sent and kept
//! as parts, for the model's next step.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde_json::Value;

use super::draft::Draft;
use super::{AnswerJob, ChatEngine, Stop, approval, burst, client};
use crate::{MessagePart, StreamEvent, Tool, ToolCall, ToolContext, ToolResult};

/// Runs the calls of a step; `Err` when the answer is stopped meanwhile (the calls still
/// running are dropped).
pub(super) async fn run(
    engine: &ChatEngine,
    job: &AnswerJob,
    calls: Vec<ToolCall>,
    draft: &mut Draft,
) -> Result<(), Stop> {
    let toolbox = engine.tools();
    let mut runnable: Vec<(ToolCall, Arc<dyn Tool>)> = Vec::new();
    for call in calls {
        if job.setup.client_tools.contains(&call.name) {
            // The client runs it: the answer waits for a member's result, as for an approval.
            let started = Instant::now();
            let result = match job.setup.client_tools.validate(&call.name, &call.arguments) {
                // Stopped meanwhile: the answer's end forgets its calls.
                Ok(()) => client::ask(engine, job, &call).await?,
                Err(problem) => Err(problem),
            };
            finish(engine, job, draft, &call, result, started.elapsed()).await;
            continue;
        }
        // Checked before any approval: nobody is asked to approve a call that cannot run.
        // A named assistant calls only the tools it was given (the model was offered no
        // other, but a model may name one anyway).
        let allowed = job.setup.assistant.as_ref().and_then(|a| a.tools.as_ref());
        let checked = match allowed {
            Some(tools) if !tools.contains(&call.name) => {
                Err(format!("there is no tool named {:?}", call.name))
            }
            _ => toolbox.validate(&call.name, &call.arguments),
        };
        if let Err(problem) = checked {
            finish(engine, job, draft, &call, Err(problem), Duration::ZERO).await;
            continue;
        }
        let Some(tool) = toolbox.get(&call.name).cloned() else {
            continue; // `validate` refuses unknown tools.
        };
        let asks =
            std::panic::catch_unwind(AssertUnwindSafe(|| tool.needs_approval(&call.arguments)));
        let needs_approval = match asks {
            Ok(needs) => needs,
            Err(_) => {
                tracing::error!(tool = %call.name, "a tool's approval policy panicked");
                let failed = Err("the tool failed (it panicked)".to_owned());
                finish(engine, job, draft, &call, failed, Duration::ZERO).await;
                continue;
            }
        };
        if needs_approval && let Err(refused) = approval::ask(engine, job, &call).await? {
            finish(engine, job, draft, &call, Err(refused), Duration::ZERO).await;
            continue;
        }
        runnable.push((call, tool));
    }

    let timeout = engine.shared.config.tool_timeout;
    let mut running: FuturesUnordered<_> = runnable
        .into_iter()
        .map(|(call, tool)| {
            let context = ToolContext {
                user_id: job.user_id.clone(),
                conversation_id: job.conversation_id.clone(),
                stream_id: job.stream_id.clone(),
                tool_call_id: call.id.clone(),
                cancel: job.cancel.child_token(),
            };
            async move {
                let started = Instant::now();
                let result = call_tool(tool.as_ref(), &call, context, timeout).await;
                (call, result, started.elapsed())
            }
        })
        .collect();
    let interrupt = &engine.shared.interrupt;
    loop {
        tokio::select! {
            biased;
            _ = job.cancel.cancelled() => return Err(Stop::Cancelled),
            _ = interrupt.cancelled() => return Err(Stop::Interrupted),
            done = running.next() => match done {
                Some((call, result, took)) => finish(engine, job, draft, &call, result, took).await,
                None => return Ok(()),
            },
        }
    }
}

/// One call, with its timeout; a panic, an error or a timeout is an error for the model.
async fn call_tool(
    tool: &dyn Tool,
    call: &ToolCall,
    context: ToolContext,
    timeout: Duration,
) -> Result<Value, String> {
    let running = AssertUnwindSafe(tool.call(call.arguments.clone(), context)).catch_unwind();
    match tokio::time::timeout(timeout, running).await {
        Ok(Ok(Ok(output))) => Ok(output),
        Ok(Ok(Err(e))) => Err(e.to_string()),
        Ok(Err(_)) => {
            tracing::error!(tool = %call.name, "a tool panicked");
            Err("the tool failed (it panicked)".into())
        }
        Err(_) => Err(format!(
            "the tool did not finish within {} ms",
            timeout.as_millis()
        )),
    }
}

/// The calls of an answer's last allowed step: not run, each told why.
pub(super) async fn refuse(
    engine: &ChatEngine,
    job: &AnswerJob,
    calls: Vec<ToolCall>,
    draft: &mut Draft,
) {
    for call in calls {
        let refused = Err("not run: the answer reached its limit of model steps".to_owned());
        finish(engine, job, draft, &call, refused, Duration::ZERO).await;
    }
}

/// Gives every call without a result one saying `why` (the answer stopped).
pub(super) async fn close_open_calls(
    engine: &ChatEngine,
    job: &AnswerJob,
    draft: &mut Draft,
    why: &str,
) {
    for (id, name) in draft.open_calls() {
        let call = ToolCall {
            id,
            name,
            arguments: Value::Null,
        };
        finish(
            engine,
            job,
            draft,
            &call,
            Err(why.to_owned()),
            Duration::ZERO,
        )
        .await;
    }
}

/// Records a call's result: logged and sent as `tool_result`, kept as a part.
async fn finish(
    engine: &ChatEngine,
    job: &AnswerJob,
    draft: &mut Draft,
    call: &ToolCall,
    result: Result<Value, String>,
    took: Duration,
) {
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::counter!("marie_tool_calls_total", "outcome" => outcome).increment(1);
    metrics::histogram!("marie_tool_call_seconds").record(took.as_secs_f64());
    let (output, error) = match result {
        Ok(output) => (Some(output), None),
        Err(error) => (None, Some(error)),
    };
    let duration_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    draft.add_part(MessagePart::ToolResult {
        tool_call_id: call.id.clone(),
        name: call.name.clone(),
        output: output.clone(),
        error: error.clone(),
    });
    burst::send_one(engine, job, |seq| {
        StreamEvent::ToolResult(ToolResult {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            seq,
            tool_call_id: call.id.clone(),
            name: call.name.clone(),
            output,
            error,
            duration_ms,
        })
    })
    .await;
}
