//! [`OllamaProvider`]: Ollama's native `/api/chat`, streamed as NDJSON.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use marie_core::{
    Attachment, FinishReason, LlmProvider, LlmRequest, LlmStream, ProviderError, ToolCall,
    ToolCallRef, ToolResultRef, Usage,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::io::StreamReader;

use crate::http::{
    BaseUrl, ChatDialect, ConfigError, Decoded, FilePart, HttpSettings, RetryPolicy, Timeouts,
    answer_stream, body_error, chat_messages, env_lookup, error_chain, f32_json, file_parts,
    for_log, new_call_id, parse_http_url, post_json, provider_accessors, send_with_retry,
    tools_json,
};

/// Where Ollama listens by default.
pub const OLLAMA_DEFAULT_HOST: &str = "http://127.0.0.1:11434";
/// The model used when none is configured.
pub const OLLAMA_DEFAULT_MODEL: &str = "llama3.2";

const NAME: &str = "ollama";
const MISSING_DONE: &str = "the NDJSON stream ended without a `\"done\": true` line";
/// The longest NDJSON line accepted (one token's line is ~200 bytes; the last one ~400).
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// A provider for [Ollama](https://ollama.com)'s native chat API.
///
/// Each answer is one `POST {host}/api/chat` with `stream: true`, read as newline-delimited
/// JSON: one object per line, each with a `message.content` delta, the last with
/// `done: true`, `done_reason` and the token counts `prompt_eval_count` / `eval_count`,
/// which become `stream_end.usage` (when Ollama leaves one out, MARIE estimates usage and
/// marks it `estimated: true`). Lines split across network reads, and characters split
/// across them, are put back together before decoding.
///
/// The conversation's history goes in `messages`, after the engine's system prompt and
/// capped to its history window ([`EngineConfig`](marie_core::EngineConfig)). Of a user
/// message's files, `/api/chat` takes images only: they go as base64 in the message's
/// `images`; a PDF, a text file and a file that is gone are added to its `content` as text
/// ([`Attachment::as_text`]). Its messages have no `name` field: in a group conversation, a
/// user message's author prefixes its text, `[alice] `
/// ([`PromptMessage::authored_text`](marie_core::PromptMessage::authored_text)). Faults,
/// retries and cancellation behave as for [`OpenAiProvider`](crate::OpenAiProvider) (see its table);
/// the end marker is the `done: true` line, and an `{"error": "..."}` line is an
/// [`Upstream`](ProviderError::Upstream) error. The default first-token timeout is 120 s,
/// since Ollama may have to load the model into memory first.
///
/// ```no_run
/// use marie_llm::OllamaProvider;
///
/// # fn demo() -> Result<(), marie_llm::ConfigError> {
/// // From OLLAMA_HOST and OLLAMA_MODEL:
/// let provider = OllamaProvider::from_env()?;
///
/// // Or from code:
/// let provider = OllamaProvider::builder()
///     .host("http://gpu-box:11434")
///     .model("qwen2.5:7b")
///     .option("num_ctx", serde_json::json!(8192))
///     .build()?;
/// # let _ = provider; Ok(()) }
/// ```
#[derive(Clone)]
pub struct OllamaProvider {
    inner: Arc<Inner>,
}

struct Inner {
    client: reqwest::Client,
    url: reqwest::Url,
    model: String,
    options: Map<String, Value>,
    keep_alive: Option<String>,
    settings: HttpSettings,
}

impl std::fmt::Debug for OllamaProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OllamaProvider")
            .field("url", &self.inner.url.as_str())
            .field("model", &self.inner.model)
            .field("timeouts", &self.inner.settings.timeouts)
            .field("retry", &self.inner.settings.retry)
            .finish_non_exhaustive()
    }
}

impl OllamaProvider {
    /// A builder with the defaults: [`OLLAMA_DEFAULT_HOST`], [`OLLAMA_DEFAULT_MODEL`].
    pub fn builder() -> OllamaBuilder {
        OllamaBuilder::new()
    }

    provider_accessors!(
        OllamaBuilder,
        "The endpoint requests go to (`{host}/api/chat`)."
    );

