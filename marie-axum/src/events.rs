//! The client events of the protocol, in one table ([`ClientEvent`]): each one's name, how its
//! payload is decoded into a [`Command`], and what it costs. The Socket.IO handlers, the fuzz
//! target and the check of `docs/protocol.md` all read this table.
//!
//! Payloads are decoded strictly (unknown fields refused) so that a typo in a client is a
//! clear `bad_request` rather than a silently ignored option; the message names the field.

use marie_core::{
    ApprovalId, ApprovalRecord, ConversationId, Error, ErrorCode, FileId, MessageId, OnBusy,
    SendRequest, StreamId, UserId,
};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Every event a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientEvent {
    JoinConversation,
    LeaveConversation,
    Invite,
    SendMessage,
    SendMessageWithAck,
    CancelStream,
    ResumeStream,
    GetHistory,
    SystemAnnouncement,
    ApproveTool,
    Typing,
    EditMessage,
    Regenerate,
    SwitchBranch,
    GetUsage,
}

impl ClientEvent {
    /// Every client event, in the order of `docs/protocol.md` section 2.
    pub(crate) const ALL: [Self; 15] = [
        Self::JoinConversation,
        Self::LeaveConversation,
        Self::Invite,
        Self::SendMessage,
        Self::SendMessageWithAck,
        Self::CancelStream,
        Self::ResumeStream,
        Self::GetHistory,
        Self::SystemAnnouncement,
        Self::ApproveTool,
        Self::Typing,
        Self::EditMessage,
        Self::Regenerate,
        Self::SwitchBranch,
        Self::GetUsage,
    ];

    /// The Socket.IO event name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::JoinConversation => "join_conversation",
            Self::LeaveConversation => "leave_conversation",
            Self::Invite => "invite",
            Self::SendMessage => "send_message",
            Self::SendMessageWithAck => "send_message_with_ack",
            Self::CancelStream => "cancel_stream",
            Self::ResumeStream => "resume_stream",
            Self::GetHistory => "get_history",
            Self::SystemAnnouncement => "system_announcement",
            Self::ApproveTool => "approve_tool",
            Self::Typing => "typing",
            Self::EditMessage => "edit_message",
            Self::Regenerate => "regenerate",
            Self::SwitchBranch => "switch_branch",
            Self::GetUsage => "get_usage",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Whether its ack has the seed's shape (`send_message_with_ack`) rather than
    /// `{status:"ok", ...}`.
    pub(crate) fn seed_ack(self) -> bool {
        self == Self::SendMessageWithAck
    }

    /// Decodes the event's payload and validates the ids in it.
    pub(crate) fn decode(self, payload: Option<Value>) -> Result<Command, Error> {
        Ok(match self {
            Self::JoinConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::Join(ConversationId::parse(p.conversation_id)?)
            }
            Self::LeaveConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::Leave(ConversationId::parse(p.conversation_id)?)
            }
            Self::Invite => {
                let p: Invite = decode(payload)?;
                Command::Invite {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    user: UserId::parse(p.user_id)?,
                }
            }
            Self::SendMessage | Self::SendMessageWithAck => {
                let p: SendMessage = decode(payload)?;
                Command::Send(SendRequest {
                    conversation_id: ConversationId::parse(p.conversation_id)?,
                    message: p.message,
                    stream: p.stream && self == Self::SendMessage,
                    client_message_id: p.client_message_id,
                    on_busy: p.on_busy,
                    attachments: p
                        .attachments
                        .into_iter()
                        .map(FileId::parse)
                        .collect::<Result<_, _>>()?,
                })
            }
            Self::CancelStream => {
                let p: CancelStream = decode(payload)?;
                Command::Cancel {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    stream: p.stream_id.map(StreamId::parse).transpose()?,
                }
            }
            Self::ResumeStream => {
                let p: ResumeStream = decode(payload)?;
                Command::Resume {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    stream: StreamId::parse(p.stream_id)?,
                    last_seq: p.last_seq,
                }
            }
            Self::GetHistory => {
                let p: GetHistory = decode(payload)?;
                Command::History {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    before: p.before.map(MessageId::parse).transpose()?,
                    limit: p.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                }
            }
            Self::SystemAnnouncement => {
                let p: Announcement = decode(payload)?;
                Command::Announce { message: p.message }
            }
            Self::ApproveTool => {
                let p: ApproveTool = decode(payload)?;
                Command::Approve {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    approval: ApprovalId::parse(p.approval_id)?,
                    approved: p.approved,
                    reason: p.reason,
                }
            }
            Self::Typing => {
                let p: Typing = decode(payload)?;
                Command::Typing {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    typing: p.typing,
                }
            }
            Self::EditMessage => {
                let p: EditMessage = decode(payload)?;
                Command::Edit {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: MessageId::parse(p.message_id)?,
                    text: p.message,
                    stream: p.stream,
                }
            }
            Self::Regenerate => {
                let p: Regenerate = decode(payload)?;
                Command::Regenerate {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: p.message_id.map(MessageId::parse).transpose()?,
                    stream: p.stream,
                }
            }
            Self::GetUsage => {
                // Nothing to say: `{}`, `null`, or no payload at all.
                let payload = payload
                    .filter(|p| !p.is_null())
                    .unwrap_or_else(|| Value::Object(Default::default()));
                let _: Empty = decode(Some(payload))?;
                Command::Usage
            }
            Self::SwitchBranch => {
                let p: SwitchBranch = decode(payload)?;
                Command::SwitchBranch {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: MessageId::parse(p.message_id)?,
                }
            }
        })
    }
}

