//! [`StreamEvent`]: everything an answer sends to its conversation, as one typed value from
//! the engine to the client (`docs/protocol.md` section 3).
//!
//! Each variant holds a struct whose fields are the wire names, so serializing it gives
//! exactly the event's payload ([`StreamEvent::payload`]). The engine builds the value once;
//! the stream log, the control bus between nodes, per-client delivery, the SSE fallback and
//! resume all carry it as it is, and a front end serializes it once per payload shape.
//!
//! `StreamEvent` itself serializes adjacently tagged, `{"event": <name>, "data": <payload>}`:
//! the form a log or a bus stores and reads back.
//!
//! ## Adding an event
//!
//! A new kind of event is a struct here and a variant of [`StreamEvent`] (its name in
//! [`name`](StreamEvent::name), its `seq` in [`seq`](StreamEvent::seq) if it is numbered in the
//! answer's sequence and logged); the match arms the compiler then asks for are the only other
//! places to touch.

mod tool;

use std::borrow::Cow;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

pub use tool::{
    PendingToolCall, ToolApproval, ToolApprovalRequest, ToolCallDelta, ToolCallReady,
    ToolCallStart, ToolResult,
};

use crate::{ConversationId, ErrorCode, FinishReason, MessageId, StreamId, Usage};

/// `queued`: a send waits for the running answer (and those queued before it) to end
/// (`on_busy: "enqueue"`). Its answer will stream as `stream_id`; a queued send that is
/// cancelled ends `stream_end {status:"cancelled"}` without a `stream_start`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendQueued {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer it will get.
    pub stream_id: StreamId,
    /// The user message it will become.
    pub message_id: MessageId,
    /// Who sent it.
    pub user_id: crate::UserId,
    /// The user's text.
    pub message: String,
    /// Its place in the queue when it was queued: 1 is next.
    pub position: usize,
}

/// `stream_reset`: a model step failed after it had begun to answer, and is being asked
/// again (see [`EngineConfig::mid_stream_retries`](crate::EngineConfig::mid_stream_retries)).
/// A client drops every event of the stream after `after_seq` (the failed attempt's text,
/// reasoning and tool calls) and keeps what comes next. Numbered and logged like any part,
/// so that a resume rebuilds the same answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReset {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence.
    pub seq: u64,
    /// The last event kept: everything after it, before this one, is dropped.
    pub after_seq: u64,
    /// Which retry this is: 1 for the first.
    pub attempt: u32,
    /// Why the step is asked again (the provider's failure, safe to show).
    pub reason: String,
}

/// `message_added`: a message was stored in the conversation (a send, an edit), for every
/// member, whether or not it is answered (`docs/protocol.md` section 10). A message that is
/// answered comes before its answer's `stream_start`. It belongs to no answer: it has no
/// `seq`, and a client that sees it twice (after a resume) keeps it once, by `message_id`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAdded {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The message as `get_history` returns it.
    pub message: crate::ChatMessage,
}

/// `stream_start`: an answer began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStart {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// The id the finished assistant message will have in history.
    pub message_id: MessageId,
    /// The user message it answers (its `parent_id` in history): where a client places the
    /// answer, also when it regenerates an earlier one or comes from the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<MessageId>,
    /// The named assistant that answers, when the app declares some (`docs/protocol.md`
    /// section 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
    /// Always `"streaming"`.
    pub status: StartStatus,
}

/// `stream_start.status`: always `"streaming"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartStatus {
    /// The answer is streaming.
    #[default]
    Streaming,
}

/// `stream_chunk`: the next piece of an answer's text, or several consecutive ones merged
/// for a client that is behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamChunk {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// 1, 2, 3, ... with no gaps; of a merged chunk, the last one merged.
    pub seq: u64,
    /// Never empty.
    pub content: String,
    /// Always `false` (the seed's field; the end is `stream_end`).
    pub done: bool,
    /// Completion tokens so far.
    pub tokens_used: u64,
    /// Of a merged chunk only: the first `seq` it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
}

impl StreamChunk {
    /// The first `seq` this chunk holds: `first_seq` when merged, else `seq`.
    pub fn first(&self) -> u64 {
        self.first_seq.unwrap_or(self.seq)
    }

