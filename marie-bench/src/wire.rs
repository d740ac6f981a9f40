//! Engine.IO v4 / Socket.IO v5 text packets, encoded and decoded by hand (no client
//! library: the load generator must cost as little as possible per frame).
//!
//! Only what the benchmarks use: OPEN, PING/PONG, CONNECT (with `auth`), CONNECT_ERROR,
//! EVENT and ACK on the main namespace `/`, as text WebSocket frames.

use serde_json::Value;

/// A decoded text frame. Payloads are borrowed slices of the frame's JSON.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Packet<'a> {
    /// Engine.IO OPEN (`0{...}`).
    Open,
    /// Engine.IO PING (`2`): answer with [`PONG`].
    Ping,
    /// Socket.IO CONNECT accepted (`40{...}`).
    Connect,
    /// Socket.IO CONNECT_ERROR (`44{...}`), with its JSON.
    ConnectError(&'a str),
    /// Socket.IO EVENT (`42[id]["name", data]`): the name and the raw JSON of `data`
    /// (`null` when absent).
    Event {
        /// The event name.
        name: &'a str,
        /// The first argument, raw JSON.
        data: &'a str,
        /// The ack id the sender asked for.
        ack: Option<u64>,
    },
    /// Socket.IO ACK (`43id[data]`): the id and the raw JSON of the first argument.
    Ack {
        /// The ack id.
        id: u64,
        /// The first argument, raw JSON.
        data: &'a str,
    },
    /// Engine.IO CLOSE, Socket.IO DISCONNECT, or anything else.
    Other,
}

/// The Engine.IO PONG frame.
pub(crate) const PONG: &str = "3";

/// The WebSocket URL of a server's Socket.IO endpoint.
pub(crate) fn ws_url(addr: std::net::SocketAddr) -> String {
    format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
}

/// Socket.IO CONNECT to `/` with `auth`.
pub(crate) fn encode_connect(auth: &Value) -> String {
    format!("40{auth}")
}

/// Socket.IO EVENT `name` with one argument `data`, asking for an ack when `ack` is set.
pub(crate) fn encode_event(name: &str, data: &Value, ack: Option<u64>) -> String {
    let args = Value::Array(vec![Value::String(name.to_owned()), data.clone()]);
    match ack {
        Some(id) => format!("42{id}{args}"),
        None => format!("42{args}"),
    }
}

/// Splits a leading run of ASCII digits off `s`.
fn split_id(s: &str) -> (Option<u64>, &str) {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    if end == 0 {
        (None, s)
    } else {
        (s[..end].parse().ok(), &s[end..])
    }
}

/// Decodes one text frame.
pub(crate) fn decode(frame: &str) -> Packet<'_> {
    let Some(kind) = frame.as_bytes().first() else {
        return Packet::Other;
    };
    match kind {
        b'0' => Packet::Open,
        b'2' => Packet::Ping,
        b'4' => decode_socketio(&frame[1..]),
        _ => Packet::Other,
    }
}

fn decode_socketio(s: &str) -> Packet<'_> {
    let Some(kind) = s.as_bytes().first() else {
        return Packet::Other;
    };
    let rest = &s[1..];
    match kind {
        b'0' => Packet::Connect,
        b'4' => Packet::ConnectError(rest),
        b'2' => {
            let (ack, args) = split_id(rest);
            // ["name", data] or ["name"]: event names are plain strings without escapes.
            let Some(args) = args.strip_prefix("[\"").and_then(|a| a.strip_suffix(']')) else {
                return Packet::Other;
            };
            let Some(quote) = args.find('"') else {
                return Packet::Other;
            };
            let name = &args[..quote];
            let data = args[quote + 1..].strip_prefix(',').unwrap_or("null");
            Packet::Event { name, data, ack }
        }
        b'3' => {
            let (Some(id), args) = split_id(rest) else {
                return Packet::Other;
            };
            let Some(args) = args.strip_prefix('[').and_then(|a| a.strip_suffix(']')) else {
                return Packet::Other;
            };
            let data = if args.is_empty() { "null" } else { args };
            Packet::Ack { id, data }
        }
        _ => Packet::Other,
    }
}

/// Nanosecond time stamps in a chunk's content (`"123 456 "`): one per chunk, several in
/// a merged chunk.
pub(crate) fn stamps(content: &str) -> impl Iterator<Item = u64> + '_ {
    content
        .split_ascii_whitespace()
        .filter_map(|t| t.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_connect_and_events() {
        assert_eq!(encode_connect(&json!({"token": "t"})), r#"40{"token":"t"}"#);
        assert_eq!(
            encode_event("join_conversation", &json!({"conversation_id": "c"}), None),
            r#"42["join_conversation",{"conversation_id":"c"}]"#
        );
        assert_eq!(
            encode_event("send_message_with_ack", &json!({"m": 1}), Some(17)),
            r#"4217["send_message_with_ack",{"m":1}]"#
        );
    }

    #[test]
    fn decodes_engineio_and_socketio_frames() {
        assert_eq!(decode(r#"0{"sid":"x","pingInterval":25000}"#), Packet::Open);
        assert_eq!(decode("2"), Packet::Ping);
        assert_eq!(decode(r#"40{"sid":"abc"}"#), Packet::Connect);
        assert_eq!(
            decode(r#"44{"message":"unauthorized"}"#),
            Packet::ConnectError(r#"{"message":"unauthorized"}"#)
        );
        assert_eq!(
            decode(r#"42["stream_chunk",{"seq":3,"content":"1 2 "}]"#),
            Packet::Event {
                name: "stream_chunk",
                data: r#"{"seq":3,"content":"1 2 "}"#,
                ack: None
            }
        );
        assert_eq!(
            decode(r#"425["ping"]"#),
            Packet::Event {
                name: "ping",
                data: "null",
                ack: Some(5)
            }
        );
        assert_eq!(
            decode(r#"4312[{"status":"success"}]"#),
            Packet::Ack {
                id: 12,
                data: r#"{"status":"success"}"#
            }
        );
        assert_eq!(decode("41"), Packet::Other);
        assert_eq!(decode(""), Packet::Other);
        assert_eq!(decode("42garbage"), Packet::Other);
    }

    #[test]
    fn round_trips_an_event() {
        let frame = encode_event("e", &json!({"a": [1, 2]}), Some(3));
        let Packet::Event { name, data, ack } = decode(&frame) else {
            panic!("not an event: {frame}");
        };
        assert_eq!((name, ack), ("e", Some(3)));
        assert_eq!(
            serde_json::from_str::<Value>(data).ok(),
            Some(json!({"a": [1, 2]}))
        );
    }

    #[test]
    fn reads_time_stamps() {
        assert_eq!(stamps("10 20 x 30 ").collect::<Vec<_>>(), vec![10, 20, 30]);
    }
}
