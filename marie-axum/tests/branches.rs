//! `edit_message`, `regenerate` and `switch_branch` with real Socket.IO clients: the answers
//! stream to the room as a send's do, `get_history` shows the active branch with `parent_id`
//! and `siblings`, `branch_switched` reaches every member, and bad commands get clear errors
//! that change nothing.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marie_llm::EchoProvider;
use marie_testkit::server::start;
use marie_testkit::socketio::{self, TestClient, connect};
use serde_json::{Value, json};

async fn history(client: &TestClient) -> Vec<Value> {
    let ack = client
        .ack("get_history", json!({"conversation_id": "room"}))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    ack["messages"].as_array().unwrap().clone()
}

fn contents(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

/// Sends, and waits for the end of the answer on both clients.
async fn ask(alice: &mut TestClient, bob: &mut TestClient, event: &str, payload: Value) -> Value {
    let ack = alice.ack(event, payload).await;
    assert_eq!(ack["status"], "ok", "{event}: {ack}");
    for client in [&mut *alice, &mut *bob] {
        let seen = client.stream().await;
        assert_eq!(seen.start["stream_id"], ack["stream_id"]);
        assert_eq!(
            seen.terminal.event, "stream_end",
            "{:?}",
            seen.terminal.data
        );
    }
    ack
}

/// Alice and bob in `room`, on a server whose model echoes.
async fn two_members() -> (std::net::SocketAddr, TestClient, TestClient) {
    let server = start(EchoProvider::new(Duration::ZERO)).await;
    let (alice, bob) = socketio::two_members(server.addr, "room").await;
    (server.addr, alice, bob)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_regenerate_and_switch_over_socketio() {
    let (_, mut alice, mut bob) = two_members().await;
    let sent = ask(
        &mut alice,
        &mut bob,
        "send_message",
        json!({"conversation_id": "room", "message": "first question"}),
    )
    .await;
    let first = history(&alice).await;
    assert_eq!(first.len(), 2);
    assert_eq!(first[0]["parent_id"], Value::Null, "always on the wire");
    assert_eq!(first[1]["parent_id"], sent["message_id"]);
    assert!(
        first[0].get("siblings").is_none(),
        "only when there are some"
    );

    // Alice edits her question: a new question beside it, answered.
    let edited = ask(
        &mut alice,
        &mut bob,
        "edit_message",
        json!({"conversation_id": "room", "message_id": sent["message_id"], "message": "second question"}),
    )
    .await;
    let now = history(&bob).await;
    assert_eq!(now.len(), 2);
    assert_eq!(now[0]["message_id"], edited["message_id"]);
    assert_eq!(
        now[0]["siblings"],
        json!([sent["message_id"], edited["message_id"]])
    );
    assert!(contents(&now)[1].contains("second question"), "{now:?}");

    // Bob regenerates the answer (any member may).
    let again = bob
        .ack("regenerate", json!({"conversation_id": "room"}))
        .await;
    assert_eq!(again["status"], "ok", "{again}");
    assert_eq!(
        again["message_id"], edited["message_id"],
        "the question answered"
    );
    for client in [&mut alice, &mut bob] {
        assert_eq!(client.stream().await.terminal.event, "stream_end");
    }
    let now = history(&alice).await;
    assert_eq!(now[1]["siblings"].as_array().unwrap().len(), 2);
    assert_eq!(now[1]["parent_id"], edited["message_id"]);

    // Bob switches back to the first question: everyone is told, history follows.
    let switched = bob
        .ack(
            "switch_branch",
            json!({"conversation_id": "room", "message_id": sent["message_id"]}),
        )
        .await;
    assert_eq!(switched["status"], "ok", "{switched}");
    assert_eq!(switched["leaf_id"], first[1]["message_id"]);
    for client in [&mut alice, &mut bob] {
        let told = client.next("branch_switched").await;
        assert_eq!(
            told,
            json!({
                "conversation_id": "room",
                "message_id": sent["message_id"],
                "leaf_id": first[1]["message_id"],
                "user_id": "bob",
            })
        );
    }
    let now = history(&alice).await;
    assert_eq!(contents(&now), contents(&first));
    assert_eq!(
        now[0]["siblings"],
        json!([sent["message_id"], edited["message_id"]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_branch_commands_get_clear_errors_and_change_nothing() {
    let (addr, mut alice, mut bob) = two_members().await;
    let sent = ask(
        &mut alice,
        &mut bob,
        "send_message",
        json!({"conversation_id": "room", "message": "mine"}),
    )
    .await;
    let mut carol = connect(addr, "carol").await;
    carol.join("elsewhere").await;
    let ack = carol
        .ack(
            "send_message",
            json!({"conversation_id": "elsewhere", "message": "other room"}),
        )
        .await;
    assert_eq!(carol.stream().await.terminal.event, "stream_end");
    let before = history(&alice).await;
    let answer_id = before[1]["message_id"].clone();

    for (who, event, payload, code) in [
        (
            &bob,
            "edit_message",
            json!({"conversation_id": "room", "message_id": sent["message_id"], "message": "not yours"}),
            "forbidden",
        ),
        (
            &alice,
            "edit_message",
            json!({"conversation_id": "room", "message_id": answer_id, "message": "an answer"}),
            "bad_request",
        ),
        (
            &alice,
            "regenerate",
            json!({"conversation_id": "room", "message_id": sent["message_id"]}),
            "bad_request",
        ),
        (
            &alice,
            "switch_branch",
            json!({"conversation_id": "room", "message_id": ack["message_id"]}),
            "not_found",
        ),
        (
            &alice,
            "switch_branch",
            json!({"conversation_id": "room", "message_id": "no such id!"}),
            "bad_request",
        ),
        (
            &alice,
            "regenerate",
            json!({"conversation_id": "room", "message_id": sent["message_id"], "extra": 1}),
            "bad_request",
        ),
        (
            &carol,
            "switch_branch",
            json!({"conversation_id": "room", "message_id": sent["message_id"]}),
            "forbidden",
        ),
    ] {
        let refused = who.ack(event, payload.clone()).await;
        assert_eq!(refused["status"], "error", "{event} {payload}: {refused}");
        assert_eq!(refused["code"], code, "{event} {payload}: {refused}");
    }
    assert_eq!(history(&alice).await, before, "nothing changed");
    assert!(
        alice
            .try_next("stream_start", Duration::from_millis(200))
            .await
            .is_none(),
        "no answer was started"
    );
}
