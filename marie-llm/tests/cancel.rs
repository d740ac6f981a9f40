//! Cancellation reaches the model server: dropping an answer stream (what the engine does on
//! `cancel_stream` and when shutdown interrupts an answer) closes the upstream HTTP request,
//! and the server sees it within a bound. The figures measured are printed
//! (`cargo test -p marie-llm --all-features --test cancel -- --nocapture`).

#![cfg(all(feature = "openai", feature = "ollama"))]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use marie_core::{EndStatus, EngineConfig, StreamEvent};
use marie_llm::{OllamaProvider, OpenAiProvider};
use support::direct::drop_latency;
use support::engine::Chat;
use support::fake::{FakeServer, Reply, Step, ollama_text, openai_role, openai_text};
use support::ms;
use tokio::time::Instant;

/// How soon the server must see the request go away.
const BOUND: Duration = Duration::from_millis(500);

/// An endless answer: a token every 20 ms, forever (well, for 500 tokens).
fn endless_openai() -> Reply {
    let mut steps = vec![openai_role()];
    for i in 0..500 {
        steps.push(openai_text(&format!(" t{i}")));
        steps.push(Step::Wait(ms(20)));
    }
    steps.push(Step::Hang);
    Reply::ok("text/event-stream", steps)
}

fn endless_ollama() -> Reply {
    let mut steps = Vec::new();
    for i in 0..500 {
        steps.push(ollama_text(&format!(" t{i}")));
        steps.push(Step::Wait(ms(20)));
    }
    steps.push(Step::Hang);
    Reply::ok("application/x-ndjson", steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_openai_stream_closes_the_upstream_request() {
    let server = FakeServer::start([endless_openai()]).await;
    let provider = OpenAiProvider::builder()
        .base_url(server.openai_base())
        .build()
        .unwrap();
    let latency = drop_latency(provider, &server).await;
    eprintln!("openai: upstream request closed {latency:?} after the stream was dropped");
    assert!(latency < BOUND, "took {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_ollama_stream_closes_the_upstream_request() {
    let server = FakeServer::start([endless_ollama()]).await;
    let provider = OllamaProvider::builder()
        .host(server.ollama_host())
        .build()
        .unwrap();
    let latency = drop_latency(provider, &server).await;
    eprintln!("ollama: upstream request closed {latency:?} after the stream was dropped");
    assert!(latency < BOUND, "took {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_an_answer_closes_the_upstream_request() {
    let server = FakeServer::start([endless_openai()]).await;
    let provider = OpenAiProvider::builder()
        .base_url(server.openai_base())
        .build()
        .unwrap();
    let chat = Chat::new(provider, EngineConfig::default()).await;
    let stream = chat.send("talk forever").await;
    chat.first_chunk(&stream).await;

    let cancelled_at = Instant::now();
    chat.engine
        .cancel(&chat.user, &chat.conversation, Some(&stream))
        .await
        .unwrap();
    let seen = server.body_dropped().await;
    let latency = seen.at.saturating_duration_since(cancelled_at);
    eprintln!("engine cancel: upstream request closed {latency:?} after cancel_stream");
    assert!(!seen.finished);
    assert!(latency < BOUND, "took {latency:?}");

    let answer = chat.finish(&stream).await;
    let StreamEvent::End(end) = &answer.terminal else {
        panic!("{:#?}", answer.terminal)
    };
    assert_eq!(end.status, EndStatus::Cancelled);
    assert_eq!(end.full_content, answer.text());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_the_answer_and_closes_the_upstream_request() {
    let server = FakeServer::start([endless_ollama()]).await;
    let provider = OllamaProvider::builder()
        .host(server.ollama_host())
        .build()
        .unwrap();
    let chat = Chat::new(provider, EngineConfig::default()).await;
    let stream = chat.send("talk forever").await;
    chat.first_chunk(&stream).await;

    let started = Instant::now();
    chat.engine.shutdown(Duration::ZERO).await;
    let seen = server.body_dropped().await;
    let latency = seen.at.saturating_duration_since(started);
    eprintln!("shutdown: upstream request closed {latency:?} after shutdown began");
    assert!(latency < BOUND, "took {latency:?}");
    let answer = chat.finish(&stream).await;
    let StreamEvent::End(end) = &answer.terminal else {
        panic!("{:#?}", answer.terminal)
    };
    assert_eq!(end.status, EndStatus::Interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_during_a_retry_backoff_sends_nothing_more() {
    // The server fails, the provider waits before retrying; the answer is cancelled
    // meanwhile: the retry must never be sent.
    let server = FakeServer::start([Reply::status(503, "{}"), endless_openai()]).await;
    let provider = OpenAiProvider::builder()
        .base_url(server.openai_base())
        .retry(marie_llm::RetryPolicy::default().backoff(ms(400), ms(400)))
        .build()
        .unwrap();
    let chat = Chat::new(provider, EngineConfig::default()).await;
    let stream = chat.send("hi").await;
    server.wait_requests(1).await;
    chat.engine
        .cancel(&chat.user, &chat.conversation, Some(&stream))
        .await
        .unwrap();
    let answer = chat.finish(&stream).await;
    assert!(matches!(&answer.terminal, StreamEvent::End(e) if e.status == EndStatus::Cancelled));
    // Past the longest backoff (400 ms): still one request.
    tokio::time::sleep(ms(600)).await;
    assert_eq!(server.requests().len(), 1);
}
