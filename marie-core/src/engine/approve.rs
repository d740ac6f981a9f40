//! `approve_tool`: a member's decision on a tool call that waits for one, from any
//! connection on any node. The store lets the first decision win; the node that runs the
//! answer is woken (at once on this node, over the control bus on another) and sends the
//! decision to the room as `tool_approval`, numbered in the answer's sequence.

use super::ChatEngine;
use crate::{
    ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, ControlMessage, ConversationId,
    Error, Identity, now_millis,
};

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
        if conversation.is_some_and(|c| *c != request.conversation_id) {
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
