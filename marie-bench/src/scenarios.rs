//! The scenarios. Each runs against one target, is bounded by a count and a time limit, and
//! returns its figures.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use marie_adapters::{MemoryStore, RedisConfig, RedisStore, SqlStore};
use marie_core::{
    ChatMessage, ConversationId, ConversationInfo, HistoryQuery, MessageId, MessageRole, RoomStore,
    UserId, now_millis,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::client::{BoxError, Conn, Recv};
use crate::server::{self, Target, now_nanos};
use crate::wire::{self, Packet};

/// Connections opened at once while connecting many.
const CONNECT_CONCURRENCY: usize = 128;

/// How big each scenario is.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Scenario 1: idle connections held.
    pub(crate) idle: usize,
    /// Scenario 2: members of the room.
    pub(crate) fan_members: usize,
    /// Scenario 2: chunks of the answer.
    pub(crate) fan_chunks: u64,
    /// Scenario 3: clients, each with its own conversation and answer.
    pub(crate) conversations: usize,
    /// Scenario 3: chunks per answer.
    pub(crate) conv_chunks: u64,
    /// Scenario 3, paced: clients.
    pub(crate) paced_conversations: usize,
    /// Scenario 3, paced: the time between two chunks of one answer.
    pub(crate) paced_delay: Duration,
    /// Scenario 4: clients sending acknowledged messages one after the other.
    pub(crate) ack_clients: usize,
    /// Scenario 4: round trips per client.
    pub(crate) ack_rounds: usize,
    /// Scenario 5: members of the room, split between two nodes.
    pub(crate) cluster_members: usize,
    /// Scenario 5: chunks of the answer.
    pub(crate) cluster_chunks: u64,
    /// Scenario 6: messages in the conversation (one branch).
    pub(crate) history_messages: usize,
    /// Scenario 6: clients asking for pages one after the other.
    pub(crate) history_clients: usize,
    /// Scenario 6: pages per client.
    pub(crate) history_rounds: usize,
    /// Scenario 7: conversations in the user's list.
    pub(crate) list_conversations: usize,
    /// Scenario 7: clients asking for pages one after the other.
    pub(crate) list_clients: usize,
    /// Scenario 7: pages per client.
    pub(crate) list_rounds: usize,
    /// The time limit of one scenario against one target.
    pub(crate) limit: Duration,
    /// How long a receiver waits for a next frame before it counts the rest as lost.
    pub(crate) idle_wait: Duration,
}

impl Sizes {
    /// The full run.
    pub(crate) fn full() -> Sizes {
        Sizes {
            idle: 10_000,
            fan_members: 1_000,
            fan_chunks: 200,
            conversations: 1_000,
            conv_chunks: 50,
            paced_conversations: 1_000,
            paced_delay: Duration::from_millis(20),
            ack_clients: 50,
            ack_rounds: 200,
            cluster_members: 200,
            cluster_chunks: 200,
            history_messages: 100_000,
            history_clients: 10,
            history_rounds: 1_000,
            list_conversations: 10_000,
            list_clients: 10,
            list_rounds: 1_000,
            limit: Duration::from_secs(60),
            idle_wait: Duration::from_secs(3),
        }
    }

    /// A few seconds: proves that every scenario still works.
    pub(crate) fn smoke() -> Sizes {
        Sizes {
            idle: 100,
            fan_members: 20,
            fan_chunks: 200,
            conversations: 20,
            conv_chunks: 20,
            paced_conversations: 20,
            paced_delay: Duration::from_millis(20),
            ack_clients: 5,
            ack_rounds: 20,
            cluster_members: 10,
            cluster_chunks: 50,
            history_messages: 2_000,
            history_clients: 5,
            history_rounds: 20,
            list_conversations: 300,
            list_clients: 3,
            list_rounds: 20,
            limit: Duration::from_secs(15),
            idle_wait: Duration::from_secs(2),
        }
    }
}

/// One figure of one scenario against one target.
#[derive(Clone, Debug)]
pub(crate) struct Figure {
    /// What it measures, with its unit.
    pub(crate) metric: String,
    /// The value.
    pub(crate) value: f64,
}

fn figure(metric: &str, value: f64) -> Figure {
    Figure {
        metric: metric.to_owned(),
        value,
    }
}

/// The `q` quantile (0..=1) of sorted samples, in microseconds.
fn quantile_us(sorted_ns: &[u64], q: f64) -> f64 {
    if sorted_ns.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted_ns.len() - 1) as f64 * q).round() as usize;
    sorted_ns[i.min(sorted_ns.len() - 1)] as f64 / 1_000.0
}

/// Opens `n` authenticated connections, `token(i)` for the i-th, spread over `addrs`
/// (the i-th to `addrs[i % addrs.len()]`).
async fn connect_many(
    addrs: &[SocketAddr],
    n: usize,
    token: impl Fn(usize) -> String,
) -> Result<Vec<Conn>, BoxError> {
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|i| {
            let t = token(i);
            let addr = addrs[i % addrs.len()];
            async move { Conn::connect(addr, i, &t).await }
        })
        .buffered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Joins each connection to its conversation, all at once.
async fn join_all(
    conns: Vec<Conn>,
    conversation: impl Fn(usize) -> String,
) -> Result<Vec<Conn>, BoxError> {
    let results: Vec<_> = futures_util::stream::iter(conns.into_iter().enumerate())
        .map(|(i, mut c)| {
            let conv = conversation(i);
            async move { c.join(&conv).await.map(|()| c) }
        })
        .buffered(CONNECT_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Reads what each connection is still being sent (the presence events of the joins)
/// until none of them has received a frame for a while, so that a measurement starts on a
/// quiet server.
async fn settle(conns: Vec<Conn>) -> Vec<Conn> {
    const QUIET: Duration = Duration::from_millis(250);
    let limit = Instant::now() + Duration::from_secs(20);
    futures_util::stream::iter(conns)
        .map(|mut c| async move {
            loop {
                let quiet_until = (Instant::now() + QUIET).min(limit);
                if !matches!(c.recv(quiet_until).await, Recv::Text(_)) {
                    return c;
                }
            }
        })
        .buffer_unordered(usize::MAX)
        .collect()
        .await
}

fn run_id() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// RSS of process `pid`, in bytes.
fn rss_bytes(pid: u32) -> Result<u64, BoxError> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or("statm has no RSS")?
        .parse()?;
    Ok(pages * 4096)
}

/// Where a comparison server lives: `marie-bench/<dir>`.
fn bench_dir(dir: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)
}

