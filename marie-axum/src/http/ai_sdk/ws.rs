//! `GET /api/ai-sdk/ws`: the AI SDK's own WebSocket transport (`ai` 7's
//! `WebSocketChatTransport`, `docs/protocol.md` section 12): several chats over one socket,
//! each request (`send`, `resume`) answered with `start`, its chunks numbered from 0 (`chunk
//! {requestId, sequence, chunk}`), and `end`; `error` or `no-active` instead. A request's
//! chunks are the HTTP endpoint's (`take_turn`, `chunks`); only the framing differs.
//!
//! Credentials: a frame's `headers.authorization` (`Bearer <token>`), else the `token` query
//! parameter of the upgrade (browsers cannot set headers on it). A frame that cannot be read
//! is answered with `error` when it names its request, and never closes the socket: the
//! SDK's client fails every chat on a socket that misbehaves, so the server stays strict in
//! what it sends and lenient in what it takes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use marie_core::{ConversationId, Error, StreamId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::adapter::Adapter;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::chunks::UiChunk;
use super::messages::Posted;
use super::{ChatRequest, chunks, resume_turn, take_turn};
use crate::commands::{Caller, ClientEvent, Command};
use crate::guards::PacketSize;
use crate::http::HttpError;
use crate::http::events::{HttpLink, command as run};
use crate::state::NodeState;

/// Frames a client sends.
#[derive(Debug, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
enum ClientFrame {
    Send {
        request_id: String,
        id: String,
        #[serde(default)]
        trigger: Option<String>,
        #[serde(default)]
        message_id: Option<String>,
        #[serde(default)]
        messages: Vec<Posted>,
        #[serde(default)]
        headers: HashMap<String, String>,
        /// The app's extras; MARIE reads `client_tools`.
        #[serde(default)]
        body: Option<Value>,
    },
    Resume {
        request_id: String,
        id: String,
        #[serde(default)]
        last_sequence: Option<u64>,
        #[serde(default)]
        headers: HashMap<String, String>,
    },
    Abort {
        request_id: String,
    },
}

/// Frames the server sends.
#[derive(Debug, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
enum ServerFrame<'a> {
    Start {
        request_id: &'a str,
    },
    Chunk {
        request_id: &'a str,
        sequence: u64,
        chunk: &'a UiChunk,
    },
    End {
        request_id: &'a str,
    },
    Error {
        request_id: &'a str,
        error_text: String,
    },
    NoActive {
        request_id: &'a str,
    },
}

/// The upgrade's query.
#[derive(Debug, Default, Deserialize)]
pub(in crate::http) struct WsQuery {
    #[serde(default)]
    token: Option<String>,
}

/// A request being answered: its task, and the answer it started (which `abort` cancels).
struct Request {
    /// Which request of this id (a client may use an id again): a task only ever touches
    /// its own entry.
    serial: u64,
    task: JoinHandle<()>,
    /// Its setup (the send, or the resume's access check) is done: it streams.
    begun: bool,
    started: Option<(Caller, ConversationId, StreamId)>,
    /// `abort` came while the request was being set up: it stops (and cancels what its send
    /// started) as soon as the setup is done.
    aborted: bool,
}

/// The socket's requests by id, shared by its reader and its requests' tasks. A sync
/// mutex, never held across an `.await`.
#[derive(Default)]
struct Requests {
    by_id: Mutex<HashMap<String, Request>>,
    serials: std::sync::atomic::AtomicU64,
}

impl Requests {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Request>> {
        // Entries are inserted and removed whole: a poisoned lock still holds a consistent map.
        self.by_id.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The request's setup is done (`started`: the answer its send started): `false` when
    /// it was aborted (or replaced) meanwhile, and must stop; its answer is then cancelled.
    fn begin(
        &self,
        request_id: &str,
        serial: u64,
        started: Option<(Caller, ConversationId, StreamId)>,
    ) -> Result<(), Option<(Caller, ConversationId, StreamId)>> {
        let mut requests = self.lock();
        match requests.get_mut(request_id) {
            Some(entry) if entry.serial == serial && !entry.aborted => {
                entry.begun = true;
                entry.started = started;
                Ok(())
            }
            _ => Err(started),
        }
    }

