//! Tool calls and approvals in the engine: an answer's steps, its parts, approvals decided by
//! members (or expiring), cancel at every point, tools that fail, panic, time out or get
//! arguments that do not fit, and `max_steps`. Against the in-memory store, a scripted
//! provider and a recording sink (`marie_testkit::engine`); nothing sleeps to wait.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use marie_adapters::MemoryStore;
use marie_core::{
    ApprovalId, ChatEngine, ConversationId, EndStatus, EngineConfig, Error, FinishReason,
    MessagePart, MessageRole, RecordingSink, StreamEvent, StreamId, Tool, ToolError, UserId,
    tool_fn,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, conv, streamed, user, within};
use serde_json::{Value, json};

fn calc_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
        "additionalProperties": false
    })
}

/// `calculate`: "12*7" is 84, anything else 0; counts its calls in `calls`.
fn calculate(calls: Arc<AtomicUsize>) -> impl Tool {
    tool_fn(
        "calculate",
        "Arithmetic",
        calc_schema(),
        move |args: Value, ctx| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                assert_eq!(ctx.user_id.as_str(), "alice", "the context names the asker");
                let value = if args["expression"] == "12*7" { 84 } else { 0 };
                Ok(json!({ "value": value }))
            }
        },
    )
}

/// `send_email`: needs approval; counts its calls.
fn send_email(calls: Arc<AtomicUsize>) -> impl Tool {
    tool_fn(
        "send_email",
        "Sends an email",
        json!({"type": "object", "properties": {"to": {"type": "string"}}, "required": ["to"]}),
        move |args: Value, _| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(json!({ "sent_to": args["to"] }))
            }
        },
    )
    .require_approval(true)
}

/// A harness whose engine offers `calculate`, `send_email` and `extra`, and the count of the
/// runs of the first two.
fn harness(
    provider: ScriptedProvider,
    config: EngineConfig,
    extra: Vec<Arc<dyn Tool>>,
) -> (Harness, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let tools = (calculate(calls.clone()), send_email(calls.clone()));
    let h = Harness::builder(provider)
        .config(config)
        .with(move |builder| {
            let mut builder = builder.tool(tools.0).tool(tools.1);
            for tool in extra {
                builder = builder.tool(tool);
            }
            builder
        })
        .build();
    (h, calls)
}

/// Alice creates `room`, lets bob in, and asks `message`.
async fn ask(h: &Harness, room: &ConversationId, message: &str) -> StreamId {
    let alice = user("alice");
    h.engine.join(&alice, room).await.unwrap();
    h.engine
        .invite(&alice, room, &UserId::parse("bob").unwrap())
        .await
        .unwrap();
    h.engine
        .send(&alice, streamed(room, message))
        .await
        .unwrap()
        .stream_id
}

fn names(events: &[StreamEvent]) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = events.iter().map(StreamEvent::name).collect();
    names.dedup();
    names
}