/// The Python that runs the seed's design: `MARIE_BENCH_SEED_PYTHON` (`scripts/bench` sets
/// it to a virtualenv with `seed/requirements.txt`), else `python3`.
fn seed_python() -> String {
    std::env::var("MARIE_BENCH_SEED_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The command line of a comparison server of the idle scenario, and why it cannot run
/// here, if it cannot.
pub(crate) fn comparison_server(target: Target) -> Result<Vec<std::ffi::OsString>, String> {
    let succeeds = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    match target {
        Target::Node => {
            let dir = bench_dir("node");
            if !succeeds("node", &["--version"]) {
                Err("no `node` on the PATH".into())
            } else if !dir.join("node_modules/socket.io/package.json").exists() {
                Err(format!(
                    "socket.io is not installed: run `npm ci` in {}",
                    dir.display()
                ))
            } else {
                Ok(vec!["node".into(), dir.join("server.mjs").into()])
            }
        }
        Target::Seed => {
            let python = seed_python();
            if !succeeds(&python, &["-c", "import flask_socketio, eventlet"]) {
                Err(format!(
                    "`{python}` cannot import flask_socketio and eventlet: `pip install -r {}`",
                    bench_dir("seed/requirements.txt").display()
                ))
            } else {
                Ok(vec![python.into(), bench_dir("seed/server.py").into()])
            }
        }
        Target::Marie | Target::Bare => Err("not a comparison server".into()),
    }
}

/// Scenario 1: `sizes.idle` authenticated connections held by a server running in a child
/// process (`marie-bench serve`, or a [`comparison_server`]); its RSS before and after.
pub(crate) async fn idle(target: Target, sizes: Sizes) -> Result<Vec<Figure>, BoxError> {
    use std::io::BufRead;
    let mut argv: Vec<std::ffi::OsString> = match target {
        Target::Marie | Target::Bare => vec![
            std::env::current_exe()?.into(),
            "serve".into(),
            "--target".into(),
            target.name().into(),
        ],
        _ => comparison_server(target)?,
    };
    // To profile the server, e.g.
    // `MARIE_BENCH_SERVE_WRAPPER="valgrind --tool=dhat" marie-bench idle --smoke`.
    if let Ok(wrapper) = std::env::var("MARIE_BENCH_SERVE_WRAPPER") {
        let mut wrapped: Vec<std::ffi::OsString> =
            wrapper.split_whitespace().map(Into::into).collect();
        wrapped.append(&mut argv);
        argv = wrapped;
    }
    let mut command = std::process::Command::new(&argv[0]);
    command.args(&argv[1..]);
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await??;
    let outcome = async {
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or("the child did not start")?
            .parse()?;
        // Warm up (allocator arenas, runtime), then measure from there.
        let warm = connect_many(&[addr], 50, |i| format!("w{i}")).await?;
        for c in warm {
            c.close().await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_bytes(pid)?;
        let start = Instant::now();
        let conns = tokio::time::timeout(
            sizes.limit,
            connect_many(&[addr], sizes.idle, |i| format!("u{i}")),
        )
        .await
        .map_err(|_| "connecting took too long")??;
        let connect_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss_bytes(pid)?;
        let per = (after.saturating_sub(before)) as f64 / conns.len() as f64 / 1024.0;
        drop(conns);
        Ok::<_, BoxError>(vec![
            figure("server memory per idle connection (KiB)", per),
            figure(
                "connections opened per second",
                sizes.idle as f64 / connect_secs,
            ),
        ])
    }
    .await;
    // Its standard input closed, the server exits by itself (a profiler wrapping it then
    // writes its report); killed if it has not within 30 s.
    drop(child.stdin.take());
    let give_up = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

#[derive(Deserialize)]
struct ChunkData<'a> {
    seq: u64,
    #[serde(default)]
    first_seq: Option<u64>,
    #[serde(borrow)]
    content: Cow<'a, str>,
}

/// What one receiver saw of one answer.
#[derive(Default)]
struct Received {
    /// Chunks covered (a merged chunk counts every chunk it holds).
    chunks: u64,
    /// `stream_chunk` frames.
    frames: u64,
    /// Time from each chunk's making to its receipt, in ns.
    latencies: Vec<u64>,
    /// When the `stream_end` came (or the last frame, if it never came).
    done: Option<Instant>,
    /// Whether `stream_end` came.
    ended: bool,
}

/// Reads one answer until `stream_end`, `idle_wait` without a frame, or `deadline`.
async fn receive_answer(
    conn: &mut Conn,
    idle_wait: Duration,
    deadline: Instant,
    latencies: bool,
) -> Received {
    let mut got = Received::default();
    loop {
        let wait = (Instant::now() + idle_wait).min(deadline);
        let Recv::Text(t) = conn.recv(wait).await else {
            return got;
        };
        if let Packet::Event { name, data, .. } = wire::decode(&t) {
            match name {
                "stream_chunk" => {
                    let now = now_nanos();
                    if let Ok(c) = serde_json::from_str::<ChunkData<'_>>(data) {
                        got.chunks += c.seq + 1 - c.first_seq.unwrap_or(c.seq);
                        got.frames += 1;
                        if latencies {
                            got.latencies
                                .extend(wire::stamps(&c.content).map(|s| now.saturating_sub(s)));
                        }
                    }
                    got.done = Some(Instant::now());
                }
                "stream_end" | "stream_error" => {
                    got.ended = name == "stream_end";
                    got.done = Some(Instant::now());
                    return got;
                }
                _ => {}
            }
        }
    }
}

/// What the members of one room saw of one answer.
struct Fanned {
    /// Chunk deliveries per second, from the ask to the last `stream_end`.
    rate: f64,
    /// Chunks expected and not delivered.
    lost: u64,
    /// `stream_chunk` frames, all members together.
    frames: u64,
    /// Members that saw no `stream_end`.
    unended: u64,
    /// Sorted chunk latencies (ns) of the members on the asker's node, then on the others.
    same_node: Vec<u64>,
    other_nodes: Vec<u64>,
}

/// One answer of `chunks` chunks to `members` members of one room, spread over `addrs`;
/// member 0 (on the first node) asks.
async fn fan_out_on(
    addrs: &[SocketAddr],
    members: usize,
    chunks: u64,
    sizes: Sizes,
) -> Result<Fanned, BoxError> {
    let conversation = format!("fan-{}", run_id());
    let conns = connect_many(addrs, members, |_| "fan".to_owned()).await?;
    let conns = settle(join_all(conns, |_| conversation.clone()).await?).await;
    let deadline = Instant::now() + sizes.limit;
    let barrier = Arc::new(Barrier::new(conns.len()));
    let done = Arc::new(Barrier::new(conns.len()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (barrier, done) = (barrier.clone(), done.clone());
        let conversation = conversation.clone();
        let same_node = i % addrs.len() == 0;
        tasks.spawn(async move {
            barrier.wait().await;
            if i == 0 {
                let ask = json!({"conversation_id": conversation, "message": format!("k={chunks}"), "stream": true});
                if conn.emit("send_message", &ask, None).await.is_err() {
                    done.wait().await;
                    return (same_node, Received::default());
                }
            }
            let got = receive_answer(&mut conn, sizes.idle_wait, deadline, true).await;
            // Nobody leaves before everyone has the answer: presence events of the leaving
            // must not compete with the delivery being measured.
            done.wait().await;
            conn.close().await;
            (same_node, got)
        });
    }
    let mut out = Fanned {
        rate: 0.0,
        lost: 0,
        frames: 0,
        unended: 0,
        same_node: Vec::new(),
        other_nodes: Vec::new(),
    };
    let (mut delivered, mut last) = (0, start);
    while let Some(got) = tasks.join_next().await {
        let (same_node, got) = got?;
        delivered += got.chunks;
        out.frames += got.frames;
        out.unended += u64::from(!got.ended);
        last = last.max(got.done.unwrap_or(start));
        if same_node {
            out.same_node.extend(got.latencies);
        } else {
            out.other_nodes.extend(got.latencies);
        }
    }
    out.same_node.sort_unstable();
    out.other_nodes.sort_unstable();
    out.lost = (members as u64 * chunks).saturating_sub(delivered);
    out.rate = delivered as f64 / (last - start).as_secs_f64().max(1e-9);
    Ok(out)
}

/// Scenario 2: one answer of `fan_chunks` chunks to `fan_members` members of one room.
pub(crate) async fn fan_out(target: Target, sizes: Sizes) -> Result<Vec<Figure>, BoxError> {
    let server = server::start(target, 1, None).await?;
    let got = fan_out_on(&server.addrs, sizes.fan_members, sizes.fan_chunks, sizes).await?;
    drop(server);
    Ok(vec![
        figure("chunk deliveries per second", got.rate),
        figure("chunks lost", got.lost as f64),
        figure(
            "stream_chunk frames per client",
            got.frames as f64 / sizes.fan_members as f64,
        ),
        figure("stream_end missing", got.unended as f64),
        figure("chunk latency p50 (us)", quantile_us(&got.same_node, 0.50)),
        figure("chunk latency p99 (us)", quantile_us(&got.same_node, 0.99)),
    ])
}

/// Whether a Redis answers at 127.0.0.1:6379.
pub(crate) async fn redis_reachable() -> bool {
    let connect = tokio::net::TcpStream::connect("127.0.0.1:6379");
    matches!(
        tokio::time::timeout(Duration::from_millis(500), connect).await,
        Ok(Ok(_))
    )
}

/// Deletes the keys the cluster scenario left under `prefix` (answers' stream logs expire
/// by themselves; conversations and sessions would not).
async fn clean_redis(prefix: &str) -> Result<(), BoxError> {
    let client = redis::Client::open(server::REDIS_URL)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut con)
        .await?;
    for chunk in keys.chunks(500) {
        let () = redis::cmd("DEL").arg(chunk).query_async(&mut con).await?;
    }
    Ok(())
}

/// Scenario 5: scenario 2 on two nodes sharing a Redis, the members split between them;
/// the latency of the members on the asker's node and on the other.
pub(crate) async fn cluster(target: Target, sizes: Sizes) -> Result<Vec<Figure>, BoxError> {
    let prefix = format!("marie-bench-{}", run_id());
    let server = server::start(target, 2, Some(prefix.clone())).await?;
    let got = fan_out_on(
        &server.addrs,
        sizes.cluster_members,
        sizes.cluster_chunks,
        sizes,
    )
    .await;
    drop(server);
    let cleaned = clean_redis(&prefix).await;
    let got = got?;
    cleaned?;
    let same = quantile_us(&got.same_node, 0.99);
    let other = quantile_us(&got.other_nodes, 0.99);
    Ok(vec![
        figure("chunk deliveries per second", got.rate),
        figure("chunks lost", got.lost as f64),
        figure(
            "chunk latency p50, asker's node (us)",
            quantile_us(&got.same_node, 0.50),
        ),
        figure(
            "chunk latency p50, other node (us)",
            quantile_us(&got.other_nodes, 0.50),
        ),
        figure("chunk latency p99, asker's node (us)", same),
        figure("chunk latency p99, other node (us)", other),
    ])
}

/// Scenario 3: `conversations` clients, each asking for its own answer of `conv_chunks`
/// chunks at the same moment; paced: `paced_conversations` clients, each answer's chunks
/// `paced_delay` apart (a model's pace), the asks spread over the first `paced_delay`.
pub(crate) async fn conversations(
    target: Target,
    sizes: Sizes,
    paced: bool,
) -> Result<Vec<Figure>, BoxError> {
    let (clients, message) = if paced {
        (
            sizes.paced_conversations,
            format!(
                "k={} d={}",
                sizes.conv_chunks,
                sizes.paced_delay.as_millis()
            ),
        )
    } else {
        (sizes.conversations, format!("k={}", sizes.conv_chunks))
    };
    let server = server::start(target, 1, None).await?;
    let run = run_id();
    let conns = connect_many(&server.addrs, clients, |i| format!("c{i}")).await?;
    let conns = join_all(conns, |i| format!("conv-{run}-{i}")).await?;
    let deadline = Instant::now() + sizes.limit;
    let barrier = Arc::new(Barrier::new(conns.len()));
    let done = Arc::new(Barrier::new(conns.len()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let (barrier, done) = (barrier.clone(), done.clone());
        let conversation = format!("conv-{run}-{i}");
        let message = message.clone();
        let spread = if paced {
            sizes.paced_delay.mul_f64(rand::random::<f64>())
        } else {
            Duration::ZERO
        };
        tasks.spawn(async move {
            barrier.wait().await;
            tokio::time::sleep(spread).await;
            let ask = json!({"conversation_id": conversation, "message": message, "stream": true});
            let got = if conn.emit("send_message", &ask, None).await.is_ok() {
                receive_answer(&mut conn, sizes.idle_wait, deadline, true).await
            } else {
                Received::default()
            };
            // Disconnects wait until every answer is in: they are not what is measured.
            done.wait().await;
            conn.close().await;
            got
        });
    }
    let (mut chunks, mut last, mut latencies) = (0, start, Vec::new());
    while let Some(got) = tasks.join_next().await {
        let got = got?;
        chunks += got.chunks;
        last = last.max(got.done.unwrap_or(start));
        latencies.extend(got.latencies);
    }
    drop(server);
    latencies.sort_unstable();
    let expected = clients as u64 * sizes.conv_chunks;
    let secs = (last - start).as_secs_f64().max(1e-9);
    Ok(vec![
        figure("chunks per second", chunks as f64 / secs),
        figure("chunks lost", expected.saturating_sub(chunks) as f64),
        figure("chunk latency p50 (us)", quantile_us(&latencies, 0.50)),
        figure("chunk latency p99 (us)", quantile_us(&latencies, 0.99)),
    ])
}

/// Scenario 4: `ack_clients` clients, each sending `send_message_with_ack` (a one-chunk
/// answer) `ack_rounds` times, one after the other: the time to the ack, and full rounds
/// (ack, then the `message_response`) per second.
pub(crate) async fn acks(target: Target, sizes: Sizes) -> Result<Vec<Figure>, BoxError> {
    let server = server::start(target, 1, None).await?;
    let run = run_id();
    let conns = connect_many(&server.addrs, sizes.ack_clients, |i| format!("a{i}")).await?;
    let conns = join_all(conns, |i| format!("ack-{run}-{i}")).await?;
    let deadline = Instant::now() + sizes.limit;
    let done = Arc::new(Barrier::new(conns.len()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let conversation = format!("ack-{run}-{i}");
        let done = done.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(sizes.ack_rounds);
            let mut failed = 0u64;
            let ask = json!({"conversation_id": conversation, "message": "k=1"});
            'rounds: for id in 0..sizes.ack_rounds as u64 {
                let sent = Instant::now();
                if conn
                    .emit("send_message_with_ack", &ask, Some(id))
                    .await
                    .is_err()
                {
                    break;
                }
                let (mut acked, mut answered) = (false, false);
                while !(acked && answered) {
                    let Recv::Text(t) = conn.recv(deadline).await else {
                        break 'rounds;
                    };
                    match wire::decode(&t) {
                        Packet::Ack { id: got, data } if got == id => {
                            latencies.push(sent.elapsed().as_nanos() as u64);
                            acked = true;
                            if !data.contains("\"success\"") {
                                failed += 1;
                                answered = true;
                            }
                        }
                        Packet::Event {
                            name: "message_response",
                            ..
                        } => answered = true,
                        Packet::Event { name: "error", .. } => {
                            failed += 1;
                            answered = true;
                        }
                        _ => {}
                    }
                }
            }
            let finished = Instant::now();
            done.wait().await;
            conn.close().await;
            (latencies, failed, finished)
        });
    }
    let (mut latencies, mut failed, mut last) = (Vec::new(), 0, start);
    while let Some(got) = tasks.join_next().await {
        let (l, f, finished) = got?;
        latencies.extend(l);
        failed += f;
        last = last.max(finished);
    }
    let secs = (last - start).as_secs_f64().max(1e-9);
    drop(server);
    latencies.sort_unstable();
    Ok(vec![
        figure("round trips per second", latencies.len() as f64 / secs),
        figure("ack latency p50 (us)", quantile_us(&latencies, 0.50)),
        figure("ack latency p99 (us)", quantile_us(&latencies, 0.99)),
        figure(
            "round trips failed or missing",
            (sizes.ack_clients * sizes.ack_rounds - latencies.len()) as f64 + failed as f64,
        ),
    ])
}

/// Messages per page in scenario 6.
const PAGE: usize = 50;

/// The creator of scenario 6's conversation; every client is this user.
const READER: &str = "reader";

/// The text of scenario 6's messages: each one a prefix of 100 to 300 bytes.
const LOREM: &str = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod \
    tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud \
    exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor \
    in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. Excepteur \
    sint occaecat cupidatat non proident.";

/// MARIE's store in scenario 6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// `MemoryStore`, the default.
    Memory,
    /// `SqlStore` on a SQLite file in a temporary directory.
    Sqlite,
    /// `SqlStore` on PostgreSQL ([`postgres_url`]), in a schema of its own.
    Postgres,
    /// `RedisStore` on the Redis at 127.0.0.1:6379, under a key prefix of its own.
    Redis,
}

