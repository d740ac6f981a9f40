//! `AnthropicProvider` against a local server that sends what Anthropic's Messages API
//! sends (`event:` and `data:` lines, byte for byte and paced), faults included. Each test
//! asserts the room events a client receives (through the engine and a recording sink) and
//! the exact requests the server got.

#![cfg(feature = "anthropic")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use marie_core::{EngineConfig, FinishReason, MessagePart, StreamEvent, Usage};
use marie_llm::{AnthropicBuilder, AnthropicProvider, RetryPolicy};
use serde_json::json;
use support::authors::ask_with_authors;
use support::direct::drop_latency;
use support::engine::{
    Chat, assert_asked_again, assert_failed_without_retry, calculate, chat, resets, retrying_chat,
};
use support::fake::{
    FakeServer, Reply, Step, anthropic_answer, anthropic_block_stop, anthropic_error,
    anthropic_message_delta, anthropic_message_start, anthropic_message_stop, anthropic_ping,
    anthropic_redacted_thinking_start, anthropic_signature, anthropic_status, anthropic_text,
    anthropic_text_block, anthropic_text_start, anthropic_thinking, anthropic_thinking_start,
    anthropic_tool_args, anthropic_tool_start,
};
use support::files::{PDF_BASE64, PNG_BASE64, ask_with_files};
use support::ms;

const KEY: &str = "sk-ant-api03-test-7f3a9c2e5b1d4f6a8c0e2b4d6f8a0c2e";
const PACE: Duration = Duration::from_millis(10);
const SIGNATURE: &str = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds1ZA5B0nMR6sL8Ae";

/// Fast retries; timeouts long enough never to fire unless a test wants them to.
fn provider(server: &FakeServer) -> AnthropicBuilder {
    AnthropicProvider::builder()
        .base_url(server.anthropic_base())
        .api_key(KEY)
        .model("claude-sonnet-4-5")
        .max_tokens(1024)
        .retry(RetryPolicy::default().backoff(ms(20), ms(40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_a_text_answer_with_the_usage_anthropic_reports() {
    let server = FakeServer::start([anthropic_answer(
        &["Hello", ",", " wörld", " ✓", "!"],
        PACE,
        (12, 5),
    )])
    .await;
    let config = EngineConfig::default()
        .system_prompt("You are terse.")
        .mid_stream_retries(0);
    let chat = Chat::new(provider(&server).temperature(0.2).build().unwrap(), config).await;

    let answer = chat.ask("Say hello").await;

    assert_eq!(answer.pieces(), ["Hello", ",", " wörld", " ✓", "!"]);
    let end = answer.complete();
    assert_eq!(end.full_content, "Hello, wörld ✓!");
    assert_eq!(end.usage, Usage::reported(12, 5));
    assert_eq!(end.finish_reason, FinishReason::Stop);
    assert!(end.parts.is_empty(), "a text-only answer keeps no parts");

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.headers["x-api-key"], KEY);
    assert_eq!(request.headers["anthropic-version"], "2023-06-01");
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["accept"], "text/event-stream");
    assert!(request.headers.get("authorization").is_none());
    assert_eq!(
        request.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": true,
            "temperature": 0.2
        })
    );
}

