//! Two MARIE servers in one process sharing one Redis, with real Socket.IO clients: rooms,
//! history, cancellation and `busy` across nodes, and a Redis outage in the middle of it.
//!
//! Runs against the Redis of `MARIE_TEST_REDIS_URL` (default 127.0.0.1:6379, which
//! `scripts/test` starts); every test uses key and channel prefixes of its own, and the
//! outage is a TCP proxy cut between one node and Redis, so the shared Redis never stops.

#![allow(clippy::unwrap_used)]

#[path = "../../../marie-adapters/tests/support/postgres.rs"]
mod postgres;
#[path = "../../../marie-adapters/tests/support/proxy.rs"]
mod proxy;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use marie_adapters::{RedisConfig, RedisControlBus, RedisStore, RedisStreamLog};
use marie_axum::redis::{RedisAdapter, RedisAdapterOptions};
use marie_axum::{Marie, MarieHandle};
use marie_core::{
    FinishReason, LlmEvent, LlmProvider, LlmRequest, LlmStream, ProviderError, Stores,
};
use marie_llm::{EchoProvider, ScriptedProvider};
use marie_testkit::server::{authenticator, listen};
use marie_testkit::socketio::{TestClient, WAIT, connect, connect_raw};
use proxy::{Proxy, redis_addr, redis_url, unique_prefix};
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod groups;

struct Node {
    addr: SocketAddr,
    handle: MarieHandle<RedisAdapter>,
}

/// What a node's backends are, and how it reaches them (Redis; PostgreSQL for a store
/// given in parts).
struct Backends {
    url: String,
    prefix: String,
    /// Store, bus and adapter timeouts: short where a test cuts Redis off.
    timeout: Duration,
    /// Everyone's token budget, if any.
    budget: Option<marie_core::Budget>,
    /// Conversations, history, approvals and usage in this PostgreSQL (a URL), the rest
    /// (sessions, leases, the send queue) in Redis: the store given in parts.
    sql: Option<String>,
    /// The engine's settings (named assistants, say).
    engine: marie_core::EngineConfig,
}

impl Backends {
    fn direct(prefix: &str) -> Self {
        Self {
            url: redis_url(),
            prefix: prefix.to_owned(),
            timeout: Duration::from_secs(2),
            budget: None,
            sql: None,
            engine: marie_core::EngineConfig::default(),
        }
    }
}

async fn start_node(backends: &Backends, provider: impl LlmProvider) -> Node {
    start_node_with_tools(backends, provider, Vec::new()).await
}

