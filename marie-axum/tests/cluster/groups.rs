//! Group conversations on two nodes (`docs/protocol.md` section 10): three members, Alice on
//! node A, Bob and Carol on node B. People talk while an answer streams, `@mention` calls
//! one named assistant in, `never` answers nothing, `message_added` comes before the answer
//! and again on a resume from the start, and read marks count what is unread.

use std::time::Duration;

use marie_core::{Assistant, EngineConfig, LlmEvent, Tool, ToolError, tool_fn};
use marie_llm::EchoProvider;
use marie_testkit::socketio::{TestClient, connect};
use proxy::unique_prefix;
use serde_json::{Value, json};

use super::{
    Backends, Gated, Node, cleanup, contents, done, history, proxy, start_node,
    start_node_with_tools,
};

/// `@echo` answers what names no one; `@calc` has the one tool `calculate`.
fn assistants() -> EngineConfig {
    EngineConfig::default().assistants([
        Assistant::new("echo"),
        Assistant::new("calc").tools(["calculate"]),
    ])
}

/// A test's key prefix, and backends whose engine declares [`assistants`].
fn with_assistants(test: &str) -> (String, Backends) {
    let prefix = unique_prefix(test);
    let backends = Backends {
        engine: assistants(),
        ..Backends::direct(&prefix)
    };
    (prefix, backends)
}

/// `calculate`, for products only (`12*7`): enough for `@calc`.
fn calculate() -> std::sync::Arc<dyn Tool> {
    std::sync::Arc::new(tool_fn(
        "calculate",
        "Multiplies two numbers: 12*7.",
        json!({
            "type": "object",
            "properties": { "expression": { "type": "string" } },
            "required": ["expression"]
        }),
        |args: Value, _ctx| async move {
            let expression = args["expression"].as_str().unwrap_or_default();
            let (a, b) = expression
                .split_once('*')
                .ok_or_else(|| ToolError::new("only a*b"))?;
            let (a, b): (i64, i64) = a
                .trim()
                .parse()
                .ok()
                .zip(b.trim().parse().ok())
                .ok_or_else(|| ToolError::new("not numbers"))?;
            Ok(json!({ "value": a * b }))
        },
    ))
}

/// Alice on `a`, Bob and Carol on `b`, all three in `room` (Alice created it).
async fn three_members(a: &Node, b: &Node, room: &str) -> (TestClient, TestClient, TestClient) {
    let mut alice = connect(a.addr, "alice").await;
    let mut bob = connect(b.addr, "bob").await;
    let mut carol = connect(b.addr, "carol").await;
    alice.join(room).await;
    alice.invite(room, "bob").await;
    alice.invite(room, "carol").await;
    bob.join(room).await;
    carol.join(room).await;
    (alice, bob, carol)
}

async fn send_with(client: &TestClient, room: &str, text: &str, answer: Option<bool>) -> Value {
    let mut payload = json!({ "conversation_id": room, "message": text });
    if let Some(answer) = answer {
        payload["answer"] = json!(answer);
    }
    client.ack("send_message", payload).await
}

async fn set_policy(client: &TestClient, room: &str, policy: &str) -> Value {
    client
        .ack(
            "update_conversation",
            json!({ "conversation_id": room, "answer_policy": policy }),
        )
        .await
}

