//! `OpenAiProvider` against a local server that sends what OpenAI's chat completions API
//! sends, byte for byte and paced, and every fault of issue 3. Each test asserts the room
//! events a client receives (through the engine and a recording sink).

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use marie_core::{EngineConfig, FinishReason, Usage};
use marie_llm::{OpenAiBuilder, OpenAiProvider, RetryPolicy};
use serde_json::json;
use support::authors::ask_with_authors;
use support::engine::{Chat, assert_connection_reused, calculate, chat};
use support::fake::{
    FakeServer, Reply, Step, openai_answer, openai_done, openai_finish, openai_reasoning,
    openai_role, openai_text, openai_usage, split,
};
use support::files::{NOTES, PDF_BASE64, PNG, PNG_BASE64, ask_with_files};
use support::{ms, refused_addr, unresponsive_addr};

const KEY: &str = "sk-test-7f3a9c2e5b1d4f6a8c0e2b4d6f8a0c2e";
const PACE: Duration = Duration::from_millis(10);

/// Fast retries; timeouts long enough never to fire unless a test wants them to.
fn provider(base_url: &str) -> OpenAiBuilder {
    OpenAiProvider::builder()
        .base_url(base_url)
        .api_key(KEY)
        .model("gpt-4o-mini")
        .retry(RetryPolicy::default().backoff(ms(20), ms(40)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_an_answer_with_the_usage_openai_reports() {
    let server = FakeServer::start([openai_answer(
        &["Hello", ",", " wörld", " ✓", "!"],
        PACE,
        (12, 5),
    )])
    .await;
    let chat = chat(
        provider(&server.openai_base())
            .temperature(0.2)
            .max_tokens(256),
    )
    .await;

    let answer = chat.ask("Say hello").await;

    assert_eq!(answer.pieces(), ["Hello", ",", " wörld", " ✓", "!"]);
    let end = answer.complete();
    assert_eq!(end.full_content, "Hello, wörld ✓!");
    assert_eq!(end.usage, Usage::reported(12, 5));
    assert!(!end.usage.estimated);
    assert_eq!(end.finish_reason, FinishReason::Stop);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.headers["authorization"].to_str().unwrap(),
        format!("Bearer {KEY}")
    );
    assert_eq!(request.headers["accept"], "text/event-stream");
    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "Say hello"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.2,
            "max_tokens": 256
        })
    );
}