async fn start_node_with_tools(
    backends: &Backends,
    provider: impl LlmProvider,
    tools: Vec<Arc<dyn marie_core::Tool>>,
) -> Node {
    let config = RedisConfig::new(backends.url.clone())
        .prefix(backends.prefix.clone())
        .timeout(backends.timeout)
        .connect_timeout(backends.timeout)
        .health_interval(Duration::from_millis(100))
        // Whatever a failed test leaves behind expires on its own.
        .conversation_ttl(Duration::from_secs(3600));
    let store = RedisStore::connect(config.clone()).await.unwrap();
    let bus = RedisControlBus::connect(config.clone()).await.unwrap();
    let adapter = RedisAdapterOptions::new(backends.url.clone())
        .prefix(format!("{}:sio", backends.prefix))
        .timeout(backends.timeout)
        .connect_timeout(backends.timeout)
        .health_interval(Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let log = RedisStreamLog::connect(config.clone())
        .await
        .unwrap()
        .retention(Duration::from_secs(60))
        .running_ttl(Duration::from_secs(60));
    let stores = match &backends.sql {
        Some(url) => Stores::new(marie_adapters::SqlStore::connect(url).await.unwrap())
            .with_sessions(store.clone())
            .with_answer_leases(store.clone())
            .with_send_queue(store),
        None => Stores::new(store),
    };
    let mut config = marie_axum::MarieConfig::default();
    config.engine = backends.engine.clone();
    let mut builder = Marie::builder()
        .config(config)
        .authenticator(authenticator())
        .store(stores)
        .stream_log(log)
        .control_bus(bus)
        .provider(provider);
    for tool in tools {
        builder = builder.tool(tool);
    }
    if let Some(budget) = backends.budget {
        builder = builder.budget(budget);
    }
    let (layer, handle) = builder.redis(adapter).build_async().await.unwrap();
    let addr = listen(axum::Router::new().layer(layer)).await;
    Node { addr, handle }
}

/// Deletes the test's keys.
async fn cleanup(prefix: &str) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

async fn send(client: &TestClient, conversation: &str, message: &str) -> Value {
    client
        .ack(
            "send_message",
            json!({ "conversation_id": conversation, "message": message }),
        )
        .await
}

async fn history(client: &TestClient, conversation: &str) -> Value {
    client
        .ack(
            "get_history",
            json!({ "conversation_id": conversation, "limit": 200 }),
        )
        .await
}

fn contents(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect()
}

fn message_ids(history: &Value) -> Vec<String> {
    history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_sent_on_one_node_reaches_members_on_the_other_whole_and_in_order() {
    let prefix = unique_prefix("cluster-stream");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;
    let b = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;

    let mut alice = connect(a.addr, "alice").await;
    let mut bob = connect(b.addr, "bob").await;
    alice.join("plans").await;
    alice.invite("plans", "bob").await;
    let joined = bob.join("plans").await;
    assert_eq!(
        joined["created"], false,
        "B sees the conversation A created"
    );
    assert_eq!(joined["members"], json!(["alice", "bob"]));
    assert_eq!(
        alice.next("user_joined").await,
        json!({ "user_id": "bob", "conversation_id": "plans" }),
        "room events cross nodes"
    );

    let words: Vec<String> = (1..=60).map(|i| format!("w{i}")).collect();
    let text = words.join(" ");
    let ack = send(&bob, "plans", &text).await;
    assert_eq!(ack["status"], "ok", "{ack}");

    for (who, client) in [("alice on A", &mut alice), ("bob on B", &mut bob)] {
        let seen = client.stream().await;
        assert_eq!(seen.start["stream_id"], ack["stream_id"], "{who}");
        assert_eq!(seen.last_seq(), words.len() as u64, "{who}: every chunk");
        let joined = seen.assert_contiguous();
        assert_eq!(
            joined.split_whitespace().collect::<Vec<_>>(),
            words,
            "{who}"
        );
        assert_eq!(seen.terminal.event, "stream_end", "{who}");
        assert_eq!(seen.terminal.data["full_content"], joined, "{who}");
        assert_eq!(seen.terminal.data["status"], "complete");
    }

    // The other direction too.
    let ack = send(&alice, "plans", "from a").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(bob.stream().await.assert_contiguous(), "from a");
    assert_eq!(alice.stream().await.assert_contiguous(), "from a");

    // An announcement reaches every node.
    let mut admin = connect(a.addr, "admin").await;
    let ack = admin
        .ack("system_announcement", json!({ "message": "maintenance" }))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(bob.next("announcement").await["message"], "maintenance");
    assert_eq!(admin.next("announcement").await["message"], "maintenance");

    drop((a, b));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_written_through_one_node_is_read_through_the_other() {
    let prefix = unique_prefix("cluster-history");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;
    let b = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;

    let mut on_a = connect(a.addr, "alice").await;
    on_a.join("notes").await;
    let mut sent = Vec::new();
    for i in 0..3 {
        let ack = send(&on_a, "notes", &format!("note {i}")).await;
        assert_eq!(ack["status"], "ok", "{ack}");
        sent.push(ack["message_id"].as_str().unwrap().to_owned());
        on_a.stream().await;
    }

    // Another connection of the same user, on the other node.
    let on_b = connect(b.addr, "alice").await;
    let h = history(&on_b, "notes").await;
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(
        contents(&h),
        ["note 0", "note 0", "note 1", "note 1", "note 2", "note 2"],
        "each message and its echoed answer, oldest first"
    );
    let ids = message_ids(&h);
    for id in &sent {
        assert!(ids.contains(id), "acknowledged message {id} is in history");
    }
    // Paging back from a message works across nodes too.
    let page = on_b
        .ack(
            "get_history",
            json!({ "conversation_id": "notes", "before": ids[4], "limit": 2 }),
        )
        .await;
    assert_eq!(message_ids(&page), ids[2..4]);

    // Not for others: access lists are shared as well.
    let bob = connect(b.addr, "bob").await;
    assert_eq!(history(&bob, "notes").await["code"], "forbidden");

    drop((a, b));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_sent_to_one_node_stops_the_answer_running_on_the_other() {
    let prefix = unique_prefix("cluster-cancel");
    let backends = Backends::direct(&prefix);
    // Answers say two words and then wait for ever, until cancelled.
    let hanging = || ScriptedProvider::new(["thinking ", "hard "]).hang_at_end();
    let a = start_node(&backends, hanging()).await;
    let b = start_node(&backends, hanging()).await;

    let mut on_a = connect(a.addr, "alice").await;
    let mut on_b = connect(b.addr, "alice").await;
    on_a.join("c").await;
    on_b.join("c").await;

    let ack = send(&on_b, "c", "go").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let stream_id = ack["stream_id"].as_str().unwrap().to_owned();
    // Both nodes' clients see it start and progress.
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(client.next("stream_start").await["stream_id"], stream_id);
        assert_eq!(client.next("stream_chunk").await["seq"], 1);
        assert_eq!(client.next("stream_chunk").await["seq"], 2);
    }
    assert_eq!(b.handle.engine().running_answers(), 1);
    assert_eq!(a.handle.engine().running_answers(), 0);

    // Busy cluster-wide, and A's joiners see the answer B runs.
    let busy = send(&on_a, "c", "me too").await;
    assert_eq!(busy["code"], "busy", "{busy}");
    let mut late = connect(a.addr, "alice").await;
    let joined = late.join("c").await;
    assert_eq!(joined["active_stream"]["stream_id"], stream_id, "{joined}");

    // Cancel through A.
    let cancelled = on_a
        .ack(
            "cancel_stream",
            json!({ "conversation_id": "c", "stream_id": stream_id }),
        )
        .await;
    assert_eq!(cancelled["status"], "ok", "{cancelled}");
    assert_eq!(cancelled["stream_id"], stream_id);
    for client in [&mut on_a, &mut on_b] {
        let end = client.next("stream_end").await;
        assert_eq!(end["stream_id"], stream_id);
        assert_eq!(end["status"], "cancelled");
        assert_eq!(end["full_content"], "thinking hard ");
    }
    assert_eq!(b.handle.engine().running_answers(), 0);

    // The partial answer is stored, and the conversation is free again, from either node.
    let h = history(&on_a, "c").await;
    assert_eq!(contents(&h), ["go", "thinking hard "]);
    let again = send(&on_a, "c", "next").await;
    assert_eq!(again["status"], "ok", "{again}");
    let nothing = on_b
        .ack(
            "cancel_stream",
            json!({ "conversation_id": "c", "stream_id": "nope" }),
        )
        .await;
    assert_eq!(nothing["code"], "not_found");
    on_b.ack("cancel_stream", json!({ "conversation_id": "c" }))
        .await;

    drop((a, b));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_the_other_node() {
    let prefix = unique_prefix("cluster-session");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;
    let b = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;

    let mut first = connect_raw(a.addr, Some(json!({ "token": "t-alice" }))).await;
    let session = first.next("connected").await["session"].clone();
    first.join("kept").await;
    first.disconnect().await;

    // Node A is gone (or the balancer picked B): the session lives in Redis.
    let mut again = connect_raw(
        b.addr,
        Some(json!({ "token": "t-alice", "previous_session": session })),
    )
    .await;
    let restored = again.next("reconnected").await;
    assert_eq!(restored["restored"], true);
    assert_eq!(restored["rooms"], json!(["kept"]));
    assert_eq!(restored["session"], session);

    drop((a, b));
    cleanup(&prefix).await;
}

// ---------------------------------------------------------------------------------------
// Redis goes away
// ---------------------------------------------------------------------------------------

/// A provider whose answers the test writes, event by event.
#[derive(Clone, Default)]
struct Gated {
    feeds: Arc<Mutex<VecDeque<mpsc::UnboundedReceiver<LlmEvent>>>>,
}

impl Gated {
    /// The pen for the next answer.
    fn next_answer(&self) -> mpsc::UnboundedSender<LlmEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.feeds.lock().unwrap().push_back(rx);
        tx
    }
}

#[async_trait]
impl LlmProvider for Gated {
    async fn stream(&self, _request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let rx = self
            .feeds
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| ProviderError::Unreachable("no answer prepared".into()))?;
        Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async {
            rx.recv().await.map(|e| (Ok(e), rx))
        })))
    }

    fn name(&self) -> &str {
        "gated"
    }
}

