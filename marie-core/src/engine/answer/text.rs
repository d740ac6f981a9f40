//! The answer's text so far: what `full_content` and the stored message will hold, with the
//! token count (`tokens_used`) and the timing metrics that come with it.

use std::time::Instant;

pub(super) struct Text {
    started: Instant,
    content: String,
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
        self.content.push_str(&delta);
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

    /// The whole text.
    pub(super) fn into_content(self) -> String {
        self.content
    }
}
