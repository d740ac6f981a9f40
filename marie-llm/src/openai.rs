//! [`OpenAiProvider`]: any OpenAI-compatible chat completions server, or OpenAI's Responses
//! API, streamed over SSE.
//!
//! ## Layout
//!
//! - `openai.rs`: the provider and its builder, sending a request, and the chat completions
//!   dialect (`messages`, `chat.completion.chunk` events ending with `[DONE]`).
//! - `openai/responses.rs`: the Responses dialect ([`OpenAiApi::Responses`]): `input` items,
//!   and the typed events ending with `response.completed`.

mod responses;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use eventsource_stream::Event;
use marie_core::{
    Attachment, FinishReason, LlmProvider, LlmRequest, LlmStream, ProviderError, ToolCallRef,
    ToolResultRef, Usage,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{
    BaseUrl, CallFragment, ChatDialect, ConfigError, Decoded, FilePart, HttpSettings, RetryPolicy,
    Timeouts, chat_messages, env_lookup, error_message, event_stream, file_parts, for_log,
    parse_http_url, post_json, provider_accessors, redacted, send_with_retry, tools_json,
    without_reserved,
};

/// OpenAI's API, the default base URL.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The model used when none is configured.
pub const OPENAI_DEFAULT_MODEL: &str = "gpt-4o-mini";

const NAME: &str = "openai";
const MISSING_DONE: &str = "the event stream ended without `data: [DONE]`";

/// Which of OpenAI's APIs an [`OpenAiProvider`] speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpenAiApi {
    /// `POST {base_url}/chat/completions`: the chat completions API, which OpenAI-compatible
    /// servers (vLLM, llama.cpp, LM Studio, Ollama's `/v1`, gateways) speak. The default.
    #[default]
    ChatCompletions,
    /// `POST {base_url}/responses`: OpenAI's Responses API, with `input` items,
    /// `instructions` for the system prompt, and typed stream events (reasoning summaries
    /// of reasoning models stream as reasoning).
    Responses,
}

impl OpenAiApi {
    /// The path after the base URL.
    fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat/completions",
            Self::Responses => "responses",
        }
    }
}

impl std::str::FromStr for OpenAiApi {
    type Err = String;

    /// `chat` (or `chat_completions`, `chat-completions`) or `responses`, as `OPENAI_API`
    /// takes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "chat" | "chat_completions" | "chat-completions" | "completions" => {
                Ok(Self::ChatCompletions)
            }
            "responses" => Ok(Self::Responses),
            other => Err(format!("{other:?}: expected `chat` or `responses`")),
        }
    }
}

