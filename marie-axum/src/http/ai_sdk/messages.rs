//! The AI SDK's `UIMessage`s: what `GET /api/ai-sdk/chat/{id}/messages` gives of the active
//! branch, and what MARIE reads of the messages a client posts (its new text, the approvals
//! it answered, its client tools' outputs). The server's history stays the source of truth:
//! nothing else of the posted messages is taken.

use marie_core::{ChatMessage, MessagePart, MessageRole};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A message as `useChat` holds it (`{id, role, parts}`).
#[derive(Debug, Serialize)]
pub(super) struct UiMessage {
    id: String,
    role: &'static str,
    parts: Vec<UiPart>,
}

/// One part of a [`UiMessage`].
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum UiPart {
    /// `step-start`, and text and reasoning (`{type, text, state:"done"}`).
    Plain {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        state: Option<&'static str>,
    },
    /// `tool-{name}`: a call and what became of it.
    Tool(ToolPart),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolPart {
    #[serde(rename = "type")]
    kind: String,
    tool_call_id: String,
    state: &'static str,
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_text: Option<String>,
}

impl UiPart {
    fn step() -> Self {
        Self::Plain {
            kind: "step-start",
            text: None,
            state: None,
        }
    }

    fn text(kind: &'static str, text: &str) -> Self {
        Self::Plain {
            kind,
            text: Some(text.to_owned()),
            state: Some("done"),
        }
    }
}

/// A stored message as a `UIMessage`: an answer's parts in order, a model step per
/// `step-start` (a step ends with its tools' results).
pub(super) fn ui_message(message: &ChatMessage) -> UiMessage {
    let id = message.message_id.to_string();
    if message.role != MessageRole::Assistant {
        return UiMessage {
            id,
            role: if message.role == MessageRole::User {
                "user"
            } else {
                "system"
            },
            parts: vec![UiPart::text("text", &message.content)],
        };
    }
    let mut parts = vec![UiPart::step()];
    if message.parts.is_empty() {
        parts.push(UiPart::text("text", &message.content));
    }
    let mut after_tools = false;
    for part in &message.parts {
        let result = matches!(part, MessagePart::ToolResult { .. });
        if std::mem::take(&mut after_tools) && !result {
            parts.push(UiPart::step());
        }
        match part {
            MessagePart::Text { content } => parts.push(UiPart::text("text", content)),
            MessagePart::Reasoning { content, .. } => {
                parts.push(UiPart::text("reasoning", content));
            }
            MessagePart::ToolCall {
                tool_call_id,
                name,
                arguments,
            } => parts.push(UiPart::Tool(ToolPart {
                kind: format!("tool-{name}"),
                tool_call_id: tool_call_id.clone(),
                state: "input-available",
                input: arguments.clone(),
                output: None,
                error_text: None,
            })),
            MessagePart::ToolResult {
                tool_call_id,
                output,
                error,
                ..
            } => {
                after_tools = true;
                let call = parts.iter_mut().find_map(|p| match p {
                    UiPart::Tool(t) if t.tool_call_id == *tool_call_id => Some(t),
                    _ => None,
                });
                if let Some(call) = call {
                    match error {
                        Some(error) => {
                            call.state = "output-error";
                            call.error_text = Some(error.clone());
                        }
                        None => {
                            call.state = "output-available";
                            call.output = Some(output.clone().unwrap_or(Value::Null));
                        }
                    }
                }
            }
            // Encrypted reasoning: nothing a client can show.
            _ => {}
        }
    }
    UiMessage {
        id,
        role: "assistant",
        parts,
    }
}

/// A message a client posted: only what MARIE reads of it.
#[derive(Debug, Deserialize)]
pub(super) struct Posted {
    pub(super) id: String,
    pub(super) role: String,
    #[serde(default)]
    pub(super) parts: Vec<Value>,
}

/// What a client answered in a posted assistant message: an approval or a client tool's
/// result.
#[derive(Debug, PartialEq)]
pub(super) enum Answered {
    Approval {
        approval_id: marie_core::ApprovalId,
        approved: bool,
        reason: Option<String>,
    },
    Output {
        tool_call_id: String,
        result: Result<Value, String>,
    },
}

impl Posted {
    /// The text of a user message: its text parts, joined.
    pub(super) fn text(&self) -> String {
        self.parts
            .iter()
            .filter(|p| p["type"] == "text")
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The approvals answered (`approval-responded`) and the tool outputs of the message's
    /// last step: what the client did since the answer waited (earlier steps' outputs are
    /// the server's own results, and each one applied would cost the caller a command).
    pub(super) fn answered(&self) -> Vec<Answered> {
        let step = self
            .parts
            .iter()
            .rposition(|p| p["type"] == "step-start")
            .map_or(0, |i| i + 1);
        self.parts[step..]
            .iter()
            .filter_map(|p| {
                let call = p["toolCallId"].as_str()?.to_owned();
                match p["state"].as_str()? {
                    "approval-responded" => Some(Answered::Approval {
                        approval_id: marie_core::ApprovalId::parse(p["approval"]["id"].as_str()?)
                            .ok()?,
                        approved: p["approval"]["approved"].as_bool()?,
                        reason: p["approval"]["reason"].as_str().map(str::to_owned),
                    }),
                    "output-available" => Some(Answered::Output {
                        tool_call_id: call,
                        result: Ok(p.get("output").cloned().unwrap_or(Value::Null)),
                    }),
                    "output-error" => Some(Answered::Output {
                        tool_call_id: call,
                        result: Err(p["errorText"].as_str().unwrap_or("failed").to_owned()),
                    }),
                    _ => None,
                }
            })
            .collect()
    }
}
