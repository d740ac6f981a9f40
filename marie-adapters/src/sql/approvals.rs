//! Approvals of tool calls (`marie_approvals`): one row per approval, its `decision` NULL
//! while it waits. Deciding is one `UPDATE .. WHERE decision IS NULL`, so the first
//! decision wins; a conversation's pending approval is its newest undecided row. Rows past
//! `keep_until` read as absent and are swept when approvals are created.

use async_trait::async_trait;
use marie_core::{
    ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, Approvals, ConversationId,
    StoreError, ToolApprovalRequest, now_millis,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Fault, SqlStore, from_json, to_db, to_json};

impl SqlStore {
    pub(super) async fn put_approval(&self, approval: &ApprovalRecord) -> Result<(), Fault> {
        let now = now_millis();
        sqlx::query("DELETE FROM marie_approvals WHERE keep_until <= $1")
            .bind(to_db(now))
            .execute(self.pool())
            .await?;
        let request = &approval.request;
        let decision = approval.decision.as_ref().map(to_json).transpose()?;
        sqlx::query(
            "INSERT INTO marie_approvals \
             (approval_id, conversation_id, request, decision, created_at, keep_until) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (approval_id) DO UPDATE SET \
             conversation_id = excluded.conversation_id, request = excluded.request, \
             decision = excluded.decision, created_at = excluded.created_at, \
             keep_until = excluded.keep_until",
        )
        .bind(request.approval_id.as_str())
        .bind(request.conversation_id.as_str())
        .bind(to_json(request)?)
        .bind(decision)
        .bind(to_db(now))
        .bind(to_db(approval.keep_until()))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub(super) async fn read_approval(
        &self,
        approval: &ApprovalId,
    ) -> Result<Option<ApprovalRecord>, Fault> {
        let row = sqlx::query(
            "SELECT request, decision FROM marie_approvals \
             WHERE approval_id = $1 AND keep_until > $2",
        )
        .bind(approval.as_str())
        .bind(to_db(now_millis()))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub(super) async fn decide(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, Fault> {
        let now = to_db(now_millis());
        let decided: Option<String> = sqlx::query_scalar(
            "UPDATE marie_approvals SET decision = $2 \
             WHERE approval_id = $1 AND decision IS NULL AND keep_until > $3 RETURNING request",
        )
        .bind(approval.as_str())
        .bind(to_json(decision)?)
        .bind(now)
        .fetch_optional(self.pool())
        .await?;
        if let Some(request) = decided {
            return Ok(ApprovalOutcome::Decided(ApprovalRecord {
                request: from_json(&request)?,
                decision: Some(decision.clone()),
            }));
        }
        match self.read_approval(approval).await? {
            Some(first) if first.decision.is_some() => Ok(ApprovalOutcome::AlreadyDecided(first)),
            _ => Ok(ApprovalOutcome::NotFound),
        }
    }

    pub(super) async fn pending(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, Fault> {
        let row = sqlx::query(
            "SELECT request, decision FROM marie_approvals \
             WHERE conversation_id = $1 AND decision IS NULL AND keep_until > $2 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(conversation.as_str())
        .bind(to_db(now_millis()))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub(super) async fn forget_approval(&self, approval: &ApprovalId) -> Result<(), Fault> {
        sqlx::query("DELETE FROM marie_approvals WHERE approval_id = $1")
            .bind(approval.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// An approval from its `request` and `decision` columns.
fn record(row: &AnyRow) -> Result<ApprovalRecord, Fault> {
    let request: String = row.try_get(0)?;
    let decision: Option<String> = row.try_get(1)?;
    Ok(ApprovalRecord {
        request: from_json::<ToolApprovalRequest>(&request)?,
        decision: decision.as_deref().map(from_json).transpose()?,
    })
}

#[async_trait]
impl Approvals for SqlStore {
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        self.run("create_approval", || self.put_approval(approval))
            .await
    }

    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        self.run("approval", || self.read_approval(approval)).await
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        self.run("decide_approval", || self.decide(approval, decision))
            .await
    }

    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.run("pending_approval", || self.pending(conversation))
            .await
    }

    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        self.run("remove_approval", || self.forget_approval(approval))
            .await
    }
}
