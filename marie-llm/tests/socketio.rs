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
use serde_json::{Value, json};
use support::fake::{
    FakeServer, Reply, Step, WAIT, ollama_answer, openai_answer, openai_role, openai_text,
};
use support::ms;
use support::socket::TestClient;
use tokio::time::Instant;

const PACE: Duration = Duration::from_millis(10);

/// MARIE on 127.0.0.1:0 with `provider`; user `alice` has token `t-alice`.
/// MARIE without the engine's retries of a failed step: these tests check how each fault of
/// the wire reaches a Socket.IO client (the retries are tested in `retries.rs` and marie-core).
async fn marie(provider: impl LlmProvider) -> SocketAddr {
    let mut config = MarieConfig::default();
    config.engine = config.engine.mid_stream_retries(0);
    support::socket::marie(provider, config).await
}

impl TestClient {
    async fn join_and_send(&mut self, message: &str) {
        let ack = self
            .ack("join_conversation", json!({ "conversation_id": "room" }))
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
        self.client
            .emit(
                "send_message",
                json!({ "conversation_id": "room", "message": message }),
            )
            .await
            .unwrap();
    }

    /// `stream_start`, the chunks, and the terminal event, checked against the protocol.
    async fn stream(&mut self) -> (Vec<Value>, String, Value) {
        let start = self.next("stream_start").await;
        assert_eq!(start["status"], "streaming");
        let mut chunks = Vec::new();
        let (name, terminal) = tokio::time::timeout(WAIT, async {
            loop {
                let (event, data) = self.rx.recv().await.expect("client alive");
                match event.as_str() {
                    "stream_chunk" => chunks.push(data),
                    "stream_end" | "stream_error" => return (event, data),
                    _ => {}
                }
            }
        })
        .await
        .expect("the stream ended in time");
        for (i, c) in chunks.iter().enumerate() {
            assert_eq!(c["seq"], i as u64 + 1);
            assert_eq!(c["stream_id"], start["stream_id"]);
            assert_eq!(c["tokens_used"], i as u64 + 1);
        }
        assert_eq!(terminal["stream_id"], start["stream_id"]);
        (chunks, name, terminal)
    }
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
    let mut client = TestClient::connect(marie(provider).await).await;
    client.join_and_send("hello").await;
    let (chunks, name, end) = client.stream().await;
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
    let mut client = TestClient::connect(marie(provider).await).await;
    client.join_and_send("salut").await;
    let (_, name, end) = client.stream().await;
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
    let mut client = TestClient::connect(marie(provider).await).await;
    client.join_and_send("hello").await;
    let (chunks, name, err) = client.stream().await;
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
    let mut client = TestClient::connect(marie(provider).await).await;
    client.join_and_send("hello").await;
    let (_, name, err) = client.stream().await;
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
    let mut client = TestClient::connect(marie(provider).await).await;
    client.join_and_send("a story").await;
    let (chunks, name, err) = client.stream().await;
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
    let mut client = TestClient::connect(marie(provider).await).await;
    client.join_and_send("go on").await;
    let start = client.next("stream_start").await;
    client.next("stream_chunk").await;

    let cancelled_at = Instant::now();
    client
        .client
        .emit(
            "cancel_stream",
            json!({ "conversation_id": "room", "stream_id": start["stream_id"] }),
        )
        .await
        .unwrap();
    let seen = fake.body_dropped().await;
    let latency = seen.at.saturating_duration_since(cancelled_at);
    eprintln!("socket.io cancel_stream: upstream request closed {latency:?} after the emit");
    assert!(!seen.finished);
    assert!(latency < ms(500), "took {latency:?}");
    let end = client.next("stream_end").await;
    assert_eq!(end["status"], "cancelled");
}