#[tokio::test]
async fn a_two_step_answer_streams_its_parts_in_order_and_keeps_them() {
    let provider = ScriptedProvider::new(["Let me ", "check. "])
        .calls_tool("call_1", "calculate", json!({"expression": "12*7"}))
        .then_step(["It is ", "84."], vec![]);
    let (h, calls) = harness(provider, EngineConfig::default(), vec![]);
    let room = conv("two-step");
    let stream = ask(&h, &room, "what is 12*7?").await;
    let end = h.end(&stream).await;

    assert_eq!(
        names(&h.events(&stream)),
        [
            "stream_start",
            "stream_chunk",
            "tool_call_start",
            "tool_call_delta",
            "tool_call",
            "tool_result",
            "stream_chunk",
            "stream_end"
        ]
    );
    h.assert_numbered_in_order(&stream);
    let results = h.tool_results(&stream);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].output, Some(json!({"value": 84})));
    assert_eq!(results[0].error, None);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let call = MessagePart::ToolCall {
        tool_call_id: "call_1".into(),
        name: "calculate".into(),
        arguments: json!({"expression": "12*7"}),
    };
    let result = MessagePart::ToolResult {
        tool_call_id: "call_1".into(),
        name: "calculate".into(),
        output: Some(json!({"value": 84})),
        error: None,
    };
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.finish_reason, FinishReason::Stop);
    assert_eq!(end.full_content, "Let me check. It is 84.");
    assert_eq!(
        end.parts,
        vec![
            MessagePart::Text {
                content: "Let me check. ".into()
            },
            call.clone(),
            result.clone(),
            MessagePart::Text {
                content: "It is 84.".into()
            },
        ]
    );
    // What the stream said is what history keeps.
    let history = h
        .engine
        .history(&user("bob"), &room, None, None)
        .await
        .unwrap();
    let answer = history.last().unwrap();
    assert_eq!(answer.role, MessageRole::Assistant);
    assert_eq!(answer.message_id, end.message_id);
    assert_eq!(answer.parts, end.parts);
    assert_eq!(answer.content, end.full_content);

    // The model was offered the tools, and its second step carried the call and result.
    let requests = h.provider.requests();
    assert_eq!(requests.len(), 2);
    let offered: Vec<&str> = requests[0].tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(offered, ["calculate", "send_email"]);
    let so_far = requests[1].messages.last().unwrap();
    assert_eq!(so_far.role, MessageRole::Assistant);
    assert_eq!(
        so_far.parts,
        vec![
            MessagePart::Text {
                content: "Let me check. ".into()
            },
            call,
            result
        ]
    );
    // The usage is estimated (the script reports none) and covers both steps: each step's
    // prompt (the second one carries the first one's call and result) and what it said.
    assert!(end.usage.estimated);
    let first_prompt: u64 = requests[0]
        .messages
        .iter()
        .map(|m| marie_core::estimate_tokens(&m.content))
        .sum();
    assert!(
        end.usage.prompt_tokens > 2 * first_prompt,
        "{:?}",
        end.usage
    );
    assert_eq!(
        end.usage.completion_tokens,
        marie_core::estimate_tokens("Let me check. ") + marie_core::estimate_tokens("It is 84.")
    );

    // The next question carries the answer with its calls, as history.
    let next = h
        .engine
        .send(&user("alice"), streamed(&room, "thanks"))
        .await
        .unwrap();
    h.end(&next.stream_id).await;
    let requests = h.provider.requests();
    let carried = &requests[2].messages;
    let previous = &carried[carried.len() - 2];
    assert_eq!(previous.parts, end.parts);
}

