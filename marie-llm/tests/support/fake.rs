//! A fake model server: an axum app on 127.0.0.1:0 that answers each request with the next
//! scripted [`Reply`], byte for byte, pacing included, and reports when a response body
//! is dropped (the client went away, or the body ended).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use futures_util::stream;
use serde_json::Value;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// How long a test waits for anything before it fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// One step of a response body.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes (one write; the client may still read them in pieces).
    Send(Vec<u8>),
    /// Pause, as a model does between tokens.
    Wait(Duration),
    /// Never write again, never end.
    Hang,
    /// Break the connection (no proper end of the chunked body).
    Abort,
}

/// The answer to one request.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Waited before the response head is sent.
    pub head_delay: Duration,
    pub steps: Vec<Step>,
}

impl Reply {
    /// A 200 with `content_type` and the given body steps.
    pub fn ok(content_type: &str, steps: Vec<Step>) -> Self {
        Self {
            status: 200,
            headers: vec![("content-type".into(), content_type.into())],
            head_delay: Duration::ZERO,
            steps,
        }
    }

    /// An error status with a JSON body.
    pub fn status(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            head_delay: Duration::ZERO,
            steps: vec![Step::Send(body.as_bytes().to_vec())],
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn head_delay(mut self, delay: Duration) -> Self {
        self.head_delay = delay;
        self
    }
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The client's address: the same for two requests on one kept-alive connection.
    pub peer: SocketAddr,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: Instant,
}

/// A response body the server let go of.
#[derive(Clone, Copy, Debug)]
pub struct BodyDropped {
    pub at: Instant,
    /// Whether every step had been written (a normal end) or the body was dropped early.
    pub finished: bool,
}

pub struct FakeServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    dropped: tokio::sync::Mutex<mpsc::UnboundedReceiver<BodyDropped>>,
}

struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
    arrived: Notify,
    dropped: mpsc::UnboundedSender<BodyDropped>,
}

impl FakeServer {
    /// Serves `replies`, one per request, in order; a request beyond them gets a 500.
    pub async fn start(replies: impl IntoIterator<Item = Reply>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            replies: Mutex::new(replies.into_iter().collect()),
            requests: Mutex::default(),
            arrived: Notify::new(),
            dropped: tx,
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(handle))
            .route("/v1/responses", post(handle))
            .route("/v1/messages", post(handle))
            .route("/api/chat", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake server");
        let addr = listener.local_addr().expect("local addr");
        // Every write goes out at once, so pacing reaches the client as scripted.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            dropped: tokio::sync::Mutex::new(rx),
        }
    }

    /// `http://127.0.0.1:port/v1`, an OpenAI base URL.
    pub fn openai_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:port`, an Anthropic base URL (`/v1/messages` is appended).
    pub fn anthropic_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:port`, an Ollama host.
    pub fn ollama_host(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().expect("lock").clone()
    }

    /// Waits until `n` requests have arrived.
    pub async fn wait_requests(&self, n: usize) -> Vec<Recorded> {
        tokio::time::timeout(WAIT, async {
            loop {
                let arrived = self.shared.arrived.notified();
                let requests = self.requests();
                if requests.len() >= n {
                    return requests;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("fewer than {n} requests within {WAIT:?}"))
    }

    /// Waits for the next response body to be dropped.
    pub async fn body_dropped(&self) -> BodyDropped {
        tokio::time::timeout(WAIT, async { self.dropped.lock().await.recv().await })
            .await
            .unwrap_or_else(|_| panic!("no response body was dropped within {WAIT:?}"))
            .expect("the server is alive")
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body_json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.requests.lock().expect("lock").push(Recorded {
        peer,
        path: uri.path().to_owned(),
        headers,
        body: body_json,
        at: Instant::now(),
    });
    shared.arrived.notify_waiters();
    let reply = shared.replies.lock().expect("lock").pop_front();
    let Some(reply) = reply else {
        return Response::builder()
            .status(500)
            .body(Body::from("{\"error\":\"no reply scripted\"}"))
            .expect("response");
    };
    if !reply.head_delay.is_zero() {
        tokio::time::sleep(reply.head_delay).await;
    }
    let guard = DropGuard {
        tx: Some(shared.dropped.clone()),
    };
    let steps: VecDeque<Step> = reply.steps.into();
    let body = stream::unfold((steps, guard), |(mut steps, guard)| async move {
        loop {
            match steps.pop_front() {
                None => {
                    guard.finished();
                    return None;
                }
                Some(Step::Send(bytes)) => {
                    return Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), (steps, guard)));
                }
                Some(Step::Wait(d)) => tokio::time::sleep(d).await,
                Some(Step::Hang) => std::future::pending::<()>().await,
                Some(Step::Abort) => {
                    return Some((
                        Err(std::io::Error::other(
                            "the fake server breaks the connection",
                        )),
                        (steps, guard),
                    ));
                }
            }
        }
    });
    let mut response =
        Response::builder().status(StatusCode::from_u16(reply.status).expect("status"));
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from_stream(body)).expect("response")
}

