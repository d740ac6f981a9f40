//! The request body of the Messages API: the system prompt apart, the history as content
//! blocks, the tools.

use marie_core::{Attachment, MessagePart, MessageRole, PromptMessage, ToolSpec, tool_result_text};
use serde_json::{Value, json};

use crate::http::{FilePart, file_parts};

/// The `tools` of a request: `[{name, description, input_schema}]`.
pub(super) fn tools_json(tools: &[ToolSpec]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "input_schema": t.parameters,
            })
        })
        .collect()
}

/// The `system` field (the system messages, joined by a blank line) and the `messages`.
///
/// A user message with files is content blocks, the files first ([`user_with_files`]).
/// Messages have no `name` field: a user message's author, in a group conversation,
/// prefixes its text ([`PromptMessage::authored_text`]).
///
/// An assistant answer with parts becomes, per model step, an assistant message of content
/// blocks in the order the model gave them (signed `thinking` and `redacted_thinking`,
/// unchanged, `text`, `tool_use`), then a user message of the step's `tool_result` blocks.
/// The API refuses empty text, so empty text is left out, and so is a step with nothing but
/// thinking (an answer stopped while it thought). Reasoning without a signature (another provider's) is left out too: the API
/// takes back only the thinking it signed.
pub(super) fn system_and_messages(messages: &[PromptMessage]) -> (Option<String>, Vec<Value>) {
    let mut system: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        match m.role {
            MessageRole::System => system.push(&m.content),
            MessageRole::Assistant if !m.parts.is_empty() => answer(&m.parts, &mut out),
            MessageRole::Assistant => {
                if !m.content.is_empty() {
                    out.push(json!({"role": "assistant", "content": m.content}));
                }
            }
            MessageRole::User if !m.attachments.is_empty() => {
                out.push(user_with_files(&m.authored_text(), &m.attachments));
            }
            MessageRole::User => out.push(json!({"role": "user", "content": m.authored_text()})),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (system, out)
}

/// A user message with files: a block per file, in the order they were attached, then the
/// message's `text` block last. Anthropic advises images (and long documents) before the
/// question about them, which is how Claude answers best. An image is an `image` block, a
/// PDF a `document` block, both with a `base64` source (MARIE's files are not on the web
/// for the API to fetch); any other file is a `text` block of what stands in for it (a text
/// file's content, or a note that names a file that is gone). A message without files
/// stays a plain string, as it always was.
fn user_with_files(content: &str, attachments: &[Attachment]) -> Value {
    let mut blocks: Vec<Value> = file_parts(attachments, true)
        .into_iter()
        .map(|part| match part {
            FilePart::Image(image) => json!({
                "type": "image",
                "source": {"type": "base64", "media_type": image.media_type, "data": image.base64},
            }),
            FilePart::Pdf(pdf) => json!({
                "type": "document",
                "source": {"type": "base64", "media_type": pdf.media_type, "data": pdf.base64},
            }),
            FilePart::Text(text) => json!({"type": "text", "text": text}),
        })
        .collect();
    // The API refuses an empty text block (the engine refuses empty messages anyway).
    if !content.is_empty() {
        blocks.push(json!({"type": "text", "text": content}));
    }
    json!({"role": "user", "content": blocks})
}

/// The messages of an answer's parts, one model step at a time: a step's results end it.
fn answer(parts: &[MessagePart], out: &mut Vec<Value>) {
    let mut step = Step::default();
    for part in parts {
        if !step.results.is_empty() && !matches!(part, MessagePart::ToolResult { .. }) {
            std::mem::take(&mut step).push_into(out);
        }
        match part {
            MessagePart::Reasoning {
                content,
                signature: Some(signature),
            } => step.blocks.push(json!({
                "type": "thinking",
                "thinking": content,
                "signature": signature,
            })),
            MessagePart::RedactedReasoning { data } => step.blocks.push(json!({
                "type": "redacted_thinking",
                "data": data,
            })),
            MessagePart::Text { content } if !content.is_empty() => {
                let last_text = step
                    .blocks
                    .last_mut()
                    .filter(|b| b["type"] == "text")
                    .and_then(|b| b.get_mut("text"));
                match last_text {
                    Some(Value::String(text)) => text.push_str(content),
                    _ => step.blocks.push(json!({"type": "text", "text": content})),
                }
                step.said = true;
            }
            MessagePart::ToolCall {
                tool_call_id,
                name,
                arguments,
            } => {
                step.blocks.push(json!({
                    "type": "tool_use",
                    "id": tool_call_id,
                    "name": name,
                    "input": arguments,
                }));
                step.said = true;
            }
            MessagePart::ToolResult {
                tool_call_id,
                output,
                error,
                ..
            } => {
                let mut result = json!({
                    "type": "tool_result",
                    "tool_use_id": tool_call_id,
                    "content": tool_result_text(output.as_ref(), error.as_deref()),
                });
                if output.is_none() {
                    result["is_error"] = true.into();
                }
                step.results.push(result);
            }
            // Unsigned reasoning, empty text, and parts this provider does not know.
            _ => {}
        }
    }
    step.push_into(out);
}

/// One model step of an answer.
#[derive(Default)]
struct Step {
    /// The assistant message's content blocks.
    blocks: Vec<Value>,
    /// Whether it holds text or a tool call (thinking alone is not sent).
    said: bool,
    /// The `tool_result` blocks of its calls.
    results: Vec<Value>,
}

impl Step {
    fn push_into(self, out: &mut Vec<Value>) {
        if self.said {
            let content = match self.blocks.as_slice() {
                [only] if only["type"] == "text" => only["text"].clone(),
                _ => Value::Array(self.blocks),
            };
            out.push(json!({"role": "assistant", "content": content}));
        }
        if !self.results.is_empty() {
            out.push(json!({"role": "user", "content": self.results}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasoning(content: &str, signature: Option<&str>) -> MessagePart {
        MessagePart::Reasoning {
            content: content.into(),
            signature: signature.map(Into::into),
        }
    }

    fn text(content: &str) -> MessagePart {
        MessagePart::Text {
            content: content.into(),
        }
    }

    /// Two steps that thought and called tools, and a last one that answered: each step's
    /// signed thinking first, its results in a user message after it; unsigned reasoning
    /// and an error result as the API wants them.
    #[test]
    fn an_answer_with_thinking_and_tools_goes_back_as_content_blocks() {
        let answer = PromptMessage {
            role: MessageRole::Assistant,
            content: "Let me check.It is 84.".into(),
            parts: vec![
                reasoning("Multiply.", Some("sig-1")),
                text("Let me check."),
                MessagePart::ToolCall {
                    tool_call_id: "toolu_1".into(),
                    name: "calculate".into(),
                    arguments: json!({"expression": "12*7"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "toolu_1".into(),
                    name: "calculate".into(),
                    output: Some(json!(84)),
                    error: None,
                },
                reasoning("", Some("sig-2")),
                MessagePart::ToolCall {
                    tool_call_id: "toolu_2".into(),
                    name: "send_email".into(),
                    arguments: json!({"to": "bob"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "toolu_2".into(),
                    name: "send_email".into(),
                    output: None,
                    error: Some("not run: bob denied the call".into()),
                },
                reasoning("another provider's", None),
                text("It is "),
                text("84."),
            ],
            attachments: Vec::new(),
            author: None,
        };
        let (system, messages) = system_and_messages(&[
            PromptMessage::text(MessageRole::System, "Be brief."),
            PromptMessage::text(MessageRole::System, "Use tools."),
            PromptMessage::text(MessageRole::User, "12*7?"),
            answer,
            PromptMessage::text(MessageRole::Assistant, ""),
            PromptMessage::text(MessageRole::User, "Thanks"),
        ]);
        assert_eq!(system.as_deref(), Some("Be brief.\n\nUse tools."));
        assert_eq!(
            Value::Array(messages),
            json!([
                {"role": "user", "content": "12*7?"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "Multiply.", "signature": "sig-1"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_1", "name": "calculate", "input": {"expression": "12*7"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "84"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "", "signature": "sig-2"},
                    {"type": "tool_use", "id": "toolu_2", "name": "send_email", "input": {"to": "bob"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "{\"error\":\"not run: bob denied the call\"}", "is_error": true}
                ]},
                {"role": "assistant", "content": "It is 84."},
                {"role": "user", "content": "Thanks"}
            ])
        );
    }

    #[test]
    fn a_step_of_thinking_alone_is_left_out() {
        let (_, messages) = system_and_messages(&[PromptMessage {
            role: MessageRole::Assistant,
            content: String::new(),
            parts: vec![
                reasoning("Hmm", Some("sig")),
                MessagePart::RedactedReasoning {
                    data: "opaque".into(),
                },
            ],
            attachments: Vec::new(),
            author: None,
        }]);
        assert!(messages.is_empty(), "{messages:?}");
    }

    /// Redacted thinking goes back as the `redacted_thinking` block it came as, its data
    /// unchanged, in its place among the step's thinking blocks.
    #[test]
    fn redacted_thinking_goes_back_in_its_place() {
        let answer = PromptMessage {
            role: MessageRole::Assistant,
            content: "Done.".into(),
            parts: vec![
                MessagePart::RedactedReasoning {
                    data: "opaque-1".into(),
                },
                reasoning("Check it.", Some("sig-1")),
                MessagePart::RedactedReasoning {
                    data: "opaque-2".into(),
                },
                MessagePart::ToolCall {
                    tool_call_id: "toolu_1".into(),
                    name: "calculate".into(),
                    arguments: json!({"expression": "1+1"}),
                },
                MessagePart::ToolResult {
                    tool_call_id: "toolu_1".into(),
                    name: "calculate".into(),
                    output: Some(json!(2)),
                    error: None,
                },
                MessagePart::RedactedReasoning {
                    data: "opaque-3".into(),
                },
                text("Done."),
            ],
            attachments: Vec::new(),
            author: None,
        };
        let (_, messages) = system_and_messages(&[answer]);
        assert_eq!(
            Value::Array(messages),
            json!([
                {"role": "assistant", "content": [
                    {"type": "redacted_thinking", "data": "opaque-1"},
                    {"type": "thinking", "thinking": "Check it.", "signature": "sig-1"},
                    {"type": "redacted_thinking", "data": "opaque-2"},
                    {"type": "tool_use", "id": "toolu_1", "name": "calculate", "input": {"expression": "1+1"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "2"}
                ]},
                {"role": "assistant", "content": [
                    {"type": "redacted_thinking", "data": "opaque-3"},
                    {"type": "text", "text": "Done."}
                ]}
            ])
        );
    }

    #[test]
    fn tools_as_the_api_takes_them() {
        let tools = tools_json(&[ToolSpec {
            name: "calculate".into(),
            description: "Math".into(),
            parameters: json!({"type": "object"}),
        }]);
        assert_eq!(
            tools,
            json!([{"name": "calculate", "description": "Math", "input_schema": {"type": "object"}}])
        );
    }
}
