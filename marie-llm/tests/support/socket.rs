//! MARIE served over Socket.IO on 127.0.0.1:0, and a Socket.IO client that records what it
//! receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use marie_adapters::{MemoryStore, StaticAuthenticator};
use marie_axum::{Marie, MarieConfig};
use marie_core::{Identity, LlmProvider, UserId};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use super::fake::WAIT;

/// MARIE on 127.0.0.1:0 with `provider` and `config`; user `alice` has token `t-alice`.
pub async fn marie(provider: impl LlmProvider, config: MarieConfig) -> SocketAddr {
    let auth = StaticAuthenticator::new();
    auth.insert("t-alice", Identity::new(UserId::parse("alice").unwrap()));
    let (layer, _handle) = Marie::builder()
        .authenticator(auth)
        .store(MemoryStore::new())
        .provider(provider)
        .config(config)
        .build()
        .unwrap();
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(marie_axum::nodelay(listener), app).await;
    });
    addr
}

/// A Socket.IO client, signed in as `alice`, that records every event it receives.
pub struct TestClient {
    pub client: Client,
    pub rx: mpsc::UnboundedReceiver<(String, Value)>,
}

fn first_value(payload: Payload) -> Value {
    #[allow(deprecated)]
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::String(s) => match serde_json::from_str(&s) {
            Ok(Value::Array(mut args)) if !args.is_empty() => args.swap_remove(0),
            Ok(v) => v,
            Err(_) => Value::String(s),
        },
        _ => Value::Null,
    }
}

impl TestClient {
    /// Connects to MARIE at `addr` and waits for `connected`.
    pub async fn connect(addr: SocketAddr) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = ClientBuilder::new(format!("http://{addr}"))
            .reconnect(false)
            .auth(json!({ "token": "t-alice" }))
            .on_any(move |event: Event, payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((event.to_string(), first_value(payload)));
                }
                .boxed()
            })
            .connect()
            .await
            .unwrap();
        let mut c = Self { client, rx };
        c.next("connected").await;
        c
    }

    /// The next event named one of `names`; others before it are skipped.
    pub async fn next_of(&mut self, names: &[&str]) -> (String, Value) {
        tokio::time::timeout(WAIT, async {
            loop {
                let (event, data) = self.rx.recv().await.expect("client alive");
                if names.contains(&event.as_str()) {
                    return (event, data);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("none of {names:?} within {WAIT:?}"))
    }

    /// The next event named `name`; other events before it are skipped.
    pub async fn next(&mut self, name: &str) -> Value {
        self.next_of(&[name]).await.1
    }

    /// Emits `event` with `data` and returns the acknowledgement's first argument.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, data, WAIT, move |payload: Payload, _c: Client| {
                let tx = tx.clone();
                async move {
                    if let Some(tx) = tx.lock().unwrap().take() {
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
            .unwrap();
        tokio::time::timeout(WAIT, rx).await.unwrap().unwrap()
    }
}