/// Reports when the body (which owns it) is dropped.
struct DropGuard {
    tx: Option<mpsc::UnboundedSender<BodyDropped>>,
}

impl DropGuard {
    fn report(&mut self, finished: bool) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(BodyDropped {
                at: Instant::now(),
                finished,
            });
        }
    }

    /// Every step was written.
    fn finished(mut self) {
        self.report(true);
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.report(false);
    }
}

// ---------------------------------------------------------------------------------------
// What the real APIs send
// ---------------------------------------------------------------------------------------

pub const MODEL_OPENAI: &str = "gpt-4o-mini-2024-07-18";
pub const MODEL_OLLAMA: &str = "llama3.2";

/// One `chat.completion.chunk` SSE event, with the fields and field order OpenAI sends.
fn openai_event(delta: &str, finish_reason: &str) -> Vec<u8> {
    format!(
        "data: {{\"id\":\"chatcmpl-AaBbCcDdEeFf0123456789\",\"object\":\"chat.completion.chunk\",\
         \"created\":1733000000,\"model\":\"{MODEL_OPENAI}\",\"service_tier\":\"default\",\
         \"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[{{\"index\":0,\"delta\":{delta},\
         \"logprobs\":null,\"finish_reason\":{finish_reason}}}],\"usage\":null}}\n\n"
    )
    .into_bytes()
}

/// The first event: the role, empty content.
pub fn openai_role() -> Step {
    Step::Send(openai_event(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
    ))
}

/// A content delta.
pub fn openai_text(text: &str) -> Step {
    let content = serde_json::to_string(text).expect("json string");
    Step::Send(openai_event(&format!("{{\"content\":{content}}}"), "null"))
}

/// A reasoning delta, under the field name the server uses (`reasoning_content` for vLLM
/// and DeepSeek, `reasoning` for others).
pub fn openai_reasoning(field: &str, text: &str) -> Step {
    let content = serde_json::to_string(text).expect("json string");
    Step::Send(openai_event(&format!("{{\"{field}\":{content}}}"), "null"))
}

/// The event with the finish reason and an empty delta.
pub fn openai_finish(reason: &str) -> Step {
    Step::Send(openai_event("{}", &format!("\"{reason}\"")))
}

/// The usage event `stream_options.include_usage` asks for: `choices: []`.
pub fn openai_usage(prompt: u64, completion: u64) -> Step {
    Step::Send(
        format!(
            "data: {{\"id\":\"chatcmpl-AaBbCcDdEeFf0123456789\",\"object\":\"chat.completion.chunk\",\
             \"created\":1733000000,\"model\":\"{MODEL_OPENAI}\",\"service_tier\":\"default\",\
             \"system_fingerprint\":\"fp_0ba0d124f1\",\"choices\":[],\"usage\":{{\"prompt_tokens\":{prompt},\
             \"completion_tokens\":{completion},\"total_tokens\":{},\"prompt_tokens_details\":\
             {{\"cached_tokens\":0,\"audio_tokens\":0}},\"completion_tokens_details\":\
             {{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\
             \"rejected_prediction_tokens\":0}}}}}}\n\n",
            prompt + completion
        )
        .into_bytes(),
    )
}

