//! A call of a client tool (`docs/protocol.md` section 11): nothing runs on the server. The
//! call is recorded in the store as an approval would be ([`ToolApprovalRequest::client`]),
//! before its `tool_call` is sent, so that the first `submit_tool_result` on any node wins,
//! and the answer waits for it as for a decision (`approval::wait`): woken at once on this
//! node, over the control bus from another, by its own look at the store otherwise.

use std::time::Duration;

use serde_json::Value;

use super::{AnswerJob, ChatEngine, Stop, approval};
use crate::{ApprovalId, ApprovalRecord, StreamEvent, ToolApprovalRequest, ToolCall, now_millis};

/// Records the client tool calls among `events` (a burst about to be sent), so that a
/// member who answers one the moment its `tool_call` arrives finds it. A call whose arguments
/// do not fit its schema is not recorded: it is answered with that error (`tools.rs`).
pub(super) async fn record_calls(engine: &ChatEngine, job: &AnswerJob, events: &[StreamEvent]) {
    for event in events {
        if let StreamEvent::ToolCall(call) = event
            && call.client
            && job
                .setup
                .client_tools
                .validate(&call.name, &call.arguments)
                .is_ok()
        {
            record(
                engine,
                job,
                call.seq,
                &call.tool_call_id,
                &call.name,
                &call.arguments,
            )
            .await;
        }
    }
}

/// Records one call (its `tool_call` numbered `seq`) as waiting for its result; `false`
/// when the store refused.
async fn record(
    engine: &ChatEngine,
    job: &AnswerJob,
    seq: u64,
    tool_call_id: &str,
    name: &str,
    arguments: &Value,
) -> bool {
    // The same expiry as an approval: both wait for a person.
    let timeout = engine.shared.config.approval_timeout;
    let record = ApprovalRecord {
        request: ToolApprovalRequest {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            // Never sent: the call's own `tool_call` event, numbered `seq`, is what members
            // see, and where a client that answers it continues following the answer.
            seq,
            approval_id: ApprovalId::for_client_call(&job.stream_id, tool_call_id),
            tool_call_id: tool_call_id.to_owned(),
            name: name.to_owned(),
            arguments: arguments.clone(),
            expires_at: now_millis()
                .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
            client: true,
        },
        decision: None,
    };
    match engine
        .shared
        .stores
        .approvals()
        .create_approval(&record)
        .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, stream_id = %job.stream_id, "could not record a client tool call");
            false
        }
    }
}

/// Waits for a member's result of `call`: `Ok(result)` is what the model is told (an error
/// when nobody answered in time, or the call could not be recorded); `Err` when the answer
/// was stopped meanwhile.
pub(super) async fn ask(
    engine: &ChatEngine,
    job: &AnswerJob,
    call: &ToolCall,
) -> Result<Result<Value, String>, Stop> {
    let store = engine.shared.stores.approvals();
    let approval_id = ApprovalId::for_client_call(&job.stream_id, &call.id);
    // A streamed answer recorded the call before sending it; an unstreamed one sends
    // nothing, so records it now.
    let seq = job.seq.load(std::sync::atomic::Ordering::Acquire);
    if !job.streamed && !record(engine, job, seq, &call.id, &call.name, &call.arguments).await {
        return Ok(Err("not run: the call could not be recorded".into()));
    }
    let waiting = match store.approval(&approval_id).await {
        Ok(Some(record)) => record.request,
        Ok(None) => return Ok(Err("not run: the call could not be recorded".into())),
        Err(e) => {
            tracing::warn!(error = %e, %approval_id, "could not read a client tool call");
            return Ok(Err("not run: the call could not be recorded".into()));
        }
    };
    metrics::counter!("marie_client_tool_calls_total").increment(1);
    let timeout = Duration::from_millis(waiting.expires_at.saturating_sub(now_millis()));
    job.approvals.set(Some(waiting));
    let waited = approval::wait(engine, job, &approval_id, timeout).await;
    job.approvals.set(None);
    let decision = match waited {
        Ok(decision) => decision,
        Err(stop) => return Err(stop),
    };
    Ok(
        match (decision.approved, decision.output, decision.decided_by) {
            (true, output, _) => Ok(output.unwrap_or(Value::Null)),
            (false, _, None) => Err("no client answered the call in time".into()),
            (false, _, Some(_)) => Err(decision
                .reason
                .unwrap_or_else(|| "the client tool failed".into())),
        },
    )
}

/// Forgets every client call the answer recorded (its step failed and is asked again, or
/// the answer is over): a result that comes after is `not_found`.
pub(super) async fn forget(engine: &ChatEngine, job: &AnswerJob) {
    let recorded = std::mem::take(&mut *job.client_calls());
    let store = engine.shared.stores.approvals();
    for approval_id in recorded {
        if let Err(e) = store.remove_approval(&approval_id).await {
            tracing::warn!(error = %e, %approval_id, "could not remove a client tool call");
        }
    }
}
