//! [`FallbackProvider`]: a list of providers tried in order when one is unavailable before
//! its answer begins, with a circuit breaker per provider.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use marie_core::{LlmProvider, LlmRequest, LlmStream, ProviderError};
use tokio::time::Instant;

const NAME: &str = "fallback";

/// A provider made of other providers, asked in order: when one is **unavailable before its
/// answer begins**, the next one is asked instead.
///
/// *Unavailable* is a [retryable](ProviderError::retryable) failure of
/// [`stream`](LlmProvider::stream), or of the first item of its stream (before any text,
/// reasoning or call came): a connection refused or reset, a connect or first-token timeout,
/// HTTP 5xx, HTTP 429, an error event in place of the answer. The HTTP providers have retried
/// what they could by then (their `RetryPolicy`), so an error that reaches
/// the fallback is one the provider has given up on.
///
/// The conversation's model ([`LlmRequest::model`]) goes to the first provider only: the
/// others answer with the model each was built with, since model names differ between
/// vendors.
///
/// What is **not** a reason to switch:
///
/// * **A failure the next provider cannot fix**, such as rejected credentials (401/403), an
///   unknown model, or a bad request. It is returned as it is: a misconfiguration should be
///   loud, not hidden behind a fallback that quietly answers every question.
/// * **A failure after the answer began.** Clients already hold part of the answer; another
///   model would not continue it word for word. The engine's mid-stream retry handles those
///   (`EngineConfig::mid_stream_retries`, `stream_reset`): it asks the step again, through
///   this provider, so the first available provider in the list answers the retry.
///
/// ## `Retry-After`
///
/// A provider that asks to wait (HTTP 429 with `Retry-After`, as
/// [`ProviderError::RateLimited`]) is honoured: it is not asked again before the wait is
/// over, by this answer or any other. When the wait is no longer than
/// [`max_retry_after`](Self::max_retry_after) (default 1 s), this answer waits for it once and
/// asks the same provider again; when it is longer, the next provider is asked at once.
///
/// ## Circuit breaker
///
/// Each provider has a small circuit breaker. After
/// [`failure_threshold`](Self::failure_threshold) (default 3) consecutive unavailable
/// answers, its circuit *opens*: it is skipped, without being asked, for
/// [`cool_down`](Self::cool_down) (default 30 s). Then the circuit is *half-open*: one answer
/// is let through as a trial (others still skip it meanwhile); if it begins, the circuit
/// closes, if it fails, it opens for another cool-down. An answer that begins, or a failure
/// that shows the provider is up (a 4xx), resets the count. When every provider is skipped
/// the answer fails at once with [`ProviderError::Unreachable`], retryable.
///
/// ## Names, logs and metrics
///
/// [`name`](LlmProvider::name) is `"fallback"`; each provider in the list has its own name,
/// its [`name`](LlmProvider::name) by default (made unique with `-2`, `-3`... when two are
/// alike) or one given with [`named`](Self::named). Which provider answered is logged
/// (`tracing`, target `marie_llm::fallback`), and recorded:
///
/// * `marie_provider_fallbacks_total{from, to}`: one per request sent to provider `to`
///   because the one before it in the list, `from`, failed or was skipped;
/// * `marie_provider_circuit_open{provider}`: 1 while the provider's circuit is open or
///   half-open, 0 when closed.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use marie_core::LlmProvider;
/// use marie_llm::{FallbackProvider, ScriptedProvider};
///
/// // In practice an `OpenAiProvider`, then an `OllamaProvider` on this machine.
/// let primary: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["Hi"]));
/// let local: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["Hello"]));
/// let provider = FallbackProvider::named([("primary", primary), ("local", local)])
///     .failure_threshold(3)
///     .cool_down(Duration::from_secs(30))
///     .max_retry_after(Duration::from_secs(1));
/// assert_eq!(provider.providers().collect::<Vec<_>>(), ["primary", "local"]);
/// ```
pub struct FallbackProvider {
    members: Vec<Member>,
    failure_threshold: u32,
    cool_down: Duration,
    max_retry_after: Duration,
}