/// The first fragment of a tool call: its index, id and function name, no arguments yet.
pub fn openai_tool_start(index: u64, id: &str, name: &str) -> Step {
    Step::Send(openai_event(
        &format!(
            "{{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{{\"index\":{index},\"id\":\"{id}\",\"type\":\"function\",\"function\":{{\"name\":\"{name}\",\"arguments\":\"\"}}}}],\"refusal\":null}}"
        ),
        "null",
    ))
}

/// A later fragment of a tool call: a piece of its arguments' JSON text.
pub fn openai_tool_args(index: u64, arguments: &str) -> Step {
    let arguments = serde_json::to_string(arguments).expect("json string");
    Step::Send(openai_event(
        &format!(
            "{{\"tool_calls\":[{{\"index\":{index},\"function\":{{\"arguments\":{arguments}}}}}]}}"
        ),
        "null",
    ))
}

/// One `/api/chat` line with whole tool calls, `(name, arguments)`, as Ollama sends them.
pub fn ollama_tool_calls(calls: &[(&str, serde_json::Value)]) -> Step {
    let calls: Vec<serde_json::Value> = calls
        .iter()
        .map(|(name, arguments)| serde_json::json!({"function": {"name": name, "arguments": arguments}}))
        .collect();
    let calls = serde_json::to_string(&calls).expect("json");
    Step::Send(
        format!(
            "{{\"model\":\"{MODEL_OLLAMA}\",\"created_at\":\"2025-01-10T09:30:00.200000000Z\",\
             \"message\":{{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":{calls}}},\"done\":false}}\n"
        )
        .into_bytes(),
    )
}

pub fn openai_done() -> Step {
    Step::Send(b"data: [DONE]\n\n".to_vec())
}

/// A whole successful answer: role, `tokens` with `pace` between them, finish, usage,
/// `[DONE]`.
pub fn openai_answer(tokens: &[&str], pace: Duration, usage: (u64, u64)) -> Reply {
    let mut steps = vec![openai_role()];
    for t in tokens {
        steps.push(Step::Wait(pace));
        steps.push(openai_text(t));
    }
    steps.extend([
        openai_finish("stop"),
        openai_usage(usage.0, usage.1),
        openai_done(),
    ]);
    Reply::ok("text/event-stream; charset=utf-8", steps)
}

/// One `/api/chat` NDJSON line with some content, as Ollama sends it.
pub fn ollama_text(text: &str) -> Step {
    Step::Send(ollama_line(text).into_bytes())
}

pub fn ollama_line(text: &str) -> String {
    let content = serde_json::to_string(text).expect("json string");
    format!(
        "{{\"model\":\"{MODEL_OLLAMA}\",\"created_at\":\"2025-01-10T09:30:00.123456789Z\",\
         \"message\":{{\"role\":\"assistant\",\"content\":{content}}},\"done\":false}}\n"
    )
}

/// One line of a thinking model's reasoning (`message.thinking`, empty content).
pub fn ollama_thinking(text: &str) -> Step {
    let thinking = serde_json::to_string(text).expect("json string");
    Step::Send(
        format!(
            "{{\"model\":\"{MODEL_OLLAMA}\",\"created_at\":\"2025-01-10T09:30:00.100000000Z\",\
             \"message\":{{\"role\":\"assistant\",\"content\":\"\",\"thinking\":{thinking}}},\"done\":false}}\n"
        )
        .into_bytes(),
    )
}

/// The last line: `done: true` with the reason, durations and counts.
pub fn ollama_done(reason: &str, prompt: u64, completion: u64) -> Step {
    Step::Send(
        format!(
            "{{\"model\":\"{MODEL_OLLAMA}\",\"created_at\":\"2025-01-10T09:30:01.987654321Z\",\
             \"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done_reason\":\"{reason}\",\
             \"done\":true,\"total_duration\":4883583458,\"load_duration\":1334875,\
             \"prompt_eval_count\":{prompt},\"prompt_eval_duration\":342546000,\
             \"eval_count\":{completion},\"eval_duration\":4535599000}}\n"
        )
        .into_bytes(),
    )
}

/// A whole successful Ollama answer.
pub fn ollama_answer(tokens: &[&str], pace: Duration, usage: (u64, u64)) -> Reply {
    let mut steps = Vec::new();
    for t in tokens {
        steps.push(ollama_text(t));
        steps.push(Step::Wait(pace));
    }
    steps.push(ollama_done("stop", usage.0, usage.1));
    Reply::ok("application/x-ndjson", steps)
}

