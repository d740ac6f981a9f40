//! A real Socket.IO client (`rust_socketio`) that records every event it receives, in order,
//! and asks with acks: what a browser's client does, checked event by event.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// How long any single expected event may take before the test fails: long, because two
/// cores run whole test binaries at once.
pub const WAIT: Duration = Duration::from_secs(10);

/// A received event: its name and first argument.
#[derive(Debug, Clone)]
pub struct Received {
    /// The event's name, `error` for a refused CONNECT.
    pub event: String,
    /// Its first argument (`null` when it had none).
    pub data: Value,
}

/// A connected client and everything it has received.
///
/// Events wait in arrival order until a test takes them ([`next`](Self::next) and the
/// like); an event a test does not ask for is kept, not dropped, so that asking for events
/// in another order than they came never loses one.
pub struct TestClient {
    /// The `rust_socketio` client, for what the helpers do not cover.
    pub client: Client,
    rx: mpsc::UnboundedReceiver<Received>,
    /// Every event received, in order.
    seen: Vec<Received>,
    /// Received but not yet taken by `next` and the like, in order.
    pending: VecDeque<Received>,
}

/// The first argument of `payload`.
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
    connect_with(url, auth, TransportType::Any).await
}

/// Connects over `transport` without waiting for the outcome.
pub async fn connect_with(url: &str, auth: Option<Value>, transport: TransportType) -> TestClient {
    let (tx, rx) = mpsc::unbounded_channel();
    let tx_any = tx.clone();
    let tx_err = tx;
    let mut builder = ClientBuilder::new(url)
        .transport_type(transport)
        // A test decides itself when to connect again.
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
        // `on_any` does not see `error` (a refused CONNECT).
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
        pending: VecDeque::new(),
    }
}

/// Connects as `user` (token `t-<user>`, see [`crate::server::authenticator`]) and waits
/// for `connected`.
pub async fn connect(addr: SocketAddr, user: &str) -> TestClient {
    let mut c = connect_raw(addr, Some(json!({ "token": format!("t-{user}") }))).await;
    let connected = c.next("connected").await;
    assert_eq!(connected["user_id"], user);
    c
}

/// Alice and bob, both members of `conversation` (alice created it and invited bob), both
/// joined.
pub async fn two_members(addr: SocketAddr, conversation: &str) -> (TestClient, TestClient) {
    let mut alice = connect(addr, "alice").await;
    alice.join(conversation).await;
    alice.invite(conversation, "bob").await;
    let mut bob = connect(addr, "bob").await;
    bob.join(conversation).await;
    (alice, bob)
}

impl TestClient {
    /// The next event named `event`; events before it are kept for [`Self::all`].
    pub async fn next(&mut self, event: &str) -> Value {
        self.try_next(event, WAIT)
            .await
            .unwrap_or_else(|| panic!("no `{event}` within {WAIT:?}; seen: {:#?}", self.seen))
    }

    /// The next event named `event`, or `None` when none came within `wait`.
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

    /// Emits `event` without an ack.
    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.expect("emit");
    }

    /// Emits with an ack callback and returns the ack's payload.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        // The callback is `Fn`: the sender is taken out of a shared slot on its one call.
        let tx = Arc::new(Mutex::new(Some(tx)));
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

    /// Joins `conversation`, checks the ack says `ok` and returns it.
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

    /// Invites `user` into `conversation` and checks the ack says `ok`.
    pub async fn invite(&self, conversation: &str, user: &str) {
        let ack = self
            .ack(
                "invite",
                json!({ "conversation_id": conversation, "user_id": user }),
            )
            .await;
        assert_eq!(
            ack["status"], "ok",
            "invite {user} to {conversation}: {ack}"
        );
    }

    /// Sends `message` to `conversation`, checks the ack says `ok` and returns it (with the
    /// answer's `stream_id`).
    pub async fn send(&self, conversation: &str, message: &str) -> Value {
        let ack = self
            .ack(
                "send_message",
                json!({ "conversation_id": conversation, "message": message }),
            )
            .await;
        assert_eq!(ack["status"], "ok", "send to {conversation}: {ack}");
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

    /// Disconnects, ignoring a connection already gone.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// One stream as a client received it.
pub struct StreamSeen {
    /// The `stream_start`.
    pub start: Value,
    /// Every chunk received, those of failed attempts included.
    pub chunks: Vec<Value>,
    /// The `stream_reset`s: a failed model step asked again.
    pub resets: Vec<Value>,
    /// The `stream_end` or `stream_error`.
    pub terminal: Received,
}

impl StreamSeen {
    /// Checks seq 1..n without gaps or repeats (a merged chunk, `first_seq`..`seq`, covers
    /// several: the server merges the chunks of a burst, and those a slow client is behind
    /// on) and returns the joined content.
    pub fn assert_contiguous(&self) -> String {
        let mut next = 1;
        for (i, c) in self.chunks.iter().enumerate() {
            let first = c["first_seq"]
                .as_u64()
                .unwrap_or_else(|| c["seq"].as_u64().unwrap());
            assert_eq!(first, next, "chunk {i}: {c}");
            next = c["seq"].as_u64().unwrap() + 1;
            assert_eq!(c["stream_id"], self.start["stream_id"]);
            assert_eq!(c["done"], false);
            assert!(!c["content"].as_str().unwrap().is_empty());
        }
        self.text()
    }

    /// The last `seq` received (0 when none): how many chunks the stream had, merged or not.
    pub fn last_seq(&self) -> u64 {
        self.chunks
            .last()
            .and_then(|c| c["seq"].as_u64())
            .unwrap_or(0)
    }

    /// The chunks' contents joined, unchecked.
    pub fn text(&self) -> String {
        self.chunks
            .iter()
            .map(|c| c["content"].as_str().unwrap())
            .collect()
    }
}
