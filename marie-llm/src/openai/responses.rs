//! OpenAI's Responses API ([`OpenAiApi::Responses`](super::OpenAiApi::Responses)): the
//! request's `input` items, and the typed stream events decoded into [`Decoded`]s.

use std::collections::HashMap;

use eventsource_stream::Event;
use marie_core::{
    Attachment, FinishReason, MessageRole, PromptMessage, ProviderError, ToolSpec, Usage,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{CallFragment, Decoded, FilePart, file_parts, for_log};

/// The end marker.
pub(super) const MISSING_COMPLETED: &str =
    "the event stream ended without `response.completed` or `response.incomplete`";

/// The `tools` of a request: `[{type: "function", name, description, parameters, strict}]`.
/// `strict` is `false`: the Responses API makes it `true` when left out, and then refuses
/// schemas that are not closed (`additionalProperties: false`, every property required),
/// which tools written for chat completions seldom are.
pub(super) fn tools_json(tools: &[ToolSpec]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters,
                "strict": false,
            })
        })
        .collect()
}

/// The `instructions` (the system messages, joined by a blank line) and the `input` items:
/// `{role, content}` messages (a user message with files: [`user_with_files`]; input
/// messages have no `name` field, so a user message's author, in a group conversation,
/// prefixes its text: [`PromptMessage::authored_text`]), and for an answer that called
/// tools, per model step, its text as an assistant message, a `function_call` item per call
/// (arguments as JSON text) and a `function_call_output` item per result. Reasoning is not
/// sent back.
pub(super) fn instructions_and_input(messages: &[PromptMessage]) -> (Option<String>, Vec<Value>) {
    let mut instructions: Vec<&str> = Vec::new();
    let mut input = Vec::with_capacity(messages.len());
    for m in messages {
        match m.role {
            MessageRole::System => instructions.push(&m.content),
            MessageRole::User if !m.attachments.is_empty() => {
                input.push(user_with_files(&m.authored_text(), &m.attachments));
            }
            MessageRole::User => {
                input.push(json!({"role": "user", "content": m.authored_text()}));
            }
            MessageRole::Assistant => {
                for turn in m.assistant_turns() {
                    if !turn.text.is_empty() {
                        input.push(json!({"role": "assistant", "content": turn.text}));
                    }
                    for call in &turn.tool_calls {
                        input.push(json!({
                            "type": "function_call",
                            "call_id": call.id,
                            "name": call.name,
                            "arguments": call.arguments.to_string(),
                        }));
                    }
                    for result in &turn.results {
                        input.push(json!({
                            "type": "function_call_output",
                            "call_id": result.id,
                            "output": result.content,
                        }));
                    }
                }
            }
        }
    }
    let instructions = (!instructions.is_empty()).then(|| instructions.join("\n\n"));
    (instructions, input)
}

/// A user message with files: `content` as input parts, the message's `input_text` first,
/// then per file an `input_image` (`image_url`, a `data:` URL: MARIE's files are not on
/// the web for the API to fetch), an `input_file` for a PDF (`filename` and `file_data`, a
/// `data:` URL), or an `input_text` of what stands in for the file (a text file's content,
/// or a note that names a file that is gone). A message without files stays a plain
/// string, as it always was.
fn user_with_files(content: &str, attachments: &[Attachment]) -> Value {
    let mut parts = Vec::with_capacity(attachments.len() + 1);
    // The engine refuses empty messages; a caller of the provider might not.
    if !content.is_empty() {
        parts.push(json!({"type": "input_text", "text": content}));
    }
    parts.extend(
        file_parts(attachments, true)
            .into_iter()
            .map(|part| match part {
                FilePart::Image(image) => {
                    json!({"type": "input_image", "image_url": image.data_url()})
                }
                FilePart::Pdf(pdf) => json!({
                    "type": "input_file",
                    "filename": pdf.name,
                    "file_data": pdf.data_url(),
                }),
                FilePart::Text(text) => json!({"type": "input_text", "text": text}),
            }),
    );
    json!({"role": "user", "content": parts})
}

/// Decodes the events of one response, remembering which function calls have had
/// arguments given (so that a `.done` event only fills in what no delta gave) and whether
/// the model called any (the finish reason: the Responses API has none).
#[derive(Debug, Default)]
pub(super) struct Decoder {
    /// Function calls by `output_index`: whether some of their arguments were given.
    calls: HashMap<u64, bool>,
}