impl Store {
    /// Every store, in the order they run.
    pub(crate) const ALL: [Store; 4] =
        [Store::Memory, Store::Sqlite, Store::Postgres, Store::Redis];

    /// Its name in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Store::Memory => "MemoryStore",
            Store::Sqlite => "SqlStore on SQLite",
            Store::Postgres => "SqlStore on PostgreSQL",
            Store::Redis => "RedisStore",
        }
    }

    /// Why it cannot run here, if it cannot.
    pub(crate) async fn unavailable(self) -> Option<String> {
        match self {
            Store::Memory | Store::Sqlite => None,
            Store::Postgres => match postgres_url() {
                None => Some("no MARIE_BENCH_POSTGRES_URL or MARIE_TEST_POSTGRES_URL".into()),
                Some(url) => postgres_admin(&url)
                    .await
                    .err()
                    .map(|e| format!("PostgreSQL does not answer ({e})")),
            },
            Store::Redis => (!redis_reachable().await).then(|| "no Redis at 127.0.0.1:6379".into()),
        }
    }
}

/// The PostgreSQL of scenario 6: `MARIE_BENCH_POSTGRES_URL`, else `MARIE_TEST_POSTGRES_URL`
/// (which `scripts/services.sh` `ensure_postgres` exports).
fn postgres_url() -> Option<String> {
    ["MARIE_BENCH_POSTGRES_URL", "MARIE_TEST_POSTGRES_URL"]
        .into_iter()
        .find_map(|var| std::env::var(var).ok().filter(|url| !url.is_empty()))
}

