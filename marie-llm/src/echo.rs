//! [`EchoProvider`]: a demo provider that needs no model.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use marie_core::{
    FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, ProviderError, Usage,
    estimate_tokens,
};

use crate::words::word_chunks;

/// **A demo, not a model.** Streams the user's newest message back, one chunk per word,
/// waiting `delay` before each word, so that streaming can be watched without any LLM.
///
/// It reports usage with its own counts: the prompt estimated from the request's text, one
/// completion token per word.
#[derive(Clone, Debug)]
pub struct EchoProvider {
    delay: Duration,
}

impl Default for EchoProvider {
    fn default() -> Self {
        Self::new(Duration::from_millis(60))
    }
}

impl EchoProvider {
    /// An echo provider that waits `delay` before each word.
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }

    /// The per-word delay from the environment variable `var` (milliseconds), or 60 ms.
    pub fn from_env_var(var: &str) -> Self {
        let delay = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(60));
        Self::new(delay)
    }
}

#[async_trait]
impl LlmProvider for EchoProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let text = request.last_user_message().unwrap_or_default().to_owned();
        let words = word_chunks(&text);
        let prompt_tokens: u64 = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let usage = Usage::reported(prompt_tokens, words.len() as u64);
        let delay = self.delay;
        let deltas = stream::iter(words).then(move |word| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(LlmEvent::Delta(word))
        });
        let done = stream::once(async move {
            Ok(LlmEvent::Done {
                usage: Some(usage),
                finish_reason: FinishReason::Stop,
            })
        });
        Ok(deltas.chain(done).boxed())
    }

    fn name(&self) -> &str {
        "echo"
    }
}
