//! The engine's mid-stream retries under real faults (issue 14's acceptance test): an
//! OpenAI-compatible server that breaks its answers the ways real servers do, picked by a
//! seeded generator, answered through `OpenAiProvider` (its default `RetryPolicy` before
//! output) and the engine (its default `mid_stream_retries`, 2).
//!
//! ## The fault model
//!
//! Every request the server receives independently draws one fate, from a SplitMix64
//! generator seeded with [`SEED`] (so a run is the same every time: requests arrive one after
//! the other, in an order the fates themselves decide):
//!
//! | fate | share | what the server does |
//! |---|---|---|
//! | ok | 60 % | the whole answer, finish reason, usage, `[DONE]` |
//! | cut | 12 % | a few tokens, then ends the body cleanly: no finish reason, no `[DONE]` |
//! | dropped | 8 % | a few tokens, then breaks the connection (no end of the chunked body) |
//! | malformed | 8 % | a few tokens, then a `data:` line of broken JSON (then the rest, as a server that does not know would) |
//! | 503 | 12 % | `503 Service Unavailable` before any output |
//!
//! The faults are the issue's mix (30 % cuts, 20 % drops, 20 % malformed events, 30 % 503s)
//! applied to 40 % of the requests. Read as "every request faulty", no answer could ever
//! complete; the issue's "14 of 20 fail today" matches the first request of each answer
//! being faulty and nothing after. Here faults strike every request alike, retries included,
//! which is harder on the retries. "A few tokens": the fault comes after 1 to 12 of the 13
//! tokens, drawn too.
//!
//! What to expect, per answer: the provider retries a 503 itself (twice), so one attempt of
//! the engine fails mid-stream with p = 0.28 × (1 + 0.12 + 0.12²) ≈ 0.318, is refused (three
//! 503s) with p = 0.12³ ≈ 0.002, and answers with p ≈ 0.681. Without engine retries an answer
//! completes with p ≈ 0.68 (13.6 of 20 expected); with 2 retries, with
//! p ≈ 0.681 × (1 + 0.318 + 0.318²) ≈ 0.965 (19.3 of 20; at least 18 of 20 with p ≈ 0.97, so
//! the seed is not a lucky pick). Seed 14 gives 20 and 13; seeds 1 to 10 give 18 to 20 with
//! retries, 10 to 18 without (`MARIE_FAULT_SEED=n cargo test -p marie-llm --all-features
//! --test retries -- --nocapture` prints the figures).

#![cfg(feature = "openai")]
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use futures_util::stream;
use marie_core::{EndStatus, EngineConfig, ErrorCode, StreamEvent, StreamReset};
use marie_llm::{OpenAiProvider, RetryPolicy};
use marie_testkit::server::start;
use marie_testkit::socketio::{Received, TestClient, connect};
use serde_json::{Value, json};
use support::engine::Chat;
use support::fake::{
    Step, WAIT, openai_done, openai_finish, openai_role, openai_text, openai_usage,
};
use tokio::sync::Semaphore;

/// The generator's seed: the issue's number, chosen before the first run.
/// `MARIE_FAULT_SEED=n` tries another one.
const SEED: u64 = 14;