fn done() -> LlmEvent {
    LlmEvent::Done {
        usage: None,
        finish_reason: FinishReason::Stop,
    }
}

/// Node A reaches Redis through a proxy that the test cuts in the middle of an answer and
/// restores later; node B keeps its own backends. While A is cut off, its clients get clear
/// `internal` errors, its running answer goes on for them, and nothing panics; once the link
/// is back, A serves again (store, control bus and Socket.IO adapter reconnected and
/// resubscribed) and every message acknowledged before, during or after is in history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_fails_clearly_and_recovers_without_losing_acked_messages() {
    let prefix = unique_prefix("cluster-outage");
    let proxy = Proxy::start(redis_addr()).await;
    let gated = Gated::default();
    let a = start_node(
        &Backends {
            url: proxy.url(),
            prefix: prefix.clone(),
            timeout: Duration::from_millis(500),
            budget: None,
            sql: None,
            engine: marie_core::EngineConfig::default(),
        },
        gated.clone(),
    )
    .await;
    let b = start_node(
        &Backends::direct(&prefix),
        EchoProvider::new(Duration::from_millis(1)),
    )
    .await;

    let mut alice = connect(a.addr, "alice").await;
    let mut bob = connect(b.addr, "bob").await;
    alice.join("ops").await;
    alice.invite("ops", "bob").await;
    bob.join("ops").await;
    let mut acked = Vec::new();

    // Before: an answer on A, streamed to both nodes.
    let pen = gated.next_answer();
    let ack = send(&alice, "ops", "before").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    acked.push(ack["message_id"].as_str().unwrap().to_owned());
    pen.send(LlmEvent::Delta("fine ".into())).unwrap();
    pen.send(done()).unwrap();
    assert_eq!(alice.stream().await.assert_contiguous(), "fine ");
    assert_eq!(bob.stream().await.assert_contiguous(), "fine ");

    // An answer starts on A ...
    let pen = gated.next_answer();
    let ack = send(&alice, "ops", "during").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    acked.push(ack["message_id"].as_str().unwrap().to_owned());
    let stream_id = ack["stream_id"].clone();
    pen.send(LlmEvent::Delta("one ".into())).unwrap();
    assert_eq!(alice.next("stream_start").await["stream_id"], stream_id);
    assert_eq!(alice.next("stream_chunk").await["content"], "one ");
    assert_eq!(bob.next("stream_start").await["stream_id"], stream_id);
    assert_eq!(bob.next("stream_chunk").await["content"], "one ");

    // ... and Redis goes away in the middle of it.
    proxy.cut();
    let cut_at = std::time::Instant::now();

    // The answer goes on for the members on A.
    pen.send(LlmEvent::Delta("two ".into())).unwrap();
    let chunk = alice.next("stream_chunk").await;
    assert_eq!(
        (chunk["seq"].clone(), chunk["content"].clone()),
        (json!(2), json!("two "))
    );

    // Everything that needs Redis fails clearly, and fast.
    let refused = send(&alice, "ops", "lost").await;
    assert_eq!(refused["status"], "error", "{refused}");
    assert_eq!(refused["code"], "internal");
    assert_eq!(refused["message"], "storage is unavailable");
    let err = alice.next("error").await;
    assert_eq!(err["code"], "internal");
    assert_eq!(err["event"], "send_message");
    let h = history(&alice, "ops").await;
    assert_eq!(h["code"], "internal", "{h}");
    let j = alice
        .ack("join_conversation", json!({ "conversation_id": "ops" }))
        .await;
    assert_eq!(j["code"], "internal", "{j}");
    let outage_errors = cut_at.elapsed();

    // The answer ends while Redis is still away: it cannot be stored, so it ends with a
    // retryable `stream_error` after the last chunk sent.
    pen.send(done()).unwrap();
    let failed = alice.next("stream_error").await;
    assert_eq!(failed["stream_id"], stream_id);
    assert_eq!(failed["code"], "internal");
    assert_eq!(failed["retryable"], true);
    assert_eq!(failed["after_seq"], 2);

    // Node B, still linked, serves its own clients meanwhile.
    let on_b = connect(b.addr, "alice").await;
    let h = history(&on_b, "ops").await;
    assert_eq!(h["status"], "ok", "{h}");

    // Redis is back: A recovers by itself. Wait, bounded, until it answers again.
    proxy.restore();
    let restored_at = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let h = history(&alice, "ops").await;
        if h["status"] == "ok" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "A never recovered: {h}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_in = restored_at.elapsed();

    // A answers again, and its events reach B again (the adapter subscribed again): the
    // lease of the failed answer is released in the background, so allow `busy` briefly.
    let pen = gated.next_answer();
    let ack = loop {
        let ack = send(&alice, "ops", "after").await;
        if ack["code"] != "busy" {
            break ack;
        }
        assert!(tokio::time::Instant::now() < deadline, "still busy: {ack}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ack["status"], "ok", "{ack}");
    acked.push(ack["message_id"].as_str().unwrap().to_owned());
    pen.send(LlmEvent::Delta("back ".into())).unwrap();
    pen.send(done()).unwrap();
    assert_eq!(alice.stream().await.assert_contiguous(), "back ");
    // Bob missed what was published while A was cut off; skip to this stream.
    let seen = loop {
        let start = bob.next("stream_start").await;
        if start["stream_id"] == ack["stream_id"] {
            let end = bob.next("stream_end").await;
            break end;
        }
    };
    assert_eq!(seen["full_content"], "back ");

    // And B's answers reach A.
    let ack_b = send(&bob, "ops", "from b").await;
    assert_eq!(ack_b["status"], "ok", "{ack_b}");
    acked.push(ack_b["message_id"].as_str().unwrap().to_owned());
    let end = loop {
        let end = alice.next("stream_end").await;
        if end["stream_id"] == ack_b["stream_id"] {
            break end;
        }
    };
    assert_eq!(end["full_content"], "from b");

    // No acknowledged message is missing, read through either node; the refused one is not
    // there, nor the answer that could not be stored.
    for client in [&alice, &on_b] {
        let h = history(client, "ops").await;
        let ids = message_ids(&h);
        for id in &acked {
            assert!(ids.contains(id), "acknowledged {id} missing: {h}");
        }
        assert_eq!(
            contents(&h),
            [
                "before", "fine ", "during", "after", "back ", "from b", "from b"
            ]
        );
    }
    eprintln!(
        "outage: 3 failed operations answered within {outage_errors:?} of the cut; \
         service back {recovered_in:?} after Redis returned"
    );

    drop((a, b));
    cleanup(&prefix).await;
}

/// A measurement, not a check: how fast one answer crosses from node B to a client on node
/// A. `cargo test -p marie-axum --features redis --test cluster -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn measure_cross_node_stream_throughput() {
    let prefix = unique_prefix("cluster-measure");
    let backends = Backends::direct(&prefix);
    let chunks = 2000;
    let provider = || ScriptedProvider::new((0..chunks).map(|i| format!("{i} ")));
    let a = start_node(&backends, provider()).await;
    let b = start_node(&backends, provider()).await;
    let mut alice = connect(a.addr, "alice").await;
    let bob = connect(b.addr, "alice").await;
    alice.join("m").await;
    let started = std::time::Instant::now();
    let ack = send(&bob, "m", "go").await;
    assert_eq!(ack["status"], "ok");
    let seen = alice.stream().await;
    let elapsed = started.elapsed();
    assert_eq!(seen.last_seq(), chunks as u64);
    seen.assert_contiguous();
    eprintln!(
        "cross-node: {chunks} chunks in {elapsed:?} = {:.0} chunks/s",
        chunks as f64 / elapsed.as_secs_f64()
    );
    drop((a, b));
    cleanup(&prefix).await;
}

