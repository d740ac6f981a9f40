//! A metrics recorder whose values stay readable at any time, installed process-wide
//! (the libraries install none).
//!
//! A recorder is global to the process, so every test of a binary shares it: a test that
//! reads figures another test of the same binary also moves either has its binary to itself
//! or tells its figures apart by their labels (a provider named for the test, say).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

/// The recorder. metrics-util's `DebuggingRecorder` would not do: it resets values on each
/// snapshot, gauges included.
#[derive(Clone)]
pub struct Metrics(Arc<Registry<Key, AtomicStorage>>);

/// The process's recorder, installed on the first call.
pub fn recorder() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let metrics = Metrics(Arc::new(Registry::atomic()));
        metrics::set_global_recorder(metrics.clone())
            .expect("no other metrics recorder in a test binary");
        metrics
    })
}

impl Recorder for Metrics {
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

/// Whether `key` is named `name` and carries every one of `labels` (and maybe others).
fn labelled(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels
            .iter()
            .all(|(lk, lv)| key.labels().any(|l| l.key() == *lk && l.value() == *lv))
}

impl Metrics {
    /// The sum of the counters named `name` with `labels` (`&[]`: whatever their labels).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.0
            .get_counter_handles()
            .into_iter()
            .filter(|(k, _)| labelled(k, name, labels))
            .map(|(_, c)| c.load(Ordering::Acquire))
            .sum()
    }

    /// The value of the gauge named `name` with `labels`; `None` if it was never set.
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .get_gauge_handles()
            .into_iter()
            .find(|(k, _)| labelled(k, name, labels))
            .map(|(_, g)| f64::from_bits(g.load(Ordering::Acquire)))
    }

    /// Every value recorded in the histograms named `name` with `labels`.
    pub fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut out = Vec::new();
        for (k, h) in self.0.get_histogram_handles() {
            if labelled(&k, name, labels) {
                h.data_with(|values| out.extend_from_slice(values));
            }
        }
        out
    }
}
