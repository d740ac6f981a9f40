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
/// A message whose first word is `think` (e.g. "think: what is 2+2?") gets a short reasoning
/// first ([`LlmEvent::Reasoning`]), so that reasoning can be watched too.
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

/// What the echo provider "thinks" before a message that starts with `think`.
const REASONING: &str = "The user wants to see me think. I am a demo without a model, \
so I will repeat their message, word by word.";

/// Whether the message's first word is `think`, in any case, followed by anything.
fn asks_to_think(text: &str) -> bool {
    text.split_whitespace().next().is_some_and(|first| {
        first
            .trim_end_matches(|c: char| !c.is_alphanumeric())
            .eq_ignore_ascii_case("think")
    })
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
        let reasoning = if asks_to_think(&text) {
            word_chunks(REASONING)
        } else {
            Vec::new()
        };
        let usage = Usage::reported(prompt_tokens, (reasoning.len() + words.len()) as u64);
        let delay = self.delay;
        let events = reasoning
            .into_iter()
            .map(LlmEvent::Reasoning)
            .chain(words.into_iter().map(LlmEvent::Delta));
        let deltas = stream::iter(events).then(move |event| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(event)
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
