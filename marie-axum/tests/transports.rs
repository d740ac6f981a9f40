//! Every client command over both transports, Socket.IO and `POST /api/chat/events/{event}`,
//! with the same outcome (`docs/protocol.md` section 5): the same ack once the ids the
//! server makes are set aside, the same error codes, the same checks (the message rate
//! limit answers 429 over HTTP as `rate_limited` over Socket.IO).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use marie_axum::{Limits, MarieConfig, Rate};
use marie_llm::EchoProvider;
use marie_testkit::server::start_with;
use marie_testkit::socketio::{TestClient, connect};
use serde_json::{Map, Value, json};

/// One command of a transport-independent script: the event, its payload (`{c}` names the
/// transport's conversation, `{m}` the message id of the step named, `{s}` its stream).
struct Step {
    event: &'static str,
    payload: Value,
    /// The user who sends it.
    user: &'static str,
    /// Waits for the answer it starts to end before the next step.
    answers: bool,
}

fn step(event: &'static str, payload: Value) -> Step {
    Step {
        event,
        payload,
        user: "alice",
        answers: false,
    }
}

fn answering(event: &'static str, payload: Value) -> Step {
    Step {
        answers: true,
        ..step(event, payload)
    }
}

/// Every command of the table, in an order that gives each something to act on.
fn script() -> Vec<Step> {
    vec![
        step("join_conversation", json!({"conversation_id": "{c}"})),
        step(
            "invite",
            json!({"conversation_id": "{c}", "user_id": "bob"}),
        ),
        step("typing", json!({"conversation_id": "{c}", "typing": true})),
        answering(
            "send_message",
            json!({"conversation_id": "{c}", "message": "hello there"}),
        ),
        answering(
            "send_message",
            json!({"conversation_id": "{c}", "message": "again", "client_message_id": "k1"}),
        ),
        // A repeat: the first outcome, `duplicate:true`, nothing started.
        step(
            "send_message",
            json!({"conversation_id": "{c}", "message": "again", "client_message_id": "k1"}),
        ),
        answering(
            "send_message_with_ack",
            json!({"conversation_id": "{c}", "message": "seed style"}),
        ),
        step("get_history", json!({"conversation_id": "{c}", "limit": 3})),
        step(
            "resume_stream",
            json!({"conversation_id": "{c}", "stream_id": "{s}", "last_seq": 0}),
        ),
        answering(
            "edit_message",
            json!({"conversation_id": "{c}", "message_id": "{m}", "message": "hello, edited"}),
        ),
        answering("regenerate", json!({"conversation_id": "{c}"})),
        step(
            "switch_branch",
            json!({"conversation_id": "{c}", "message_id": "{m}"}),
        ),
        step("get_usage", json!({})),
        step(
            "mark_read",
            json!({"conversation_id": "{c}", "message_id": "{m}"}),
        ),
        step(
            "mark_read",
            json!({"conversation_id": "{c}", "message_id": "not-a-message"}),
        ),
        step(
            "update_conversation",
            json!({"conversation_id": "{c}", "title": "Renamed"}),
        ),
        step(
            "update_conversation",
            json!({"conversation_id": "{c}", "answer_policy": "mention"}),
        ),
        // Not answered under `mention`: stored and told, no stream.
        step(
            "send_message",
            json!({"conversation_id": "{c}", "message": "just talking"}),
        ),
        step(
            "update_conversation",
            json!({"conversation_id": "{c}", "answer_policy": "sometimes"}),
        ),
        step(
            "update_conversation",
            json!({"conversation_id": "{c}", "model": "not-offered"}),
        ),
        step("list_conversations", json!({"limit": 1})),
        step("list_conversations", json!({"before": "not-a-cursor"})),
        step("get_conversation", json!({"conversation_id": "{c}"})),
        step("export_conversation", json!({"conversation_id": "{c}"})),
        Step {
            user: "carol",
            ..step("export_conversation", json!({"conversation_id": "{c}"}))
        },
        step(
            "archive_conversation",
            json!({"conversation_id": "{c}", "archived": true}),
        ),
        step("list_conversations", json!({"archived": true})),
        step(
            "archive_conversation",
            json!({"conversation_id": "{c}", "archived": false}),
        ),
        step("cancel_stream", json!({"conversation_id": "{c}"})),
        step(
            "approve_tool",
            json!({"conversation_id": "{c}", "approval_id": "nope", "approved": true}),
        ),
        step(
            "submit_tool_result",
            json!({"conversation_id": "{c}", "tool_call_id": "nope", "output": 1}),
        ),
        step(
            "submit_tool_result",
            json!({"conversation_id": "{c}", "tool_call_id": "nope"}),
        ),
        step("system_announcement", json!({"message": "hi all"})),
        Step {
            user: "admin",
            ..step("system_announcement", json!({"message": "hi all"}))
        },
        Step {
            user: "carol",
            ..step("get_history", json!({"conversation_id": "{c}"}))
        },
        step(
            "remove_member",
            json!({"conversation_id": "{c}", "user_id": "alice"}),
        ),
        step(
            "remove_member",
            json!({"conversation_id": "{c}", "user_id": "bob"}),
        ),
        step("unknown_event", json!({})),
        step("join_conversation", json!({"conversation_id": 7})),
        step("typing", json!({"conversation_id": "{c}", "typing": false})),
        Step {
            user: "carol",
            ..step("delete_conversation", json!({"conversation_id": "{c}"}))
        },
        step("delete_conversation", json!({"conversation_id": "{c}"})),
        step("get_conversation", json!({"conversation_id": "{c}"})),
        step("leave_conversation", json!({"conversation_id": "{c}"})),
    ]
}

