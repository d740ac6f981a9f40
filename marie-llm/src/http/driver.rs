//! The provider-independent half of an answer stream: timeouts, the end marker, and turning
//! decoded units into [`LlmEvent`]s.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, Stream, StreamExt, stream};
use marie_core::{FinishReason, LlmEvent, LlmStream, ProviderError, ToolCall, Usage};
use tokio::time::Instant;

use super::tools::{CallAssembler, CallFragment};

/// What one decoded unit of a response (an SSE event, an NDJSON line) says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Decoded {
    /// The model's reasoning (`LlmEvent::Reasoning`); may be empty. Comes before `text` when
    /// one unit holds both.
    pub(crate) reasoning: String,
    /// The signature of the reasoning given so far (`LlmEvent::ReasoningSignature`, after
    /// `reasoning`): Anthropic's, at the end of a thinking block.
    pub(crate) signature: Option<String>,
    /// Reasoning the provider redacted (`LlmEvent::RedactedReasoning`, after `signature`):
    /// the opaque data of Anthropic's `redacted_thinking` block.
    pub(crate) redacted: Option<String>,
    /// Answer text; may be empty.
    pub(crate) text: String,
    /// Fragments of streamed tool calls (OpenAI-compatible), after `text`.
    pub(crate) call_fragments: Vec<CallFragment>,
    /// Whole tool calls (Ollama), after `text`.
    pub(crate) calls: Vec<ToolCall>,
    /// The model produced output here, shown or not (text, reasoning): this ends the
    /// first-token wait.
    pub(crate) generated: bool,
    /// Usage, when this unit reports it.
    pub(crate) usage: Option<Usage>,
    /// Why the model stopped, when this unit says it.
    pub(crate) finish: Option<FinishReason>,
    /// The provider's end marker (`[DONE]`, `done:true`): the answer is complete.
    pub(crate) done: bool,
}

/// Turns a stream of units into an answer stream with the first-token and idle timeouts.
///
/// The answer ends with `Done` only on the provider's end marker; a stream that stops
/// without it yields a [`ProviderError::Protocol`] (`missing_end` says what was missing).
/// After the first error nothing more is read. Dropping the returned stream drops `units`,
/// and with it the HTTP response and its connection.
pub(crate) fn answer_stream<S>(
    units: S,
    first_token_deadline: Instant,
    idle: Duration,
    missing_end: &'static str,
) -> LlmStream
where
    S: Stream<Item = Result<Decoded, ProviderError>> + Send + 'static,
{
    let state = Driver {
        units: Some(units.boxed()),
        ready: VecDeque::new(),
        first_token_deadline,
        idle,
        last_activity: None,
        usage: None,
        finish: None,
        calls: CallAssembler::default(),
        missing_end,
    };
    stream::unfold(state, Driver::next).boxed()
}

struct Driver {
    /// `None` once the answer is over (done or failed): the response is dropped then.
    units: Option<BoxStream<'static, Result<Decoded, ProviderError>>>,
    /// Events decoded but not yet handed out.
    ready: VecDeque<Result<LlmEvent, ProviderError>>,
    first_token_deadline: Instant,
    idle: Duration,
    /// When the last unit arrived, once the first token has.
    last_activity: Option<Instant>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    /// The tool calls of the answer so far, handed out whole at its end.
    calls: CallAssembler,
    missing_end: &'static str,
}

