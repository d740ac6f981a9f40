//! `OpenAiProvider` in its Responses API mode against a local server that sends what
//! OpenAI's `/v1/responses` sends (typed events with their `sequence_number`, byte for byte
//! and paced), faults included. Each test asserts the room events a client receives
//! (through the engine and a recording sink) and the exact requests the server got.

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use marie_core::{EngineConfig, FinishReason, MessagePart, StreamEvent, Usage};
use marie_llm::{OpenAiApi, OpenAiBuilder, OpenAiProvider, RetryPolicy};
use serde_json::json;
use support::authors::ask_with_authors;
use support::direct::drop_latency;
use support::engine::{
    Chat, assert_asked_again, assert_failed_without_retry, calculate, chat, retrying_chat,
};
use support::fake::{FakeServer, Reply, ResponsesStream, Step, responses_answer};
use support::files::{PDF_BASE64, PNG_BASE64, ask_with_files};
use support::ms;

const KEY: &str = "sk-test-7f3a9c2e5b1d4f6a8c0e2b4d6f8a0c2e";
const PACE: Duration = Duration::from_millis(10);

/// The Responses API, fast retries; timeouts long enough never to fire unless a test wants.
fn provider(server: &FakeServer) -> OpenAiBuilder {
    OpenAiProvider::builder()
        .api(OpenAiApi::Responses)
        .base_url(server.openai_base())
        .api_key(KEY)
        .model("gpt-4.1-mini")
        .retry(RetryPolicy::default().backoff(ms(20), ms(40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_answer_with_the_usage_the_api_reports() {
    let server = FakeServer::start([responses_answer(
        &["Hello", ",", " wörld", " ✓", "!"],
        PACE,
        (12, 5),
    )])
    .await;
    let config = EngineConfig::default()
        .system_prompt("You are terse.")
        .mid_stream_retries(0);
    let chat = Chat::new(
        provider(&server)
            .temperature(0.2)
            .max_tokens(256)
            .build()
            .unwrap(),
        config,
    )
    .await;

    let answer = chat.ask("Say hello").await;
    assert_eq!(answer.pieces(), ["Hello", ",", " wörld", " ✓", "!"]);
    let end = answer.complete();
    assert_eq!(end.full_content, "Hello, wörld ✓!");
    assert_eq!(end.usage, Usage::reported(12, 5));
    assert_eq!(end.finish_reason, FinishReason::Stop);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/v1/responses");
    assert_eq!(
        request.headers["authorization"].to_str().unwrap(),
        format!("Bearer {KEY}")
    );
    assert_eq!(request.headers["accept"], "text/event-stream");
    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4.1-mini",
            "instructions": "You are terse.",
            "input": [{"role": "user", "content": "Say hello"}],
            "stream": true,
            "store": false,
            "temperature": 0.2,
            "max_output_tokens": 256
        })
    );
}

/// A reasoning model's summary streams as `stream_reasoning` before the text and is kept as
/// a part; it is not sent back (the API takes reasoning back only as its own items).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_summaries_stream_as_reasoning() {
    let first = ResponsesStream::new()
        .reasoning_summary(&["**Greeting**", "The user says hello."])
        .wait(PACE)
        .message(&["Hi", "!"], PACE)
        .completed((7, 9))
        .reply();
    let server = FakeServer::start([first, responses_answer(&["Fine."], PACE, (20, 2))]).await;
    let chat = chat(provider(&server).extra_body("reasoning", json!({"summary": "auto"}))).await;
    let answer = chat.ask("hello").await;
    let reasoning: String = answer
        .reasoning
        .iter()
        .map(|r| r.content.as_str())
        .collect();
    assert_eq!(reasoning, "**Greeting**\n\nThe user says hello.");
    let end = answer.complete();
    assert_eq!(end.full_content, "Hi!");
    assert_eq!(
        end.parts,
        vec![
            MessagePart::Reasoning {
                content: "**Greeting**\n\nThe user says hello.".into(),
                signature: None,
            },
            MessagePart::Text {
                content: "Hi!".into()
            },
        ]
    );
    assert_eq!(end.usage, Usage::reported(7, 9));

    chat.ask("how are you?").await.complete();
    let requests = server.requests();
    assert_eq!(requests[0].body["reasoning"], json!({"summary": "auto"}));
    assert_eq!(
        requests[1].body["input"],
        json!([
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "how are you?"}
        ])
    );
}

