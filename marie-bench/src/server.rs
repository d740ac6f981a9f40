//! The servers under test, started on 127.0.0.1:0: MARIE (in-memory store, a zero-delay
//! provider, no limits) and a bare socketioxide server that answers the same events with
//! the same payload shapes and no engine, store, log or per-client queue. For the history
//! scenario, MARIE on any store ([`marie_app`]) and a bare server that answers
//! `get_history` from a `Vec` ([`bare_history_app`]), started by [`start_with`].
//!
//! Both answer a message `k=N [d=MS]` with N chunks (MS milliseconds apart) whose content is the server's clock when the
//! chunk was made (nanoseconds since [`now_nanos`]'s epoch, then a space), so that a client
//! in the same process measures the time from the provider's chunk to its receipt.

use std::future::Future;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::Router;
use futures_util::{StreamExt, stream};
use marie_adapters::{MemoryStore, RedisConfig, RedisControlBus, RedisStore, RedisStreamLog};
use marie_axum::redis::{RedisAdapter, RedisAdapterOptions};
use marie_axum::{Limits, Marie};
use marie_core::{
    AuthError, Authenticator, ChatMessage, ConversationInfo, Credentials, FinishReason, Identity,
    LlmEvent, LlmProvider, LlmRequest, LlmStream, ProviderError, RoomStore, Usage, UserId,
    authenticator_fn,
};
use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_core::adapter::DefinedAdapter;
use tokio::runtime::Runtime;

use crate::client::BoxError;

/// Which server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// MARIE on the in-memory backends.
    Marie,
    /// socketioxide alone, doing the same events.
    Bare,
    /// Node's socket.io 4 (`marie-bench/node`), for the idle comparison only.
    Node,
    /// The seed's design, Flask-SocketIO on eventlet (`marie-bench/seed`), for the
    /// idle comparison only.
    Seed,
}

impl Target {
    /// Its name on the command line and in the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Target::Marie => "marie",
            Target::Bare => "bare",
            Target::Node => "node",
            Target::Seed => "seed",
        }
    }

    /// Parses a command-line name.
    pub(crate) fn parse(s: &str) -> Option<Target> {
        match s {
            "marie" => Some(Target::Marie),
            "bare" => Some(Target::Bare),
            _ => None,
        }
    }
}

/// Nanoseconds since a process-wide epoch (the first call).
pub(crate) fn now_nanos() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// What a message asks for: `k=N` chunks (1 by default), `d=MS` milliseconds before each
/// chunk after the first (0 by default), e.g. `k=50 d=20`.
pub(crate) fn asked(message: &str) -> (u64, Duration) {
    let (mut k, mut delay) = (1, Duration::ZERO);
    for word in message.split_whitespace() {
        if let Some(n) = word.strip_prefix("k=").and_then(|n| n.parse().ok()) {
            k = n;
        } else if let Some(ms) = word.strip_prefix("d=").and_then(|n| n.parse().ok()) {
            delay = Duration::from_millis(ms);
        }
    }
    (k, delay)
}

/// One chunk's content: the time it was made.
fn stamp() -> String {
    format!("{} ", now_nanos())
}

/// A provider that answers `k=N d=MS` with N chunks, MS milliseconds apart (none by
/// default), each its time stamp.
#[derive(Clone, Copy, Debug)]
struct BenchProvider;

#[async_trait]
impl LlmProvider for BenchProvider {
    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, ProviderError> {
        let (k, delay) = asked(request.last_user_message().unwrap_or_default());
        let deltas = stream::iter(0..k).then(move |i| async move {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            Ok(LlmEvent::Delta(stamp()))
        });
        let done = stream::once(async move {
            Ok(LlmEvent::Done {
                usage: Some(Usage::reported(1, k)),
                finish_reason: FinishReason::Stop,
            })
        });
        Ok(deltas.chain(done).boxed())
    }

    fn name(&self) -> &str {
        "bench"
    }
}

/// Any valid user id is its own token.
fn bench_auth() -> impl Authenticator {
    authenticator_fn(|c: Credentials| {
        let identity = UserId::parse(c.token())
            .map(Identity::new)
            .map_err(|_| AuthError::InvalidCredentials("not a user id".into()));
        async move { identity }
    })
}

