//! The events an answer sends to a conversation room (PROTOCOL.md section 3).
//!
//! Field names are the wire names; each struct serializes to exactly the event's payload.

use serde::Serialize;

use crate::{ConversationId, ErrorCode, FinishReason, MessageId, StreamId, Usage};

/// `stream_start`: an answer began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamStart {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// The id the finished assistant message will have in history.
    pub message_id: MessageId,
    /// Always `"streaming"`.
    pub status: &'static str,
}

/// `stream_chunk`: the next piece of an answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StreamChunk {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// Never empty.
    pub content: String,
    /// Always `false` (the seed's field; the end is `stream_end`).
    pub done: bool,
    /// Completion tokens so far.
    pub tokens_used: u64,
}

/// How an answer ended, in `stream_end.status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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
}

/// `stream_error`: the answer failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
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

/// `message_response`: a whole answer, for `send_message` with `stream:false`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageResponse {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// The assistant message's id in history.
    pub message_id: MessageId,
    /// The answer.
    pub message: String,
}

/// `error` to a room: an answer with `stream:false` failed after its request was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AnswerFailed {
    /// The stable error code.
    pub code: ErrorCode,
    /// A message safe to show.
    pub message: String,
    /// The event whose answer failed: `"send_message"`.
    pub event: &'static str,
    /// The conversation.
    pub conversation_id: ConversationId,
}

/// An event the engine sends to every member of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum RoomEvent {
    /// `stream_start`
    StreamStart(StreamStart),
    /// `stream_chunk`
    StreamChunk(StreamChunk),
    /// `stream_end`
    StreamEnd(StreamEnd),
    /// `stream_error`
    StreamError(StreamFailed),
    /// `message_response`
    MessageResponse(MessageResponse),
    /// `error`
    AnswerFailed(AnswerFailed),
}

impl RoomEvent {
    /// The Socket.IO event name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::StreamStart(_) => "stream_start",
            Self::StreamChunk(_) => "stream_chunk",
            Self::StreamEnd(_) => "stream_end",
            Self::StreamError(_) => "stream_error",
            Self::MessageResponse(_) => "message_response",
            Self::AnswerFailed(_) => "error",
        }
    }

    /// Whether this event ends a stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::StreamEnd(_) | Self::StreamError(_))
    }
}