#[tokio::test]
async fn a_member_approves_and_the_call_runs_once() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_e", "send_email", json!({"to": "bob"}))
        .then_step(["Sent."], vec![]);
    let (h, calls) = harness(provider, EngineConfig::default(), vec![]);
    let room = conv("approve");
    let stream = ask(&h, &room, "send_email to bob").await;
    let request = h.approval_request(&stream).await;
    assert_eq!(request.name, "send_email");
    assert_eq!(request.arguments, json!({"to": "bob"}));
    assert!(request.expires_at > marie_core::now_millis() + 500_000);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "nothing runs before approval"
    );

    // A member who joins now sees what the answer waits for.
    let joined = h.engine.join(&user("bob"), &room).await.unwrap();
    let active = joined.active_stream.unwrap();
    assert_eq!(active.pending_approval, Some(request.clone()));

    // Someone without access may not decide, nor learn anything.
    let carol = h
        .engine
        .approve(&user("carol"), None, &request.approval_id, true, None)
        .await;
    assert!(matches!(carol, Err(Error::Forbidden(_))), "{carol:?}");
    // An approval of another conversation is not found there.
    let elsewhere = h
        .engine
        .approve(
            &user("bob"),
            Some(&conv("other")),
            &request.approval_id,
            true,
            None,
        )
        .await;
    assert!(
        matches!(elsewhere, Err(Error::NotFound(_))),
        "{elsewhere:?}"
    );

    let decided = h
        .engine
        .approve(&user("bob"), Some(&room), &request.approval_id, true, None)
        .await
        .unwrap();
    assert!(decided.decision.unwrap().approved);
    let again = h
        .engine
        .approve(
            &user("alice"),
            Some(&room),
            &request.approval_id,
            false,
            None,
        )
        .await;
    assert!(matches!(again, Err(Error::Conflict(_))), "{again:?}");

    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.full_content, "Sent.");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(
        names(&h.events(&stream)),
        [
            "stream_start",
            "tool_call_start",
            "tool_call_delta",
            "tool_call",
            "tool_approval_request",
            "tool_approval",
            "tool_result",
            "stream_chunk",
            "stream_end"
        ]
    );
    let approval = h
        .events(&stream)
        .into_iter()
        .find_map(|e| match e {
            StreamEvent::Approval(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert!(approval.approved);
    assert_eq!(approval.decided_by.unwrap().as_str(), "bob");
    assert_eq!(approval.seq, request.seq + 1);
    h.assert_numbered_in_order(&stream);

    // The log holds the request and the decision: a resume from 0 replays them in order.
    let read = h
        .engine
        .read_stream(&user("bob"), Some(&room), &stream, 0, 100)
        .await
        .unwrap();
    let replayed: Vec<&str> = read.events.iter().map(StreamEvent::name).collect();
    assert!(replayed.contains(&"tool_approval_request"));
    assert!(replayed.contains(&"tool_approval"));

    // Once the answer is over, the approval stays decided.
    let late = h
        .engine
        .approve(&user("bob"), Some(&room), &request.approval_id, true, None)
        .await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    let unknown = h
        .engine
        .approve(&user("bob"), Some(&room), &ApprovalId::random(), true, None)
        .await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
}

#[tokio::test]
async fn a_denied_call_does_not_run_and_the_model_is_told() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_e", "send_email", json!({"to": "bob"}))
        .then_step(["I did not send it."], vec![]);
    let (h, calls) = harness(provider, EngineConfig::default(), vec![]);
    let room = conv("deny");
    let stream = ask(&h, &room, "send_email to bob").await;
    let request = h.approval_request(&stream).await;
    h.engine
        .approve(
            &user("bob"),
            Some(&room),
            &request.approval_id,
            false,
            Some("not to him".into()),
        )
        .await
        .unwrap();
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let result = &h.tool_results(&stream)[0];
    assert_eq!(result.output, None);
    assert_eq!(
        result.error.as_deref(),
        Some("not run: bob denied the call: not to him")
    );
    let told = &h.provider.requests()[1];
    let turns = told.messages.last().unwrap().assistant_turns();
    assert!(turns[0].results[0].content.contains("bob denied the call"));
}

#[tokio::test]
async fn an_approval_nobody_decides_expires_as_a_denial() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_e", "send_email", json!({"to": "bob"}))
        .then_step(["Nobody approved."], vec![]);
    let config = EngineConfig::default().approval_timeout(Duration::from_millis(200));
    let (h, calls) = harness(provider, config, vec![]);
    let room = conv("expire");
    let stream = ask(&h, &room, "send_email to bob").await;
    let request = h.approval_request(&stream).await;
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let approval = h
        .events(&stream)
        .into_iter()
        .find_map(|e| match e {
            StreamEvent::Approval(a) => Some(a),
            _ => None,
        })
        .unwrap();
    assert!(!approval.approved);
    assert_eq!(approval.decided_by, None);
    assert_eq!(approval.reason.as_deref(), Some("expired"));
    assert_eq!(
        h.tool_results(&stream)[0].error.as_deref(),
        Some("not run: nobody approved the call in time")
    );
    let late = h
        .engine
        .approve(&user("bob"), Some(&room), &request.approval_id, true, None)
        .await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
}

