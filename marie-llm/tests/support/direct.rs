//! A provider asked directly, without the engine.

use std::time::Duration;

use futures_util::StreamExt;
use marie_core::{
    ConversationId, LlmEvent, LlmProvider, LlmRequest, MessageRole, PromptMessage, UserId,
};
use tokio::time::Instant;

use super::fake::FakeServer;

/// One user message, "talk forever", and nothing else.
pub fn talk_forever() -> LlmRequest {
    LlmRequest {
        conversation_id: ConversationId::parse("c").unwrap(),
        user_id: UserId::parse("u").unwrap(),
        messages: vec![PromptMessage::text(MessageRole::User, "talk forever")],
        tools: Vec::new(),
        model: None,
    }
}

/// Asks `provider` to [`talk_forever`], reads three deltas, drops the stream, and returns
/// how long `server` took to notice.
pub async fn drop_latency(provider: impl LlmProvider, server: &FakeServer) -> Duration {
    let mut stream = provider.stream(talk_forever()).await.unwrap();
    let mut deltas = 0;
    while deltas < 3 {
        match stream.next().await {
            Some(Ok(LlmEvent::Delta(_))) => deltas += 1,
            other => panic!("expected deltas, got {other:?}"),
        }
    }
    let dropped_at = Instant::now();
    drop(stream);
    let seen = server.body_dropped().await;
    assert!(!seen.finished, "the body was cut short, not finished");
    seen.at.saturating_duration_since(dropped_at)
}
