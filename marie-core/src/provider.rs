//! [`LlmProvider`]: a request with the conversation's history in, a stream of deltas out.

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;

use serde_json::Value;

use crate::{
    Attachment, ConversationId, FinishReason, MessagePart, MessageRole, ProviderError, Usage,
    UserId,
};

/// One message sent to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptMessage {
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// Of an assistant message with more than text: its parts in order (reasoning, text,
    /// tool calls and their results). Empty for a text-only message: `content` is all of it.
    /// A provider sends the calls and results in its own format ([`assistant_turns`](Self::assistant_turns)).
    pub parts: Vec<MessagePart>,
    /// Of a user message: the files it carries, with their bytes (`data`) when the engine
    /// could read them. A provider passes images (and documents, where its API takes them)
    /// in its own format, and [`Attachment::as_text`] of the others.
    pub attachments: Vec<Attachment>,
    /// Of a user message in a group conversation (more than one member): who wrote it, so
    /// that the model can tell the members apart. A provider sends it in the message's
    /// `name` field where its API has one (OpenAI's chat completions), else as a prefix of
    /// the text, `[alice] ` ([`authored_text`](Self::authored_text)). `None` in a
    /// conversation of one person: the request is what it always was.
    pub author: Option<String>,
}

impl PromptMessage {
    /// A text-only message.
    pub fn text(role: MessageRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            parts: Vec::new(),
            attachments: Vec::new(),
            author: None,
        }
    }

    /// The text as a dialect without a per-message `name` field sends it: prefixed with
    /// `[author] ` when the message has an author, else as it is.
    pub fn authored_text(&self) -> std::borrow::Cow<'_, str> {
        match &self.author {
            Some(author) => format!("[{author}] {}", self.content).into(),
            None => self.content.as_str().into(),
        }
    }

    /// The author as OpenAI's `name` field takes it (`^[a-zA-Z0-9_-]{1,64}$`): other
    /// characters become `_`, and it is cut at 64.
    pub fn author_name_field(&self) -> Option<String> {
        let author = self.author.as_deref()?;
        let name: String = author
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        (!name.is_empty()).then_some(name)
    }

    /// The message as chat-completion APIs take an assistant answer that called tools: one
    /// turn per model step, each with its text, the calls the model made and their results,
    /// in order. A text-only message is one turn of its text. Reasoning is left out (the
    /// chat-completion APIs do not take it back; a provider that does, like Anthropic's with
    /// signed thinking, walks [`parts`](Self::parts) itself).
    pub fn assistant_turns(&self) -> Vec<AssistantTurn<'_>> {
        if self.parts.is_empty() {
            return vec![AssistantTurn {
                text: self.content.clone(),
                ..AssistantTurn::default()
            }];
        }
        let mut turns = vec![AssistantTurn::default()];
        for part in &self.parts {
            // A step's results end it: what the model says next is its next step.
            let ended = turns.last().is_some_and(|t| !t.results.is_empty());
            let is_result = matches!(part, MessagePart::ToolResult { .. });
            if ended && !is_result {
                turns.push(AssistantTurn::default());
            }
            let Some(turn) = turns.last_mut() else { break };
            match part {
                MessagePart::Text { content } => turn.text.push_str(content),
                MessagePart::ToolCall {
                    tool_call_id,
                    name,
                    arguments,
                } => turn.tool_calls.push(ToolCallRef {
                    id: tool_call_id,
                    name,
                    arguments,
                }),
                MessagePart::ToolResult {
                    tool_call_id,
                    name,
                    output,
                    error,
                } => turn.results.push(ToolResultRef {
                    id: tool_call_id,
                    name,
                    content: tool_result_text(output.as_ref(), error.as_deref()),
                }),
                MessagePart::Reasoning { .. } | MessagePart::RedactedReasoning { .. } => {}
            }
        }
        turns
    }
}

/// One step of an assistant answer, as [`PromptMessage::assistant_turns`] gives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssistantTurn<'a> {
    /// What the model said in this step (may be empty).
    pub text: String,
    /// The calls it made.
    pub tool_calls: Vec<ToolCallRef<'a>>,
    /// Their results, to send after the assistant message (OpenAI `role:"tool"`).
    pub results: Vec<ToolResultRef<'a>>,
}

/// A tool call in a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToolCallRef<'a> {
    /// The call's id.
    pub id: &'a str,
    /// The tool.
    pub name: &'a str,
    /// Its arguments.
    pub arguments: &'a Value,
}

/// A tool result in a prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolResultRef<'a> {
    /// The call's id.
    pub id: &'a str,
    /// The tool.
    pub name: &'a str,
    /// What the model is told: [`tool_result_text`].
    pub content: String,
}

/// What the model is told of a call's result: the output (a string as it is, anything else
/// as JSON text), or `{"error": "..."}` when the call has no output.
pub fn tool_result_text(output: Option<&Value>, error: Option<&str>) -> String {
    match (output, error) {
        (Some(Value::String(text)), None) => text.clone(),
        (Some(value), None) => value.to_string(),
        (_, error) => {
            serde_json::json!({ "error": error.unwrap_or("the call returned nothing") }).to_string()
        }
    }
}

