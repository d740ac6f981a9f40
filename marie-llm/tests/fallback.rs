//! `FallbackProvider` against two local fake OpenAI-compatible servers: what makes it ask the
//! next provider (a 503, a refused connection, an error event before any output, a
//! `Retry-After` longer than its cap), what does not (a rejected key, a stream that breaks
//! after it began), and its circuit breaker, watched through the servers' request counts and
//! the metrics.

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use marie_core::{
    ConversationId, EngineConfig, LlmEvent, LlmProvider, LlmRequest, MessageRole, PromptMessage,
    ProviderError, StreamEvent, UserId,
};
use marie_llm::{CircuitState, FallbackProvider, OpenAiProvider, RetryPolicy};
use marie_testkit::metrics::recorder;
use support::engine::Chat;
use support::fake::{FakeServer, Reply, Step, openai_answer, openai_role, openai_text};
use support::{ms, refused_addr};
use tokio::time::Instant;

const PACE: Duration = Duration::from_millis(2);

/// An OpenAI provider for `base`, retrying on its own as `retry` says.
fn openai(base: &str, retry: RetryPolicy) -> Arc<dyn LlmProvider> {
    Arc::new(
        OpenAiProvider::builder()
            .base_url(base)
            .api_key("sk-test")
            .retry(retry)
            .build()
            .unwrap(),
    )
}

fn answer(text: &str) -> Reply {
    let tokens: Vec<&str> = text.split_inclusive(' ').collect();
    openai_answer(&tokens, PACE, (9, tokens.len() as u64))
}

fn request() -> LlmRequest {
    LlmRequest {
        conversation_id: ConversationId::parse("c").unwrap(),
        user_id: UserId::parse("u").unwrap(),
        messages: vec![PromptMessage::text(MessageRole::User, "hello")],
        tools: Vec::new(),
        model: None,
    }
}

/// Asks `provider` for an answer and reads it whole: its text, or the first error.
async fn ask(provider: &FallbackProvider) -> Result<String, ProviderError> {
    let mut stream = provider.stream(request()).await?;
    let mut text = String::new();
    while let Some(item) = stream.next().await {
        match item? {
            LlmEvent::Delta(t) => text.push_str(&t),
            LlmEvent::Done { .. } => return Ok(text),
            _ => {}
        }
    }
    panic!("the stream ended without Done")
}

// ---------------------------------------------------------------------------------------
// Metrics: one recorder for the whole test binary (it is process-global); each test names
// its providers apart, so that tests running at once do not read each other's figures.
// ---------------------------------------------------------------------------------------

fn fallbacks(from: &str, to: &str) -> u64 {
    recorder().counter(
        "marie_provider_fallbacks_total",
        &[("from", from), ("to", to)],
    )
}

fn circuit_open(provider: &str) -> Option<f64> {
    recorder().gauge("marie_provider_circuit_open", &[("provider", provider)])
}

// ---------------------------------------------------------------------------------------

/// Through the engine: the first provider answers 503 to the request and to both of its own
/// retries; the second answers, and the client sees one clean answer, no reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_falls_back_to_the_next_provider() {
    recorder();
    let a = FakeServer::start([
        Reply::status(503, r#"{"error":{"message":"overloaded"}}"#),
        Reply::status(503, "{}"),
        Reply::status(503, "{}"),
    ])
    .await;
    let b = FakeServer::start([answer("Hello from the second provider.")]).await;
    let retry = RetryPolicy::default().backoff(ms(5), ms(10));
    let provider = FallbackProvider::named([
        ("a503", openai(&a.openai_base(), retry)),
        ("b503", openai(&b.openai_base(), retry)),
    ]);
    let chat = Chat::new(provider, EngineConfig::default()).await;
    let seen = chat.ask("hello").await;
    assert_eq!(
        seen.complete().full_content,
        "Hello from the second provider."
    );
    assert!(
        !seen
            .events
            .iter()
            .any(|e| matches!(e, StreamEvent::Reset(_))),
        "a fallback before any output is no reset"
    );
    assert_eq!(
        a.requests().len(),
        3,
        "the provider's own retries came first"
    );
    assert_eq!(b.requests().len(), 1);
    assert_eq!(fallbacks("a503", "b503"), 1);
    assert_eq!(circuit_open("a503"), Some(0.0), "one failure opens nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_falls_back_to_the_next_provider() {
    recorder();
    let closed = refused_addr().await;
    let b = FakeServer::start([answer("Still here.")]).await;
    let provider = FallbackProvider::named([
        (
            "a-refused",
            openai(&format!("http://{closed}/v1"), RetryPolicy::none()),
        ),
        ("b-refused", openai(&b.openai_base(), RetryPolicy::none())),
    ]);
    assert_eq!(ask(&provider).await.unwrap(), "Still here.");
    assert_eq!(b.requests().len(), 1);
    assert_eq!(fallbacks("a-refused", "b-refused"), 1);
}

/// A 200 whose event stream holds only an error object: unavailable before any output, so
/// the next provider is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_event_before_any_output_falls_back() {
    recorder();
    let a = FakeServer::start([Reply::ok(
        "text/event-stream",
        vec![Step::Send(
            b"data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\"}}\n\n"
                .to_vec(),
        )],
    )])
    .await;
    let b = FakeServer::start([answer("Answered by b.")]).await;
    let provider = FallbackProvider::named([
        ("a-event", openai(&a.openai_base(), RetryPolicy::none())),
        ("b-event", openai(&b.openai_base(), RetryPolicy::none())),
    ]);
    assert_eq!(ask(&provider).await.unwrap(), "Answered by b.");
    assert_eq!(a.requests().len(), 1);
    assert_eq!(b.requests().len(), 1);
}