impl Driver {
    async fn next(mut self) -> Option<(Result<LlmEvent, ProviderError>, Self)> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some((event, self));
            }
            let units = self.units.as_mut()?;
            let (deadline, stage) = match self.last_activity {
                None => (self.first_token_deadline, "first token"),
                Some(last) => (last + self.idle, "idle"),
            };
            let item = tokio::time::timeout_at(deadline, units.next()).await;
            match item {
                Err(_) => self.fail(ProviderError::Timeout(stage)),
                Ok(None) => self.fail(ProviderError::Protocol(self.missing_end.into())),
                Ok(Some(Err(e))) => self.fail(e),
                Ok(Some(Ok(unit))) => self.take(unit),
            }
        }
    }

    fn take(&mut self, unit: Decoded) {
        if self.last_activity.is_some()
            || unit.generated
            || !unit.text.is_empty()
            || !unit.reasoning.is_empty()
            || !unit.call_fragments.is_empty()
            || !unit.calls.is_empty()
        {
            self.last_activity = Some(Instant::now());
        }
        if !unit.reasoning.is_empty() {
            self.ready
                .push_back(Ok(LlmEvent::Reasoning(unit.reasoning)));
        }
        if let Some(signature) = unit.signature {
            self.ready
                .push_back(Ok(LlmEvent::ReasoningSignature(signature)));
        }
        if let Some(data) = unit.redacted.filter(|d| !d.is_empty()) {
            self.ready.push_back(Ok(LlmEvent::RedactedReasoning(data)));
        }
        if !unit.text.is_empty() {
            self.ready.push_back(Ok(LlmEvent::Delta(unit.text)));
        }
        let mut events = Vec::new();
        for fragment in unit.call_fragments {
            self.calls.take(fragment, &mut events);
        }
        for call in unit.calls {
            CallAssembler::whole(call, &mut events);
        }
        if unit.usage.is_some() {
            self.usage = unit.usage;
        }
        if unit.finish.is_some() {
            self.finish = unit.finish;
        }
        if unit.done {
            // One look past the end marker, without waiting: when the end of the body has
            // already arrived, reading it lets the connection go back to the pool for the
            // next answer (no new TCP and TLS handshake); otherwise it is closed on drop.
            if let Some(mut rest) = self.units.take() {
                let _ = rest.next().now_or_never();
            }
            if let Err(e) = self.calls.finish(&mut events) {
                self.ready.extend(events.into_iter().map(Ok));
                self.fail(e);
                return;
            }
            self.ready.extend(events.into_iter().map(Ok));
            self.ready.push_back(Ok(LlmEvent::Done {
                usage: self.usage.take(),
                finish_reason: self.finish.take().unwrap_or(FinishReason::Stop),
            }));
        } else {
            self.ready.extend(events.into_iter().map(Ok));
        }
    }

    fn fail(&mut self, error: ProviderError) {
        self.units = None;
        self.ready.push_back(Err(error));
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn text(t: &str) -> Result<Decoded, ProviderError> {
        Ok(Decoded {
            text: t.into(),
            generated: true,
            ..Decoded::default()
        })
    }

    #[tokio::test]
    async fn units_become_deltas_then_done_with_usage() {
        let units = stream::iter([
            Ok(Decoded::default()),
            text("Hel"),
            text("lo"),
            Ok(Decoded {
                finish: Some(FinishReason::Length),
                ..Decoded::default()
            }),
            Ok(Decoded {
                usage: Some(Usage::reported(3, 2)),
                ..Decoded::default()
            }),
            Ok(Decoded {
                done: true,
                ..Decoded::default()
            }),
            text("after the end is never read"),
        ]);
        let far = Instant::now() + Duration::from_secs(60);
        let events: Vec<_> = answer_stream(units, far, Duration::from_secs(60), "no end")
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await;
        assert_eq!(
            events,
            vec![
                Ok(LlmEvent::Delta("Hel".into())),
                Ok(LlmEvent::Delta("lo".into())),
                Ok(LlmEvent::Done {
                    usage: Some(Usage::reported(3, 2)),
                    finish_reason: FinishReason::Length
                }),
            ]
        );
    }

    #[tokio::test]
    async fn an_end_without_the_marker_is_an_error() {
        let far = Instant::now() + Duration::from_secs(60);
        let events: Vec<_> = answer_stream(
            stream::iter([text("a")]),
            far,
            Duration::from_secs(60),
            "no end",
        )
        .collect()
        .await;
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[1], Err(ProviderError::Protocol(m)) if m == "no end"));
    }

    #[tokio::test(start_paused = true)]
    async fn first_token_and_idle_timeouts() {
        let now = Instant::now();
        let silent = stream::pending::<Result<Decoded, ProviderError>>();
        let mut s = answer_stream(
            silent,
            now + Duration::from_secs(5),
            Duration::from_secs(1),
            "x",
        );
        assert!(matches!(
            s.next().await,
            Some(Err(ProviderError::Timeout("first token")))
        ));
        assert!(s.next().await.is_none());
        assert_eq!(now.elapsed(), Duration::from_secs(5));

        let now = Instant::now();
        let stalls = stream::iter([text("a")]).chain(stream::pending());
        let mut s = answer_stream(
            stalls,
            now + Duration::from_secs(5),
            Duration::from_secs(1),
            "x",
        );
        assert!(matches!(s.next().await, Some(Ok(LlmEvent::Delta(t))) if t == "a"));
        assert!(matches!(
            s.next().await,
            Some(Err(ProviderError::Timeout("idle")))
        ));
        assert_eq!(now.elapsed(), Duration::from_secs(1));
    }
}