/// A connection to the PostgreSQL at `url`, within 3 s.
async fn postgres_admin(url: &str) -> Result<sqlx::AnyConnection, BoxError> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let connect = sqlx::AnyConnection::connect(url);
    Ok(tokio::time::timeout(Duration::from_secs(3), connect)
        .await
        .map_err(|_| "timed out")??)
}

/// Where a store of scenario 6 keeps its data during one run; removed afterwards.
enum Place {
    /// In the server's process.
    Process,
    /// A SQLite file in this directory.
    Dir(std::path::PathBuf),
    /// A schema of its own in the PostgreSQL at `url`.
    Schema { url: String, schema: String },
    /// Keys under this prefix in the Redis at [`server::REDIS_URL`].
    Prefix(String),
}

impl Place {
    async fn make(store: Option<Store>, run: &str) -> Result<Place, BoxError> {
        Ok(match store {
            None | Some(Store::Memory) => Place::Process,
            Some(Store::Sqlite) => {
                let dir = std::env::temp_dir().join(format!("marie-bench-{run}"));
                std::fs::create_dir_all(&dir)?;
                Place::Dir(dir)
            }
            Some(Store::Postgres) => {
                let url = postgres_url().ok_or("no PostgreSQL URL")?;
                let schema = format!("marie_bench_{run}");
                let mut admin = postgres_admin(&url).await?;
                sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
                    .execute(&mut admin)
                    .await?;
                Place::Schema { url, schema }
            }
            Some(Store::Redis) => Place::Prefix(format!("marie-bench-{run}")),
        })
    }

