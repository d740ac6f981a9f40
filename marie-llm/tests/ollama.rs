//! `OllamaProvider` against a local server that sends what Ollama's `/api/chat` sends,
//! NDJSON byte for byte and paced, and every fault of issue 3. Each test asserts the room
//! events a client receives (through the engine and a recording sink).

#![cfg(feature = "ollama")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use marie_core::{EngineConfig, FinishReason, Usage};
use marie_llm::{OllamaBuilder, OllamaProvider, RetryPolicy};
use serde_json::json;
use support::authors::ask_with_authors;
use support::engine::{Chat, assert_connection_reused, chat};
use support::fake::{
    FakeServer, Reply, Step, ollama_answer, ollama_done, ollama_line, ollama_text, ollama_thinking,
    split,
};
use support::files::{PNG_BASE64, ask_with_files};
use support::{ms, refused_addr};

const PACE: Duration = Duration::from_millis(10);

fn provider(host: &str) -> OllamaBuilder {
    OllamaProvider::builder()
        .host(host)
        .model("llama3.2")
        .retry(RetryPolicy::default().backoff(ms(20), ms(40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_answer_with_usage_from_the_eval_counts() {
    let server = FakeServer::start([ollama_answer(
        &["The", " sky", " is", " blue", "."],
        PACE,
        (26, 5),
    )])
    .await;
    let config = EngineConfig::default().system_prompt("Answer in one sentence.");
    let chat = Chat::new(
        provider(&server.ollama_host())
            .temperature(0.7)
            .max_tokens(128)
            .build()
            .unwrap(),
        config,
    )
    .await;

    let answer = chat.ask("Why is the sky blue?").await;
    let end = answer.complete();
    assert_eq!(end.full_content, "The sky is blue.");
    assert_eq!(answer.chunks.len(), 5);
    assert_eq!(end.usage, Usage::reported(26, 5));
    assert_eq!(end.finish_reason, FinishReason::Stop);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/api/chat");
    assert_eq!(
        requests[0].body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Answer in one sentence."},
                {"role": "user", "content": "Why is the sky blue?"}
            ],
            "stream": true,
            "options": {"temperature": 0.7, "num_predict": 128}
        })
    );
}

/// A thinking model's `message.thinking` streams as `stream_reasoning` and is kept as a part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thinking_streams_as_reasoning_apart_from_the_text() {
    let steps = vec![
        ollama_thinking("Short question."),
        Step::Wait(PACE),
        ollama_thinking(" Answer briefly."),
        ollama_text("Yes"),
        Step::Wait(PACE),
        ollama_text("."),
        ollama_done("stop", 5, 6),
    ];
    let server = FakeServer::start([Reply::ok("application/x-ndjson", steps)]).await;
    let chat = chat(provider(&server.ollama_host())).await;
    let answer = chat.ask("ok?").await;
    let reasoning: Vec<&str> = answer
        .reasoning
        .iter()
        .map(|r| r.content.as_str())
        .collect();
    assert_eq!(reasoning, ["Short question.", " Answer briefly."]);
    let end = answer.complete();
    assert_eq!(end.full_content, "Yes.");
    assert_eq!(
        end.parts,
        vec![
            marie_core::MessagePart::Reasoning {
                content: "Short question. Answer briefly.".into(),
                signature: None,
            },
            marie_core::MessagePart::Text {
                content: "Yes.".into()
            },
        ]
    );
    assert_eq!(end.usage, Usage::reported(5, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_and_characters_split_across_reads_are_put_back_together() {
    let mut bytes = Vec::new();
    for text in ["Grüße", " aus", " 東京", " 🌸"] {
        bytes.extend(ollama_line(text).into_bytes());
    }
    let Step::Send(last) = ollama_done("stop", 9, 4) else {
        unreachable!()
    };
    bytes.extend(last);
    let find = |needle: &str| {
        bytes
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .unwrap()
    };
    // Inside "ü" (2 bytes), "東" (3 bytes), "🌸" (4 bytes, cut twice), mid-JSON, and right
    // before a line's newline.
    let mut cuts = vec![
        find("ü") + 1,
        find("東") + 1,
        find("東") + 2,
        find("🌸") + 1,
        find("🌸") + 3,
        find("\"done\":true") + 3,
        find("\n") - 1,
        7,
    ];
    cuts.sort_unstable();
    cuts.dedup();
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        split(&bytes, &cuts, PACE),
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let answer = chat.ask("greet").await;
    assert_eq!(answer.pieces(), ["Grüße", " aus", " 東京", " 🌸"]);
    assert_eq!(answer.complete().usage, Usage::reported(9, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_reason_length_reaches_the_client() {
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        vec![ollama_text("cut"), ollama_done("length", 3, 1)],
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    assert_eq!(
        chat.ask("long").await.complete().finish_reason,
        FinishReason::Length
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_eval_counts_usage_is_estimated() {
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        vec![
            ollama_text("cached"),
            Step::Send(
                br#"{"model":"llama3.2","created_at":"2025-01-10T09:30:01Z","message":{"role":"assistant","content":""},"done_reason":"stop","done":true,"total_duration":1000,"eval_count":1}"#
                    .iter()
                    .chain(b"\n")
                    .copied()
                    .collect(),
            ),
        ],
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    assert!(chat.ask("hi").await.complete().usage.estimated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_without_done_true_is_an_error() {
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        vec![
            ollama_text("half"),
            Step::Wait(PACE),
            ollama_text(" an answer"),
        ],
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.text(), "half an answer");
    let err = answer.failed();
    assert_eq!(err.after_seq, 2);
    assert!(!err.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_line_ends_the_answer() {
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        vec![
            ollama_text("Once"),
            Step::Send(b"{\"error\":\"model runner has unexpectedly stopped, this may be due to resource limitations\"}\n".to_vec()),
            Step::Hang,
        ],
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert_eq!(err.after_seq, 1);
    assert!(err.retryable);
    let wire = serde_json::to_string(&answer.terminal).unwrap();
    assert!(!wire.contains("runner"), "{wire}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_line_is_a_protocol_error() {
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        vec![
            ollama_text("Fine"),
            Step::Send(b"{\"model\":\"llama3.2\",\"message\":{\"content\":\n".to_vec()),
            Step::Hang,
        ],
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let err = chat.ask("hi").await.failed().clone();
    assert_eq!(err.after_seq, 1);
    assert!(!err.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_a_protocol_error() {
    let mut line = ollama_line("ok").into_bytes();
    line.extend(b"{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\xff\xfe\"},\"done\":false}\n");
    let server = FakeServer::start([Reply::ok(
        "application/x-ndjson",
        vec![Step::Send(line), Step::Hang],
    )])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let err = chat.ask("hi").await.failed().clone();
    assert_eq!(err.after_seq, 1);
    assert!(!err.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_breaks_the_connection_mid_stream() {
    let server = FakeServer::start([
        Reply::ok(
            "application/x-ndjson",
            vec![
                ollama_text("One"),
                Step::Wait(PACE),
                ollama_text(" two"),
                Step::Wait(PACE),
                Step::Abort,
            ],
        ),
        ollama_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert_eq!(err.after_seq, 2);
    assert!(err.retryable);
    assert_eq!(
        server.requests().len(),
        1,
        "never re-sent after tokens went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_model_is_not_retried() {
    let server = FakeServer::start([
        Reply::status(
            404,
            r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
        ),
        ollama_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    let answer = chat.ask("hi").await;
    assert!(!answer.failed().retryable);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_rate_limits_are_retried() {
    let server = FakeServer::start([
        Reply::status(500, r#"{"error":"llama runner process has terminated"}"#),
        Reply::status(429, r#"{"error":"too many requests"}"#).header("retry-after", "0.2"),
        ollama_answer(&["third"], PACE, (2, 1)),
    ])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    assert_eq!(chat.ask("hi").await.complete().full_content, "third");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[2].at - requests[1].at >= ms(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_before_and_between_tokens() {
    // Model loading that takes too long: no line at all.
    let server = FakeServer::start([
        Reply::ok("application/x-ndjson", vec![Step::Hang]),
        Reply::ok(
            "application/x-ndjson",
            vec![
                ollama_text("Hi"),
                Step::Wait(PACE),
                ollama_text("!"),
                Step::Hang,
            ],
        ),
    ])
    .await;
    let chat = chat(
        provider(&server.ollama_host())
            .first_token_timeout(ms(300))
            .idle_timeout(ms(300)),
    )
    .await;
    let first = chat.ask("hi").await;
    assert!(first.failed().retryable);
    assert!(first.chunks.is_empty());
    let second = chat.ask("again").await;
    assert_eq!(second.text(), "Hi!");
    assert_eq!(second.failed().after_seq, 2);
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ollama_that_is_not_running() {
    let addr = refused_addr().await;
    let chat = chat(
        provider(&addr.to_string())
            .retry(RetryPolicy::default().max_retries(1).backoff(ms(5), ms(5))),
    )
    .await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert!(err.retryable);
    assert_eq!(err.after_seq, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_answer_leaves_its_connection_for_the_next() {
    let server = FakeServer::start([
        ollama_answer(&["one"], PACE, (1, 1)),
        ollama_answer(&["two"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.ollama_host())).await;
    assert_connection_reused(&chat, &server).await;
}

/// Ollama sends whole calls (arguments as an object, no id); the engine runs them and the
/// next request carries them in Ollama's own format: `tool_calls` with object arguments,
/// then `role:"tool"` messages named by `tool_name`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_tool_calls_run_and_go_back_in_ollamas_format() {
    use support::fake::ollama_tool_calls;
    let first = vec![
        ollama_thinking("I should use the calculator."),
        ollama_tool_calls(&[("calculate", serde_json::json!({"expression": "12*7"}))]),
        ollama_done("stop", 30, 12),
    ];
    let server = FakeServer::start([
        Reply::ok("application/x-ndjson", first),
        ollama_answer(&["It is ", "84."], Duration::from_millis(5), (50, 4)),
    ])
    .await;
    let calculate: std::sync::Arc<dyn marie_core::Tool> = std::sync::Arc::new(marie_core::tool_fn(
        "calculate",
        "Arithmetic",
        serde_json::json!({"type": "object", "properties": {"expression": {"type": "string"}}}),
        |args: serde_json::Value, _| async move {
            assert_eq!(args["expression"], "12*7");
            Ok(serde_json::json!({"value": 84}))
        },
    ));
    let chat = Chat::with_tools(
        provider(&server.ollama_host()).build().unwrap(),
        EngineConfig::default(),
        vec![calculate],
    )
    .await;
    let answer = chat.ask("12*7?").await;
    let end = answer.complete();
    assert_eq!(end.full_content, "It is 84.");
    assert_eq!(end.usage, Usage::reported(80, 16));
    let names: Vec<&str> = answer.events.iter().map(|e| e.name()).collect();
    assert_eq!(
        names,
        [
            "stream_start",
            "stream_reasoning",
            "tool_call_start",
            "tool_call_delta",
            "tool_call",
            "tool_result",
            "stream_chunk",
            "stream_chunk",
            "stream_end"
        ]
    );
    let call_id = match &answer.events[4] {
        marie_core::StreamEvent::ToolCall(c) => c.tool_call_id.clone(),
        other => panic!("{other:?}"),
    };
    assert!(call_id.starts_with("call_"), "{call_id}");

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].body["tools"][0]["function"]["name"],
        "calculate"
    );
    let messages = requests[1].body["messages"].as_array().unwrap();
    assert_eq!(
        messages[1..],
        [
            serde_json::json!({"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "calculate", "arguments": {"expression": "12*7"}}}
            ]}),
            serde_json::json!({"role": "tool", "tool_name": "calculate", "content": "{\"value\":84}"}),
        ]
    );
}

/// `/api/chat` takes images only: a user message's images go as base64 in its `images`;
/// a PDF, a text file and a file that is gone are added to its `content` as text, after the
/// message. Messages without files stay as they were, without `images`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_go_in_images_and_other_files_in_the_content() {
    let server = FakeServer::start([ollama_answer(&["Two", " files."], PACE, (90, 2))]).await;
    let request = ask_with_files(&provider(&server.ollama_host()).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {
                    "role": "user",
                    "content": "What are these?\n\n\
                        [attached file \"report.pdf\" (application/pdf, 29 bytes): this model cannot read it]\n\n\
                        <file name=\"notes.txt\">\nbuy milk\neggs\n</file>\n\n\
                        [attached file \"old.png\" (image/png): no longer available]",
                    "images": [PNG_BASE64]
                }
            ],
            "stream": true
        })
    );
}

/// `/api/chat` messages have no `name` field: in a group conversation, a user message's
/// author prefixes its `content`, `[alice] `, its images in `images` as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_prefix_the_content() {
    let server = FakeServer::start([ollama_answer(&["A", " cat."], PACE, (40, 2))]).await;
    let request =
        ask_with_authors(&provider(&server.ollama_host()).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "llama3.2",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "[alice] Hi, I'm Alice."},
                {"role": "assistant", "content": "Hello Alice!"},
                {"role": "user", "content": "[bob smith] What is in this picture?", "images": [PNG_BASE64]}
            ],
            "stream": true
        })
    );
}
