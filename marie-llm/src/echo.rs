//! [`EchoProvider`]: a demo provider that needs no model.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use marie_core::{
    Attachment, FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, MessageRole,
    ProviderError, ToolCall, ToolSpec, Usage, estimate_tokens,
};
use serde_json::{Map, Value};

use crate::words::word_chunks;

/// **A demo, not a model.** Streams the user's newest message back, one chunk per word,
/// waiting `delay` before each word, so that streaming can be watched without any LLM.
/// A message whose first word is `think` (e.g. "think: what is 2+2?") gets a short reasoning
/// first ([`LlmEvent::Reasoning`]), so that reasoning can be watched too.
///
/// A message that names a tool on offer ("calculate 12*7", "send_email to bob") gets a call
/// of that tool instead of the echo: the text after the tool's name is the value of its
/// first required argument (a leading word that names the argument, like "to", is dropped).
/// Given the call's result, it says what the tool returned. So tool calls and approvals can
/// be watched without a model too. A message that mentions someone (`@calc 12*7`), in a
/// request that offers exactly one tool (a named assistant given one, like the chat
/// example's `@calc`), gets a call of that tool, the text without its `@mentions` as the
/// argument.
///
/// A message with files gets, after the echo, ` [attached: cat.png (image/png, 1234 bytes)]`
/// per file, the size being that of the bytes it was given (` [attached: old.png
/// (image/png): no longer available]` for a file the engine could not read), so that a test
/// of the whole chain can see what reached the model. A message without files is echoed as
/// it is.
///
/// It reports usage with its own counts: the prompt estimated from the request's text, one
/// completion token per word.
#[derive(Clone, Debug)]
pub struct EchoProvider {
    delay: Duration,
}

impl Default for EchoProvider {
    fn default() -> Self {
        Self::new(Duration::from_millis(60))
    }
}

impl EchoProvider {
    /// An echo provider that waits `delay` before each word.
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }

    /// The per-word delay from the environment variable `var` (milliseconds), or 60 ms.
    pub fn from_env_var(var: &str) -> Self {
        let delay = std::env::var(var)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(60));
        Self::new(delay)
    }
}

/// What the echo provider "thinks" before a message that starts with `think`.
const REASONING: &str = "The user wants to see me think. I am a demo without a model, \
so I will repeat their message, word by word.";

/// Whether the message's first word is `think`, in any case, followed by anything.
fn asks_to_think(text: &str) -> bool {
    text.split_whitespace().next().is_some_and(|first| {
        first
            .trim_end_matches(|c: char| !c.is_alphanumeric())
            .eq_ignore_ascii_case("think")
    })
}

#[async_trait]
impl LlmProvider for EchoProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let question = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == MessageRole::User);
        let text = question.map(|m| m.content.clone()).unwrap_or_default();
        let (events, finish_reason) = match plan(&request, &text) {
            Plan::Say(said) => (
                word_chunks(&said)
                    .into_iter()
                    .map(LlmEvent::Delta)
                    .collect(),
                FinishReason::Stop,
            ),
            Plan::Call(call) => (call_events(call), FinishReason::ToolCalls),
            Plan::Echo => {
                let files = question.map_or(&[][..], |m| &m.attachments[..]);
                return Ok(self.echo(&request, &text, files));
            }
        };
        let usage = Usage::reported(prompt_tokens(&request), events.len() as u64);
        Ok(self.play(events, usage, finish_reason))
    }

    fn name(&self) -> &str {
        "echo"
    }
}

/// What the echo provider does with a request.
enum Plan {
    /// Repeat the user's message.
    Echo,
    /// Call a tool.
    Call(ToolCall),
    /// Say this (what the tools returned).
    Say(String),
}