    /// Appends `next` when it continues this chunk (same stream, the next `seq`), making this
    /// a merged chunk; returns whether it did.
    pub fn merge(&mut self, next: &StreamChunk) -> bool {
        if self.stream_id != next.stream_id || self.seq + 1 != next.first() {
            return false;
        }
        self.first_seq = Some(self.first());
        self.content.push_str(&next.content);
        self.seq = next.seq;
        self.tokens_used = next.tokens_used;
        true
    }
}

/// `stream_reasoning`: the next piece of the model's reasoning, numbered in the same `seq`
/// sequence as the chunks; merged like chunks for a client that is behind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamReasoning {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// Its place in the answer's sequence; of a merged piece, the last one merged.
    pub seq: u64,
    /// Never empty.
    pub content: String,
    /// Of a merged piece only: the first `seq` it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
}

impl StreamReasoning {
    /// The first `seq` this piece holds: `first_seq` when merged, else `seq`.
    pub fn first(&self) -> u64 {
        self.first_seq.unwrap_or(self.seq)
    }
}

/// One part of an answer, in order (`stream_end.parts`, and a stored assistant message's
/// `parts`): consecutive deltas of one kind make one part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MessagePart {
    /// Text of the answer (what `full_content` joins).
    Text {
        /// The text.
        content: String,
    },
    /// The model's reasoning.
    Reasoning {
        /// The reasoning text.
        content: String,
        /// The provider's signature of this reasoning (Anthropic's thinking blocks), which it
        /// requires back, unchanged, with the reasoning in later requests. Opaque; absent for
        /// providers that sign nothing.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// Reasoning the provider encrypted instead of showing it (Anthropic's
    /// `redacted_thinking` blocks): no text for anyone to read, only `data`, which the
    /// provider requires back, unchanged and in its place among the reasoning parts, in later
    /// requests. A client shows at most that reasoning was redacted, never `data`.
    RedactedReasoning {
        /// The provider's opaque (encrypted) data.
        data: String,
    },
    /// A call of a tool the model made.
    ToolCall {
        /// The call's id, as the model named it.
        tool_call_id: String,
        /// The tool.
        name: String,
        /// Its arguments: a JSON object.
        arguments: Value,
    },
    /// What a call returned (`output`), or why it did not (`error`).
    ToolResult {
        /// The call.
        tool_call_id: String,
        /// The tool.
        name: String,
        /// The tool's output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Value>,
        /// Why there is no output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

impl MessagePart {
    /// Whether this part is text (a text-only answer keeps no parts).
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text { .. })
    }
}

/// How an answer ended, in `stream_end.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndStatus {
    /// The model finished.
    Complete,
    /// A user cancelled it.
    Cancelled,
    /// The server shut down first; the client may resume elsewhere.
    Interrupted,
}

impl EndStatus {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

/// `stream_end`: the answer is over and stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamEnd {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// The assistant message's id in history.
    pub message_id: MessageId,
    /// Every chunk's content, concatenated.
    pub full_content: String,
    /// How it ended.
    pub status: EndStatus,
    /// Token accounting.
    pub usage: Usage,
    /// Why the model stopped.
    pub finish_reason: FinishReason,
    /// The answer's parts in order (reasoning, text, tool calls and their results); empty,
    /// and not sent, when the answer is text only: then `full_content` is all of it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<MessagePart>,
}

/// `stream_error`: the answer failed, or (`resume_unavailable`) cannot be resumed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamFailed {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// The stable error code.
    pub code: ErrorCode,
    /// A message safe to show.
    pub error: String,
    /// Whether asking again may work.
    pub retryable: bool,
    /// The last `seq` sent before the failure (0 when none was).
    pub after_seq: u64,
}

impl StreamFailed {
    /// The `stream_error` of a resume the log cannot serve (`resume_unavailable`, or the log
    /// failing mid-read) from `after_seq`: not retryable.
    pub fn cannot_resume(
        conversation_id: ConversationId,
        stream_id: StreamId,
        error: &crate::Error,
        after_seq: u64,
    ) -> Self {
        Self {
            conversation_id,
            stream_id,
            code: error.code(),
            error: error.client_message(),
            retryable: false,
            after_seq,
        }
    }
}

