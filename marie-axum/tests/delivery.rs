//! Never lose a token: resuming a stream after a reconnect, per-client delivery under load
//! and with a stalled client, and the HTTP/SSE fallback with `Last-Event-ID`.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use marie_axum::{DeliveryConfig, Limits, MarieConfig, MarieHandle};
use marie_core::{ConversationId, Identity, LlmProvider, UserId};
use marie_llm::ScriptedProvider;
use marie_testkit::raw;
use marie_testkit::server::start_with;
use marie_testkit::socketio::{TestClient, WAIT, connect_raw};
use serde_json::{Value, json};

/// The tests of this file measure delivery under load: they take turns, so that on a
/// 2-core machine one test's burst does not starve another's clients and timings.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serve(provider: impl LlmProvider, config: MarieConfig) -> (SocketAddr, MarieHandle) {
    let server = start_with(provider, config).await;
    (server.addr, server.handle)
}

fn config() -> MarieConfig {
    let mut config = MarieConfig::default();
    config.limits = Limits::unlimited();
    config
}

/// What a client holds of a stream, by the protocol's rule: a chunk is taken when it starts
/// right after the last one held (`first_seq`, or `seq` when not merged); anything else is a
/// duplicate or comes before a resume fills the gap, and is dropped.
#[derive(Default, Debug)]
struct Held {
    last: u64,
    content: String,
}

impl Held {
    fn accept(&mut self, chunk: &Value) -> bool {
        let seq = chunk["seq"].as_u64().unwrap();
        let first = chunk
            .get("first_seq")
            .and_then(Value::as_u64)
            .unwrap_or(seq);
        if first != self.last + 1 {
            return false;
        }
        self.last = seq;
        self.content.push_str(chunk["content"].as_str().unwrap());
        true
    }
}

/// Checks that from the last time the replay started (`first_seq == from`) on, every chunk
/// received continues the previous one: the server sent no duplicate and no gap after the
/// resume.
fn assert_contiguous_from(chunks: &[Value], from: u64) {
    let start = chunks
        .iter()
        .rposition(|c| {
            c.get("first_seq")
                .and_then(Value::as_u64)
                .or(c["seq"].as_u64())
                == Some(from)
        })
        .unwrap_or_else(|| panic!("no chunk starting at {from} in {chunks:?}"));
    let mut last = from - 1;
    for c in &chunks[start..] {
        let seq = c["seq"].as_u64().unwrap();
        let first = c.get("first_seq").and_then(Value::as_u64).unwrap_or(seq);
        assert_eq!(first, last + 1, "after the resume: {c}");
        last = seq;
    }
}

fn words(n: usize, size: usize) -> Vec<String> {
    (1..=n)
        .map(|i| {
            let w = format!("w{i} ");
            format!("{w}{}", "x".repeat(size.saturating_sub(w.len())))
        })
        .collect()
}

async fn send(client: &TestClient, conversation: &str, message: &str) -> String {
    let ack = client.send(conversation, message).await;
    ack["stream_id"].as_str().unwrap().to_owned()
}

