//! `typing` → `user_typing` with real Socket.IO clients: only the other members get it,
//! repeats are throttled, it ends by itself, on a leave and on a disconnect, and only a
//! connection that joined may send it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marie_axum::MarieConfig;
use marie_llm::EchoProvider;
use marie_testkit::server::start_with;
use marie_testkit::socketio::{self, TestClient};
use serde_json::{Value, json};

async fn typing(client: &TestClient, conversation: &str, typing: bool) -> Value {
    client
        .ack(
            "typing",
            json!({"conversation_id": conversation, "typing": typing}),
        )
        .await
}

/// Alice and bob in `room`, on a server with `config` whose model echoes.
async fn two_members(config: MarieConfig) -> (TestClient, TestClient) {
    let server = start_with(EchoProvider::new(Duration::ZERO), config).await;
    socketio::two_members(server.addr, "room").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_others_see_it_once_a_second_and_when_it_stops() {
    let (mut alice, mut bob) = two_members(MarieConfig::default()).await;
    for _ in 0..5 {
        let ack = typing(&bob, "room", true).await;
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    let first = alice.next("user_typing").await;
    assert_eq!(
        first,
        json!({"conversation_id": "room", "user_id": "bob", "typing": true})
    );
    let ack = typing(&bob, "room", false).await;
    assert_eq!(ack["typing"], false);
    // The next one alice gets is the end: the four repeats were not forwarded.
    let next = alice.next("user_typing").await;
    assert_eq!(next["typing"], false, "{next}");
    // The typer is not told of their own typing.
    assert!(
        bob.try_next("user_typing", Duration::from_millis(200))
            .await
            .is_none()
    );
    // A `typing:false` when not typing is acknowledged and sends nothing.
    typing(&bob, "room", false).await;
    typing(&alice, "room", true).await;
    let from_alice = bob.next("user_typing").await;
    assert_eq!(from_alice["user_id"], "alice");
    assert!(
        alice
            .try_next("user_typing", Duration::from_millis(100))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_ends_by_itself_and_on_leave_and_disconnect() {
    let mut config = MarieConfig::default();
    config.typing_timeout = Duration::from_millis(300);
    let (mut alice, bob) = two_members(config).await;

    typing(&bob, "room", true).await;
    assert_eq!(alice.next("user_typing").await["typing"], true);
    let started = tokio::time::Instant::now();
    let ended = alice.next("user_typing").await;
    assert_eq!(ended["typing"], false, "{ended}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    typing(&bob, "room", true).await;
    assert_eq!(alice.next("user_typing").await["typing"], true);
    let left = bob
        .ack("leave_conversation", json!({"conversation_id": "room"}))
        .await;
    assert_eq!(left["status"], "ok");
    assert_eq!(alice.next("user_typing").await["typing"], false);
    alice.next("user_left").await;

    let mut bob = bob;
    bob.join("room").await;
    typing(&bob, "room", true).await;
    assert_eq!(alice.next("user_typing").await["typing"], true);
    bob.disconnect().await;
    assert_eq!(alice.next("user_typing").await["typing"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_connection_in_the_room_may_type() {
    let (_alice, mut bob) = two_members(MarieConfig::default()).await;
    let outside = typing(&bob, "elsewhere", true).await;
    assert_eq!(outside["code"], "forbidden", "{outside}");
    let error = bob.next("error").await;
    assert_eq!(error["event"], "typing");
    let bad = bob
        .ack(
            "typing",
            json!({"conversation_id": "room", "typing": "yes"}),
        )
        .await;
    assert_eq!(bad["code"], "bad_request");
    assert!(bad["message"].as_str().unwrap().contains("typing"), "{bad}");
}