/// `message_response`: a whole answer, for `send_message` with `stream:false`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageResponse {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer (the `stream_id` of the `send_message` ack).
    pub stream_id: StreamId,
    /// The assistant message's id in history.
    pub message_id: MessageId,
    /// The answer.
    pub message: String,
}

/// `error` to a room: an answer with `stream:false` failed after its request was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerFailed {
    /// The stable error code.
    pub code: ErrorCode,
    /// A message safe to show.
    pub message: String,
    /// The event whose answer failed: `"send_message"`.
    pub event: Cow<'static, str>,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer (the `stream_id` of the `send_message` ack).
    pub stream_id: StreamId,
}

/// Everything an answer sends to the members of its conversation, in order: one value per
/// event, from the engine to each client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
#[non_exhaustive]
pub enum StreamEvent {
    /// `message_added`: a message was stored (not numbered, and of no answer).
    #[serde(rename = "message_added")]
    MessageAdded(MessageAdded),
    /// `queued`: a send waits its turn (not numbered: it comes before its answer starts).
    #[serde(rename = "queued")]
    Queued(SendQueued),
    /// `stream_start`
    #[serde(rename = "stream_start")]
    Start(StreamStart),
    /// `stream_chunk`
    #[serde(rename = "stream_chunk")]
    Chunk(StreamChunk),
    /// `stream_reasoning`
    #[serde(rename = "stream_reasoning")]
    Reasoning(StreamReasoning),
    /// `tool_call_start`
    #[serde(rename = "tool_call_start")]
    ToolCallStart(ToolCallStart),
    /// `tool_call_delta`
    #[serde(rename = "tool_call_delta")]
    ToolCallDelta(ToolCallDelta),
    /// `tool_call`
    #[serde(rename = "tool_call")]
    ToolCall(ToolCallReady),
    /// `tool_approval_request`
    #[serde(rename = "tool_approval_request")]
    ApprovalRequest(ToolApprovalRequest),
    /// `tool_approval`
    #[serde(rename = "tool_approval")]
    Approval(ToolApproval),
    /// `tool_result`
    #[serde(rename = "tool_result")]
    ToolResult(ToolResult),
    /// `stream_reset`: a failed model step is asked again; its events are dropped.
    #[serde(rename = "stream_reset")]
    Reset(StreamReset),
    /// `stream_end`
    #[serde(rename = "stream_end")]
    End(StreamEnd),
    /// `stream_error`
    #[serde(rename = "stream_error")]
    Error(StreamFailed),
    /// `message_response`: the end of an answer that was not streamed.
    #[serde(rename = "message_response")]
    Response(MessageResponse),
    /// `error`: the failure of an answer that was not streamed.
    #[serde(rename = "error")]
    Failed(AnswerFailed),
}