/// Ids the server makes, and times, differ between runs: they are replaced by what they
/// are. The transport's conversation becomes `{c}`.
fn normalize(value: &Value, conversation: &str) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "message_id" | "stream_id" | "leaf_id" | "parent_id" | "session"
                        | "active_leaf" => {
                            if v.is_string() {
                                json!("<id>")
                            } else {
                                v.clone()
                            }
                        }
                        "siblings" => json!("<ids>"),
                        "created_at" | "resets_at" | "updated_at" | "exported_at"
                            if !v.is_null() =>
                        {
                            json!("<time>")
                        }
                        _ => normalize(v, conversation),
                    };
                    (k.clone(), v)
                })
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| normalize(v, conversation)).collect())
        }
        Value::String(s) if s == conversation => json!("{c}"),
        other => other.clone(),
    }
}

/// `{c}`, `{m}`, `{s}` in `payload`.
fn fill(payload: &Value, conversation: &str, message: &str, stream: &str) -> Value {
    match payload {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), fill(v, conversation, message, stream)))
                .collect(),
        ),
        Value::String(s) => Value::String(match s.as_str() {
            "{c}" => conversation.to_owned(),
            "{m}" => message.to_owned(),
            "{s}" => stream.to_owned(),
            other => other.to_owned(),
        }),
        other => other.clone(),
    }
}