#[tokio::test]
async fn cancel_while_an_approval_waits_ends_the_answer_and_the_approval() {
    let provider = ScriptedProvider::new(["Sending."])
        .calls_tool("call_e", "send_email", json!({"to": "bob"}))
        .then_step(["never said"], vec![]);
    let (h, calls) = harness(provider, EngineConfig::default(), vec![]);
    let room = conv("cancel-wait");
    let stream = ask(&h, &room, "send_email to bob").await;
    let request = h.approval_request(&stream).await;
    h.engine.cancel(&user("bob"), &room, None).await.unwrap();
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    assert_eq!(end.finish_reason, FinishReason::Cancelled);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The call has a result saying why it has none: the stored answer is whole.
    assert_eq!(
        end.parts.last(),
        Some(&MessagePart::ToolResult {
            tool_call_id: "call_e".into(),
            name: "send_email".into(),
            output: None,
            error: Some("the answer was cancelled before this call finished".into()),
        })
    );
    let late = h
        .engine
        .approve(&user("bob"), Some(&room), &request.approval_id, true, None)
        .await;
    assert!(matches!(late, Err(Error::NotFound(_))), "{late:?}");
    assert_eq!(h.provider.requests().len(), 1);
    h.assert_numbered_in_order(&stream);
}

/// Counts drops of the future of a tool that never finishes.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn cancel_while_a_tool_runs_drops_the_call() {
    let started = Arc::new(tokio::sync::Notify::new());
    let dropped = Arc::new(AtomicUsize::new(0));
    let (s, d) = (started.clone(), dropped.clone());
    let forever: Arc<dyn Tool> = Arc::new(tool_fn(
        "wait_forever",
        "Never finishes",
        json!({"type": "object"}),
        move |_, _| {
            let (started, guard) = (s.clone(), DropCount(d.clone()));
            async move {
                let _guard = guard;
                started.notify_one();
                std::future::pending::<Result<Value, ToolError>>().await
            }
        },
    ));
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_w", "wait_forever", json!({}))
        .then_step(["never said"], vec![]);
    let (h, _) = harness(provider, EngineConfig::default(), vec![forever]);
    let room = conv("cancel-tool");
    let stream = ask(&h, &room, "wait").await;
    within("the tool to start", started.notified()).await;
    h.engine.cancel(&user("alice"), &room, None).await.unwrap();
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the call's future is dropped"
    );
    assert_eq!(
        h.tool_results(&stream)[0].error.as_deref(),
        Some("the answer was cancelled before this call finished")
    );
}

#[tokio::test]
async fn failing_panicking_slow_and_misfed_tools_become_errors_the_model_sees() {
    let panics: Arc<dyn Tool> = Arc::new(tool_fn(
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
    let fails: Arc<dyn Tool> = Arc::new(tool_fn(
        "refuse",
        "Fails",
        json!({"type": "object"}),
        |_, _| async move { Err(ToolError::new("the printer is on fire")) },
    ));
    let slow: Arc<dyn Tool> = Arc::new(tool_fn(
        "slow",
        "Too slow",
        json!({"type": "object"}),
        |_, _| async move {
            std::future::pending::<()>().await;
            Ok(Value::Null)
        },
    ));
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("c1", "explode", json!({}))
        .calls_tool("c2", "refuse", json!({}))
        .calls_tool("c3", "slow", json!({}))
        .calls_tool("c4", "calculate", json!({"expression": 12}))
        .calls_tool("c5", "no_such_tool", json!({}))
        .then_step(["Done."], vec![]);
    let config = EngineConfig::default().tool_timeout(Duration::from_millis(100));
    let (h, calls) = harness(provider, config, vec![panics, fails, slow]);
    let room = conv("faults");
    let stream = ask(&h, &room, "try everything").await;
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete, "the answer goes on");
    assert_eq!(end.full_content, "Done.");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "calculate never ran");

    let mut errors: Vec<(String, String)> = h
        .tool_results(&stream)
        .into_iter()
        .map(|r| (r.tool_call_id, r.error.expect("an error result")))
        .collect();
    errors.sort();
    assert_eq!(
        errors[0],
        ("c1".into(), "the tool failed (it panicked)".into())
    );
    assert_eq!(errors[1], ("c2".into(), "the printer is on fire".into()));
    assert_eq!(
        errors[2],
        ("c3".into(), "the tool did not finish within 100 ms".into())
    );
    assert!(
        errors[3]
            .1
            .starts_with("the arguments do not fit the tool's schema: /expression"),
        "{errors:?}"
    );
    assert_eq!(
        errors[4],
        (
            "c5".into(),
            "there is no tool named \"no_such_tool\"".into()
        )
    );
    // The model saw all five.
    let told = &h.provider.requests()[1];
    assert_eq!(
        told.messages.last().unwrap().assistant_turns()[0]
            .results
            .len(),
        5
    );
    h.assert_numbered_in_order(&stream);
}