/// A client on node 1 loses its connection at chunk k of an answer node 1 runs, reconnects to
/// node 2 with its session and resumes there: node 2 replays from the shared Redis log and
/// follows the live tail over the bus, and the client holds chunks 1..n exactly once, in
/// order. Then it resumes the ended stream again on node 1, from the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_on_another_node() {
    let prefix = unique_prefix("resume-other-node");
    let backends = Backends::direct(&prefix);
    let n = 60u64;
    let k = 15u64;
    let script: Vec<String> = (1..=n).map(|i| format!("w{i} ")).collect();
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(15));
    let node1 = start_node(&backends, provider).await;
    let node2 = start_node(&backends, EchoProvider::default()).await;

    let mut a = connect_raw(node1.addr, Some(json!({ "token": "t-alice" }))).await;
    let session = a.next("connected").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    a.join("c-x-resume").await;
    let ack = send(&a, "c-x-resume", "go").await;
    let stream_id = ack["stream_id"].as_str().unwrap().to_owned();
    let (mut last, mut content) = (0u64, String::new());
    let accept = |c: &Value, last: &mut u64, content: &mut String| {
        let seq = c["seq"].as_u64().unwrap();
        let first = c.get("first_seq").and_then(Value::as_u64).unwrap_or(seq);
        if first == *last + 1 {
            *last = seq;
            content.push_str(c["content"].as_str().unwrap());
        }
    };
    while last < k {
        let ev = a.next("stream_chunk").await;
        accept(&ev, &mut last, &mut content);
    }
    a.disconnect().await;

    let mut b = connect_raw(
        node2.addr,
        Some(json!({ "token": "t-alice", "previous_session": session })),
    )
    .await;
    b.next("reconnected").await;
    let ack = b
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-x-resume", "stream_id": stream_id, "last_seq": last }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let mut after_resume = Vec::new();
    let end = loop {
        let ev = b
            .next_of(&["stream_chunk", "stream_end", "stream_error"])
            .await;
        match ev.event.as_str() {
            "stream_chunk" => {
                accept(&ev.data, &mut last, &mut content);
                after_resume.push(ev.data);
            }
            "stream_end" => break ev.data,
            _ => panic!("{}", ev.data),
        }
    };
    assert_eq!(last, n);
    assert_eq!(content, script.concat());
    assert_eq!(end["full_content"], content);
    // From the replay's start on, node 2 sent each chunk once, in order.
    let start = after_resume
        .iter()
        .rposition(|c| c.get("first_seq").or(c.get("seq")) == Some(&json!(k + 1)))
        .unwrap();
    let mut expect = k + 1;
    for c in &after_resume[start..] {
        let first = c.get("first_seq").unwrap_or(&c["seq"]).as_u64().unwrap();
        assert_eq!(first, expect, "{c}");
        expect = c["seq"].as_u64().unwrap() + 1;
    }

    // The ended stream, from node 1 this time.
    let mut c = connect_raw(node1.addr, Some(json!({ "token": "t-alice" }))).await;
    c.next("connected").await;
    let ack = c
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-x-resume", "stream_id": stream_id, "last_seq": 0 }),
        )
        .await;
    assert_eq!(ack["ended"], true, "{ack}");
    let mut replay = String::new();
    let mut replay_last = 0;
    loop {
        let ev = c.next_of(&["stream_chunk", "stream_end"]).await;
        if ev.event == "stream_end" {
            break;
        }
        accept(&ev.data, &mut replay_last, &mut replay);
    }
    assert_eq!(replay, script.concat());
    drop((node1.handle, node2.handle));
    cleanup(&prefix).await;
}