    fn body(&self, request: &LlmRequest) -> Vec<u8> {
        let inner = &self.inner;
        let mut body = Map::new();
        body.insert("model".into(), request.model_or(&inner.model).into());
        body.insert(
            "messages".into(),
            chat_messages::<OllamaHistory>(&request.messages).into(),
        );
        body.insert("stream".into(), true.into());
        if !request.tools.is_empty() {
            body.insert("tools".into(), tools_json(&request.tools));
        }
        if !inner.options.is_empty() {
            body.insert("options".into(), inner.options.clone().into());
        }
        if let Some(keep_alive) = &inner.keep_alive {
            body.insert("keep_alive".into(), keep_alive.clone().into());
        }
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

#[async_trait]
impl LlmProvider for OllamaProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let inner = &self.inner;
        let body = self.body(&request);
        let sent = send_with_retry(
            NAME,
            request.model_or(&inner.model),
            &request,
            &inner.settings,
            || post_json(&inner.client, &inner.url, "application/x-ndjson", &body),
        )
        .await?;

        // `LinesCodec` frames lines over a byte reader: it buffers a line until its `\n`
        // arrives, however the bytes were split into reads, and only then decodes it as
        // UTF-8, so a character split across reads is whole again. Its length cap bounds
        // the buffer.
        let bytes = sent.response.bytes_stream().map_err(io::Error::other);
        let lines = FramedRead::new(
            StreamReader::new(bytes),
            LinesCodec::new_with_max_length(MAX_LINE_BYTES),
        );
        let units = lines.map(|line| match line {
            Ok(line) => decode_line(&line),
            Err(e) => Err(line_error(e)),
        });
        Ok(answer_stream(
            units,
            sent.first_token_deadline,
            inner.settings.timeouts.idle,
            MISSING_DONE,
        ))
    }

    fn name(&self) -> &str {
        NAME
    }
}

/// The history as `/api/chat` takes it: a user message's author prefixes its text; a user
/// message with files has its images in `images` (below); a step that called tools is an
/// assistant message with its `tool_calls` (arguments as an object), then one
/// `role:"tool"` message per result, named by `tool_name`.
struct OllamaHistory;

impl ChatDialect for OllamaHistory {
    /// `/api/chat` messages have no `name` field: a user message's author prefixes its text.
    const NAME_FIELD: bool = false;

    /// `/api/chat` takes images only, as base64 in the message's `images` (no `data:`
    /// prefix), a field left out when the message has none. Every other file (a PDF, a text
    /// file, one that is gone) is appended to `content` as text, each after a blank line,
    /// so that the model still knows of every file the user attached.
    fn user(content: &str, attachments: &[Attachment]) -> Value {
        let mut text = content.to_owned();
        let mut images = Vec::new();
        for part in file_parts(attachments, false) {
            match part {
                FilePart::Image(image) => images.push(image.base64),
                FilePart::Text(file) => {
                    if !text.is_empty() {
                        text.push_str("\n\n");
                    }
                    text.push_str(&file);
                }
                // Not given when documents are not taken (`file_parts(_, false)`).
                FilePart::Pdf(_) => {}
            }
        }
        let mut message = json!({"role": "user", "content": text});
        if !images.is_empty() {
            message["images"] = images.into();
        }
        message
    }