/// `bytes` cut at each of `cuts` (byte offsets), with `pace` between the pieces, so that
/// the client reads them separately: lines and characters split across reads.
pub fn split(bytes: &[u8], cuts: &[usize], pace: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut from = 0;
    for &cut in cuts {
        steps.push(Step::Send(bytes[from..cut].to_vec()));
        steps.push(Step::Wait(pace));
        from = cut;
    }
    steps.push(Step::Send(bytes[from..].to_vec()));
    steps
}

// ---------------------------------------------------------------------------------------
// Anthropic's Messages API: `event:` and `data:` lines, with the fields in the order and the
// spacing the API sends them
// ---------------------------------------------------------------------------------------

pub const MODEL_ANTHROPIC: &str = "claude-sonnet-4-5-20250929";

/// `text` as a JSON string.
fn js(text: &str) -> String {
    serde_json::to_string(text).expect("json string")
}

fn anthropic_event(name: &str, data: &str) -> Step {
    Step::Send(format!("event: {name}\ndata: {data}\n\n").into_bytes())
}

/// `message_start`, with the prompt's usage.
pub fn anthropic_message_start(input_tokens: u64) -> Step {
    anthropic_event(
        "message_start",
        &format!(
            "{{\"type\":\"message_start\",\"message\":{{\"model\":\"{MODEL_ANTHROPIC}\",\
             \"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\
             \"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{{\
             \"input_tokens\":{input_tokens},\"cache_creation_input_tokens\":0,\
             \"cache_read_input_tokens\":0,\"cache_creation\":{{\"ephemeral_5m_input_tokens\":0,\
             \"ephemeral_1h_input_tokens\":0}},\"output_tokens\":1,\"service_tier\":\"standard\"}}}}}}"
        ),
    )
}

/// `ping`, as the API writes it (with a space).
pub fn anthropic_ping() -> Step {
    anthropic_event("ping", "{\"type\": \"ping\"}")
}

pub fn anthropic_text_start(index: u64) -> Step {
    anthropic_event(
        "content_block_start",
        &format!(
            "{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}"
        ),
    )
}

pub fn anthropic_text(index: u64, text: &str) -> Step {
    anthropic_event(
        "content_block_delta",
        &format!(
            "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}",
            js(text)
        ),
    )
}

pub fn anthropic_thinking_start(index: u64) -> Step {
    anthropic_event(
        "content_block_start",
        &format!(
            "{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}}}"
        ),
    )
}

pub fn anthropic_thinking(index: u64, thinking: &str) -> Step {
    anthropic_event(
        "content_block_delta",
        &format!(
            "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"thinking_delta\",\"thinking\":{}}}}}",
            js(thinking)
        ),
    )
}

pub fn anthropic_signature(index: u64, signature: &str) -> Step {
    anthropic_event(
        "content_block_delta",
        &format!(
            "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"signature_delta\",\"signature\":{}}}}}",
            js(signature)
        ),
    )
}

/// A `redacted_thinking` block's start: all of it (its encrypted `data`); no deltas follow.
pub fn anthropic_redacted_thinking_start(index: u64, data: &str) -> Step {
    anthropic_event(
        "content_block_start",
        &format!(
            "{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"redacted_thinking\",\"data\":{}}}}}",
            js(data)
        ),
    )
}

pub fn anthropic_tool_start(index: u64, id: &str, name: &str) -> Step {
    anthropic_event(
        "content_block_start",
        &format!(
            "{{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"tool_use\",\"id\":{},\"name\":{},\"input\":{{}}}}}}",
            js(id),
            js(name)
        ),
    )
}

pub fn anthropic_tool_args(index: u64, partial_json: &str) -> Step {
    anthropic_event(
        "content_block_delta",
        &format!(
            "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}",
            js(partial_json)
        ),
    )
}

pub fn anthropic_block_stop(index: u64) -> Step {
    anthropic_event(
        "content_block_stop",
        &format!("{{\"type\":\"content_block_stop\",\"index\":{index}}}"),
    )
}