/// `send_email` needing approval, counting its runs in `runs`.
fn approved_email(runs: Arc<std::sync::atomic::AtomicUsize>) -> Arc<dyn marie_core::Tool> {
    Arc::new(
        marie_core::tool_fn(
            "send_email",
            "Sends an email",
            json!({"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}),
            move |args: Value, _| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(json!({"sent_to": args["to"]}))
                }
            },
        )
        .require_approval(true),
    )
}

/// Two members decide the same tool call at the same moment, one on each node: exactly one
/// decision wins (the store's), the other is told `conflict`, the answer (running on node A)
/// goes on once with the winner's decision, and members on both nodes see the same events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_deciding_at_once_on_two_nodes_one_wins() {
    let prefix = unique_prefix("cluster-approve");
    let backends = Backends::direct(&prefix);
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let script = || {
        ScriptedProvider::new(Vec::<String>::new())
            .calls_tool("call_e", "send_email", json!({"to": "team"}))
            .then_step(["Decided."], vec![])
    };
    let a = start_node_with_tools(&backends, script(), vec![approved_email(runs.clone())]).await;
    let b = start_node_with_tools(&backends, script(), vec![approved_email(runs.clone())]).await;

    let mut alice = connect(a.addr, "alice").await;
    alice.join("vote").await;
    alice.invite("vote", "bob").await;
    alice.invite("vote", "carol").await;
    let mut bob = connect(a.addr, "bob").await;
    bob.join("vote").await;
    let mut carol = connect(b.addr, "carol").await;
    carol.join("vote").await;

    let ack = send(&alice, "vote", "send_email to team").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let request = bob.next("tool_approval_request").await;
    let seen_on_b = carol.next("tool_approval_request").await;
    assert_eq!(seen_on_b, request, "the request reaches node B as it is");

    let decide = |approved: bool| json!({"conversation_id": "vote", "approval_id": request["approval_id"], "approved": approved});
    let (by_bob, by_carol) = tokio::join!(
        bob.ack("approve_tool", decide(true)),
        carol.ack("approve_tool", decide(false))
    );
    let oks = [&by_bob, &by_carol]
        .iter()
        .filter(|a| a["status"] == "ok")
        .count();
    assert_eq!(oks, 1, "bob: {by_bob}, carol: {by_carol}");
    let loser = if by_bob["status"] == "ok" {
        &by_carol
    } else {
        &by_bob
    };
    assert_eq!(loser["code"], "conflict", "{loser}");
    let (winner, approved) = if by_bob["status"] == "ok" {
        ("bob", true)
    } else {
        ("carol", false)
    };

    for client in [&mut alice, &mut bob, &mut carol] {
        let approval = client.next("tool_approval").await;
        assert_eq!(approval["decided_by"], winner);
        assert_eq!(approval["approved"], approved);
        let result = client.next("tool_result").await;
        assert_eq!(result["output"].is_null(), !approved, "{result}");
        let end = client.next("stream_end").await;
        assert_eq!(end["full_content"], "Decided.");
    }
    assert_eq!(
        runs.load(std::sync::atomic::Ordering::SeqCst),
        usize::from(approved)
    );
    drop((a, b));
    cleanup(&prefix).await;
}

