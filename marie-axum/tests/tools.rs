//! Tool calls and approvals over Socket.IO, with real clients: an answer in two steps whose
//! parts arrive in order and agree with `stream_end` and the history; an approval decided by
//! another member while the asker is gone; a client that resumes from 0 while the answer
//! waits, approves, and gets the rest once; the HTTP decision route; bad `approve_tool`s.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use marie_axum::MarieConfig;
use marie_core::{Tool, tool_fn};
use marie_llm::ScriptedProvider;
use marie_testkit::server::{TestServer, start_with_tools};
use marie_testkit::socketio::{Received, TestClient, WAIT, connect};
use serde_json::{Value, json};

/// The event names of an answer, as a client sees them.
const ANSWER_EVENTS: &[&str] = &[
    "stream_start",
    "stream_chunk",
    "stream_reasoning",
    "tool_call_start",
    "tool_call_delta",
    "tool_call",
    "tool_approval_request",
    "tool_approval",
    "tool_result",
    "stream_end",
    "stream_error",
];

fn calculate(calls: Arc<AtomicUsize>) -> Arc<dyn Tool> {
    Arc::new(tool_fn(
        "calculate",
        "Arithmetic",
        json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
        move |args: Value, _| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(json!({"expression": args["expression"], "value": 84}))
            }
        },
    ))
}