/// A provider for any server that speaks OpenAI's chat completions API: OpenAI itself,
/// vLLM, the llama.cpp server, LM Studio, Ollama's `/v1`, and the many hosted ones.
///
/// Each answer is one `POST {base_url}/chat/completions` with `stream: true` and
/// `stream_options.include_usage: true`, read as Server-Sent Events; the usage the server
/// reports ends up in `stream_end.usage`. The conversation's history goes in `messages`,
/// after the engine's system prompt and capped to its history window
/// ([`EngineConfig`](marie_core::EngineConfig)`::system_prompt` / `history_window`). A user
/// message with files has `content` parts: its text, then an `image_url` part per image and
/// a `file` part per PDF (both `data:` URLs), and a `text` part for a text file or a file
/// that is gone ([`Attachment::as_text`]). In a group conversation, a user message's author
/// goes in its `name` ([`PromptMessage::author_name_field`](marie_core::PromptMessage::author_name_field)),
/// its text unchanged.
///
/// With [`OpenAiApi::Responses`] ([`OpenAiBuilder::api`], or `OPENAI_API=responses`) it
/// speaks OpenAI's Responses API instead: `POST {base_url}/responses` with `stream: true`
/// and `store: false`, the system prompt as `instructions`, the history as `input` items
/// (messages, a user message's files as `input_image`, `input_file` and `input_text` parts;
/// `function_call` and `function_call_output` items for the calls of an answer), tools as `{type: "function", name, description, parameters, strict: false}`.
/// Its messages have no `name` field: in a group conversation, a user message's author
/// prefixes its text, `[alice] ` ([`PromptMessage::authored_text`](marie_core::PromptMessage::authored_text)).
/// Its typed events map as follows:
///
/// | event | becomes |
/// |---|---|
/// | `response.output_text.delta`, `response.refusal.delta` | answer text |
/// | `response.reasoning_summary_text.delta`, `response.reasoning_text.delta` | reasoning |
/// | `response.output_item.added` (`function_call`), `response.function_call_arguments.delta` / `.done`, `response.output_item.done` | a tool call, named by its `call_id` |
/// | `response.completed` | the end, with usage (`input_tokens`, `output_tokens`); finish `stop`, or `tool_calls` when the model called tools |
/// | `response.incomplete` | the end, finish `length` (`max_output_tokens`), `content_filter`, or the reason given |
/// | `response.failed`, `error` | an error: [`Upstream`](ProviderError::Upstream) (retryable) for `server_error` or no code, [`RateLimited`](ProviderError::RateLimited) for `rate_limit_exceeded`, else [`Status`](ProviderError::Status) 400 (not retried) |
/// | anything else (`response.created`, `response.in_progress`, ...) | nothing |
///
/// A Responses stream that ends without `response.completed` / `response.incomplete` is a
/// [`Protocol`](ProviderError::Protocol) error, like a chat completions stream without
/// `[DONE]`.
///
/// Faults, and what a client sees (`stream_error {code: "provider_unavailable"}` unless
/// said otherwise):
///
/// | fault | error | retried before the answer starts | `retryable` |
/// |---|---|---|---|
/// | connect refused / reset | [`Unreachable`](ProviderError::Unreachable) | yes | yes |
/// | connect timeout | [`Timeout("connect")`](ProviderError::Timeout) | yes | yes |
/// | HTTP 401 / 403 | [`Unauthorized`](ProviderError::Unauthorized) | never | no |
/// | HTTP 429 | [`RateLimited`](ProviderError::RateLimited), honouring `Retry-After` | yes | yes |
/// | HTTP 408, 5xx | [`Status`](ProviderError::Status) | yes | 5xx |
/// | other HTTP 4xx | [`Status`](ProviderError::Status) | no | no |
/// | no first token in time | [`Timeout("first token")`](ProviderError::Timeout) | no | yes |
/// | silence between chunks | [`Timeout("idle")`](ProviderError::Timeout) | no | yes |
/// | `{"error": ...}` in the stream | [`Upstream`](ProviderError::Upstream) | no | yes |
/// | a line that is not a chunk | [`Protocol`](ProviderError::Protocol) | no | no |
/// | the stream ends without `[DONE]` (Responses: `response.completed`) | [`Protocol`](ProviderError::Protocol) | no | no |
/// | the connection breaks mid-stream | [`Disconnected`](ProviderError::Disconnected) | no | yes |
///
/// Retries follow the [`RetryPolicy`] and happen only before any of the answer was read, so
/// text a client has seen is never asked for twice. Dropping the answer stream (the engine
/// does on `cancel_stream` and on shutdown) drops the HTTP response, which closes its
/// connection: the server stops generating.
///
/// Cheap to clone; clones share the HTTP client and its connection pool.
///
/// ```no_run
/// use std::time::Duration;
/// use marie_llm::OpenAiProvider;
///
/// # fn demo() -> Result<(), marie_llm::ConfigError> {
/// // From OPENAI_API_KEY, OPENAI_BASE_URL and OPENAI_MODEL:
/// let provider = OpenAiProvider::from_env()?;
///
/// // Or from code, here a local vLLM server:
/// let provider = OpenAiProvider::builder()
///     .base_url("http://127.0.0.1:8000/v1")
///     .model("Qwen/Qwen2.5-1.5B-Instruct")
///     .temperature(0.2)
///     .max_tokens(512)
///     .first_token_timeout(Duration::from_secs(30))
///     .build()?;
/// # let _ = provider; Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenAiProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: reqwest::Url,
    api: OpenAiApi,
    api_key: Option<SecretString>,
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    include_usage: bool,
    extra_body: Map<String, Value>,
    settings: HttpSettings,
}

