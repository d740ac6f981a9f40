//! What commands answer, on every transport: one struct per ack (`docs/protocol.md`
//! sections 2 and 4), and the events a command sends back to the connection it came on
//! (`joined`, `left`, `error`). Each is serialized as it is.

use marie_core::{
    ActiveStream, AnswerPolicy, ApprovalId, ApprovalRecord, Assistant, ChatMessage,
    ConversationExport, ConversationId, ConversationInfo, ConversationPage, Error, ErrorCode,
    LastMessage, Member, MessageId, SendQueued, StreamId, UserId,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// Serializes a payload once, for every attempt to send it.
pub(crate) fn raw(payload: &impl Serialize) -> Box<RawValue> {
    // Cannot fail: the payloads are structs of strings, numbers, booleans and lists.
    serde_json::value::to_raw_value(payload).unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not serialize a reply");
        RawValue::NULL.to_owned()
    })
}

/// `{status:"ok", ...fields}`.
pub(crate) fn ok<T: Serialize>(fields: &T) -> Box<RawValue> {
    raw(&AckOk {
        status: "ok",
        fields,
    })
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
    /// The answer's stream; absent when the message is not answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stream_id: Option<StreamId>,
    pub(crate) duplicate: bool,
    /// The send's place in the queue, when it was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) queued: Option<usize>,
    /// `false` (and only then on the wire) when the message is stored and told to the room
    /// without an answer (`docs/protocol.md` section 10).
    #[serde(skip_serializing_if = "is_true")]
    pub(crate) answered: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The `mark_read` ack.
#[derive(Debug, Serialize)]
pub(crate) struct MarkedRead {
    pub(crate) conversation_id: ConversationId,
    pub(crate) message_id: MessageId,
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

/// The `get_history` ack's fields: a page of the active branch.
#[derive(Debug, Serialize)]
pub(crate) struct HistoryPage {
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

/// The `typing` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct TypingAck {
    pub(crate) conversation_id: ConversationId,
    pub(crate) typing: bool,
}

/// The `approve_tool` ack's fields (and the body of `POST /api/chat/approvals/{id}`).
#[derive(Debug, Serialize)]
pub(crate) struct Decided<'a> {
    pub(crate) conversation_id: &'a ConversationId,
    pub(crate) approval_id: &'a ApprovalId,
    pub(crate) approved: bool,
}

impl<'a> Decided<'a> {
    pub(crate) fn of(record: &'a ApprovalRecord) -> Self {
        Self {
            conversation_id: &record.request.conversation_id,
            approval_id: &record.request.approval_id,
            approved: record.decision.as_ref().is_some_and(|d| d.approved),
        }
    }
}

/// The `submit_tool_result` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct ToolResultTaken<'a> {
    pub(crate) conversation_id: &'a ConversationId,
    pub(crate) tool_call_id: &'a str,
}

/// The payload of the `error` event that answers a client event that failed (and of the
/// notices sent before a connection is ended).
#[derive(Debug, Serialize)]
pub(crate) struct ErrorPayload<'a> {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) event: &'a str,
}

impl<'a> ErrorPayload<'a> {
    pub(crate) fn new(error: &Error, event: &'a str) -> Self {
        Self {
            code: error.code(),
            message: error.client_message(),
            event,
        }
    }
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
        // A send that is not answered names no stream; one that is keeps its old shape.
        let stream_id = StreamId::parse("s").unwrap();
        let sent = |answered: bool| Sent {
            message_id: message_id.clone(),
            stream_id: answered.then(|| stream_id.clone()),
            duplicate: false,
            queued: None,
            answered,
        };
        assert_eq!(
            serde_json::to_value(sent(false)).unwrap(),
            json!({"message_id": "m", "duplicate": false, "answered": false})
        );
        assert_eq!(
            serde_json::to_value(sent(true)).unwrap(),
            json!({"message_id": "m", "stream_id": "s", "duplicate": false})
        );
        let read = MarkedRead {
            conversation_id: ConversationId::parse("c").unwrap(),
            message_id: message_id.clone(),
        };
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            json!({"conversation_id": "c", "message_id": "m"})
        );
    }
}

