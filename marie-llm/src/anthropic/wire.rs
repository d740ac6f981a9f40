//! The Messages API's stream events, decoded into [`Decoded`]s.

use std::collections::HashMap;

use eventsource_stream::Event;
use marie_core::{FinishReason, ProviderError, Usage};
use serde::Deserialize;

use crate::http::{CallFragment, Decoded, for_log};

/// Decodes the events of one answer, remembering what spans events: the kind of each open
/// content block, a thinking block's signature until the block ends, and the usage so far.
#[derive(Debug, Default)]
pub(super) struct Decoder {
    blocks: HashMap<u64, Block>,
    /// Every prompt token: `input_tokens` plus cache writes and reads.
    input: u64,
    output: u64,
}

#[derive(Debug)]
enum Block {
    Text,
    Thinking {
        signature: String,
    },
    ToolUse,
    /// A `redacted_thinking` block: all of it (its `data`) comes with its start; it has no
    /// deltas.
    RedactedThinking,
    /// A block MARIE does not read (a server tool's): its deltas are skipped.
    Other,
}

/// One event, as far as MARIE reads it. Event types the API may add later are skipped, as
/// its versioning policy asks.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent {
    MessageStart {
        message: MessageStart,
    },
    ContentBlockStart {
        index: u64,
        content_block: BlockStart,
    },
    ContentBlockDelta {
        index: u64,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u64,
    },
    MessageDelta {
        delta: MessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop,
    Ping,
    Error {
        error: WireError,
    },
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct MessageStart {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart {
    Text {
        #[serde(default)]
        text: String,
    },
    Thinking {
        #[serde(default)]
        thinking: String,
        #[serde(default)]
        signature: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    RedactedThinking {
        data: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta {
    TextDelta {
        text: String,
    },
    ThinkingDelta {
        thinking: String,
    },
    SignatureDelta {
        signature: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// Usage as `message_start` (all fields) and `message_delta` (`output_tokens`, cumulative;
/// newer versions repeat the input fields) report it. Absent or `null`: unchanged.
#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

impl Decoder {
    /// Decodes one server-sent event.
    pub(super) fn decode(&mut self, event: &Event) -> Result<Decoded, ProviderError> {
        let data = event.data.trim();
        let value: serde_json::Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Protocol(format!(
                "an event is not JSON ({e}): {}",
                for_log(&data.chars().take(120).collect::<String>())
            ))
        })?;
        let wire: WireEvent = serde_json::from_value(value).map_err(|e| {
            ProviderError::Protocol(format!(
                "not a Messages API event ({}): {e}",
                for_log(&event.event)
            ))
        })?;
        let mut unit = Decoded::default();
        match wire {
            WireEvent::MessageStart { message } => {
                if let Some(usage) = message.usage {
                    unit.usage = Some(self.add_usage(&usage));
                }
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                let block = match content_block {
                    BlockStart::Text { text } => {
                        unit.generated = !text.is_empty();
                        unit.text = text;
                        Block::Text
                    }
                    BlockStart::Thinking {
                        thinking,
                        signature,
                    } => {
                        unit.generated = !thinking.is_empty();
                        unit.reasoning = thinking;
                        Block::Thinking { signature }
                    }
                    BlockStart::ToolUse { id, name } => {
                        unit.generated = true;
                        unit.call_fragments.push(CallFragment {
                            index,
                            id: Some(id),
                            name: Some(name),
                            arguments: String::new(),
                        });
                        Block::ToolUse
                    }
                    BlockStart::RedactedThinking { data } => {
                        // Output, though nothing to show: the model is at work.
                        unit.generated = true;
                        unit.redacted = Some(data);
                        Block::RedactedThinking
                    }
                    BlockStart::Other => Block::Other,
                };
                self.blocks.insert(index, block);
            }
            WireEvent::ContentBlockDelta { index, delta } => {
                let block = self.blocks.get_mut(&index);
                match (delta, block) {
                    (BlockDelta::TextDelta { text }, Some(Block::Text)) => {
                        unit.generated = !text.is_empty();
                        unit.text = text;
                    }
                    (BlockDelta::ThinkingDelta { thinking }, Some(Block::Thinking { .. })) => {
                        unit.generated = !thinking.is_empty();
                        unit.reasoning = thinking;
                    }
                    (
                        BlockDelta::SignatureDelta { signature: more },
                        Some(Block::Thinking { signature }),
                    ) => {
                        unit.generated = true;
                        signature.push_str(&more);
                    }
                    (BlockDelta::InputJsonDelta { partial_json }, Some(Block::ToolUse)) => {
                        unit.generated = true;
                        unit.call_fragments.push(CallFragment {
                            index,
                            arguments: partial_json,
                            ..CallFragment::default()
                        });
                    }
                    (_, Some(Block::Other | Block::RedactedThinking)) | (BlockDelta::Other, _) => {}
                    (_, None) => {
                        return Err(ProviderError::Protocol(format!(
                            "a delta for content block {index}, which was never started"
                        )));
                    }
                    (_, Some(block)) => {
                        return Err(ProviderError::Protocol(format!(
                            "a delta of the wrong kind for content block {index} ({block:?})"
                        )));
                    }
                }
            }
            WireEvent::ContentBlockStop { index } => {
                if let Some(Block::Thinking { signature }) = self.blocks.remove(&index)
                    && !signature.is_empty()
                {
                    unit.signature = Some(signature);
                }
            }
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason.filter(|r| !r.is_empty()) {
                    unit.finish = Some(finish_reason(&reason));
                }
                if let Some(usage) = usage {
                    unit.usage = Some(self.add_usage(&usage));
                }
            }
            WireEvent::MessageStop => unit.done = true,
            WireEvent::Ping | WireEvent::Unknown => {}
            WireEvent::Error { error } => return Err(error_event(&error.kind, &error.message)),
        }
        Ok(unit)
    }

    /// Takes the figures `usage` has; the usage so far.
    fn add_usage(&mut self, usage: &WireUsage) -> Usage {
        if usage.input_tokens.is_some()
            || usage.cache_creation_input_tokens.is_some()
            || usage.cache_read_input_tokens.is_some()
        {
            self.input = [
                usage.input_tokens,
                usage.cache_creation_input_tokens,
                usage.cache_read_input_tokens,
            ]
            .into_iter()
            .flatten()
            .sum();
        }
        if let Some(output) = usage.output_tokens {
            self.output = output;
        }
        Usage::reported(self.input, self.output)
    }
}

/// A `stop_reason` as MARIE's finish reason.
fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// An `error` event (mid-stream), by its type, as the HTTP status it stands for would be:
/// an overloaded or failing API is worth asking again, a request it refuses is not.
fn error_event(kind: &str, message: &str) -> ProviderError {
    let status = match kind {
        "authentication_error" => return ProviderError::Unauthorized { status: 401 },
        "permission_error" => return ProviderError::Unauthorized { status: 403 },
        "rate_limit_error" => return ProviderError::RateLimited { retry_after: None },
        "invalid_request_error" => 400,
        "billing_error" => 402,
        "not_found_error" => 404,
        "request_too_large" => 413,
        // overloaded_error, api_error, timeout_error, and any other.
        _ => return ProviderError::Upstream(for_log(&format!("{kind}: {message}"))),
    };
    tracing::warn!(
        provider = "anthropic",
        kind,
        upstream = %for_log(message),
        "the stream reported an error"
    );
    ProviderError::Status { status }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            event: name.into(),
            data: data.into(),
            ..Event::default()
        }
    }

    fn decode(decoder: &mut Decoder, data: &str) -> Result<Decoded, ProviderError> {
        let name = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .unwrap_or_default();
        decoder.decode(&event(&name, data))
    }

    #[test]
    fn a_text_answer_with_usage() {
        let mut d = Decoder::default();
        let start = r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":5,"output_tokens":1}}}"#;
        assert_eq!(
            decode(&mut d, start).ok().and_then(|p| p.usage),
            Some(Usage::reported(30, 1))
        );
        let block =
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
        assert_eq!(decode(&mut d, block).ok(), Some(Decoded::default()));
        assert_eq!(
            decode(&mut d, r#"{"type": "ping"}"#).ok(),
            Some(Decoded::default())
        );
        let text =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        let unit = decode(&mut d, text).unwrap_or_default();
        assert_eq!((unit.text.as_str(), unit.generated), ("Hi", true));
        let stop = r#"{"type":"content_block_stop","index":0}"#;
        assert_eq!(decode(&mut d, stop).ok(), Some(Decoded::default()));
        let delta = r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":15}}"#;
        let unit = decode(&mut d, delta).unwrap_or_default();
        assert_eq!(unit.finish, Some(FinishReason::Length));
        assert_eq!(unit.usage, Some(Usage::reported(30, 15)));
        assert!(
            decode(&mut d, r#"{"type":"message_stop"}"#).is_ok_and(|p| p.done),
            "message_stop ends the answer"
        );
        let later = r#"{"type":"content_block_start","index":3,"content_block":{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]}}"#;
        assert!(decode(&mut d, later).is_ok(), "unknown blocks are skipped");
        assert!(decode(&mut d, r#"{"type":"brand_new_event"}"#).is_ok());
    }

    #[test]
    fn thinking_keeps_its_signature_until_the_block_ends() {
        let mut d = Decoder::default();
        let start = r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#;
        assert_eq!(decode(&mut d, start).ok(), Some(Decoded::default()));
        let think = r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me"}}"#;
        assert_eq!(
            decode(&mut d, think).ok().map(|p| p.reasoning),
            Some("Let me".into())
        );
        for part in ["EqQBCgIYAhIM", "1gbcDa9GJwZA"] {
            let sig = format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"signature_delta","signature":"{part}"}}}}"#
            );
            assert!(decode(&mut d, &sig).is_ok_and(|p| p.signature.is_none()));
        }
        let stop = r#"{"type":"content_block_stop","index":0}"#;
        assert_eq!(
            decode(&mut d, stop).ok().and_then(|p| p.signature),
            Some("EqQBCgIYAhIM1gbcDa9GJwZA".into())
        );
    }

    /// A `redacted_thinking` block is whole at its start: its data, as sent, once; a delta
    /// the API may add to it later is skipped, and its stop carries no signature.
    #[test]
    fn redacted_thinking_is_kept_whole_from_its_start() {
        let mut d = Decoder::default();
        let start = r#"{"type":"content_block_start","index":1,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4a"}}"#;
        let unit = decode(&mut d, start).unwrap_or_default();
        assert_eq!(
            unit,
            Decoded {
                redacted: Some("EmwKAhgBEgy3va3pzix/LafPsn4a".into()),
                generated: true,
                ..Decoded::default()
            }
        );
        let later = r#"{"type":"content_block_delta","index":1,"delta":{"type":"thinking_delta","thinking":"x"}}"#;
        assert_eq!(decode(&mut d, later).ok(), Some(Decoded::default()));
        let stop = r#"{"type":"content_block_stop","index":1}"#;
        assert_eq!(decode(&mut d, stop).ok(), Some(Decoded::default()));
        let no_data = r#"{"type":"content_block_start","index":2,"content_block":{"type":"redacted_thinking"}}"#;
        assert!(matches!(
            decode(&mut d, no_data),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn tool_use_blocks_become_call_fragments() {
        let mut d = Decoder::default();
        let start = r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"calculate","input":{}}}"#;
        let unit = decode(&mut d, start).unwrap_or_default();
        assert_eq!(
            unit.call_fragments,
            [CallFragment {
                index: 1,
                id: Some("toolu_01".into()),
                name: Some("calculate".into()),
                arguments: String::new(),
            }]
        );
        let args = r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"expression\": \"1"}}"#;
        let unit = decode(&mut d, args).unwrap_or_default();
        assert_eq!(unit.call_fragments[0].arguments, "{\"expression\": \"1");
        assert_eq!(unit.call_fragments[0].index, 1);
    }

    #[test]
    fn errors_in_the_stream_by_type() {
        let mut d = Decoder::default();
        let cases = [
            ("overloaded_error", "upstream"),
            ("api_error", "upstream"),
            ("rate_limit_error", "rate_limited"),
            ("authentication_error", "unauthorized"),
            ("invalid_request_error", "status"),
            ("something_new", "upstream"),
        ];
        for (kind, expected) in cases {
            let data = format!(
                r#"{{"type": "error", "error": {{"type": "{kind}", "message": "Overloaded"}}}}"#
            );
            let err = decode(&mut d, &data).err();
            assert_eq!(
                err.as_ref().map(ProviderError::kind),
                Some(expected),
                "{kind}"
            );
        }
        let overloaded = decode(
            &mut d,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        )
        .err();
        assert!(overloaded.is_some_and(|e| e.retryable() && e.retryable_mid_stream()));
        assert!(matches!(
            decode(&mut d, "{not json"),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            decode(
                &mut d,
                r#"{"type":"content_block_delta","index":9,"delta":{"type":"text_delta","text":"x"}}"#
            ),
            Err(ProviderError::Protocol(_))
        ));
        assert!(matches!(
            decode(&mut d, r#"{"type":"content_block_start","index":0}"#),
            Err(ProviderError::Protocol(_))
        ));
    }

    #[test]
    fn stop_reasons() {
        for (reason, finish) in [
            ("end_turn", FinishReason::Stop),
            ("stop_sequence", FinishReason::Stop),
            ("max_tokens", FinishReason::Length),
            ("tool_use", FinishReason::ToolCalls),
            ("refusal", FinishReason::ContentFilter),
            ("pause_turn", FinishReason::Other("pause_turn".into())),
        ] {
            assert_eq!(finish_reason(reason), finish);
        }
    }
}