impl std::fmt::Debug for OpenAiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = &self.inner;
        f.debug_struct("OpenAiProvider")
            .field("url", &inner.url.as_str())
            .field("api", &inner.api)
            .field("model", &inner.model)
            .field("api_key", &redacted(inner.api_key.as_ref()))
            .field("timeouts", &inner.settings.timeouts)
            .field("retry", &inner.settings.retry)
            .finish_non_exhaustive()
    }
}

impl OpenAiProvider {
    /// A builder with the defaults: OpenAI's base URL, [`OPENAI_DEFAULT_MODEL`], no key.
    pub fn builder() -> OpenAiBuilder {
        OpenAiBuilder::new()
    }

    provider_accessors!(
        OpenAiBuilder,
        "The endpoint requests go to (`{base_url}/chat/completions`, or `{base_url}/responses` \
         with [`OpenAiApi::Responses`])."
    );

    /// The API spoken.
    pub fn api(&self) -> OpenAiApi {
        self.inner.api
    }

    fn body(&self, request: &LlmRequest) -> Vec<u8> {
        let inner = &self.inner;
        if inner.api == OpenAiApi::Responses {
            return self.responses_body(request);
        }
        let mut body = inner.extra_body.clone();
        body.insert("model".into(), request.model_or(&inner.model).into());
        body.insert(
            "messages".into(),
            chat_messages::<OpenAiHistory>(&request.messages).into(),
        );
        body.insert("stream".into(), true.into());
        if !request.tools.is_empty() {
            body.insert("tools".into(), tools_json(&request.tools));
            body.entry("tool_choice").or_insert_with(|| "auto".into());
        }
        if inner.include_usage {
            let options = body.entry("stream_options").or_insert_with(|| json!({}));
            if let Some(options) = options.as_object_mut() {
                options.insert("include_usage".into(), true.into());
            }
        }
        if let Some(t) = inner.temperature {
            body.insert("temperature".into(), crate::http::f32_json(t));
        }
        if let Some(n) = inner.max_tokens {
            body.insert("max_tokens".into(), n.into());
        }
        // A map of JSON values always serializes.
        serde_json::to_vec(&body).unwrap_or_default()
    }