    fn assistant(text: String, calls: &[ToolCallRef<'_>]) -> Value {
        let calls: Vec<Value> = calls
            .iter()
            .map(|c| json!({ "function": { "name": c.name, "arguments": c.arguments } }))
            .collect();
        json!({ "role": "assistant", "content": text, "tool_calls": calls })
    }

    fn result(result: &ToolResultRef<'_>) -> Value {
        json!({ "role": "tool", "tool_name": result.name, "content": result.content })
    }
}

fn line_error(e: LinesCodecError) -> ProviderError {
    match e {
        LinesCodecError::MaxLineLengthExceeded => {
            ProviderError::Protocol(format!("a line is longer than {MAX_LINE_BYTES} bytes"))
        }
        LinesCodecError::Io(e) if e.kind() == io::ErrorKind::InvalidData => {
            ProviderError::Protocol("a line is not UTF-8".into())
        }
        LinesCodecError::Io(e) => match e
            .into_inner()
            .map(|inner| inner.downcast::<reqwest::Error>())
        {
            Some(Ok(e)) => body_error(*e),
            Some(Err(other)) => ProviderError::Disconnected(error_chain(other.as_ref())),
            None => ProviderError::Disconnected("the connection broke".into()),
        },
    }
}

/// One line of an `/api/chat` stream, as far as MARIE reads it.
#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<String>,
    /// A thinking model's reasoning: streamed as `stream_reasoning`.
    #[serde(default)]
    thinking: Option<String>,
    /// Whole calls: `{function: {name, arguments: {...}}}`, with an `id` in newer versions.
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Decodes one NDJSON line.
fn decode_line(line: &str) -> Result<Decoded, ProviderError> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Decoded::default());
    }
    let parsed: Line = serde_json::from_str(line).map_err(|e| {
        ProviderError::Protocol(format!(
            "a line is not a chat response ({e}): {}",
            for_log(&line.chars().take(120).collect::<String>())
        ))
    })?;
    if let Some(error) = parsed.error.filter(|e| !e.is_null()) {
        let message = error
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| error.to_string());
        return Err(ProviderError::Upstream(for_log(&message)));
    }
    let mut unit = Decoded::default();
    if let Some(message) = parsed.message {
        unit.text = message.content.unwrap_or_default();
        unit.reasoning = message.thinking.unwrap_or_default();
        for call in message.tool_calls.into_iter().flatten() {
            let arguments = match call.function.arguments {
                None | Some(Value::Null) => json!({}),
                Some(object @ Value::Object(_)) => object,
                // Some servers behind an Ollama API send the arguments as JSON text.
                Some(Value::String(text)) => serde_json::from_str(&text)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| {
                        ProviderError::Protocol(format!(
                            "the arguments of a call of {} are not a JSON object",
                            call.function.name
                        ))
                    })?,
                Some(_) => {
                    return Err(ProviderError::Protocol(format!(
                        "the arguments of a call of {} are not a JSON object",
                        call.function.name
                    )));
                }
            };
            unit.calls.push(ToolCall {
                id: call
                    .id
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(new_call_id),
                name: call.function.name,
                arguments,
            });
        }
        unit.generated =
            !unit.text.is_empty() || !unit.reasoning.is_empty() || !unit.calls.is_empty();
    }
    if parsed.done {
        unit.done = true;
        unit.finish = Some(
            parsed
                .done_reason
                .filter(|r| !r.is_empty())
                .map_or(FinishReason::Stop, |r| FinishReason::from_provider(&r)),
        );
        unit.usage = match (parsed.prompt_eval_count, parsed.eval_count) {
            (Some(prompt), Some(completion)) => Some(Usage::reported(prompt, completion)),
            // Ollama leaves counts out (a cached prompt, some versions): better an estimate,
            // marked as one, than a figure that looks exact and is not.
            _ => None,
        };
    }
    Ok(unit)
}

/// Reads `OLLAMA_HOST` the way the `ollama` command does: `host`, `host:port`,
/// `scheme://host:port/path`; the scheme defaults to `http`, the port to 11434 without a
/// scheme (80 / 443 with one), the host to 127.0.0.1.
pub(crate) fn parse_ollama_host(
    source_name: &'static str,
    value: &str,
) -> Result<reqwest::Url, ConfigError> {
    let value = value.trim();
    let (scheme, rest, default_port) = match value.split_once("://") {
        None => ("http", value, 11434),
        Some(("http", rest)) => ("http", rest, 80),
        Some(("https", rest)) => ("https", rest, 443),
        Some((other, _)) => {
            return Err(ConfigError::InvalidUrl {
                source_name,
                reason: format!("scheme `{other}` is not http or https"),
            });
        }
    };
    let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        match bracketed.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (bracketed, None),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            // No port, or a bare IPv6 address.
            _ => (hostport, None),
        }
    };
    let port = port
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or(default_port);
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    parse_http_url(source_name, &format!("{scheme}://{host}:{port}/{path}"))
}

/// Configures an [`OllamaProvider`].
#[derive(Clone, Debug)]
#[must_use]
pub struct OllamaBuilder {
    host: BaseUrl,
    model: String,
    options: Map<String, Value>,
    keep_alive: Option<String>,
    settings: HttpSettings,
}

