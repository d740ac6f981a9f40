//! The metrics MARIE records, read through a recorder installed by the test (the library
//! installs none). Its own test binary: the recorder is process-global.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marie_llm::ScriptedProvider;
use marie_testkit::metrics::recorder;
use marie_testkit::server::start;
use marie_testkit::socketio::connect;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_rooms_streams_and_chunks_are_counted() {
    let metrics = recorder();

    let server =
        start(ScriptedProvider::new(["one ", "two ", "three"]).delay(Duration::from_millis(1)))
            .await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    assert_eq!(metrics.gauge("marie_connections", &[]), Some(2.0));

    alice.join("m").await;
    alice.invite("m", "bob").await;
    bob.join("m").await;
    assert_eq!(metrics.gauge("marie_rooms", &[]), Some(1.0));

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
    assert_eq!(metrics.counter("marie_streams_started_total", &[]), 1);
    assert_eq!(
        metrics.counter("marie_streams_ended_total", &[("status", "complete")]),
        1
    );
    assert_eq!(metrics.counter("marie_streams_ended_total", &[]), 1);
    assert_eq!(metrics.counter("marie_stream_chunks_total", &[]), 3);
    assert_eq!(
        metrics
            .samples("marie_stream_first_chunk_seconds", &[])
            .len(),
        1
    );

    // Bob leaves: alice hears it once the disconnect handler (which also updates the
    // gauges) has run.
    bob.disconnect().await;
    alice.next("user_left").await;
    assert_eq!(metrics.gauge("marie_connections", &[]), Some(1.0));
    assert_eq!(metrics.gauge("marie_rooms", &[]), Some(1.0));
    alice
        .ack("leave_conversation", json!({ "conversation_id": "m" }))
        .await;
    assert_eq!(metrics.gauge("marie_rooms", &[]), Some(0.0));
}