fn seed() -> u64 {
    std::env::var("MARIE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}
/// Answers asked, one after the other, in one conversation.
const ANSWERS: u32 = 20;
/// Between two tokens of an answer.
const PACE: Duration = Duration::from_millis(1);

// ---------------------------------------------------------------------------------------
// The faulty server
// ---------------------------------------------------------------------------------------

/// SplitMix64: small, fast, and the same numbers everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the server does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Ok,
    Cut,
    Dropped,
    Malformed,
    Overloaded,
}

impl Fate {
    /// The fault model of the module's documentation.
    fn draw(rng: &mut SplitMix64) -> Self {
        match rng.below(100) {
            0..60 => Self::Ok,
            60..72 => Self::Cut,
            72..80 => Self::Dropped,
            80..88 => Self::Malformed,
            _ => Self::Overloaded,
        }
    }

    /// Fails after the answer's stream began: the engine's to retry.
    fn mid_stream(self) -> bool {
        matches!(self, Self::Cut | Self::Dropped | Self::Malformed)
    }
}

/// A request the server answered: for which answer, and how.
#[derive(Clone, Copy, Debug)]
struct Served {
    answer: u32,
    fate: Fate,
}

enum Fates {
    Seeded(SplitMix64),
    /// `(fate, tokens before the fault)`, in order.
    Scripted(VecDeque<(Fate, usize)>),
}

struct Faulty {
    fates: Mutex<Fates>,
    served: Mutex<Vec<Served>>,
    /// A good answer stops after this many tokens until a permit is added.
    gate: Option<(usize, Arc<Semaphore>)>,
}

struct FaultServer {
    addr: SocketAddr,
    state: Arc<Faulty>,
}

impl FaultServer {
    async fn start(fates: Fates, gate: Option<(usize, Arc<Semaphore>)>) -> Self {
        let state = Arc::new(Faulty {
            fates: Mutex::new(fates),
            served: Mutex::default(),
            gate,
        });
        let app = axum::Router::new()
            .route("/v1/chat/completions", post(complete))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    fn base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn served(&self) -> Vec<Served> {
        self.state.served.lock().unwrap().clone()
    }
}

/// The answer to question `n`, a token at a time: it names its question, so that an answer
/// to another one, or a part of it, cannot pass for it.
fn tokens(n: u32) -> Vec<String> {
    let mut tokens = vec!["Answer".to_owned(), format!(" {n}:")];
    for word in "the wind carries seeds far from the old oak tree.".split(' ') {
        tokens.push(format!(" {word}"));
    }
    tokens
}

fn expected(n: u32) -> String {
    tokens(n).concat()
}

enum Part {
    Send(Vec<u8>),
    Pace,
    Gate(Arc<Semaphore>),
    Abort,
}

fn sent(step: Step) -> Part {
    match step {
        Step::Send(bytes) => Part::Send(bytes),
        other => panic!("not bytes: {other:?}"),
    }
}

async fn complete(State(state): State<Arc<Faulty>>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap();
    let question = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap();
    let n: u32 = question
        .strip_prefix("question ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a question: {question}"));
    let tokens = tokens(n);
    let (fate, after) = match &mut *state.fates.lock().unwrap() {
        Fates::Seeded(rng) => {
            // Both are drawn for every request, whatever the fate: one request, two draws.
            let fate = Fate::draw(rng);
            let after = 1 + rng.below(tokens.len() as u64 - 1) as usize;
            (fate, after)
        }
        Fates::Scripted(script) => script.pop_front().expect("a scripted fate"),
    };
    state
        .served
        .lock()
        .unwrap()
        .push(Served { answer: n, fate });
    if fate == Fate::Overloaded {
        return Response::builder()
            .status(503)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#,
            ))
            .unwrap();
    }
    let mut parts = vec![sent(openai_role())];
    let shown = if fate == Fate::Ok {
        tokens.len()
    } else {
        after
    };
    for (i, token) in tokens[..shown].iter().enumerate() {
        if fate == Fate::Ok
            && let Some((at, gate)) = &state.gate
            && i == *at
        {
            parts.push(Part::Gate(gate.clone()));
        }
        parts.push(Part::Pace);
        parts.push(sent(openai_text(token)));
    }
    match fate {
        Fate::Ok => parts.extend([
            sent(openai_finish("stop")),
            sent(openai_usage(12, tokens.len() as u64)),
            sent(openai_done()),
        ]),
        Fate::Cut => {}
        Fate::Dropped => parts.push(Part::Abort),
        Fate::Malformed => {
            parts.push(Part::Send(
                b"data: {\"id\":\"chatcmpl-AaBbCcDdEeFf0123456789\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" oa\n\n"
                    .to_vec(),
            ));
            for token in &tokens[after..] {
                parts.push(sent(openai_text(token)));
            }
            parts.extend([sent(openai_finish("stop")), sent(openai_done())]);
        }
        Fate::Overloaded => unreachable!(),
    }
    let body = stream::unfold(parts.into_iter(), |mut parts| async move {
        loop {
            match parts.next()? {
                Part::Send(bytes) => return Some((Ok(Bytes::from(bytes)), parts)),
                Part::Pace => tokio::time::sleep(PACE).await,
                Part::Gate(gate) => gate.acquire().await.unwrap().forget(),
                Part::Abort => {
                    return Some((
                        Err(std::io::Error::other("the server drops the connection")),
                        parts,
                    ));
                }
            }
        }
    });
    Response::builder()
        .status(200)
        .header("content-type", "text/event-stream; charset=utf-8")
        .body(Body::from_stream(body))
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// What clients make of it
// ---------------------------------------------------------------------------------------