/// A member who leaves during an answer and joins again gets the live tail from the moment of
/// the join: nothing of what it missed is sent unasked (`docs/protocol.md` section 3). It
/// fills the gap with `resume_stream` from what it holds, and then holds the whole answer,
/// each chunk once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_and_rejoins_mid_answer_gets_the_live_tail_then_resumes() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 120;
    let script = words(n, 0);
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(10));
    let (addr, _handle) = serve(provider, config()).await;
    let mut a = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
    a.next("connected").await;
    a.join("c-leave").await;
    let mut b = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
    b.next("connected").await;
    b.join("c-leave").await;
    let stream_id = send(&a, "c-leave", "go").await;

    // B holds the first chunks, then leaves.
    let mut held = Held::default();
    while held.last < 10 {
        let ev = b.next_of(&["stream_chunk"]).await;
        held.accept(&ev.data);
    }
    let ack = b
        .ack(
            "leave_conversation",
            json!({ "conversation_id": "c-leave" }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    loop {
        let ev = b.next_of(&["stream_chunk", "left"]).await;
        if ev.event == "left" {
            break;
        }
        held.accept(&ev.data);
    }
    // The answer goes on without B for a while.
    let away_until = held.last + 20;
    loop {
        let ev = a.next_of(&["stream_chunk"]).await;
        if ev.data["seq"].as_u64().unwrap() >= away_until {
            break;
        }
    }
    let ack = b.join("c-leave").await;
    assert_eq!(
        ack["active_stream"]["stream_id"],
        stream_id.as_str(),
        "{ack}"
    );

    // Between `left` and `joined`, nothing; after it, the live tail, contiguous.
    let first = b.next_of(&["stream_chunk", "joined"]).await;
    assert_eq!(
        first.event, "joined",
        "nothing comes while out of the room: {first:?}"
    );
    let mut live = Vec::new();
    while live.len() < 5 {
        live.push(b.next_of(&["stream_chunk"]).await.data);
    }
    let start = |c: &Value| {
        c.get("first_seq")
            .and_then(Value::as_u64)
            .or(c["seq"].as_u64())
    };
    assert!(
        start(&live[0]).unwrap() > held.last + 1,
        "the missed chunks were not replayed unasked: held {}, then {}",
        held.last,
        live[0]
    );
    for pair in live.windows(2) {
        assert_eq!(
            start(&pair[1]).unwrap(),
            pair[0]["seq"].as_u64().unwrap() + 1,
            "the live tail is in order, each chunk once: {live:?}"
        );
    }

    // B fills the gap from what it holds.
    let from = held.last + 1;
    let ack = b
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-leave", "stream_id": stream_id, "last_seq": held.last }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let mut received = live;
    let end = loop {
        let ev = b.next_of(&["stream_chunk", "stream_end"]).await;
        if ev.event == "stream_end" {
            break ev.data;
        }
        received.push(ev.data);
    };
    for chunk in &received {
        held.accept(chunk);
    }
    assert_contiguous_from(&received, from);
    assert_eq!(held.last, n as u64);
    assert_eq!(held.content, script.concat());
    assert_eq!(end["full_content"], held.content);
}

/// A client loses its connection at chunk k of n, reconnects with its session (its room is
/// restored, so live chunks start flowing at once), resumes from what it holds, and ends up
/// with chunks 1..n exactly once, in order; after the resume the server sends no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_client_resumes_every_chunk_exactly_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 60;
    let k = 15;
    let script = words(n, 0);
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(15));
    let (addr, _handle) = serve(provider, config()).await;

    let mut a = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
    let session = a.next("connected").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    a.join("c-resume").await;
    let stream_id = send(&a, "c-resume", "go").await;
    let mut held = Held::default();
    while held.last < k as u64 {
        let ev = a.next_of(&["stream_chunk"]).await;
        held.accept(&ev.data);
    }
    a.disconnect().await;

    let mut b = connect_raw(
        addr,
        Some(json!({ "token": "t-alice", "previous_session": session })),
    )
    .await;
    let restored = b.next("reconnected").await;
    assert_eq!(restored["rooms"], json!(["c-resume"]));
    let from = held.last + 1;
    let ack = b
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-resume", "stream_id": stream_id, "last_seq": held.last }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(ack["from_seq"], from);

    let mut received = Vec::new();
    let end = loop {
        let ev = b
            .next_of(&["stream_chunk", "stream_end", "stream_error"])
            .await;
        match ev.event.as_str() {
            "stream_chunk" => {
                held.accept(&ev.data);
                received.push(ev.data);
            }
            "stream_end" => break ev.data,
            _ => panic!("stream failed: {}", ev.data),
        }
    };
    assert_contiguous_from(&received, from);
    assert_eq!(held.last, n as u64);
    assert_eq!(held.content, script.concat());
    assert_eq!(end["full_content"], held.content);

    // Once ended, the log still replays it (and its end) within the retention window.
    let ack = b
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-resume", "stream_id": stream_id, "last_seq": n - 2 }),
        )
        .await;
    assert_eq!(ack["ended"], true, "{ack}");
    // Chunks n-1 and n, possibly merged into one frame, then the end.
    let mut tail = Held {
        last: n as u64 - 2,
        content: String::new(),
    };
    loop {
        let ev = b.next_of(&["stream_chunk", "stream_end"]).await;
        if ev.event == "stream_end" {
            break;
        }
        assert!(tail.accept(&ev.data), "gap or duplicate: {}", ev.data);
    }
    assert_eq!(tail.last, n as u64);
    assert_eq!(tail.content, script[n - 2..].concat());

    // A stream the log does not know is `resume_unavailable`, as an ack and a stream_error.
    let ack = b
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-resume", "stream_id": "gone-stream", "last_seq": 3 }),
        )
        .await;
    assert_eq!(ack["code"], "resume_unavailable", "{ack}");
    let err = b.next("stream_error").await;
    assert_eq!(err["code"], "resume_unavailable");
    // Positions the log never produced are refused too.
    let ack = b
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-resume", "stream_id": stream_id, "last_seq": 10_000 }),
        )
        .await;
    assert_eq!(ack["code"], "resume_unavailable", "{ack}");
    b.disconnect().await;
}