fn plan(request: &LlmRequest, text: &str) -> Plan {
    // "which model": says the model the request names, so that a conversation's choice
    // can be seen without a real model.
    if text
        .trim()
        .trim_end_matches('?')
        .eq_ignore_ascii_case("which model")
    {
        return Plan::Say(format!(
            "This conversation uses the model {}.",
            request.model.as_deref().unwrap_or("echo")
        ));
    }
    // Asked again after tool calls: say what they returned.
    if let Some(answer) = request
        .messages
        .last()
        .filter(|m| m.role == MessageRole::Assistant)
    {
        let said: Vec<String> = answer
            .assistant_turns()
            .last()
            .map(|turn| {
                turn.results
                    .iter()
                    .map(|r| format!("{} returned: {}", r.name, r.content))
                    .collect()
            })
            .unwrap_or_default();
        if !said.is_empty() {
            return Plan::Say(said.join("\n"));
        }
    }
    if let Some(call) = request.tools.iter().find_map(|tool| call_for(tool, text)) {
        return Plan::Call(call);
    }
    // An assistant given one tool (`@calc` in the chat example) uses it when called in: the
    // message, without its `@mentions`, is the tool's argument.
    match &request.tools[..] {
        [only] if text.split_whitespace().any(|w| w.starts_with('@')) => {
            let words: Vec<&str> = text
                .split_whitespace()
                .filter(|w| !w.starts_with('@'))
                .collect();
            if words.is_empty() {
                Plan::Echo
            } else {
                Plan::Call(call_with(only, &words))
            }
        }
        _ => Plan::Echo,
    }
}

/// A call of `tool` when `text` names it as a word.
fn call_for(tool: &ToolSpec, text: &str) -> Option<ToolCall> {
    let at = text
        .split_whitespace()
        .position(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '_') == tool.name)?;
    let rest: Vec<&str> = text.split_whitespace().skip(at + 1).collect();
    Some(call_with(tool, &rest))
}

/// A call of `tool` whose first required argument is `rest`, joined (a leading word that
/// names the argument, or "to", dropped).
fn call_with(tool: &ToolSpec, rest: &[&str]) -> ToolCall {
    let required = tool.parameters["required"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(Value::as_str)
        .or_else(|| {
            tool.parameters["properties"]
                .as_object()
                .and_then(|p| p.keys().next())
                .map(String::as_str)
        });
    let mut arguments = Map::new();
    if let Some(name) = required {
        let skip = usize::from(rest.first().is_some_and(|w| *w == name || *w == "to"));
        arguments.insert(name.to_owned(), rest[skip..].join(" ").into());
    }
    ToolCall {
        id: format!("call_{}", &marie_core::StreamId::random().as_str()[..12]),
        name: tool.name.clone(),
        arguments: Value::Object(arguments),
    }
}

/// A call as a model streams it: its start, its arguments in pieces, the whole call.
fn call_events(call: ToolCall) -> Vec<LlmEvent> {
    let mut events = vec![LlmEvent::ToolCallStart {
        id: call.id.clone(),
        name: call.name.clone(),
    }];
    let arguments = call.arguments.to_string();
    let chars: Vec<char> = arguments.chars().collect();
    for piece in chars.chunks(8) {
        events.push(LlmEvent::ToolCallDelta {
            id: call.id.clone(),
            delta: piece.iter().collect(),
        });
    }
    events.push(LlmEvent::ToolCall(call));
    events
}

/// What the echo says of a file it was given: its name, its type, and how many bytes
/// reached it (not the size on record: the bytes are what a model would read).
fn given(file: &Attachment) -> String {
    match &file.data {
        Some(data) => format!(
            " [attached: {} ({}, {} bytes)]",
            file.name,
            file.content_type,
            data.len()
        ),
        None => format!(
            " [attached: {} ({}): no longer available]",
            file.name, file.content_type
        ),
    }
}

fn prompt_tokens(request: &LlmRequest) -> u64 {
    request
        .messages
        .iter()
        .map(|m| estimate_tokens(&m.content))
        .sum()
}

impl EchoProvider {
    /// Plays `events`, each after the delay, then `Done`.
    fn play(&self, events: Vec<LlmEvent>, usage: Usage, finish_reason: FinishReason) -> LlmStream {
        let delay = self.delay;
        let items = stream::iter(events).then(move |event| async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(event)
        });
        let done = stream::once(async move {
            Ok(LlmEvent::Done {
                usage: Some(usage),
                finish_reason,
            })
        });
        items.chain(done).boxed()
    }

    /// The echo: the reasoning first when asked to think, then the message word by word,
    /// and what it was given of each file.
    fn echo(&self, request: &LlmRequest, text: &str, files: &[Attachment]) -> LlmStream {
        let mut said = text.to_owned();
        for file in files {
            said.push_str(&given(file));
        }
        // Files alone (the engine takes a message of files without text): no leading space.
        let said = if text.is_empty() {
            said.trim_start()
        } else {
            &said
        };
        let words = word_chunks(said);
        let reasoning = if asks_to_think(text) {
            word_chunks(REASONING)
        } else {
            Vec::new()
        };
        let usage = Usage::reported(
            prompt_tokens(request),
            (reasoning.len() + words.len()) as u64,
        );
        let events = reasoning
            .into_iter()
            .map(LlmEvent::Reasoning)
            .chain(words.into_iter().map(LlmEvent::Delta))
            .collect();
        self.play(events, usage, FinishReason::Stop)
    }
}

