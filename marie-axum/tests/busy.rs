//! `on_busy` with real Socket.IO clients: `enqueue` (the `queued` notice, the order, a full
//! queue, `cancel_stream` of a queued send), `interrupt`, and the app-wide default.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marie_axum::MarieConfig;
use marie_llm::EchoProvider;
use marie_testkit::server::{start, start_with};
use marie_testkit::socketio::{TestClient, connect};
use serde_json::{Value, json};

/// Answered word by word, 10 ms a word (over a second): the queue is looked at meanwhile.
fn long() -> String {
    (0..120)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

async fn send(client: &TestClient, message: &str, on_busy: Option<&str>) -> Value {
    let mut payload = json!({"conversation_id": "room", "message": message});
    if let Some(on_busy) = on_busy {
        payload["on_busy"] = json!(on_busy);
    }
    client.ack("send_message", payload).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_waits_in_order_and_a_queued_send_can_be_cancelled() {
    let server = start(EchoProvider::new(Duration::from_millis(10))).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("room").await;

    let running = send(&alice, &long(), None).await;
    assert_eq!(running["status"], "ok", "{running}");
    assert!(running.get("queued").is_none(), "{running}");
    let busy = send(&alice, "refused", None).await;
    assert_eq!(busy["code"], "busy", "the default is reject: {busy}");
    let bad = send(&alice, "?", Some("later")).await;
    assert_eq!(bad["code"], "bad_request", "{bad}");
    assert!(
        bad["message"].as_str().unwrap().contains("on_busy"),
        "{bad}"
    );

    let mut queued = Vec::new();
    for (i, text) in ["second", "third", "fourth", "fifth", "sixth"]
        .iter()
        .enumerate()
    {
        let ack = send(&alice, text, Some("enqueue")).await;
        assert_eq!(ack["queued"], i + 1, "{ack}");
        assert_eq!(alice.next("queued").await["stream_id"], ack["stream_id"]);
        queued.push(ack);
    }
    let full = send(&alice, "seventh", Some("enqueue")).await;
    assert_eq!(full["code"], "busy", "at most max_queue (5) wait: {full}");

    // A page opened now learns the queue from `joined`.
    let mut again = connect(server.addr, "alice").await;
    let joined = again.join("room").await;
    let waiting: Vec<(Value, Value)> = joined["queued"]
        .as_array()
        .unwrap_or_else(|| panic!("no queue in {joined}"))
        .iter()
        .map(|q| (q["stream_id"].clone(), q["position"].clone()))
        .collect();
    let expected: Vec<(Value, Value)> = queued
        .iter()
        .enumerate()
        .map(|(i, ack)| (ack["stream_id"].clone(), json!(i + 1)))
        .collect();
    assert_eq!(waiting, expected, "{joined}");
    assert_eq!(joined["active_stream"]["stream_id"], running["stream_id"]);

    // "third" is taken out of the queue: its stream ends cancelled, without a start.
    let cancel = alice
        .ack(
            "cancel_stream",
            json!({"conversation_id": "room", "stream_id": queued[1]["stream_id"]}),
        )
        .await;
    assert_eq!(cancel["status"], "ok", "{cancel}");

    let mut ends = Vec::new();
    let mut started = Vec::new();
    while ends.len() < 6 {
        let got = alice.next_of(&["stream_start", "stream_end"]).await;
        let id = got.data["stream_id"].as_str().unwrap().to_owned();
        if got.event == "stream_start" {
            started.push(id);
        } else {
            ends.push((id, got.data["status"].as_str().unwrap().to_owned()));
        }
    }
    let id = |ack: &Value| ack["stream_id"].as_str().unwrap().to_owned();
    assert_eq!(
        ends[0],
        (id(&queued[1]), "cancelled".to_owned()),
        "the cancelled one ends first"
    );
    assert!(!started.contains(&id(&queued[1])));
    let completed: Vec<String> = ends[1..].iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        completed,
        [
            id(&running),
            id(&queued[0]),
            id(&queued[2]),
            id(&queued[3]),
            id(&queued[4])
        ]
    );
    let history = alice
        .ack("get_history", json!({"conversation_id": "room"}))
        .await;
    let questions: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        questions,
        [long().as_str(), "second", "fourth", "fifth", "sixth"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_ends_the_running_answer_cancelled_and_answers_at_once() {
    let mut config = MarieConfig::default();
    config.engine = config.engine.on_busy(marie_core::OnBusy::Interrupt);
    let server = start_with(EchoProvider::new(Duration::from_millis(20)), config).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("room").await;
    let mut bob = connect(server.addr, "bob").await;
    alice.invite("room", "bob").await;
    bob.join("room").await;

    let running = send(&alice, &long(), None).await;
    bob.next("stream_chunk").await;
    // The app's default is `interrupt`; a send may still ask to be refused instead.
    let refused = send(&bob, "polite", Some("reject")).await;
    assert_eq!(refused["code"], "busy", "{refused}");
    let interrupting = send(&bob, "stop", None).await;
    assert_eq!(interrupting["status"], "ok", "{interrupting}");
    let end = bob.next("stream_end").await;
    assert_eq!(end["stream_id"], running["stream_id"]);
    assert_eq!(end["status"], "cancelled");
    let partial = end["full_content"].as_str().unwrap().to_owned();
    assert!(!partial.is_empty());
    let next = bob.next("stream_end").await;
    assert_eq!(next["stream_id"], interrupting["stream_id"]);
    assert_eq!(next["status"], "complete");
    let history = bob
        .ack("get_history", json!({"conversation_id": "room"}))
        .await;
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents[..3], [long().as_str(), partial.as_str(), "stop"]);
}