/// Every chunk a client receives on a connection, from its first event on, appended as it
/// comes: what a client that does not deduplicate shows.
fn appended(received: &[Value]) -> (Vec<(u64, u64)>, String) {
    let spans = received
        .iter()
        .map(|c| {
            let seq = c["seq"].as_u64().unwrap();
            (
                c.get("first_seq").and_then(Value::as_u64).unwrap_or(seq),
                seq,
            )
        })
        .collect();
    let text = received
        .iter()
        .map(|c| c["content"].as_str().unwrap())
        .collect();
    (spans, text)
}

/// Runs an answer, takes `k` chunks or more on a first connection, drops it, reconnects with the session (and `auth_extra`), and returns the reconnect's greeting
/// and every chunk the new connection received until the end, in order, with `resume`
/// called (if it is given) right after the greeting.
async fn reconnect_mid_answer(
    addr: SocketAddr,
    conversation: &str,
    k: u64,
    auth_extra: impl FnOnce(&str, u64) -> Value,
    resume: bool,
) -> (Value, Vec<Value>, Held) {
    let mut a = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
    let session = a.next("connected").await["session"]
        .as_str()
        .unwrap()
        .to_owned();
    a.join(conversation).await;
    let stream_id = send(&a, conversation, "go").await;
    let mut held = Held::default();
    while held.last < k {
        let ev = a.next_of(&["stream_chunk"]).await;
        held.accept(&ev.data);
    }
    a.disconnect().await;

    let mut auth = json!({ "token": "t-alice", "previous_session": session });
    if let (Value::Object(auth), Value::Object(extra)) =
        (&mut auth, auth_extra(&stream_id, held.last))
    {
        auth.extend(extra);
    }
    let mut b = connect_raw(addr, Some(auth)).await;
    let greeting = b.next("reconnected").await;
    if resume {
        let ack = b
            .ack(
                "resume_stream",
                json!({ "conversation_id": conversation, "stream_id": stream_id, "last_seq": held.last }),
            )
            .await;
        assert_eq!(ack["status"], "ok", "{ack}");
    }
    let mut received = Vec::new();
    loop {
        let ev = b
            .next_of(&["stream_chunk", "stream_end", "stream_error"])
            .await;
        match ev.event.as_str() {
            "stream_chunk" => received.push(ev.data),
            "stream_end" => break,
            _ => panic!("stream failed: {}", ev.data),
        }
    }
    b.disconnect().await;
    (greeting, received, held)
}

/// A reconnected member is put back in its room while an answer runs; it resumes from what
/// it holds. A client that simply appends every chunk it gets on the new connection ends up
/// with each position once, in order: the live tail waits for the resume. Three times over
/// (the duplicate this guards against showed in one run of three).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_client_that_appends_gets_each_position_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, k) = (80, 10);
    let script = words(n, 0);
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(5));
    let (addr, _handle) = serve(provider, config()).await;
    for run in 0..3 {
        let conversation = format!("c-append-{run}");
        let (greeting, received, before) =
            reconnect_mid_answer(addr, &conversation, k, |_, _| json!({}), true).await;
        let running = &greeting["active_streams"][0];
        assert_eq!(
            running["conversation_id"],
            conversation.as_str(),
            "{greeting}"
        );
        assert_eq!(running["resumed"], false, "{greeting}");
        let (spans, text) = appended(&received);
        let mut next = before.last + 1;
        for (first, seq) in &spans {
            assert_eq!(*first, next, "run {run}: a gap or a repeat in {spans:?}");
            next = seq + 1;
        }
        assert_eq!(next, n as u64 + 1, "run {run}: {spans:?}");
        assert_eq!(
            format!("{}{text}", before.content),
            script.concat(),
            "run {run}"
        );
    }
}