    /// The store's URL (SQL) or key prefix (Redis).
    fn at(&self) -> String {
        match self {
            Place::Process => String::new(),
            Place::Dir(dir) => format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()),
            Place::Schema { url, schema } => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}options[search_path]={schema}")
            }
            Place::Prefix(prefix) => prefix.clone(),
        }
    }

    async fn remove(self) -> Result<(), BoxError> {
        match self {
            Place::Process => Ok(()),
            Place::Dir(dir) => Ok(std::fs::remove_dir_all(dir)?),
            Place::Schema { url, schema } => {
                let mut admin = postgres_admin(&url).await?;
                sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    .execute(&mut admin)
                    .await?;
                Ok(())
            }
            Place::Prefix(prefix) => clean_redis(&prefix).await,
        }
    }
}

/// Scenario 6's conversation: one branch of `n` messages, each after the one before, user
/// and assistant in turn, 100 to 300 bytes of text each, ids in time order.
pub(crate) fn history_messages(n: usize) -> Result<Vec<ChatMessage>, BoxError> {
    let reader = UserId::parse(READER)?;
    let mut ids: Vec<MessageId> = (0..n).map(|_| MessageId::new_time_ordered()).collect();
    // Many come in one millisecond: sorted, whatever their random bits (the bare server's
    // binary search needs the order).
    ids.sort_unstable();
    let first = now_millis().saturating_sub(n as u64 * 1_000);
    let mut parent = None;
    let mut messages = Vec::with_capacity(n);
    for (i, id) in ids.into_iter().enumerate() {
        let user = i % 2 == 0;
        messages.push(ChatMessage {
            assistant: None,
            message_id: id.clone(),
            role: if user {
                MessageRole::User
            } else {
                MessageRole::Assistant
            },
            content: LOREM[..rand::random_range(100..=300)].to_owned(),
            user_id: user.then(|| reader.clone()),
            created_at: first + i as u64 * 1_000,
            parts: Vec::new(),
            parent_id: parent.replace(id),
            siblings: Vec::new(),
            attachments: Vec::new(),
        });
    }
    Ok(messages)
}

/// Creates `conversation` in `store`, [`READER`] its creator.
async fn create(store: &impl RoomStore, conversation: &ConversationId) -> Result<(), BoxError> {
    let info = ConversationInfo::new(conversation.clone(), UserId::parse(READER)?, now_millis());
    if !store.create_conversation(info).await? {
        return Err("the conversation already exists".into());
    }
    Ok(())
}

/// Creates `conversation` in `store` and appends `messages` one by one.
async fn seed(
    store: &impl RoomStore,
    conversation: &ConversationId,
    messages: &[ChatMessage],
) -> Result<(), BoxError> {
    create(store, conversation).await?;
    for message in messages {
        store.append_message(conversation, message.clone()).await?;
    }
    Ok(())
}

/// Rows per INSERT when seeding a SQL store. Through sqlx, SQLite takes more than
/// proportionally longer for a statement with more parameters: seeding 100,000 messages
/// took 8.6 s at 1,000 rows a statement (8,001 parameters), 1.7 s at 100.
const SQL_ROWS: usize = 100;