/// One conversation of `list_conversations`, and the fields of `get_conversation` and the
/// `update_conversation` ack (with `members` and `system_prompt` where they belong).
#[derive(Debug, Serialize)]
pub(crate) struct ConversationView {
    pub(crate) conversation_id: ConversationId,
    pub(crate) title: Option<String>,
    pub(crate) created_by: UserId,
    pub(crate) created_at: u64,
    pub(crate) updated_at: u64,
    pub(crate) last_message: Option<LastMessage>,
    pub(crate) model: Option<String>,
    pub(crate) answer_policy: AnswerPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) archived: Option<bool>,
    /// Only in a list: the messages after the caller's read mark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) unread: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) members: Option<Vec<Member>>,
    /// Only in `get_conversation`, the `update_conversation` ack and the export: a list
    /// does not carry every conversation's instructions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) system_prompt: Option<Option<String>>,
    /// Only in `get_conversation`: what a member may change it to, so that a page can offer
    /// a model picker and a prompt box without knowing the server's configuration.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub(crate) settings: Option<Settings>,
}

/// The choices an app offers for a conversation's settings (`get_conversation`).
#[derive(Debug, Serialize)]
pub(crate) struct Settings {
    /// The models `update_conversation.model` may name, the default first (empty: no choice).
    pub(crate) models: Vec<String>,
    /// How long `system_prompt` may be, in characters (0: the app sets none).
    pub(crate) max_system_prompt_chars: usize,
    /// The app's named assistants, `{name, model}`, the one that answers unnamed first.
    pub(crate) assistants: Vec<Assistant>,
}

impl ConversationView {
    /// The fields every view has, from the record.
    pub(crate) fn of(info: ConversationInfo) -> Self {
        Self {
            conversation_id: info.conversation_id,
            title: info.title,
            created_by: info.created_by,
            created_at: info.created_at,
            updated_at: info.updated_at,
            last_message: info.last_message,
            model: info.model,
            answer_policy: info.answer_policy,
            archived: None,
            unread: None,
            members: None,
            system_prompt: None,
            settings: None,
        }
    }

    /// With the conversation's own instructions.
    pub(crate) fn with_prompt(info: ConversationInfo) -> Self {
        let prompt = info.system_prompt.clone();
        Self {
            system_prompt: Some(prompt),
            ..Self::of(info)
        }
    }
}

/// The `export_conversation` ack's fields: a member's copy of a whole conversation.
#[derive(Debug, Serialize)]
pub(crate) struct Export {
    /// As `get_conversation` has it (without the app's settings: they are not the user's).
    pub(crate) conversation: ConversationView,
    /// Every message on every branch, the oldest first; `parent_id` gives the tree.
    pub(crate) messages: Vec<ChatMessage>,
    pub(crate) active_leaf: Option<MessageId>,
    pub(crate) exported_at: u64,
}

impl Export {
    pub(crate) fn of(export: ConversationExport) -> Self {
        let details = export.details;
        Self {
            conversation: ConversationView {
                archived: Some(details.archived),
                members: Some(details.members),
                ..ConversationView::with_prompt(details.info)
            },
            messages: export.messages,
            active_leaf: export.active_leaf,
            exported_at: export.exported_at,
        }
    }
}

/// The `list_conversations` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct ConversationList {
    pub(crate) conversations: Vec<ConversationView>,
    pub(crate) next_before: Option<String>,
}

impl ConversationList {
    pub(crate) fn of(page: ConversationPage) -> Self {
        Self {
            conversations: page
                .conversations
                .into_iter()
                .map(|listed| ConversationView {
                    archived: Some(listed.archived),
                    unread: Some(listed.unread),
                    ..ConversationView::of(listed.info)
                })
                .collect(),
            next_before: page.next_before.map(|cursor| cursor.encode()),
        }
    }
}

/// The `archive_conversation` ack's fields.
#[derive(Debug, Serialize)]
pub(crate) struct Archived {
    pub(crate) conversation_id: ConversationId,
    pub(crate) archived: bool,
}

/// The `delete_conversation` ack's fields: one id.
pub(crate) type Deleted = Left;
