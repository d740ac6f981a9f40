//! The payloads the Socket.IO front end sends that are not an answer's events: the notices of
//! a connection, the replies to client events and their acks (`docs/protocol.md` sections 1,
//! 2 and 4). One struct each, serialized as it is.

use marie_core::{
    ActiveStream, ChatMessage, ConversationId, Error, ErrorCode, MessageId, SendQueued, SessionId,
    StreamId, UserId,
};
use serde::Serialize;

/// `connected`.
#[derive(Debug, Serialize)]
pub(crate) struct Connected<'a> {
    pub(crate) status: &'static str,
    pub(crate) sid: String,
    pub(crate) user_id: &'a UserId,
    pub(crate) session: &'a SessionId,
}

/// `reconnected`.
#[derive(Debug, Serialize)]
pub(crate) struct Reconnected<'a> {
    pub(crate) message: &'static str,
    pub(crate) restored: bool,
    pub(crate) rooms: &'a [ConversationId],
    pub(crate) sid: String,
    pub(crate) user_id: &'a UserId,
    pub(crate) session: &'a SessionId,
}

/// `user_joined`, `user_left`.
#[derive(Debug, Serialize)]
pub(crate) struct Presence<'a> {
    pub(crate) user_id: &'a UserId,
    pub(crate) conversation_id: &'a ConversationId,
}

/// `announcement`.
#[derive(Debug, Serialize)]
pub(crate) struct Announcement<'a> {
    pub(crate) message: &'a str,
}

/// `joined` (`status:"joined"`), and the `join_conversation` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Joined {
    pub(crate) conversation_id: ConversationId,
    pub(crate) status: &'static str,
    pub(crate) members: Vec<UserId>,
    pub(crate) created: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) active_stream: Option<ActiveStream>,
    /// The sends waiting behind the running answer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) queued: Vec<SendQueued>,
}

/// `left`, and the `leave_conversation` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Left {
    pub(crate) conversation_id: ConversationId,
}

/// The `invite` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Invited {
    pub(crate) conversation_id: ConversationId,
    pub(crate) user_id: UserId,
}

/// The `send_message` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Sent {
    pub(crate) message_id: MessageId,
    pub(crate) stream_id: StreamId,
    pub(crate) duplicate: bool,
    /// The send's place in the queue, when it was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) queued: Option<usize>,
}

/// `branch_switched` to the room, and the `switch_branch` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct BranchSwitched {
    pub(crate) conversation_id: ConversationId,
    /// The message switched to.
    pub(crate) message_id: MessageId,
    /// The active branch's last message now.
    pub(crate) leaf_id: MessageId,
    /// Who switched.
    pub(crate) user_id: UserId,
}

/// The `cancel_stream` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Cancelled {
    pub(crate) conversation_id: ConversationId,
    pub(crate) stream_id: StreamId,
}

/// The `resume_stream` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Resumed {
    pub(crate) conversation_id: ConversationId,
    pub(crate) stream_id: StreamId,
    pub(crate) from_seq: u64,
    pub(crate) last_seq: u64,
    pub(crate) ended: bool,
}

/// The `get_history` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct History {
    pub(crate) conversation_id: ConversationId,
    pub(crate) messages: Vec<ChatMessage>,
}

/// The `system_announcement` ack's fields: none.
#[derive(Debug, Serialize)]
pub(crate) struct Nothing {}

/// An ack: `{status:"ok", ...fields}`.
#[derive(Debug, Serialize)]
pub(crate) struct AckOk<'a, T> {
    pub(crate) status: &'static str,
    #[serde(flatten)]
    pub(crate) fields: &'a T,
}

/// An ack of a failure: `{status:"error", code, message}`.
#[derive(Debug, Serialize)]
pub(crate) struct AckError {
    pub(crate) status: &'static str,
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl AckError {
    pub(crate) fn new(error: &Error) -> Self {
        Self {
            status: "error",
            code: error.code(),
            message: error.client_message(),
        }
    }
}

/// The seed's ack of `send_message_with_ack`: `{status:"success", message_id}`.
#[derive(Debug, Serialize)]
pub(crate) struct SeedAckOk<'a> {
    pub(crate) status: &'static str,
    pub(crate) message_id: &'a MessageId,
}

/// The seed's ack of a failed `send_message_with_ack`: `{status:"error", error, code}`.
#[derive(Debug, Serialize)]
pub(crate) struct SeedAckError {
    pub(crate) status: &'static str,
    pub(crate) error: String,
    pub(crate) code: ErrorCode,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn ack_shapes() {
        let cancelled = Cancelled {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
        };
        let ok = AckOk {
            status: "ok",
            fields: &cancelled,
        };
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"status": "ok", "conversation_id": "c", "stream_id": "s"})
        );
        assert_eq!(
            serde_json::to_value(AckError::new(&Error::Busy)).unwrap(),
            json!({"status": "error", "code": "busy", "message": Error::Busy.to_string()})
        );
        let message_id = MessageId::parse("m").unwrap();
        let seed = SeedAckOk {
            status: "success",
            message_id: &message_id,
        };
        assert_eq!(
            serde_json::to_value(&seed).unwrap(),
            json!({"status": "success", "message_id": "m"})
        );
    }
}
