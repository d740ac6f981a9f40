//! Tool calls over HTTP: the `tools` array both dialects take, the chat-shaped history with
//! its calls and results, and the assembly of a call streamed in fragments (OpenAI's
//! `delta.tool_calls`, by `index`) into whole calls.

use std::borrow::Cow;
use std::collections::BTreeMap;

use marie_core::{
    Attachment, LlmEvent, MessageRole, PromptMessage, ProviderError, ToolCall, ToolCallRef,
    ToolResultRef, ToolSpec,
};
use serde_json::{Value, json};

/// The `tools` of a request, in the function-calling shape OpenAI-compatible servers and
/// Ollama both take.
pub(crate) fn tools_json(tools: &[ToolSpec]) -> Value {
    tools
        .iter()
        .map(|t| {
            json!({
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                }
            })
        })
        .collect()
}

/// How a dialect writes what differs between OpenAI's and Ollama's chat history: a user
/// message's author, a user message with files, the assistant message of a step that
/// called tools, and the message of one result.
pub(crate) trait ChatDialect {
    /// Whether the dialect's messages have a `name` field, where a user message's author
    /// goes ([`PromptMessage::author_name_field`]) with the text as it is (OpenAI's chat
    /// completions). Without one (Ollama), the author prefixes the text instead
    /// ([`PromptMessage::authored_text`]).
    const NAME_FIELD: bool;

    /// A user message that carries files (never called for one without: that is
    /// `{role, content}` in both dialects, as it always was).
    fn user(content: &str, attachments: &[Attachment]) -> Value;
    /// The assistant message of a step: its text and the calls it made.
    fn assistant(text: String, calls: &[ToolCallRef<'_>]) -> Value;
    /// The `role:"tool"` message of one result.
    fn result(result: &ToolResultRef<'_>) -> Value;
}

/// The history in the chat shape both dialects share: `{role, content}` per message; a
/// user message is [`user_message`]; an answer that called tools becomes, per model step,
/// its assistant message with the calls (`D::assistant`) followed by one message per result
/// (`D::result`).
pub(crate) fn chat_messages<D: ChatDialect>(messages: &[PromptMessage]) -> Vec<Value> {
    let mut out = Vec::with_capacity(messages.len());
    for m in messages {
        if m.role == MessageRole::User {
            out.push(user_message::<D>(m));
            continue;
        }
        if m.role != MessageRole::Assistant || m.parts.is_empty() {
            out.push(json!({ "role": m.role.as_str(), "content": m.content }));
            continue;
        }
        for turn in m.assistant_turns() {
            if turn.tool_calls.is_empty() {
                if !turn.text.is_empty() {
                    out.push(json!({ "role": "assistant", "content": turn.text }));
                }
                continue;
            }
            out.push(D::assistant(turn.text, &turn.tool_calls));
            out.extend(turn.results.iter().map(D::result));
        }
    }
    out
}

/// A user message: `{role, content}`, or the dialect's with files (`D::user`). Its author,
/// in a group conversation, goes in `name` where the dialect has the field
/// (`D::NAME_FIELD`), else as the text's `[author] ` prefix; without an author the message
/// is what it always was.
fn user_message<D: ChatDialect>(m: &PromptMessage) -> Value {
    let text = if D::NAME_FIELD {
        Cow::Borrowed(m.content.as_str())
    } else {
        m.authored_text()
    };
    let mut message = if m.attachments.is_empty() {
        json!({ "role": "user", "content": text })
    } else {
        D::user(&text, &m.attachments)
    };
    if D::NAME_FIELD
        && let Some(name) = m.author_name_field()
    {
        message["name"] = name.into();
    }
    message
}

/// A unit of a streamed tool call: the first one of a call names it, the later ones only
/// add to its arguments' JSON text.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CallFragment {
    pub(crate) index: u64,
    pub(crate) id: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) arguments: String,
}

/// A call being assembled.
#[derive(Debug, Default)]
struct Partial {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
    /// `ToolCallStart` was sent (once both id and name were known).
    started: bool,
}

/// Assembles the calls of one model step from their fragments.
#[derive(Debug, Default)]
pub(crate) struct CallAssembler {
    calls: BTreeMap<u64, Partial>,
}

impl CallAssembler {
    /// Takes a fragment; pushes `ToolCallStart` once the call's id and name are known, and
    /// `ToolCallDelta` for arguments text after it.
    pub(crate) fn take(&mut self, fragment: CallFragment, out: &mut Vec<LlmEvent>) {
        let call = self.calls.entry(fragment.index).or_default();
        if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
            call.id.get_or_insert(id);
        }
        if let Some(name) = fragment.name.filter(|n| !n.is_empty()) {
            call.name.get_or_insert(name);
        }
        let had = call.arguments.len();
        call.arguments.push_str(&fragment.arguments);
        if !call.started
            && let (Some(id), Some(name)) = (&call.id, &call.name)
        {
            call.started = true;
            out.push(LlmEvent::ToolCallStart {
                id: id.clone(),
                name: name.clone(),
            });
            // Arguments that came before the name go out at once.
            if !call.arguments.is_empty() {
                out.push(LlmEvent::ToolCallDelta {
                    id: id.clone(),
                    delta: call.arguments.clone(),
                });
            }
        } else if call.started
            && call.arguments.len() > had
            && let Some(id) = &call.id
        {
            out.push(LlmEvent::ToolCallDelta {
                id: id.clone(),
                delta: fragment.arguments,
            });
        }
    }