/// One event, as far as MARIE reads it; the many others (`response.created`,
/// `response.in_progress`, `response.content_part.added`, `response.output_text.done`, ...)
/// say nothing new and are skipped, as are event types added later.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum WireEvent {
    #[serde(rename = "response.output_item.added")]
    ItemAdded { output_index: u64, item: Item },
    #[serde(rename = "response.output_item.done")]
    ItemDone { output_index: u64, item: Item },
    #[serde(rename = "response.output_text.delta")]
    TextDelta { delta: String },
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta { delta: String },
    #[serde(rename = "response.reasoning_summary_text.delta")]
    SummaryDelta { delta: String },
    #[serde(rename = "response.reasoning_summary_part.added")]
    SummaryPart {
        #[serde(default)]
        summary_index: u64,
    },
    /// Raw reasoning, from open-weight models served with the Responses API (vLLM, Ollama).
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningDelta { delta: String },
    #[serde(rename = "response.function_call_arguments.delta")]
    ArgumentsDelta { output_index: u64, delta: String },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        output_index: u64,
        arguments: String,
    },
    #[serde(rename = "response.completed")]
    Completed { response: WireResponse },
    #[serde(rename = "response.incomplete")]
    Incomplete { response: WireResponse },
    #[serde(rename = "response.failed")]
    Failed { response: WireResponse },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        message: Option<String>,
        /// Some servers nest the error: `{"type":"error","error":{"code":..,"message":..}}`.
        #[serde(default)]
        error: Option<WireError>,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
#[serde(tag = "type")]
enum Item {
    #[serde(rename = "function_call")]
    FunctionCall {
        call_id: String,
        name: String,
        #[serde(default)]
        arguments: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Default, Deserialize)]
struct WireResponse {
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
struct WireUsage {
    input_tokens: u64,
    output_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct IncompleteDetails {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl Decoder {
    /// Decodes one server-sent event.
    pub(super) fn decode(&mut self, event: &Event) -> Result<Decoded, ProviderError> {
        let data = event.data.trim();
        if data == "[DONE]" {
            // Not part of the Responses API; a server that adds it has already said
            // `response.completed`, which ended the answer.
            return Ok(Decoded::default());
        }
        let value: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Protocol(format!(
                "an event is not JSON ({e}): {}",
                for_log(&data.chars().take(120).collect::<String>())
            ))
        })?;
        let wire: WireEvent = serde_json::from_value(value).map_err(|e| {
            ProviderError::Protocol(format!(
                "not a Responses API event ({}): {e}",
                for_log(&event.event)
            ))
        })?;
        let mut unit = Decoded::default();
        match wire {
            WireEvent::TextDelta { delta } | WireEvent::RefusalDelta { delta } => {
                unit.generated = !delta.is_empty();
                unit.text = delta;
            }
            WireEvent::SummaryDelta { delta } | WireEvent::ReasoningDelta { delta } => {
                unit.generated = !delta.is_empty();
                unit.reasoning = delta;
            }
            WireEvent::SummaryPart { summary_index } => {
                // The summary's paragraphs come as parts: keep them apart.
                if summary_index > 0 {
                    unit.reasoning = "\n\n".into();
                }
            }
            WireEvent::ItemAdded { output_index, item } => {
                if let Item::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } = item
                {
                    unit.generated = true;
                    self.calls.insert(output_index, !arguments.is_empty());
                    unit.call_fragments.push(CallFragment {
                        index: output_index,
                        id: Some(call_id),
                        name: Some(name),
                        arguments,
                    });
                }
            }
            WireEvent::ArgumentsDelta {
                output_index,
                delta,
            } => {
                unit.generated = true;
                self.calls.insert(output_index, true);
                unit.call_fragments.push(CallFragment {
                    index: output_index,
                    arguments: delta,
                    ..CallFragment::default()
                });
            }
            WireEvent::ArgumentsDone {
                output_index,
                arguments,
            } => self.fill_in(output_index, None, arguments, &mut unit),
            WireEvent::ItemDone { output_index, item } => {
                if let Item::FunctionCall {
                    call_id,
                    name,
                    arguments,
                } = item
                {
                    self.fill_in(output_index, Some((call_id, name)), arguments, &mut unit);
                }
            }
            WireEvent::Completed { response } => {
                unit.usage = response.usage.map(usage);
                unit.finish = Some(if self.calls.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::ToolCalls
                });
                unit.done = true;
            }
            WireEvent::Incomplete { response } => {
                let reason = response
                    .incomplete_details
                    .and_then(|d| d.reason)
                    .unwrap_or_default();
                unit.finish = Some(match reason.as_str() {
                    "max_output_tokens" => FinishReason::Length,
                    "content_filter" => FinishReason::ContentFilter,
                    "" => FinishReason::Other("incomplete".into()),
                    other => FinishReason::Other(other.to_owned()),
                });
                unit.usage = response.usage.map(usage);
                unit.done = true;
            }
            WireEvent::Failed { response } => {
                let error = response.error.unwrap_or_default();
                return Err(error_event(error.code.as_deref(), error.message.as_deref()));
            }
            WireEvent::Error {
                code,
                message,
                error,
            } => {
                let nested = error.unwrap_or_default();
                let code = code.or(nested.code);
                let message = message.or(nested.message);
                return Err(error_event(code.as_deref(), message.as_deref()));
            }
            WireEvent::Unknown => {}
        }
        Ok(unit)
    }

    /// The whole arguments of a call (`.done` events): given as a fragment only when no delta
    /// gave any (a server that does not stream them), with the id and name when known.
    fn fill_in(
        &mut self,
        index: u64,
        named: Option<(String, String)>,
        arguments: String,
        unit: &mut Decoded,
    ) {
        let given = self.calls.insert(index, true).unwrap_or(false);
        let (id, name) = named.unzip();
        if given {
            if id.is_some() {
                // Known already; the names only make sure the call is started.
                unit.call_fragments.push(CallFragment {
                    index,
                    id,
                    name,
                    arguments: String::new(),
                });
            }
            return;
        }
        unit.generated = true;
        unit.call_fragments.push(CallFragment {
            index,
            id,
            name,
            arguments,
        });
    }
}