/// A decision made on node B wakes the answer that waits on node A (over the control bus).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_node_resumes_the_answer_running_on_the_other() {
    let prefix = unique_prefix("cluster-approve-remote");
    let backends = Backends::direct(&prefix);
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let script = || {
        ScriptedProvider::new(Vec::<String>::new())
            .calls_tool("call_e", "send_email", json!({"to": "ops"}))
            .then_step(["Sent."], vec![])
    };
    let a = start_node_with_tools(&backends, script(), vec![approved_email(runs.clone())]).await;
    let b = start_node_with_tools(&backends, script(), vec![approved_email(runs.clone())]).await;
    let mut alice = connect(a.addr, "alice").await;
    alice.join("ops").await;
    let ack = send(&alice, "ops", "send_email to ops").await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let request = alice.next("tool_approval_request").await;

    let mut on_b = connect(b.addr, "alice").await;
    let joined = on_b.join("ops").await;
    assert_eq!(
        joined["active_stream"]["pending_approval"], request,
        "node B finds the pending approval in the store: {joined}"
    );
    let decided = on_b
        .ack(
            "approve_tool",
            json!({"conversation_id": "ops", "approval_id": request["approval_id"], "approved": true}),
        )
        .await;
    assert_eq!(decided["status"], "ok", "{decided}");
    let end = alice.next("stream_end").await;
    assert_eq!(end["full_content"], "Sent.");
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    drop((a, b));
    cleanup(&prefix).await;
}

/// `user_typing` reaches the members connected to the other node (a volatile broadcast
/// through the Redis adapter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_on_one_node_is_seen_on_the_other() {
    let prefix = unique_prefix("cluster-typing");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::ZERO)).await;
    let b = start_node(&backends, EchoProvider::new(Duration::ZERO)).await;
    let mut alice = connect(a.addr, "alice").await;
    alice.join("typing").await;
    alice.invite("typing", "bob").await;
    let mut bob = connect(b.addr, "bob").await;
    bob.join("typing").await;
    let ack = bob
        .ack(
            "typing",
            json!({"conversation_id": "typing", "typing": true}),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let seen = alice.next("user_typing").await;
    assert_eq!(
        seen,
        json!({"conversation_id": "typing", "user_id": "bob", "typing": true})
    );
    bob.ack(
        "typing",
        json!({"conversation_id": "typing", "typing": false}),
    )
    .await;
    assert_eq!(alice.next("user_typing").await["typing"], false);
    drop((a, b));
    cleanup(&prefix).await;
}

