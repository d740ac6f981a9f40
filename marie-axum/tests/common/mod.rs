//! A MARIE server on an ephemeral port and a real Socket.IO client (`rust_socketio`) that
//! records every event it receives.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::FutureExt;
use marie_adapters::{MemoryStore, StaticAuthenticator};
use marie_axum::{Marie, MarieBuilder, MarieConfig, MarieHandle};
use marie_core::{Identity, LlmProvider, UserId};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: MarieHandle,
    pub store: MemoryStore,
}

/// Users with tokens `t-<name>`; `admin` has the admin role.
pub fn authenticator() -> StaticAuthenticator {
    let auth = StaticAuthenticator::new();
    for name in ["alice", "bob", "carol", "dave"] {
        auth.insert(
            format!("t-{name}"),
            Identity::new(UserId::parse(name).unwrap()),
        );
    }
    auth.insert(
        "t-admin",
        Identity::new(UserId::parse("admin").unwrap()).with_role("admin"),
    );
    auth
}

pub async fn start(provider: impl LlmProvider) -> TestServer {
    start_with(provider, MarieConfig::default()).await
}

pub async fn start_with(provider: impl LlmProvider, config: MarieConfig) -> TestServer {
    start_with_tools(provider, config, Vec::new()).await
}

/// A server whose engine offers `tools`, with the HTTP routes mounted too.
pub async fn start_with_tools(
    provider: impl LlmProvider,
    config: MarieConfig,
    tools: Vec<std::sync::Arc<dyn marie_core::Tool>>,
) -> TestServer {
    start_custom(provider, config, |mut builder| {
        for tool in tools {
            builder = builder.tool(tool);
        }
        builder
    })
    .await
}

/// A server built by `customize` from the test defaults, with the HTTP routes mounted too.
pub async fn start_custom(
    provider: impl LlmProvider,
    config: MarieConfig,
    customize: impl FnOnce(MarieBuilder) -> MarieBuilder,
) -> TestServer {
    let store = MemoryStore::new();
    let builder = Marie::builder()
        .authenticator(authenticator())
        .store(store.clone())
        .provider(provider)
        .config(config);
    let (layer, handle) = customize(builder).build().unwrap();
    let app = handle.http_routes().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(marie_axum::nodelay(listener), app)
            .await
            .unwrap();
    });
    TestServer {
        addr,
        handle,
        store,
    }
}

/// A received event: its name and first argument.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub data: Value,
}

pub struct TestClient {
    pub client: Client,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Every event received, in order.
    seen: Vec<Received>,
    /// Received but not yet consumed by `next`/`stream`, in order.
    pending: std::collections::VecDeque<Received>,
}

fn first_value(payload: Payload) -> Value {
    #[allow(deprecated)]
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::Text(_) => Value::Null,
        // Acks arrive as the packet's raw JSON array of arguments.
        Payload::String(s) => match serde_json::from_str(&s) {
            Ok(Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
            Ok(v) => v,
            Err(_) => Value::String(s),
        },
        Payload::Binary(_) => Value::Null,
    }
}

/// Connects without waiting for the outcome.
pub async fn connect_raw(addr: SocketAddr, auth: Option<Value>) -> TestClient {
    connect_url(&format!("http://{addr}"), auth).await
}

/// Connects to `url` (which may carry a query) without waiting for the outcome.
pub async fn connect_url(url: &str, auth: Option<Value>) -> TestClient {
    connect_with(url, auth, rust_socketio::TransportType::Any).await
}

/// Connects over `transport` without waiting for the outcome.
pub async fn connect_with(
    url: &str,
    auth: Option<Value>,
    transport: rust_socketio::TransportType,
) -> TestClient {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx_any = tx.clone();
    let tx_err = tx.clone();
    let mut builder = ClientBuilder::new(url)
        .transport_type(transport)
        .reconnect(false)
        .on_any(move |event: Event, payload: Payload, _c: Client| {
            let tx = tx_any.clone();
            async move {
                let _ = tx.send(Received {
                    event: event.to_string(),
                    data: first_value(payload),
                });
            }
            .boxed()
        })
        .on("error", move |payload: Payload, _c: Client| {
            let tx = tx_err.clone();
            async move {
                let _ = tx.send(Received {
                    event: "error".into(),
                    data: first_value(payload),
                });
            }
            .boxed()
        });
    if let Some(auth) = auth {
        builder = builder.auth(auth);
    }
    let client = builder
        .connect()
        .await
        .expect("socket.io transport connects");
    TestClient {
        client,
        rx,
        seen: Vec::new(),
        pending: Default::default(),
    }
}