/// Two function calls (arguments streamed in pieces), run by the engine, and given back as
/// `function_call` and `function_call_output` items, named by their `call_id`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_calls_run_and_go_back_as_input_items() {
    let first = ResponsesStream::new()
        .message(&["Let me compute."], PACE)
        .function_call(
            "call_Xa1",
            "calculate",
            &["{\"expr", "ession\": \"12", "*7\"}"],
        )
        .function_call("call_Yb2", "calculate", &["{\"expression\": \"2+2\"}"])
        .completed((20, 10))
        .reply();
    let server = FakeServer::start([
        first,
        responses_answer(&["84", " and ", "4."], PACE, (40, 5)),
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
    assert_eq!(end.usage, Usage::reported(60, 15));
    assert_eq!(end.finish_reason, FinishReason::Stop);
    let calls = answer.tool_calls();
    assert_eq!(
        calls,
        [
            ("call_Xa1".to_owned(), json!({"expression": "12*7"})),
            ("call_Yb2".to_owned(), json!({"expression": "2+2"}))
        ]
    );
    let deltas: String = answer
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta(d) if d.tool_call_id == "call_Xa1" => Some(d.delta.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deltas, "{\"expression\": \"12*7\"}");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body,
        json!({
            "model": "gpt-4.1-mini",
            "input": [{"role": "user", "content": "12*7 and 2+2?"}],
            "stream": true,
            "store": false,
            "tools": [{
                "type": "function",
                "name": "calculate",
                "description": "Evaluates an arithmetic expression",
                "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]},
                "strict": false
            }],
            "tool_choice": "auto"
        })
    );
    let input = requests[1].body["input"].as_array().unwrap().clone();
    assert_eq!(
        input[..4],
        [
            json!({"role": "user", "content": "12*7 and 2+2?"}),
            json!({"role": "assistant", "content": "Let me compute."}),
            json!({"type": "function_call", "call_id": "call_Xa1", "name": "calculate", "arguments": "{\"expression\":\"12*7\"}"}),
            json!({"type": "function_call", "call_id": "call_Yb2", "name": "calculate", "arguments": "{\"expression\":\"2+2\"}"}),
        ]
    );
    // The outputs are in the order the calls finished: compare them sorted.
    let mut outputs = input[4..].to_vec();
    outputs.sort_by_key(|o| o["call_id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        outputs,
        [
            json!({"type": "function_call_output", "call_id": "call_Xa1", "output": "84"}),
            json!({"type": "function_call_output", "call_id": "call_Yb2", "output": "4"})
        ]
    );
}

/// Text, then a server error mid-answer, as the `error` event or as `response.failed`.
fn failing_mid_answer(as_failed: bool) -> Reply {
    let stream = ResponsesStream::new().message(&["Half", " an"], PACE);
    let stream = if as_failed {
        stream.failed(
            "server_error",
            "The model failed to generate a response. Sorry about that!",
        )
    } else {
        stream.error(
            "server_error",
            "The server had an error while processing your request. Sorry about that!",
        )
    };
    stream.reply()
}

/// With the engine's default `mid_stream_retries`, a server error after output is one
/// `stream_reset` and the step asked again; without them, a retryable `stream_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_server_error_is_asked_again_or_reported_retryable() {
    for as_failed in [false, true] {
        let server = FakeServer::start([
            failing_mid_answer(as_failed),
            responses_answer(&["A", " whole", " answer"], PACE, (9, 3)),
        ])
        .await;
        let end = assert_asked_again(provider(&server), "A whole answer").await;
        assert_eq!(end.usage, Usage::reported(9, 3));
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].body, requests[1].body);

        let server = FakeServer::start([
            failing_mid_answer(as_failed),
            responses_answer(&["never"], PACE, (1, 1)),
        ])
        .await;
        let chat = chat(provider(&server)).await;
        let answer = chat.ask("hi").await;
        assert_eq!(answer.text(), "Half an");
        let err = answer.failed();
        assert!(err.retryable);
        assert_eq!(err.after_seq, 2);
        let wire = serde_json::to_string(&answer.terminal).unwrap();
        assert!(!wire.contains("Sorry"), "{wire}");
        assert_eq!(server.requests().len(), 1);
    }
}

/// A failure the request itself causes is not asked again, even by the engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_response_for_a_bad_request_is_not_asked_again() {
    let failed = ResponsesStream::new()
        .failed(
            "invalid_prompt",
            "Invalid prompt: flagged as potentially violating our usage policy.",
        )
        .reply();
    let server = FakeServer::start([failed, responses_answer(&["never"], PACE, (1, 1))]).await;
    assert_failed_without_retry(provider(&server), &server).await;
}

