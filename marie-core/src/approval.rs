//! Approvals of tool calls: what a store keeps of one, so that any member on any node can
//! decide it exactly once (`docs/protocol.md`, "Parts").

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{ToolApprovalRequest, UserId};

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

/// A decision on a tool call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Whether the call may run.
    pub approved: bool,
    /// Who decided; `None` when the request expired.
    pub decided_by: Option<UserId>,
    /// The decider's reason, or `"expired"`.
    pub reason: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub decided_at: u64,
}

impl ApprovalDecision {
    /// The denial of a request nobody decided in time.
    pub fn expired() -> Self {
        Self {
            approved: false,
            decided_by: None,
            reason: Some("expired".into()),
            decided_at: crate::now_millis(),
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

/// The outcome of [`RoomStore::decide_approval`](crate::RoomStore::decide_approval).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApprovalOutcome {
    /// This decision was the first: the record, decided.
    Decided(ApprovalRecord),
    /// Another decision came first: the record with that one.
    AlreadyDecided(ApprovalRecord),
    /// No such approval (unknown, or its answer has ended).
    NotFound,
}