/// Connects as `user` (token `t-<user>`) and waits for `connected`.
pub async fn connect(addr: SocketAddr, user: &str) -> TestClient {
    let mut c = connect_raw(addr, Some(json!({ "token": format!("t-{user}") }))).await;
    let connected = c.next("connected").await;
    assert_eq!(connected["user_id"], user);
    c
}

impl TestClient {
    /// The next event named `event`; events before it are kept for [`Self::all`].
    pub async fn next(&mut self, event: &str) -> Value {
        self.try_next(event, WAIT)
            .await
            .unwrap_or_else(|| panic!("no `{event}` within {WAIT:?}; seen: {:#?}", self.seen))
    }

    pub async fn try_next(&mut self, event: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.pending.iter().position(|r| r.event == event) {
                return self.pending.remove(i).map(|r| r.data);
            }
            self.recv_until(deadline).await?;
        }
    }

    /// The next event whose name is one of `names`, in arrival order.
    pub async fn next_of(&mut self, names: &[&str]) -> Received {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(i) = self
                .pending
                .iter()
                .position(|r| names.contains(&r.event.as_str()))
            {
                return self.pending.remove(i).unwrap();
            }
            self.recv_until(deadline)
                .await
                .unwrap_or_else(|| panic!("none of {names:?} within {WAIT:?}"));
        }
    }

    /// Receives one more event into `pending`; `None` at the deadline.
    async fn recv_until(&mut self, deadline: tokio::time::Instant) -> Option<()> {
        let got = tokio::time::timeout_at(deadline, self.rx.recv())
            .await
            .ok()??;
        self.seen.push(got.clone());
        self.pending.push_back(got);
        Some(())
    }

    /// Everything received so far (drains what has arrived without waiting).
    pub fn all(&mut self) -> Vec<Received> {
        while let Ok(r) = self.rx.try_recv() {
            self.seen.push(r.clone());
            self.pending.push_back(r);
        }
        self.seen.clone()
    }

    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.expect("emit");
    }

    /// Emits with an ack callback and returns the ack's payload.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = std::sync::Arc::new(std::sync::Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, data, WAIT, move |payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    if let Some(tx) = tx.lock().unwrap().take() {
                        // rust_socketio hands an ack over as its whole argument array.
                        let value = match first_value(payload) {
                            Value::Array(mut args) if !args.is_empty() => args.swap_remove(0),
                            other => other,
                        };
                        let _ = tx.send(value);
                    }
                }
                .boxed()
            })
            .await
            .expect("emit with ack");
        tokio::time::timeout(WAIT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for `{event}` within {WAIT:?}"))
            .expect("ack sender dropped")
    }

    /// Joins and returns the ack.
    pub async fn join(&mut self, conversation: &str) -> Value {
        let ack = self
            .ack(
                "join_conversation",
                json!({ "conversation_id": conversation }),
            )
            .await;
        assert_eq!(ack["status"], "ok", "join {conversation}: {ack}");
        ack
    }

    /// Collects one whole stream: the start, every chunk, and the terminal event.
    pub async fn stream(&mut self) -> StreamSeen {
        let start = self.next("stream_start").await;
        let mut chunks = Vec::new();
        let mut resets = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT * 3;
        loop {
            let Some(i) = self
                .pending
                .iter()
                .position(|r| r.event.starts_with("stream_"))
            else {
                self.recv_until(deadline)
                    .await
                    .expect("the stream did not end in time");
                continue;
            };
            let got = self.pending.remove(i).expect("index is in range");
            match got.event.as_str() {
                "stream_chunk" => chunks.push(got.data),
                "stream_reset" => resets.push(got.data),
                "stream_end" | "stream_error" => {
                    return StreamSeen {
                        start,
                        chunks,
                        resets,
                        terminal: got,
                    };
                }
                other => panic!("unexpected `{other}` inside a stream"),
            }
        }
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

pub struct StreamSeen {
    pub start: Value,
    /// Every chunk received, those of failed attempts included.
    pub chunks: Vec<Value>,
    /// The `stream_reset`s: a failed model step asked again.
    pub resets: Vec<Value>,
    pub terminal: Received,
}

impl StreamSeen {
    /// Checks seq 1..n without gaps and returns the joined content.
    pub fn assert_contiguous(&self) -> String {
        for (i, c) in self.chunks.iter().enumerate() {
            assert_eq!(c["seq"], (i + 1) as u64, "chunk {i}: {c}");
            assert_eq!(c["stream_id"], self.start["stream_id"]);
            assert_eq!(c["done"], false);
            assert!(!c["content"].as_str().unwrap().is_empty());
        }
        self.chunks
            .iter()
            .map(|c| c["content"].as_str().unwrap())
            .collect()
    }
}
