//! The provider metrics, read through a recorder the test installs (the library installs
//! none). Its own test binary: the recorder is process-global.

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use marie_core::EngineConfig;
use marie_llm::{OpenAiProvider, RetryPolicy};
use marie_testkit::metrics::recorder;
use support::engine::Chat;
use support::fake::{FakeServer, Reply, openai_answer};
use support::ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_errors_first_token_and_speed_are_recorded() {
    let metrics = recorder();

    let server = FakeServer::start([
        Reply::status(503, "{}"),
        Reply::status(429, "{}").header("retry-after-ms", "10"),
        openai_answer(
            &["a", "b", "c", "d", "e"],
            Duration::from_millis(20),
            (5, 5),
        ),
        Reply::status(401, "{}"),
    ])
    .await;
    let provider = OpenAiProvider::builder()
        .base_url(server.openai_base())
        .retry(RetryPolicy::default().backoff(ms(5), ms(10)))
        .build()
        .unwrap();
    let chat = Chat::new(provider, EngineConfig::default()).await;

    chat.ask("works after two retries").await.complete();
    assert_eq!(
        metrics.counter(
            "marie_provider_retries_total",
            &[("provider", "openai"), ("reason", "status")]
        ),
        1
    );
    assert_eq!(
        metrics.counter(
            "marie_provider_retries_total",
            &[("provider", "openai"), ("reason", "rate_limited")]
        ),
        1
    );
    assert_eq!(
        metrics
            .samples("marie_stream_first_chunk_seconds", &[])
            .len(),
        1
    );
    let speed = metrics.samples("marie_stream_tokens_per_second", &[]);
    assert_eq!(speed.len(), 1);
    // Four tokens after the first, 20 ms apart: about 50 per second, less on a busy machine.
    assert!(speed[0] > 5.0 && speed[0] < 60.0, "{speed:?}");

    chat.ask("rejected").await.failed();
    assert_eq!(
        metrics.counter("marie_provider_errors_total", &[("kind", "unauthorized")]),
        1
    );
    assert_eq!(metrics.counter("marie_provider_retries_total", &[]), 2);
}
