//! One benchmark client: a raw WebSocket carrying Engine.IO / Socket.IO text frames, bound
//! to a chosen 127.0.0.x source address so that many thousands of connections fit past the
//! ephemeral port range of one address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::wire::{self, Packet};

/// Source addresses used: 127.0.0.2 ..= 127.0.0.(1 + SOURCES).
const SOURCES: usize = 8;

/// A boxed error: the benchmark reports it and stops.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A connected, authenticated Socket.IO client.
pub(crate) struct Conn {
    ws: WebSocketStream<TcpStream>,
}

/// A text frame received, or why none came.
pub(crate) enum Recv {
    /// A frame (pings are answered and not returned).
    Text(String),
    /// Nothing came before the deadline.
    Timeout,
    /// The connection closed.
    Closed,
}

impl Conn {
    /// Connects client number `index` to `server` (from source 127.0.0.(2 + index % 8)),
    /// sends CONNECT with `token`, and waits for the `connected` event; 20 s at most.
    pub(crate) async fn connect(
        server: SocketAddr,
        index: usize,
        token: &str,
    ) -> Result<Conn, BoxError> {
        tokio::time::timeout(
            Duration::from_secs(20),
            Self::connect_unbounded(server, index, token),
        )
        .await
        .map_err(|_| "connecting took more than 20 s")?
    }

    async fn connect_unbounded(
        server: SocketAddr,
        index: usize,
        token: &str,
    ) -> Result<Conn, BoxError> {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (index % SOURCES) as u8);
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
        let stream = socket.connect(server).await?;
        stream.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async(wire::ws_url(server), stream).await?;
        let mut conn = Conn { ws };
        let deadline = Instant::now() + Duration::from_secs(20);
        match conn.recv(deadline).await {
            Recv::Text(t) if wire::decode(&t) == Packet::Open => {}
            _ => return Err("no Engine.IO OPEN".into()),
        }
        conn.send(wire::encode_connect(&json!({ "token": token })))
            .await?;
        loop {
            let Recv::Text(t) = conn.recv(deadline).await else {
                return Err("no answer to CONNECT".into());
            };
            match wire::decode(&t) {
                Packet::Event {
                    name: "connected", ..
                } => return Ok(conn),
                Packet::ConnectError(e) => return Err(format!("connect refused: {e}").into()),
                _ => {}
            }
        }
    }

    /// Sends one text frame.
    pub(crate) async fn send(&mut self, text: String) -> Result<(), BoxError> {
        self.ws.send(Message::Text(text)).await?;
        Ok(())
    }

    /// Emits `name` with `data`, asking for an ack when `ack` is set.
    pub(crate) async fn emit(
        &mut self,
        name: &str,
        data: &Value,
        ack: Option<u64>,
    ) -> Result<(), BoxError> {
        self.send(wire::encode_event(name, data, ack)).await
    }

    /// The next text frame before `deadline`, answering Engine.IO pings.
    pub(crate) async fn recv(&mut self, deadline: Instant) -> Recv {
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Recv::Timeout,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Recv::Closed;
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    if t == "2" {
                        if self.send(wire::PONG.to_owned()).await.is_err() {
                            return Recv::Closed;
                        }
                        continue;
                    }
                    if std::env::var_os("MARIE_BENCH_TRACE").is_some() {
                        eprintln!("<< {}", &t[..t.len().min(200)]);
                    }
                    return Recv::Text(t);
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Waits for the event `name` and returns its raw JSON data.
    pub(crate) async fn wait_event(
        &mut self,
        name: &str,
        wait: Duration,
    ) -> Result<String, BoxError> {
        let deadline = Instant::now() + wait;
        loop {
            let Recv::Text(t) = self.recv(deadline).await else {
                return Err(format!("no `{name}` within {wait:?}").into());
            };
            if let Packet::Event { name: n, data, .. } = wire::decode(&t)
                && n == name
            {
                return Ok(data.to_owned());
            }
        }
    }

    /// Joins `conversation` and waits for `joined`.
    pub(crate) async fn join(&mut self, conversation: &str) -> Result<(), BoxError> {
        self.emit(
            "join_conversation",
            &json!({ "conversation_id": conversation }),
            None,
        )
        .await?;
        self.wait_event("joined", Duration::from_secs(20)).await?;
        Ok(())
    }

    /// Closes the connection politely.
    pub(crate) async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
