//! The metrics MARIE records, read through a recorder installed by the test (the library
//! installs none). Its own test binary: the recorder is process-global.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{connect, start};
use marie_llm::ScriptedProvider;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use serde_json::json;

/// A recorder that keeps every value readable at any time (metrics-util's
/// `DebuggingRecorder` resets values on each snapshot, gauges included).
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
    fn matching(key: &Key, name: &str, label: Option<(&str, &str)>) -> bool {
        key.name() == name
            && label.is_none_or(|(k, v)| key.labels().any(|l| l.key() == k && l.value() == v))
    }

    fn counter(&self, name: &str, label: Option<(&str, &str)>) -> u64 {
        self.0
            .get_counter_handles()
            .into_iter()
            .filter(|(k, _)| Self::matching(k, name, label))
            .map(|(_, c)| c.load(Ordering::Acquire))
            .sum()
    }

    fn gauge(&self, name: &str) -> f64 {
        self.0
            .get_gauge_handles()
            .into_iter()
            .find(|(k, _)| k.name() == name)
            .map(|(_, g)| f64::from_bits(g.load(Ordering::Acquire)))
            .unwrap_or(f64::NAN)
    }

    fn samples(&self, name: &str) -> usize {
        let mut n = 0;
        for (k, h) in self.0.get_histogram_handles() {
            if k.name() == name {
                h.data_with(|values| n += values.len());
            }
        }
        n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_rooms_streams_and_chunks_are_counted() {
    let metrics = Readable(Arc::new(Registry::atomic()));
    metrics::set_global_recorder(metrics.clone()).unwrap();

    let server =
        start(ScriptedProvider::new(["one ", "two ", "three"]).delay(Duration::from_millis(1)))
            .await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    assert_eq!(metrics.gauge("marie_connections"), 2.0);

    alice.join("m").await;
    alice
        .ack(
            "invite",
            json!({ "conversation_id": "m", "user_id": "bob" }),
        )
        .await;
    bob.join("m").await;
    assert_eq!(metrics.gauge("marie_rooms"), 1.0);

    alice
        .ack(
            "send_message",
            json!({ "conversation_id": "m", "message": "count" }),
        )
        .await;
    let seen = alice.stream().await;
    bob.stream().await;
    assert_eq!(seen.terminal.event, "stream_end");
    // The counters are bumped before the terminal event is emitted.
    assert_eq!(metrics.counter("marie_streams_started_total", None), 1);
    assert_eq!(
        metrics.counter("marie_streams_ended_total", Some(("status", "complete"))),
        1
    );
    assert_eq!(metrics.counter("marie_streams_ended_total", None), 1);
    assert_eq!(metrics.counter("marie_stream_chunks_total", None), 3);
    assert_eq!(metrics.samples("marie_stream_first_chunk_seconds"), 1);

    // Bob leaves: alice hears it once the disconnect handler (which also updates the
    // gauges) has run.
    bob.disconnect().await;
    alice.next("user_left").await;
    assert_eq!(metrics.gauge("marie_connections"), 1.0);
    assert_eq!(metrics.gauge("marie_rooms"), 1.0);
    alice
        .ack("leave_conversation", json!({ "conversation_id": "m" }))
        .await;
    assert_eq!(metrics.gauge("marie_rooms"), 0.0);
}