/// The text a client holds after these events, applying `stream_reset`'s rule: a reset drops
/// every event after its `after_seq`.
fn rebuild(events: &[StreamEvent]) -> String {
    let mut kept: Vec<(u64, &str)> = Vec::new();
    for event in events {
        match event {
            StreamEvent::Chunk(c) => kept.push((c.seq, &c.content)),
            StreamEvent::Reset(r) => kept.retain(|(seq, _)| *seq <= r.after_seq),
            _ => {}
        }
    }
    kept.iter().map(|(_, text)| *text).collect()
}

/// The same rule over Socket.IO payloads.
fn rebuild_json(events: &[(String, Value)]) -> String {
    let mut kept: Vec<(u64, String)> = Vec::new();
    for (name, data) in events {
        match name.as_str() {
            "stream_chunk" => kept.push((
                data["seq"].as_u64().unwrap(),
                data["content"].as_str().unwrap().to_owned(),
            )),
            "stream_reset" => {
                let after = data["after_seq"].as_u64().unwrap();
                kept.retain(|(seq, _)| *seq <= after);
            }
            _ => {}
        }
    }
    kept.into_iter().map(|(_, text)| text).collect()
}

/// One answer, as the room saw it and as the stream log holds it.
struct Seen {
    n: u32,
    events: Vec<StreamEvent>,
    logged: Vec<StreamEvent>,
    logged_end: Option<StreamEvent>,
}

/// Asks questions 1..=ANSWERS in one conversation, one after the other, against a server
/// faulting as [`seed`] says.
async fn run(config: EngineConfig) -> (Vec<Seen>, Vec<Served>) {
    let server = FaultServer::start(Fates::Seeded(SplitMix64(seed())), None).await;
    let provider = OpenAiProvider::builder()
        .base_url(server.base())
        .api_key("sk-test")
        .retry(RetryPolicy::default())
        .build()
        .unwrap();
    let chat = Chat::new(provider, config).await;
    let mut seen = Vec::new();
    for n in 1..=ANSWERS {
        let stream = chat.send(&format!("question {n}")).await;
        let is_end = |e: &StreamEvent| e.stream_id() == Some(&stream) && e.is_terminal();
        tokio::time::timeout(WAIT * 3, chat.sink.wait_for(is_end))
            .await
            .unwrap_or_else(|_| panic!("answer {n} did not end"));
        let events: Vec<StreamEvent> = chat
            .sink
            .events()
            .into_iter()
            .filter(|e| e.stream_id() == Some(&stream))
            .collect();
        let log = chat
            .engine
            .read_stream(&chat.user, Some(&chat.conversation), &stream, 0, 10_000)
            .await
            .unwrap();
        seen.push(Seen {
            n,
            events,
            logged: log.events,
            logged_end: log.end,
        });
    }
    (seen, server.served())
}

#[derive(Debug, Default)]
struct Tally {
    complete: usize,
    failed: usize,
    resets: usize,
    /// Requests that failed after their stream began.
    mid_stream: usize,
    /// Answers that failed on such a request (their last one, with no retry left).
    failed_mid_stream: usize,
}

