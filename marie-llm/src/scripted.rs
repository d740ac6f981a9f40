//! [`ScriptedProvider`]: a provider that plays a script, for tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};

use marie_core::{
    FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, MessageRole, ProviderError,
    ToolCall, Usage,
};
use serde_json::Value;

/// How a script ends after its chunks.
#[derive(Clone, Debug)]
enum Ending {
    Done(Option<Usage>),
    /// Never ends: for cancellation and shutdown tests.
    Hang,
    /// Ends without `Done`: a truncated upstream stream.
    Truncated,
}

#[derive(Clone, Debug)]
struct Script {
    /// Deltas, text or reasoning, in order.
    chunks: Vec<LlmEvent>,
    /// The items of the later steps of an answer (after tool results), in order; the last
    /// one plays again for any step after it.
    later_steps: Vec<Vec<LlmEvent>>,
    delay: Duration,
    start_error: Option<ProviderError>,
    /// Only the first this many requests fail with `start_error` (0: all of them).
    start_error_for: usize,
    fail_at: Option<(usize, ProviderError)>,
    /// Only the first this many streams fail with `fail_at` (0: all of them).
    fail_at_for: usize,
    panic_at: Option<usize>,
    ending: Ending,
}

/// A provider for tests: fixed chunks, a delay before each, and faults on cue.
///
/// It records every request it gets and counts the answer streams dropped, so a test can
/// check that a cancelled answer let go of its "upstream request".
#[derive(Clone, Debug)]
pub struct ScriptedProvider {
    script: Script,
    requests: Arc<Mutex<Vec<LlmRequest>>>,
    dropped: Arc<AtomicUsize>,
}

impl ScriptedProvider {
    /// Plays `chunks`, then `Done` with no usage (so the engine estimates it).
    pub fn new<I, S>(chunks: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            script: Script {
                chunks: chunks
                    .into_iter()
                    .map(|c| LlmEvent::Delta(c.into()))
                    .collect(),
                later_steps: Vec::new(),
                delay: Duration::ZERO,
                start_error: None,
                start_error_for: 0,
                fail_at: None,
                fail_at_for: 0,
                panic_at: None,
                ending: Ending::Done(None),
            },
            requests: Arc::default(),
            dropped: Arc::default(),
        }
    }

    /// Plays `pieces` of reasoning ([`LlmEvent::Reasoning`]) before the chunks.
    pub fn reasoning_first<I, S>(mut self, pieces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let reasoning = pieces.into_iter().map(|p| LlmEvent::Reasoning(p.into()));
        self.script.chunks.splice(0..0, reasoning);
        self
    }

    /// Ends the first step with a call of tool `name` (id `id`) with `arguments`, streamed as
    /// a start, the arguments' JSON text in two deltas, and the whole call.
    pub fn calls_tool(mut self, id: &str, name: &str, arguments: Value) -> Self {
        self.script
            .chunks
            .extend(Self::tool_call(id, name, arguments));
        self
    }

    /// Adds a step, played when the model is asked again after tool results: `chunks` of
    /// text, then the calls of `calls` (`(id, name, arguments)`). The last step added is
    /// played again for any later step, with `-{step}` added to its call ids: a model that
    /// never stops calling tools.
    pub fn then_step<I, S>(mut self, chunks: I, calls: Vec<(&str, &str, Value)>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut step: Vec<LlmEvent> = chunks
            .into_iter()
            .map(|c| LlmEvent::Delta(c.into()))
            .collect();
        for (id, name, arguments) in calls {
            step.extend(Self::tool_call(id, name, arguments));
        }
        self.script.later_steps.push(step);
        self
    }

    /// The items of one streamed tool call.
    fn tool_call(id: &str, name: &str, arguments: Value) -> Vec<LlmEvent> {
        let text = arguments.to_string();
        let half = text
            .char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        vec![
            LlmEvent::ToolCallStart {
                id: id.into(),
                name: name.into(),
            },
            LlmEvent::ToolCallDelta {
                id: id.into(),
                delta: text[..half].into(),
            },
            LlmEvent::ToolCallDelta {
                id: id.into(),
                delta: text[half..].into(),
            },
            LlmEvent::ToolCall(ToolCall {
                id: id.into(),
                name: name.into(),
                arguments,
            }),
        ]
    }

    /// Waits `delay` before each chunk.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.script.delay = delay;
        self
    }

    /// Reports `usage` in `Done`.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.script.ending = Ending::Done(Some(usage));
        self
    }

    /// Fails before any chunk, as a provider that cannot be reached.
    pub fn fail_on_start(mut self, error: ProviderError) -> Self {
        self.script.start_error = Some(error);
        self
    }

    /// Fails only the first `n` requests with `error`, then plays the script: a provider
    /// that comes back.
    pub fn fail_first(mut self, n: usize, error: ProviderError) -> Self {
        self.script.start_error = Some(error);
        self.script.start_error_for = n.max(1);
        self
    }

    /// Yields `error` after `n` chunks.
    pub fn fail_at(mut self, n: usize, error: ProviderError) -> Self {
        self.script.fail_at = Some((n, error));
        self
    }

    /// Yields `error` after `n` chunks in the first `times` streams only, then plays the
    /// script whole: a stream that breaks and works when asked again.
    pub fn fail_first_at(mut self, times: usize, n: usize, error: ProviderError) -> Self {
        self.script.fail_at = Some((n, error));
        self.script.fail_at_for = times.max(1);
        self
    }

    /// Panics after `n` chunks, as a buggy backend would.
    pub fn panic_at(mut self, n: usize) -> Self {
        self.script.panic_at = Some(n);
        self
    }

    /// Never ends after the chunks.
    pub fn hang_at_end(mut self) -> Self {
        self.script.ending = Ending::Hang;
        self
    }

    /// Ends after the chunks without `Done`.
    pub fn truncated(mut self) -> Self {
        self.script.ending = Ending::Truncated;
        self
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<LlmRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many answer streams have been dropped (finished or abandoned).
    pub fn streams_dropped(&self) -> usize {
        self.dropped.load(Ordering::Acquire)
    }
}