/// A client event, decoded and validated: what the handlers run.
#[derive(Debug)]
pub(crate) enum Command {
    Join(ConversationId),
    Leave(ConversationId),
    Invite {
        conversation: ConversationId,
        user: UserId,
    },
    /// `send_message`, or `send_message_with_ack` (`stream: false`).
    Send(SendRequest),
    Cancel {
        conversation: ConversationId,
        stream: Option<StreamId>,
    },
    Resume {
        conversation: ConversationId,
        stream: StreamId,
        last_seq: u64,
    },
    History {
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: Option<usize>,
    },
    Announce {
        message: String,
    },
    Approve {
        conversation: ConversationId,
        approval: ApprovalId,
        approved: bool,
        reason: Option<String>,
    },
    Typing {
        conversation: ConversationId,
        typing: bool,
    },
    Edit {
        conversation: ConversationId,
        message: MessageId,
        text: String,
        stream: bool,
    },
    Regenerate {
        conversation: ConversationId,
        message: Option<MessageId>,
        stream: bool,
    },
    SwitchBranch {
        conversation: ConversationId,
        message: MessageId,
    },
    Usage,
}

/// `join_conversation`, `leave_conversation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConversationRef {
    conversation_id: String,
}

/// `invite`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invite {
    conversation_id: String,
    user_id: String,
}

/// `send_message`, `send_message_with_ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendMessage {
    conversation_id: String,
    message: String,
    #[serde(default = "default_true")]
    stream: bool,
    #[serde(default)]
    client_message_id: Option<String>,
    #[serde(default)]
    on_busy: Option<OnBusy>,
    /// File ids from `POST /api/chat/files`.
    #[serde(default)]
    attachments: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// `cancel_stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelStream {
    conversation_id: String,
    #[serde(default)]
    stream_id: Option<String>,
}

/// `resume_stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeStream {
    conversation_id: String,
    stream_id: String,
    #[serde(deserialize_with = "whole_number")]
    last_seq: u64,
}

/// `get_history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetHistory {
    conversation_id: String,
    #[serde(default)]
    before: Option<String>,
    #[serde(default, deserialize_with = "optional_whole_number")]
    limit: Option<u64>,
}

/// `system_announcement`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Announcement {
    message: String,
}

/// `approve_tool`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveTool {
    conversation_id: String,
    approval_id: String,
    approved: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// `typing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Typing {
    conversation_id: String,
    typing: bool,
}

/// `edit_message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EditMessage {
    conversation_id: String,
    message_id: String,
    message: String,
    #[serde(default = "default_true")]
    stream: bool,
}

/// `regenerate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Regenerate {
    conversation_id: String,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default = "default_true")]
    stream: bool,
}

/// `get_usage`: no fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `switch_branch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBranch {
    conversation_id: String,
    message_id: String,
}

/// The CONNECT packet's `auth` object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConnectAuth {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) previous_session: Option<String>,
    /// The seed's name for `previous_session`.
    #[serde(default)]
    pub(crate) previous_sid: Option<String>,
}