/// Checks every answer against what the server did, and counts.
fn check(seen: &[Seen], served: &[Served], retries: u32) -> Tally {
    let mut tally = Tally::default();
    for answer in seen {
        let n = answer.n;
        let fates: Vec<Fate> = served
            .iter()
            .filter(|s| s.answer == n)
            .map(|s| s.fate)
            .collect();
        let mid = fates.iter().filter(|f| f.mid_stream()).count();
        let last = *fates.last().unwrap();
        let events = &answer.events;
        assert!(
            matches!(events.first(), Some(StreamEvent::Start(_))),
            "{events:#?}"
        );
        assert_eq!(
            events.iter().filter(|e| e.is_terminal()).count(),
            1,
            "answer {n}: exactly one terminal event: {events:#?}"
        );
        let terminal = events.last().unwrap();
        assert!(terminal.is_terminal(), "answer {n}: {events:#?}");
        let seqs: Vec<u64> = events.iter().filter_map(StreamEvent::seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
        let resets: Vec<&StreamReset> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Reset(r) => Some(r),
                _ => None,
            })
            .collect();
        for (i, reset) in resets.iter().enumerate() {
            assert_eq!(reset.attempt as usize, i + 1, "answer {n}");
            assert_eq!(
                reset.after_seq, 0,
                "answer {n}: one step, all of it dropped"
            );
        }
        assert_eq!(
            answer.logged_end.as_ref(),
            Some(terminal),
            "answer {n}: the log ends as the room saw it"
        );
        assert_eq!(
            answer.logged,
            events
                .iter()
                .filter(|e| e.seq().is_some())
                .cloned()
                .collect::<Vec<_>>(),
            "answer {n}: the log holds every numbered event"
        );
        tally.mid_stream += mid;
        tally.resets += resets.len();
        match terminal {
            StreamEvent::End(end) => {
                tally.complete += 1;
                assert_eq!(end.status, EndStatus::Complete, "answer {n}");
                assert_eq!(
                    end.full_content,
                    expected(n),
                    "answer {n}: shown as complete, but not the whole answer"
                );
                assert_eq!(last, Fate::Ok, "answer {n}: {fates:?}");
                assert_eq!(
                    resets.len(),
                    mid,
                    "answer {n}: one reset per request that failed mid-stream: {fates:?}"
                );
                assert_eq!(rebuild(events), end.full_content, "answer {n}, live");
                assert_eq!(rebuild(&answer.logged), end.full_content, "answer {n}, log");
            }
            StreamEvent::Error(err) => {
                tally.failed += 1;
                assert_eq!(err.code, ErrorCode::ProviderUnavailable, "answer {n}");
                assert_ne!(last, Fate::Ok, "answer {n}: {fates:?}");
                if last.mid_stream() {
                    tally.failed_mid_stream += 1;
                    assert_eq!(
                        resets.len(),
                        retries as usize,
                        "answer {n}: failed only with no retry left: {fates:?}"
                    );
                    assert_eq!(resets.len(), mid - 1, "answer {n}: {fates:?}");
                } else {
                    // Three 503s: a refusal before the stream began, not the engine's to retry.
                    assert_eq!(
                        &fates[fates.len() - 3..],
                        [Fate::Overloaded; 3],
                        "answer {n}"
                    );
                    assert_eq!(resets.len(), mid, "answer {n}: {fates:?}");
                }
            }
            other => panic!("answer {n}: ended with {other:#?}"),
        }
    }
    tally
}

fn describe(served: &[Served]) -> String {
    let count = |fate| served.iter().filter(|s| s.fate == fate).count();
    format!(
        "{} requests: {} ok, {} cut, {} dropped, {} malformed, {} 503",
        served.len(),
        count(Fate::Ok),
        count(Fate::Cut),
        count(Fate::Dropped),
        count(Fate::Malformed),
        count(Fate::Overloaded),
    )
}