impl StreamEvent {
    /// The Socket.IO event name (and the SSE `event:`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::MessageAdded(_) => "message_added",
            Self::Queued(_) => "queued",
            Self::Start(_) => "stream_start",
            Self::Chunk(_) => "stream_chunk",
            Self::Reasoning(_) => "stream_reasoning",
            Self::ToolCallStart(_) => "tool_call_start",
            Self::ToolCallDelta(_) => "tool_call_delta",
            Self::ToolCall(_) => "tool_call",
            Self::ApprovalRequest(_) => "tool_approval_request",
            Self::Approval(_) => "tool_approval",
            Self::ToolResult(_) => "tool_result",
            Self::Reset(_) => "stream_reset",
            Self::End(_) => "stream_end",
            Self::Error(_) => "stream_error",
            Self::Response(_) => "message_response",
            Self::Failed(_) => "error",
        }
    }

    /// The conversation the event goes to.
    pub fn conversation_id(&self) -> &ConversationId {
        match self {
            Self::MessageAdded(e) => &e.conversation_id,
            Self::Queued(e) => &e.conversation_id,
            Self::Start(e) => &e.conversation_id,
            Self::Chunk(e) => &e.conversation_id,
            Self::Reasoning(e) => &e.conversation_id,
            Self::ToolCallStart(e) => &e.conversation_id,
            Self::ToolCallDelta(e) => &e.conversation_id,
            Self::ToolCall(e) => &e.conversation_id,
            Self::ApprovalRequest(e) => &e.conversation_id,
            Self::Approval(e) => &e.conversation_id,
            Self::ToolResult(e) => &e.conversation_id,
            Self::Reset(e) => &e.conversation_id,
            Self::End(e) => &e.conversation_id,
            Self::Error(e) => &e.conversation_id,
            Self::Response(e) => &e.conversation_id,
            Self::Failed(e) => &e.conversation_id,
        }
    }

    /// The answer the event belongs to; `None` for `message_added`, which belongs to none.
    pub fn stream_id(&self) -> Option<&StreamId> {
        Some(match self {
            Self::MessageAdded(_) => return None,
            Self::Queued(e) => &e.stream_id,
            Self::Start(e) => &e.stream_id,
            Self::Chunk(e) => &e.stream_id,
            Self::Reasoning(e) => &e.stream_id,
            Self::ToolCallStart(e) => &e.stream_id,
            Self::ToolCallDelta(e) => &e.stream_id,
            Self::ToolCall(e) => &e.stream_id,
            Self::ApprovalRequest(e) => &e.stream_id,
            Self::Approval(e) => &e.stream_id,
            Self::ToolResult(e) => &e.stream_id,
            Self::Reset(e) => &e.stream_id,
            Self::End(e) => &e.stream_id,
            Self::Error(e) => &e.stream_id,
            Self::Response(e) => &e.stream_id,
            Self::Failed(e) => &e.stream_id,
        })
    }

    /// The event's place in its answer's sequence, for the events that have one: they are
    /// logged, resumed and deduplicated by it.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Chunk(c) => Some(c.seq),
            Self::Reasoning(r) => Some(r.seq),
            Self::ToolCallStart(e) => Some(e.seq),
            Self::ToolCallDelta(e) => Some(e.seq),
            Self::ToolCall(e) => Some(e.seq),
            Self::ApprovalRequest(e) => Some(e.seq),
            Self::Approval(e) => Some(e.seq),
            Self::ToolResult(e) => Some(e.seq),
            Self::Reset(e) => Some(e.seq),
            _ => None,
        }
    }

    /// The first position the event holds: `first_seq` of a merged piece, else its `seq`.
    pub fn first_seq(&self) -> Option<u64> {
        match self {
            Self::Chunk(c) => Some(c.first()),
            Self::Reasoning(r) => Some(r.first()),
            other => other.seq(),
        }
    }

    /// Whether consecutive events of this kind may be sent merged to a client that is
    /// behind (chunks, reasoning).
    pub fn is_mergeable(&self) -> bool {
        matches!(self, Self::Chunk(_) | Self::Reasoning(_))
    }

    /// Whether `next` continues this event: the same kind of mergeable piece, the same
    /// stream, the next position.
    pub fn can_merge(&self, next: &StreamEvent) -> bool {
        let same_kind = matches!(
            (self, next),
            (Self::Chunk(_), Self::Chunk(_)) | (Self::Reasoning(_), Self::Reasoning(_))
        );
        same_kind
            && self.stream_id() == next.stream_id()
            && self
                .seq()
                .zip(next.first_seq())
                .is_some_and(|(last, first)| last + 1 == first)
    }

    /// Appends `next` when it continues this event ([`can_merge`](Self::can_merge)), making
    /// this a merged piece; returns whether it did.
    pub fn merge(&mut self, next: &StreamEvent) -> bool {
        if !self.can_merge(next) {
            return false;
        }
        match (self, next) {
            (Self::Chunk(this), Self::Chunk(next)) => this.merge(next),
            (Self::Reasoning(this), Self::Reasoning(next)) => {
                this.first_seq = Some(this.first());
                this.content.push_str(&next.content);
                this.seq = next.seq;
                true
            }
            _ => false,
        }
    }

    /// Whether this event ends its answer: exactly one does.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::End(_) | Self::Error(_) | Self::Response(_) | Self::Failed(_)
        )
    }

    /// The payload alone, as a client receives it (`data:` over SSE).
    pub fn payload(&self) -> Payload<'_> {
        Payload(self)
    }
}

/// A [`StreamEvent`]'s payload: serializes to the event's wire payload, without the tag.
#[derive(Clone, Copy, Debug)]
pub struct Payload<'a>(&'a StreamEvent);