fn usage(u: WireUsage) -> Usage {
    Usage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total_tokens.unwrap_or(u.input_tokens + u.output_tokens),
        estimated: false,
    }
}

/// A `response.failed` or `error` event by its code: a server error (or none said) is worth
/// asking again, a rate limit too; any other code names something wrong with the request,
/// which the API would refuse again, like an HTTP 400.
fn error_event(code: Option<&str>, message: Option<&str>) -> ProviderError {
    let code = code.unwrap_or_default();
    let message = for_log(message.unwrap_or("-"));
    let retryable = code.is_empty()
        || ["server_error", "timeout", "overloaded", "unavailable"]
            .iter()
            .any(|word| code.contains(word));
    if retryable {
        let code = if code.is_empty() { "error" } else { code };
        return ProviderError::Upstream(format!("{code}: {message}"));
    }
    if code == "rate_limit_exceeded" {
        return ProviderError::RateLimited { retry_after: None };
    }
    tracing::warn!(
        provider = "openai",
        code,
        upstream = %message,
        "the response failed"
    );
    ProviderError::Status { status: 400 }
}

#[cfg(test)]
mod tests {
    use marie_core::MessagePart;

    use super::*;

    fn decode(decoder: &mut Decoder, data: &str) -> Result<Decoded, ProviderError> {
        let name = serde_json::from_str::<Value>(data)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        decoder.decode(&Event {
            event: name,
            data: data.into(),
            ..Event::default()
        })
    }

    #[test]
    fn text_reasoning_and_the_end() {
        let mut d = Decoder::default();
        let created = r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","created_at":1741290958,"status":"in_progress","error":null,"incomplete_details":null,"instructions":null,"model":"gpt-4.1-mini-2025-04-14","output":[],"usage":null}}"#;
        assert_eq!(decode(&mut d, created).ok(), Some(Decoded::default()));
        let summary = r#"{"type":"response.reasoning_summary_text.delta","sequence_number":3,"item_id":"rs_1","output_index":0,"summary_index":0,"delta":"**Greeting**"}"#;
        assert_eq!(
            decode(&mut d, summary).ok().map(|p| p.reasoning),
            Some("**Greeting**".into())
        );
        let second = r#"{"type":"response.reasoning_summary_part.added","sequence_number":5,"item_id":"rs_1","output_index":0,"summary_index":1,"part":{"type":"summary_text","text":""}}"#;
        assert_eq!(
            decode(&mut d, second).ok().map(|p| p.reasoning),
            Some("\n\n".into())
        );
        let text = r#"{"type":"response.output_text.delta","sequence_number":7,"item_id":"msg_1","output_index":1,"content_index":0,"delta":"Hi","logprobs":[]}"#;
        let unit = decode(&mut d, text).unwrap_or_default();
        assert_eq!((unit.text.as_str(), unit.generated), ("Hi", true));
        let completed = r#"{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","object":"response","status":"completed","output":[],"usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":0},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}}"#;
        let unit = decode(&mut d, completed).unwrap_or_default();
        assert!(unit.done);
        assert_eq!(unit.finish, Some(FinishReason::Stop));
        assert_eq!(unit.usage, Some(Usage::reported(36, 87)));
        let incomplete = r#"{"type":"response.incomplete","sequence_number":9,"response":{"id":"resp_1","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"usage":{"input_tokens":3,"output_tokens":16,"total_tokens":19}}}"#;
        let unit = decode(&mut d, incomplete).unwrap_or_default();
        assert_eq!((unit.done, unit.finish), (true, Some(FinishReason::Length)));
    }