#[cfg(test)]
mod tests {
    use marie_core::{Bytes, ConversationId, FileId, PromptMessage, UserId};

    use super::*;

    fn request(messages: Vec<PromptMessage>) -> LlmRequest {
        LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages,
            tools: Vec::new(),
            model: None,
        }
    }

    fn file(name: &str, content_type: &str, data: Option<&'static [u8]>) -> Attachment {
        Attachment {
            file_id: FileId::random(),
            name: name.into(),
            content_type: content_type.into(),
            size: 2048,
            data: data.map(Bytes::from_static),
        }
    }

    async fn said(request: LlmRequest) -> String {
        let events: Vec<LlmEvent> = EchoProvider::new(Duration::ZERO)
            .stream(request)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|e| e.unwrap_or_else(|e| panic!("{e}")))
            .collect()
            .await;
        events
            .into_iter()
            .filter_map(|e| match e {
                LlmEvent::Delta(d) => Some(d),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn the_echo_names_the_files_of_the_message_and_what_it_got_of_them() {
        let earlier = PromptMessage {
            attachments: vec![file("earlier.png", "image/png", Some(b"x"))],
            ..PromptMessage::text(MessageRole::User, "before")
        };
        let question = PromptMessage {
            attachments: vec![
                file("cat.png", "image/png", Some(b"\x89PNG\r\n\x1a\n")),
                file("notes.txt", "text/plain", Some(b"hello")),
                file("old.pdf", "application/pdf", None),
            ],
            ..PromptMessage::text(MessageRole::User, "What is this?")
        };
        let answer = PromptMessage::text(MessageRole::Assistant, "before");
        assert_eq!(
            said(request(vec![earlier, answer, question.clone()])).await,
            "What is this? [attached: cat.png (image/png, 8 bytes)] \
             [attached: notes.txt (text/plain, 5 bytes)] \
             [attached: old.pdf (application/pdf): no longer available]"
        );
        // Files alone.
        let alone = PromptMessage {
            content: String::new(),
            attachments: vec![file("notes.txt", "text/plain", Some(b"hello"))],
            ..question
        };
        assert_eq!(
            said(request(vec![alone])).await,
            "[attached: notes.txt (text/plain, 5 bytes)]"
        );
    }

    #[tokio::test]
    async fn a_message_without_files_is_echoed_as_it_is() {
        let question = PromptMessage::text(MessageRole::User, "  hello  big world ");
        assert_eq!(said(request(vec![question])).await, "  hello  big world ");
    }
}