/// `message_delta`: the stop reason and the output tokens (cumulative).
pub fn anthropic_message_delta(stop_reason: &str, output_tokens: u64) -> Step {
    anthropic_event(
        "message_delta",
        &format!(
            "{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":{},\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{output_tokens}}}}}",
            js(stop_reason)
        ),
    )
}

pub fn anthropic_message_stop() -> Step {
    anthropic_event("message_stop", "{\"type\":\"message_stop\"}")
}

/// The `error` event, e.g. `("overloaded_error", "Overloaded")`.
pub fn anthropic_error(kind: &str, message: &str) -> Step {
    anthropic_event(
        "error",
        &format!(
            "{{\"type\": \"error\", \"error\": {{\"type\": {}, \"message\": {}}}}}",
            js(kind),
            js(message)
        ),
    )
}

/// An HTTP error with the API's JSON body, e.g. `(529, "overloaded_error", "Overloaded")`.
pub fn anthropic_status(status: u16, kind: &str, message: &str) -> Reply {
    let body = format!(
        "{{\"type\":\"error\",\"error\":{{\"type\":{},\"message\":{}}},\"request_id\":\"req_011CSHoEeqs5C35K2UUqR7Fy\"}}",
        js(kind),
        js(message)
    );
    Reply::status(status, &body).header("request-id", "req_011CSHoEeqs5C35K2UUqR7Fy")
}

/// A text block at `index`: start, `tokens` with `pace` before each, stop.
pub fn anthropic_text_block(index: u64, tokens: &[&str], pace: Duration) -> Vec<Step> {
    let mut steps = vec![anthropic_text_start(index)];
    for t in tokens {
        steps.push(Step::Wait(pace));
        steps.push(anthropic_text(index, t));
    }
    steps.push(anthropic_block_stop(index));
    steps
}

/// A whole successful answer: `message_start`, a ping, one text block, `end_turn`,
/// `message_stop`.
pub fn anthropic_answer(tokens: &[&str], pace: Duration, usage: (u64, u64)) -> Reply {
    let mut steps = vec![anthropic_message_start(usage.0), anthropic_ping()];
    steps.extend(anthropic_text_block(0, tokens, pace));
    steps.extend([
        anthropic_message_delta("end_turn", usage.1),
        anthropic_message_stop(),
    ]);
    Reply::ok("text/event-stream; charset=utf-8", steps)
}

// ---------------------------------------------------------------------------------------
// OpenAI's Responses API: typed events numbered by `sequence_number`, with the fields in the
// order the API sends them
// ---------------------------------------------------------------------------------------

pub const MODEL_RESPONSES: &str = "gpt-4.1-mini-2025-04-14";
const RESPONSE_ID: &str = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b";

/// A Responses API stream, event by event: `response.created` and `response.in_progress`
/// first, then the output items, then how it ended. Numbers the events and gathers the
/// output items for the final response object, as the API does.
pub struct ResponsesStream {
    seq: u64,
    steps: Vec<Step>,
    /// The finished output items, as JSON text.
    output: Vec<String>,
}

impl Default for ResponsesStream {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponsesStream {
    pub fn new() -> Self {
        let mut stream = Self {
            seq: 0,
            steps: Vec::new(),
            output: Vec::new(),
        };
        let response = stream.response("in_progress", "null", "null", "null");
        stream.event("response.created", &format!("\"response\":{response}"));
        stream.event("response.in_progress", &format!("\"response\":{response}"));
        stream
    }

    /// The response object, as `response.*` events carry it.
    fn response(&self, status: &str, error: &str, incomplete: &str, usage: &str) -> String {
        let output = if status == "in_progress" {
            String::new()
        } else {
            self.output.join(",")
        };
        format!(
            "{{\"id\":\"{RESPONSE_ID}\",\"object\":\"response\",\"created_at\":1741476542,\
             \"status\":\"{status}\",\"background\":false,\"error\":{error},\
             \"incomplete_details\":{incomplete},\"instructions\":null,\"max_output_tokens\":null,\
             \"max_tool_calls\":null,\"model\":\"{MODEL_RESPONSES}\",\"output\":[{output}],\
             \"parallel_tool_calls\":true,\"previous_response_id\":null,\"prompt_cache_key\":null,\
             \"reasoning\":{{\"effort\":null,\"summary\":null}},\"safety_identifier\":null,\
             \"service_tier\":\"auto\",\"store\":false,\"temperature\":1.0,\"text\":{{\"format\":\
             {{\"type\":\"text\"}},\"verbosity\":\"medium\"}},\"tool_choice\":\"auto\",\"tools\":[],\
             \"top_logprobs\":0,\"top_p\":1.0,\"truncation\":\"disabled\",\"usage\":{usage},\
             \"user\":null,\"metadata\":{{}}}}"
        )
    }