#[tokio::test]
async fn an_answer_stops_after_max_steps() {
    let provider = ScriptedProvider::new(["Step. "])
        .calls_tool("c", "calculate", json!({"expression": "1+1"}))
        .then_step(
            ["Again. "],
            vec![("d", "calculate", json!({"expression": "1+1"}))],
        );
    let config = EngineConfig::default().max_steps(3);
    let (h, calls) = harness(provider, config, vec![]);
    let room = conv("steps");
    let stream = ask(&h, &room, "loop").await;
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.finish_reason, FinishReason::MaxSteps);
    assert_eq!(h.provider.requests().len(), 3);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the last step's call is not run"
    );
    let results = h.tool_results(&stream);
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[2].error.as_deref(),
        Some("not run: the answer reached its limit of model steps")
    );
    // Every call has its own id, and its result.
    let ids: Vec<&str> = results.iter().map(|r| r.tool_call_id.as_str()).collect();
    assert_eq!(ids, ["c", "d", "d-2"]);
    assert_eq!(
        serde_json::to_value(&end.finish_reason).unwrap(),
        json!("max_steps")
    );
    h.assert_numbered_in_order(&stream);
}

#[test]
fn a_tool_that_cannot_be_offered_is_refused_at_build() {
    let store = Arc::new(MemoryStore::new());
    let sink = Arc::new(RecordingSink::new());
    let builder = ChatEngine::builder(store, Arc::new(ScriptedProvider::new(["x"])), sink);
    let bad = tool_fn("bad", "", json!({"type": 3}), |a, _| async move { Ok(a) });
    assert!(builder.try_tool(bad).is_err());
}

#[tokio::test]
async fn a_call_when_no_tools_are_offered_is_told_so_and_the_answer_ends() {
    let provider = ScriptedProvider::new(["Let me see. "])
        .calls_tool("c", "calculate", json!({"expression": "1+1"}))
        .then_step(["never asked"], vec![]);
    let h = Harness::builder(provider).build();
    let room = conv("no-tools");
    h.engine.join(&user("alice"), &room).await.unwrap();
    let stream = h
        .engine
        .send(&user("alice"), streamed(&room, "1+1?"))
        .await
        .unwrap()
        .stream_id;
    let end = within(
        "the end",
        h.sink
            .wait_for(|e| e.is_terminal() && e.stream_id() == Some(&stream)),
    )
    .await;
    let StreamEvent::End(end) = end else {
        panic!("{end:?}")
    };
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.finish_reason, FinishReason::ToolCalls);
    assert!(
        h.provider.requests()[0].tools.is_empty(),
        "no tools offered"
    );
    assert_eq!(h.provider.requests().len(), 1);
    assert_eq!(
        end.parts.last(),
        Some(&MessagePart::ToolResult {
            tool_call_id: "c".into(),
            name: "calculate".into(),
            output: None,
            error: Some("there is no tool named \"calculate\"".into()),
        })
    );
}

/// `get_time`, a tool the client runs.
fn get_time() -> marie_core::ToolSpec {
    marie_core::ToolSpec {
        name: "get_time".into(),
        description: "The user's local time".into(),
        parameters: json!({
            "type": "object",
            "properties": {"zone": {"type": "string"}},
            "required": ["zone"]
        }),
    }
}

/// Alice (with bob in the room) asks `message`, offering `get_time` as a client tool.
async fn ask_with_client_tool(h: &Harness, room: &ConversationId, message: &str) -> StreamId {
    let alice = user("alice");
    h.engine.join(&alice, room).await.unwrap();
    h.engine
        .invite(&alice, room, &UserId::parse("bob").unwrap())
        .await
        .unwrap();
    let mut send = streamed(room, message);
    send.client_tools = vec![get_time()];
    h.engine.send(&alice, send).await.unwrap().stream_id
}

