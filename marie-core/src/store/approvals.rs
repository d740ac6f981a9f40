//! [`Approvals`]: tool calls waiting for a member's decision, and the records a store keeps
//! of them, so that any member on any node can decide one exactly once (`docs/protocol.md`,
//! section 6). A client tool's call waits the same way for its result (section 11): its
//! record's request is marked [`client`](crate::ToolApprovalRequest::client) and its decision
//! carries the output.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ApprovalId, ConversationId, StoreError, ToolApprovalRequest, UserId};

/// Tool-call approvals, decided once cluster-wide.
///
/// A tool call that needs a member's approval is recorded ([`create_approval`](Self::create_approval))
/// before its request is sent; any node may then decide it, and
/// [`decide_approval`](Self::decide_approval) lets exactly one decision win, cluster-wide.
/// A record is kept at least [`APPROVAL_RETENTION`] past its expiry (a late `approve_tool`
/// is told `conflict`, not `not_found`), and removed when its answer ends without a
/// decision.
#[async_trait]
pub trait Approvals: Send + Sync + 'static {
    /// Records a pending approval (its `decision` is `None`); it is its conversation's
    /// pending approval until decided or removed.
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError>;

    /// Reads an approval, decided or not.
    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Decides an approval, atomically: the first decision wins, later ones change nothing.
    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError>;

    /// The approval of `conversation` waiting for a decision, if any.
    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError>;

    /// Forgets an approval whose answer ended before it was decided.
    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError>;
}

#[async_trait]
impl<T: Approvals + ?Sized> Approvals for std::sync::Arc<T> {
    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        (**self).create_approval(approval).await
    }
    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        (**self).approval(approval).await
    }
    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        (**self).decide_approval(approval, decision).await
    }
    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        (**self).pending_approval(conversation).await
    }
    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        (**self).remove_approval(approval).await
    }
}

/// How long a store keeps an approval past its expiry, so that a late `approve_tool` is
/// told `conflict` rather than `not_found`.
pub const APPROVAL_RETENTION: Duration = Duration::from_secs(60 * 60);

impl ApprovalRecord {
    /// Milliseconds since the Unix epoch after which a store may forget the record.
    pub fn keep_until(&self) -> u64 {
        self.request
            .expires_at
            .saturating_add(APPROVAL_RETENTION.as_millis() as u64)
    }
}

/// A decision on a tool call: a member's approval or denial, or, of a client tool's call
/// (`docs/protocol.md` section 11), the result a member submitted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Whether the call may run; of a client tool's call, whether it succeeded (`output`),
    /// or failed (`reason` says why).
    pub approved: bool,
    /// Who decided; `None` when the request expired.
    pub decided_by: Option<UserId>,
    /// The decider's reason, or `"expired"`.
    pub reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub decided_at: u64,
    /// Of a client tool's call that succeeded: its output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
}

impl ApprovalDecision {
    /// The denial of a request nobody decided in time.
    pub fn expired() -> Self {
        Self {
            approved: false,
            decided_by: None,
            reason: Some("expired".into()),
            decided_at: crate::now_millis(),
            output: None,
        }
    }
}

/// A tool call waiting for a decision, or decided, as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// The request as it was sent (its conversation, answer, call and expiry).
    pub request: ToolApprovalRequest,
    /// The decision, once there is one.
    pub decision: Option<ApprovalDecision>,
}

/// The outcome of [`Approvals::decide_approval`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// This decision was the first: the record, decided.
    Decided(ApprovalRecord),
    /// Another decision came first: the record with that one.
    AlreadyDecided(ApprovalRecord),
    /// No such approval (unknown, or its answer has ended).
    NotFound,
}