/// MARIE's router on `store` and the in-memory stream log and control bus.
pub(crate) fn marie_app(store: impl RoomStore) -> Result<Router, BoxError> {
    let (layer, handle) = Marie::builder()
        .authenticator(bench_auth())
        .store(store)
        .provider(BenchProvider)
        .limits(Limits::unlimited())
        .build()?;
    // The handle shares the layer's state; nothing else needs it.
    drop(handle);
    Ok(Router::new().layer(layer))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The bare socketioxide router: the same events (presence included), the same payload
/// shapes, emitted straight to the room.
fn bare_app() -> Router {
    let (layer, io) = SocketIo::builder().build_layer();
    bare_ns(&io, BareData::Nothing);
    Router::new().layer(layer)
}

/// The bare socketioxide router of the history scenario: [`bare_app`]'s events, and
/// `get_history` answered from `history`, one branch sorted by id (oldest first).
pub(crate) fn bare_history_app(history: Arc<Vec<ChatMessage>>) -> Router {
    let (layer, io) = SocketIo::builder().build_layer();
    bare_ns(&io, BareData::History(history));
    Router::new().layer(layer)
}

/// The bare server of scenario 7: it also answers `list_conversations {before?, limit?}`
/// from `list` (one user's conversations, the most recently active first, as an index
/// keeps them).
pub(crate) fn bare_list_app(list: Arc<Vec<ConversationInfo>>) -> Router {
    let (layer, io) = SocketIo::builder().build_layer();
    bare_ns(&io, BareData::List(list));
    Router::new().layer(layer)
}

/// What the bare server holds beside its rooms.
#[derive(Clone)]
enum BareData {
    Nothing,
    /// Scenario 6's conversation, for `get_history`.
    History(Arc<Vec<ChatMessage>>),
    /// Scenario 7's list, the newest first, for `list_conversations`.
    List(Arc<Vec<ConversationInfo>>),
}

/// The `list_conversations` ack of the bare server, as MARIE's: `{status:"ok",
/// conversations, next_before}` (its cursor: the position of the next item).
#[derive(Serialize)]
struct BareList<'a> {
    status: &'static str,
    conversations: &'a [ConversationInfo],
    next_before: Option<String>,
}

/// The bare server's page of `list` for `{before?, limit?}`: `limit` (30 by default, at
/// most 100) items from the position `before` names.
fn bare_list_page<'a>(list: &'a [ConversationInfo], p: &Value) -> BareList<'a> {
    let limit = p["limit"].as_u64().map_or(30, |l| {
        usize::try_from(l).unwrap_or(usize::MAX).clamp(1, 100)
    });
    let start = p["before"]
        .as_str()
        .and_then(|b| b.parse::<usize>().ok())
        .unwrap_or(0)
        .min(list.len());
    let stop = (start + limit).min(list.len());
    BareList {
        status: "ok",
        conversations: &list[start..stop],
        next_before: (stop < list.len()).then(|| stop.to_string()),
    }
}

/// The `get_history` ack of the bare server, as MARIE's: `{status:"ok", conversation_id,
/// messages}`.
#[derive(Serialize)]
struct BarePage<'a> {
    status: &'static str,
    conversation_id: &'a str,
    messages: &'a [ChatMessage],
}

/// Where the bare server's page of `history` starts and ends for `get_history
/// {conversation_id, before?, limit?}`: the `limit` (50 by default, at most 200) messages
/// before `before` (found by a binary search: the ids sort by time), or the newest ones.
fn bare_page(history: &[ChatMessage], p: &Value) -> (usize, usize) {
    let limit = p["limit"]
        .as_u64()
        .map_or(50, |l| usize::try_from(l).unwrap_or(usize::MAX).min(200));
    let stop = match p["before"].as_str() {
        Some(before) => history.partition_point(|m| m.message_id.as_str() < before),
        None => history.len(),
    };
    (stop.saturating_sub(limit), stop)
}