/// A tool offered to the model: what the provider sends in its request (and what a client
/// declares of its own tools, `send_message.client_tools`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ToolSpec {
    /// The tool's name, as the model calls it.
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// The JSON Schema of its arguments (an object schema); a client that declares none
    /// declares an object of anything.
    #[serde(default = "any_object")]
    pub parameters: Value,
}

/// The schema of a tool that declares no parameters.
fn any_object() -> Value {
    serde_json::json!({"type": "object"})
}

/// A complete tool call of the model, its arguments parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The call's id, as the provider named it (made up by the provider when its API has
    /// none, like Ollama's).
    pub id: String,
    /// The tool called.
    pub name: String,
    /// The arguments: a JSON object.
    pub arguments: Value,
}

/// What the engine asks a provider for: an answer to the conversation so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmRequest {
    /// The conversation being answered.
    pub conversation_id: ConversationId,
    /// The user who asked.
    pub user_id: UserId,
    /// The history, oldest first, ending with the user's new message, or, from an answer's
    /// second step on, with the answer so far (an assistant message whose parts hold the
    /// calls made and their results).
    pub messages: Vec<PromptMessage>,
    /// The tools the model may call (none: send no tools).
    pub tools: Vec<ToolSpec>,
    /// The model the conversation asks for (one of [`EngineConfig::models`](crate::EngineConfig::models));
    /// `None`: the provider's own. A provider that serves one model only may ignore it.
    pub model: Option<String>,
}

impl LlmRequest {
    /// The model to ask: the request's, else `default` (the provider's own).
    pub fn model_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.model.as_deref().unwrap_or(default)
    }

    /// The newest user message, the one being answered.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::User)
            .map(|m| m.content.as_str())
    }
}

/// One item of a provider's answer stream. More kinds may come: match with a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LlmEvent {
    /// More text. May be empty (the engine skips empty deltas).
    ///
    /// The engine counts one completion token per non-empty delta for
    /// `stream_chunk.tokens_used`, which fits providers that stream a token at a time
    /// (OpenAI-compatible servers, Ollama); the usage in [`Done`](Self::Done), when the
    /// provider reports it, is the exact figure.
    Delta(String),
    /// More of the model's reasoning (OpenAI-compatible `reasoning_content` / `reasoning`,
    /// Ollama's `thinking`): streamed as `stream_reasoning`, kept as a `reasoning` part of
    /// the answer, never part of its text. May be empty (skipped).
    Reasoning(String),
    /// The signature of the reasoning just streamed (Anthropic signs each thinking block and
    /// wants it back, unchanged, in later requests). Kept on that reasoning part
    /// ([`MessagePart::Reasoning`]`::signature`), which it closes: reasoning after it is a new
    /// part; with no reasoning before it, it makes a part of empty reasoning (a model that
    /// keeps its thinking to itself). Never sent to clients while streaming.
    ReasoningSignature(String),
    /// A block of reasoning the provider encrypted (Anthropic's `redacted_thinking`): opaque
    /// data, no readable text. Kept as its own part of the answer
    /// ([`MessagePart::RedactedReasoning`]), in its place among the reasoning, so that later
    /// requests send it back unchanged; it closes the reasoning before it. Never sent to
    /// clients while streaming (`stream_reasoning` carries readable reasoning only). Empty
    /// data is skipped.
    RedactedReasoning(String),
    /// The model began a tool call: its id and name are known. Optional: a provider whose
    /// API sends whole calls sends only [`ToolCall`](Self::ToolCall).
    ToolCallStart {
        /// The call's id.
        id: String,
        /// The tool.
        name: String,
    },
    /// More of the arguments' JSON text of the call `id` (after its start).
    ToolCallDelta {
        /// The call's id.
        id: String,
        /// The next piece of text.
        delta: String,
    },
    /// A complete call, arguments parsed: the engine runs it after `Done`. Every call the
    /// model makes comes as one, after its start and deltas if any; arguments that are not
    /// a JSON object (a call cut short) are the provider's error, not a call.
    ToolCall(ToolCall),
    /// The step is complete. A stream that ends without `Done` is an error. When the step
    /// made tool calls, the engine runs them and asks the model again.
    Done {
        /// Usage as the provider reported it, if it did.
        usage: Option<Usage>,
        /// Why the model stopped.
        finish_reason: FinishReason,
    },
}

/// The stream a provider returns. Dropping it must drop the upstream request.
pub type LlmStream = Pin<Box<dyn Stream<Item = Result<LlmEvent, ProviderError>> + Send>>;

/// A language model that answers with a stream of deltas.
///
/// The engine calls [`stream`](LlmProvider::stream) once per answer and polls the stream
/// until `Done`, an error, or cancellation; on cancellation it drops the stream, which must
/// abort the upstream request (no background task may keep it alive).
#[async_trait]
pub trait LlmProvider: Send + Sync + 'static {
    /// Starts an answer.
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError>;

    /// A short name for logs and metrics (`"openai"`, `"echo"`).
    fn name(&self) -> &str;
}

#[async_trait]
impl<T: LlmProvider + ?Sized> LlmProvider for std::sync::Arc<T> {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        (**self).stream(request).await
    }

    fn name(&self) -> &str {
        (**self).name()
    }
}
