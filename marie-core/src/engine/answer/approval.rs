//! A tool call that needs approval: recorded in the store, requested in the answer's stream,
//! then waited for until a member decides (on any node), it expires, or the answer stops.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use super::{AnswerJob, ChatEngine, Stop, burst};
use crate::{
    ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, StreamEvent, ToolApproval,
    ToolApprovalRequest, ToolCall, now_millis,
};

/// How often a waiting answer looks at the store by itself: a decision made on another node
/// wakes it over the control bus, which may lose a message.
const POLL: Duration = Duration::from_secs(1);

/// What an answer shares with the engine about its approvals: the request waiting (for
/// `joined.active_stream.pending_approval`, or `pending_tool_call` of a client tool's call)
/// and the wake-up of a decision.
#[derive(Debug, Default)]
pub(crate) struct Approvals {
    pending: Mutex<Option<ToolApprovalRequest>>,
    decided: Notify,
}

impl Approvals {
    /// The request the answer waits on, if any.
    pub(crate) fn pending(&self) -> Option<ToolApprovalRequest> {
        self.lock().clone()
    }

    /// A decision was made: the answer looks at the store now.
    pub(crate) fn wake(&self) {
        // `notify_one` keeps a permit when the answer is not waiting yet, so a decision made
        // between its look at the store and its wait is not missed.
        self.decided.notify_one();
    }

    pub(super) fn set(&self, request: Option<ToolApprovalRequest>) {
        *self.lock() = request;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ToolApprovalRequest>> {
        // Only ever replaced whole: a poisoned lock still holds a consistent value.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Asks the members to approve `call` and waits. `Ok(Ok(()))`: approved; `Ok(Err(why))`:
/// denied, expired, or the request could not be recorded, with what the model is told;
/// `Err`: the answer was stopped meanwhile.
pub(super) async fn ask(
    engine: &ChatEngine,
    job: &AnswerJob,
    call: &ToolCall,
) -> Result<Result<(), String>, Stop> {
    let store = engine.shared.stores.approvals();
    let timeout = engine.shared.config.approval_timeout;
    let request = ToolApprovalRequest {
        conversation_id: job.conversation_id.clone(),
        stream_id: job.stream_id.clone(),
        seq: burst::next_seq(job),
        approval_id: ApprovalId::random(),
        tool_call_id: call.id.clone(),
        name: call.name.clone(),
        arguments: call.arguments.clone(),
        expires_at: now_millis()
            .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        client: false,
    };
    let record = ApprovalRecord {
        request: request.clone(),
        decision: None,
    };
    if let Err(e) = store.create_approval(&record).await {
        tracing::warn!(error = %e, stream_id = %job.stream_id, "could not record an approval");
        return Ok(Err("not run: its approval could not be recorded".into()));
    }
    metrics::counter!("marie_tool_approvals_total", "outcome" => "requested").increment(1);
    job.approvals.set(Some(request.clone()));
    let approval_id = request.approval_id.clone();
    burst::send_one(engine, job, |_| StreamEvent::ApprovalRequest(request)).await;

    let waited = wait(engine, job, &approval_id, timeout).await;
    job.approvals.set(None);
    let decision = match waited {
        Ok(decision) => decision,
        Err(stop) => {
            // Nobody may decide for an answer that is over: a late decision is `not_found`.
            if let Err(e) = store.remove_approval(&approval_id).await {
                tracing::warn!(error = %e, %approval_id, "could not remove an approval");
            }
            return Err(stop);
        }
    };
    let outcome = match (&decision.approved, &decision.decided_by) {
        (true, _) => "approved",
        (false, Some(_)) => "denied",
        (false, None) => "expired",
    };
    metrics::counter!("marie_tool_approvals_total", "outcome" => outcome).increment(1);
    let verdict = if decision.approved {
        Ok(())
    } else {
        Err(denial(&decision))
    };
    burst::send_one(engine, job, |seq| {
        StreamEvent::Approval(ToolApproval {
            conversation_id: job.conversation_id.clone(),
            stream_id: job.stream_id.clone(),
            seq,
            approval_id,
            approved: decision.approved,
            decided_by: decision.decided_by,
            reason: decision.reason,
        })
    })
    .await;
    Ok(verdict)
}

/// What the model is told of a call that was not approved.
fn denial(decision: &ApprovalDecision) -> String {
    match (&decision.decided_by, &decision.reason) {
        (None, _) => "not run: nobody approved the call in time".into(),
        (Some(who), Some(reason)) => format!("not run: {who} denied the call: {reason}"),
        (Some(who), None) => format!("not run: {who} denied the call"),
    }
}

/// Waits for the decision on `approval_id`: a member's, or the expiry's (also the result of
/// a client tool's call, `client.rs`).
pub(super) async fn wait(
    engine: &ChatEngine,
    job: &AnswerJob,
    approval_id: &ApprovalId,
    timeout: Duration,
) -> Result<ApprovalDecision, Stop> {
    let store = engine.shared.stores.approvals();
    let expires = tokio::time::Instant::now() + timeout;
    let mut failing = false;
    loop {
        match store.approval(approval_id).await {
            Ok(Some(ApprovalRecord {
                decision: Some(decision),
                ..
            })) => return Ok(decision),
            Ok(Some(_)) => failing = false,
            // Gone from the store (lost with it): nobody can decide it any more.
            Ok(None) => return Ok(ApprovalDecision::expired()),
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, %approval_id, "could not read an approval; retrying");
                }
                failing = true;
            }
        }
        if tokio::time::Instant::now() >= expires {
            // Expiry is a decision too, taken the same way: a member who decides at this very
            // moment either wins or is told `conflict`.
            return Ok(
                match store
                    .decide_approval(approval_id, &ApprovalDecision::expired())
                    .await
                {
                    Ok(ApprovalOutcome::AlreadyDecided(ApprovalRecord {
                        decision: Some(decision),
                        ..
                    })) => decision,
                    _ => ApprovalDecision::expired(),
                },
            );
        }
        let interrupt = &engine.shared.interrupt;
        let look_again = (tokio::time::Instant::now() + POLL).min(expires);
        tokio::select! {
            biased;
            _ = job.cancel.cancelled() => return Err(Stop::Cancelled),
            _ = interrupt.cancelled() => return Err(Stop::Interrupted),
            () = job.approvals.decided.notified() => {}
            () = tokio::time::sleep_until(look_again) => {}
        }
    }
}