/// A reasoning model's deltas (`reasoning_content`, or `reasoning` on other servers) stream as
/// `stream_reasoning` before the text, and are kept as a part, never in the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_deltas_stream_apart_from_the_text_under_either_name() {
    for field in ["reasoning_content", "reasoning"] {
        let steps = vec![
            openai_role(),
            openai_reasoning(field, "The user greets me."),
            Step::Wait(PACE),
            openai_reasoning(field, " Greet back."),
            Step::Wait(PACE),
            openai_text("Hi"),
            openai_text("!"),
            openai_finish("stop"),
            openai_usage(7, 9),
            openai_done(),
        ];
        let server =
            FakeServer::start([Reply::ok("text/event-stream; charset=utf-8", steps)]).await;
        let chat = chat(provider(&server.openai_base())).await;
        let answer = chat.ask("hello").await;
        let reasoning: Vec<&str> = answer
            .reasoning
            .iter()
            .map(|r| r.content.as_str())
            .collect();
        assert_eq!(
            reasoning,
            ["The user greets me.", " Greet back."],
            "{field}"
        );
        assert_eq!(answer.reasoning[0].seq, 1);
        assert_eq!(
            answer.chunks[0].seq, 3,
            "one sequence for reasoning and text"
        );
        let end = answer.complete();
        assert_eq!(end.full_content, "Hi!");
        assert_eq!(
            end.parts,
            vec![
                marie_core::MessagePart::Reasoning {
                    content: "The user greets me. Greet back.".into(),
                    signature: None,
                },
                marie_core::MessagePart::Text {
                    content: "Hi!".into()
                },
            ]
        );
        assert_eq!(end.usage, Usage::reported(7, 9));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_the_system_prompt_and_a_capped_history() {
    let server = FakeServer::start([
        openai_answer(&["one"], PACE, (1, 1)),
        openai_answer(&["two"], PACE, (1, 1)),
        openai_answer(&["three"], PACE, (1, 1)),
    ])
    .await;
    let config = EngineConfig::default()
        .system_prompt("You are terse.")
        .history_window(3);
    let chat = Chat::new(provider(&server.openai_base()).build().unwrap(), config).await;
    for question in ["q1", "q2", "q3"] {
        chat.ask(question).await.complete();
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[2].body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": "q3"}
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_split_anywhere_even_inside_a_character_are_put_back_together() {
    let mut bytes = Vec::new();
    for step in [
        openai_role(),
        openai_text("日本語"),
        openai_text(" ✓ héllo"),
        openai_finish("stop"),
        openai_usage(3, 2),
        openai_done(),
    ] {
        let Step::Send(b) = step else { unreachable!() };
        bytes.extend(b);
    }
    let first_char = bytes
        .windows("日".len())
        .position(|w| w == "日".as_bytes())
        .unwrap();
    let check = bytes.windows(3).position(|w| w == "✓".as_bytes()).unwrap();
    // Inside "data:", inside the JSON, inside a three-byte character (twice), between the
    // two newlines that end an event, inside "[DONE]".
    let mut cuts = vec![
        2,
        40,
        first_char + 1,
        first_char + 2,
        check + 1,
        bytes.len() - 9,
        bytes.len() - 4,
    ];
    let event_end = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
    cuts.push(event_end + 1);
    cuts.sort_unstable();
    cuts.dedup();
    let server =
        FakeServer::start([Reply::ok("text/event-stream", split(&bytes, &cuts, PACE))]).await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("split").await;
    let end = answer.complete();
    assert_eq!(end.full_content, "日本語 ✓ héllo");
    assert_eq!(end.usage, Usage::reported(3, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_reported_usage_the_engine_estimates_and_says_so() {
    let mut steps = vec![openai_role()];
    for t in ["No", " usage", " here"] {
        steps.extend([Step::Wait(PACE), openai_text(t)]);
    }
    steps.extend([openai_finish("stop"), openai_done()]);
    let server = FakeServer::start([Reply::ok("text/event-stream", steps)]).await;
    let chat = chat(provider(&server.openai_base()).include_usage(false)).await;
    let answer = chat.ask("count").await;
    let end = answer.complete();
    assert!(end.usage.estimated, "{:?}", end.usage);
    assert!(end.usage.completion_tokens > 0);
    assert_eq!(server.requests()[0].body.get("stream_options"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_reason_length_reaches_the_client() {
    let mut reply = openai_answer(&["cut", " short"], PACE, (4, 2));
    reply.steps = reply
        .steps
        .into_iter()
        .map(|s| match s {
            Step::Send(b) if String::from_utf8_lossy(&b).contains("\"finish_reason\":\"stop\"") => {
                openai_finish("length")
            }
            other => other,
        })
        .collect();
    let server = FakeServer::start([reply]).await;
    let chat = chat(provider(&server.openai_base())).await;
    let end = chat.ask("long").await.complete().clone();
    assert_eq!(end.finish_reason, FinishReason::Length);
    assert_eq!(
        serde_json::to_value(&end).unwrap()["finish_reason"],
        "length"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_are_never_retried_and_never_shown() {
    for status in [401, 403] {
        let server = FakeServer::start([
            Reply::status(
                status,
                r#"{"error":{"message":"Incorrect API key provided: sk-test-***2e. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
            ),
            openai_answer(&["never"], PACE, (1, 1)),
        ])
        .await;
        let chat = chat(provider(&server.openai_base())).await;
        let answer = chat.ask("hi").await;
        let err = answer.failed();
        assert!(!err.retryable, "HTTP {status} is not worth retrying");
        assert_eq!(err.after_seq, 0);
        let wire = serde_json::to_string(&answer.terminal).unwrap();
        assert!(
            !wire.contains("Incorrect") && !wire.contains("sk-"),
            "{wire}"
        );
        assert_eq!(
            server.requests().len(),
            1,
            "HTTP {status} must not be retried"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_after_the_wait_the_server_asks_for() {
    // OpenAI's `retry-after-ms`, then the standard `Retry-After` in seconds.
    let server = FakeServer::start([
        Reply::status(429, r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#)
            .header("retry-after-ms", "300"),
        Reply::status(429, r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#)
            .header("retry-after", "1"),
        openai_answer(&["finally"], PACE, (2, 1)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.complete().full_content, "finally");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let first_wait = requests[1].at - requests[0].at;
    let second_wait = requests[2].at - requests[1].at;
    // The backoff alone would be 10-40 ms: these waits are the server's.
    assert!(first_wait >= ms(300), "waited {first_wait:?}");
    assert!(second_wait >= ms(1000), "waited {second_wait:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_wait_longer_than_allowed_fails_at_once_as_retryable() {
    let server = FakeServer::start([
        Reply::status(
            429,
            r#"{"error":{"message":"quota","type":"insufficient_quota"}}"#,
        )
        .header("retry-after", "120"),
        openai_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    assert!(answer.failed().retryable);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff_until_one_works() {
    let server = FakeServer::start([
        Reply::status(
            500,
            r#"{"error":{"message":"The server had an error","type":"server_error"}}"#,
        ),
        Reply::status(
            503,
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
        ),
        openai_answer(&["third", " time"], PACE, (2, 2)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.complete().full_content, "third time");
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    // Backoff with equal jitter: at least half of 20 ms, then half of 40 ms.
    assert!(requests[1].at - requests[0].at >= ms(10));
    assert!(requests[2].at - requests[1].at >= ms(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded() {
    let server = FakeServer::start([
        Reply::status(502, "{}"),
        Reply::status(502, "{}"),
        Reply::status(502, "{}"),
        openai_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(
        provider(&server.openai_base())
            .retry(RetryPolicy::default().max_retries(2).backoff(ms(5), ms(10))),
    )
    .await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert!(err.retryable);
    assert_eq!(err.after_seq, 0);
    assert_eq!(server.requests().len(), 3, "1 attempt + 2 retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_client_errors_are_not_retried() {
    let server = FakeServer::start([
        Reply::status(
            400,
            r#"{"error":{"message":"The model `gpt-5-nano-x` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
        ),
        openai_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    assert!(!answer.failed().retryable);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_then_reported() {
    let addr = refused_addr().await;
    let started = tokio::time::Instant::now();
    let chat = chat(
        provider(&format!("http://{addr}/v1")).retry(
            RetryPolicy::default()
                .max_retries(2)
                .backoff(ms(100), ms(100)),
        ),
    )
    .await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert!(err.retryable);
    assert_eq!(err.after_seq, 0);
    // Two backoffs of at least 50 ms each: it was tried three times.
    assert!(started.elapsed() >= ms(100), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_is_retried_then_reported() {
    let hanging = unresponsive_addr().await;
    let started = tokio::time::Instant::now();
    let chat = chat(
        provider(&format!("http://{}/v1", hanging.addr))
            .connect_timeout(ms(150))
            .retry(RetryPolicy::default().max_retries(1).backoff(ms(5), ms(5))),
    )
    .await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert!(err.retryable);
    let took = started.elapsed();
    assert!(
        took >= ms(300) && took < ms(5000),
        "two connect attempts of 150 ms each, took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_response_head_within_the_first_token_timeout() {
    let server = FakeServer::start([
        openai_answer(&["late"], PACE, (1, 1)).head_delay(Duration::from_secs(30)),
        openai_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let started = tokio::time::Instant::now();
    let chat = chat(provider(&server.openai_base()).first_token_timeout(ms(300))).await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert!(err.retryable);
    assert!(started.elapsed() >= ms(300));
    assert_eq!(
        server.requests().len(),
        1,
        "a spent first-token budget is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_within_the_first_token_timeout() {
    // Headers and the role chunk come at once, then nothing: the role is not a token.
    let server = FakeServer::start([Reply::ok(
        "text/event-stream",
        vec![openai_role(), Step::Hang],
    )])
    .await;
    let chat = chat(provider(&server.openai_base()).first_token_timeout(ms(300))).await;
    let answer = chat.ask("hi").await;
    assert!(answer.failed().retryable);
    assert!(answer.chunks.is_empty());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_between_chunks_trips_the_idle_timeout() {
    let server = FakeServer::start([Reply::ok(
        "text/event-stream",
        vec![
            openai_role(),
            openai_text("Hello"),
            Step::Wait(PACE),
            openai_text(" there"),
            Step::Hang,
        ],
    )])
    .await;
    let chat = chat(provider(&server.openai_base()).idle_timeout(ms(300))).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.text(), "Hello there");
    let err = answer.failed();
    assert!(err.retryable);
    assert_eq!(err.after_seq, 2);
    assert_eq!(
        server.requests().len(),
        1,
        "never re-sent after tokens went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_without_done_is_an_error_not_a_complete_answer() {
    let mut reply = openai_answer(&["almost", " there"], PACE, (3, 2));
    reply.steps.pop(); // no `data: [DONE]`, the body just ends
    let server = FakeServer::start([reply]).await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert_eq!(err.after_seq, 2);
    assert!(!err.retryable);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_object_in_the_stream_ends_the_answer() {
    let server = FakeServer::start([Reply::ok(
        "text/event-stream",
        vec![
            openai_role(),
            openai_text("Partial"),
            Step::Wait(PACE),
            Step::Send(
                br#"data: {"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#
                    .iter()
                    .chain(b"\n\n")
                    .copied()
                    .collect(),
            ),
            Step::Hang,
        ],
    )])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert_eq!(err.after_seq, 1);
    assert!(err.retryable);
    let wire = serde_json::to_string(&answer.terminal).unwrap();
    assert!(
        !wire.contains("Sorry"),
        "no upstream text reaches clients: {wire}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_a_protocol_error() {
    let server = FakeServer::start([Reply::ok(
        "text/event-stream",
        vec![
            openai_role(),
            openai_text("Fine"),
            Step::Send(
                b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"\n\n".to_vec(),
            ),
            Step::Hang,
        ],
    )])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    let err = answer.failed();
    assert_eq!(err.after_seq, 1);
    assert!(!err.retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_breaks_the_connection_mid_stream() {
    let server = FakeServer::start([
        Reply::ok(
            "text/event-stream",
            vec![
                openai_role(),
                openai_text("One"),
                Step::Wait(PACE),
                openai_text(" two"),
                Step::Wait(PACE),
                Step::Abort,
            ],
        ),
        openai_answer(&["never"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    assert_eq!(answer.text(), "One two");
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
async fn json_instead_of_an_event_stream_is_a_protocol_error() {
    let server = FakeServer::start([Reply {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        head_delay: Duration::ZERO,
        steps: vec![Step::Send(
            br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#.to_vec(),
        )],
    }])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let answer = chat.ask("hi").await;
    assert!(!answer.failed().retryable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_answer_leaves_its_connection_for_the_next() {
    let server = FakeServer::start([
        openai_answer(&["one"], PACE, (1, 1)),
        openai_answer(&["two"], PACE, (1, 1)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    assert_connection_reused(&chat, &server).await;
}

/// Two calls in one turn, streamed as OpenAI streams them (by `index`, the id and name in the
/// first fragment only, the arguments in pieces that split keys and strings), run, and given
/// back in OpenAI's format: the model answers in a second request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_stream_in_fragments_run_and_go_back_to_the_model() {
    use support::fake::{openai_tool_args, openai_tool_start};
    let first = vec![
        openai_role(),
        openai_text("Let me compute."),
        openai_tool_start(0, "call_Xa1", "calculate"),
        Step::Wait(PACE),
        openai_tool_args(0, "{\"expr"),
        openai_tool_start(1, "call_Yb2", "calculate"),
        openai_tool_args(1, "{\"expression\":"),
        openai_tool_args(0, "ession\": \"12"),
        Step::Wait(PACE),
        openai_tool_args(0, "*7\"}"),
        openai_tool_args(1, "\"2+2\"}"),
        openai_finish("tool_calls"),
        openai_usage(20, 10),
        openai_done(),
    ];
    let server = FakeServer::start([
        Reply::ok("text/event-stream; charset=utf-8", first),
        openai_answer(&["84", " and ", "4."], PACE, (40, 5)),
    ])
    .await;
    let chat = Chat::with_tools(
        provider(&server.openai_base()).build().unwrap(),
        EngineConfig::default(),
        vec![calculate()],
    )
    .await;
    let answer = chat.ask("12*7 and 2+2?").await;
    let end = answer.complete();
    assert_eq!(end.full_content, "Let me compute.84 and 4.");
    assert_eq!(end.usage, Usage::reported(60, 15), "summed over both steps");
    assert_eq!(end.finish_reason, FinishReason::Stop);

    let calls: Vec<(String, serde_json::Value)> = answer
        .events
        .iter()
        .filter_map(|e| match e {
            marie_core::StreamEvent::ToolCall(c) => {
                Some((c.tool_call_id.clone(), c.arguments.clone()))
            }
            _ => None,
        })
        .collect();
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
            marie_core::StreamEvent::ToolCallDelta(d) if d.tool_call_id == "call_Xa1" => {
                Some(d.delta.as_str())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        deltas, "{\"expression\": \"12*7\"}",
        "the text as the model wrote it"
    );
    let mut outputs: Vec<(String, serde_json::Value)> = answer
        .events
        .iter()
        .filter_map(|e| match e {
            marie_core::StreamEvent::ToolResult(r) => {
                Some((r.tool_call_id.clone(), r.output.clone().unwrap()))
            }
            _ => None,
        })
        .collect();
    outputs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        outputs,
        [
            ("call_Xa1".to_owned(), json!(84)),
            ("call_Yb2".to_owned(), json!(4))
        ]
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].body["tool_choice"], "auto");
    assert_eq!(
        requests[0].body["tools"][0]["function"]["name"],
        "calculate"
    );
    let messages = requests[1].body["messages"].as_array().unwrap().clone();
    assert_eq!(
        messages[0],
        json!({"role": "user", "content": "12*7 and 2+2?"})
    );
    assert_eq!(
        messages[1],
        json!({"role": "assistant", "content": "Let me compute.", "tool_calls": [
            {"id": "call_Xa1", "type": "function", "function": {"name": "calculate", "arguments": "{\"expression\":\"12*7\"}"}},
            {"id": "call_Yb2", "type": "function", "function": {"name": "calculate", "arguments": "{\"expression\":\"2+2\"}"}}
        ]})
    );
    let mut tool_messages = messages[2..4].to_vec();
    tool_messages.sort_by_key(|m| m["tool_call_id"].as_str().unwrap_or_default().to_owned());
    assert_eq!(
        tool_messages,
        [
            json!({"role": "tool", "tool_call_id": "call_Xa1", "content": "84"}),
            json!({"role": "tool", "tool_call_id": "call_Yb2", "content": "4"})
        ]
    );
    assert_eq!(messages.len(), 4);
}

/// A call whose arguments were cut short (the stream says it is done, but the JSON text is
/// not whole), and a stream cut mid-arguments: both the provider's failure, never a call run
/// with broken arguments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_mid_arguments_is_a_provider_error_not_a_call() {
    use support::fake::{openai_tool_args, openai_tool_start};
    let cut_json = vec![
        openai_role(),
        openai_tool_start(0, "call_Za3", "calculate"),
        openai_tool_args(0, "{\"expression\": \"12"),
        openai_finish("tool_calls"),
        openai_done(),
    ];
    let cut_connection = vec![
        openai_role(),
        openai_tool_start(0, "call_Zb4", "calculate"),
        Step::Wait(PACE),
        openai_tool_args(0, "{\"expression\": \"12"),
        Step::Wait(PACE),
        Step::Abort,
    ];
    for steps in [cut_json, cut_connection] {
        let server =
            FakeServer::start([Reply::ok("text/event-stream; charset=utf-8", steps)]).await;
        let chat = Chat::with_tools(
            provider(&server.openai_base())
                .retry(RetryPolicy::none())
                .build()
                .unwrap(),
            EngineConfig::default().mid_stream_retries(0),
            vec![calculate()],
        )
        .await;
        let answer = chat.ask("12*7?").await;
        let failed = answer.failed();
        assert_eq!(
            failed.after_seq, 2,
            "the start and the first piece were sent: {:#?}",
            answer.events
        );
        assert!(
            !answer
                .events
                .iter()
                .any(|e| matches!(e, marie_core::StreamEvent::ToolResult(_))),
            "no call ran: {:#?}",
            answer.events
        );
        assert_eq!(server.requests().len(), 1);
    }
}

/// A user message with files goes as `content` parts: its text, an `image_url` part (a
/// `data:` URL) per image, a `file` part per PDF, and a `text` part for a text file and for
/// a file that is gone. Messages without files stay plain strings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_as_content_parts() {
    let server = FakeServer::start([openai_answer(&["Two", " files."], PACE, (90, 2))]).await;
    let request = ask_with_files(&provider(&server.openai_base()).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_BASE64}")}},
                    {"type": "file", "file": {"filename": "report.pdf", "file_data": format!("data:application/pdf;base64,{PDF_BASE64}")}},
                    {"type": "text", "text": "<file name=\"notes.txt\">\nbuy milk\neggs\n</file>"},
                    {"type": "text", "text": "[attached file \"old.png\" (image/png): no longer available]"}
                ]}
            ],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}

/// Through the engine: files uploaded and attached to a message reach the model with their
/// bytes, and go again with that message in the history of the next question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_uploaded_to_the_engine_reach_the_model_and_stay_in_history() {
    let server = FakeServer::start([
        openai_answer(&["A", " cat."], PACE, (80, 2)),
        openai_answer(&["Milk."], PACE, (90, 1)),
    ])
    .await;
    let chat = chat(provider(&server.openai_base())).await;
    let cat = chat.upload("cat.png", PNG).await;
    let notes = chat.upload("notes.txt", NOTES).await;

    let stream = chat
        .send_with_files("What is this?", vec![cat, notes])
        .await;
    chat.finish(&stream).await.complete();
    chat.ask("And the list?").await.complete();

    let requests = server.wait_requests(2).await;
    let with_files = json!({"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_BASE64}")}},
        {"type": "text", "text": "<file name=\"notes.txt\">\nbuy milk\neggs\n</file>"}
    ]});
    assert_eq!(requests[0].body["messages"], json!([with_files]));
    assert_eq!(
        requests[1].body["messages"],
        json!([
            with_files,
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "And the list?"}
        ])
    );
}

/// In a group conversation, a user message's author goes in its `name`, the field chat
/// completions have for it, made to fit the field's pattern (`bob smith` is `bob_smith`),
/// with or without files; the text stays as it is (no `[author] ` prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authors_go_in_the_name_field() {
    let server = FakeServer::start([openai_answer(&["A", " cat."], PACE, (40, 2))]).await;
    let request =
        ask_with_authors(&provider(&server.openai_base()).build().unwrap(), &server).await;

    assert_eq!(
        request.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi, I'm Alice.", "name": "alice"},
                {"role": "assistant", "content": "Hello Alice!"},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG_BASE64}")}}
                ], "name": "bob_smith"}
            ],
            "stream": true,
            "stream_options": {"include_usage": true}
        })
    );
}
