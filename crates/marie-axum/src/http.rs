//! The HTTP fallback (PROTOCOL.md section 5): an answer and its resume as Server-Sent
//! Events, reading the same stream log as the Socket.IO side; and health probes.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use marie_core::{ConversationId, Credentials, Error, ErrorCode, Identity, SendRequest, StreamId};
use serde::Deserialize;
use serde_json::json;
use socketioxide::adapter::Adapter;

use crate::MarieHandle;
use crate::delivery::{self, Out, Outbox};
use crate::sink::Hub;

/// `POST /api/chat/send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    conversation_id: String,
    message: String,
    #[serde(default)]
    client_message_id: Option<String>,
}

/// `GET /api/chat/streams/{stream_id}` query.
#[derive(Debug, Default, Deserialize)]
struct ResumeQuery {
    #[serde(default)]
    after_seq: Option<u64>,
    #[serde(default)]
    token: Option<String>,
}

impl<A: Adapter> MarieHandle<A> {
    /// The HTTP routes of the protocol, to merge into the app's `Router`:
    ///
    /// - `POST /api/chat/send` (`Authorization: Bearer <token>`, JSON body
    ///   `{conversation_id, message, client_message_id?}`): sends the message and answers with
    ///   the streamed answer as Server-Sent Events: `stream_start`, then `stream_chunk`s (the
    ///   SSE `id:` is the chunk's `seq`), then `stream_end` or `stream_error`, with the same
    ///   payloads as over Socket.IO. Errors before the answer starts are JSON
    ///   `{code, message}` with a matching HTTP status.
    /// - `GET /api/chat/streams/{stream_id}?after_seq=N` (or the `Last-Event-ID` header, which
    ///   wins): the chunks after `N`, then the live tail, then the end, as SSE.
    ///   `stream_error {code:"resume_unavailable"}` when the log cannot continue from `N`.
    /// - `GET /healthz`: `200 ok` while the process serves.
    /// - `GET /readyz`: `200` when the store answers and the server is not shutting down,
    ///   `503` otherwise.
    pub fn http_routes(&self) -> axum::Router {
        self.chat_routes().merge(
            axum::Router::new()
                .route("/healthz", get(|| async { "ok" }))
                .route("/readyz", get(ready::<A>))
                .with_state(self.clone()),
        )
    }

    /// Only the SSE routes of [`http_routes`](Self::http_routes) (`/api/chat/...`), for an
    /// app that serves its own health probes.
    pub fn chat_routes(&self) -> axum::Router {
        axum::Router::new()
            .route("/api/chat/send", post(send::<A>))
            .route("/api/chat/streams/{stream_id}", get(resume::<A>))
            .with_state(self.clone())
    }
}

/// An error as an HTTP response.
struct HttpError(Error);

/// A refused bearer token: `401 {code:"unauthorized"}`.
struct Unauthorized;

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let body = Json(json!({ "code": "unauthorized", "message": "unauthorized" }));
        (StatusCode::UNAUTHORIZED, body).into_response()
    }
}

impl From<Unauthorized> for Response {
    fn from(u: Unauthorized) -> Response {
        u.into_response()
    }
}

