//! `MARIE_LLM_FALLBACK`: providers to ask, in order, when the chosen one is unavailable
//! before its answer begins (`marie_llm::FallbackProvider`, docs/providers.md "Retries and
//! fallback").

use std::sync::Arc;

use marie_core::LlmProvider;
use marie_llm::{
    AnthropicProvider, EchoProvider, FallbackProvider, OllamaProvider, OpenAiProvider,
};

/// `primary` as it is when `MARIE_LLM_FALLBACK` is unset or blank; else a
/// [`FallbackProvider`] that asks `primary` first, then each provider the variable names
/// (comma-separated: `openai`, `anthropic`, `ollama`, `echo`), configured from the environment as
/// `MARIE_LLM` is.
pub(crate) fn wrap(
    primary: Arc<dyn LlmProvider>,
) -> Result<Arc<dyn LlmProvider>, Box<dyn std::error::Error>> {
    let list = std::env::var("MARIE_LLM_FALLBACK").unwrap_or_default();
    let mut providers = vec![primary];
    for choice in list.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let provider: Arc<dyn LlmProvider> = match choice {
            "openai" => Arc::new(
                OpenAiProvider::from_env().map_err(|e| format!("fallback OpenAI provider: {e}"))?,
            ),
            "anthropic" => Arc::new(
                AnthropicProvider::from_env()
                    .map_err(|e| format!("fallback Anthropic provider: {e}"))?,
            ),
            "ollama" => Arc::new(
                OllamaProvider::from_env().map_err(|e| format!("fallback Ollama provider: {e}"))?,
            ),
            "echo" => Arc::new(EchoProvider::from_env_var("MARIE_ECHO_DELAY_MS")),
            other => {
                return Err(format!(
                    "MARIE_LLM_FALLBACK: {other:?}: expected openai, anthropic, ollama or echo"
                )
                .into());
            }
        };
        providers.push(provider);
    }
    if providers.len() == 1 {
        return Ok(providers.swap_remove(0));
    }
    let fallback = FallbackProvider::new(providers);
    tracing::info!(
        providers = ?fallback.providers().collect::<Vec<_>>(),
        "providers asked in this order when one is unavailable"
    );
    Ok(Arc::new(fallback))
}
