//! [`AnthropicProvider`]: Anthropic's Messages API, streamed over SSE.
//!
//! ## Layout
//!
//! - `mod.rs`: the provider, its builder, and sending a request (headers, retries, the
//!   event stream handed to the shared driver of `crate::http`).
//! - `body.rs`: the request body: the system prompt in `system`, the history as `messages`
//!   with content blocks (a user message's files as `image` / `document` / `text` blocks
//!   before its text, prefixed `[author] ` in a group conversation; signed thinking, text,
//!   `tool_use`, `tool_result`), the `tools`.
//! - `wire.rs`: the stream's events (`message_start` ... `message_stop`, `ping`, `error`)
//!   decoded into the units the driver turns into [`LlmEvent`](marie_core::LlmEvent)s.

mod body;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use marie_core::{LlmProvider, LlmRequest, LlmStream, ProviderError};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use crate::http::{
    BaseUrl, ConfigError, HttpSettings, RetryPolicy, Timeouts, env_lookup, event_stream,
    parse_http_url, post_json, provider_accessors, redacted, send_with_retry, without_reserved,
};

/// Anthropic's API, the default base URL.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The model used when none is configured.
pub const ANTHROPIC_DEFAULT_MODEL: &str = "claude-haiku-4-5";
/// The most tokens an answer may have when none is configured (the API requires a limit).
pub const ANTHROPIC_DEFAULT_MAX_TOKENS: u32 = 4096;
/// The API version sent as `anthropic-version`.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

const NAME: &str = "anthropic";
const MISSING_STOP: &str = "the event stream ended without `message_stop`";

/// A provider for [Anthropic](https://docs.anthropic.com)'s Messages API (Claude).
///
/// Each answer is one `POST {base_url}/v1/messages` with `stream: true`, the headers
/// `x-api-key` and `anthropic-version: 2023-06-01`, read as Server-Sent Events. The engine's
/// system prompt goes in the top-level `system` field, the history in `messages`, capped to
/// its history window ([`EngineConfig`](marie_core::EngineConfig)`::system_prompt` /
/// `history_window`); tools are offered as `tools: [{name, description, input_schema}]`.
/// A user message with files is content blocks, the files first (Anthropic advises images
/// and documents before the question): an `image` block per image, a `document` block per
/// PDF (both `base64` sources), a `text` block for a text file or a file that is gone, then
/// the message's text. Messages have no `name` field: in a group conversation, a user
/// message's author prefixes its text, `[alice] `
/// ([`PromptMessage::authored_text`](marie_core::PromptMessage::authored_text)).
///
/// What the stream says, and what MARIE makes of it:
///
/// | event | becomes |
/// |---|---|
/// | `message_start` | the prompt's usage (`input_tokens`, cache reads and writes included) |
/// | `text` block, `text_delta` | answer text (`LlmEvent::Delta`) |
/// | `thinking` block, `thinking_delta` | reasoning (`LlmEvent::Reasoning`) |
/// | `signature_delta` | the thinking block's signature (`LlmEvent::ReasoningSignature`), kept on the reasoning part and sent back with it |
/// | `redacted_thinking` block | its opaque `data` (`LlmEvent::RedactedReasoning`), kept as a `redacted_reasoning` part, never streamed to clients, sent back in its place |
/// | `tool_use` block, `input_json_delta` | a tool call (`ToolCallStart`, `ToolCallDelta`, then `ToolCall` with the arguments parsed) |
/// | `message_delta` | the stop reason (`end_turn`/`stop_sequence` → `stop`, `max_tokens` → `length`, `tool_use` → `tool_calls`, `refusal` → `content_filter`) and the output usage |
/// | `message_stop` | the end: the answer is complete |
/// | `ping`, unknown events and block types (server tools) | nothing |
///
/// An answer that thought, then called tools, goes back in the next request as the API
/// requires: the assistant message's `thinking` blocks (with their `signature`) and
/// `redacted_thinking` blocks (their `data` unchanged), in the order the model gave them,
/// first, then its text and `tool_use` blocks, then a user message of `tool_result` blocks
/// (`is_error` when the call has no output). Reasoning without a signature (from another
/// provider) is not sent back.
///
/// Faults behave as for [`OpenAiProvider`](crate::OpenAiProvider) (see its table); HTTP 529
/// (overloaded) is a 5xx like any other, retried before the answer starts. The end marker
/// is `message_stop`. An `error` event mid-stream is mapped by its type:
///
/// | `error.type` | error | retried by the engine mid-stream |
/// |---|---|---|
/// | `overloaded_error`, `api_error`, `timeout_error`, unknown | [`Upstream`](ProviderError::Upstream) | yes |
/// | `rate_limit_error` | [`RateLimited`](ProviderError::RateLimited) | yes |
/// | `authentication_error`, `permission_error` | [`Unauthorized`](ProviderError::Unauthorized) (401, 403) | no |
/// | `invalid_request_error`, `billing_error`, `not_found_error`, `request_too_large` | [`Status`](ProviderError::Status) (400, 402, 404, 413) | no |
///
/// Cheap to clone; clones share the HTTP client and its connection pool.
///
/// ```no_run
/// use marie_llm::AnthropicProvider;
///
/// # fn demo() -> Result<(), marie_llm::ConfigError> {
/// // From ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, ANTHROPIC_MODEL, ...:
/// let provider = AnthropicProvider::from_env()?;
///
/// // Or from code, with extended thinking:
/// let provider = AnthropicProvider::builder()
///     .api_key(std::env::var("ANTHROPIC_API_KEY").unwrap_or_default())
///     .model("claude-sonnet-4-5")
///     .max_tokens(8192)
///     .thinking(4096)
///     .build()?;
/// # let _ = provider; Ok(()) }
/// ```
#[derive(Clone)]
pub struct AnthropicProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `x-api-key`, marked sensitive (never logged).
    api_key: Option<HeaderValue>,
    model: String,
    max_tokens: u32,
    temperature: Option<f32>,
    thinking_budget: Option<u32>,
    extra_body: Map<String, Value>,
    settings: HttpSettings,
}