/// A rejected key is a misconfiguration: it must be seen, not hidden behind another provider
/// that quietly answers every question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_is_not_a_reason_to_fall_back() {
    recorder();
    let a = FakeServer::start([Reply::status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-test.","type":"invalid_request_error","code":"invalid_api_key"}}"#,
    )])
    .await;
    let b = FakeServer::start([answer("never")]).await;
    let provider = FallbackProvider::named([
        ("a401", openai(&a.openai_base(), RetryPolicy::default())),
        ("b401", openai(&b.openai_base(), RetryPolicy::default())),
    ]);
    let err = ask(&provider).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Unauthorized { status: 401 }),
        "{err:?}"
    );
    assert!(b.requests().is_empty(), "the second provider was asked");
    assert_eq!(fallbacks("a401", "b401"), 0);
    assert_eq!(provider.circuit("a401"), Some(CircuitState::Closed));
}

/// Through the engine: a stream that breaks after it began is not switched. The engine asks
/// the step again (`stream_reset`), through the fallback, which asks the first provider
/// again: it is up, it answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_breaks_after_it_began_is_retried_not_switched() {
    recorder();
    let a = FakeServer::start([
        Reply::ok(
            "text/event-stream",
            vec![
                openai_role(),
                openai_text("Half"),
                Step::Wait(PACE),
                Step::Abort,
            ],
        ),
        answer("Half and whole."),
    ])
    .await;
    let b = FakeServer::start([answer("never")]).await;
    let provider = FallbackProvider::named([
        ("a-mid", openai(&a.openai_base(), RetryPolicy::none())),
        ("b-mid", openai(&b.openai_base(), RetryPolicy::none())),
    ]);
    let chat = Chat::new(
        provider,
        EngineConfig::default().retry_backoff(Duration::from_millis(10)),
    )
    .await;
    let stream = chat.send("hello").await;
    let end = tokio::time::timeout(
        support::fake::WAIT,
        chat.sink
            .wait_for(|e| matches!(e, StreamEvent::End(end) if end.stream_id == stream)),
    )
    .await
    .unwrap();
    let StreamEvent::End(end) = end else {
        unreachable!()
    };
    assert_eq!(end.full_content, "Half and whole.");
    let resets = chat
        .sink
        .events()
        .into_iter()
        .filter(|e| matches!(e, StreamEvent::Reset(r) if r.stream_id == stream))
        .count();
    assert_eq!(resets, 1);
    assert_eq!(a.requests().len(), 2);
    assert!(b.requests().is_empty());
    assert_eq!(fallbacks("a-mid", "b-mid"), 0);
}

/// After three failures in a row the first provider's circuit opens: the next answers go to
/// the second provider without asking the first at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_opens_after_three_failures_and_the_provider_is_not_asked() {
    recorder();
    let a = FakeServer::start([
        Reply::status(503, "{}"),
        Reply::status(502, "{}"),
        Reply::status(503, "{}"),
    ])
    .await;
    let b = FakeServer::start((0..5).map(|i| answer(&format!("b answers {i}.")))).await;
    let provider = FallbackProvider::named([
        ("a-open", openai(&a.openai_base(), RetryPolicy::none())),
        ("b-open", openai(&b.openai_base(), RetryPolicy::none())),
    ])
    .failure_threshold(3)
    .cool_down(Duration::from_secs(600));
    for i in 0..3 {
        assert_eq!(provider.circuit("a-open"), Some(CircuitState::Closed));
        assert_eq!(ask(&provider).await.unwrap(), format!("b answers {i}."));
    }
    assert_eq!(a.requests().len(), 3);
    assert_eq!(provider.circuit("a-open"), Some(CircuitState::Open));
    assert_eq!(circuit_open("a-open"), Some(1.0));
    for i in 3..5 {
        assert_eq!(ask(&provider).await.unwrap(), format!("b answers {i}."));
    }
    assert_eq!(
        a.requests().len(),
        3,
        "the open circuit's provider was asked"
    );
    assert_eq!(b.requests().len(), 5);
    assert_eq!(fallbacks("a-open", "b-open"), 5);
    assert_eq!(circuit_open("b-open"), Some(0.0));
}

