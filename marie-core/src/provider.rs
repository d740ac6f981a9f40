//! [`LlmProvider`]: a request with the conversation's history in, a stream of deltas out.

use std::pin::Pin;

use async_trait::async_trait;
use futures_util::Stream;

use crate::{ConversationId, FinishReason, MessageRole, ProviderError, Usage, UserId};

/// One message sent to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptMessage {
    /// Who wrote it.
    pub role: MessageRole,
    /// The text.
    pub content: String,
}

/// What the engine asks a provider for: an answer to the conversation so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LlmRequest {
    /// The conversation being answered.
    pub conversation_id: ConversationId,
    /// The user who asked.
    pub user_id: UserId,
    /// The history, oldest first, ending with the user's new message.
    pub messages: Vec<PromptMessage>,
}

impl LlmRequest {
    /// The newest user message, the one being answered.
    pub fn last_user_message(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::User)
            .map(|m| m.content.as_str())
    }
}

/// One item of a provider's answer stream. More kinds will come (tool calls): match with a
/// wildcard arm.
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
    /// The answer is complete. A stream that ends without `Done` is an error.
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