impl std::fmt::Debug for AnthropicProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("AnthropicProvider")
            .field("url", &inner.url.as_str())
            .field("model", &inner.model)
            .field("api_key", &redacted(inner.api_key.as_ref()))
            .field("max_tokens", &inner.max_tokens)
            .field("thinking_budget", &inner.thinking_budget)
            .field("timeouts", &inner.settings.timeouts)
            .field("retry", &inner.settings.retry)
            .finish_non_exhaustive()
    }
}

impl AnthropicProvider {
    /// A builder with the defaults: Anthropic's base URL, [`ANTHROPIC_DEFAULT_MODEL`],
    /// [`ANTHROPIC_DEFAULT_MAX_TOKENS`], no key.
    pub fn builder() -> AnthropicBuilder {
        AnthropicBuilder::new()
    }

    provider_accessors!(
        AnthropicBuilder,
        "The endpoint requests go to (`{base_url}/v1/messages`)."
    );

    fn body(&self, request: &LlmRequest) -> Vec<u8> {
        let inner = &self.inner;
        let mut body = inner.extra_body.clone();
        let (system, messages) = body::system_and_messages(&request.messages);
        body.insert("model".into(), request.model_or(&inner.model).into());
        body.insert("max_tokens".into(), inner.max_tokens.into());
        if let Some(system) = system {
            body.insert("system".into(), system.into());
        }
        body.insert("messages".into(), messages.into());
        body.insert("stream".into(), true.into());
        if !request.tools.is_empty() {
            body.insert("tools".into(), body::tools_json(&request.tools));
        }
        if let Some(t) = inner.temperature {
            body.insert("temperature".into(), crate::http::f32_json(t));
        }
        if let Some(budget) = inner.thinking_budget {
            body.insert(
                "thinking".into(),
                serde_json::json!({"type": "enabled", "budget_tokens": budget}),
            );
        }
        // A map of JSON values always serializes.
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[async_trait]
impl LlmProvider for AnthropicProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let inner = &self.inner;
        let body = self.body(&request);
        let sent = send_with_retry(
            NAME,
            request.model_or(&inner.model),
            &request,
            &inner.settings,
            || {
                let builder = post_json(&inner.client, &inner.url, "text/event-stream", &body)
                    .header("anthropic-version", ANTHROPIC_VERSION);
                match &inner.api_key {
                    Some(key) => builder.header("x-api-key", key.clone()),
                    None => builder,
                }
            },
        )
        .await?;

        let mut decoder = wire::Decoder::default();
        event_stream(
            NAME,
            sent,
            inner.settings.timeouts.idle,
            move |event| decoder.decode(event),
            MISSING_STOP,
        )
        .await
    }