/// An edit through one node and a switch through the other: both nodes' members see the
/// answer and `branch_switched`, and read the same active branch (the tree is in Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_made_on_one_node_are_seen_on_the_other() {
    let prefix = unique_prefix("cluster-branches");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::ZERO)).await;
    let b = start_node(&backends, EchoProvider::new(Duration::ZERO)).await;
    let mut alice = connect(a.addr, "alice").await;
    alice.join("branches").await;
    alice.invite("branches", "bob").await;
    let mut bob = connect(b.addr, "bob").await;
    bob.join("branches").await;

    let sent = send(&alice, "branches", "first").await;
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.stream().await.terminal.event, "stream_end");
    }
    let edited = alice
        .ack(
            "edit_message",
            json!({"conversation_id": "branches", "message_id": sent["message_id"], "message": "second"}),
        )
        .await;
    assert_eq!(edited["status"], "ok", "{edited}");
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.stream().await.terminal.event, "stream_end");
    }
    let through_b = history(&bob, "branches").await;
    assert_eq!(
        through_b["messages"][0]["siblings"],
        json!([sent["message_id"], edited["message_id"]])
    );

    let switched = bob
        .ack(
            "switch_branch",
            json!({"conversation_id": "branches", "message_id": sent["message_id"]}),
        )
        .await;
    assert_eq!(switched["status"], "ok", "{switched}");
    for client in [&mut alice, &mut bob] {
        let told = client.next("branch_switched").await;
        assert_eq!(told["message_id"], sent["message_id"]);
        assert_eq!(told["user_id"], "bob");
    }
    let through_a = history(&alice, "branches").await;
    assert_eq!(through_a["messages"][0]["message_id"], sent["message_id"]);
    assert_eq!(
        message_ids(&through_a),
        message_ids(&history(&bob, "branches").await)
    );
    drop((a, b));
    cleanup(&prefix).await;
}

/// `on_busy: "enqueue"` across nodes: a send queued through node A while an answer runs on
/// node B is answered after it (by the node that ended it), and both nodes' members see
/// `queued`, then its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_queued_on_one_node_is_answered_after_the_answer_running_on_the_other() {
    let prefix = unique_prefix("cluster-queue");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::from_millis(15))).await;
    let b = start_node(&backends, EchoProvider::new(Duration::from_millis(15))).await;
    let mut alice = connect(a.addr, "alice").await;
    alice.join("queue").await;
    alice.invite("queue", "bob").await;
    let mut bob = connect(b.addr, "bob").await;
    bob.join("queue").await;

    let running = send(&bob, "queue", "one two three four five six seven eight").await;
    assert_eq!(running["status"], "ok", "{running}");
    alice.next("stream_start").await;
    let queued = alice
        .ack(
            "send_message",
            json!({"conversation_id": "queue", "message": "and then?", "on_busy": "enqueue"}),
        )
        .await;
    assert_eq!(queued["status"], "ok", "{queued}");
    assert_eq!(queued["queued"], 1);
    for client in [&mut alice, &mut bob] {
        let notice = client.next("queued").await;
        assert_eq!(notice["stream_id"], queued["stream_id"]);
        assert_eq!(notice["position"], 1);
        assert_eq!(notice["user_id"], "alice");
        assert_eq!(notice["message"], "and then?");
    }
    for client in [&mut alice, &mut bob] {
        let order: Vec<String> = {
            let mut seen = Vec::new();
            while seen.len() < 2 {
                let got = client.next_of(&["stream_end", "stream_error"]).await;
                assert_eq!(got.event, "stream_end", "{:?}", got.data);
                seen.push(got.data["stream_id"].as_str().unwrap().to_owned());
            }
            seen
        };
        assert_eq!(
            order,
            [
                running["stream_id"].as_str().unwrap(),
                queued["stream_id"].as_str().unwrap()
            ]
        );
    }
    let through_a = history(&alice, "queue").await;
    let texts = contents(&through_a);
    assert_eq!(texts.len(), 4, "{texts:?}");
    assert_eq!(texts[2], "and then?");
    assert_eq!(through_a["messages"][2]["message_id"], queued["message_id"]);
    drop((a, b));
    cleanup(&prefix).await;
}

/// One budget across both nodes: what a user spends through node A counts on node B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_spent_on_one_node_holds_on_the_other() {
    let prefix = unique_prefix("cluster-budget");
    let backends = Backends {
        budget: Some(marie_core::Budget::new(25, marie_core::BudgetPeriod::Day)),
        ..Backends::direct(&prefix)
    };
    let a = start_node(&backends, EchoProvider::new(Duration::ZERO)).await;
    let b = start_node(&backends, EchoProvider::new(Duration::ZERO)).await;
    let mut on_a = connect(a.addr, "alice").await;
    on_a.join("budget").await;
    let on_b = connect(b.addr, "alice").await;

    let words: Vec<String> = (0..40).map(|i| format!("w{i}")).collect();
    let sent = send(&on_a, "budget", &words.join(" ")).await;
    assert_eq!(sent["status"], "ok", "{sent}");
    let seen = on_a.stream().await;
    assert_eq!(seen.terminal.data["finish_reason"], "budget");
    let spent = seen.terminal.data["usage"]["total_tokens"].clone();

    let usage = on_b.ack("get_usage", json!({})).await;
    assert_eq!(usage["used"], spent, "{usage}");
    let refused = send(&on_b, "budget", "through the other node").await;
    assert_eq!(refused["code"], "budget_exceeded", "{refused}");
    drop((a, b));
    cleanup(&prefix).await;
}