impl std::fmt::Debug for FallbackProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackProvider")
            .field("providers", &self.providers().collect::<Vec<_>>())
            .field("failure_threshold", &self.failure_threshold)
            .field("cool_down", &self.cool_down)
            .field("max_retry_after", &self.max_retry_after)
            .finish()
    }
}

/// The state of a provider's circuit breaker in a [`FallbackProvider`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// The provider is asked.
    Closed,
    /// The provider failed too often and is skipped until its cool-down is over.
    Open,
    /// The cool-down is over: the next answer (or the one under way) is a trial.
    HalfOpen,
}

struct Member {
    name: String,
    provider: Arc<dyn LlmProvider>,
    circuit: Mutex<Circuit>,
}

#[derive(Default)]
struct Circuit {
    /// Unavailable answers in a row.
    failures: u32,
    /// While the circuit is open or half-open: when the cool-down ends.
    open_until: Option<Instant>,
    /// A half-open trial is under way.
    trial: bool,
    /// The provider asked not to be asked again before this (`Retry-After`).
    rest_until: Option<Instant>,
}

/// Whether a provider may be asked now.
enum Admission {
    /// Yes; `trial` when it is the half-open circuit's one trial.
    Ask { trial: bool },
    /// No: its circuit is open, or it asked to wait.
    Skip(&'static str),
}

impl FallbackProvider {
    /// Tries `providers` in this order; each is named by its [`name`](LlmProvider::name),
    /// made unique with `-2`, `-3`... when two are alike. With no provider at all, every
    /// answer fails with [`ProviderError::Unreachable`].
    pub fn new(providers: Vec<Arc<dyn LlmProvider>>) -> Self {
        let mut named: Vec<(String, Arc<dyn LlmProvider>)> = Vec::with_capacity(providers.len());
        for provider in providers {
            let base = provider.name().to_owned();
            let mut name = base.clone();
            let mut n = 1;
            while named.iter().any(|(taken, _)| *taken == name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            named.push((name, provider));
        }
        Self::named(named)
    }

    /// Tries `providers` in this order, under the names given (for logs, metrics and
    /// [`circuit`](Self::circuit)).
    pub fn named<N: Into<String>>(
        providers: impl IntoIterator<Item = (N, Arc<dyn LlmProvider>)>,
    ) -> Self {
        let members: Vec<Member> = providers
            .into_iter()
            .map(|(name, provider)| Member {
                name: name.into(),
                provider,
                circuit: Mutex::default(),
            })
            .collect();
        for member in &members {
            metrics::gauge!("marie_provider_circuit_open", "provider" => member.name.clone())
                .set(0.0);
        }
        Self {
            members,
            failure_threshold: 3,
            cool_down: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(1),
        }
    }

    /// How many unavailable answers in a row open a provider's circuit (default 3; at least
    /// 1).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.failure_threshold = failures.max(1);
        self
    }

