//! The events of an answer's tool calls and approvals (`docs/protocol.md`, "Parts"), each
//! numbered in the answer's one `seq` sequence, logged and resumed like its chunks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ApprovalId, ConversationId, StreamId, UserId};

/// `tool_call_start`: the model began a tool call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallStart {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// The call's id, as the model named it.
    pub tool_call_id: String,
    /// The tool called.
    pub name: String,
    /// `true` when the tool is one the client runs (`docs/protocol.md` section 11).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client: bool,
}

/// `tool_call_delta`: more of a call's arguments, as JSON text the model writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// The call.
    pub tool_call_id: String,
    /// The next piece of the arguments' JSON text (not valid JSON by itself).
    pub delta: String,
}

/// `tool_call`: a complete call, with its arguments parsed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallReady {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// The call.
    pub tool_call_id: String,
    /// The tool called.
    pub name: String,
    /// The arguments: a JSON object.
    pub arguments: Value,
    /// `true` when the tool is one the client runs: the answer waits for a member's
    /// `submit_tool_result` (`docs/protocol.md` section 11).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client: bool,
}

/// `tool_approval_request`: the answer waits for a member to approve or deny a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolApprovalRequest {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// What `approve_tool` names.
    pub approval_id: ApprovalId,
    /// The call waiting.
    pub tool_call_id: String,
    /// The tool.
    pub name: String,
    /// The call's arguments.
    pub arguments: Value,
    /// Milliseconds since the Unix epoch when the request lapses as a denial.
    pub expires_at: u64,
    /// Set only in the store's record of a client tool's call, which waits like an approval
    /// but is never sent as `tool_approval_request` ([`PendingToolCall`] is what members see).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub client: bool,
}

impl ToolApprovalRequest {
    /// Of a client tool's call: what `joined.active_stream.pending_tool_call` shows.
    pub fn pending_tool_call(&self) -> Option<PendingToolCall> {
        self.client.then(|| PendingToolCall {
            tool_call_id: self.tool_call_id.clone(),
            name: self.name.clone(),
            arguments: self.arguments.clone(),
            expires_at: self.expires_at,
        })
    }
}

/// A client tool's call waiting for its result (`joined.active_stream.pending_tool_call`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingToolCall {
    /// What `submit_tool_result` names.
    pub tool_call_id: String,
    /// The client tool.
    pub name: String,
    /// The call's arguments.
    pub arguments: Value,
    /// Milliseconds since the Unix epoch when the call lapses as an error.
    pub expires_at: u64,
}

/// `tool_approval`: the decision on a call; the first one made, cluster-wide.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolApproval {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// The request decided.
    pub approval_id: ApprovalId,
    /// Whether the call may run.
    pub approved: bool,
    /// Who decided; `null` when nobody did (the request expired).
    pub decided_by: Option<UserId>,
    /// The decider's reason, or `"expired"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `tool_result`: what a call returned, or why it has no result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolResult {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// The call.
    pub tool_call_id: String,
    /// The tool.
    pub name: String,
    /// The tool's output, when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why there is no output: the tool failed, timed out, panicked, its arguments did not
    /// fit its schema, or the call was denied. The model is told this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How long the call ran (0 when it did not run).
    pub duration_ms: u64,
}