    #[test]
    fn function_calls_from_deltas_or_from_done_alone() {
        let mut d = Decoder::default();
        let added = r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"fc_1","type":"function_call","status":"in_progress","arguments":"","call_id":"call_A","name":"calculate"}}"#;
        let unit = decode(&mut d, added).unwrap_or_default();
        assert_eq!(unit.call_fragments[0].id.as_deref(), Some("call_A"));
        let delta = r#"{"type":"response.function_call_arguments.delta","sequence_number":3,"item_id":"fc_1","output_index":0,"delta":"{\"expression\":"}"#;
        assert_eq!(
            decode(&mut d, delta)
                .unwrap_or_default()
                .call_fragments
                .len(),
            1
        );
        let done = r#"{"type":"response.function_call_arguments.done","sequence_number":4,"item_id":"fc_1","output_index":0,"arguments":"{\"expression\":\"1+2\"}"}"#;
        assert!(
            decode(&mut d, done)
                .unwrap_or_default()
                .call_fragments
                .is_empty(),
            "the deltas gave the arguments already"
        );
        // A call whose arguments come whole, in its `output_item.done` only.
        let whole = r#"{"type":"response.output_item.done","sequence_number":8,"output_index":1,"item":{"id":"fc_2","type":"function_call","status":"completed","arguments":"{\"to\":\"bob\"}","call_id":"call_B","name":"send_email"}}"#;
        let unit = decode(&mut d, whole).unwrap_or_default();
        assert_eq!(
            unit.call_fragments,
            [CallFragment {
                index: 1,
                id: Some("call_B".into()),
                name: Some("send_email".into()),
                arguments: "{\"to\":\"bob\"}".into(),
            }]
        );
        let completed = r#"{"type":"response.completed","sequence_number":9,"response":{"status":"completed","usage":{"input_tokens":1,"output_tokens":2,"total_tokens":3}}}"#;
        assert_eq!(
            decode(&mut d, completed).ok().and_then(|p| p.finish),
            Some(FinishReason::ToolCalls)
        );
    }

    #[test]
    fn failures_by_code() {
        let mut d = Decoder::default();
        let failed = r#"{"type":"response.failed","sequence_number":5,"response":{"id":"resp_1","status":"failed","error":{"code":"server_error","message":"The model failed to generate a response."},"usage":null}}"#;
        let err = decode(&mut d, failed).err();
        assert!(
            matches!(&err, Some(ProviderError::Upstream(m)) if m.starts_with("server_error")),
            "{err:?}"
        );
        let bad = r#"{"type":"response.failed","sequence_number":5,"response":{"status":"failed","error":{"code":"invalid_prompt","message":"no"}}}"#;
        let err = decode(&mut d, bad).err();
        assert!(err.is_some_and(|e| !e.retryable() && !e.retryable_mid_stream()));
        let error = r#"{"type":"error","sequence_number":1,"code":"rate_limit_exceeded","message":"slow down","param":null}"#;
        assert!(matches!(
            decode(&mut d, error),
            Err(ProviderError::RateLimited { .. })
        ));
        let nested =
            r#"{"type":"error","error":{"type":"server_error","code":null,"message":"boom"}}"#;
        assert!(matches!(
            decode(&mut d, nested),
            Err(ProviderError::Upstream(_))
        ));
        assert!(matches!(
            decode(&mut d, "{not json"),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            decode(&mut d, r#"{"type":"response.output_text.delta"}"#),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn history_as_input_items() {
        let answer = PromptMessage {
            role: MessageRole::Assistant,
            content: "Let me check.84.".into(),
            parts: vec![
                MessagePart::Reasoning {
                    content: "hmm".into(),
                    signature: None,
                },
                MessagePart::Text {
                    content: "Let me check.".into(),
                },
                MessagePart::ToolCall {
                    tool_call_id: "call_A".into(),
                    name: "calculate".into(),
                    arguments: json!({"expression": "12*7"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "call_A".into(),
                    name: "calculate".into(),
                    output: Some(json!(84)),
                    error: None,
                },
                MessagePart::Text {
                    content: "84.".into(),
                },
            ],
            attachments: Vec::new(),
            author: None,
        };
        let (instructions, input) = instructions_and_input(&[
            PromptMessage::text(MessageRole::System, "Be brief."),
            PromptMessage::text(MessageRole::User, "12*7?"),
            answer,
        ]);
        assert_eq!(instructions.as_deref(), Some("Be brief."));
        assert_eq!(
            Value::Array(input),
            json!([
                {"role": "user", "content": "12*7?"},
                {"role": "assistant", "content": "Let me check."},
                {"type": "function_call", "call_id": "call_A", "name": "calculate", "arguments": "{\"expression\":\"12*7\"}"},
                {"type": "function_call_output", "call_id": "call_A", "output": "84"},
                {"role": "assistant", "content": "84."}
            ])
        );
    }
}