    fn name(&self) -> &str {
        NAME
    }
}

/// Configures an [`AnthropicProvider`].
#[derive(Clone, Debug)]
#[must_use]
pub struct AnthropicBuilder {
    base_url: BaseUrl,
    api_key: Option<SecretString>,
    api_key_source: &'static str,
    model: String,
    max_tokens: u32,
    temperature: Option<f32>,
    thinking_budget: Option<u32>,
    extra_body: Map<String, Value>,
    settings: HttpSettings,
    /// A variable of the environment that could not be read, reported by `build`.
    env_error: Option<(&'static str, String)>,
}

impl Default for AnthropicBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AnthropicBuilder {
    /// The defaults: Anthropic's base URL, [`ANTHROPIC_DEFAULT_MODEL`],
    /// [`ANTHROPIC_DEFAULT_MAX_TOKENS`], no API key, no extended thinking, the API's own
    /// temperature, default [`Timeouts`] and [`RetryPolicy`].
    pub fn new() -> Self {
        Self {
            base_url: BaseUrl::new(ANTHROPIC_DEFAULT_BASE_URL, "base_url"),
            api_key: None,
            api_key_source: "api_key",
            model: ANTHROPIC_DEFAULT_MODEL.into(),
            max_tokens: ANTHROPIC_DEFAULT_MAX_TOKENS,
            temperature: None,
            thinking_budget: None,
            extra_body: Map::new(),
            settings: HttpSettings::default(),
            env_error: None,
        }
    }

    /// The defaults, overridden by the environment as Anthropic's own SDKs read it:
    ///
    /// | variable | default | meaning |
    /// |---|---|---|
    /// | `ANTHROPIC_API_KEY` | none | sent as `x-api-key` (a local proxy may need none) |
    /// | `ANTHROPIC_BASE_URL` | `https://api.anthropic.com` | the API root, `/v1/messages` is appended |
    /// | `ANTHROPIC_MODEL` | `claude-haiku-4-5` | the model |
    /// | `ANTHROPIC_MAX_TOKENS` | `4096` | the most tokens an answer may have (`max_tokens`) |
    /// | `ANTHROPIC_THINKING_BUDGET` | unset | tokens for extended thinking; unset: none |
    ///
    /// Blank values count as unset. Every setting can still be changed afterwards; a bad
    /// URL or number is reported by [`build`](Self::build).
    pub fn from_env() -> Self {
        Self::from_lookup(env_lookup)
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut builder = Self::new();
        if let Some(key) = lookup("ANTHROPIC_API_KEY") {
            builder.api_key = Some(key.into());
            builder.api_key_source = "ANTHROPIC_API_KEY";
        }
        builder.base_url.set_from_env(&lookup, "ANTHROPIC_BASE_URL");
        if let Some(model) = lookup("ANTHROPIC_MODEL") {
            builder.model = model;
        }
        for var in ["ANTHROPIC_MAX_TOKENS", "ANTHROPIC_THINKING_BUDGET"] {
            let Some(text) = lookup(var) else { continue };
            match text.parse::<u32>() {
                Ok(n) if n > 0 => {
                    if var == "ANTHROPIC_MAX_TOKENS" {
                        builder.max_tokens = n;
                    } else {
                        builder.thinking_budget = Some(n);
                    }
                }
                _ => {
                    builder.env_error = Some((var, format!("{text:?} is not a positive number")));
                }
            }
        }
        builder
    }

    /// The API root, e.g. `https://api.anthropic.com` or a gateway's; requests go to
    /// `{base_url}/v1/messages`.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url.set(url.into(), "base_url");
        self
    }