/// Extended thinking streams as `stream_reasoning` before the text; the block's signature is
/// kept with the reasoning part of the stored answer, and the next request sends the answer
/// back with its `thinking` block and signature, first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_streams_as_reasoning_and_its_signature_goes_back_in_history() {
    let thinking = vec![
        anthropic_message_start(30),
        anthropic_thinking_start(0),
        anthropic_thinking(0, "The user greets me."),
        Step::Wait(PACE),
        anthropic_thinking(0, " Greet back."),
        anthropic_signature(0, SIGNATURE),
        anthropic_block_stop(0),
        anthropic_ping(),
        anthropic_text_start(1),
        anthropic_text(1, "Hi"),
        Step::Wait(PACE),
        anthropic_text(1, "!"),
        anthropic_block_stop(1),
        anthropic_message_delta("end_turn", 42),
        anthropic_message_stop(),
    ];
    let server = FakeServer::start([
        Reply::ok("text/event-stream; charset=utf-8", thinking),
        anthropic_answer(&["Fine", "."], PACE, (80, 2)),
    ])
    .await;
    let chat = chat(provider(&server).max_tokens(4096).thinking(2048)).await;

    let answer = chat.ask("hello").await;
    let reasoning: Vec<&str> = answer
        .reasoning
        .iter()
        .map(|r| r.content.as_str())
        .collect();
    assert_eq!(reasoning, ["The user greets me.", " Greet back."]);
    assert_eq!(answer.reasoning[0].seq, 1);
    assert_eq!(
        answer.chunks[0].seq, 3,
        "one sequence for reasoning and text"
    );
    let end = answer.complete();
    assert_eq!(end.full_content, "Hi!");
    assert_eq!(end.usage, Usage::reported(30, 42));
    assert_eq!(
        end.parts,
        vec![
            MessagePart::Reasoning {
                content: "The user greets me. Greet back.".into(),
                signature: Some(SIGNATURE.into()),
            },
            MessagePart::Text {
                content: "Hi!".into()
            },
        ]
    );
    // The signature is the provider's, for the provider: no streamed event carries it.
    let streamed = serde_json::to_string(
        &answer
            .events
            .iter()
            .filter(|e| !matches!(e, StreamEvent::End(_)))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!streamed.contains(SIGNATURE), "{streamed}");

    chat.ask("how are you?").await.complete();
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(
        requests[1].body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "The user greets me. Greet back.", "signature": SIGNATURE},
                    {"type": "text", "text": "Hi!"}
                ]},
                {"role": "user", "content": "how are you?"}
            ],
            "stream": true,
            "thinking": {"type": "enabled", "budget_tokens": 2048}
        })
    );
}

