//! Raw Engine.IO / Socket.IO over a WebSocket, and raw HTTP/1.1: for sending what no
//! well-behaved client library would send, and for seeing every frame as it comes.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A WebSocket as `tokio_tungstenite::connect_async` opens it.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens an Engine.IO v4 WebSocket (no Socket.IO CONNECT yet); returns after the OPEN packet.
pub async fn ws_open(addr: SocketAddr) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut ws, Duration::from_secs(5)).await.unwrap();
    assert!(open.starts_with('0'), "engine.io OPEN expected, got {open}");
    ws
}

/// Opens a WebSocket and sends the Socket.IO CONNECT with `token`; waits for `connected`.
pub async fn ws_connect(addr: SocketAddr, token: &str) -> Ws {
    let mut ws = ws_open(addr).await;
    send_text(&mut ws, format!("40{}", json!({ "token": token }))).await;
    let deadline = Duration::from_secs(5);
    loop {
        let t = next_text(&mut ws, deadline)
            .await
            .expect("socket.io connect answered");
        if t.starts_with("42[\"connected\"") {
            return ws;
        }
        assert!(!t.starts_with("44"), "connect refused: {t}");
    }
}

/// Sends a text frame; `false` when the connection is gone.
pub async fn send_text(ws: &mut Ws, text: impl Into<String>) -> bool {
    ws.send(Message::Text(text.into())).await.is_ok()
}

/// Sends a binary frame; `false` when the connection is gone.
pub async fn send_binary(ws: &mut Ws, data: Vec<u8>) -> bool {
    ws.send(Message::Binary(data)).await.is_ok()
}

/// The next text frame, answering Engine.IO pings; `None` when the connection closed or
/// nothing came within `wait`. Any WebSocket: one opened over a socket of the test's own
/// making (a small receive buffer, say) too.
pub async fn next_text<S>(ws: &mut WebSocketStream<S>, wait: Duration) -> Option<String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match msg {
            Ok(Message::Text(t)) if t == "2" => {
                let _ = ws.send(Message::Text("3".into())).await;
            }
            Ok(Message::Text(t)) => return Some(t),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The name and first argument of an event packet (`42["name", data]`), if `packet` is one.
pub fn event_of(packet: &str) -> Option<(String, Value)> {
    let body = packet.strip_prefix("42")?;
    let Value::Array(mut args) = serde_json::from_str::<Value>(body).ok()? else {
        return None;
    };
    let name = args.first()?.as_str()?.to_owned();
    let data = if args.len() > 1 {
        args.swap_remove(1)
    } else {
        Value::Null
    };
    Some((name, data))
}

/// The first argument of the ack `43<id>[...]`, if `packet` is it.
pub fn ack_of(packet: &str, id: u32) -> Option<Value> {
    let body = packet.strip_prefix(&format!("43{id}"))?;
    match serde_json::from_str::<Value>(body).ok()? {
        Value::Array(mut args) if !args.is_empty() => Some(args.swap_remove(0)),
        _ => None,
    }
}

/// Waits for the event `name` (a `42["name", data]` packet) and returns its data.
pub async fn next_event(ws: &mut Ws, name: &str, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let t = next_text(ws, left).await?;
        if let Some((event, data)) = event_of(&t)
            && event == name
        {
            return Some(data);
        }
    }
}

/// Whether the server closes the connection within `wait` (reading and dropping frames).
pub async fn closed_within(ws: &mut Ws, wait: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(Message::Text(t)))) if t == "2" => {
                let _ = ws.send(Message::Text("3".into())).await;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; returns the status and the body.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    // The server may answer (413) before it has read the whole body.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The Engine.IO session id of a new long-polling session.
pub async fn polling_handshake(addr: SocketAddr) -> String {
    let (status, body) = http(addr, "GET", "/socket.io/?EIO=4&transport=polling", &[], b"").await;
    assert_eq!(status, 200, "{body}");
    let start = body.find('{').unwrap();
    let end = body.rfind('}').unwrap();
    let open: Value = serde_json::from_str(&body[start..=end]).unwrap();
    open["sid"].as_str().unwrap().to_owned()
}

/// The packets of one long-polling GET of session `sid` (`\x1e`-separated), or why the
/// server refused it.
pub async fn poll(addr: SocketAddr, sid: &str) -> Result<Vec<String>, String> {
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, body) = http(addr, "GET", &path, &[], b"").await;
    if status != 200 {
        return Err(format!("poll answered {status}: {body}"));
    }
    Ok(body.split('\u{1e}').map(str::to_owned).collect())
}

/// Posts `packet` to the long-polling session `sid`, or says why the server refused it.
pub async fn post(addr: SocketAddr, sid: &str, packet: &str) -> Result<(), String> {
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let headers = [("Content-Type", "text/plain;charset=UTF-8")];
    let (status, body) = http(addr, "POST", &path, &headers, packet.as_bytes()).await;
    (status == 200)
        .then_some(())
        .ok_or(format!("post answered {status}: {body}"))
}