fn send_email(calls: Arc<AtomicUsize>) -> Arc<dyn Tool> {
    Arc::new(
        tool_fn(
            "send_email",
            "Sends an email",
            json!({"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}),
            move |args: Value, ctx| {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(json!({"to": args["to"], "from": ctx.user_id}))
                }
            },
        )
        .require_approval(true),
    )
}

/// A server offering `calculate` and `send_email` (which needs approval), both counting
/// their runs in the counter returned.
async fn serve(provider: ScriptedProvider) -> (TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let tools = vec![calculate(calls.clone()), send_email(calls.clone())];
    let server = start_with_tools(provider, MarieConfig::default(), tools).await;
    (server, calls)
}

/// Reads every event of one answer up to its terminal event, in arrival order.
async fn answer_events(client: &mut TestClient) -> Vec<Received> {
    let mut events = Vec::new();
    loop {
        let got = client.next_of(ANSWER_EVENTS).await;
        let last = got.event == "stream_end" || got.event == "stream_error";
        events.push(got);
        if last {
            return events;
        }
    }
}

/// The numbered events cover `seq` 1, 2, 3, ... with no gap and no repeat (a merged chunk
/// covers `first_seq..=seq`).
fn assert_numbered(events: &[Received]) {
    let mut held = 0;
    for e in events {
        let Some(last) = e.data["seq"].as_u64() else {
            continue;
        };
        let first = e.data["first_seq"].as_u64().unwrap_or(last);
        assert_eq!(first, held + 1, "{}: {events:#?}", e.event);
        held = last;
    }
}

/// The parts a client rebuilds from the events it got: what `stream_end.parts` must say.
fn parts_from(events: &[Received]) -> Vec<Value> {
    let mut parts: Vec<Value> = Vec::new();
    for e in events {
        let d = &e.data;
        match e.event.as_str() {
            "stream_chunk" => match parts.last_mut() {
                Some(p) if p["type"] == "text" => {
                    let joined = format!("{}{}", p["content"].as_str().unwrap(), d["content"].as_str().unwrap());
                    p["content"] = joined.into();
                }
                _ => parts.push(json!({"type": "text", "content": d["content"]})),
            },
            "tool_call" => parts.push(json!({
                "type": "tool_call", "tool_call_id": d["tool_call_id"], "name": d["name"], "arguments": d["arguments"]
            })),
            "tool_result" => {
                let mut part = json!({"type": "tool_result", "tool_call_id": d["tool_call_id"], "name": d["name"]});
                for key in ["output", "error"] {
                    if !d[key].is_null() {
                        part[key] = d[key].clone();
                    }
                }
                parts.push(part);
            }
            _ => {}
        }
    }
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_step_tool_answer_arrives_in_order_and_is_kept() {
    let provider = ScriptedProvider::new(["Let me ", "compute. "])
        .calls_tool("call_1", "calculate", json!({"expression": "12*7"}))
        .then_step(["12*7 ", "is 84."], vec![]);
    let (server, calls) = serve(provider).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("math").await;
    let sent = alice
        .ack(
            "send_message",
            json!({"conversation_id": "math", "message": "12*7?"}),
        )
        .await;
    assert_eq!(sent["status"], "ok", "{sent}");
    let events = answer_events(&mut alice).await;
    assert_numbered(&events);
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let first_of = |name: &str| names.iter().position(|n| *n == name).unwrap();
    assert!(first_of("tool_call_start") < first_of("tool_call_delta"));
    assert!(first_of("tool_call_delta") < first_of("tool_call"));
    assert!(first_of("tool_call") < first_of("tool_result"));
    let result = &events[first_of("tool_result")].data;
    assert_eq!(result["output"]["value"], 84);
    assert!(result["duration_ms"].is_u64());
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let end = &events.last().unwrap().data;
    assert_eq!(events.last().unwrap().event, "stream_end", "{end}");
    assert_eq!(end["status"], "complete");
    assert_eq!(end["full_content"], "Let me compute. 12*7 is 84.");
    let streamed = parts_from(&events);
    assert_eq!(end["parts"], Value::Array(streamed.clone()), "{end}");
    assert_eq!(streamed.len(), 4);

    let history = alice
        .ack("get_history", json!({"conversation_id": "math"}))
        .await;
    let answer = history["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["parts"], end["parts"]);
    assert_eq!(answer["message_id"], end["message_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_member_approves_while_the_asker_is_gone() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_e", "send_email", json!({"to": "bob"}))
        .then_step(["Sent."], vec![]);
    let (server, calls) = serve(provider).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("team").await;
    alice.invite("team", "bob").await;
    alice
        .ack(
            "send_message",
            json!({"conversation_id": "team", "message": "send_email to bob"}),
        )
        .await;
    let request = alice.next("tool_approval_request").await;
    assert_eq!(request["name"], "send_email");
    assert_eq!(request["arguments"], json!({"to": "bob"}));
    // The asker closes the tab: the answer waits on.
    alice.disconnect().await;

    let mut bob = connect(server.addr, "bob").await;
    let joined = bob.join("team").await;
    let pending = &joined["active_stream"]["pending_approval"];
    assert_eq!(pending, &request, "{joined}");

    // Someone outside the conversation may not decide.
    let carol = connect(server.addr, "carol").await;
    let refused = carol
        .ack(
            "approve_tool",
            json!({"conversation_id": "team", "approval_id": request["approval_id"], "approved": true}),
        )
        .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");

    let decided = bob
        .ack(
            "approve_tool",
            json!({"conversation_id": "team", "approval_id": request["approval_id"], "approved": true}),
        )
        .await;
    assert_eq!(decided["status"], "ok", "{decided}");
    assert_eq!(decided["approved"], true);
    let approval = bob.next("tool_approval").await;
    assert_eq!(approval["approved"], true);
    assert_eq!(approval["decided_by"], "bob");
    let result = bob.next("tool_result").await;
    assert_eq!(result["output"], json!({"to": "bob", "from": "alice"}));
    let end = bob.next("stream_end").await;
    assert_eq!(end["full_content"], "Sent.");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let again = bob
        .ack(
            "approve_tool",
            json!({"conversation_id": "team", "approval_id": request["approval_id"], "approved": false}),
        )
        .await;
    assert_eq!(again["code"], "conflict", "{again}");
    let error = bob.next("error").await;
    assert_eq!(error["event"], "approve_tool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_while_the_answer_waits_resumes_from_zero_and_approves() {
    let provider = ScriptedProvider::new(["I will send it. "])
        .calls_tool("call_e", "send_email", json!({"to": "dana"}))
        .then_step(["Done, ", "sent."], vec![]);
    let (server, calls) = serve(provider).await;
    let mut first = connect(server.addr, "alice").await;
    first.join("mail").await;
    let sent = first
        .ack(
            "send_message",
            json!({"conversation_id": "mail", "message": "send_email to dana"}),
        )
        .await;
    let stream_id = sent["stream_id"].clone();
    first.next("tool_approval_request").await;
    first.disconnect().await;

    let mut back = connect(server.addr, "alice").await;
    let joined = back.join("mail").await;
    assert_eq!(joined["active_stream"]["stream_id"], stream_id);
    let resumed = back
        .ack(
            "resume_stream",
            json!({"conversation_id": "mail", "stream_id": stream_id, "last_seq": 0}),
        )
        .await;
    assert_eq!(resumed["status"], "ok", "{resumed}");
    // The replay brings the request again, in order after the call.
    let mut seen = Vec::new();
    let request = loop {
        let got = back.next_of(ANSWER_EVENTS).await;
        seen.push(got.clone());
        if got.event == "tool_approval_request" {
            break got.data;
        }
    };
    let approved = back
        .ack(
            "approve_tool",
            json!({"conversation_id": "mail", "approval_id": request["approval_id"], "approved": true}),
        )
        .await;
    assert_eq!(approved["status"], "ok", "{approved}");
    seen.extend(answer_events(&mut back).await);
    assert_numbered(&seen);
    let names: Vec<&str> = seen.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.iter().filter(|n| **n == "tool_result").count(), 1);
    assert_eq!(names.last(), Some(&"stream_end"));
    let end = &seen.last().unwrap().data;
    assert_eq!(end["full_content"], "I will send it. Done, sent.");
    assert_eq!(end["parts"], Value::Array(parts_from(&seen)));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_route_decides_and_bad_decisions_get_clear_errors() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_e", "send_email", json!({"to": "erin"}))
        .then_step(["Not sent."], vec![]);
    let (server, calls) = serve(provider).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("http").await;

    // Bad payloads: each a bad_request naming what is wrong, and never a silent drop.
    for (payload, says) in [
        (
            json!({"conversation_id": "http", "approval_id": "x"}),
            "approved",
        ),
        (
            json!({"conversation_id": "http", "approval_id": "a b", "approved": true}),
            "approval_id",
        ),
        (
            json!({"conversation_id": "http", "approval_id": "x", "approved": "yes"}),
            "approved",
        ),
        (
            json!({"conversation_id": "http", "approval_id": "x", "approved": true, "extra": 1}),
            "extra",
        ),
    ] {
        let ack = alice.ack("approve_tool", payload.clone()).await;
        assert_eq!(ack["code"], "bad_request", "{payload}: {ack}");
        assert!(
            ack["message"].as_str().unwrap().contains(says),
            "{payload}: {ack}"
        );
    }
    let unknown = alice
        .ack(
            "approve_tool",
            json!({"conversation_id": "http", "approval_id": "nope", "approved": true}),
        )
        .await;
    assert_eq!(unknown["code"], "not_found", "{unknown}");

    alice
        .ack(
            "send_message",
            json!({"conversation_id": "http", "message": "send_email to erin"}),
        )
        .await;
    let request = alice.next("tool_approval_request").await;
    let url = format!(
        "http://{}/api/chat/approvals/{}",
        server.addr,
        request["approval_id"].as_str().unwrap()
    );
    let http = reqwest::Client::new();
    let nobody = http
        .post(&url)
        .json(&json!({"approved": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 401);
    let outsider = http
        .post(&url)
        .bearer_auth("t-carol")
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(outsider.status(), 403);
    let denied = http
        .post(&url)
        .bearer_auth("t-alice")
        .json(&json!({"approved": false, "reason": "wrong person"}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 200);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "ok", "conversation_id": "http", "approval_id": request["approval_id"], "approved": false}),
        "the ack of approve_tool, as every command's over HTTP"
    );
    let late = http
        .post(&url)
        .bearer_auth("t-alice")
        .json(&json!({"approved": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 409);
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["code"], "conflict");

    let approval = alice.next("tool_approval").await;
    assert_eq!(approval["approved"], false);
    assert_eq!(approval["reason"], "wrong person");
    let result = alice.next("tool_result").await;
    assert_eq!(
        result["error"],
        "not run: alice denied the call: wrong person"
    );
    let end = alice.next("stream_end").await;
    assert_eq!(end["status"], "complete");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// The SSE fallback carries the same tool events, each numbered one with its `id:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sse_stream_carries_the_tool_events() {
    let provider = ScriptedProvider::new(["Computing. "])
        .calls_tool("call_s", "calculate", json!({"expression": "12*7"}))
        .then_step(["84."], vec![]);
    let (server, calls) = serve(provider).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("sse").await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/chat/send", server.addr))
        .bearer_auth("t-alice")
        .json(&json!({"conversation_id": "sse", "message": "12*7?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = tokio::time::timeout(WAIT, response.text())
        .await
        .expect("the SSE response ends with the answer")
        .unwrap();
    let mut events: Vec<(String, Option<u64>, Value)> = Vec::new();
    for block in body.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let mut name = None;
        let mut id = None;
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                name = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.parse().ok();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push_str(v);
            }
        }
        if let Some(name) = name {
            events.push((name, id, serde_json::from_str(&data).unwrap()));
        }
    }
    let names: Vec<&str> = events.iter().map(|(n, _, _)| n.as_str()).collect();
    for expected in [
        "tool_call_start",
        "tool_call_delta",
        "tool_call",
        "tool_result",
        "stream_end",
    ] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    for (name, id, data) in &events {
        assert_eq!(
            id.as_ref(),
            data["seq"].as_u64().as_ref(),
            "{name}: the id is the seq"
        );
    }
    let result = &events
        .iter()
        .find(|(n, _, _)| n == "tool_result")
        .unwrap()
        .2;
    assert_eq!(result["output"]["value"], 84);
    let end = &events.last().unwrap().2;
    assert_eq!(end["full_content"], "Computing. 84.");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// Over a real connection: a tool that panics, arguments that do not fit the schema, a tool
/// that never finishes within its timeout, and a cancel while a tool runs; then a model that
/// never stops calling tools, stopped by `max_steps`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_tools_cancel_and_max_steps_over_socketio() {
    let explode: Arc<dyn Tool> = Arc::new(tool_fn(
        "explode",
        "Panics",
        json!({"type": "object"}),
        |_, _| async move {
            if true {
                panic!("the tool panics as asked");
            }
            Ok(Value::Null)
        },
    ));
    let hang: Arc<dyn Tool> = Arc::new(tool_fn(
        "hang",
        "Never finishes",
        json!({"type": "object"}),
        |_, _| async move { std::future::pending::<Result<Value, marie_core::ToolError>>().await },
    ));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut config = MarieConfig::default();
    config.engine = config
        .engine
        .max_steps(2)
        .tool_timeout(std::time::Duration::from_millis(200));
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("c1", "explode", json!({}))
        .calls_tool("c2", "calculate", json!({"expression": 7}))
        .calls_tool("c3", "hang", json!({}))
        .then_step(
            ["Again. "],
            vec![("d", "calculate", json!({"expression": "1+1"}))],
        );
    let server = start_with_tools(
        provider,
        config,
        vec![calculate(calls.clone()), explode, hang],
    )
    .await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("faults").await;
    alice
        .ack(
            "send_message",
            json!({"conversation_id": "faults", "message": "go"}),
        )
        .await;
    let events = answer_events(&mut alice).await;
    assert_numbered(&events);
    let mut errors: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.event == "tool_result")
        .map(|e| {
            (
                e.data["tool_call_id"].as_str().unwrap().to_owned(),
                e.data["error"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    errors.sort();
    assert_eq!(
        errors[0],
        ("c1".into(), "the tool failed (it panicked)".into())
    );
    assert!(
        errors[1].1.starts_with("the arguments do not fit"),
        "{errors:?}"
    );
    assert_eq!(
        errors[2],
        ("c3".into(), "the tool did not finish within 200 ms".into())
    );
    assert_eq!(
        errors[3],
        (
            "d".into(),
            "not run: the answer reached its limit of model steps".into()
        )
    );
    let end = &events.last().unwrap().data;
    assert_eq!(end["status"], "complete");
    assert_eq!(end["finish_reason"], "max_steps");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The connection is as good as before.
    let history = alice
        .ack("get_history", json!({"conversation_id": "faults"}))
        .await;
    assert_eq!(history["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_while_a_tool_runs_over_socketio() {
    let started = Arc::new(tokio::sync::Notify::new());
    let s = started.clone();
    let hang: Arc<dyn Tool> = Arc::new(tool_fn(
        "hang",
        "Never finishes",
        json!({"type": "object"}),
        move |_, _| {
            let started = s.clone();
            async move {
                started.notify_one();
                std::future::pending::<Result<Value, marie_core::ToolError>>().await
            }
        },
    ));
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("c", "hang", json!({}))
        .then_step(["never"], vec![]);
    let server = start_with_tools(provider, MarieConfig::default(), vec![hang]).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("stuck").await;
    alice
        .ack(
            "send_message",
            json!({"conversation_id": "stuck", "message": "hang"}),
        )
        .await;
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("the tool starts");
    let cancelled = alice
        .ack("cancel_stream", json!({"conversation_id": "stuck"}))
        .await;
    assert_eq!(cancelled["status"], "ok", "{cancelled}");
    let events = answer_events(&mut alice).await;
    assert_numbered(&events);
    let end = &events.last().unwrap().data;
    assert_eq!(end["status"], "cancelled");
    let result = events.iter().find(|e| e.event == "tool_result").unwrap();
    assert_eq!(
        result.data["error"],
        "the answer was cancelled before this call finished"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_tool_is_answered_by_a_member_over_socketio_first_result_wins() {
    // Two calls in one step: the answer still waits for the second when the first is
    // answered twice, so the second result is a `conflict`, whatever the timing.
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_t", "get_time", json!({"zone": "UTC"}))
        .calls_tool("call_u", "get_time", json!({"zone": "CET"}))
        .then_step(["It is noon."], vec![]);
    let (server, calls) = serve(provider).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("clock").await;
    alice.invite("clock", "bob").await;
    let get_time = json!({
        "name": "get_time",
        "description": "The user's local time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}
    });
    // A client tool may not take a server tool's name.
    let mut taken = get_time.clone();
    taken["name"] = json!("calculate");
    let refused = alice
        .ack(
            "send_message",
            json!({"conversation_id": "clock", "message": "hi", "client_tools": [taken]}),
        )
        .await;
    assert_eq!(refused["code"], "bad_request", "{refused}");
    alice.next("error").await;

    let sent = alice
        .ack(
            "send_message",
            json!({"conversation_id": "clock", "message": "what time", "client_tools": [get_time]}),
        )
        .await;
    assert_eq!(sent["status"], "ok", "{sent}");
    let call = alice.next("tool_call").await;
    assert_eq!(call["client"], true, "{call}");
    assert_eq!(call["name"], "get_time");
    // Answered the moment the call is seen.
    let mut bob = connect(server.addr, "bob").await;
    let joined = bob.join("clock").await;
    let pending = &joined["active_stream"]["pending_tool_call"];
    assert_eq!(pending["tool_call_id"], "call_t", "{joined}");
    assert!(joined["active_stream"].get("pending_approval").is_none());
    let both = bob
        .ack(
            "submit_tool_result",
            json!({"conversation_id": "clock", "tool_call_id": "call_t", "output": 1, "error": "x"}),
        )
        .await;
    assert_eq!(both["code"], "bad_request", "{both}");
    bob.next("error").await;
    let taken = alice
        .ack(
            "submit_tool_result",
            json!({"conversation_id": "clock", "tool_call_id": "call_t", "output": {"time": "12:00"}}),
        )
        .await;
    assert_eq!(taken["status"], "ok", "{taken}");
    assert_eq!(taken["tool_call_id"], "call_t");
    let late = bob
        .ack(
            "submit_tool_result",
            json!({"conversation_id": "clock", "tool_call_id": "call_t", "error": "no clock"}),
        )
        .await;
    assert_eq!(late["code"], "conflict", "{late}");
    bob.next("error").await;
    let result = bob.next("tool_result").await;
    assert_eq!(result["output"], json!({"time": "12:00"}));
    // A tool that returns nothing: `output: null` is an output.
    let nothing = bob
        .ack(
            "submit_tool_result",
            json!({"conversation_id": "clock", "tool_call_id": "call_u", "output": null}),
        )
        .await;
    assert_eq!(nothing["status"], "ok", "{nothing}");
    let result = bob.next("tool_result").await;
    assert_eq!(result["tool_call_id"], "call_u");
    assert_eq!(result.get("output"), Some(&Value::Null), "{result}");
    assert!(result.get("error").is_none(), "{result}");
    let end = bob.next("stream_end").await;
    assert_eq!(end["full_content"], "It is noon.");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no server tool ran");
}

/// The UI message chunks of an AI SDK response (`data: {json}` lines, `[DONE]` last).
async fn ui_chunks(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_client_calls_in_one_step_reach_a_use_chat_client_one_response_at_a_time() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("c1", "get_time", json!({"zone": "UTC"}))
        .calls_tool("c2", "get_time", json!({"zone": "CET"}))
        .then_step(["Both known."], vec![]);
    let (server, _) = serve(provider).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/ai-sdk/chat", server.addr);
    let post = |body: Value| http.post(&url).bearer_auth("t-alice").json(&body).send();
    let question =
        json!({"id": "u1", "role": "user", "parts": [{"type": "text", "text": "what time"}]});
    let get_time = json!({"name": "get_time", "parameters": {"type": "object"}});
    let types = |chunks: &[Value]| -> Vec<String> {
        chunks
            .iter()
            .map(|c| c["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let calls_of = |chunks: &[Value], kind: &str| -> Vec<String> {
        chunks
            .iter()
            .filter(|c| c["type"] == kind)
            .map(|c| c["toolCallId"].as_str().unwrap().to_owned())
            .collect()
    };

    // The first response ends at the first call, which the client must answer.
    let first = ui_chunks(
        post(
            json!({"id": "multi", "messages": [question], "trigger": "submit-message",
                    "client_tools": [get_time]}),
        )
        .await
        .unwrap(),
    )
    .await;
    let message_id = first[0]["messageId"].as_str().unwrap().to_owned();
    assert_eq!(
        calls_of(&first, "tool-input-available"),
        ["c1"],
        "{:?}",
        types(&first)
    );
    assert_eq!(first.last().unwrap()["finishReason"], "tool-calls");

    // Answered: the second call of the same step comes (not the first again), and ends the
    // response in its turn.
    let answered = |calls: &[(&str, Value)]| {
        let mut parts = vec![json!({"type": "step-start"})];
        for (id, output) in calls {
            parts.push(
                json!({"type": "tool-get_time", "toolCallId": id, "state": "output-available",
                              "input": {}, "output": output}),
            );
        }
        json!({"id": "multi", "trigger": "submit-message", "messageId": message_id,
               "messages": [question, {"id": message_id, "role": "assistant", "parts": parts}]})
    };
    let second = ui_chunks(post(answered(&[("c1", json!("12:00"))])).await.unwrap()).await;
    assert_eq!(second[0]["messageId"], message_id.as_str());
    assert_eq!(
        calls_of(&second, "tool-input-start"),
        ["c2"],
        "{:?}",
        types(&second)
    );
    assert_eq!(second.last().unwrap()["finishReason"], "tool-calls");

    // Both answered: the results, then the next step, to the end.
    let third = ui_chunks(
        post(answered(&[("c1", json!("12:00")), ("c2", json!("13:00"))]))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        calls_of(&third, "tool-output-available"),
        ["c1", "c2"],
        "{:?}",
        types(&third)
    );
    assert!(calls_of(&third, "tool-input-start").is_empty());
    let text: String = third
        .iter()
        .filter(|c| c["type"] == "text-delta")
        .map(|c| c["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "Both known.");
    assert_eq!(third.last().unwrap()["finishReason"], "stop");

    // Continuing a message that is not the running answer's is a conflict.
    let stale = post(answered(&[("c1", json!("12:00"))])).await.unwrap();
    assert!(
        matches!(stale.status().as_u16(), 404 | 409),
        "{}",
        stale.status()
    );
}