/// A step that thinks, says something, and calls two tools (their input JSON streamed in
/// pieces that split keys and strings); the engine runs them and asks again with the
/// answer so far in Anthropic's format: the signed thinking first, `tool_use` blocks, then
/// a user message of `tool_result` blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_use_round_trip_through_the_engine() {
    let first = vec![
        anthropic_message_start(120),
        anthropic_thinking_start(0),
        anthropic_thinking(0, "Two sums."),
        anthropic_signature(0, SIGNATURE),
        anthropic_block_stop(0),
        anthropic_text_start(1),
        anthropic_text(1, "Let me compute."),
        anthropic_block_stop(1),
        anthropic_tool_start(2, "toolu_01A09q90qw90lq917835lq9", "calculate"),
        anthropic_tool_args(2, ""),
        Step::Wait(PACE),
        anthropic_tool_args(2, "{\"expr"),
        anthropic_tool_args(2, "ession\": \"12"),
        anthropic_tool_args(2, "*7\"}"),
        anthropic_block_stop(2),
        anthropic_tool_start(3, "toolu_01B19r91rx91mr928946mr0", "calculate"),
        anthropic_tool_args(3, "{\"expression\": \"2+2\"}"),
        anthropic_block_stop(3),
        anthropic_message_delta("tool_use", 60),
        anthropic_message_stop(),
    ];
    let server = FakeServer::start([
        Reply::ok("text/event-stream; charset=utf-8", first),
        anthropic_answer(&["84", " and ", "4."], PACE, (200, 5)),
    ])
    .await;
    let chat = Chat::with_tools(
        provider(&server).build().unwrap(),
        EngineConfig::default(),
        vec![calculate()],
    )
    .await;
    let answer = chat.ask("12*7 and 2+2?").await;
    let end = answer.complete();
    assert_eq!(end.full_content, "Let me compute.84 and 4.");
    assert_eq!(
        end.usage,
        Usage::reported(320, 65),
        "summed over both steps"
    );
    assert_eq!(end.finish_reason, FinishReason::Stop);

    let calls = answer.tool_calls();
    assert_eq!(
        calls,
        [
            (
                "toolu_01A09q90qw90lq917835lq9".to_owned(),
                json!({"expression": "12*7"})
            ),
            (
                "toolu_01B19r91rx91mr928946mr0".to_owned(),
                json!({"expression": "2+2"})
            )
        ]
    );
    let deltas: String = answer
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta(d) if d.tool_call_id == "toolu_01A09q90qw90lq917835lq9" => {
                Some(d.delta.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "{\"expression\": \"12*7\"}");
    assert!(matches!(
        &end.parts[0],
        MessagePart::Reasoning { signature: Some(s), .. } if s == SIGNATURE
    ));

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "12*7 and 2+2?"}],
            "stream": true,
            "tools": [{
                "name": "calculate",
                "description": "Evaluates an arithmetic expression",
                "input_schema": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}
            }]
        })
    );
    let mut second = requests[1].body.clone();
    // The results are in the order the calls finished: compare them sorted.
    if let Some(results) = second["messages"][2]["content"].as_array_mut() {
        results.sort_by_key(|r| r["tool_use_id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        second["messages"],
        json!([
            {"role": "user", "content": "12*7 and 2+2?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Two sums.", "signature": SIGNATURE},
                {"type": "text", "text": "Let me compute."},
                {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "calculate", "input": {"expression": "12*7"}},
                {"type": "tool_use", "id": "toolu_01B19r91rx91mr928946mr0", "name": "calculate", "input": {"expression": "2+2"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01A09q90qw90lq917835lq9", "content": "84"},
                {"type": "tool_result", "tool_use_id": "toolu_01B19r91rx91mr928946mr0", "content": "4"}
            ]}
        ])
    );
    assert_eq!(second["tools"], requests[0].body["tools"]);
}

/// A step that thinks (signed), thinks redacted (an encrypted `redacted_thinking` block,
/// whole at its start) and calls a tool: clients read only the readable reasoning, the
/// answer's parts keep the redacted block in its place, and the request after the tool ran
/// sends back thinking, redacted thinking and `tool_use` in that order, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_thinking_is_kept_and_goes_back_in_its_place() {
    const REDACTED: &str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB8URj2pLmz3pEvmeQ==";
    let first = vec![
        anthropic_message_start(150),
        anthropic_thinking_start(0),
        anthropic_thinking(0, "Compute it."),
        anthropic_signature(0, SIGNATURE),
        anthropic_block_stop(0),
        anthropic_redacted_thinking_start(1, REDACTED),
        Step::Wait(PACE),
        anthropic_block_stop(1),
        anthropic_tool_start(2, "toolu_01C29s92sy92ns039057ns1", "calculate"),
        anthropic_tool_args(2, "{\"expression\": \"6*7\"}"),
        anthropic_block_stop(2),
        anthropic_message_delta("tool_use", 70),
        anthropic_message_stop(),
    ];
    let server = FakeServer::start([
        Reply::ok("text/event-stream; charset=utf-8", first),
        anthropic_answer(&["42."], PACE, (260, 3)),
        anthropic_answer(&["48."], PACE, (300, 3)),
    ])
    .await;
    let chat = Chat::with_tools(
        provider(&server)
            .max_tokens(4096)
            .thinking(2048)
            .build()
            .unwrap(),
        EngineConfig::default(),
        vec![calculate()],
    )
    .await;
    let answer = chat.ask("6*7?").await;
    let end = answer.complete();
    assert_eq!(end.full_content, "42.");

    let reasoning: Vec<&str> = answer
        .reasoning
        .iter()
        .map(|r| r.content.as_str())
        .collect();
    assert_eq!(reasoning, ["Compute it."], "readable reasoning only");
    let streamed = serde_json::to_string(
        &answer
            .events
            .iter()
            .filter(|e| !matches!(e, StreamEvent::End(_)))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!streamed.contains(REDACTED), "{streamed}");
    assert!(!streamed.contains(SIGNATURE), "{streamed}");
    assert_eq!(
        end.parts[..3],
        [
            MessagePart::Reasoning {
                content: "Compute it.".into(),
                signature: Some(SIGNATURE.into()),
            },
            MessagePart::RedactedReasoning {
                data: REDACTED.into()
            },
            MessagePart::ToolCall {
                tool_call_id: "toolu_01C29s92sy92ns039057ns1".into(),
                name: "calculate".into(),
                arguments: json!({"expression": "6*7"}),
            },
        ]
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].body["messages"],
        json!([
            {"role": "user", "content": "6*7?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Compute it.", "signature": SIGNATURE},
                {"type": "redacted_thinking", "data": REDACTED},
                {"type": "tool_use", "id": "toolu_01C29s92sy92ns039057ns1", "name": "calculate", "input": {"expression": "6*7"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01C29s92sy92ns039057ns1", "content": "42"}
            ]}
        ])
    );

    // Stored with the answer: the next question's request sends it back from history.
    chat.ask("and 6*8?").await.complete();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].body["messages"][1]["content"][1],
        json!({"type": "redacted_thinking", "data": REDACTED})
    );
}