#[tokio::test]
async fn a_client_tool_call_waits_for_the_first_result_a_member_submits() {
    // Two calls in one step: the answer still waits for the second when the first is
    // answered twice, so the second result is a `conflict`, whatever the timing.
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_t", "get_time", json!({"zone": "UTC"}))
        .calls_tool("call_u", "get_time", json!({"zone": "CET"}))
        .then_step(["It is noon."], vec![]);
    let (h, calls) = harness(provider.clone(), EngineConfig::default(), vec![]);
    let room = conv("client-tool");
    let stream = ask_with_client_tool(&h, &room, "what is get_time").await;

    // The model was offered the client's tool beside the server's.
    let call = within(
        "tool_call",
        h.sink
            .wait_for(|e| matches!(e, StreamEvent::ToolCall(c) if c.stream_id == stream)),
    )
    .await;
    let StreamEvent::ToolCall(call) = call else {
        unreachable!()
    };
    assert!(call.client, "a client tool's call is marked: {call:?}");
    let offered: Vec<String> = provider.requests()[0]
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert!(offered.contains(&"get_time".to_owned()), "{offered:?}");
    assert!(offered.contains(&"calculate".to_owned()), "{offered:?}");

    // Answered the instant its call is seen: it was recorded before it was sent. Someone
    // without access may not answer, and approve_tool does not reach it.
    let carol = h
        .engine
        .submit_tool_result(&user("carol"), &room, "call_t", Ok(json!("x")))
        .await;
    assert!(matches!(carol, Err(Error::Forbidden(_))), "{carol:?}");
    let unknown = h
        .engine
        .submit_tool_result(&user("bob"), &room, "call_nope", Ok(json!("x")))
        .await;
    assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
    let as_approval = ApprovalId::for_client_call(&stream, "call_t");
    let approved = h
        .engine
        .approve(&user("bob"), Some(&room), &as_approval, true, None)
        .await;
    assert!(matches!(approved, Err(Error::NotFound(_))), "{approved:?}");

    h.engine
        .submit_tool_result(&user("bob"), &room, "call_t", Ok(json!({"time": "12:00"})))
        .await
        .unwrap();
    let second = h
        .engine
        .submit_tool_result(&user("alice"), &room, "call_t", Err("too late".into()))
        .await;
    assert!(matches!(second, Err(Error::Conflict(_))), "{second:?}");
    h.engine
        .submit_tool_result(&user("alice"), &room, "call_u", Err("no clock".into()))
        .await
        .unwrap();

    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.full_content, "It is noon.");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no server tool ran");
    let results = h.tool_results(&stream);
    assert_eq!(results.len(), 2);
    assert_eq!(results[0].output, Some(json!({"time": "12:00"})));
    assert_eq!(results[1].error.as_deref(), Some("no clock"));
    // The model's next step was told the client's output and error.
    let told = &provider.requests()[1].messages;
    let last = told.last().unwrap();
    assert_eq!(last.role, MessageRole::Assistant);
    let results: Vec<(Option<Value>, Option<String>)> = last
        .parts
        .iter()
        .filter_map(|p| match p {
            MessagePart::ToolResult { output, error, .. } => Some((output.clone(), error.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        [
            (Some(json!({"time": "12:00"})), None),
            (None, Some("no clock".to_owned()))
        ],
        "{last:?}"
    );
    h.assert_numbered_in_order(&stream);
}

#[tokio::test]
async fn a_pending_client_call_is_shown_to_joiners_and_expires_as_an_error() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_t", "get_time", json!({"zone": "UTC"}))
        .then_step(["No time."], vec![]);
    let config = EngineConfig::default().approval_timeout(Duration::from_millis(400));
    let (h, _) = harness(provider, config, vec![]);
    let room = conv("client-expiry");
    let stream = ask_with_client_tool(&h, &room, "what is get_time").await;
    // The answer waits on the call: a member who joins sees it, not as an approval.
    let pending = within("pending_tool_call", async {
        loop {
            let joined = h.engine.join(&user("bob"), &room).await.unwrap();
            if let Some(call) = joined.active_stream.and_then(|a| {
                assert_eq!(a.pending_approval, None);
                a.pending_tool_call
            }) {
                return call;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert_eq!(pending.tool_call_id, "call_t");
    assert_eq!(pending.name, "get_time");
    assert_eq!(pending.arguments, json!({"zone": "UTC"}));
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(
        h.tool_results(&stream)[0].error.as_deref(),
        Some("no client answered the call in time")
    );
    let late = h
        .engine
        .submit_tool_result(&user("bob"), &room, "call_t", Ok(json!(1)))
        .await;
    assert!(matches!(late, Err(Error::NotFound(_))), "{late:?}");
}

#[tokio::test]
async fn client_tools_that_cannot_be_offered_are_refused_with_the_send() {
    let (h, _) = harness(
        ScriptedProvider::new(["unused"]),
        EngineConfig::default(),
        vec![],
    );
    let room = conv("client-bad");
    h.engine.join(&user("alice"), &room).await.unwrap();
    let bad = |tools: Vec<marie_core::ToolSpec>| {
        let mut send = streamed(&room, "hi");
        send.client_tools = tools;
        send
    };
    let mut taken = get_time();
    taken.name = "calculate".into();
    let mut invalid = get_time();
    invalid.parameters = json!({"type": 12});
    let mut misnamed = get_time();
    misnamed.name = "get time".into();
    for (tools, says) in [
        (vec![taken], "server tool"),
        (vec![get_time(), get_time()], "two tools"),
        (vec![invalid], "JSON Schema"),
        (vec![misnamed], "invalid tool name"),
        (vec![get_time(); 33], "at most 32"),
    ] {
        match h.engine.send(&user("alice"), bad(tools)).await {
            Err(Error::BadRequest(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("expected bad_request ({says}), got {other:?}"),
        }
    }
    assert!(h.history(&user("alice"), &room).await.is_empty());
}

#[tokio::test]
async fn cancel_while_a_client_call_waits_forgets_it() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_t", "get_time", json!({"zone": "UTC"}))
        .then_step(["never"], vec![]);
    let (h, _) = harness(provider, EngineConfig::default(), vec![]);
    let room = conv("client-cancel");
    let stream = ask_with_client_tool(&h, &room, "what is get_time").await;
    within(
        "pending_tool_call",
        h.sink
            .wait_for(|e| matches!(e, StreamEvent::ToolCall(c) if c.stream_id == stream)),
    )
    .await;
    h.engine
        .cancel(&user("alice"), &room, Some(&stream))
        .await
        .unwrap();
    let end = h.end(&stream).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    let late = h
        .engine
        .submit_tool_result(&user("bob"), &room, "call_t", Ok(json!(1)))
        .await;
    assert!(matches!(late, Err(Error::NotFound(_))), "{late:?}");
}

#[tokio::test]
async fn an_app_without_tools_of_its_own_asks_the_model_again_after_a_client_result() {
    let provider = ScriptedProvider::new(Vec::<String>::new())
        .calls_tool("call_t", "get_time", json!({"zone": "UTC"}))
        .then_step(["It is noon."], vec![]);
    let h = Harness::builder(provider.clone()).build();
    let room = conv("client-only");
    let alice = user("alice");
    h.engine.join(&alice, &room).await.unwrap();
    let mut send = streamed(&room, "what is get_time");
    send.client_tools = vec![get_time()];
    let stream = h.engine.send(&alice, send).await.unwrap().stream_id;
    within(
        "tool_call",
        h.sink
            .wait_for(|e| matches!(e, StreamEvent::ToolCall(c) if c.stream_id == stream)),
    )
    .await;
    h.engine
        .submit_tool_result(&alice, &room, "call_t", Ok(json!({"time": "12:00"})))
        .await
        .unwrap();
    let end = h.end(&stream).await;
    assert_eq!(end.full_content, "It is noon.");
    assert_eq!(end.finish_reason, FinishReason::Stop);
    assert_eq!(provider.requests().len(), 2, "the model was asked again");
}