    /// How long an open circuit skips its provider before a trial (default 30 s).
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// The longest `Retry-After` an answer waits for before asking the same provider again;
    /// a longer one sends it to the next provider at once (default 1 s; zero: never wait).
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// The providers' names, in the order they are tried.
    pub fn providers(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// The state of the circuit of the provider named `name`, if there is one.
    pub fn circuit(&self, name: &str) -> Option<CircuitState> {
        let member = self.members.iter().find(|m| m.name == name)?;
        let circuit = member.lock();
        Some(match circuit.open_until {
            None => CircuitState::Closed,
            Some(until) if Instant::now() < until => CircuitState::Open,
            Some(_) => CircuitState::HalfOpen,
        })
    }

    fn note_failure(&self, member: &Member, trial: bool, error: &ProviderError) {
        let now = Instant::now();
        let mut circuit = member.lock();
        circuit.failures = circuit.failures.saturating_add(1);
        if trial {
            circuit.trial = false;
        }
        if let ProviderError::RateLimited {
            retry_after: Some(wait),
        } = error
        {
            let until = now + *wait;
            circuit.rest_until = Some(circuit.rest_until.map_or(until, |r| r.max(until)));
        }
        let opens = if circuit.open_until.is_some() {
            // A failed trial: open for another cool-down.
            trial
        } else {
            circuit.failures >= self.failure_threshold
        };
        if opens {
            let was_closed = circuit.open_until.is_none();
            circuit.open_until = Some(now + self.cool_down);
            drop(circuit);
            if was_closed {
                metrics::gauge!("marie_provider_circuit_open", "provider" => member.name.clone())
                    .set(1.0);
            }
            tracing::warn!(
                provider = %member.name,
                failures = self.failure_threshold,
                cool_down_ms = self.cool_down.as_millis() as u64,
                %error,
                "provider unavailable; its circuit opens: it is skipped until the cool-down is over"
            );
        }
    }
}

impl Member {
    fn lock(&self) -> MutexGuard<'_, Circuit> {
        // The state is a few numbers, consistent after any statement: a panic elsewhere
        // while holding the lock leaves nothing half-done worth refusing service for.
        self.circuit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit(&self, now: Instant) -> Admission {
        let mut circuit = self.lock();
        if circuit.rest_until.is_some_and(|until| now < until) {
            return Admission::Skip("it asked to wait (Retry-After)");
        }
        match circuit.open_until {
            None => Admission::Ask { trial: false },
            Some(until) if now < until => Admission::Skip("its circuit is open"),
            Some(_) if circuit.trial => {
                Admission::Skip("its half-open circuit's trial is under way")
            }
            Some(_) => {
                circuit.trial = true;
                Admission::Ask { trial: true }
            }
        }
    }

    /// The provider answered, or failed in a way that shows it is up.
    fn note_up(&self) {
        let mut circuit = self.lock();
        circuit.failures = 0;
        circuit.trial = false;
        if circuit.open_until.take().is_some() {
            drop(circuit);
            metrics::gauge!("marie_provider_circuit_open", "provider" => self.name.clone())
                .set(0.0);
            tracing::info!(provider = %self.name, "provider answered again; its circuit closes");
        }
    }
}

/// A half-open trial that ends without an outcome (the answer was cancelled while it was
/// asked) lets the next answer be the trial.
struct Trial<'a> {
    member: &'a Member,
    armed: bool,
}

impl Trial<'_> {
    fn settled(mut self) {
        self.armed = false;
    }
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.member.lock().trial = false;
        }
    }
}

/// What asking one provider gave.
enum Asked {
    /// The answer began: hand it out.
    Begun(LlmStream),
    /// The stream's first item is an error the next provider would not fix (a malformed
    /// event, a stream that ended before anything): handed out as it is, for the engine to
    /// deal with as it would without a fallback; the circuit is left as it was.
    Broken(LlmStream),
    /// Unavailable before any output: the error, and the stream that carried it, if any (the
    /// last provider's is handed out as it is).
    Unavailable {
        error: ProviderError,
        stream: Option<LlmStream>,
    },
    /// Refused in a way the next provider would not fix.
    Refused(ProviderError),
}

/// Asks `provider` and waits for the first item of its stream: an error there, before any
/// output, is unavailability too (a first-token timeout, an overloaded model's error event).
async fn ask(provider: &dyn LlmProvider, request: LlmRequest) -> Asked {
    let mut stream = match provider.stream(request).await {
        Ok(stream) => stream,
        Err(error) if error.retryable() => {
            return Asked::Unavailable {
                error,
                stream: None,
            };
        }
        Err(error) => return Asked::Refused(error),
    };
    let first = stream.next().await;
    let unavailable = match &first {
        Some(Err(error)) if error.retryable() => Some(Some(error.clone())),
        // A stream that ends before `Done` is broken too (the engine says so).
        Some(Err(_)) | None => Some(None),
        Some(Ok(_)) => None,
    };
    let stream: LlmStream = match first {
        Some(first) => Box::pin(stream::once(async move { first }).chain(stream)),
        None => Box::pin(stream::empty()),
    };
    match unavailable {
        Some(Some(error)) => Asked::Unavailable {
            error,
            stream: Some(stream),
        },
        Some(None) => Asked::Broken(stream),
        None => Asked::Begun(stream),
    }
}