/// Decodes an event's payload; anything that does not fit is `bad_request`, naming the
/// field at fault.
fn decode<T: DeserializeOwned>(payload: Option<Value>) -> Result<T, Error> {
    let value =
        payload.ok_or_else(|| Error::BadRequest("the event needs a payload object".into()))?;
    if !value.is_object() {
        return Err(Error::BadRequest(
            "the payload must be a JSON object".into(),
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        Error::BadRequest(match path.as_str() {
            "." | "" => format!("invalid payload: {inner}"),
            field => format!("invalid payload: `{field}`: {inner}"),
        })
    })
}

/// A count or a position: a JSON integer, 0 or more. serde's own `u64` would say
/// "expected u64", which means nothing to a client.
fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(WholeNumber)
}

fn optional_whole_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    Option::<Whole>::deserialize(deserializer).map(|n| n.map(|Whole(n)| n))
}

struct Whole(u64);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        whole_number(deserializer).map(Whole)
    }
}

struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number, 0 or more")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
        Ok(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
        u64::try_from(n).map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &self))
    }
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

    fn bad(event: ClientEvent, payload: Option<Value>) -> String {
        match event.decode(payload) {
            Err(Error::BadRequest(message)) => message,
            other => panic!("{event:?}: expected bad_request, got {other:?}"),
        }
    }

    #[test]
    fn payloads_that_do_not_fit_are_bad_requests() {
        for payload in [
            None,
            Some(json!(42)),
            Some(json!("conv")),
            Some(json!([1, 2])),
            Some(json!({})),
            Some(json!({"conversation_id": 7})),
            Some(json!({"conversation_id": "c", "extra": true})),
        ] {
            bad(ClientEvent::JoinConversation, payload);
        }
        let Ok(Command::Send(send)) =
            ClientEvent::SendMessage.decode(Some(json!({"conversation_id": "c", "message": "hi"})))
        else {
            panic!("a plain send decodes");
        };
        assert!(send.stream);
        let Ok(Command::Send(send)) = ClientEvent::SendMessageWithAck
            .decode(Some(json!({"conversation_id": "c", "message": "hi"})))
        else {
            panic!("a send with ack decodes");
        };
        assert!(!send.stream, "send_message_with_ack is never streamed");
    }

    /// `get_usage` takes `{}`, `null` or nothing, and nothing else.
    #[test]
    fn get_usage_takes_no_fields() {
        for payload in [None, Some(json!(null)), Some(json!({}))] {
            assert!(matches!(
                ClientEvent::GetUsage.decode(payload),
                Ok(Command::Usage)
            ));
        }
        bad(ClientEvent::GetUsage, Some(json!({"user_id": "bob"})));
        bad(ClientEvent::GetUsage, Some(json!([])));
    }

    /// A bad number says which field and what it must be, not `expected usize`.
    #[test]
    fn bad_numbers_name_the_field_in_words() {
        for (event, payload, field) in [
            (
                ClientEvent::GetHistory,
                json!({"conversation_id": "c", "limit": -1}),
                "limit",
            ),
            (
                ClientEvent::GetHistory,
                json!({"conversation_id": "c", "limit": "ten"}),
                "limit",
            ),
            (
                ClientEvent::GetHistory,
                json!({"conversation_id": "c", "limit": 2.5}),
                "limit",
            ),
            (
                ClientEvent::ResumeStream,
                json!({"conversation_id": "c", "stream_id": "s", "last_seq": -3}),
                "last_seq",
            ),
        ] {
            let message = bad(event, Some(payload));
            assert!(message.contains(&format!("`{field}`")), "{message}");
            assert!(message.contains("a whole number, 0 or more"), "{message}");
            assert!(
                !message.contains("usize") && !message.contains("u64"),
                "{message}"
            );
        }
        let Ok(Command::History { limit, .. }) =
            ClientEvent::GetHistory.decode(Some(json!({"conversation_id": "c", "limit": 0})))
        else {
            panic!("limit 0 decodes");
        };
        assert_eq!(limit, Some(0));
    }

    /// The event table of `docs/protocol.md` section 2 lists exactly these events.
    #[test]
    fn the_protocol_docs_list_every_client_event() {
        let docs = include_str!("../../docs/protocol.md");
        let section = docs
            .split("## 2. Client → server events")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/protocol.md has section 2");
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let ours: Vec<&str> = ClientEvent::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(documented, ours);
    }
}