/// Text, then the `error` event Anthropic sends when the model is overloaded mid-answer.
fn overloaded_mid_answer() -> Reply {
    let mut steps = vec![anthropic_message_start(9), anthropic_text_start(0)];
    for t in ["Half", " an"] {
        steps.extend([Step::Wait(PACE), anthropic_text(0, t)]);
    }
    steps.extend([
        Step::Wait(PACE),
        anthropic_error("overloaded_error", "Overloaded"),
    ]);
    Reply::ok("text/event-stream; charset=utf-8", steps)
}

/// With the engine's default `mid_stream_retries`, an `overloaded_error` after output is
/// one `stream_reset` and the step asked again; the answer completes with the second
/// attempt's text. Without them, it is a retryable `stream_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_overloaded_error_is_asked_again_or_reported_retryable() {
    let server = FakeServer::start([
        overloaded_mid_answer(),
        anthropic_answer(&["A", " whole", " answer"], PACE, (9, 3)),
    ])
    .await;
    let end = assert_asked_again(provider(&server), "A whole answer").await;
    assert_eq!(end.usage, Usage::reported(9, 3), "the kept attempt's usage");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same step asked again"
    );

    let server = FakeServer::start([
        overloaded_mid_answer(),
        anthropic_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server)).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.text(), "Half an");
    let err = answer.failed();
    assert!(err.retryable);
    assert_eq!(err.after_seq, 2);
    let wire = serde_json::to_string(&answer.terminal).unwrap();
    assert!(!wire.contains("Overloaded"), "{wire}");
    assert_eq!(server.requests().len(), 1, "the provider never re-sends");
}

/// An error event that says the request is bad is not asked again, even by the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_invalid_request_error_is_not_asked_again() {
    let mut reply = overloaded_mid_answer();
    reply.steps.pop();
    reply.steps.push(anthropic_error(
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ));
    let server = FakeServer::start([reply, anthropic_answer(&["never"], PACE, (1, 1))]).await;
    assert_failed_without_retry(provider(&server), &server).await;
}

/// A stream that ends without `message_stop` is not a complete answer: a protocol error,
/// which the engine asks again (or reports, not retryable, when it may not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_message_stop_is_a_protocol_error_retried_by_the_engine() {
    let cut = || {
        let mut reply = anthropic_answer(&["almost", " there"], PACE, (3, 2));
        let last = reply.steps.pop();
        assert!(
            matches!(&last, Some(Step::Send(b)) if b.starts_with(b"event: message_stop")),
            "{last:?}"
        );
        reply
    };
    let server =
        FakeServer::start([cut(), anthropic_answer(&["all", " there"], PACE, (3, 2))]).await;
    assert_asked_again(provider(&server), "all there").await;
    assert_eq!(server.requests().len(), 2);

    let server = FakeServer::start([cut(), anthropic_answer(&["never"], PACE, (1, 1))]).await;
    let chat = chat(provider(&server)).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.text(), "almost there");
    let err = answer.failed();
    assert_eq!(err.after_seq, 2);
    assert!(
        !err.retryable,
        "a protocol error is not worth retrying later"
    );
    assert_eq!(server.requests().len(), 1);
}

/// A connection that breaks mid-answer: retryable, and asked again by the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_broken_mid_answer_is_asked_again() {
    let mut broken = anthropic_answer(&["One", " two"], PACE, (3, 2));
    broken.steps.truncate(7); // message_start, ping, block start, a wait, "One", a wait, " two"
    broken.steps.push(Step::Abort);
    let server = FakeServer::start([broken, anthropic_answer(&["Three"], PACE, (3, 1))]).await;
    assert_asked_again(provider(&server), "Three").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_never_retried_and_never_shown() {
    for (status, kind) in [(401, "authentication_error"), (403, "permission_error")] {
        let server = FakeServer::start([
            anthropic_status(status, kind, "invalid x-api-key"),
            anthropic_answer(&["never"], PACE, (1, 1)),
        ])
        .await;
        let chat = retrying_chat(provider(&server)).await;
        let answer = chat.ask("hi").await;
        let err = answer.failed();
        assert!(!err.retryable, "HTTP {status} is not worth retrying");
        assert_eq!(err.after_seq, 0);
        let wire = serde_json::to_string(&answer.terminal).unwrap();
        assert!(
            !wire.contains("x-api-key") && !wire.contains("sk-"),
            "{wire}"
        );
        assert_eq!(server.requests().len(), 1, "HTTP {status} is never retried");
    }
}

