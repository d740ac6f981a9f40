//! The answer so far: its text (what `full_content` and the stored message will hold), its
//! parts in order (text, reasoning, tool calls and results), the calls of the current step,
//! the token count (`tokens_used`) and the timing metrics that come with it.

use std::time::Instant;

use crate::{MessagePart, ToolCall};

/// A part of the answer so far.
#[derive(Clone)]
enum Span {
    /// `content[start..end]`.
    Text { start: usize, end: usize },
    /// Reasoning, and its signature once the provider gave one (which closes the part).
    /// Redacted reasoning is a [`Part`](Self::Part) (`MessagePart::RedactedReasoning`).
    Reasoning {
        content: String,
        signature: Option<String>,
    },
    /// A tool call or result.
    Part(MessagePart),
}

/// The answer so far (see the module documentation).
pub(super) struct Draft {
    started: Instant,
    content: String,
    /// Text and reasoning in the order the model gave them; consecutive deltas of one kind
    /// make one part. The text's parts are ranges of `content`, not copies of it.
    parts: Vec<Span>,
    /// Non-empty deltas so far: one completion token each (see `LlmEvent::Delta`).
    deltas: u64,
    first_at: Option<Instant>,
    /// The calls the model made in the current step, to run when the step is done.
    calls: Vec<ToolCall>,
}

/// Where the answer was when a model step began: what a failed step's retry goes back to.
pub(super) struct Mark {
    /// The last `seq` sent then.
    seq: u64,
    content: usize,
    /// The parts then (few: the last text part may have grown since).
    parts: Vec<Span>,
    deltas: u64,
    calls: usize,
}

impl Mark {
    /// The last `seq` sent when the mark was made.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }
}

impl Draft {
    /// Where the answer is now (`seq`: the last event sent), to go back to with
    /// [`rollback`](Self::rollback).
    pub(super) fn mark(&self, seq: u64) -> Mark {
        Mark {
            seq,
            content: self.content.len(),
            parts: self.parts.clone(),
            deltas: self.deltas,
            calls: self.calls.len(),
        }
    }

    /// Forgets everything taken since `mark`: the text, reasoning, calls and token count of
    /// a failed step.
    pub(super) fn rollback(&mut self, mark: &Mark) {
        self.content.truncate(mark.content);
        self.parts.clone_from(&mark.parts);
        self.deltas = mark.deltas;
        self.calls.truncate(mark.calls);
    }