    fn usage((input, output): (u64, u64)) -> String {
        format!(
            "{{\"input_tokens\":{input},\"input_tokens_details\":{{\"cached_tokens\":0}},\
             \"output_tokens\":{output},\"output_tokens_details\":{{\"reasoning_tokens\":0}},\
             \"total_tokens\":{}}}",
            input + output
        )
    }

    /// One event: `type`, `sequence_number`, then `fields` (JSON members, in order).
    fn event(&mut self, kind: &str, fields: &str) {
        let seq = self.seq;
        self.seq += 1;
        self.steps.push(Step::Send(
            format!(
                "event: {kind}\ndata: {{\"type\":\"{kind}\",\"sequence_number\":{seq},{fields}}}\n\n"
            )
            .into_bytes(),
        ));
    }

    pub fn wait(mut self, pace: Duration) -> Self {
        self.steps.push(Step::Wait(pace));
        self
    }

    /// A reasoning item whose summary has these parts, each streamed in one delta.
    pub fn reasoning_summary(mut self, summary: &[&str]) -> Self {
        let index = self.output.len();
        let id = format!("rs_67ccd2bf17f0819081ff3bb2cf6508e6{index:02}");
        self.event(
            "response.output_item.added",
            &format!(
                "\"output_index\":{index},\"item\":{{\"id\":\"{id}\",\"type\":\"reasoning\",\"summary\":[]}}"
            ),
        );
        let mut parts = Vec::new();
        for (i, text) in summary.iter().enumerate() {
            let at = format!("\"item_id\":\"{id}\",\"output_index\":{index},\"summary_index\":{i}");
            let part = format!("{{\"type\":\"summary_text\",\"text\":{}}}", js(text));
            self.event(
                "response.reasoning_summary_part.added",
                &format!("{at},\"part\":{{\"type\":\"summary_text\",\"text\":\"\"}}"),
            );
            self.event(
                "response.reasoning_summary_text.delta",
                &format!("{at},\"delta\":{},\"obfuscation\":\"q7bXo\"", js(text)),
            );
            self.event(
                "response.reasoning_summary_text.done",
                &format!("{at},\"text\":{}", js(text)),
            );
            self.event(
                "response.reasoning_summary_part.done",
                &format!("{at},\"part\":{part}"),
            );
            parts.push(part);
        }
        let item = format!(
            "{{\"id\":\"{id}\",\"type\":\"reasoning\",\"summary\":[{}]}}",
            parts.join(",")
        );
        self.event(
            "response.output_item.done",
            &format!("\"output_index\":{index},\"item\":{item}"),
        );
        self.output.push(item);
        self
    }

    /// A message item whose text comes as `tokens`, `pace` before each.
    pub fn message(mut self, tokens: &[&str], pace: Duration) -> Self {
        let index = self.output.len();
        let id = format!("msg_67ccd2bf17f0819081ff3bb2cf6508e6{index:02}");
        self.event(
            "response.output_item.added",
            &format!(
                "\"output_index\":{index},\"item\":{{\"id\":\"{id}\",\"type\":\"message\",\
                 \"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}}"
            ),
        );
        let at = format!("\"item_id\":\"{id}\",\"output_index\":{index},\"content_index\":0");
        self.event(
            "response.content_part.added",
            &format!(
                "{at},\"part\":{{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":\"\"}}"
            ),
        );
        for t in tokens {
            self.steps.push(Step::Wait(pace));
            self.event(
                "response.output_text.delta",
                &format!(
                    "{at},\"delta\":{},\"logprobs\":[],\"obfuscation\":\"Xy3\"",
                    js(t)
                ),
            );
        }
        let text = js(&tokens.concat());
        self.event(
            "response.output_text.done",
            &format!("{at},\"text\":{text},\"logprobs\":[]"),
        );
        let part = format!(
            "{{\"type\":\"output_text\",\"annotations\":[],\"logprobs\":[],\"text\":{text}}}"
        );
        self.event(
            "response.content_part.done",
            &format!("{at},\"part\":{part}"),
        );
        let item = format!(
            "{{\"id\":\"{id}\",\"type\":\"message\",\"status\":\"completed\",\"content\":[{part}],\"role\":\"assistant\"}}"
        );
        self.event(
            "response.output_item.done",
            &format!("\"output_index\":{index},\"item\":{item}"),
        );
        self.output.push(item);
        self
    }

