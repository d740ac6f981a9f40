//! The provider metrics, read through a recorder the test installs (the library installs
//! none). Its own test binary: the recorder is process-global.

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use marie_core::EngineConfig;
use marie_llm::{OpenAiProvider, RetryPolicy};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use support::engine::Chat;
use support::fake::{FakeServer, Reply, openai_answer};
use support::ms;

#[derive(Clone)]
struct Readable(Arc<Registry<Key, AtomicStorage>>);

impl Recorder for Readable {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

impl Readable {
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .get_counter_handles()
            .into_iter()
            .filter(|(k, _)| {
                k.name() == name
                    && labels
                        .iter()
                        .all(|(lk, lv)| k.labels().any(|l| l.key() == *lk && l.value() == *lv))
            })
            .map(|(_, c)| c.load(Ordering::Acquire))
            .sum()
    }

    fn samples(&self, name: &str) -> Vec<f64> {
        let mut out = Vec::new();
        for (k, h) in self.0.get_histogram_handles() {
            if k.name() == name {
                h.data_with(|values| out.extend_from_slice(values));
            }
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_errors_first_token_and_speed_are_recorded() {
    let metrics = Readable(Arc::new(Registry::atomic()));
    metrics::set_global_recorder(metrics.clone()).unwrap();

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
    assert_eq!(metrics.samples("marie_stream_first_chunk_seconds").len(), 1);
    let speed = metrics.samples("marie_stream_tokens_per_second");
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