    /// The draft of an answer whose request is sent now.
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            content: String::new(),
            parts: Vec::new(),
            deltas: 0,
            first_at: None,
            calls: Vec::new(),
        }
    }

    /// Takes a delta of the provider: `None` when it is empty (skipped), else the text to send.
    pub(super) fn add(&mut self, delta: String) -> Option<String> {
        if delta.is_empty() {
            return None;
        }
        self.deltas += 1;
        if self.deltas == 1 {
            self.first_at = Some(Instant::now());
            metrics::histogram!("marie_stream_first_chunk_seconds")
                .record(self.started.elapsed().as_secs_f64());
        }
        let start = self.content.len();
        self.content.push_str(&delta);
        let end = self.content.len();
        match self.parts.last_mut() {
            Some(Span::Text { end: last, .. }) => *last = end,
            _ => self.parts.push(Span::Text { start, end }),
        }
        Some(delta)
    }

    /// Takes a reasoning delta: `None` when it is empty, else the reasoning to send. Not part
    /// of the text, nor of `tokens_used` (which counts the text's chunks).
    pub(super) fn add_reasoning(&mut self, delta: String) -> Option<String> {
        if delta.is_empty() {
            return None;
        }
        match self.parts.last_mut() {
            Some(Span::Reasoning {
                content,
                signature: None,
            }) => content.push_str(&delta),
            _ => self.parts.push(Span::Reasoning {
                content: delta.clone(),
                signature: None,
            }),
        }
        Some(delta)
    }

    /// Takes the provider's signature of the reasoning just given (`LlmEvent::ReasoningSignature`):
    /// kept on that part, which it closes; with no unsigned reasoning last, a part of empty
    /// reasoning holds it.
    pub(super) fn sign_reasoning(&mut self, signed: String) {
        match self.parts.last_mut() {
            Some(Span::Reasoning {
                signature: signature @ None,
                ..
            }) => *signature = Some(signed),
            _ => self.parts.push(Span::Reasoning {
                content: String::new(),
                signature: Some(signed),
            }),
        }
    }

    /// Takes a block of reasoning the provider redacted (`LlmEvent::RedactedReasoning`): a
    /// part of its own, after the reasoning before it (which it closes), for the next
    /// request to send back. Empty data is skipped. Nothing of it is for clients to read.
    pub(super) fn add_redacted_reasoning(&mut self, data: String) {
        if !data.is_empty() {
            self.parts
                .push(Span::Part(MessagePart::RedactedReasoning { data }));
        }
    }

    /// Takes a complete tool call: kept as a part, and to run when the step is done.
    pub(super) fn add_call(&mut self, call: ToolCall) {
        self.parts.push(Span::Part(MessagePart::ToolCall {
            tool_call_id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.clone(),
        }));
        self.calls.push(call);
    }

    /// The calls of the step just done.
    pub(super) fn take_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    /// Takes a part that is neither text nor reasoning (a tool result).
    pub(super) fn add_part(&mut self, part: MessagePart) {
        self.parts.push(Span::Part(part));
    }

    /// The calls made that have no result yet (the answer stopped while they waited or
    /// ran), as `(tool_call_id, name)`, in order.
    pub(super) fn open_calls(&self) -> Vec<(String, String)> {
        let mut open: Vec<(String, String)> = Vec::new();
        for span in &self.parts {
            match span {
                Span::Part(MessagePart::ToolCall {
                    tool_call_id, name, ..
                }) => open.push((tool_call_id.clone(), name.clone())),
                Span::Part(MessagePart::ToolResult { tool_call_id, .. }) => {
                    open.retain(|(id, _)| id != tool_call_id);
                }
                _ => {}
            }
        }
        open
    }

    /// The parts so far, for the model's next step.
    pub(super) fn parts(&self) -> Vec<MessagePart> {
        self.parts.iter().map(|span| self.part(span)).collect()
    }

    /// The text so far.
    pub(super) fn content(&self) -> &str {
        &self.content
    }

    fn part(&self, span: &Span) -> MessagePart {
        match span {
            Span::Text { start, end } => MessagePart::Text {
                content: self.content[*start..*end].to_owned(),
            },
            Span::Reasoning { content, signature } => MessagePart::Reasoning {
                content: content.clone(),
                signature: signature.clone(),
            },
            Span::Part(part) => part.clone(),
        }
    }

    /// Completion tokens so far, as `stream_chunk.tokens_used` counts them.
    pub(super) fn tokens(&self) -> u64 {
        self.deltas
    }

    /// Records the generation speed of a finished answer: the tokens after the first per
    /// second between the first delta and the end. Answers of fewer than two tokens say
    /// nothing about speed and are not recorded.
    pub(super) fn record_speed(&self) {
        let Some(first) = self.first_at else { return };
        let seconds = first.elapsed().as_secs_f64();
        if self.deltas >= 2 && seconds > 0.0 {
            metrics::histogram!("marie_stream_tokens_per_second")
                .record((self.deltas - 1) as f64 / seconds);
        }
    }

    /// The whole text, and the parts in order.
    pub(super) fn into_content(self) -> (String, Vec<MessagePart>) {
        let parts = self
            .parts
            .into_iter()
            .map(|span| match span {
                Span::Text { start, end } => MessagePart::Text {
                    content: self.content[start..end].to_owned(),
                },
                Span::Reasoning { content, signature } => {
                    MessagePart::Reasoning { content, signature }
                }
                Span::Part(part) => part,
            })
            .collect();
        (self.content, parts)
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

    /// A signature closes its reasoning part: reasoning after it starts a new one, and a
    /// signature with no reasoning before it makes a part of empty reasoning.
    #[test]
    fn signatures_close_reasoning_parts() {
        let mut draft = Draft::new();
        draft.add_reasoning("Let me".into());
        draft.add_reasoning(" think.".into());
        draft.sign_reasoning("sig-1".into());
        draft.add_reasoning("More.".into());
        draft.add("Hi".into());
        draft.sign_reasoning("sig-2".into());
        let mark = draft.mark(0);
        draft.add_reasoning("dropped".into());
        draft.rollback(&mark);
        let (content, parts) = draft.into_content();
        assert_eq!(content, "Hi");
        assert_eq!(
            parts,
            [
                reasoning("Let me think.", Some("sig-1")),
                reasoning("More.", None),
                MessagePart::Text {
                    content: "Hi".into()
                },
                reasoning("", Some("sig-2")),
            ]
        );
    }

    fn redacted(data: &str) -> MessagePart {
        MessagePart::RedactedReasoning { data: data.into() }
    }

    /// Redacted reasoning keeps its place among the reasoning parts, closes the reasoning
    /// before it, and goes with a failed step's rollback like any other part.
    #[test]
    fn redacted_reasoning_is_a_part_in_its_place() {
        let mut draft = Draft::new();
        draft.add_reasoning("Let me think.".into());
        draft.sign_reasoning("sig-1".into());
        draft.add_redacted_reasoning("opaque-1".into());
        draft.add_redacted_reasoning(String::new());
        draft.add_reasoning("Unsigned".into());
        draft.add_redacted_reasoning("opaque-2".into());
        draft.add_reasoning(" and more.".into());
        let mark = draft.mark(0);
        draft.add_redacted_reasoning("dropped".into());
        draft.add("lost".into());
        draft.rollback(&mark);
        assert_eq!(
            draft.parts(),
            [
                reasoning("Let me think.", Some("sig-1")),
                redacted("opaque-1"),
                reasoning("Unsigned", None),
                redacted("opaque-2"),
                reasoning(" and more.", None),
            ]
        );
        draft.add("Hi".into());
        let (content, parts) = draft.into_content();
        assert_eq!(content, "Hi");
        assert_eq!(parts[3], redacted("opaque-2"));
        assert_eq!(parts.len(), 6);
    }
}
