//! # marie-llm
//!
//! [`LlmProvider`](marie_core::LlmProvider) implementations for
//! [MARIE](https://github.com/marie-rs/marie).
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `echo` | yes | [`EchoProvider`]: **a demo**, streams the user's message back word by word |
//! | `openai` | no | `OpenAiProvider`: any OpenAI-compatible chat completions server (OpenAI, vLLM, llama.cpp, LM Studio, Ollama's `/v1`), or OpenAI's Responses API (`OpenAiApi::Responses`), streamed over SSE |
//! | `anthropic` | no | `AnthropicProvider`: Anthropic's Messages API (Claude), streamed over SSE, with extended thinking (signatures kept) and tool use |
//! | `ollama` | no | `OllamaProvider`: Ollama's native `/api/chat`, streamed as NDJSON |
//! | `rustls` | yes | HTTPS for `openai` / `ollama` / `anthropic` with rustls and the webpki roots; no effect without them |
//!
//! [`ScriptedProvider`] (fixed chunks, delays, faults on cue) is always there, for tests.
//! [`FallbackProvider`] (always there too) asks a list of providers in order when one is
//! unavailable before its answer begins, with a circuit breaker per provider.
//!
//! ## The HTTP providers
//!
//! `OpenAiProvider`, `AnthropicProvider` and `OllamaProvider` are configured from code (a
//! builder) or from the environment (`OPENAI_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_MODEL`,
//! `OPENAI_API`; `ANTHROPIC_API_KEY`, `ANTHROPIC_BASE_URL`, `ANTHROPIC_MODEL`,
//! `ANTHROPIC_MAX_TOKENS`, `ANTHROPIC_THINKING_BUDGET`; `OLLAMA_HOST`, `OLLAMA_MODEL`). They
//! share
//!
//! * `Timeouts`: connect, first token, idle between chunks — silence is bounded, a long
//!   answer is not;
//! * `RetryPolicy`: jittered exponential backoff for connect errors, 408, 429 (honouring
//!   `Retry-After`) and 5xx, bounded, and only before any of the answer was received;
//!   401/403 are never retried;
//! * strict streams: an answer is complete only on the provider's end marker (`[DONE]`,
//!   `response.completed`, `message_stop`, `done: true`); a stream that stops short, an
//!   error object in the stream, or a line that does not decode ends the answer with a
//!   `stream_error`;
//! * cancellation by drop: dropping the answer stream drops the HTTP response and closes
//!   its connection (no task is left behind), so a cancelled answer stops upstream at once;
//! * metrics: `marie_provider_retries_total{provider, reason}`.
//!
//! The system prompt and the cap on how much history is sent are the engine's, and apply
//! to every provider: `EngineConfig::system_prompt` and `EngineConfig::history_window` in
//! `marie-core`.
//!
//! Errors carry details for logs; what clients see is the engine's safe message
//! (`provider_unavailable`, "the language model is unavailable"): never an upstream body,
//! never a key.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use marie_llm::EchoProvider;
//!
//! let provider = EchoProvider::new(Duration::from_millis(40));
//! # let _ = provider;
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "anthropic")]
mod anthropic;
#[cfg(feature = "echo")]
mod echo;
mod fallback;
#[cfg(any(feature = "openai", feature = "ollama", feature = "anthropic"))]
mod http;
#[cfg(feature = "ollama")]
mod ollama;
#[cfg(feature = "openai")]
mod openai;
mod scripted;
#[cfg(feature = "echo")]
mod words;

#[cfg(feature = "anthropic")]
pub use anthropic::{
    ANTHROPIC_DEFAULT_BASE_URL, ANTHROPIC_DEFAULT_MAX_TOKENS, ANTHROPIC_DEFAULT_MODEL,
    ANTHROPIC_VERSION, AnthropicBuilder, AnthropicProvider,
};
#[cfg(feature = "echo")]
pub use echo::EchoProvider;
pub use fallback::{CircuitState, FallbackProvider};
#[cfg(any(feature = "openai", feature = "ollama", feature = "anthropic"))]
pub use http::{ConfigError, RetryPolicy, Timeouts};
#[cfg(feature = "ollama")]
pub use ollama::{OLLAMA_DEFAULT_HOST, OLLAMA_DEFAULT_MODEL, OllamaBuilder, OllamaProvider};
#[cfg(feature = "openai")]
pub use openai::{
    OPENAI_DEFAULT_BASE_URL, OPENAI_DEFAULT_MODEL, OpenAiApi, OpenAiBuilder, OpenAiProvider,
};
/// The HTTP client the providers use, for their builders' `http_client` (e.g.
/// `OpenAiBuilder::http_client`).
#[cfg(any(feature = "openai", feature = "ollama", feature = "anthropic"))]
pub use reqwest;
pub use scripted::ScriptedProvider;