/// Seeds the `SqlStore` at `url` with `conversation` (created through the store) and
/// `messages`, writing the rows `append_message` would have written one by one
/// (`marie-adapters/src/sql/history.rs`, `append`): in `marie_messages`, message `i` at
/// `depth` i and `seq` i + 1; in `marie_active_path`, the whole branch; the conversation's
/// `last_seq`. One transaction of multi-row INSERTs: appending 100,000 messages one by one
/// would take about a minute on SQLite and six on PostgreSQL (a transaction each; 2,000
/// took 1.2 s and 6.9 s on the machine of `docs/benchmarks.md`).
async fn seed_sql(
    store: &SqlStore,
    url: &str,
    conversation: &ConversationId,
    messages: &[ChatMessage],
) -> Result<(), BoxError> {
    use sqlx::Connection;
    use std::fmt::Write;
    create(store, conversation).await?;
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let mut tx = conn.begin().await?;
    for (batch, rows) in messages.chunks(SQL_ROWS).enumerate() {
        let depth = |j: usize| i64::try_from(batch * SQL_ROWS + j).unwrap_or(i64::MAX);
        let mut sql = String::from(
            "INSERT INTO marie_messages (conversation_id, message_id, parent_id, depth, seq, \
             role, content, user_id, created_at, parts) VALUES ",
        );
        let mut path = String::from(
            "INSERT INTO marie_active_path (conversation_id, depth, message_id) VALUES ",
        );
        for j in 0..rows.len() {
            let sep = if j == 0 { "" } else { ", " };
            let p = 2 + j * 8;
            let _ = write!(
                sql,
                "{sep}($1, ${p}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, NULL)",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            );
            let _ = write!(path, "{sep}($1, ${}, ${})", 2 + j * 2, 3 + j * 2);
        }
        let mut insert = sqlx::query(&sql).bind(conversation.as_str());
        let mut on_path = sqlx::query(&path).bind(conversation.as_str());
        for (j, m) in rows.iter().enumerate() {
            insert = insert
                .bind(m.message_id.as_str())
                .bind(m.parent_id.as_ref().map(|p| p.as_str()))
                .bind(depth(j))
                .bind(depth(j) + 1)
                .bind(m.role.as_str())
                .bind(m.content.as_str())
                .bind(m.user_id.as_ref().map(|u| u.as_str()))
                .bind(i64::try_from(m.created_at)?);
            on_path = on_path.bind(depth(j)).bind(m.message_id.as_str());
        }
        insert.execute(&mut *tx).await?;
        on_path.execute(&mut *tx).await?;
    }
    sqlx::query("UPDATE marie_conversations SET last_seq = $2 WHERE conversation_id = $1")
        .bind(conversation.as_str())
        .bind(i64::try_from(messages.len())?)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if url.starts_with("postgres") {
        // As autovacuum would soon after such a write. Without statistics, PostgreSQL's
        // planner may read a page of a small conversation by sorting the whole branch
        // before it (2,000 messages: 6 ms a page instead of 0.4).
        sqlx::query("ANALYZE marie_messages, marie_active_path")
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(())
}

/// Reads back the newest message and two from the middle: the seeding must have left one
/// branch of `messages`, as they are.
async fn check_seeded(
    store: &impl RoomStore,
    conversation: &ConversationId,
    messages: &[ChatMessage],
) -> Result<(), BoxError> {
    let (n, mid) = (messages.len(), messages.len() / 2);
    let newest = store.history(conversation, HistoryQuery::newest(1)).await?;
    let middle = store
        .history(
            conversation,
            HistoryQuery {
                before: messages.get(mid).map(|m| m.message_id.clone()),
                limit: 2,
            },
        )
        .await?;
    if newest != messages[n.saturating_sub(1)..] || middle != messages[mid.saturating_sub(2)..mid] {
        return Err("the seeded history reads back wrong".into());
    }
    Ok(())
}

/// Scenario 6's server, made on the server's runtime (a store's connections belong to the
/// runtime that made them): MARIE on `store` holding `conversation` seeded with `messages`
/// (at `at`: [`Place::at`]), or the bare server (`None`); and the time seeding took.
async fn history_app(
    store: Option<Store>,
    at: String,
    conversation: ConversationId,
    messages: Arc<Vec<ChatMessage>>,
) -> Result<(Vec<axum::Router>, Duration), BoxError> {
    let started = Instant::now();
    let app = match store {
        None => server::bare_history_app(messages),
        Some(Store::Memory) => {
            let store = MemoryStore::new();
            seed(&store, &conversation, &messages).await?;
            check_seeded(&store, &conversation, &messages).await?;
            server::marie_app(store)?
        }
        Some(Store::Sqlite | Store::Postgres) => {
            let store = SqlStore::connect(&at).await?;
            seed_sql(&store, &at, &conversation, &messages).await?;
            check_seeded(&store, &conversation, &messages).await?;
            server::marie_app(store)?
        }
        Some(Store::Redis) => {
            let store = RedisStore::connect(RedisConfig::new(server::REDIS_URL).prefix(at)).await?;
            seed(&store, &conversation, &messages).await?;
            check_seeded(&store, &conversation, &messages).await?;
            server::marie_app(store)?
        }
    };
    Ok((vec![app], started.elapsed()))
}

/// Scenario 6: one conversation of `history_messages` messages (one branch), in MARIE's
/// `store` or (`None`) in the bare server's `Vec`; `history_clients` clients, each asking
/// for `history_rounds` pages of 50 with `get_history`, one after the other: one in ten the
/// newest page (no `before`), the others the page before a message picked at random. The
/// time from the emit to the ack, pages per second, and how long seeding took.
pub(crate) async fn history(
    store: Option<Store>,
    messages: &Arc<Vec<ChatMessage>>,
    sizes: Sizes,
) -> Result<Vec<Figure>, BoxError> {
    let run = run_id();
    let conversation = ConversationId::parse(format!("history-{run}"))?;
    let place = Place::make(store, &run).await?;
    let target = if store.is_some() {
        Target::Marie
    } else {
        Target::Bare
    };
    let app = history_app(store, place.at(), conversation.clone(), messages.clone());
    let got = async {
        let (server, seeding) = server::start_with(target, app).await?;
        let pages = read_pages(&server.addrs, &conversation, messages, sizes).await;
        drop(server);
        Ok::<_, BoxError>((pages?, seeding))
    }
    .await;
    let removed = place.remove().await;
    let ((latencies, wrong, secs), seeding) = got?;
    removed?;
    Ok(vec![
        figure("pages per second", latencies.len() as f64 / secs),
        figure("page latency p50 (us)", quantile_us(&latencies, 0.50)),
        figure("page latency p99 (us)", quantile_us(&latencies, 0.99)),
        figure(
            "pages wrong or missing",
            (sizes.history_clients * sizes.history_rounds - latencies.len()) as f64 + wrong as f64,
        ),
        figure(
            "seeding, not timed (ms)",
            store.map_or(f64::NAN, |_| seeding.as_secs_f64() * 1_000.0),
        ),
    ])
}

/// Scenario 6's clients: the sorted latencies of the pages they got, how many were wrong,
/// and the seconds from the first ask to the last ack.
async fn read_pages(
    addrs: &[SocketAddr],
    conversation: &ConversationId,
    messages: &Arc<Vec<ChatMessage>>,
    sizes: Sizes,
) -> Result<(Vec<u64>, u64, f64), BoxError> {
    let conns = connect_many(addrs, sizes.history_clients, |_| READER.to_owned()).await?;
    let deadline = Instant::now() + sizes.limit;
    let done = Arc::new(Barrier::new(conns.len()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (done, messages) = (done.clone(), messages.clone());
        let conversation = conversation.as_str().to_owned();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(sizes.history_rounds);
            let mut wrong = 0u64;
            let n = messages.len();
            for id in 0..sizes.history_rounds as u64 {
                // The page ends before message `stop` (`n`: the newest page).
                let stop = if id % 10 == 0 {
                    n
                } else {
                    rand::random_range(0..n)
                };
                let ask = match messages.get(stop) {
                    Some(before) => json!({
                        "conversation_id": conversation,
                        "before": before.message_id.as_str(),
                        "limit": PAGE,
                    }),
                    None => json!({"conversation_id": conversation, "limit": PAGE}),
                };
                let Some((took, data)) =
                    ask_once(&mut conn, "get_history", &ask, id, deadline).await
                else {
                    break;
                };
                latencies.push(took);
                // Every message of the page, down to the one before `stop`.
                let right = data.contains(r#""status":"ok""#)
                    && data.matches(r#""message_id""#).count() == stop.min(PAGE)
                    && stop
                        .checked_sub(1)
                        .is_none_or(|last| data.contains(messages[last].message_id.as_str()));
                wrong += u64::from(!right);
            }
            let finished = Instant::now();
            done.wait().await;
            conn.close().await;
            (latencies, wrong, finished)
        });
    }
    gather(tasks, start).await
}

/// Conversations per page in scenario 7 (the protocol's default).
const LIST_PAGE: usize = 30;

/// Scenario 7's list: `n` conversations of [`READER`], last active a second apart, the
/// newest first (as a page shows them); conversation `i` is `list-{i:06}`.
pub(crate) fn list_of(n: usize) -> Result<Vec<ConversationInfo>, BoxError> {
    let reader = UserId::parse(READER)?;
    let first = now_millis().saturating_sub(n as u64 * 1_000);
    (0..n)
        .rev()
        .map(|i| {
            let mut info = ConversationInfo::new(
                ConversationId::parse(format!("list-{i:06}"))?,
                reader.clone(),
                first + i as u64 * 1_000,
            );
            info.title = Some(format!("Conversation number {i}"));
            Ok(info)
        })
        .collect()
}

/// Creates the conversations of `list` in `store`, `at_once` at a time (PostgreSQL and
/// Redis take several at once; SQLite has one writer, and writers waiting for its lock made
/// seeding 10,000 take 90 s instead of a few).
async fn seed_list(
    store: &impl RoomStore,
    list: &[ConversationInfo],
    at_once: usize,
) -> Result<(), BoxError> {
    for chunk in list.chunks(at_once) {
        let created = futures_util::future::join_all(
            chunk
                .iter()
                .map(|info| store.create_conversation(info.clone())),
        )
        .await;
        for c in created {
            if !c? {
                return Err("a conversation of the list already exists".into());
            }
        }
    }
    Ok(())
}

async fn list_app(
    store: Option<Store>,
    at: String,
    list: Arc<Vec<ConversationInfo>>,
) -> Result<(Vec<axum::Router>, Duration), BoxError> {
    let started = Instant::now();
    let app = match store {
        None => server::bare_list_app(list),
        Some(Store::Memory) => {
            let store = MemoryStore::new();
            seed_list(&store, &list, 1).await?;
            server::marie_app(store)?
        }
        Some(kind @ (Store::Sqlite | Store::Postgres)) => {
            let store = SqlStore::connect(&at).await?;
            let at_once = if matches!(kind, Store::Sqlite) { 1 } else { 16 };
            seed_list(&store, &list, at_once).await?;
            server::marie_app(store)?
        }
        Some(Store::Redis) => {
            let store = RedisStore::connect(RedisConfig::new(server::REDIS_URL).prefix(at)).await?;
            seed_list(&store, &list, 16).await?;
            server::marie_app(store)?
        }
    };
    Ok((vec![app], started.elapsed()))
}

/// Scenario 7: one user with `list_conversations` conversations, in MARIE's `store` or
/// (`None`) in the bare server's `Vec`. First one client alone asks for `list_rounds / 4`
/// pages (the latency a user sees on a quiet server); then `list_clients` clients of that
/// user, each asking for `list_rounds` pages, one after the other. Each asks for pages of
/// 30 with `list_conversations`: the first page one time in five, else the page after the
/// last one (its `next_before`), from the top again after the end. The time from the emit
/// to the ack, pages per second, and how long seeding took.
pub(crate) async fn list(store: Option<Store>, sizes: Sizes) -> Result<Vec<Figure>, BoxError> {
    let list = Arc::new(list_of(sizes.list_conversations)?);
    let run = run_id();
    let place = Place::make(store, &run).await?;
    let target = if store.is_some() {
        Target::Marie
    } else {
        Target::Bare
    };
    let app = list_app(store, place.at(), list.clone());
    let got = async {
        let (server, seeding) = server::start_with(target, app).await?;
        let quiet = Sizes {
            list_clients: 1,
            list_rounds: sizes.list_rounds / 4,
            ..sizes
        };
        let alone = list_pages(&server.addrs, list.len(), quiet).await;
        let pages = list_pages(&server.addrs, list.len(), sizes).await;
        drop(server);
        Ok::<_, BoxError>((alone?, pages?, seeding))
    }
    .await;
    let removed = place.remove().await;
    let ((alone, alone_wrong, _), (latencies, wrong, secs), seeding) = got?;
    removed?;
    Ok(vec![
        figure(
            "one client alone: page latency p50 (us)",
            quantile_us(&alone, 0.50),
        ),
        figure(
            "one client alone: page latency p99 (us)",
            quantile_us(&alone, 0.99),
        ),
        figure("pages per second", latencies.len() as f64 / secs),
        figure("page latency p50 (us)", quantile_us(&latencies, 0.50)),
        figure("page latency p99 (us)", quantile_us(&latencies, 0.99)),
        figure(
            "pages wrong or missing",
            (sizes.list_rounds / 4 - alone.len()) as f64
                + alone_wrong as f64
                + (sizes.list_clients * sizes.list_rounds - latencies.len()) as f64
                + wrong as f64,
        ),
        figure(
            "seeding, not timed (ms)",
            store.map_or(f64::NAN, |_| seeding.as_secs_f64() * 1_000.0),
        ),
    ])
}

/// A page of scenario 7 as the client checks it: the conversations' numbers, in order,
/// and the cursor of the next page.
#[derive(Deserialize)]
struct ListAck {
    status: String,
    conversations: Vec<ListItem>,
    next_before: Option<String>,
}

#[derive(Deserialize)]
struct ListItem {
    conversation_id: String,
}

/// Whether `page` is the one that starts at conversation `top` (the newest is `n - 1`)
/// and holds the next [`LIST_PAGE`] older ones, in order.
fn right_page(page: &ListAck, top: usize) -> bool {
    let expected = (0..=top)
        .rev()
        .take(LIST_PAGE)
        .map(|i| format!("list-{i:06}"));
    page.status == "ok"
        && page.conversations.len() == (top + 1).min(LIST_PAGE)
        && page
            .conversations
            .iter()
            .map(|c| c.conversation_id.as_str())
            .eq(expected.collect::<Vec<_>>().iter().map(String::as_str))
}

/// Scenario 7's clients: the sorted latencies of the pages they got, how many were wrong,
/// and the seconds from the first ask to the last ack.
async fn list_pages(
    addrs: &[SocketAddr],
    n: usize,
    sizes: Sizes,
) -> Result<(Vec<u64>, u64, f64), BoxError> {
    let conns = connect_many(addrs, sizes.list_clients, |_| READER.to_owned()).await?;
    let deadline = Instant::now() + sizes.limit;
    let done = Arc::new(Barrier::new(conns.len()));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let done = done.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(sizes.list_rounds);
            let mut wrong = 0u64;
            // The next page's cursor and its first conversation's number.
            let mut next: Option<(String, usize)> = None;
            for id in 0..sizes.list_rounds as u64 {
                let (ask, top) = match next.take().filter(|_| id % 5 != 0) {
                    Some((before, top)) => (json!({"before": before, "limit": LIST_PAGE}), top),
                    None => (json!({"limit": LIST_PAGE}), n - 1),
                };
                let Some((took, data)) =
                    ask_once(&mut conn, "list_conversations", &ask, id, deadline).await
                else {
                    break;
                };
                latencies.push(took);
                let page = serde_json::from_str::<(ListAck,)>(&data)
                    .map(|(p,)| p)
                    .or_else(|_| serde_json::from_str::<ListAck>(&data));
                match page {
                    Ok(page) if right_page(&page, top) => {
                        next = page.next_before.map(|b| (b, top.saturating_sub(LIST_PAGE)));
                    }
                    _ => wrong += 1,
                }
            }
            let finished = Instant::now();
            done.wait().await;
            conn.close().await;
            (latencies, wrong, finished)
        });
    }
    gather(tasks, start).await
}