impl Default for OllamaBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl OllamaBuilder {
    /// The defaults: [`OLLAMA_DEFAULT_HOST`], [`OLLAMA_DEFAULT_MODEL`], the model's own
    /// options, default [`Timeouts`] with a 120 s first-token timeout, default
    /// [`RetryPolicy`].
    pub fn new() -> Self {
        Self {
            host: BaseUrl::new(OLLAMA_DEFAULT_HOST, "host"),
            model: OLLAMA_DEFAULT_MODEL.into(),
            options: Map::new(),
            keep_alive: None,
            settings: HttpSettings {
                timeouts: Timeouts::default().first_token(Duration::from_secs(120)),
                ..HttpSettings::default()
            },
        }
    }

    /// The defaults, overridden by the environment as the `ollama` command reads it:
    ///
    /// | variable | default | meaning |
    /// |---|---|---|
    /// | `OLLAMA_HOST` | `127.0.0.1:11434` | where Ollama listens (`host[:port]` or a URL) |
    /// | `OLLAMA_MODEL` | `llama3.2` | the model |
    ///
    /// Blank values count as unset; a bad host is reported by [`build`](Self::build).
    pub fn from_env() -> Self {
        Self::from_lookup(env_lookup)
    }

    pub(crate) fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut builder = Self::new();
        builder.host.set_from_env(&lookup, "OLLAMA_HOST");
        if let Some(model) = lookup("OLLAMA_MODEL") {
            builder.model = model;
        }
        builder
    }

    /// Where Ollama listens: a URL (`http://127.0.0.1:11434`) or, as `OLLAMA_HOST`
    /// accepts, `host[:port]`.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host.set(host.into(), "host");
        self
    }

    /// The model to ask (`llama3.2`, `qwen2.5:7b`, ...).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The sampling temperature (`options.temperature`; the model's default when unset).
    pub fn temperature(self, temperature: f32) -> Self {
        self.option("temperature", f32_json(temperature))
    }

    /// The most tokens an answer may have (`options.num_predict`).
    pub fn max_tokens(self, tokens: u32) -> Self {
        self.option("num_predict", tokens.into())
    }

    /// Sets any model option (`num_ctx`, `top_p`, `seed`, ...), sent in `options`.
    pub fn option(mut self, key: impl Into<String>, value: Value) -> Self {
        self.options.insert(key.into(), value);
        self
    }

    /// How long Ollama keeps the model loaded after a request (`"5m"`, `"1h"`, `"-1"`).
    pub fn keep_alive(mut self, keep_alive: impl Into<String>) -> Self {
        self.keep_alive = Some(keep_alive.into());
        self
    }

    crate::http::http_settings_setters!();

    /// Checks the settings and builds the provider.
    pub fn build(self) -> Result<OllamaProvider, ConfigError> {
        let url = self.host.endpoint(parse_ollama_host, "api/chat")?;
        let client = self.settings.client(&url)?;
        Ok(OllamaProvider {
            inner: Arc::new(Inner {
                client,
                url,
                model: self.model,
                options: self.options,
                keep_alive: self.keep_alive,
                settings: self.settings,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> String {
        parse_ollama_host("OLLAMA_HOST", value)
            .map(|u| u.to_string())
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn ollama_host_is_read_like_ollama_reads_it() {
        assert_eq!(host(""), "http://127.0.0.1:11434/");
        assert_eq!(host("0.0.0.0"), "http://0.0.0.0:11434/");
        assert_eq!(host("gpu-box:1234"), "http://gpu-box:1234/");
        assert_eq!(host("http://gpu-box"), "http://gpu-box/");
        assert_eq!(host("https://gpu-box"), "https://gpu-box/");
        assert_eq!(
            host("https://gpu-box:8443/ollama"),
            "https://gpu-box:8443/ollama"
        );
        assert_eq!(host("[::1]:7000"), "http://[::1]:7000/");
        assert_eq!(host("::1"), "http://[::1]:11434/");
        assert_eq!(host(":5000"), "http://127.0.0.1:5000/");
        assert!(host("ftp://x").starts_with("error"));
    }

    #[test]
    fn env_configures_the_builder() {
        let provider = OllamaBuilder::from_lookup(|k| match k {
            "OLLAMA_HOST" => Some("127.0.0.1:7777".into()),
            "OLLAMA_MODEL" => Some("qwen2.5:0.5b".into()),
            _ => None,
        })
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "http://127.0.0.1:7777/api/chat");
        assert_eq!(provider.model(), "qwen2.5:0.5b");
        let provider = OllamaBuilder::from_lookup(|_| None)
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(provider.url(), "http://127.0.0.1:11434/api/chat");
    }

    #[test]
    fn lines_decode_as_ollama_sends_them() {
        let line = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:00.000000Z","message":{"role":"assistant","content":"The"},"done":false}"#;
        let unit = decode_line(line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(unit.text, "The");
        assert!(unit.generated && !unit.done);

        let last = r#"{"model":"llama3.2","created_at":"2025-01-01T00:00:01.000000Z","message":{"role":"assistant","content":""},"done_reason":"length","done":true,"total_duration":4883583458,"load_duration":1334875,"prompt_eval_count":26,"prompt_eval_duration":342546000,"eval_count":282,"eval_duration":4535599000}"#;
        let unit = decode_line(last).unwrap_or_else(|e| panic!("{e}"));
        assert!(unit.done);
        assert_eq!(unit.usage, Some(Usage::reported(26, 282)));
        assert_eq!(unit.finish, Some(FinishReason::Length));

        let uncounted = r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":3}"#;
        assert_eq!(decode_line(uncounted).ok().and_then(|p| p.usage), None);

        assert!(matches!(
            decode_line(r#"{"error":"model runner has unexpectedly stopped"}"#),
            Err(ProviderError::Upstream(m)) if m.contains("unexpectedly stopped")
        ));
        assert!(matches!(
            decode_line(r#"{"model":"m","message":"#),
            Err(ProviderError::Protocol(_))
        ));
        assert!(decode_line("").is_ok_and(|p| p == Decoded::default()));
    }

    #[test]
    fn options_go_in_the_body() {
        use marie_core::{ConversationId, PromptMessage, UserId};
        let provider = OllamaProvider::builder()
            .host("http://127.0.0.1:9")
            .model("m")
            .temperature(0.3)
            .max_tokens(100)
            .keep_alive("5m")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let request = LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages: vec![PromptMessage::text(marie_core::MessageRole::User, "Hi")],
            tools: Vec::new(),
            model: None,
        };
        let body: Value =
            serde_json::from_slice(&provider.body(&request)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            json!({
                "model": "m",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": true,
                "options": {"temperature": 0.3, "num_predict": 100},
                "keep_alive": "5m"
            })
        );
    }

    /// An answer that called tools goes back as Ollama wants it: `tool_calls` with the
    /// arguments as an object, then `role:"tool"` messages named by `tool_name`; whole calls
    /// in a line become a start, the arguments, and the call.
    #[test]
    fn tools_both_ways() {
        use marie_core::{
            ConversationId, MessagePart, MessageRole, PromptMessage, ToolSpec, UserId,
        };
        let provider = OllamaProvider::builder()
            .host("http://127.0.0.1:1")
            .model("m")
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let answer = PromptMessage {
            role: MessageRole::Assistant,
            content: "84".into(),
            parts: vec![
                MessagePart::ToolCall {
                    tool_call_id: "call_1".into(),
                    name: "calculate".into(),
                    arguments: json!({"expression": "12*7"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "call_1".into(),
                    name: "calculate".into(),
                    output: Some(json!("84")),
                    error: None,
                },
                MessagePart::Text {
                    content: "84".into(),
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
        assert_eq!(body["tools"][0]["function"]["name"], "calculate");
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "12*7?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": "calculate", "arguments": {"expression": "12*7"}}}
                ]},
                {"role": "tool", "tool_name": "calculate", "content": "84"},
                {"role": "assistant", "content": "84"}
            ])
        );

        let line = r#"{"model":"m","created_at":"2025-01-01T00:00:00Z","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"calculate","arguments":{"expression":"2+2"}}}]},"done":false}"#;
        let unit = decode_line(line).unwrap_or_else(|e| panic!("{e}"));
        assert!(unit.generated);
        assert_eq!(unit.calls.len(), 1);
        assert_eq!(unit.calls[0].name, "calculate");
        assert_eq!(unit.calls[0].arguments, json!({"expression": "2+2"}));
        assert!(unit.calls[0].id.starts_with("call_"));
        let bad = r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"calculate","arguments":[1]}}]},"done":false}"#;
        assert!(matches!(decode_line(bad), Err(ProviderError::Protocol(_))));
    }
}
