//! The whole path, end to end: a Socket.IO client talks to MARIE (marie-axum on a real
//! socket), whose provider talks HTTP to a local fake model server. Asserts the events the
//! client receives for answers that work and for faults.

#![cfg(all(feature = "openai", feature = "ollama"))]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use marie_axum::MarieConfig;
use marie_core::LlmProvider;
use marie_llm::{OllamaProvider, OpenAiProvider, RetryPolicy};
use marie_testkit::server::start_with;
use marie_testkit::socketio::{TestClient, connect};
use serde_json::{Value, json};
use support::fake::{
    FakeServer, Reply, Step, WAIT, ollama_answer, openai_answer, openai_role, openai_text,
};
use support::ms;
use tokio::time::Instant;

const PACE: Duration = Duration::from_millis(10);

/// MARIE on 127.0.0.1:0 with `provider` and the test users (`marie_testkit::server`),
/// without the engine's retries of a failed step: these tests check how each fault of the wire
/// reaches a Socket.IO client (the retries are tested in `retries.rs` and marie-core).
async fn marie(provider: impl LlmProvider) -> SocketAddr {
    let mut config = MarieConfig::default();
    config.engine = config.engine.mid_stream_retries(0);
    start_with(provider, config).await.addr
}

/// Alice, connected, joined to `room`, and `message` sent there.
async fn alice_asks(addr: SocketAddr, message: &str) -> TestClient {
    let mut client = connect(addr, "alice").await;
    client.join("room").await;
    client
        .emit(
            "send_message",
            json!({ "conversation_id": "room", "message": message }),
        )
        .await;
    client
}

/// `stream_start`, the chunks, and the terminal event, checked against the protocol.
async fn stream(client: &mut TestClient) -> (Vec<Value>, String, Value) {
    let seen = tokio::time::timeout(WAIT, client.stream())
        .await
        .expect("the stream ended in time");
    assert_eq!(seen.start["status"], "streaming");
    for (i, c) in seen.chunks.iter().enumerate() {
        assert_eq!(c["seq"], i as u64 + 1);
        assert_eq!(c["stream_id"], seen.start["stream_id"]);
        assert_eq!(c["tokens_used"], i as u64 + 1);
    }
    assert_eq!(seen.terminal.data["stream_id"], seen.start["stream_id"]);
    (seen.chunks, seen.terminal.event, seen.terminal.data)
}

fn text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_answer_streams_to_the_client() {
    let fake = FakeServer::start([openai_answer(
        &["Hi", " Alice", ", how", " are", " you?"],
        PACE,
        (17, 5),
    )])
    .await;
    let provider = OpenAiProvider::builder()
        .base_url(fake.openai_base())
        .api_key("sk-e2e")
        .build()
        .unwrap();
    let mut client = alice_asks(marie(provider).await, "hello").await;
    let (chunks, name, end) = stream(&mut client).await;
    assert_eq!(name, "stream_end");
    assert_eq!(chunks.len(), 5);
    assert_eq!(end["status"], "complete");
    assert_eq!(end["full_content"], "Hi Alice, how are you?");
    assert_eq!(text(&chunks), "Hi Alice, how are you?");
    assert_eq!(
        end["usage"],
        json!({"prompt_tokens": 17, "completion_tokens": 5, "total_tokens": 22})
    );
    assert_eq!(end["finish_reason"], "stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ollama_answer_streams_to_the_client() {
    let fake = FakeServer::start([ollama_answer(&["Bonjour", " 👋"], PACE, (8, 2))]).await;
    let provider = OllamaProvider::builder()
        .host(fake.ollama_host())
        .build()
        .unwrap();
    let mut client = alice_asks(marie(provider).await, "salut").await;
    let (_, name, end) = stream(&mut client).await;
    assert_eq!(name, "stream_end");
    assert_eq!(end["full_content"], "Bonjour 👋");
    assert_eq!(
        end["usage"],
        json!({"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_stays_down_gives_a_retryable_stream_error() {
    let fake = FakeServer::start([
        Reply::status(
            503,
            r#"{"error":{"message":"overloaded, sk-leak","type":"server_error"}}"#,
        ),
        Reply::status(503, "{}"),
        Reply::status(503, "{}"),
    ])
    .await;
    let provider = OpenAiProvider::builder()
        .base_url(fake.openai_base())
        .retry(RetryPolicy::default().max_retries(2).backoff(ms(5), ms(10)))
        .build()
        .unwrap();
    let mut client = alice_asks(marie(provider).await, "hello").await;
    let (chunks, name, err) = stream(&mut client).await;
    assert_eq!(name, "stream_error");
    assert!(chunks.is_empty());
    assert_eq!(err["code"], "provider_unavailable");
    assert_eq!(err["retryable"], true);
    assert_eq!(err["after_seq"], 0);
    assert_eq!(err["error"], "the language model is unavailable");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_key_gives_a_final_stream_error() {
    let fake = FakeServer::start([Reply::status(
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-wrong.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
    )])
    .await;
    let provider = OpenAiProvider::builder()
        .base_url(fake.openai_base())
        .api_key("sk-wrong")
        .build()
        .unwrap();
    let mut client = alice_asks(marie(provider).await, "hello").await;
    let (_, name, err) = stream(&mut client).await;
    assert_eq!(name, "stream_error");
    assert_eq!(err["code"], "provider_unavailable");
    assert_eq!(err["retryable"], false);
    assert!(!err.to_string().contains("sk-"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_broken_mid_answer_ends_with_after_seq() {
    let fake = FakeServer::start([Reply::ok(
        "text/event-stream",
        vec![
            openai_role(),
            openai_text("Once"),
            Step::Wait(PACE),
            openai_text(" upon"),
            Step::Wait(PACE),
            openai_text(" a"),
            Step::Wait(PACE),
            Step::Abort,
        ],
    )])
    .await;
    let provider = OpenAiProvider::builder()
        .base_url(fake.openai_base())
        .build()
        .unwrap();
    let mut client = alice_asks(marie(provider).await, "a story").await;
    let (chunks, name, err) = stream(&mut client).await;
    assert_eq!(name, "stream_error");
    assert_eq!(text(&chunks), "Once upon a");
    assert_eq!(err["code"], "provider_unavailable");
    assert_eq!(err["retryable"], true);
    assert_eq!(err["after_seq"], 3);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stream_closes_the_upstream_request() {
    let mut steps = vec![openai_role()];
    for i in 0..500 {
        steps.push(openai_text(&format!(" w{i}")));
        steps.push(Step::Wait(ms(20)));
    }
    let fake = FakeServer::start([Reply::ok("text/event-stream", steps)]).await;
    let provider = OpenAiProvider::builder()
        .base_url(fake.openai_base())
        .build()
        .unwrap();
    let mut client = alice_asks(marie(provider).await, "go on").await;
    let start = client.next("stream_start").await;
    client.next("stream_chunk").await;

    let cancelled_at = Instant::now();
    client
        .emit(
            "cancel_stream",
            json!({ "conversation_id": "room", "stream_id": start["stream_id"] }),
        )
        .await;
    let seen = fake.body_dropped().await;
    let latency = seen.at.saturating_duration_since(cancelled_at);
    eprintln!("socket.io cancel_stream: upstream request closed {latency:?} after the emit");
    assert!(!seen.finished);
    assert!(latency < ms(500), "took {latency:?}");
    let end = client.next("stream_end").await;
    assert_eq!(end["status"], "cancelled");
}