    /// Takes a whole call (Ollama's): start, its arguments as one delta, the call.
    pub(crate) fn whole(call: ToolCall, out: &mut Vec<LlmEvent>) {
        out.push(LlmEvent::ToolCallStart {
            id: call.id.clone(),
            name: call.name.clone(),
        });
        out.push(LlmEvent::ToolCallDelta {
            id: call.id.clone(),
            delta: call.arguments.to_string(),
        });
        out.push(LlmEvent::ToolCall(call));
    }

    /// The step is over: every call, whole, in `index` order. A call without a name, or
    /// whose arguments are not a JSON object (a stream cut mid-arguments), is the
    /// provider's error.
    pub(crate) fn finish(&mut self, out: &mut Vec<LlmEvent>) -> Result<(), ProviderError> {
        for (index, call) in std::mem::take(&mut self.calls) {
            let Some(name) = call.name else {
                return Err(ProviderError::Protocol(format!(
                    "tool call {index} has no function name"
                )));
            };
            let arguments = if call.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str::<Value>(&call.arguments).map_err(|e| {
                    ProviderError::Protocol(format!(
                        "the arguments of tool call {index} ({name}) are not valid JSON: {e}"
                    ))
                })?
            };
            if !arguments.is_object() {
                return Err(ProviderError::Protocol(format!(
                    "the arguments of tool call {index} ({name}) are not a JSON object"
                )));
            }
            let id = call.id.unwrap_or_else(new_call_id);
            if !call.started {
                out.push(LlmEvent::ToolCallStart {
                    id: id.clone(),
                    name: name.clone(),
                });
            }
            out.push(LlmEvent::ToolCall(ToolCall {
                id,
                name,
                arguments,
            }));
        }
        Ok(())
    }
}

/// An id for a call whose provider gave none (Ollama): unique within any answer.
pub(crate) fn new_call_id() -> String {
    let random = marie_core::StreamId::random();
    format!("call_{}", &random.as_str()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fragment(index: u64, id: Option<&str>, name: Option<&str>, args: &str) -> CallFragment {
        CallFragment {
            index,
            id: id.map(Into::into),
            name: name.map(Into::into),
            arguments: args.into(),
        }
    }

    #[test]
    fn fragments_by_index_become_whole_calls() {
        let mut calls = CallAssembler::default();
        let mut out = Vec::new();
        calls.take(fragment(0, Some("call_a"), Some("calculate"), ""), &mut out);
        calls.take(
            fragment(1, Some("call_b"), Some("send_email"), "{\"to\""),
            &mut out,
        );
        calls.take(fragment(0, None, None, "{\"expression\":"), &mut out);
        calls.take(fragment(0, None, None, "\"1+2\"}"), &mut out);
        calls.take(fragment(1, None, None, ":\"bob\"}"), &mut out);
        calls.finish(&mut out).unwrap();
        let kinds: Vec<String> = out
            .iter()
            .map(|e| match e {
                LlmEvent::ToolCallStart { id, .. } => format!("start {id}"),
                LlmEvent::ToolCallDelta { id, delta } => format!("delta {id} {delta}"),
                LlmEvent::ToolCall(c) => format!("call {} {}", c.id, c.arguments),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "start call_a",
                "start call_b",
                "delta call_b {\"to\"",
                "delta call_a {\"expression\":",
                "delta call_a \"1+2\"}",
                "delta call_b :\"bob\"}",
                "call call_a {\"expression\":\"1+2\"}",
                "call call_b {\"to\":\"bob\"}",
            ]
        );
    }

    #[test]
    fn a_call_cut_mid_arguments_is_an_error() {
        let mut calls = CallAssembler::default();
        let mut out = Vec::new();
        calls.take(
            fragment(0, Some("c"), Some("calculate"), "{\"expr"),
            &mut out,
        );
        let err = calls.finish(&mut out).unwrap_err();
        assert!(matches!(err, ProviderError::Protocol(m) if m.contains("not valid JSON")));
    }
}