    /// The request's task is over: its entry goes (unless another request took its id).
    fn done(&self, request_id: &str, serial: u64) {
        let mut requests = self.lock();
        if requests.get(request_id).is_some_and(|e| e.serial == serial) {
            requests.remove(request_id);
        }
    }
}

/// `GET /api/ai-sdk/ws`.
pub(in crate::http) async fn upgrade<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    // A token on the upgrade is checked now, so that a wrong one is a 401, not a socket
    // whose every request fails; and again with each request, so that a token revoked
    // meanwhile starts nothing more.
    let socket_token = query.token.filter(|t| !t.is_empty());
    if let Some(token) = &socket_token {
        Caller::authenticate(shared.authenticator.as_ref(), token).await?;
    }
    let limit = usize::try_from(shared.config.max_payload).unwrap_or(usize::MAX);
    Ok(ws
        .max_message_size(limit)
        .on_upgrade(move |socket| serve(shared, socket_token, socket)))
}

/// Reads frames until the socket closes; a request's answer is written by its own task, so
/// that chats on one socket do not wait for each other.
async fn serve<A: Adapter>(
    shared: Arc<NodeState<A>>,
    socket_token: Option<String>,
    socket: WebSocket,
) {
    let (mut sink, mut frames) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(256);
    let writer = tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let requests: Arc<Requests> = Arc::default();
    while let Some(Ok(message)) = frames.next().await {
        let text = match message {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Message::Close(_) => break,
            _ => continue,
        };
        let size = PacketSize::text(text.len());
        match serde_json::from_str::<ClientFrame>(&text) {
            Ok(frame) => {
                handle(
                    &shared,
                    socket_token.as_deref(),
                    &requests,
                    &tx,
                    frame,
                    size,
                )
                .await;
            }
            Err(e) => {
                // Answered when the frame names its request; otherwise nobody waits for it.
                let request_id = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["requestId"].as_str().map(str::to_owned));
                if let Some(request_id) = request_id {
                    let error = Error::BadRequest(format!("invalid frame: {e}"));
                    send_error(&tx, &request_id, &error).await;
                }
            }
        }
    }
    // The socket is gone: its requests stop; their answers go on, and can be resumed.
    for (_, request) in requests.lock().drain() {
        request.task.abort();
    }
    drop(tx);
    let _ = writer.await;
}

/// One frame: a request started in its own task, or an abort.
async fn handle<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    socket_token: Option<&str>,
    requests: &Arc<Requests>,
    tx: &mpsc::Sender<String>,
    frame: ClientFrame,
    size: PacketSize,
) {
    let (request_id, headers) = match &frame {
        ClientFrame::Send {
            request_id,
            headers,
            ..
        }
        | ClientFrame::Resume {
            request_id,
            headers,
            ..
        } => (request_id.clone(), headers),
        ClientFrame::Abort { request_id } => {
            abort(shared, requests, request_id).await;
            return;
        }
    };
    let caller = match caller(shared, socket_token, headers).await {
        Ok(caller) => caller,
        Err(e) => return send_error(tx, &request_id, &e).await,
    };
    let serial = requests
        .serials
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (shared, tx, registry, id) = (
        shared.clone(),
        tx.clone(),
        requests.clone(),
        request_id.clone(),
    );
    // Spawned and registered in one critical section: the task looks itself up only once it
    // is registered, and an `abort` that follows at once finds it.
    let mut by_id = requests.lock();
    let task = tokio::spawn(async move {
        answer(&shared, &registry, serial, &tx, &id, caller, frame, size).await;
        registry.done(&id, serial);
    });
    let request = Request {
        serial,
        task,
        begun: false,
        started: None,
        aborted: false,
    };
    // A request id used twice: the first one's stream stops (its client forgot it).
    if let Some(earlier) = by_id.insert(request_id, request) {
        earlier.task.abort();
    }
}