/// What asking one provider of the list came to.
enum Tried {
    /// What to hand out: a stream (begun, or broken at once), or a refusal that the next
    /// provider would not fix.
    Answered(Result<LlmStream, ProviderError>),
    /// Unavailable, or skipped: the next provider is asked. Its last failure, if it was asked,
    /// is handed out when no provider answers.
    Passed(Option<Result<LlmStream, ProviderError>>),
}

impl FallbackProvider {
    /// Asks `member`, unless its circuit is open; asks it once more when it asked to wait
    /// (`Retry-After`) no longer than [`max_retry_after`](Self::max_retry_after).
    /// `passed`: the provider before it, when that one failed or was skipped.
    async fn ask_member(
        &self,
        member: &Member,
        request: &LlmRequest,
        passed: Option<&str>,
    ) -> Tried {
        let mut passed = passed;
        let mut waited = false;
        let mut last = None;
        loop {
            let trial = match member.admit(Instant::now()) {
                Admission::Ask { trial } => trial,
                Admission::Skip(why) => {
                    tracing::debug!(provider = %member.name, why, "provider skipped");
                    return Tried::Passed(last);
                }
            };
            if let Some(from) = passed {
                metrics::counter!(
                    "marie_provider_fallbacks_total",
                    "from" => from.to_owned(),
                    "to" => member.name.clone(),
                )
                .increment(1);
                tracing::info!(from, to = %member.name, "falling back to the next provider");
            }
            let (error, stream) = match self.ask_once(member, trial, request).await {
                Ok(answered) => return Tried::Answered(answered),
                Err(unavailable) => unavailable,
            };
            let wait = match &error {
                ProviderError::RateLimited {
                    retry_after: Some(wait),
                } => Some(*wait),
                _ => None,
            };
            last = Some(stream.ok_or(error));
            match wait {
                Some(wait) if !waited && wait <= self.max_retry_after => {
                    waited = true;
                    tracing::info!(
                        provider = %member.name,
                        wait_ms = wait.as_millis() as u64,
                        "waiting as the provider asks, then asking it again"
                    );
                    tokio::time::sleep(wait).await;
                    passed = None;
                }
                _ => return Tried::Passed(last),
            }
        }
    }

    /// One request to `member`, its circuit told how it went: `Ok` with what to hand out,
    /// `Err` with the failure (and the stream that carries it, if any) when the member is
    /// unavailable.
    async fn ask_once(
        &self,
        member: &Member,
        trial: bool,
        request: &LlmRequest,
    ) -> Result<Result<LlmStream, ProviderError>, (ProviderError, Option<LlmStream>)> {
        let guard = Trial {
            member,
            armed: trial,
        };
        let asked = ask(member.provider.as_ref(), request.clone()).await;
        if matches!(asked, Asked::Broken(_)) {
            // Neither up nor down: a trial's turn passes to the next answer.
            drop(guard);
        } else {
            guard.settled();
        }
        match asked {
            Asked::Begun(stream) => {
                member.note_up();
                tracing::debug!(provider = %member.name, "provider answers");
                Ok(Ok(stream))
            }
            Asked::Broken(stream) => {
                tracing::debug!(
                    provider = %member.name,
                    "provider's stream failed at once; handed out as it is"
                );
                Ok(Ok(stream))
            }
            Asked::Refused(error) => {
                member.note_up();
                tracing::warn!(
                    provider = %member.name,
                    %error,
                    "provider refused the request; not falling back (the next one would not fix it)"
                );
                Ok(Err(error))
            }
            Asked::Unavailable { error, stream } => {
                tracing::warn!(provider = %member.name, %error, "provider unavailable");
                self.note_failure(member, trial, &error);
                Err((error, stream))
            }
        }
    }
}