    /// The body of a Responses API request: the system prompt as `instructions`, the
    /// history as `input` items, `store: false` (MARIE keeps the history; override with
    /// `extra_body("store", true)`), the limit as `max_output_tokens`.
    fn responses_body(&self, request: &LlmRequest) -> Vec<u8> {
        let inner = &self.inner;
        let mut body = inner.extra_body.clone();
        let (instructions, input) = responses::instructions_and_input(&request.messages);
        body.insert("model".into(), request.model_or(&inner.model).into());
        if let Some(instructions) = instructions {
            body.insert("instructions".into(), instructions.into());
        }
        body.insert("input".into(), input.into());
        body.insert("stream".into(), true.into());
        body.entry("store").or_insert(false.into());
        if !request.tools.is_empty() {
            body.insert("tools".into(), responses::tools_json(&request.tools));
            body.entry("tool_choice").or_insert_with(|| "auto".into());
        }
        if let Some(t) = inner.temperature {
            body.insert("temperature".into(), crate::http::f32_json(t));
        }
        if let Some(n) = inner.max_tokens {
            body.insert("max_output_tokens".into(), n.into());
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[async_trait]
impl LlmProvider for OpenAiProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let inner = &self.inner;
        let body = self.body(&request);
        let sent = send_with_retry(
            NAME,
            request.model_or(&inner.model),
            &request,
            &inner.settings,
            || {
                let builder = post_json(&inner.client, &inner.url, "text/event-stream", &body);
                match &inner.api_key {
                    // `bearer_auth` marks the header sensitive, so it is never logged.
                    Some(key) => builder.bearer_auth(key.expose_secret()),
                    None => builder,
                }
            },
        )
        .await?;

        let api = inner.api;
        let mut responses = responses::Decoder::default();
        let missing_end = match api {
            OpenAiApi::Responses => responses::MISSING_COMPLETED,
            _ => MISSING_DONE,
        };
        event_stream(
            NAME,
            sent,
            inner.settings.timeouts.idle,
            move |event| match api {
                OpenAiApi::Responses => responses.decode(event),
                _ => decode_event(event),
            },
            missing_end,
        )
        .await
    }

    fn name(&self) -> &str {
        NAME
    }
}

/// The history as chat completions take it: a user message's author in its `name`
/// (below); a user message with files has `content` parts (below); a step that called tools is an assistant message with its `tool_calls`
/// (arguments as JSON text), then one `role:"tool"` message per result, named by
/// `tool_call_id`.
struct OpenAiHistory;

impl ChatDialect for OpenAiHistory {
    /// A user message's author goes in `name`, chat completions' own field for telling the
    /// participants of a conversation apart, and the text is sent as it is: no `[author] `
    /// prefix as well, so the model does not read the author twice (nor learn to write such
    /// prefixes itself). A server that ignores `name` (not every OpenAI-compatible one
    /// honours it) sees the messages as in a conversation of one person.
    const NAME_FIELD: bool = true;

    /// `content` as an array of parts: the message's text first, then per file an
    /// `image_url` part (a `data:` URL: MARIE's files are not on the web for the API to
    /// fetch), a `file` part for a PDF (`filename` and `file_data`, a `data:` URL), or a
    /// `text` part of what stands in for the file (a text file's content, or a note that
    /// names a file that is gone). The message's text goes first, as in OpenAI's own
    /// examples, then the files in the order they were attached.
    fn user(content: &str, attachments: &[Attachment]) -> Value {
        let mut parts = Vec::with_capacity(attachments.len() + 1);
        // The engine refuses empty messages; a caller of the provider might not.
        if !content.is_empty() {
            parts.push(json!({"type": "text", "text": content}));
        }
        parts.extend(
            file_parts(attachments, true)
                .into_iter()
                .map(|part| match part {
                    FilePart::Image(image) => {
                        json!({"type": "image_url", "image_url": {"url": image.data_url()}})
                    }
                    FilePart::Pdf(pdf) => json!({
                        "type": "file",
                        "file": {"filename": pdf.name, "file_data": pdf.data_url()},
                    }),
                    FilePart::Text(text) => json!({"type": "text", "text": text}),
                }),
        );
        json!({"role": "user", "content": parts})
    }

    fn assistant(text: String, calls: &[ToolCallRef<'_>]) -> Value {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments.to_string() },
                })
            })
            .collect();
        let content = if text.is_empty() {
            Value::Null
        } else {
            text.into()
        };
        json!({ "role": "assistant", "content": content, "tool_calls": calls })
    }

    fn result(result: &ToolResultRef<'_>) -> Value {
        json!({ "role": "tool", "tool_call_id": result.id, "content": result.content })
    }
}

/// One `chat.completion.chunk`, as far as MARIE reads it.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    /// A refusal is the model's answer to the user too: it is shown like content.
    #[serde(default)]
    refusal: Option<String>,
    /// Reasoning text (vLLM, DeepSeek: `reasoning_content`; others: `reasoning`): streamed
    /// as `stream_reasoning`, not part of the answer's text.
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