/// Answers a `send` or `resume`: `start`, the chunks, `end`; or `error`, or `no-active`.
#[allow(clippy::too_many_arguments)] // one request's whole context, passed once
async fn answer<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    requests: &Requests,
    serial: u64,
    tx: &mpsc::Sender<String>,
    request_id: &str,
    caller: Caller,
    frame: ClientFrame,
    size: PacketSize,
) {
    let (turn, skip) = match frame {
        ClientFrame::Send {
            id,
            trigger,
            message_id,
            messages,
            body,
            ..
        } => {
            let client_tools = body
                .as_ref()
                .and_then(|b| b.get("client_tools"))
                .map(|tools| serde_json::from_value(tools.clone()))
                .transpose();
            let client_tools = match client_tools {
                Ok(tools) => tools.unwrap_or_default(),
                Err(e) => {
                    let error = Error::BadRequest(format!("invalid body: `client_tools`: {e}"));
                    return send_error(tx, request_id, &error).await;
                }
            };
            let request = ChatRequest {
                id,
                messages,
                trigger,
                message_id,
                client_tools,
            };
            match take_turn(shared, &caller, request, &size).await {
                Ok(turn) => {
                    let started = (caller, turn.conversation.clone(), turn.stream.clone());
                    if let Err(Some(started)) = requests.begin(request_id, serial, Some(started)) {
                        // Aborted while its answer was being started: it is cancelled now.
                        cancel(shared, started).await;
                        return;
                    }
                    (turn, 0)
                }
                Err(e) => return send_error(tx, request_id, &e).await,
            }
        }
        ClientFrame::Resume {
            id, last_sequence, ..
        } => {
            let conversation = match ConversationId::parse(id) {
                Ok(conversation) => conversation,
                Err(e) => return send_error(tx, request_id, &e).await,
            };
            match resume_turn(shared, &caller, conversation).await {
                Ok(Some(turn)) => {
                    if requests.begin(request_id, serial, None).is_err() {
                        return;
                    }
                    (turn, last_sequence.map_or(0, |last| last.saturating_add(1)))
                }
                Ok(None) => {
                    send(tx, &ServerFrame::NoActive { request_id }).await;
                    return;
                }
                Err(e) => return send_error(tx, request_id, &e).await,
            }
        }
        ClientFrame::Abort { .. } => return,
    };
    send(tx, &ServerFrame::Start { request_id }).await;
    let chunks = chunks(shared, turn).await;
    let mut chunks = std::pin::pin!(chunks);
    // A resume replays the answer from its start; a client that has some of it (`lastSequence`)
    // gets the rest, numbered as it was.
    let mut sequence = 0;
    while let Some(chunk) = chunks.next().await {
        if sequence >= skip {
            let frame = ServerFrame::Chunk {
                request_id,
                sequence,
                chunk: &chunk,
            };
            if !send(tx, &frame).await {
                return;
            }
        }
        sequence += 1;
    }
    send(tx, &ServerFrame::End { request_id }).await;
}

/// `abort`: the request's stream stops; an answer it started is cancelled (as
/// `cancel_stream`, with the checks of the one who started it). A request still being set
/// up is marked, and stops (cancelling what it started) once it is.
async fn abort<A: Adapter>(shared: &Arc<NodeState<A>>, requests: &Requests, request_id: &str) {
    let started = {
        let mut by_id = requests.lock();
        match by_id.get_mut(request_id) {
            None => return,
            Some(entry) if !entry.begun => {
                entry.aborted = true;
                return;
            }
            Some(_) => by_id.remove(request_id).and_then(|entry| {
                entry.task.abort();
                entry.started
            }),
        }
    };
    if let Some(started) = started {
        cancel(shared, started).await;
    }
}

/// Cancels the answer a request started.
async fn cancel<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    (caller, conversation, stream): (Caller, ConversationId, StreamId),
) {
    let link = HttpLink {
        caller: &caller,
        sse: false,
    };
    let cancel = Command::Cancel {
        conversation,
        stream: Some(stream),
    };
    if let Err(e) = run(
        shared,
        &link,
        ClientEvent::CancelStream,
        cancel,
        &PacketSize::default(),
    )
    .await
    {
        // It ended meanwhile, most likely: nothing to cancel.
        tracing::debug!(error = %e, "an aborted request's answer was not cancelled");
    }
}

/// The caller of a request: its frame's `authorization` header, else the socket's token,
/// authenticated again.
async fn caller<A: Adapter>(
    shared: &NodeState<A>,
    socket_token: Option<&str>,
    headers: &HashMap<String, String>,
) -> Result<Caller, Error> {
    let bearer = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    match bearer.or(socket_token) {
        Some(token) => Caller::authenticate(shared.authenticator.as_ref(), token).await,
        None => Err(Error::Unauthorized("unauthorized")),
    }
}

async fn send_error(tx: &mpsc::Sender<String>, request_id: &str, error: &Error) {
    let frame = ServerFrame::Error {
        request_id,
        error_text: error.client_message(),
    };
    send(tx, &frame).await;
}

/// Queues a frame for the socket's writer; `false` once the socket is gone.
async fn send(tx: &mpsc::Sender<String>, frame: &ServerFrame<'_>) -> bool {
    match serde_json::to_string(frame) {
        Ok(text) => tx.send(text).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "could not serialize a WebSocket frame");
            false
        }
    }
}