/// The acceptance test: at least 18 of 20 answers complete, each whole; every retry is one
/// `stream_reset`; a failed answer ends with one `stream_error`. The same seeded mix without
/// mid-stream retries completes fewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_fault_mix_at_least_18_of_20_answers_complete() {
    let config = EngineConfig::default();
    assert_eq!(config.mid_stream_retries, 2, "the default");
    let (seen, served) = run(config).await;
    let with = check(&seen, &served, 2);
    eprintln!(
        "fault mix, seed {}, mid_stream_retries 2: {}/{ANSWERS} complete, {} stream_error, \
         {} stream_reset for {} mid-stream failures ({} of them on the last attempt); {}",
        seed(),
        with.complete,
        with.failed,
        with.resets,
        with.mid_stream,
        with.failed_mid_stream,
        describe(&served)
    );
    assert!(with.complete >= 18, "{with:?}");
    assert_eq!(with.complete + with.failed, ANSWERS as usize);
    assert_eq!(
        with.resets,
        with.mid_stream - with.failed_mid_stream,
        "every mid-stream failure is one reset, but for those with no retry left"
    );
    assert!(with.resets > 0, "the mix never broke a stream: {served:?}");

    let (seen, served) = run(EngineConfig::default().mid_stream_retries(0)).await;
    let without = check(&seen, &served, 0);
    eprintln!(
        "fault mix, seed {}, mid_stream_retries 0: {}/{ANSWERS} complete, {} stream_error; {}",
        seed(),
        without.complete,
        without.failed,
        describe(&served)
    );
    assert_eq!(without.resets, 0);
    assert!(
        without.complete < with.complete,
        "without retries {without:?}, with {with:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A resume across a reset, over Socket.IO
// ---------------------------------------------------------------------------------------

/// The stream's numbered events and its end, until `stream_end`.
async fn until_end(client: &mut TestClient) -> (Vec<(String, Value)>, Value) {
    let mut events = Vec::new();
    loop {
        let Received { event: name, data } = client
            .next_of(&["stream_chunk", "stream_reset", "stream_end", "stream_error"])
            .await;
        match name.as_str() {
            "stream_end" => return (events, data),
            "stream_error" => panic!("the answer failed: {data}"),
            _ => events.push((name, data)),
        }
    }
}

fn seq(event: &(String, Value)) -> u64 {
    event.1["seq"].as_u64().unwrap()
}

/// A client that lost its connection mid-answer resumes from the position it holds, after a
/// `stream_reset` went out, while the retried step is still streaming: the log replays the
/// reset, and the rule "drop what follows `after_seq`" leaves it with exactly the final
/// answer. Once from before the reset (it holds chunks of the failed attempt), once from
/// after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_across_a_reset_rebuilds_exactly_the_final_answer() {
    // The first attempt is cut after 3 tokens; the retry answers, holding after 4 tokens
    // until the test lets it go on, so that the resumes happen mid-answer.
    let gate = Arc::new(Semaphore::new(0));
    let fates = Fates::Scripted([(Fate::Cut, 3), (Fate::Ok, 0)].into());
    let fake = FaultServer::start(fates, Some((4, gate.clone()))).await;
    let provider = OpenAiProvider::builder()
        .base_url(fake.base())
        .build()
        .unwrap();
    // MARIE with the default engine: 2 mid-stream retries.
    let addr = start(provider).await.addr;

    let mut live = connect(addr, "alice").await;
    let ack = live
        .ack("join_conversation", json!({ "conversation_id": "room" }))
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    live.emit(
        "send_message",
        json!({ "conversation_id": "room", "message": "question 1" }),
    )
    .await;
    let start = live.next("stream_start").await;
    let stream_id = start["stream_id"].as_str().unwrap().to_owned();

    // Chunks 1-3 of the failed attempt, the reset (4), chunks 5-8 of the retry.
    let mut before = Vec::new();
    while before.last().is_none_or(|e| seq(e) < 8) {
        let Received { event, data } = live.next_of(&["stream_chunk", "stream_reset"]).await;
        before.push((event, data));
    }
    let names: Vec<&str> = before.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "stream_chunk",
            "stream_chunk",
            "stream_chunk",
            "stream_reset",
            "stream_chunk",
            "stream_chunk",
            "stream_chunk",
            "stream_chunk"
        ]
    );
    let reset = &before[3].1;
    assert_eq!(reset["seq"], 4);
    assert_eq!(reset["after_seq"], 0);
    assert_eq!(reset["attempt"], 1);

    // Two clients whose connections dropped: one held up to seq 2 (before the reset), one
    // up to seq 6 (after it, in the retry).
    let mut resumed = Vec::new();
    for held_up_to in [2u64, 6] {
        let client = connect(addr, "alice").await;
        let ack = client
            .ack(
                "resume_stream",
                json!({ "conversation_id": "room", "stream_id": stream_id, "last_seq": held_up_to }),
            )
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
        assert_eq!(ack["from_seq"], held_up_to + 1);
        assert_eq!(ack["last_seq"], 8);
        assert_eq!(ack["ended"], false, "the answer is still streaming");
        let held: Vec<(String, Value)> = before
            .iter()
            .filter(|e| seq(e) <= held_up_to)
            .cloned()
            .collect();
        resumed.push((client, held, held_up_to));
    }

    gate.add_permits(1);
    let (rest, end) = until_end(&mut live).await;
    let full = expected(1);
    assert_eq!(end["status"], "complete");
    assert_eq!(end["full_content"], full);
    let all: Vec<(String, Value)> = before.into_iter().chain(rest).collect();
    assert_eq!(rebuild_json(&all), full, "the live client");

    for (mut client, held, held_up_to) in resumed {
        let (received, end) = until_end(&mut client).await;
        let seqs: Vec<u64> = received.iter().map(seq).collect();
        assert_eq!(
            seqs,
            (held_up_to + 1..=held_up_to + seqs.len() as u64).collect::<Vec<_>>(),
            "from {held_up_to}: every event after it, once, in order"
        );
        assert_eq!(seqs.last(), all.last().map(seq).as_ref());
        assert_eq!(
            received.iter().any(|(name, _)| name == "stream_reset"),
            held_up_to < 4,
            "the reset is replayed to a client that held less"
        );
        let held_and_received: Vec<(String, Value)> = held.into_iter().chain(received).collect();
        assert_eq!(
            rebuild_json(&held_and_received),
            full,
            "resumed from {held_up_to}"
        );
        assert_eq!(end["full_content"], full);
    }
    let fates: Vec<Fate> = fake.served().iter().map(|s| s.fate).collect();
    assert_eq!(fates, [Fate::Cut, Fate::Ok]);
}