/// With `auth.last_seqs`, the reconnect itself resumes: no `resume_stream`, and the chunks
/// after the client's position arrive once each, in order, before the live tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_seqs_in_the_reconnect_resume_before_the_live_tail() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (n, k) = (60, 12);
    let script = words(n, 0);
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(5));
    let (addr, _handle) = serve(provider, config()).await;
    let (greeting, received, before) = reconnect_mid_answer(
        addr,
        "c-last-seqs",
        k,
        |stream, last| json!({ "last_seqs": { stream: last } }),
        false,
    )
    .await;
    assert_eq!(greeting["active_streams"][0]["resumed"], true, "{greeting}");
    let (spans, text) = appended(&received);
    assert_eq!(
        spans.first().map(|s| s.0),
        Some(before.last + 1),
        "{spans:?}"
    );
    assert!(
        spans.windows(2).all(|w| w[1].0 == w[0].1 + 1),
        "each position once, in order: {spans:?}"
    );
    assert_eq!(format!("{}{text}", before.content), script.concat());
}

/// Another user cannot resume a stream of a conversation they have no access to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_checks_access() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let (addr, _handle) = serve(ScriptedProvider::new(words(3, 0)), config()).await;
    let mut a = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
    a.next("connected").await;
    a.join("c-private").await;
    let stream_id = send(&a, "c-private", "hi").await;
    a.next("stream_end").await;
    let mut c = connect_raw(addr, Some(json!({ "token": "t-carol" }))).await;
    c.next("connected").await;
    let ack = c
        .ack(
            "resume_stream",
            json!({ "conversation_id": "c-private", "stream_id": stream_id, "last_seq": 0 }),
        )
        .await;
    assert_eq!(ack["code"], "forbidden", "{ack}");
}

/// 5,000 chunks as fast as the provider can make them, to 100 clients in one room: every
/// client holds every character, in order, once (chunks may arrive merged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_5000_chunks_reaches_100_clients_without_loss() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 5000;
    let clients = 100;
    let script = words(n, 0);
    let (addr, handle) = serve(ScriptedProvider::new(script.clone()), config()).await;

    let mut all = Vec::new();
    for _ in 0..clients {
        let mut c = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
        c.next("connected").await;
        c.join("c-burst").await;
        all.push(c);
    }
    let started = Instant::now();
    send(&all[0], "c-burst", "go").await;
    let expected = script.concat();
    let results = futures_util::future::join_all(all.into_iter().map(|mut c| async move {
        let mut held = Held::default();
        let mut events = 0;
        loop {
            let ev = c
                .next_of(&["stream_chunk", "stream_end", "stream_error"])
                .await;
            match ev.event.as_str() {
                "stream_chunk" => {
                    events += 1;
                    assert!(held.accept(&ev.data), "gap or duplicate: {}", ev.data);
                }
                "stream_end" => break,
                _ => panic!("{}", ev.data),
            }
        }
        c.disconnect().await;
        (held, events)
    }))
    .await;
    let elapsed = started.elapsed();
    let events: usize = results.iter().map(|(_, e)| e).sum();
    for (held, _) in &results {
        assert_eq!(held.last, n as u64);
        assert_eq!(held.content, expected);
    }
    let stats = handle.delivery_stats();
    println!(
        "burst: {n} chunks x {clients} clients in {elapsed:?}; {events} stream_chunk events \
         delivered ({:.1}% of {}), {} merges, peak queued {} bytes per client",
        events as f64 * 100.0 / (n * clients) as f64,
        n * clients,
        stats.merged,
        stats.peak_queued_bytes,
    );
    assert_eq!(stats.evicted, 0);
}