    /// A function call item whose arguments come in `pieces`.
    pub fn function_call(mut self, call_id: &str, name: &str, pieces: &[&str]) -> Self {
        let index = self.output.len();
        let id = format!("fc_67ccd2bf17f0819081ff3bb2cf6508e6{index:02}");
        let (call_id, name) = (js(call_id), js(name));
        self.event(
            "response.output_item.added",
            &format!(
                "\"output_index\":{index},\"item\":{{\"id\":\"{id}\",\"type\":\"function_call\",\
                 \"status\":\"in_progress\",\"arguments\":\"\",\"call_id\":{call_id},\"name\":{name}}}"
            ),
        );
        for p in pieces {
            self.event(
                "response.function_call_arguments.delta",
                &format!(
                    "\"item_id\":\"{id}\",\"output_index\":{index},\"delta\":{},\"obfuscation\":\"kR\"",
                    js(p)
                ),
            );
        }
        let arguments = js(&pieces.concat());
        self.event(
            "response.function_call_arguments.done",
            &format!("\"item_id\":\"{id}\",\"output_index\":{index},\"arguments\":{arguments}"),
        );
        let item = format!(
            "{{\"id\":\"{id}\",\"type\":\"function_call\",\"status\":\"completed\",\
             \"arguments\":{arguments},\"call_id\":{call_id},\"name\":{name}}}"
        );
        self.event(
            "response.output_item.done",
            &format!("\"output_index\":{index},\"item\":{item}"),
        );
        self.output.push(item);
        self
    }

    /// `response.completed` with the usage.
    pub fn completed(mut self, usage: (u64, u64)) -> Self {
        let response = self.response("completed", "null", "null", &Self::usage(usage));
        self.event("response.completed", &format!("\"response\":{response}"));
        self
    }

    /// `response.incomplete` for `reason` (`max_output_tokens`, `content_filter`).
    pub fn incomplete(mut self, reason: &str, usage: (u64, u64)) -> Self {
        let details = format!("{{\"reason\":{}}}", js(reason));
        let response = self.response("incomplete", "null", &details, &Self::usage(usage));
        self.event("response.incomplete", &format!("\"response\":{response}"));
        self
    }

    /// `response.failed` with the error's code and message.
    pub fn failed(mut self, code: &str, message: &str) -> Self {
        let error = format!("{{\"code\":{},\"message\":{}}}", js(code), js(message));
        let response = self.response("failed", &error, "null", "null");
        self.event("response.failed", &format!("\"response\":{response}"));
        self
    }

    /// The `error` event.
    pub fn error(mut self, code: &str, message: &str) -> Self {
        self.event(
            "error",
            &format!(
                "\"code\":{},\"message\":{},\"param\":null",
                js(code),
                js(message)
            ),
        );
        self
    }

    /// Adds a raw step (a wait, a hang, a broken connection).
    pub fn then(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub fn steps(self) -> Vec<Step> {
        self.steps
    }

    pub fn reply(self) -> Reply {
        Reply::ok("text/event-stream; charset=utf-8", self.steps)
    }
}

/// A whole successful Responses answer: one message of `tokens`, then `response.completed`.
pub fn responses_answer(tokens: &[&str], pace: Duration, usage: (u64, u64)) -> Reply {
    ResponsesStream::new()
        .message(tokens, pace)
        .completed(usage)
        .reply()
}
