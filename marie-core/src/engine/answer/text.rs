//! The answer's text so far: what `full_content` and the stored message will hold, with its
//! parts (text and reasoning, in order), the token count (`tokens_used`) and the timing
//! metrics that come with it.

use std::time::Instant;

use crate::MessagePart;

/// A part of the answer so far.
enum Span {
    /// `content[start..end]`.
    Text {
        start: usize,
        end: usize,
    },
    Reasoning(String),
}

pub(super) struct Text {
    started: Instant,
    content: String,
    /// Text and reasoning in the order the model gave them; consecutive deltas of one kind
    /// make one part. The text's parts are ranges of `content`, not copies of it.
    parts: Vec<Span>,
    /// Non-empty deltas so far: one completion token each (see `LlmEvent::Delta`).
    deltas: u64,
    first_at: Option<Instant>,
}

impl Text {
    /// The text of an answer whose request is sent now.
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            content: String::new(),
            parts: Vec::new(),
            deltas: 0,
            first_at: None,
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
            Some(Span::Reasoning(content)) => content.push_str(&delta),
            _ => self.parts.push(Span::Reasoning(delta.clone())),
        }
        Some(delta)
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
                Span::Reasoning(content) => MessagePart::Reasoning { content },
            })
            .collect();
        (self.content, parts)
    }
}