/// A provider that has 40 chunks ready at once and then waits (a model's burst, then a
/// pause): the two members get all 40, merged into fewer frames, while the answer is still
/// running. The burst is held only until the answer's task finds nothing more ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_goes_out_merged_as_soon_as_the_provider_pauses() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 40;
    let script = words(n, 0);
    let (addr, _handle) = serve(
        ScriptedProvider::new(script.clone()).hang_at_end(),
        config(),
    )
    .await;
    let mut members = Vec::new();
    for _ in 0..2 {
        let mut c = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
        c.next("connected").await;
        c.join("c-pause").await;
        members.push(c);
    }
    let stream_id = send(&members[0], "c-pause", "go").await;
    for c in &mut members {
        let mut held = Held::default();
        let mut frames = 0;
        while held.last < n as u64 {
            let ev = c
                .next_of(&["stream_chunk", "stream_end", "stream_error"])
                .await;
            assert_eq!(
                ev.event, "stream_chunk",
                "the answer has not ended: {}",
                ev.data
            );
            assert!(held.accept(&ev.data), "gap or duplicate: {}", ev.data);
            frames += 1;
        }
        assert_eq!(held.content, script.concat());
        println!("a burst of {n} chunks in {frames} frames");
    }
    // The answer is still running: cancelling it ends it for both, after chunk 40.
    let ack = members[0]
        .ack(
            "cancel_stream",
            json!({ "conversation_id": "c-pause", "stream_id": stream_id }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    for c in &mut members {
        let end = c.next("stream_end").await;
        assert_eq!(end["status"], "cancelled");
        assert_eq!(end["full_content"], script.concat());
    }
}

/// A raw WebSocket client that joins a conversation and then stops reading (with a tiny
/// receive buffer), next to healthy ones: the healthy ones get the whole answer as fast as
/// without it, the stalled one's queue stays under its bound, and it is evicted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_neither_slows_the_others_nor_grows_without_bound() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 1500;
    let size = 4096;
    let script = words(n, size);
    let expected = script.concat();
    let bound = 512 * 1024;
    let mut config = config();
    config.delivery = DeliveryConfig::default();
    config.delivery.max_queued_bytes = bound;
    config.delivery.max_stall = Duration::from_secs(2);
    // About 4 MB/s: far faster than a model, slow enough that a healthy client in a debug
    // build keeps up within the bound.
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(1));
    let (addr, handle) = serve(provider, config).await;

    let mut healthy = Vec::new();
    for _ in 0..3 {
        let mut c = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
        c.next("connected").await;
        c.join("c-stall").await;
        healthy.push(c);
    }
    healthy[0].invite("c-stall", "bob").await;

    async fn run(healthy: &mut [TestClient], expected: &str) -> Duration {
        let started = Instant::now();
        send(&healthy[0], "c-stall", "go").await;
        for c in healthy.iter_mut() {
            let mut held = Held::default();
            loop {
                let ev = c.next_of(&["stream_chunk", "stream_end"]).await;
                if ev.event == "stream_end" {
                    break;
                }
                assert!(held.accept(&ev.data));
            }
            assert_eq!(held.content, expected);
        }
        started.elapsed()
    }

    let baseline = run(&mut healthy, &expected).await;

    // The stalled client: Engine.IO and Socket.IO by hand over a WebSocket whose reader
    // stops after `joined`.
    let stalled = stalled_client(addr, "c-stall").await;
    let with_stalled = run(&mut healthy, &expected).await;
    let stats = handle.delivery_stats();
    println!(
        "stalled client: {n} chunks of {size} B to 3 healthy clients in {baseline:?} alone, \
         {with_stalled:?} next to a stalled client; stalled client's queue peaked at {} B \
         (bound {bound} B), evicted {}, {} merges",
        stats.peak_queued_bytes, stats.evicted, stats.merged,
    );
    assert!(
        with_stalled < baseline * 3 + Duration::from_secs(2),
        "{with_stalled:?} vs {baseline:?}"
    );
    assert!(
        stats.peak_queued_bytes as usize <= bound + size,
        "{stats:?}"
    );
    assert_eq!(stats.evicted, 1, "{stats:?}");
    drop(stalled);
}