/// Emits `event` with `payload` as ack `id` and waits for that ack until `deadline`: the time
/// from the emit to the ack, in nanoseconds, and the ack's data. `None` when the connection
/// failed or the deadline passed.
async fn ask_once(
    conn: &mut Conn,
    event: &str,
    payload: &serde_json::Value,
    id: u64,
    deadline: Instant,
) -> Option<(u64, String)> {
    let sent = Instant::now();
    conn.emit(event, payload, Some(id)).await.ok()?;
    loop {
        let Recv::Text(t) = conn.recv(deadline).await else {
            return None;
        };
        if let Packet::Ack { id: got, data } = wire::decode(&t)
            && got == id
        {
            return Some((sent.elapsed().as_nanos() as u64, data.to_owned()));
        }
    }
}

/// The clients' results of scenarios 6 and 7: their latencies, sorted, how many answers were
/// wrong, and the seconds from `start` to the last client's last ack.
async fn gather(
    mut tasks: tokio::task::JoinSet<(Vec<u64>, u64, Instant)>,
    start: Instant,
) -> Result<(Vec<u64>, u64, f64), BoxError> {
    let (mut latencies, mut wrong, mut last) = (Vec::new(), 0, start);
    while let Some(got) = tasks.join_next().await {
        let (l, w, finished) = got?;
        latencies.extend(l);
        wrong += w;
        last = last.max(finished);
    }
    latencies.sort_unstable();
    Ok((latencies, wrong, (last - start).as_secs_f64().max(1e-9)))
}