/// How a transport sends one command and reads its outcome: `(HTTP status or 0, body)`,
/// the body the ack (Socket.IO) or the JSON response (HTTP), errors as `{code, message}`.
enum Transport {
    Socket(Vec<(&'static str, TestClient)>),
    Http(reqwest::Client, SocketAddr),
}

impl Transport {
    async fn send(&mut self, user: &str, event: &str, payload: Value) -> Value {
        match self {
            Transport::Socket(clients) => {
                let client = &clients.iter().find(|(u, _)| *u == user).unwrap().1;
                let ack = client.ack(event, payload).await;
                // An error ack carries `status:"error"`; HTTP says it with the status.
                match ack.get("status").and_then(Value::as_str) {
                    Some("error") => json!({"code": ack["code"], "message": ack["message"]}),
                    _ => ack,
                }
            }
            Transport::Http(http, addr) => {
                let response = http
                    .post(format!("http://{addr}/api/chat/events/{event}"))
                    .bearer_auth(format!("t-{user}"))
                    .json(&payload)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                if !status.is_success() {
                    assert!(body.get("code").is_some(), "{status}: {body}");
                }
                body
            }
        }
    }
}

/// Runs the script on `transport` in `conversation`; an observer socket in the room tells
/// when each answer has ended. Returns each step's normalized outcome.
async fn run(
    transport: &mut Transport,
    observer: &mut TestClient,
    conversation: &str,
) -> Vec<Value> {
    let mut outcomes = Vec::new();
    let (mut message, mut stream) = (String::new(), String::new());
    for (i, step) in script().into_iter().enumerate() {
        let payload = fill(&step.payload, conversation, &message, &stream);
        let outcome = transport.send(step.user, step.event, payload).await;
        if i == 1 {
            // Bob, invited, follows the answers from now on.
            observer.join(conversation).await;
        }
        if step.answers {
            let started = outcome["stream_id"].as_str().map(str::to_owned);
            if let Some(id) = outcome["message_id"].as_str()
                && step.event == "send_message"
                && message.is_empty()
            {
                message = id.to_owned();
            }
            let end = observer.next_of(&["stream_end", "message_response"]).await;
            if let Some(started) = started {
                assert_eq!(end.data["stream_id"], started.as_str(), "{}", end.data);
                stream = started;
            }
        }
        outcomes.push(normalize(&outcome, conversation));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_has_the_same_outcome_over_socketio_and_http() {
    let mut config = MarieConfig::default();
    config.limits = Limits::unlimited();
    let server = start_with(EchoProvider::new(Duration::ZERO), config).await;
    let mut observer = connect(server.addr, "bob").await;

    let mut sockets = Vec::new();
    for user in ["alice", "admin", "carol"] {
        sockets.push((user, connect(server.addr, user).await));
    }
    let mut over_socket = Transport::Socket(sockets);
    let socket = run(&mut over_socket, &mut observer, "via-socket").await;

    let mut over_http = Transport::Http(reqwest::Client::new(), server.addr);
    let http = run(&mut over_http, &mut observer, "via-http").await;

    for ((step, a), b) in script().iter().zip(&socket).zip(&http) {
        assert_eq!(a, b, "`{}` differs: Socket.IO {a} / HTTP {b}", step.event);
    }
    // The script covers every command of the table, successes and refusals.
    let events: Vec<_> = script().iter().map(|s| s.event).collect();
    for name in marie_axum_events() {
        assert!(events.contains(&name), "`{name}` is not in the script");
    }
    let codes: Vec<_> = socket.iter().filter_map(|o| o["code"].as_str()).collect();
    for code in ["forbidden", "not_found", "bad_request"] {
        assert!(codes.contains(&code), "no `{code}` among {codes:?}");
    }
}

/// The client events of `docs/protocol.md` section 2.
fn marie_axum_events() -> Vec<&'static str> {
    let docs = include_str!("../../docs/protocol.md");
    let section = docs
        .split("## 2. Client → server events")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .collect()
}

/// `Limits::messages` holds over HTTP as over Socket.IO: the eleventh answer asked within
/// the burst is refused, `429 rate_limited` on both HTTP routes that start one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_sends_over_http_gets_429_like_over_socketio() {
    let mut config = MarieConfig::default();
    config.limits.messages = Rate::per_minute(30, 10);
    config.limits.events = Rate::per_second(0, 0);
    let server = start_with(EchoProvider::new(Duration::ZERO), config).await;
    let http = reqwest::Client::new();
    let addr = server.addr;
    let post = |path: String, user: &'static str, body: Value| {
        let http = http.clone();
        async move {
            let response = http
                .post(format!("http://{addr}{path}"))
                .bearer_auth(format!("t-{user}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };

    // Bob over HTTP, one conversation per send so that none is `busy`.
    let mut statuses = Vec::new();
    for i in 0..14 {
        let conversation = format!("flood-{i}");
        let joined = post(
            "/api/chat/events/join_conversation".into(),
            "bob",
            json!({"conversation_id": conversation}),
        )
        .await;
        assert_eq!(joined.0, 200, "{}", joined.1);
        let route = if i % 2 == 0 {
            "/api/chat/events/send_message".to_owned()
        } else {
            "/api/chat/send".to_owned()
        };
        let (status, body) = post(
            route,
            "bob",
            json!({"conversation_id": conversation, "message": "hi"}),
        )
        .await;
        if status == 429 {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["code"], "rate_limited", "{body}");
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        10,
        "the burst is 10: {statuses:?}"
    );
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");

    // Alice over Socket.IO: the same limit, the same code.
    let alice = connect(server.addr, "alice").await;
    let mut codes = Vec::new();
    for i in 0..12 {
        let conversation = format!("flood-ws-{i}");
        alice
            .ack(
                "join_conversation",
                json!({"conversation_id": conversation}),
            )
            .await;
        let ack = alice
            .ack(
                "send_message",
                json!({"conversation_id": conversation, "message": "hi"}),
            )
            .await;
        codes.push(ack["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(codes.iter().filter(|c| *c == "ok").count(), 10, "{codes:?}");
    assert_eq!(codes[10..], ["rate_limited", "rate_limited"]);
}