/// After the cool-down one trial goes through: a failed trial opens the circuit for another
/// cool-down, a trial that answers closes it.
///
/// The waits here are the cool-downs themselves (the behaviour under test), short ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_circuit_closes_after_the_cool_down_when_a_trial_answers() {
    recorder();
    const COOL_DOWN: Duration = Duration::from_millis(150);
    let a = FakeServer::start([
        Reply::status(503, "{}"),
        Reply::status(503, "{}"),
        // The first trial.
        Reply::status(503, "{}"),
        // The second trial, and after.
        answer("a is back."),
        answer("a again."),
    ])
    .await;
    let b = FakeServer::start((0..4).map(|i| answer(&format!("b {i}.")))).await;
    let provider = FallbackProvider::named([
        ("a-close", openai(&a.openai_base(), RetryPolicy::none())),
        ("b-close", openai(&b.openai_base(), RetryPolicy::none())),
    ])
    .failure_threshold(2)
    .cool_down(COOL_DOWN);
    assert_eq!(ask(&provider).await.unwrap(), "b 0.");
    assert_eq!(ask(&provider).await.unwrap(), "b 1.");
    let opened = Instant::now();
    assert_eq!(provider.circuit("a-close"), Some(CircuitState::Open));

    tokio::time::sleep_until(opened + COOL_DOWN).await;
    assert_eq!(provider.circuit("a-close"), Some(CircuitState::HalfOpen));
    assert_eq!(ask(&provider).await.unwrap(), "b 2.", "the trial failed");
    let reopened = Instant::now();
    assert_eq!(a.requests().len(), 3);
    assert_eq!(provider.circuit("a-close"), Some(CircuitState::Open));
    assert_eq!(circuit_open("a-close"), Some(1.0));

    tokio::time::sleep_until(reopened + COOL_DOWN).await;
    assert_eq!(ask(&provider).await.unwrap(), "a is back.", "the trial");
    assert_eq!(provider.circuit("a-close"), Some(CircuitState::Closed));
    assert_eq!(circuit_open("a-close"), Some(0.0));
    assert_eq!(ask(&provider).await.unwrap(), "a again.");
    assert_eq!(a.requests().len(), 5);
    assert_eq!(b.requests().len(), 3);
}

/// A 429 asking for 30 s, more than the fallback's cap (1 s) and the provider's own
/// (`max_retry_after`, 20 s): the next provider answers at once, and the first is not asked
/// again while the 30 s last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_above_the_cap_goes_to_the_next_provider_at_once() {
    recorder();
    let a = FakeServer::start([Reply::status(
        429,
        r#"{"error":{"message":"Rate limit reached","type":"requests"}}"#,
    )
    .header("retry-after", "30")])
    .await;
    let b = FakeServer::start([answer("b, at once."), answer("b again.")]).await;
    let provider = FallbackProvider::named([
        ("a429", openai(&a.openai_base(), RetryPolicy::default())),
        ("b429", openai(&b.openai_base(), RetryPolicy::default())),
    ])
    .max_retry_after(Duration::from_secs(1));
    let asked = Instant::now();
    assert_eq!(ask(&provider).await.unwrap(), "b, at once.");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(1), "waited {took:?}");
    assert_eq!(ask(&provider).await.unwrap(), "b again.");
    assert_eq!(a.requests().len(), 1, "asked again within its Retry-After");
    assert_eq!(provider.circuit("a429"), Some(CircuitState::Closed));
    assert_eq!(fallbacks("a429", "b429"), 2);
}

/// A 429 asking for 200 ms, within the cap: the answer waits for it and the same provider
/// answers; the second is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_within_the_cap_is_waited_for() {
    recorder();
    let a = FakeServer::start([
        Reply::status(429, "{}").header("retry-after-ms", "200"),
        answer("a, after the wait."),
    ])
    .await;
    let b = FakeServer::start([answer("never")]).await;
    let provider = FallbackProvider::named([
        ("a429-short", openai(&a.openai_base(), RetryPolicy::none())),
        ("b429-short", openai(&b.openai_base(), RetryPolicy::none())),
    ])
    .max_retry_after(Duration::from_secs(1));
    assert_eq!(ask(&provider).await.unwrap(), "a, after the wait.");
    let requests = a.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].at.duration_since(requests[0].at);
    assert!(gap >= ms(200), "asked again after {gap:?}");
    assert!(b.requests().is_empty());
}

/// Every provider down: the answer fails with the last one's error, retryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_provider_is_down_the_last_error_is_returned() {
    recorder();
    let a = FakeServer::start([Reply::status(503, "{}")]).await;
    let closed = refused_addr().await;
    let provider = FallbackProvider::named([
        ("a-all", openai(&a.openai_base(), RetryPolicy::none())),
        (
            "b-all",
            openai(&format!("http://{closed}/v1"), RetryPolicy::none()),
        ),
    ]);
    let err = ask(&provider).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable(_)), "{err:?}");
    assert!(err.retryable());
}