/// A stream that ends without `response.completed` is not a complete answer: a protocol
/// error, which the engine asks again (or reports, not retryable, when it may not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_before_response_completed_is_a_protocol_error_retried_by_the_engine() {
    let cut = || {
        ResponsesStream::new()
            .message(&["almost", " there"], PACE)
            .reply()
    };
    let server =
        FakeServer::start([cut(), responses_answer(&["all", " there"], PACE, (3, 2))]).await;
    assert_asked_again(provider(&server), "all there").await;

    let server = FakeServer::start([cut(), responses_answer(&["never"], PACE, (1, 1))]).await;
    let chat = chat(provider(&server)).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.text(), "almost there");
    let err = answer.failed();
    assert_eq!(err.after_seq, 2);
    assert!(!err.retryable);
    assert_eq!(server.requests().len(), 1);
}

/// `response.incomplete` for `max_output_tokens` ends the answer as `length`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incomplete_response_ends_with_its_reason() {
    let reply = ResponsesStream::new()
        .message(&["cut", " short"], PACE)
        .incomplete("max_output_tokens", (4, 2))
        .reply();
    let server = FakeServer::start([reply]).await;
    let chat = chat(provider(&server).max_tokens(2)).await;
    let end = chat.ask("long").await.complete().clone();
    assert_eq!(end.full_content, "cut short");
    assert_eq!(end.finish_reason, FinishReason::Length);
    assert_eq!(end.usage, Usage::reported(4, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_never_retried_and_never_shown() {
    let server = FakeServer::start([
        Reply::status(
            401,
            r#"{"error":{"message":"Incorrect API key provided: sk-test-***2e. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        ),
        responses_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let retrying = retrying_chat(provider(&server)).await;
    let answer = retrying.ask("hi").await;
    let err = answer.failed();
    assert!(!err.retryable);
    let wire = serde_json::to_string(&answer.terminal).unwrap();
    assert!(
        !wire.contains("Incorrect") && !wire.contains("sk-"),
        "{wire}"
    );
    assert_eq!(server.requests().len(), 1);
}

/// 500 and 503 before any output: the provider retries with backoff; one clean answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_before_output_are_retried_by_the_provider() {
    let server = FakeServer::start([
        Reply::status(
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
        ),
        Reply::status(
            503,
            r#"{"error":{"message":"overloaded","type":"server_error","param":null,"code":null}}"#,
        ),
        responses_answer(&["third", " time"], PACE, (2, 2)),
    ])
    .await;
    let chat = chat(provider(&server)).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.complete().full_content, "third time");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests.iter().all(|r| r.path == "/v1/responses"));
    assert!(requests[1].at - requests[0].at >= ms(10));
    assert!(requests[2].at - requests[1].at >= ms(20));
}

/// Dropping the answer stream closes the upstream request at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_closes_the_upstream_request() {
    let mut tokens: Vec<String> = Vec::new();
    for i in 0..500 {
        tokens.push(format!(" t{i}"));
    }
    let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let steps = ResponsesStream::new()
        .message(&tokens, ms(20))
        .then(Step::Hang)
        .steps();
    let server = FakeServer::start([Reply::ok("text/event-stream", steps)]).await;
    let latency = drop_latency(provider(&server).build().unwrap(), &server).await;
    assert!(latency < ms(500), "took {latency:?}");
}

/// A user message with files goes as input parts: its `input_text`, an `input_image` (a
/// `data:` URL) per image, an `input_file` per PDF, and an `input_text` for a text file and
/// for a file that is gone. Messages without files stay plain strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_as_input_parts() {
    let server = FakeServer::start([responses_answer(&["Two", " files."], PACE, (90, 2))]).await;
    let request = ask_with_files(&provider(&server).build().unwrap(), &server).await;

    assert_eq!(request.path, "/v1/responses");
    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4.1-mini",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "What are these?"},
                    {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG_BASE64}")},
                    {"type": "input_file", "filename": "report.pdf", "file_data": format!("data:application/pdf;base64,{PDF_BASE64}")},
                    {"type": "input_text", "text": "<file name=\"notes.txt\">\nbuy milk\neggs\n</file>"},
                    {"type": "input_text", "text": "[attached file \"old.png\" (image/png): no longer available]"}
                ]}
            ],
            "stream": true,
            "store": false
        })
    );
}

/// Input messages have no `name` field: in a group conversation, a user message's author
/// prefixes its text, `[alice] `, or its `input_text` part when it has files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_prefix_the_text() {
    let server = FakeServer::start([responses_answer(&["A", " cat."], PACE, (40, 2))]).await;
    let request = ask_with_authors(&provider(&server).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4.1-mini",
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "[alice] Hi, I'm Alice."},
                {"role": "assistant", "content": "Hello Alice!"},
                {"role": "user", "content": [
                    {"type": "input_text", "text": "[bob smith] What is in this picture?"},
                    {"type": "input_image", "image_url": format!("data:image/png;base64,{PNG_BASE64}")}
                ]}
            ],
            "stream": true,
            "store": false
        })
    );
}