/// A fragment of a streamed tool call: `index` says which call; `id` and the function's
/// `name` come in its first fragment only, `arguments` a unit at a time.
#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Decodes one server-sent event of a chat completions stream.
fn decode_event(event: &Event) -> Result<Decoded, ProviderError> {
    let data = event.data.trim();
    if data == "[DONE]" {
        return Ok(Decoded {
            done: true,
            ..Decoded::default()
        });
    }
    let value: Value = serde_json::from_str(data).map_err(|e| {
        ProviderError::Protocol(format!(
            "an event is not JSON ({e}): {}",
            for_log(&data.chars().take(120).collect::<String>())
        ))
    })?;
    if let Some(message) = error_message(&value) {
        return Err(ProviderError::Upstream(for_log(&message)));
    }
    if event.event == "error" {
        return Err(ProviderError::Upstream(for_log(&value.to_string())));
    }
    let chunk: Chunk = serde_json::from_value(value)
        .map_err(|e| ProviderError::Protocol(format!("not a chat.completion.chunk: {e}")))?;

    let mut unit = Decoded {
        usage: chunk.usage.map(|u| Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u
                .total_tokens
                .unwrap_or(u.prompt_tokens + u.completion_tokens),
            estimated: false,
        }),
        ..Decoded::default()
    };
    // MARIE asks for one choice; a server that sends more is read for the first only.
    for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
        if let Some(reason) = choice.finish_reason.filter(|r| !r.is_empty()) {
            unit.finish = Some(FinishReason::from_provider(&reason));
        }
        let Some(delta) = choice.delta else { continue };
        for text in [delta.content, delta.refusal].into_iter().flatten() {
            unit.generated |= !text.is_empty();
            unit.text.push_str(&text);
        }
        // Servers name it `reasoning_content` (vLLM, DeepSeek) or `reasoning` (others).
        for reasoning in [delta.reasoning_content, delta.reasoning]
            .into_iter()
            .flatten()
        {
            unit.generated |= !reasoning.is_empty();
            unit.reasoning.push_str(&reasoning);
        }
        for call in delta.tool_calls.into_iter().flatten() {
            unit.generated = true;
            let (name, arguments) = call
                .function
                .map(|f| (f.name, f.arguments.unwrap_or_default()))
                .unwrap_or_default();
            unit.call_fragments.push(CallFragment {
                index: call.index,
                id: call.id,
                name,
                arguments,
            });
        }
    }
    Ok(unit)
}

/// Configures an [`OpenAiProvider`].
#[derive(Clone, Debug)]
#[must_use]
pub struct OpenAiBuilder {
    base_url: BaseUrl,
    api: OpenAiApi,
    /// `OPENAI_API` could not be read: what it held, reported by `build`.
    api_env_error: Option<String>,
    api_key: Option<SecretString>,
    model: String,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    include_usage: bool,
    extra_body: Map<String, Value>,
    settings: HttpSettings,
}

impl Default for OpenAiBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenAiBuilder {
    /// The defaults: OpenAI's base URL, [`OPENAI_DEFAULT_MODEL`], no API key, the server's
    /// own temperature and token limit, default [`Timeouts`] and [`RetryPolicy`].
    pub fn new() -> Self {
        Self {
            base_url: BaseUrl::new(OPENAI_DEFAULT_BASE_URL, "base_url"),
            api: OpenAiApi::ChatCompletions,
            api_env_error: None,
            api_key: None,
            model: OPENAI_DEFAULT_MODEL.into(),
            temperature: None,
            max_tokens: None,
            include_usage: true,
            extra_body: Map::new(),
            settings: HttpSettings::default(),
        }
    }

