//! A group conversation, as the engine hands it to a provider: user messages by different
//! members, each with its `author`.

use marie_core::{ConversationId, LlmProvider, LlmRequest, MessageRole, PromptMessage, UserId};

use super::fake::{FakeServer, Recorded};
use super::files::{PNG, answer, attachments};

/// A user message by `author`.
fn by(author: &str, content: &str) -> PromptMessage {
    PromptMessage {
        author: Some(author.into()),
        ..PromptMessage::text(MessageRole::User, content)
    }
}

/// A system prompt; "Hi, I'm Alice." by `alice`; the assistant's "Hello Alice!"; then "What
/// is in this picture?" by `bob smith` (a name OpenAI's `name` field does not take as it
/// is), with `cat.png` attached.
pub fn request_with_authors() -> LlmRequest {
    // `cat.png`, the first.
    let cat = attachments().remove(0);
    assert_eq!(cat.data.as_deref(), Some(PNG));
    LlmRequest {
        conversation_id: ConversationId::parse("c").unwrap(),
        user_id: UserId::parse("u").unwrap(),
        messages: vec![
            PromptMessage::text(MessageRole::System, "Be brief."),
            by("alice", "Hi, I'm Alice."),
            PromptMessage::text(MessageRole::Assistant, "Hello Alice!"),
            PromptMessage {
                attachments: vec![cat],
                ..by("bob smith", "What is in this picture?")
            },
        ],
        tools: Vec::new(),
        model: None,
    }
}

/// Asks `provider` directly with [`request_with_authors`], checks the answer ("A cat.", as
/// the server is to say) and that `server` got one request, and returns that request.
pub async fn ask_with_authors(provider: &impl LlmProvider, server: &FakeServer) -> Recorded {
    let said = answer(provider, request_with_authors()).await;
    assert_eq!(said, "A cat.");
    let mut requests = server.requests();
    assert_eq!(requests.len(), 1);
    requests.remove(0)
}
