//! [`Approvals`] in memory.

use std::collections::HashMap;

use async_trait::async_trait;
use marie_core::{
    ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, Approvals, ConversationId,
    StoreError, now_millis,
};

use super::{MemoryStore, lock};

/// Every approval kept, and the one each conversation waits for.
#[derive(Debug, Default)]
pub(super) struct Pending {
    approvals: HashMap<ApprovalId, ApprovalRecord>,
    /// The approval each conversation waits for.
    waiting: HashMap<ConversationId, ApprovalId>,
}

impl Pending {
    /// Forgets approvals kept long enough (see [`ApprovalRecord::keep_until`]).
    fn prune(&mut self) {
        let now = now_millis();
        self.approvals.retain(|_, a| a.keep_until() > now);
        let approvals = &self.approvals;
        self.waiting.retain(|_, id| approvals.contains_key(id));
    }

    /// `approval` no longer waits in `conversation`.
    fn done(&mut self, conversation: &ConversationId, approval: &ApprovalId) {
        if self.waiting.get(conversation) == Some(approval) {
            self.waiting.remove(conversation);
        }
    }
}

#[async_trait]
impl Approvals for MemoryStore {
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        let mut pending = lock(&self.tables.approvals);
        pending.prune();
        let request = &approval.request;
        if approval.decision.is_none() {
            pending
                .waiting
                .insert(request.conversation_id.clone(), request.approval_id.clone());
        }
        pending
            .approvals
            .insert(request.approval_id.clone(), approval.clone());
        Ok(())
    }

    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        Ok(lock(&self.tables.approvals)
            .approvals
            .get(approval)
            .cloned())
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        let mut pending = lock(&self.tables.approvals);
        let Some(record) = pending.approvals.get_mut(approval) else {
            return Ok(ApprovalOutcome::NotFound);
        };
        if record.decision.is_some() {
            return Ok(ApprovalOutcome::AlreadyDecided(record.clone()));
        }
        record.decision = Some(decision.clone());
        let decided = record.clone();
        pending.done(&decided.request.conversation_id, approval);
        Ok(ApprovalOutcome::Decided(decided))
    }

    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        let pending = lock(&self.tables.approvals);
        Ok(pending
            .waiting
            .get(conversation)
            .and_then(|id| pending.approvals.get(id))
            .filter(|a| a.decision.is_none())
            .cloned())
    }

    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        let mut pending = lock(&self.tables.approvals);
        if let Some(record) = pending.approvals.remove(approval) {
            pending.done(&record.request.conversation_id, approval);
        }
        Ok(())
    }
}