/// The state of one answer stream; the stream owns it, so it drops with the stream.
struct Playback {
    script: Script,
    next: usize,
    finished: bool,
    _dropped: DropCounter,
}

/// Counts a stream as dropped when the stream (which owns it) is dropped.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Which step of its answer a request asks for: 0 for the first; after that, one more for
/// each step whose tool results the request carries.
fn step_of(request: &LlmRequest) -> usize {
    match request.messages.last() {
        Some(m) if m.role == MessageRole::Assistant => m
            .assistant_turns()
            .iter()
            .filter(|t| !t.results.is_empty())
            .count(),
        _ => 0,
    }
}

#[async_trait]
impl LlmProvider for ScriptedProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let step = step_of(&request);
        let nth = {
            let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
            requests.push(request);
            requests.len()
        };
        let mut script = self.script.clone();
        if step > 0
            && let Some(last) = script.later_steps.len().checked_sub(1)
        {
            let mut items = script.later_steps[(step - 1).min(last)].clone();
            if step > last + 1 {
                for item in &mut items {
                    match item {
                        LlmEvent::ToolCallStart { id, .. } | LlmEvent::ToolCallDelta { id, .. } => {
                            id.push_str(&format!("-{step}"));
                        }
                        LlmEvent::ToolCall(call) => call.id.push_str(&format!("-{step}")),
                        _ => {}
                    }
                }
            }
            script.chunks = items;
        }
        if let Some(e) = script.start_error.take()
            && (script.start_error_for == 0 || nth <= script.start_error_for)
        {
            return Err(e);
        }
        if script.fail_at_for != 0 && nth > script.fail_at_for {
            script.fail_at = None;
        }
        let state = Playback {
            script,
            next: 0,
            finished: false,
            _dropped: DropCounter(self.dropped.clone()),
        };
        let stream = stream::unfold(state, |mut st| async move {
            if st.finished {
                return None;
            }
            if let Some((_, e)) = st.script.fail_at.as_ref().filter(|(n, _)| st.next >= *n) {
                let e = e.clone();
                st.finished = true;
                return Some((Err(e), st));
            }
            if st.script.panic_at.is_some_and(|n| st.next >= n) {
                panic!("scripted provider panics as asked");
            }
            if let Some(chunk) = st.script.chunks.get(st.next).cloned() {
                if !st.script.delay.is_zero() {
                    tokio::time::sleep(st.script.delay).await;
                }
                st.next += 1;
                return Some((Ok(chunk), st));
            }
            st.finished = true;
            let called = st
                .script
                .chunks
                .iter()
                .any(|c| matches!(c, LlmEvent::ToolCall(_)));
            match st.script.ending.clone() {
                Ending::Done(usage) => Some((
                    Ok(LlmEvent::Done {
                        usage,
                        finish_reason: if called {
                            FinishReason::ToolCalls
                        } else {
                            FinishReason::Stop
                        },
                    }),
                    st,
                )),
                Ending::Hang => std::future::pending().await,
                Ending::Truncated => None,
            }
        });
        Ok(stream.boxed())
    }

    fn name(&self) -> &str {
        "scripted"
    }
}