#[async_trait]
impl LlmProvider for FallbackProvider {
    /// Asks each provider in turn (see [`FallbackProvider`]) until one answers.
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        // The last provider's failure, handed out when none answers.
        let mut last = None;
        // The provider before the one being asked, when it failed or was skipped.
        let mut passed: Option<&str> = None;
        let mut request = request;
        for (i, member) in self.members.iter().enumerate() {
            if i == 1 {
                // The conversation's model is a name the first provider knows; the
                // fallbacks answer with their own.
                request.model = None;
            }
            match self.ask_member(member, &request, passed).await {
                Tried::Answered(answered) => return answered,
                Tried::Passed(failure) => last = failure.or(last),
            }
            passed = Some(&member.name);
        }
        last.unwrap_or_else(|| {
            Err(ProviderError::Unreachable(if self.members.is_empty() {
                "the fallback provider has no providers".into()
            } else {
                "every provider is unavailable (circuits open, or waiting as asked)".into()
            }))
        })
    }

    fn name(&self) -> &str {
        NAME
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt;
    use marie_core::{ConversationId, LlmEvent, UserId};
    use tokio::sync::{Notify, Semaphore};

    use super::*;
    use crate::ScriptedProvider;

    fn request() -> LlmRequest {
        LlmRequest {
            conversation_id: ConversationId::parse("c").unwrap_or_else(|e| panic!("{e}")),
            user_id: UserId::parse("u").unwrap_or_else(|e| panic!("{e}")),
            messages: vec![marie_core::PromptMessage::text(
                marie_core::MessageRole::User,
                "hi",
            )],
            tools: Vec::new(),
            model: None,
        }
    }

    async fn text(stream: LlmStream) -> String {
        stream
            .filter_map(|item| async move {
                match item {
                    Ok(LlmEvent::Delta(t)) => Some(t),
                    _ => None,
                }
            })
            .collect::<Vec<_>>()
            .await
            .concat()
    }

    #[test]
    fn names_are_made_unique() {
        let a: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["a"]));
        let b: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["b"]));
        let c: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["c"]));
        let provider = FallbackProvider::new(vec![a.clone(), b, c]);
        let base = a.name().to_owned();
        assert_eq!(
            provider.providers().collect::<Vec<_>>(),
            [base.clone(), format!("{base}-2"), format!("{base}-3")]
        );
        assert_eq!(provider.name(), "fallback");
    }

    #[tokio::test]
    async fn an_error_before_any_output_falls_back_and_one_after_does_not() {
        let down: Arc<dyn LlmProvider> = Arc::new(
            ScriptedProvider::new(Vec::<String>::new())
                .fail_on_start(ProviderError::Status { status: 503 }),
        );
        let up: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["from", " b"]));
        let provider = FallbackProvider::named([("a", down), ("b", up)]);
        let stream = provider
            .stream(request())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text(stream).await, "from b");

        let breaks: Arc<dyn LlmProvider> = Arc::new(
            ScriptedProvider::new(["part", "ial"])
                .fail_at(1, ProviderError::Disconnected("x".into())),
        );
        let up: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["never"]));
        let provider = FallbackProvider::named([("a", breaks), ("b", up)]);
        let items: Vec<_> = provider
            .stream(request())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .collect()
            .await;
        assert!(matches!(&items[0], Ok(LlmEvent::Delta(t)) if t == "part"));
        assert!(matches!(&items[1], Err(ProviderError::Disconnected(_))));
    }

    /// Fails its first `fails` answers with a 503, then answers "a" once let through.
    struct Flaky {
        fails: AtomicUsize,
        calls: AtomicUsize,
        called: Notify,
        gate: Semaphore,
    }

    impl Flaky {
        fn new(fails: usize) -> Arc<Self> {
            Arc::new(Self {
                fails: AtomicUsize::new(fails),
                calls: AtomicUsize::new(0),
                called: Notify::new(),
                gate: Semaphore::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }

        async fn wait_calls(&self, n: usize) {
            loop {
                let called = self.called.notified();
                if self.calls() >= n {
                    return;
                }
                called.await;
            }
        }
    }

    #[async_trait]
    impl LlmProvider for Flaky {
        async fn stream(&self, _: LlmRequest) -> Result<LlmStream, ProviderError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.called.notify_waiters();
            if self
                .fails
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(ProviderError::Status { status: 503 });
            }
            self.gate
                .acquire()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .forget();
            ScriptedProvider::new(["a"]).stream(request()).await
        }

        fn name(&self) -> &str {
            "flaky"
        }
    }

    async fn answer(provider: &FallbackProvider) -> String {
        text(
            provider
                .stream(request())
                .await
                .unwrap_or_else(|e| panic!("{e}")),
        )
        .await
    }

    /// While a half-open circuit's trial is under way, other answers skip the provider.
    #[tokio::test(start_paused = true)]
    async fn a_half_open_circuit_lets_one_trial_through_at_a_time() {
        let flaky = Flaky::new(2);
        let b: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["b"]));
        let provider = Arc::new(
            FallbackProvider::named([("a", flaky.clone() as Arc<dyn LlmProvider>), ("b", b)])
                .failure_threshold(2)
                .cool_down(Duration::from_secs(30)),
        );
        assert_eq!(answer(&provider).await, "b");
        assert_eq!(answer(&provider).await, "b");
        assert_eq!(provider.circuit("a"), Some(CircuitState::Open));
        assert_eq!(answer(&provider).await, "b");
        assert_eq!(flaky.calls(), 2, "asked while open");

        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(provider.circuit("a"), Some(CircuitState::HalfOpen));
        let trial = tokio::spawn({
            let provider = provider.clone();
            async move { answer(&provider).await }
        });
        flaky.wait_calls(3).await;
        assert_eq!(answer(&provider).await, "b", "a second trial went through");
        assert_eq!(flaky.calls(), 3);
        flaky.gate.add_permits(1);
        assert_eq!(trial.await.unwrap_or_else(|e| panic!("{e}")), "a");
        assert_eq!(provider.circuit("a"), Some(CircuitState::Closed));
        flaky.gate.add_permits(1);
        assert_eq!(answer(&provider).await, "a");
    }

    /// A trial whose answer is cancelled while the provider is asked leaves the next answer
    /// to be the trial.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_trial_lets_the_next_answer_try() {
        let flaky = Flaky::new(1);
        let b: Arc<dyn LlmProvider> = Arc::new(ScriptedProvider::new(["b"]));
        let provider =
            FallbackProvider::named([("a", flaky.clone() as Arc<dyn LlmProvider>), ("b", b)])
                .failure_threshold(1)
                .cool_down(Duration::from_secs(5));
        assert_eq!(answer(&provider).await, "b");
        tokio::time::sleep(Duration::from_secs(5)).await;
        // Asked, then dropped while the provider has not answered.
        assert!(provider.stream(request()).now_or_never().is_none());
        assert_eq!(flaky.calls(), 2);
        flaky.gate.add_permits(1);
        assert_eq!(
            answer(&provider).await,
            "a",
            "the trial after the cancelled one"
        );
        assert_eq!(flaky.calls(), 3);
        assert_eq!(provider.circuit("a"), Some(CircuitState::Closed));
    }

    /// A stream whose first item is an error the next provider would not fix is handed out
    /// as it is, and leaves the circuit alone.
    #[tokio::test]
    async fn a_stream_broken_at_once_is_handed_out_as_it_is() {
        let broken: Arc<dyn LlmProvider> = Arc::new(
            ScriptedProvider::new(["never"]).fail_at(0, ProviderError::Protocol("bad".into())),
        );
        let b = ScriptedProvider::new(["b"]);
        let provider = FallbackProvider::named([
            ("a", broken),
            ("b", Arc::new(b.clone()) as Arc<dyn LlmProvider>),
        ])
        .failure_threshold(1);
        let items: Vec<_> = provider
            .stream(request())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .collect()
            .await;
        assert!(
            matches!(items.as_slice(), [Err(ProviderError::Protocol(_))]),
            "{items:?}"
        );
        assert!(b.requests().is_empty());
        assert_eq!(provider.circuit("a"), Some(CircuitState::Closed));
    }

    #[tokio::test]
    async fn no_provider_is_a_retryable_error() {
        let provider = FallbackProvider::new(Vec::new());
        match provider.stream(request()).await {
            Err(e) => assert!(e.retryable(), "{e}"),
            Ok(_) => panic!("an answer from no provider"),
        }
    }
}
