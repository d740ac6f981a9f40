//! The payloads of client events, as clients send them: one struct each, decoded strictly
//! (unknown fields refused) so that a typo in a client is a clear `bad_request` rather than
//! a silently ignored option; the message names the field.

use marie_core::{Error, OnBusy};
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde_json::Value;

/// `join_conversation`, `leave_conversation`, `get_conversation`, `delete_conversation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConversationRef {
    pub(super) conversation_id: String,
}

/// `invite`, `remove_member`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Invite {
    pub(super) conversation_id: String,
    pub(super) user_id: String,
}

/// `send_message`, `send_message_with_ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SendMessage {
    pub(super) conversation_id: String,
    pub(super) message: String,
    #[serde(default = "default_true")]
    pub(super) stream: bool,
    #[serde(default)]
    pub(super) client_message_id: Option<String>,
    #[serde(default)]
    pub(super) on_busy: Option<OnBusy>,
    /// File ids from `POST /api/chat/files`.
    #[serde(default)]
    pub(super) attachments: Vec<String>,
    /// Answer it or not, whatever the conversation's `answer_policy` says.
    #[serde(default)]
    pub(super) answer: Option<bool>,
    /// Tools the client runs (`docs/protocol.md` section 11).
    #[serde(default)]
    pub(super) client_tools: Vec<marie_core::ToolSpec>,
}

fn default_true() -> bool {
    true
}

/// `cancel_stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelStream {
    pub(super) conversation_id: String,
    #[serde(default)]
    pub(super) stream_id: Option<String>,
}

/// `resume_stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResumeStream {
    pub(super) conversation_id: String,
    pub(super) stream_id: String,
    #[serde(deserialize_with = "whole_number")]
    pub(super) last_seq: u64,
}

/// `get_history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GetHistory {
    pub(super) conversation_id: String,
    #[serde(default)]
    pub(super) before: Option<String>,
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub(super) limit: Option<u64>,
}

/// `system_announcement`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Announcement {
    pub(super) message: String,
}

/// `approve_tool`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveTool {
    pub(super) conversation_id: String,
    pub(super) approval_id: String,
    pub(super) approved: bool,
    #[serde(default)]
    pub(super) reason: Option<String>,
}

/// `submit_tool_result`: exactly one of `output` and `error`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitToolResult {
    pub(super) conversation_id: String,
    pub(super) tool_call_id: String,
    /// Present, `null` included (a tool that returns nothing), or absent.
    #[serde(default, deserialize_with = "present")]
    pub(super) output: Option<Value>,
    #[serde(default)]
    pub(super) error: Option<String>,
}

/// `typing`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Typing {
    pub(super) conversation_id: String,
    pub(super) typing: bool,
}

/// `edit_message`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EditMessage {
    pub(super) conversation_id: String,
    pub(super) message_id: String,
    pub(super) message: String,
    #[serde(default = "default_true")]
    pub(super) stream: bool,
}

/// `regenerate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Regenerate {
    pub(super) conversation_id: String,
    #[serde(default)]
    pub(super) message_id: Option<String>,
    #[serde(default = "default_true")]
    pub(super) stream: bool,
}

/// `get_usage`: no fields.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Empty {}

/// `switch_branch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SwitchBranch {
    pub(super) conversation_id: String,
    pub(super) message_id: String,
}

/// `list_conversations`: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListConversations {
    #[serde(default)]
    pub(super) before: Option<String>,
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub(super) limit: Option<u64>,
    #[serde(default)]
    pub(super) query: Option<String>,
    #[serde(default)]
    pub(super) archived: bool,
}

/// `update_conversation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateConversation {
    pub(super) conversation_id: String,
    #[serde(default)]
    pub(super) title: Option<String>,
    #[serde(default)]
    pub(super) model: Option<String>,
    #[serde(default)]
    pub(super) system_prompt: Option<String>,
    /// `"always"`, `"mention"` or `"never"` (read by `AnswerPolicy::parse`, whose error names
    /// the choices).
    #[serde(default)]
    pub(super) answer_policy: Option<String>,
}

/// `mark_read`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MarkRead {
    pub(super) conversation_id: String,
    pub(super) message_id: String,
}

/// `archive_conversation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ArchiveConversation {
    pub(super) conversation_id: String,
    #[serde(default = "default_true")]
    pub(super) archived: bool,
}

/// Decodes an event's payload; anything that does not fit is `bad_request`, naming the
/// field at fault.
pub(super) fn decode<T: DeserializeOwned>(payload: Option<Value>) -> Result<T, Error> {
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

/// Decodes the payload of an event whose fields are all optional: no payload, or `null`,
/// is `{}`.
pub(super) fn decode_or_empty<T: DeserializeOwned>(payload: Option<Value>) -> Result<T, Error> {
    let payload = payload
        .filter(|p| !p.is_null())
        .unwrap_or_else(|| Value::Object(Default::default()));
    decode(Some(payload))
}

/// Any JSON value, `null` included, as present: serde's own `Option` takes `null` for
/// absent.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
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
