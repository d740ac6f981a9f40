//! What a conversation holds: messages, and the accounting of an answer.

use serde::{Deserialize, Serialize};

use crate::{MessageId, UserId};

/// Who wrote a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    /// Instructions for the model.
    System,
    /// A person.
    User,
    /// The model.
    Assistant,
}

impl MessageRole {
    /// The role as the wire and the chat-completion APIs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One message of a conversation's history, as `get_history` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The message's id (time-ordered).
    pub message_id: MessageId,
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// The author, for user messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Of an assistant message with more than text (reasoning, tool calls and results): its
    /// parts in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<crate::MessagePart>,
    /// The message this one follows; `None` for a conversation's first message (and its
    /// edits). Always on the wire, `null` included (`docs/protocol.md` section 7).
    #[serde(default)]
    pub parent_id: Option<MessageId>,
    /// Every message with the same parent, this one included, oldest first, when there is
    /// more than one (an edit or a regenerated answer): filled in by
    /// [`History::history`](crate::History::history), empty otherwise and never stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub siblings: Vec<MessageId>,
    /// Of a user message: the files it carries (`send_message.attachments`), by reference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::Attachment>,
    /// Of an assistant message: the name of the assistant that wrote it, in a conversation
    /// whose app declares named assistants (`docs/protocol.md` section 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<String>,
}

impl ChatMessage {
    /// A message written now, after `parent_id`.
    pub fn now(
        role: MessageRole,
        content: impl Into<String>,
        user_id: Option<UserId>,
        parent_id: Option<MessageId>,
    ) -> Self {
        Self {
            message_id: MessageId::new_time_ordered(),
            role,
            content: content.into(),
            user_id,
            created_at: now_millis(),
            parts: Vec::new(),
            parent_id,
            siblings: Vec::new(),
            attachments: Vec::new(),
            assistant: None,
        }
    }
}

/// Token accounting of one answer (of all its model steps), as `stream_end.usage` carries it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the request.
    pub prompt_tokens: u64,
    /// Tokens in the answer.
    pub completion_tokens: u64,
    /// The sum of both.
    pub total_tokens: u64,
    /// `true` when the provider reported nothing and MARIE estimated the figures.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

impl Usage {
    /// Usage as reported by a provider.
    pub fn reported(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
            estimated: false,
        }
    }

    /// Usage estimated by MARIE, marked `estimated:true`.
    pub fn estimated(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            estimated: true,
            ..Self::reported(prompt_tokens, completion_tokens)
        }
    }
}

/// The sum of two steps' usage: estimated when either is.
impl std::ops::Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens + other.prompt_tokens,
            completion_tokens: self.completion_tokens + other.completion_tokens,
            total_tokens: self.total_tokens + other.total_tokens,
            estimated: self.estimated || other.estimated,
        }
    }
}

/// Why an answer stopped, as `stream_end.finish_reason` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The model hit its token limit.
    Length,
    /// The provider filtered the answer.
    ContentFilter,
    /// A user cancelled the answer.
    Cancelled,
    /// The server shut down before the answer finished.
    Interrupted,
    /// The model's step ended with tool calls (a provider's reason; the engine then runs
    /// them and asks again, so an answer ends so only when it could not go on).
    ToolCalls,
    /// The answer used its [`max_steps`](crate::EngineConfig::max_steps) model steps and the
    /// model still wanted to call tools.
    MaxSteps,
    /// The answer reached its user's token budget (see [`BudgetPolicy`](crate::BudgetPolicy)).
    Budget,
    /// Any other reason a provider reported.
    #[serde(untagged)]
    Other(String),
}

impl FinishReason {
    /// Maps a provider's finish reason string (`"stop"`, `"length"`, ...).
    pub fn from_provider(reason: &str) -> Self {
        match reason {
            "stop" => Self::Stop,
            "length" => Self::Length,
            "content_filter" => Self::ContentFilter,
            "tool_calls" | "tool_use" => Self::ToolCalls,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A rough token count for text a provider did not count: one token per four bytes,
/// and at least one per word. Only ever reported with `estimated:true`.
pub fn estimate_tokens(text: &str) -> u64 {
    let by_bytes = text.len().div_ceil(4) as u64;
    let words = text.split_whitespace().count() as u64;
    by_bytes.max(words)
}