impl From<HttpError> for Response {
    fn from(e: HttpError) -> Response {
        e.into_response()
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self.0.code() {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Busy => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::ResumeUnavailable => StatusCode::GONE,
            ErrorCode::ProviderUnavailable => StatusCode::BAD_GATEWAY,
            _ if matches!(self.0, Error::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = Json(json!({ "code": self.0.code(), "message": self.0.client_message() }));
        (status, body).into_response()
    }
}

async fn identify<A: Adapter>(
    handle: &MarieHandle<A>,
    headers: &HeaderMap,
    query_token: Option<String>,
) -> Result<Identity, Unauthorized> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let token = bearer
        .or_else(|| query_token.filter(|_| handle.shared.config.allow_query_token))
        .ok_or(Unauthorized)?;
    handle
        .shared
        .authenticator
        .authenticate(&Credentials::bearer(token))
        .await
        .map_err(|e| {
            tracing::info!(reason = %e, "HTTP request refused");
            Unauthorized
        })
}

async fn send<A: Adapter>(
    State(handle): State<MarieHandle<A>>,
    headers: HeaderMap,
    body: Result<Json<SendBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, Response> {
    let who = identify(&handle, &headers, None).await?;
    let Json(body) =
        body.map_err(|e| HttpError(Error::BadRequest(format!("invalid body: {e}"))))?;
    let conversation = ConversationId::parse(body.conversation_id).map_err(HttpError)?;
    let engine = handle.engine();
    let outcome = engine
        .send(
            &who,
            SendRequest {
                conversation_id: conversation.clone(),
                message: body.message,
                stream: true,
                client_message_id: body.client_message_id,
            },
        )
        .await
        .map_err(HttpError)?;
    // The log exists once `send` returns: follow it from the start.
    let read = engine
        .read_stream(&who, Some(&conversation), &outcome.stream_id, 0, 1)
        .await
        .map_err(HttpError)?;
    let start = json!({
        "conversation_id": conversation,
        "stream_id": outcome.stream_id,
        "message_id": read.meta.message_id,
        "status": "streaming",
    });
    let events = follow(&handle.shared.hub, conversation, outcome.stream_id, 0).await;
    Ok(sse(Some(start), events))
}

async fn resume<A: Adapter>(
    State(handle): State<MarieHandle<A>>,
    Path(stream_id): Path<String>,
    Query(query): Query<ResumeQuery>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    let who = identify(&handle, &headers, query.token).await?;
    let stream = StreamId::parse(stream_id).map_err(HttpError)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| HttpError(Error::BadRequest("Last-Event-ID must be a seq".into())))
        })
        .transpose()?;
    let after = last_event_id.or(query.after_seq).unwrap_or(0);
    let read = handle
        .engine()
        .read_stream(&who, None, &stream, after, 1)
        .await;
    let read = match read {
        Ok(read) => read,
        Err(e @ Error::ResumeUnavailable(_)) => {
            let payload = json!({
                "stream_id": stream,
                "code": e.code(),
                "error": e.client_message(),
                "retryable": false,
                "after_seq": after,
            });
            let event = Event::default()
                .event("stream_error")
                .data(payload.to_string());
            let once = futures_util::stream::once(async move { Ok::<_, Infallible>(event) });
            return Ok(Sse::new(once).into_response());
        }
        Err(e) => return Err(HttpError(e).into()),
    };
    let events = follow(&handle.shared.hub, read.meta.conversation_id, stream, after).await;
    Ok(sse(None, events))
}

async fn ready<A: Adapter>(State(handle): State<MarieHandle<A>>) -> Response {
    let engine = handle.engine();
    if engine.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let probe = ConversationId::parse("__readyz__")
        .map(|c| async move { engine.store().conversation(&c).await });
    match probe {
        Ok(fut) => match fut.await {
            Ok(_) => (StatusCode::OK, "ready").into_response(),
            Err(e) => {
                tracing::warn!(error = %e, "readiness: the store does not answer");
                (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
            }
        },
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "probe").into_response(),
    }
}

/// An SSE follower of one stream; unregistered when the response is dropped.
struct Following<A: Adapter> {
    hub: Arc<Hub<A>>,
    conversation: ConversationId,
    id: u64,
    outbox: Arc<Outbox>,
    done: bool,
}

impl<A: Adapter> Drop for Following<A> {
    fn drop(&mut self) {
        self.outbox.close();
        self.hub.followers.remove(&self.conversation, self.id);
    }
}

/// Registers a follower of `stream` (subscribe first), then queues the log after `after`.
async fn follow<A: Adapter>(
    hub: &Arc<Hub<A>>,
    conversation: ConversationId,
    stream: StreamId,
    after: u64,
) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    let outbox = hub.new_outbox(Some(stream.to_string()));
    let id = hub.followers.add(&conversation, outbox.clone());
    let following = Following {
        hub: hub.clone(),
        conversation: conversation.clone(),
        id,
        outbox: outbox.clone(),
        done: false,
    };
    if let Err(e) = delivery::resume(&hub.log, &outbox, &conversation, &stream, after).await {
        // The log went away between the check and now: say so and end.
        outbox.push(Out::Event {
            stream_id: stream.to_string(),
            name: "stream_error".into(),
            payload: Arc::new(json!({
                "conversation_id": conversation,
                "stream_id": stream,
                "code": e.code(),
                "error": e.client_message(),
                "retryable": false,
                "after_seq": after,
            })),
        });
    }
    futures_util::stream::unfold(following, |mut f| async move {
        loop {
            if f.done {
                return None;
            }
            let out = f.outbox.next().await?;
            if out.name() == "stream_start" {
                continue; // sent once, at the top
            }
            f.done = out.is_terminal();
            f.outbox.sent(&out);
            let mut event = Event::default()
                .event(out.name())
                .data(out.to_json_string());
            if let Some(seq) = out.seq() {
                event = event.id(seq.to_string());
            }
            return Some((Ok(event), f));
        }
    })
}

fn sse(
    start: Option<serde_json::Value>,
    events: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Response {
    use futures_util::StreamExt;
    let first = start
        .map(|s| Ok::<_, Infallible>(Event::default().event("stream_start").data(s.to_string())));
    let stream = futures_util::stream::iter(first).chain(events);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
