//! `approve_tool`: a member's decision on a tool call that waits for one, from any
//! connection on any node; and `submit_tool_result`, the result of a client tool's call,
//! which waits the same way. The store lets the first decision win; the node that runs the
//! answer is woken (at once on this node, over the control bus on another) and sends the
//! decision to the room as `tool_approval`, numbered in the answer's sequence.

use super::ChatEngine;
use crate::{
    ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, ControlMessage, ConversationId,
    Error, Identity, StreamId, now_millis,
};

/// What an answer waited for: an approval, or a client tool's call.
#[derive(Clone, Copy, Debug)]
pub enum Waited<'a> {
    /// The approval of this id.
    Approval(&'a ApprovalId),
    /// The client tool's call of this id.
    ClientCall(&'a str),
}

/// The longest reason a decider may give, in bytes.
pub(super) const MAX_REASON_BYTES: usize = 1000;

impl ChatEngine {
    /// `approve_tool` (and `POST /api/chat/approvals/{id}`): decides the approval
    /// `approval_id` for `who`, who must have access to its conversation (and, when
    /// `conversation` is given, it must be that one). Returns the decided record.
    ///
    /// `not_found` for an unknown approval or one whose answer has ended; `conflict` when
    /// another decision came first (or the request expired).
    pub async fn approve(
        &self,
        who: &Identity,
        conversation: Option<&ConversationId>,
        approval_id: &ApprovalId,
        approved: bool,
        reason: Option<String>,
    ) -> Result<ApprovalRecord, Error> {
        if reason.as_ref().is_some_and(|r| r.len() > MAX_REASON_BYTES) {
            return Err(Error::PayloadTooLarge(format!(
                "reason is longer than {MAX_REASON_BYTES} bytes"
            )));
        }
        let store = self.shared.stores.approvals();
        let record = store
            .approval(approval_id)
            .await?
            .ok_or(Error::NotFound("no such approval"))?;
        let request = &record.request;
        // A client tool's call is answered with `submit_tool_result`, not approved.
        if request.client || conversation.is_some_and(|c| *c != request.conversation_id) {
            return Err(Error::NotFound("no such approval in this conversation"));
        }
        // Access first: someone without it learns nothing of the approval's state.
        self.authorize(who, &request.conversation_id).await?;
        if record.decision.is_some() {
            return Err(Error::Conflict("this tool call was already decided"));
        }
        let decision = ApprovalDecision {
            approved,
            decided_by: Some(who.user_id.clone()),
            reason: reason.filter(|r| !r.trim().is_empty()),
            decided_at: now_millis(),
            output: None,
        };
        let decided = match store.decide_approval(approval_id, &decision).await? {
            ApprovalOutcome::Decided(record) => record,
            ApprovalOutcome::AlreadyDecided(_) => {
                return Err(Error::Conflict("this tool call was already decided"));
            }
            ApprovalOutcome::NotFound => return Err(Error::NotFound("no such approval")),
        };
        self.wake_answer(&decided).await;
        Ok(decided)
    }

    /// `submit_tool_result` (`docs/protocol.md` section 11): the result of the client tool's
    /// call `tool_call_id` that the answer running in `conversation` waits for, from a member
    /// (`who` must have access). `Ok(output)` or `Err(error text)`, told to the model.
    ///
    /// `not_found` when no answer runs there or it waits for no such call; `conflict` when
    /// another result came first (or the call expired).
    pub async fn submit_tool_result(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        tool_call_id: &str,
        result: Result<serde_json::Value, String>,
    ) -> Result<(), Error> {
        if let Err(error) = &result
            && error.len() > MAX_REASON_BYTES
        {
            return Err(Error::PayloadTooLarge(format!(
                "error is longer than {MAX_REASON_BYTES} bytes"
            )));
        }
        self.authorize(who, conversation).await?;
        let running = self
            .running_answer(conversation)
            .await?
            .ok_or(Error::NotFound("no answer is running in this conversation"))?;
        let call = ApprovalId::for_client_call(&running.stream_id, tool_call_id);
        let store = self.shared.stores.approvals();
        let waiting = store.approval(&call).await?;
        if waiting.as_ref().is_none_or(|r| !r.request.client) {
            return Err(Error::NotFound("no client tool call with this id"));
        }
        let (approved, reason, output) = match result {
            Ok(output) => (true, None, Some(output)),
            Err(error) => (false, Some(error), None),
        };
        let decision = ApprovalDecision {
            approved,
            decided_by: Some(who.user_id.clone()),
            reason,
            decided_at: now_millis(),
            output,
        };
        match store.decide_approval(&call, &decision).await? {
            ApprovalOutcome::Decided(record) => {
                self.wake_answer(&record).await;
                Ok(())
            }
            ApprovalOutcome::AlreadyDecided(_) => Err(Error::Conflict(
                "this tool call already has its result (or it expired)",
            )),
            ApprovalOutcome::NotFound => Err(Error::NotFound("no client tool call with this id")),
        }
    }

    /// Where answer `stream` asked for `waited`: the `seq` of its `tool_approval_request`, or
    /// of the client tool's `tool_call`. A front end whose client answered it follows the
    /// answer from there (the AI SDK's and AG-UI's continuations). `None` when the store has
    /// no such record (unknown, or the answer is over).
    pub async fn waited_at(
        &self,
        stream: &StreamId,
        waited: Waited<'_>,
    ) -> Result<Option<u64>, Error> {
        let id = match waited {
            Waited::Approval(id) => id.clone(),
            Waited::ClientCall(tool_call_id) => ApprovalId::for_client_call(stream, tool_call_id),
        };
        let record = self.shared.stores.approvals().approval(&id).await?;
        Ok(record
            .filter(|r| r.request.stream_id == *stream)
            .map(|r| r.request.seq))
    }

    /// Wakes the answer that waits for `decided`: on this node directly, elsewhere over the
    /// control bus. A lost wake-up only delays the answer: it looks at the store by itself.
    async fn wake_answer(&self, decided: &ApprovalRecord) {
        let request = &decided.request;
        let here =
            self.with_local_answer(&request.conversation_id, &request.stream_id, |running| {
                running.approvals.wake();
            });
        if here {
            return;
        }
        let message = ControlMessage::ApprovalDecided {
            conversation_id: request.conversation_id.clone(),
            stream_id: request.stream_id.clone(),
        };
        if let Err(e) = self.shared.bus.publish(message).await {
            tracing::warn!(error = %e, approval_id = %request.approval_id, "could not announce a decision; the answer will find it in the store");
        }
    }
}