    /// The defaults, overridden by the environment as OpenAI's own SDKs read it:
    ///
    /// | variable | default | meaning |
    /// |---|---|---|
    /// | `OPENAI_API_KEY` | none | sent as `Authorization: Bearer ...` (local servers need none) |
    /// | `OPENAI_BASE_URL` | `https://api.openai.com/v1` | the API root, `/chat/completions` is appended |
    /// | `OPENAI_MODEL` | `gpt-4o-mini` | the model |
    /// | `OPENAI_API` | `chat` | `responses` speaks the Responses API ([`OpenAiApi`]) |
    ///
    /// Blank values count as unset. Every setting can still be changed afterwards; a bad
    /// URL or API name is reported by [`build`](Self::build).
    pub fn from_env() -> Self {
        Self::from_lookup(env_lookup)
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut builder = Self::new();
        if let Some(key) = lookup("OPENAI_API_KEY") {
            builder.api_key = Some(key.into());
        }
        builder.base_url.set_from_env(&lookup, "OPENAI_BASE_URL");
        if let Some(model) = lookup("OPENAI_MODEL") {
            builder.model = model;
        }
        if let Some(api) = lookup("OPENAI_API") {
            match api.parse() {
                Ok(api) => builder.api = api,
                Err(reason) => builder.api_env_error = Some(reason),
            }
        }
        builder
    }

    /// Which API to speak: [`OpenAiApi::ChatCompletions`] (the default, what
    /// OpenAI-compatible servers speak) or [`OpenAiApi::Responses`].
    pub fn api(mut self, api: OpenAiApi) -> Self {
        self.api = api;
        self.api_env_error = None;
        self
    }