/// Connects over a raw WebSocket as bob, joins `conversation`, reads until `joined`, and
/// returns the connection, which is never read again. Until then it answers pings like any
/// client, and if the server does not say `joined` in time, the panic shows every frame seen.
async fn stalled_client(
    addr: SocketAddr,
    conversation: &str,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let started = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    let join = format!(r#"42["join_conversation",{{"conversation_id":"{conversation}"}}]"#);
    let mut seen: Vec<String> = Vec::new();
    let handshake = async {
        loop {
            let message = match ws.next().await {
                Some(Ok(message)) => message,
                other => return Err(format!("the stream ended: {other:?}")),
            };
            let Message::Text(text) = message else {
                seen.push(format!("{message:?}"));
                continue;
            };
            let text = text.to_string();
            seen.push(format!("{:?} {text}", started.elapsed()));
            if text.starts_with('0') {
                let connect = r#"40{"token":"t-bob"}"#;
                ws.send(Message::Text(connect.into())).await.unwrap();
            } else if text == "2" {
                ws.send(Message::Text("3".into())).await.unwrap();
            } else if text.starts_with("40") {
                ws.send(Message::Text(join.clone())).await.unwrap();
            } else if text.starts_with(r#"42["joined""#) {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout(WAIT, handshake).await {
        Ok(Ok(())) => ws,
        Ok(Err(why)) => panic!("the stalled client did not join: {why}; frames seen: {seen:#?}"),
        Err(_) => panic!("no `joined` in {:?}; frames seen: {seen:#?}", WAIT),
    }
}

/// Reads SSE events from a response body until `stop` says so.
async fn read_sse<B: AsRef<[u8]>>(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<B>> + Unpin),
    buf: &mut String,
    mut stop: impl FnMut(&str, Option<u64>, &Value) -> bool,
) {
    loop {
        while let Some(i) = buf.find("\n\n") {
            let block: String = buf.drain(..i + 2).collect();
            let (mut event, mut id, mut data) = ("message".to_owned(), None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            if stop(&event, id, &serde_json::from_str(&data).unwrap()) {
                return;
            }
        }
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("an SSE event in time")
            .expect("the body goes on")
            .unwrap();
        buf.push_str(std::str::from_utf8(chunk.as_ref()).unwrap());
    }
}

/// The HTTP fallback: `POST /api/chat/send` streams the answer as SSE (`id:` = seq); the
/// client drops the response at chunk k and resumes with `Last-Event-ID`, holding every chunk
/// once. Health probes answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_and_resumes_with_last_event_id() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 40;
    let k = 12;
    let script = words(n, 0);
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(15));
    let (addr, handle) = serve(provider, config()).await;
    let alice = Identity::new(UserId::parse("alice").unwrap());
    handle
        .engine()
        .join(&alice, &ConversationId::parse("c-sse").unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");

    let refused = http
        .post(format!("{base}/api/chat/send"))
        .json(&json!({ "conversation_id": "c-sse", "message": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let response = http
        .post(format!("{base}/api/chat/send"))
        .bearer_auth("t-alice")
        .json(&json!({ "conversation_id": "c-sse", "message": "go" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    let mut held = Held::default();
    let mut stream_id = String::new();
    read_sse(&mut body, &mut buf, |event, id, data| {
        match event {
            "stream_start" => stream_id = data["stream_id"].as_str().unwrap().to_owned(),
            "stream_chunk" => {
                assert_eq!(id, data["seq"].as_u64(), "id: is the seq");
                assert!(held.accept(data));
            }
            other => panic!("{other}: {data}"),
        }
        held.last >= k
    })
    .await;
    drop(body); // the connection is lost

    let response = http
        .get(format!("{base}/api/chat/streams/{stream_id}"))
        .bearer_auth("t-alice")
        .header("Last-Event-ID", held.last.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut buf = String::new();
    let mut end = Value::Null;
    read_sse(&mut body, &mut buf, |event, _, data| match event {
        "stream_chunk" => {
            assert!(held.accept(data), "gap or duplicate: {data}");
            false
        }
        "stream_end" => {
            end = data.clone();
            true
        }
        other => panic!("{other}: {data}"),
    })
    .await;
    assert_eq!(held.last, n as u64);
    assert_eq!(held.content, script.concat());
    assert_eq!(end["full_content"], held.content);

    // Another user may not read it; an unknown stream is resume_unavailable.
    let forbidden = http
        .get(format!("{base}/api/chat/streams/{stream_id}?after_seq=0"))
        .bearer_auth("t-carol")
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    // 410, not an SSE stream_error: an EventSource would reconnect after that, forever.
    let gone = http
        .get(format!(
            "{base}/api/chat/streams/unknown-stream?after_seq=3"
        ))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 410);
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["code"], "resume_unavailable", "{body}");

    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    handle.shutdown(Duration::from_millis(10)).await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
}

/// A client whose socketioxide buffer is full of chunks (it reads nothing for a while) sends
/// an event: its answer (the `joined` event and the ack) waits behind the chunks and arrives
/// once the client reads again. socketioxide drops an emit into a full buffer, so an answer
/// sent straight to the socket would be lost without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_a_client_with_a_full_buffer_is_not_lost() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let _turn = ONE_AT_A_TIME.lock().await;
    let n = 2500;
    let script = words(n, 4096);
    let mut config = config();
    config.delivery.max_queued_bytes = 256 * 1024 * 1024;
    config.delivery.max_stall = Duration::from_secs(120);
    // One chunk a millisecond: each goes out as a frame of its own, so the stalled client's
    // buffer fills with frames (a writer that falls behind merges them instead).
    let provider = ScriptedProvider::new(script.clone()).delay(Duration::from_millis(1));
    let (addr, handle) = serve(provider, config).await;

    let mut alice = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
    alice.next("connected").await;
    alice.join("c-full").await;
    alice.invite("c-full", "bob").await;
    let mut bob = stalled_client(addr, "c-full").await;
    send(&alice, "c-full", "go").await;
    // 2,500 chunks of 4 KiB, a millisecond apart at best: more than the usual wait.
    alice
        .try_next("stream_end", WAIT * 3)
        .await
        .expect("the answer ends");

    // Bob's TCP window and socketioxide buffer are full by now. He asks to join another
    // conversation (ack id 7) and waits until the server has done it.
    let join = r#"427["join_conversation",{"conversation_id":"c-full-2"}]"#;
    bob.send(Message::Text(join.into())).await.unwrap();
    let stores = handle.engine().stores().clone();
    let other = ConversationId::parse("c-full-2").unwrap();
    tokio::time::timeout(WAIT, async {
        while stores
            .conversations()
            .conversation(&other)
            .await
            .unwrap()
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the join was handled");

    // Now Bob reads again: every chunk, then the answer to his join.
    let (mut acked, mut joined, mut chunks) = (None, None, 0);
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while acked.is_none() || joined.is_none() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(text) = raw::next_text(&mut bob, left).await else {
            panic!(
                "no answer to the join after {chunks} chunk frames (ack {acked:?}, joined {joined:?})"
            );
        };
        if let Some(ack) = text.strip_prefix("437") {
            acked = Some(ack.to_owned());
        } else if text.starts_with(r#"42["joined""#) && text.contains("c-full-2") {
            joined = Some(text);
        } else if text.starts_with(r#"42["stream_chunk""#) {
            chunks += 1;
        }
    }
    let ack: Value = serde_json::from_str(&acked.unwrap()).unwrap();
    assert_eq!(ack[0]["status"], "ok", "{ack}");
    assert_eq!(ack[0]["conversation_id"], "c-full-2", "{ack}");
    println!("the join was answered after {chunks} chunk frames");
}

/// Fresh clients join a conversation right after they connect, while long answers stream into
/// it at full speed, and ask for its history at once: every event is answered (both acks and
/// `joined`), round after round. The joiners are long-polling clients, as a browser is before
/// its transport is upgraded, and poll slowly: their socketioxide buffer (128 packets) fills
/// with chunks soon after the join, and they ask for the history once more while it is full.
/// An answer emitted straight into a full buffer is lost without a word (the cause of the
/// lost `join_conversation` answers). A hand-written Engine.IO polling client: the polling
/// transport of `rust_socketio` misparses large polling responses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_right_after_connect_under_fan_out_are_all_answered() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let rounds = 4;
    let joiners = 12;
    // 2 ms apart: each chunk is its own packet (not a burst), 500 a second.
    let provider = ScriptedProvider::new(words(1000, 16)).delay(Duration::from_millis(2));
    let (addr, _handle) = serve(provider, config()).await;
    let mut members = Vec::new();
    for _ in 0..20 {
        let mut c = connect_raw(addr, Some(json!({ "token": "t-alice" }))).await;
        c.next("connected").await;
        c.join("c-fanout").await;
        members.push(c);
    }
    for round in 0..rounds {
        send(&members[0], "c-fanout", "go").await;
        let answered = futures_util::future::join_all((0..joiners).map(|_| async move {
            let mut c = Polling::connect(addr, "t-alice").await;
            c.until(|p| p.starts_with(r#"42["connected""#)).await;
            let conversation = r#"{"conversation_id":"c-fanout"}"#;
            c.post(&format!(
                "420[\"join_conversation\",{conversation}]\u{1e}421[\"get_history\",{conversation}]"
            ))
            .await;
            // Not polling for 400 ms: some 200 chunks for a buffer of 128.
            tokio::time::sleep(Duration::from_millis(400)).await;
            c.post(&format!("422[\"get_history\",{conversation}]"))
                .await;
            let (mut join, mut history, mut again, mut joined) = (None, None, None, None);
            let mut chunks = 0;
            while join.is_none() || history.is_none() || again.is_none() || joined.is_none() {
                // Slow: a poll every 20 ms, while the answer streams at full speed.
                tokio::time::sleep(Duration::from_millis(20)).await;
                for packet in c.poll().await {
                    if let Some(ack) = packet.strip_prefix("430") {
                        join = Some(ack_payload(ack));
                    } else if let Some(ack) = packet.strip_prefix("431") {
                        history = Some(ack_payload(ack));
                    } else if let Some(ack) = packet.strip_prefix("432") {
                        again = Some(ack_payload(ack));
                    } else if packet.starts_with(r#"42["joined""#) {
                        joined = Some(packet);
                    } else if packet.starts_with(r#"42["stream_chunk""#) {
                        chunks += 1;
                    }
                }
                assert!(
                    c.started.elapsed() < WAIT,
                    "round {round}: unanswered after {chunks} chunk packets: join {join:?}, \
                     history {history:?}, history again {again:?}, joined {joined:?}"
                );
            }
            (
                join.unwrap(),
                history.unwrap(),
                again.unwrap(),
                joined.unwrap(),
            )
        }))
        .await;
        for (join, history, again, joined) in answered {
            assert_eq!(join["status"], "ok", "round {round}: {join}");
            assert_eq!(history["status"], "ok", "round {round}: {history}");
            assert_eq!(again["status"], "ok", "round {round}: {again}");
            assert!(joined.contains("c-fanout"), "round {round}: {joined}");
        }
        members[0].next("stream_end").await;
    }
}

/// The payload of an ack packet after its id: `[{...}]` → `{...}`.
fn ack_payload(text: &str) -> Value {
    let args: Value = serde_json::from_str(text).expect("an ack is a JSON array");
    args[0].clone()
}

/// A minimal Engine.IO v4 long-polling client speaking Socket.IO on `/`.
struct Polling {
    http: reqwest::Client,
    url: String,
    started: Instant,
}

impl Polling {
    async fn connect(addr: SocketAddr, token: &str) -> Self {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
        let open = http.get(&base).send().await.unwrap().text().await.unwrap();
        let handshake: Value = serde_json::from_str(open.strip_prefix('0').expect("OPEN")).unwrap();
        let sid = handshake["sid"].as_str().unwrap();
        let c = Self {
            http,
            url: format!("{base}&sid={sid}"),
            started: Instant::now(),
        };
        c.post(&format!(r#"40{{"token":"{token}"}}"#)).await;
        c
    }

    async fn post(&self, body: &str) {
        let res = self
            .http
            .post(&self.url)
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "POST refused: {}", res.status());
    }

    /// One poll: the packets the server had for this client, pings answered.
    async fn poll(&mut self) -> Vec<String> {
        let body = self
            .http
            .get(&self.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut packets = Vec::new();
        for packet in body.split('\u{1e}') {
            if packet == "2" {
                self.post("3").await;
            } else if !packet.is_empty() {
                packets.push(packet.to_owned());
            }
        }
        packets
    }

    /// Polls until a packet matches.
    async fn until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        loop {
            if let Some(p) = self.poll().await.into_iter().find(|p| wanted(p)) {
                return p;
            }
            assert!(self.started.elapsed() < WAIT, "nothing matched");
        }
    }
}