impl Serialize for Payload<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            StreamEvent::MessageAdded(e) => e.serialize(serializer),
            StreamEvent::Queued(e) => e.serialize(serializer),
            StreamEvent::Start(e) => e.serialize(serializer),
            StreamEvent::Chunk(e) => e.serialize(serializer),
            StreamEvent::Reasoning(e) => e.serialize(serializer),
            StreamEvent::ToolCallStart(e) => e.serialize(serializer),
            StreamEvent::ToolCallDelta(e) => e.serialize(serializer),
            StreamEvent::ToolCall(e) => e.serialize(serializer),
            StreamEvent::ApprovalRequest(e) => e.serialize(serializer),
            StreamEvent::Approval(e) => e.serialize(serializer),
            StreamEvent::ToolResult(e) => e.serialize(serializer),
            StreamEvent::Reset(e) => e.serialize(serializer),
            StreamEvent::End(e) => e.serialize(serializer),
            StreamEvent::Error(e) => e.serialize(serializer),
            StreamEvent::Response(e) => e.serialize(serializer),
            StreamEvent::Failed(e) => e.serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids() -> (ConversationId, StreamId, MessageId) {
        (
            ConversationId::parse("c").unwrap(),
            StreamId::parse("s").unwrap(),
            MessageId::parse("m").unwrap(),
        )
    }

    fn chunk(seq: u64, content: &str) -> StreamChunk {
        let (conversation_id, stream_id, _) = ids();
        StreamChunk {
            conversation_id,
            stream_id,
            seq,
            content: content.into(),
            done: false,
            tokens_used: seq,
            first_seq: None,
        }
    }

    /// The payloads are exactly those of docs/protocol.md section 3.
    #[test]
    fn payloads_are_the_wire_payloads() {
        let (conversation_id, stream_id, message_id) = ids();
        let cases = [
            (
                StreamEvent::Start(StreamStart {
                    assistant: None,
                    conversation_id: conversation_id.clone(),
                    stream_id: stream_id.clone(),
                    message_id: message_id.clone(),
                    parent_id: Some(MessageId::parse("q").unwrap()),
                    status: StartStatus::Streaming,
                }),
                json!({"conversation_id": "c", "stream_id": "s", "message_id": "m", "parent_id": "q", "status": "streaming"}),
            ),
            (
                StreamEvent::Chunk(chunk(3, "hi")),
                json!({"conversation_id": "c", "stream_id": "s", "seq": 3, "content": "hi", "done": false, "tokens_used": 3}),
            ),
            (
                StreamEvent::End(StreamEnd {
                    conversation_id: conversation_id.clone(),
                    stream_id: stream_id.clone(),
                    message_id: message_id.clone(),
                    full_content: "hi".into(),
                    status: EndStatus::Cancelled,
                    usage: Usage::estimated(1, 2),
                    finish_reason: FinishReason::Cancelled,
                    parts: vec![
                        MessagePart::Reasoning {
                            content: "hmm".into(),
                            signature: None,
                        },
                        MessagePart::Text {
                            content: "hi".into(),
                        },
                    ],
                }),
                json!({"conversation_id": "c", "stream_id": "s", "message_id": "m", "full_content": "hi",
                       "status": "cancelled", "finish_reason": "cancelled",
                       "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "estimated": true},
                       "parts": [{"type": "reasoning", "content": "hmm"}, {"type": "text", "content": "hi"}]}),
            ),
            (
                StreamEvent::Reasoning(StreamReasoning {
                    conversation_id: conversation_id.clone(),
                    stream_id: stream_id.clone(),
                    seq: 2,
                    content: "hmm".into(),
                    first_seq: None,
                }),
                json!({"conversation_id": "c", "stream_id": "s", "seq": 2, "content": "hmm"}),
            ),
            (
                StreamEvent::Error(StreamFailed {
                    conversation_id: conversation_id.clone(),
                    stream_id: stream_id.clone(),
                    code: ErrorCode::ProviderUnavailable,
                    error: "down".into(),
                    retryable: true,
                    after_seq: 4,
                }),
                json!({"conversation_id": "c", "stream_id": "s", "code": "provider_unavailable", "error": "down",
                       "retryable": true, "after_seq": 4}),
            ),
            (
                StreamEvent::Response(MessageResponse {
                    conversation_id: conversation_id.clone(),
                    stream_id: stream_id.clone(),
                    message_id,
                    message: "hi".into(),
                }),
                json!({"conversation_id": "c", "stream_id": "s", "message_id": "m", "message": "hi"}),
            ),
            (
                StreamEvent::Failed(AnswerFailed {
                    code: ErrorCode::Internal,
                    message: "storage is unavailable".into(),
                    event: "send_message".into(),
                    conversation_id,
                    stream_id,
                }),
                json!({"code": "internal", "message": "storage is unavailable", "event": "send_message",
                       "conversation_id": "c", "stream_id": "s"}),
            ),
        ];
        for (event, payload) in cases {
            assert_eq!(serde_json::to_value(event.payload()).unwrap(), payload);
            // Stored and read back (a log, the bus): the same value.
            let stored = serde_json::to_value(&event).unwrap();
            assert_eq!(stored, json!({"event": event.name(), "data": payload}));
            assert_eq!(
                serde_json::from_value::<StreamEvent>(stored).unwrap(),
                event
            );
        }
    }

    #[test]
    fn chunks_merge_only_when_consecutive() {
        let mut first = chunk(1, "a");
        assert!(!first.merge(&chunk(3, "c")));
        assert!(first.merge(&chunk(2, "b")));
        let mut tail = chunk(3, "c");
        assert!(tail.merge(&chunk(4, "d")));
        assert!(first.merge(&tail));
        assert_eq!(
            (first.first(), first.seq, first.content.as_str()),
            (1, 4, "abcd")
        );
        assert_eq!(
            serde_json::to_value(StreamEvent::Chunk(first).payload()).unwrap()["first_seq"],
            1
        );
    }

    /// A reasoning part carries its signature only when the provider signed it; parts stored
    /// before signatures existed read back unsigned.
    #[test]
    fn reasoning_signatures_are_optional_on_the_wire() {
        let signed = MessagePart::Reasoning {
            content: "hmm".into(),
            signature: Some("EqQBCgIYAh".into()),
        };
        let wire = json!({"type": "reasoning", "content": "hmm", "signature": "EqQBCgIYAh"});
        assert_eq!(serde_json::to_value(&signed).unwrap(), wire);
        assert_eq!(serde_json::from_value::<MessagePart>(wire).unwrap(), signed);
        let old = json!({"type": "reasoning", "content": "hmm"});
        let unsigned = serde_json::from_value::<MessagePart>(old.clone()).unwrap();
        assert_eq!(
            unsigned,
            MessagePart::Reasoning {
                content: "hmm".into(),
                signature: None
            }
        );
        assert_eq!(serde_json::to_value(&unsigned).unwrap(), old);
    }

    /// Redacted reasoning is a part of its own, `data` and nothing else; stored parts from
    /// before it existed read back as they were.
    #[test]
    fn redacted_reasoning_round_trips_and_old_parts_still_read() {
        let redacted = MessagePart::RedactedReasoning {
            data: "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP".into(),
        };
        let wire = json!({"type": "redacted_reasoning",
                          "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"});
        assert_eq!(serde_json::to_value(&redacted).unwrap(), wire);
        assert_eq!(
            serde_json::from_value::<MessagePart>(wire).unwrap(),
            redacted
        );
        assert!(!redacted.is_text());
        // A stored answer's parts from before: reasoning, signed or not, text, a call.
        let old = json!([
            {"type": "reasoning", "content": "hmm"},
            {"type": "reasoning", "content": "", "signature": "sig"},
            {"type": "text", "content": "hi"},
            {"type": "tool_call", "tool_call_id": "t1", "name": "calc", "arguments": {}}
        ]);
        let parts = serde_json::from_value::<Vec<MessagePart>>(old.clone()).unwrap();
        assert_eq!(
            parts[..2],
            [
                MessagePart::Reasoning {
                    content: "hmm".into(),
                    signature: None
                },
                MessagePart::Reasoning {
                    content: String::new(),
                    signature: Some("sig".into())
                },
            ]
        );
        assert_eq!(serde_json::to_value(&parts).unwrap(), old);
        // Redacted data without its `data` is not a part.
        assert!(
            serde_json::from_value::<MessagePart>(json!({"type": "redacted_reasoning"})).is_err()
        );
    }
}