/// 529 (overloaded) and 503 before any output: the provider retries with backoff, and the
/// client sees one clean answer (no reset: nothing had been sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overloaded_and_unavailable_before_output_are_retried_by_the_provider() {
    let server = FakeServer::start([
        anthropic_status(529, "overloaded_error", "Overloaded"),
        anthropic_status(503, "api_error", "Service unavailable"),
        anthropic_answer(&["third", " time"], PACE, (2, 2)),
    ])
    .await;
    let chat = chat(provider(&server)).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.complete().full_content, "third time");
    assert!(resets(&answer.events).is_empty());
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[1].at - requests[0].at >= ms(10));
    assert!(requests[2].at - requests[1].at >= ms(20));
    assert_eq!(requests[0].body, requests[2].body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_retried_after_the_wait_the_server_asks_for() {
    let server = FakeServer::start([
        anthropic_status(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .header("retry-after", "1"),
        anthropic_answer(&["finally"], PACE, (2, 1)),
    ])
    .await;
    let chat = chat(provider(&server)).await;
    assert_eq!(chat.ask("hi").await.complete().full_content, "finally");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= ms(1000), "waited {waited:?}");
}

/// `max_tokens` ends the answer as `length`; `refusal` as `content_filter`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_reasons_reach_the_client() {
    for (reason, expected) in [
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
    ] {
        let mut steps = vec![anthropic_message_start(4)];
        steps.extend(anthropic_text_block(0, &["cut", " short"], PACE));
        steps.extend([anthropic_message_delta(reason, 2), anthropic_message_stop()]);
        let server = FakeServer::start([Reply::ok("text/event-stream", steps)]).await;
        let chat = chat(provider(&server)).await;
        let end = chat.ask("long").await.complete().clone();
        assert_eq!(end.finish_reason, expected, "{reason}");
    }
}

/// Dropping the answer stream closes the upstream request at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_closes_the_upstream_request() {
    let mut steps = vec![anthropic_message_start(3), anthropic_text_start(0)];
    for i in 0..500 {
        steps.push(anthropic_text(0, &format!(" t{i}")));
        steps.push(Step::Wait(ms(20)));
    }
    steps.push(Step::Hang);
    let server = FakeServer::start([Reply::ok("text/event-stream", steps)]).await;
    let latency = drop_latency(provider(&server).build().unwrap(), &server).await;
    assert!(latency < ms(500), "took {latency:?}");
}

/// A user message with files goes as content blocks, the files first (as Anthropic advises):
/// an `image` block per image and a `document` block per PDF, both with a `base64` source,
/// a `text` block for a text file and for a file that is gone; then the message's text.
/// Messages without files stay plain strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_as_content_blocks_before_the_text() {
    let server = FakeServer::start([anthropic_answer(&["Two", " files."], PACE, (90, 2))]).await;
    let request = ask_with_files(&provider(&server).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
                    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64}},
                    {"type": "text", "text": "<file name=\"notes.txt\">\nbuy milk\neggs\n</file>"},
                    {"type": "text", "text": "[attached file \"old.png\" (image/png): no longer available]"},
                    {"type": "text", "text": "What are these?"}
                ]}
            ],
            "stream": true
        })
    );
}

/// Messages have no `name` field: in a group conversation, a user message's author
/// prefixes its text, `[alice] `, or its `text` block (after the files) when it has files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_prefix_the_text() {
    let server = FakeServer::start([anthropic_answer(&["A", " cat."], PACE, (40, 2))]).await;
    let request = ask_with_authors(&provider(&server).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "[alice] Hi, I'm Alice."},
                {"role": "assistant", "content": "Hello Alice!"},
                {"role": "user", "content": [
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_BASE64}},
                    {"type": "text", "text": "[bob smith] What is in this picture?"}
                ]}
            ],
            "stream": true
        })
    );
}