    /// The API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`;
    /// requests go to `{base_url}/chat/completions` (or `{base_url}/responses`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url.set(url.into(), "base_url");
        self
    }

    /// The API key, sent as a bearer token. Kept in a [`SecretString`]: never logged.
    pub fn api_key(mut self, key: impl Into<SecretString>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The model to ask.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The sampling temperature (the server's default when unset).
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.temperature = Some(temperature);
        self
    }

    /// The most tokens an answer may have, sent as `max_tokens` (the server's default when
    /// unset), or as `max_output_tokens` to the Responses API. For OpenAI reasoning models
    /// over chat completions, which want `max_completion_tokens`, use
    /// [`extra_body`](Self::extra_body).
    pub fn max_tokens(mut self, tokens: u32) -> Self {
        self.max_tokens = Some(tokens);
        self
    }

    /// Whether to ask for usage with `stream_options.include_usage` (default `true`). Turn
    /// it off for an old server that rejects `stream_options`; MARIE then estimates usage
    /// and marks it `estimated: true`. (The Responses API always reports usage.)
    pub fn include_usage(mut self, include: bool) -> Self {
        self.include_usage = include;
        self
    }

    /// Adds a field to every request body (`top_p`, `seed`, `max_completion_tokens`, ...;
    /// `reasoning: {"summary": "auto"}` for reasoning summaries from the Responses API).
    /// `model`, `messages`, `input` and `stream` are MARIE's and cannot be replaced this way.
    pub fn extra_body(mut self, key: impl Into<String>, value: Value) -> Self {
        self.extra_body.insert(key.into(), value);
        self
    }

    crate::http::http_settings_setters!();

    /// Checks the settings and builds the provider.
    pub fn build(self) -> Result<OpenAiProvider, ConfigError> {
        if let Some(reason) = self.api_env_error {
            return Err(ConfigError::InvalidEnv {
                var: "OPENAI_API",
                reason,
            });
        }
        let url = self.base_url.endpoint(parse_http_url, self.api.path())?;
        let client = self.settings.client(&url)?;
        let extra_body =
            without_reserved(self.extra_body, &["model", "messages", "input", "stream"]);
        Ok(OpenAiProvider {
            inner: Arc::new(Inner {
                client,
                url,
                api: self.api,
                api_key: self.api_key,
                model: self.model,
                temperature: self.temperature,
                max_tokens: self.max_tokens,
                include_usage: self.include_usage,
                extra_body,
                settings: self.settings,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use marie_core::{ConversationId, PromptMessage, UserId};

    use super::*;

    fn event(data: &str) -> Event {
        Event {
            event: "message".into(),
            data: data.into(),
            ..Event::default()
        }
    }

    #[test]
    fn chunks_decode_as_openai_sends_them() {
        let role = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#;
        assert_eq!(decode_event(&event(role)).ok(), Some(Decoded::default()));

        let text = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":null}"#;
        let unit = decode_event(&event(text)).ok();
        assert_eq!(unit.as_ref().map(|p| p.text.as_str()), Some("Hi"));
        assert_eq!(unit.map(|p| p.generated), Some(true));

        let stop = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}"#;
        assert_eq!(
            decode_event(&event(stop)).ok().and_then(|p| p.finish),
            Some(FinishReason::Length)
        );

        let usage = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
        assert_eq!(
            decode_event(&event(usage)).ok().and_then(|p| p.usage),
            Some(Usage::reported(9, 2))
        );

        assert!(decode_event(&event("[DONE]")).is_ok_and(|p| p.done));
    }

    #[test]
    fn reasoning_is_decoded_under_both_names_and_kept_apart_from_the_text() {
        for name in ["reasoning_content", "reasoning"] {
            let data = format!(
                r#"{{"choices":[{{"index":0,"delta":{{"{name}":"hmm"}},"finish_reason":null}}]}}"#
            );
            let unit = decode_event(&event(&data)).expect("decodes");
            assert_eq!((unit.reasoning.as_str(), unit.text.as_str()), ("hmm", ""));
            assert!(unit.generated, "reasoning ends the first-token wait");
        }
    }

    #[test]
    fn errors_in_the_stream() {
        let inband = r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#;
        assert!(matches!(
            decode_event(&event(inband)),
            Err(ProviderError::Upstream(m)) if m.starts_with("The server had an error")
        ));
        let vllm = r#"{"object":"error","message":"context too long","type":"BadRequestError","code":400}"#;
        assert!(matches!(
            decode_event(&event(vllm)),
            Err(ProviderError::Upstream(m)) if m == "context too long"
        ));
        let typed = Event {
            event: "error".into(),
            data: r#"{"message":"overloaded"}"#.into(),
            ..Event::default()
        };
        assert!(matches!(
            decode_event(&typed),
            Err(ProviderError::Upstream(_))
        ));
        assert!(matches!(
            decode_event(&event("{not json")),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            decode_event(&event(r#"{"choices":"nope"}"#)),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn env_configures_and_defaults_apply() {
        let vars: HashMap<&str, &str> = [
            ("OPENAI_API_KEY", "sk-test-123"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("OPENAI_MODEL", "llama-3"),
        ]
        .into();
        let provider = OpenAiBuilder::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(provider.model(), "llama-3");
        let debug = format!("{provider:?}");
        assert!(!debug.contains("sk-test-123"), "{debug}");

        let provider = OpenAiBuilder::from_lookup(|_| None)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "https://api.openai.com/v1/chat/completions");
        assert_eq!(provider.model(), OPENAI_DEFAULT_MODEL);

        let bad = OpenAiBuilder::from_lookup(|k| (k == "OPENAI_BASE_URL").then(|| "nope".into()));
        let err = bad.build().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("OPENAI_BASE_URL"), "{err}");
    }

    #[test]
    fn the_request_body() {
        let provider = OpenAiProvider::builder()
            .base_url("http://127.0.0.1:9/v1")
            .model("m")
            .temperature(0.2)
            .max_tokens(64)
            .extra_body("seed", json!(7))
            .extra_body("stream", json!(false))
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let request = LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages: vec![
                PromptMessage::text(marie_core::MessageRole::System, "Be brief."),
                PromptMessage::text(marie_core::MessageRole::User, "Hi"),
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
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"}
                ],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.2,
                "max_tokens": 64,
                "seed": 7
            })
        );
    }

    /// `OPENAI_API=responses` (or `.api(OpenAiApi::Responses)`) speaks the Responses API:
    /// `/responses`, `instructions`, `input`, `max_output_tokens`, `store: false`.
    #[test]
    fn the_responses_api_from_the_environment_and_its_body() {
        let vars: HashMap<&str, &str> = [
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
            ("OPENAI_API", "responses"),
        ]
        .into();
        let provider = OpenAiBuilder::from_lookup(|k| vars.get(k).map(|v| v.to_string()))
            .model("m")
            .max_tokens(64)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "http://127.0.0.1:9/v1/responses");
        assert_eq!(provider.api(), OpenAiApi::Responses);
        let request = LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages: vec![
                PromptMessage::text(marie_core::MessageRole::System, "Be brief."),
                PromptMessage::text(marie_core::MessageRole::User, "Hi"),
            ],
            tools: vec![marie_core::ToolSpec {
                name: "calculate".into(),
                description: "Math".into(),
                parameters: json!({"type": "object"}),
            }],
            model: None,
        };
        let body: Value =
            serde_json::from_slice(&provider.body(&request)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({
                "model": "m",
                "instructions": "Be brief.",
                "input": [{"role": "user", "content": "Hi"}],
                "stream": true,
                "store": false,
                "tools": [{"type": "function", "name": "calculate", "description": "Math", "parameters": {"type": "object"}, "strict": false}],
                "tool_choice": "auto",
                "max_output_tokens": 64
            })
        );

        for chat in ["chat", "chat_completions", " Chat "] {
            let api = OpenAiBuilder::from_lookup(|k| (k == "OPENAI_API").then(|| chat.into()))
                .build()
                .map(|p| p.api())
                .ok();
            assert_eq!(api, Some(OpenAiApi::ChatCompletions), "{chat}");
        }
        let err = OpenAiBuilder::from_lookup(|k| (k == "OPENAI_API").then(|| "assistants".into()))
            .build()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("OPENAI_API"), "{err}");
    }

    /// Tools go out as `tools` with `tool_choice:"auto"`; an answer that called tools goes
    /// back as OpenAI wants it: per step, an assistant message with `tool_calls` (arguments
    /// as JSON text), then a `role:"tool"` message per result.
    #[test]
    fn tools_and_tool_history_in_the_body() {
        use marie_core::{MessagePart, MessageRole, ToolSpec};
        let provider = OpenAiProvider::builder()
            .base_url("http://127.0.0.1:1/v1")
            .model("m")
            .include_usage(false)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = PromptMessage {
            role: MessageRole::Assistant,
            content: "Let me check.It is 84.".into(),
            parts: vec![
                MessagePart::Reasoning {
                    content: "hmm".into(),
                    signature: None,
                },
                MessagePart::Text {
                    content: "Let me check.".into(),
                },
                MessagePart::ToolCall {
                    tool_call_id: "call_1".into(),
                    name: "calculate".into(),
                    arguments: json!({"expression": "12*7"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "call_1".into(),
                    name: "calculate".into(),
                    output: Some(json!({"value": 84})),
                    error: None,
                },
                MessagePart::ToolCall {
                    tool_call_id: "call_2".into(),
                    name: "send_email".into(),
                    arguments: json!({"to": "bob"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "call_2".into(),
                    name: "send_email".into(),
                    output: None,
                    error: Some("not run: bob denied the call".into()),
                },
                MessagePart::Text {
                    content: "It is 84.".into(),
                },
            ],
            attachments: Vec::new(),
            author: None,
        };
        let request = LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages: vec![PromptMessage::text(MessageRole::User, "12*7?"), answer],
            tools: vec![ToolSpec {
                name: "calculate".into(),
                description: "Math".into(),
                parameters: json!({"type": "object"}),
            }],
            model: None,
        };
        let body: Value =
            serde_json::from_slice(&provider.body(&request)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body["tools"],
            json!([{"type": "function", "function": {"name": "calculate", "description": "Math", "parameters": {"type": "object"}}}])
        );
        assert_eq!(body["tool_choice"], "auto");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "12*7?"},
                {"role": "assistant", "content": "Let me check.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "calculate", "arguments": "{\"expression\":\"12*7\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"value\":84}"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_2", "type": "function", "function": {"name": "send_email", "arguments": "{\"to\":\"bob\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_2", "content": "{\"error\":\"not run: bob denied the call\"}"},
                {"role": "assistant", "content": "It is 84."}
            ])
        );
    }
}