/// The bare server's namespace `/` on `io`; with a history it answers `get_history` too,
/// with a list `list_conversations`.
fn bare_ns<A: Adapter + DefinedAdapter>(io: &SocketIo<A>, data: BareData) -> A::InitRes {
    io.ns("/", move |socket: SocketRef<A>, Data(auth): Data<Value>| {
        // Each connection's handler gets its own handle on the data.
        let data = data.clone();
        async move {
        let Some(user) = auth
            .get("token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
        else {
            let _ = socket.disconnect();
            return;
        };
        socket.on(
            "join_conversation",
            |socket: SocketRef<A>, Data(p): Data<Value>| async move {
                let conversation = p["conversation_id"].as_str().unwrap_or_default().to_owned();
                socket.join(conversation.clone());
                // The protocol's presence events, as MARIE sends them (the seed does too).
                let _ = socket
                    .to(conversation.clone())
                    .emit("user_joined", &json!({"user_id": "bare", "conversation_id": conversation}))
                    .await;
                let _ = socket.emit(
                    "joined",
                    &json!({"conversation_id": conversation, "status": "joined", "members": [], "created": true}),
                );
            },
        );
        socket.on(
            "send_message",
            |socket: SocketRef<A>, Data(p): Data<Value>, ack: AckSender<A>| async move {
                let conversation = p["conversation_id"].as_str().unwrap_or_default().to_owned();
                let (k, delay) = asked(p["message"].as_str().unwrap_or_default());
                let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let (stream_id, message_id) = (format!("s{n}"), format!("m{n}"));
                let _ = ack.send(
                    &json!({"message_id": format!("u{n}"), "stream_id": stream_id, "duplicate": false}),
                );
                tokio::spawn(bare_stream(
                    socket,
                    conversation,
                    stream_id,
                    message_id,
                    k,
                    delay,
                ));
            },
        );
        socket.on(
            "send_message_with_ack",
            |socket: SocketRef<A>, Data(p): Data<Value>, ack: AckSender<A>| async move {
                let conversation = p["conversation_id"].as_str().unwrap_or_default().to_owned();
                let (k, _) = asked(p["message"].as_str().unwrap_or_default());
                let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                let _ = ack.send(&json!({"status": "success", "message_id": format!("u{n}")}));
                tokio::spawn(async move {
                    let message: String = (0..k).map(|_| stamp()).collect();
                    let _ = socket
                        .within(conversation.clone())
                        .emit(
                            "message_response",
                            &json!({"conversation_id": conversation, "message_id": format!("m{n}"), "message": message}),
                        )
                        .await;
                });
            },
        );
        socket.on_disconnect(|socket: SocketRef<A>| async move {
            for room in socket.rooms() {
                let _ = socket
                    .to(room.clone())
                    .emit("user_left", &json!({"user_id": "bare", "conversation_id": room}))
                    .await;
            }
        });
        if let BareData::History(history) = data.clone() {
            socket.on(
                "get_history",
                move |Data(p): Data<Value>, ack: AckSender<A>| async move {
                    let (start, stop) = bare_page(&history, &p);
                    let _ = ack.send(&BarePage {
                        status: "ok",
                        conversation_id: p["conversation_id"].as_str().unwrap_or_default(),
                        messages: &history[start..stop],
                    });
                },
            );
        }
        if let BareData::List(list) = data.clone() {
            socket.on(
                "list_conversations",
                move |Data(p): Data<Value>, ack: AckSender<A>| async move {
                    let _ = ack.send(&bare_list_page(&list, &p));
                },
            );
        }
        let _ = socket.emit(
            "connected",
            &json!({"status": "connected", "sid": socket.id.to_string(), "user_id": user, "session": "bare"}),
        );
        }
    })
}

/// The bare server's answer: start, `k` chunks (`delay` apart), end, each emitted to the
/// room at once.
async fn bare_stream<A: Adapter>(
    socket: SocketRef<A>,
    conversation: String,
    stream_id: String,
    message_id: String,
    k: u64,
    delay: Duration,
) {
    let room = || socket.within(conversation.clone());
    let _ = room()
        .emit(
            "stream_start",
            &json!({"conversation_id": conversation, "stream_id": stream_id, "message_id": message_id, "status": "streaming"}),
        )
        .await;
    let mut full = String::new();
    for seq in 1..=k {
        if seq > 1 && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let content = stamp();
        full.push_str(&content);
        let _ = room()
            .emit(
                "stream_chunk",
                &json!({"conversation_id": conversation, "stream_id": stream_id, "seq": seq, "content": content, "done": false, "tokens_used": seq}),
            )
            .await;
    }
    let _ = room()
        .emit(
            "stream_end",
            &json!({
                "conversation_id": conversation, "stream_id": stream_id, "message_id": message_id,
                "full_content": full, "status": "complete",
                "usage": {"prompt_tokens": 1, "completion_tokens": k, "total_tokens": k + 1},
                "finish_reason": "stop",
            }),
        )
        .await;
}

/// Servers running on a runtime of their own (two worker threads), in this process.
/// Dropping it stops them.
pub(crate) struct Server {
    /// Where each node listens (one, or two for a cluster).
    pub(crate) addrs: Vec<SocketAddr>,
    runtime: Option<Runtime>,
}

impl Server {
    /// Where the (first) node listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The Redis the cluster scenario uses.
pub(crate) const REDIS_URL: &str = "redis://127.0.0.1:6379";

/// One node of `target` (with Redis: sharing the Redis under `prefix`).
async fn node(target: Target, redis_prefix: Option<&str>) -> Result<Router, BoxError> {
    let Some(prefix) = redis_prefix else {
        return match target {
            Target::Marie => marie_app(MemoryStore::new()),
            Target::Bare => Ok(bare_app()),
            Target::Node | Target::Seed => {
                Err("a comparison server runs only as a child (idle scenario)".into())
            }
        };
    };
    let adapter = RedisAdapterOptions::new(REDIS_URL)
        .prefix(format!("{prefix}:sio"))
        .connect()
        .await?;
    match target {
        Target::Marie => {
            let config = RedisConfig::new(REDIS_URL).prefix(prefix);
            let (layer, _handle) = Marie::builder()
                .authenticator(bench_auth())
                .store(RedisStore::connect(config.clone()).await?)
                .control_bus(RedisControlBus::connect(config.clone()).await?)
                .stream_log(RedisStreamLog::connect(config).await?)
                .provider(BenchProvider)
                .limits(Limits::unlimited())
                .redis(adapter)
                .build_async()
                .await?;
            Ok(Router::new().layer(layer))
        }
        Target::Node | Target::Seed => {
            Err("a comparison server runs only as a child (idle scenario)".into())
        }
        Target::Bare => {
            let (layer, io) = SocketIo::builder()
                .with_adapter::<RedisAdapter>(adapter)
                .build_layer();
            bare_ns(&io, BareData::Nothing)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Router::new().layer(layer))
        }
    }
}

/// Starts `nodes` nodes of `target` on 127.0.0.1:0, on a runtime of their own; with
/// `redis_prefix`, sharing the Redis at [`REDIS_URL`] under that prefix.
pub(crate) async fn start(
    target: Target,
    nodes: usize,
    redis_prefix: Option<String>,
) -> Result<Server, BoxError> {
    let apps = async move {
        let mut apps = Vec::new();
        for _ in 0..nodes {
            apps.push(node(target, redis_prefix.as_deref()).await?);
        }
        Ok((apps, ()))
    };
    let (server, ()) = start_with(target, apps).await?;
    Ok(server)
}

/// Runs `apps` on a runtime of its own (its threads named after `target`), then serves
/// each router it made on 127.0.0.1:0 there; returns the servers and what `apps` returned
/// beside the routers.
pub(crate) async fn start_with<T: Send + 'static>(
    target: Target,
    apps: impl Future<Output = Result<(Vec<Router>, T), BoxError>> + Send + 'static,
) -> Result<(Server, T), BoxError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("server-{}", target.name()))
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    runtime.spawn(async move {
        let started = async {
            let (apps, made) = apps.await?;
            let mut addrs = Vec::new();
            for app in apps {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                addrs.push(listener.local_addr()?);
                tokio::spawn(async move {
                    let _ = axum::serve(marie_axum::nodelay(listener), app).await;
                });
            }
            Ok::<_, BoxError>((addrs, made))
        }
        .await;
        let _ = tx.send(started.map_err(|e| e.to_string()));
    });
    let (addrs, made) = rx.await.map_err(|_| "the server did not start")??;
    Ok((
        Server {
            addrs,
            runtime: Some(runtime),
        },
        made,
    ))
}

/// `marie-bench serve --target T`: runs `target` in this process, prints
/// `listening <addr>`, and exits when its standard input closes (its parent went away).
pub(crate) fn serve_child(target: Target) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let server = runtime.block_on(start(target, 1, None))?;
    println!("listening {}", server.addr());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(server);
    drop(runtime);
    Ok(())
}