    /// The API key, sent as `x-api-key`. Kept in a [`SecretString`], and the header is
    /// marked sensitive: never logged.
    pub fn api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.api_key = Some(key.into());
        self.api_key_source = "api_key";
        self
    }

    /// The model to ask, e.g. `claude-sonnet-4-5`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The most tokens an answer may have, thinking included (`max_tokens`, which the API
    /// requires; default [`ANTHROPIC_DEFAULT_MAX_TOKENS`]).
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = tokens;
        self
    }

    /// The sampling temperature (the API's default when unset). The API refuses it together
    /// with extended [`thinking`](Self::thinking).
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// Turns on extended thinking with a budget of `budget_tokens` (at least 1024, and less
    /// than [`max_tokens`](Self::max_tokens), as the API requires):
    /// `thinking: {type: "enabled", budget_tokens}`. The model's thinking streams as
    /// reasoning, and its signature is kept and sent back with it.
    pub fn thinking(mut self, budget_tokens: u32) -> Self {
        self.thinking_budget = Some(budget_tokens);
        self
    }

    /// Adds a field to every request body (`top_k`, `metadata`, `stop_sequences`, ...).
    /// `model`, `messages` and `stream` are MARIE's and cannot be replaced this way.
    pub fn extra_body(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra_body.insert(key.into(), value);
        self
    }

    crate::http::http_settings_setters!();

    /// Checks the settings and builds the provider.
    pub fn build(self) -> Result<AnthropicProvider, ConfigError> {
        if let Some((var, reason)) = self.env_error {
            return Err(ConfigError::InvalidEnv { var, reason });
        }
        let url = self.base_url.endpoint(parse_http_url, "v1/messages")?;
        let client = self.settings.client(&url)?;
        let api_key = match &self.api_key {
            None => None,
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(key.expose_secret().trim()).map_err(|_| {
                        ConfigError::InvalidEnv {
                            var: self.api_key_source,
                            reason: "not a valid HTTP header value".into(),
                        }
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        let extra_body = without_reserved(self.extra_body, &["model", "messages", "stream"]);
        Ok(AnthropicProvider {
            inner: Arc::new(Inner {
                client,
                url,
                api_key,
                model: self.model,
                max_tokens: self.max_tokens,
                temperature: self.temperature,
                thinking_budget: self.thinking_budget,
                extra_body,
                settings: self.settings,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use marie_core::{ConversationId, MessageRole, PromptMessage, UserId};
    use serde_json::json;

    use super::*;

    #[test]
    fn env_configures_and_defaults_apply() {
        let vars: HashMap<&str, &str> = [
            ("ANTHROPIC_API_KEY", "sk-ant-test-123"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:9/"),
            ("ANTHROPIC_MODEL", "claude-sonnet-4-5"),
            ("ANTHROPIC_MAX_TOKENS", "2048"),
            ("ANTHROPIC_THINKING_BUDGET", "1024"),
        ]
        .into();
        let provider = AnthropicBuilder::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "http://127.0.0.1:9/v1/messages");
        assert_eq!(provider.model(), "claude-sonnet-4-5");
        assert_eq!(provider.inner.max_tokens, 2048);
        assert_eq!(provider.inner.thinking_budget, Some(1024));
        let debug = format!("{provider:?}");
        assert!(!debug.contains("sk-ant-test-123"), "{debug}");

        let provider = AnthropicBuilder::from_lookup(|_| None)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "https://api.anthropic.com/v1/messages");
        assert_eq!(provider.model(), ANTHROPIC_DEFAULT_MODEL);
        assert_eq!(provider.inner.max_tokens, ANTHROPIC_DEFAULT_MAX_TOKENS);
        assert!(provider.inner.api_key.is_none());

        for (var, value) in [
            ("ANTHROPIC_BASE_URL", "nope"),
            ("ANTHROPIC_MAX_TOKENS", "lots"),
            ("ANTHROPIC_THINKING_BUDGET", "0"),
            ("ANTHROPIC_API_KEY", "bad\nkey"),
        ] {
            let err = AnthropicBuilder::from_lookup(|k| (k == var).then(|| value.into()))
                .build()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn the_request_body() {
        let provider = AnthropicProvider::builder()
            .base_url("http://127.0.0.1:9")
            .model("m")
            .max_tokens(64)
            .temperature(0.2)
            .extra_body("top_k", json!(5))
            .extra_body("stream", json!(false))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let request = LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages: vec![
                PromptMessage::text(MessageRole::System, "Be brief."),
                PromptMessage::text(MessageRole::User, "Hi"),
            ],
            tools: Vec::new(),
            model: None,
        };
        let body: Value =
            serde_json::from_slice(&provider.body(&request)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({
                "model": "m",
                "max_tokens": 64,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": true,
                "temperature": 0.2,
                "top_k": 5
            })
        );
    }
}