/// A store given in parts, on two nodes: history (and conversations, approvals, usage) in
/// PostgreSQL, sessions, answer leases and the send queue in Redis. One answer at a time holds
/// across the nodes (the lease in Redis), a send queued on one node is answered after the
/// answer running on the other, the history is one, and each part is where it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_given_in_parts_serves_two_nodes() {
    let prefix = unique_prefix("cluster-parts");
    let schema = postgres::Schema::create("cluster_parts").await;
    let backends = Backends {
        sql: Some(schema.url()),
        ..Backends::direct(&prefix)
    };
    let a = start_node(&backends, EchoProvider::new(Duration::from_millis(15))).await;
    let b = start_node(&backends, EchoProvider::new(Duration::from_millis(15))).await;
    let mut alice = connect(a.addr, "alice").await;
    alice.join("parts").await;
    alice.invite("parts", "bob").await;
    let mut bob = connect(b.addr, "bob").await;
    bob.join("parts").await;

    let running = send(&bob, "parts", "one two three four five six seven eight").await;
    assert_eq!(running["status"], "ok", "{running}");
    alice.next("stream_start").await;
    let refused = send(&alice, "parts", "me too").await;
    assert_eq!(
        refused["code"], "busy",
        "the lease in Redis holds on node A: {refused}"
    );
    let queued = alice
        .ack(
            "send_message",
            json!({"conversation_id": "parts", "message": "and then?", "on_busy": "enqueue"}),
        )
        .await;
    assert_eq!(queued["queued"], 1, "{queued}");
    let mut ended = Vec::new();
    while ended.len() < 2 {
        let got = bob.next_of(&["stream_end", "stream_error"]).await;
        assert_eq!(got.event, "stream_end", "{:?}", got.data);
        ended.push(got.data["stream_id"].clone());
    }
    assert_eq!(
        ended,
        [running["stream_id"].clone(), queued["stream_id"].clone()]
    );

    let through_a = history(&alice, "parts").await;
    let through_b = history(&bob, "parts").await;
    assert_eq!(message_ids(&through_a), message_ids(&through_b));
    assert_eq!(contents(&through_a).len(), 4, "{through_a}");

    // Each part is where it was given: the messages in PostgreSQL, none in Redis; the
    // sessions in Redis.
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&schema.url())
        .await
        .unwrap();
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM marie_messages")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(rows, 4);
    let (sessions,): (i64,) = sqlx::query_as("SELECT count(*) FROM marie_sessions")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert_eq!(sessions, 0, "sessions are Redis's part");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.iter().any(|k| k.contains(":session:")), "{keys:?}");
    assert!(!keys.iter().any(|k| k.ends_with(":msgs")), "{keys:?}");
    drop((a, b));
    cleanup(&prefix).await;
    schema.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversation_notices_reach_members_on_the_other_node_and_deleting_empties_the_room() {
    let prefix = unique_prefix("cluster-notices");
    let backends = Backends::direct(&prefix);
    let a = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;
    let b = start_node(&backends, EchoProvider::new(Duration::from_millis(1))).await;

    let mut alice = connect(a.addr, "alice").await;
    alice.join("plans").await;
    alice.invite("plans", "bob").await;
    alice.invite("plans", "carol").await;
    // Bob's page on the other node lists conversations without joining any.
    let mut bob_list = connect(b.addr, "bob").await;
    let mut bob_room = connect(b.addr, "bob").await;
    bob_room.join("plans").await;
    let mut carol = connect(b.addr, "carol").await;
    carol.join("plans").await;

    let ack = alice
        .ack(
            "update_conversation",
            json!({"conversation_id": "plans", "title": "Summer plans"}),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    for client in [&mut bob_list, &mut bob_room, &mut carol] {
        let updated = client.next("conversation_updated").await;
        assert_eq!(updated["title"], "Summer plans");
        assert_eq!(updated["updated_by"], "alice");
    }

    // Removed on node A, carol's socket on node B leaves the room.
    let ack = alice
        .ack(
            "remove_member",
            json!({"conversation_id": "plans", "user_id": "carol"}),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let removed = carol.next("removed").await;
    assert_eq!(removed["removed_by"], "alice");
    // The members left are told too, for their members panels.
    let changed = bob_list.next("conversation_updated").await;
    assert_eq!(changed["updated_by"], "alice");
    // An invite reaches the invitee's open list on the other node.
    let mut dave = connect(b.addr, "dave").await;
    alice.invite("plans", "dave").await;
    let invited = dave.next("conversation_updated").await;
    assert_eq!(invited["conversation_id"], "plans");
    assert_eq!(invited["title"], "Summer plans");
    let typing = carol
        .ack(
            "typing",
            json!({"conversation_id": "plans", "typing": true}),
        )
        .await;
    assert_eq!(typing["code"], "forbidden", "{typing}");

    let ack = alice
        .ack("delete_conversation", json!({"conversation_id": "plans"}))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    for client in [&mut bob_list, &mut bob_room] {
        let deleted = client.next("conversation_deleted").await;
        assert_eq!(deleted["deleted_by"], "alice");
    }
    // Out of the room on both nodes, and gone from the store both read.
    let history_b = bob_room
        .ack("get_history", json!({"conversation_id": "plans"}))
        .await;
    assert_eq!(history_b["code"], "not_found", "{history_b}");
    let list = bob_list.ack("list_conversations", json!({})).await;
    assert_eq!(list["conversations"], json!([]), "{list}");
    assert_eq!(
        alice
            .ack("join_conversation", json!({"conversation_id": "plans"}))
            .await["code"],
        "not_found"
    );

    drop((a, b));
    cleanup(&prefix).await;
}
