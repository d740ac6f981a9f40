//! A client's first event, sent the moment it reads the CONNECT reply (as `socket.io-client`
//! does in its `connect` handler), is answered: the socket's handlers exist before CONNECT
//! leaves, and the answer waits behind the greeting (`connected` first).
//!
//! Before the handlers were registered in the CONNECT middleware, these tests failed in four
//! runs of five on the same machine (a join never answered, among 100 or 2,000).
//!
//! Raw Engine.IO clients, so that the event goes out in the very turn of the loop that read
//! CONNECT: over WebSocket and over HTTP long-polling, thousands of connections each.

#![allow(clippy::unwrap_used)]

use marie_testkit::raw;
use marie_testkit::server::{TestServer, start_with};
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use marie_axum::{Limits, MarieConfig};
use marie_llm::EchoProvider;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn server() -> TestServer {
    let mut config = MarieConfig::default();
    config.limits = Limits::unlimited();
    start_with(EchoProvider::new(Duration::ZERO), config).await
}

/// What one client saw: the events before its ack (names), and the ack.
#[derive(Debug)]
struct Seen {
    events: Vec<String>,
    ack: Value,
}

/// Over WebSocket: CONNECT, and `join_conversation` written as soon as the CONNECT reply is
/// read, before anything else.
async fn ws_client(addr: SocketAddr, conversation: String) -> Result<Seen, String> {
    let mut ws = raw::ws_open(addr).await;
    raw::send_text(&mut ws, format!("40{}", json!({"token": "t-alice"}))).await;
    let first = raw::next_text(&mut ws, WAIT)
        .await
        .ok_or("no CONNECT reply")?;
    if !first.starts_with("40") {
        return Err(format!("expected the CONNECT reply, got {first}"));
    }
    let join = json!(["join_conversation", {"conversation_id": conversation}]);
    raw::send_text(&mut ws, format!("427{join}")).await;
    let mut events = Vec::new();
    loop {
        let packet = raw::next_text(&mut ws, WAIT)
            .await
            .ok_or_else(|| format!("no ack to the join (saw {events:?})"))?;
        if let Some(ack) = raw::ack_of(&packet, 7) {
            return Ok(Seen { events, ack });
        }
        if let Some((name, _)) = raw::event_of(&packet) {
            events.push(name);
        }
    }
}

/// Over long-polling: CONNECT, and `join_conversation` posted as soon as a poll has brought
/// the CONNECT reply (with whatever came with it).
async fn polling_client(addr: SocketAddr, conversation: String) -> Result<Seen, String> {
    let sid = raw::polling_handshake(addr).await;
    raw::post(addr, &sid, &format!("40{}", json!({"token": "t-alice"}))).await?;
    let mut events = Vec::new();
    let (mut connected, mut sent) = (false, false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        for packet in raw::poll(addr, &sid).await? {
            if packet.starts_with("40") {
                connected = true;
            } else if let Some((name, _)) = raw::event_of(&packet) {
                events.push(name);
            } else if let Some(ack) = raw::ack_of(&packet, 7) {
                return Ok(Seen { events, ack });
            }
        }
        if connected && !sent {
            let join = json!(["join_conversation", {"conversation_id": conversation}]);
            raw::post(addr, &sid, &format!("427{join}")).await?;
            sent = true;
        }
    }
    Err(format!("no ack to the join (saw {events:?})"))
}

/// Every client answered, greeted first.
fn check(results: Vec<Result<Seen, String>>) {
    let total = results.len();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {total} first events unanswered or wrong, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    for seen in results.into_iter().map(Result::unwrap) {
        assert_eq!(seen.ack["status"], "ok", "{:?}", seen.ack);
        // Presence (`user_joined`, `user_left`) is the room's broadcast, best effort and not
        // ordered with a socket's own replies (`docs/protocol.md` section 2).
        let replies: Vec<&String> = seen
            .events
            .iter()
            .filter(|e| !e.starts_with("user_"))
            .collect();
        assert_eq!(replies, ["connected", "joined"], "the greeting comes first");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_over_websocket_is_always_answered() {
    let server = server().await;
    // Rooms of 100: each join is announced to the room, which keeps the server busy while
    // connections arrive (the original report had one room).
    let results = stream::iter(0..2_000)
        .map(|i| ws_client(server.addr, format!("ws-{}", i / 100)))
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;
    check(results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_event_over_long_polling_is_always_answered() {
    let server = server().await;
    let results = stream::iter(0..2_000)
        .map(|i| polling_client(server.addr, format!("poll-{}", i / 100)))
        .buffer_unordered(100)
        .collect::<Vec<_>>()
        .await;
    check(results);
}

/// The shape of the original report: 100 clients joining one idle room right after
/// connecting, 20 times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_join_one_room_right_after_connecting_twenty_times() {
    let server = server().await;
    for run in 0..20 {
        let room = format!("room-{run}");
        let results = stream::iter(0..100)
            .map(|_| ws_client(server.addr, room.clone()))
            .buffer_unordered(100)
            .collect::<Vec<_>>()
            .await;
        check(results);
    }
}