/// The names of the events `client` received that are about messages and answers.
fn message_events(client: &mut TestClient) -> Vec<String> {
    client
        .all()
        .into_iter()
        .map(|r| r.event)
        .filter(|e| e == "message_added" || e.starts_with("stream_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_talk_while_an_answer_streams_on_two_nodes() {
    let (prefix, backends) = with_assistants("cluster-group-talk");
    let gated = Gated::default();
    let a = start_node(&backends, gated.clone()).await;
    let b = start_node(&backends, gated.clone()).await;
    let (mut alice, mut bob, mut carol) = three_members(&a, &b, "talk").await;
    set_policy(&alice, "talk", "mention").await;

    let pen = gated.next_answer();
    let asked = send_with(&alice, "talk", "@echo what do we eat?", None).await;
    assert_eq!(asked["status"], "ok", "{asked}");
    pen.send(LlmEvent::Delta("Let me ".into())).unwrap();
    // Everyone has the question, then the answer's start, then its first words.
    for client in [&mut alice, &mut bob, &mut carol] {
        let added = client.next("message_added").await;
        assert_eq!(added["message"]["content"], "@echo what do we eat?");
        assert_eq!(added["message"]["user_id"], "alice");
        let start = client.next("stream_start").await;
        assert_eq!(start["assistant"], "echo");
        client.next("stream_chunk").await;
    }
    // Bob and Carol talk on node B while the answer runs on node A: never `busy`.
    let pizza = send_with(&bob, "talk", "pizza!", None).await;
    assert_eq!(pizza["status"], "ok", "{pizza}");
    assert_eq!(pizza["answered"], false);
    assert!(pizza.get("stream_id").is_none(), "{pizza}");
    let sushi = send_with(&carol, "talk", "sushi", Some(false)).await;
    assert_eq!(sushi["status"], "ok", "{sushi}");
    for client in [&mut alice, &mut bob, &mut carol] {
        let first = client.next("message_added").await;
        let second = client.next("message_added").await;
        assert_eq!(
            [&first["message"]["content"], &second["message"]["content"]],
            ["pizza!", "sushi"]
        );
    }
    pen.send(LlmEvent::Delta("think.".into())).unwrap();
    pen.send(done()).unwrap();
    for client in [&mut alice, &mut bob, &mut carol] {
        let end = client.next("stream_end").await;
        assert_eq!(end["full_content"], "Let me think.");
    }
    assert_eq!(
        message_events(&mut carol),
        [
            "message_added",
            "stream_start",
            "stream_chunk",
            "message_added",
            "message_added",
            "stream_chunk",
            "stream_end"
        ],
        "the question before the answer, people's messages as they came"
    );
    // One branch: the answer after what was said while it ran, by the assistant named.
    let stored = history(&carol, "talk").await;
    assert_eq!(
        contents(&stored),
        ["@echo what do we eat?", "pizza!", "sushi", "Let me think."]
    );
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages[3]["assistant"], "echo");
    assert_eq!(messages[3]["parent_id"], messages[2]["message_id"]);

    drop((a, b));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mention_calls_one_assistant_in_and_never_answers_nothing() {
    let (prefix, backends) = with_assistants("cluster-group-mention");
    let echo = || EchoProvider::new(Duration::from_millis(1));
    let a = start_node_with_tools(&backends, echo(), vec![calculate()]).await;
    let b = start_node_with_tools(&backends, echo(), vec![calculate()]).await;
    let (mut alice, mut bob, mut carol) = three_members(&a, &b, "mention").await;

    let ack = set_policy(&alice, "mention", "mention").await;
    assert_eq!(ack["answer_policy"], "mention", "{ack}");
    for client in [&mut bob, &mut carol] {
        // (After the notices of the invitations.)
        while client.next("conversation_updated").await["answer_policy"] != "mention" {}
    }
    // Plain talk, a name no assistant has, an e-mail address: stored, told, not answered.
    for text in ["hi all", "@bob lunch?", "write to bob@calc.com"] {
        let ack = send_with(&bob, "mention", text, None).await;
        assert_eq!(ack["answered"], false, "{text}: {ack}");
    }
    let asked = send_with(&carol, "mention", "@calc 12*7", None).await;
    assert_eq!(asked["status"], "ok", "{asked}");
    assert!(asked["stream_id"].is_string(), "{asked}");
    for client in [&mut alice, &mut bob, &mut carol] {
        let seen = client.stream().await;
        assert_eq!(seen.start["assistant"], "calc");
        assert_eq!(seen.terminal.event, "stream_end");
        assert!(
            seen.terminal.data["full_content"]
                .as_str()
                .unwrap()
                .contains("84"),
            "{}",
            seen.terminal.data
        );
    }
    let starts = alice
        .all()
        .iter()
        .filter(|r| r.event == "stream_start")
        .count();
    assert_eq!(starts, 1, "exactly one answer");
    let stored = history(&alice, "mention").await;
    let messages = stored["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    assert_eq!(messages[4]["role"], "assistant");
    assert_eq!(messages[4]["assistant"], "calc");

    // `never`: nothing is answered, `answer:true` is refused and stores nothing.
    set_policy(&bob, "mention", "never").await;
    let ack = send_with(&alice, "mention", "@calc 1*1", None).await;
    assert_eq!(ack["answered"], false, "{ack}");
    let refused = send_with(&alice, "mention", "answer me", Some(true)).await;
    assert_eq!(refused["status"], "error");
    assert_eq!(refused["code"], "bad_request");
    assert!(
        refused["message"].as_str().unwrap().contains("never"),
        "{refused}"
    );
    let unknown = set_policy(&alice, "mention", "sometimes").await;
    assert_eq!(unknown["code"], "bad_request");
    assert!(
        unknown["message"].as_str().unwrap().contains("mention"),
        "the error names the choices: {unknown}"
    );
    let stored = history(&bob, "mention").await;
    assert_eq!(
        stored["messages"].as_array().unwrap().len(),
        6,
        "the refused message was not stored"
    );
    let details = alice
        .ack("get_conversation", json!({ "conversation_id": "mention" }))
        .await;
    assert_eq!(
        details["answer_policy"], "never",
        "the unknown policy changed nothing"
    );
    assert_eq!(
        details["assistants"],
        json!([{ "name": "echo", "model": null }, { "name": "calc", "model": null }])
    );

    drop((a, b));
    cleanup(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_question_is_replayed_on_resume_and_for_a_late_joiner() {
    let (prefix, backends) = with_assistants("cluster-group-resume");
    let gated = Gated::default();
    let a = start_node(&backends, gated.clone()).await;
    let b = start_node(&backends, gated.clone()).await;
    let mut alice = connect(a.addr, "alice").await;
    alice.join("late").await;
    alice.invite("late", "carol").await;

    let pen = gated.next_answer();
    let asked = send_with(&alice, "late", "tell me a story", None).await;
    let stream_id = asked["stream_id"].as_str().unwrap().to_owned();
    pen.send(LlmEvent::Delta("Once ".into())).unwrap();
    alice.next("stream_chunk").await;

    // Carol joins on node B while the answer runs, and follows it from its start.
    let mut carol = connect(b.addr, "carol").await;
    let joined = carol.join("late").await;
    assert_eq!(joined["active_stream"]["stream_id"], stream_id.as_str());
    let resumed = carol
        .ack(
            "resume_stream",
            json!({ "conversation_id": "late", "stream_id": stream_id, "last_seq": 0 }),
        )
        .await;
    assert_eq!(resumed["status"], "ok", "{resumed}");
    let added = carol.next("message_added").await;
    assert_eq!(added["message"]["content"], "tell me a story");
    assert_eq!(added["message"]["message_id"], asked["message_id"]);
    pen.send(LlmEvent::Delta("upon a time.".into())).unwrap();
    pen.send(done()).unwrap();
    let end = carol.next("stream_end").await;
    assert_eq!(end["full_content"], "Once upon a time.");
    let order = message_events(&mut carol);
    assert_eq!(order.first().map(String::as_str), Some("message_added"));
    assert_eq!(order.last().map(String::as_str), Some("stream_end"));

    // A resume later, from the start, gets it again, first (a client keeps it once).
    let before = carol.all().len();
    carol
        .ack(
            "resume_stream",
            json!({ "conversation_id": "late", "stream_id": stream_id, "last_seq": 0 }),
        )
        .await;
    carol.next("stream_end").await;
    let replayed: Vec<String> = carol.all()[before..]
        .iter()
        .map(|r| r.event.clone())
        .filter(|e| e == "message_added" || e.starts_with("stream_"))
        .collect();
    assert_eq!(replayed.first().map(String::as_str), Some("message_added"));
    assert_eq!(replayed.last().map(String::as_str), Some("stream_end"));

    drop((a, b));
    cleanup(&prefix).await;
}

/// The caller's `unread` of their first listed conversation.
async fn unread(client: &TestClient) -> Value {
    let list = client.ack("list_conversations", json!({})).await;
    list["conversations"][0]["unread"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_marks_count_the_unread_and_tell_the_room() {
    let (prefix, backends) = with_assistants("cluster-group-read");
    let echo = || EchoProvider::new(Duration::ZERO);
    let a = start_node(&backends, echo()).await;
    let b = start_node(&backends, echo()).await;
    let (mut alice, bob, _carol) = three_members(&a, &b, "reads").await;
    set_policy(&alice, "reads", "never").await;
    let mut ids = Vec::new();
    for text in ["one", "two", "three"] {
        let ack = send_with(&alice, "reads", text, None).await;
        ids.push(ack["message_id"].clone());
    }
    assert_eq!(unread(&bob).await, 3);
    let ack = bob
        .ack(
            "mark_read",
            json!({ "conversation_id": "reads", "message_id": ids[1] }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(unread(&bob).await, 1);
    // Alice, on the other node, sees who has read what.
    let read = alice.next("read").await;
    assert_eq!(
        read,
        json!({ "conversation_id": "reads", "user_id": "bob", "message_id": ids[1] })
    );
    // A mark of a message the conversation does not hold.
    let missing = bob
        .ack(
            "mark_read",
            json!({ "conversation_id": "reads", "message_id": "nope" }),
        )
        .await;
    assert_eq!(missing["code"], "not_found", "{missing}");
    assert_eq!(unread(&bob).await, 1);
    // A mark of a message stored before bob's mark keeps it: the ack names the mark kept.
    let older = bob
        .ack(
            "mark_read",
            json!({ "conversation_id": "reads", "message_id": ids[0] }),
        )
        .await;
    assert_eq!(older["message_id"], ids[1], "{older}");
    assert_eq!(unread(&bob).await, 1);

    drop((a, b));
    cleanup(&prefix).await;
}
