//! The HTTP front end (`docs/protocol.md` sections 5 and 10): every client command as `POST
//! /api/chat/events/{event}`, through the same command layer as Socket.IO; an answer and
//! its resume as Server-Sent Events, reading the same stream log and carrying the same
//! typed [`StreamEvent`](marie_core::StreamEvent)s; files; health probes.
//!
//! ## Layout
//!
//! - `mod.rs`: the routes, authentication, errors as HTTP responses, the routes that name a
//!   stream or an approval alone.
//! - `conversations.rs`: a user's conversations, REST-shaped (`/api/chat/conversations`).
//! - `events.rs`: `POST /api/chat/events/{event}`, and the link of an HTTP request.
//! - `sse.rs`: an SSE response following one stream.
//! - `files.rs`: uploads and downloads of files.
//! - `ai_sdk/`: the Vercel AI SDK's endpoints, over HTTP and WebSocket (section 12).
//! - `ag_ui/`: MARIE as an AG-UI agent (section 12).

mod ag_ui;
mod ai_sdk;
mod conversations;
mod events;
mod files;
mod sse;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use marie_core::{ApprovalId, Error, ErrorCode, StreamId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::adapter::Adapter;

use crate::commands::{self, Caller, ClientEvent, Command};
use crate::guards::PacketSize;
use crate::state::NodeState;
use events::HttpLink;

/// The routes; `with_health` adds `/healthz` and `/readyz` (see
/// [`MarieHandle::http_routes`](crate::MarieHandle::http_routes)).
pub(crate) fn routes<A: Adapter>(shared: Arc<NodeState<A>>, with_health: bool) -> axum::Router {
    let upload_limit = shared
        .engine
        .config()
        .max_file_bytes
        .saturating_add(files::MULTIPART_OVERHEAD);
    // Bodies up to the transport's bound reach the command layer, which answers
    // `payload_too_large` past `Limits::max_event_bytes`, as it does on Socket.IO.
    let event_limit = usize::try_from(shared.config.max_payload).unwrap_or(usize::MAX);
    let chat = axum::Router::new()
        .route(
            "/api/chat/files",
            post(files::upload::<A>).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/chat/files/{file_id}",
            get(files::download::<A>).delete(files::delete::<A>),
        )
        .route(
            "/api/chat/events/{event}",
            post(events::event::<A>).layer(DefaultBodyLimit::max(event_limit)),
        )
        .route(
            "/api/chat/send",
            post(send::<A>).layer(DefaultBodyLimit::max(event_limit)),
        )
        .route("/api/chat/conversations", get(conversations::list::<A>))
        .route(
            "/api/chat/conversations/{conversation_id}",
            get(conversations::get_one::<A>)
                .patch(conversations::update::<A>)
                .delete(conversations::delete::<A>)
                .layer(DefaultBodyLimit::max(event_limit)),
        )
        .route(
            "/api/chat/conversations/{conversation_id}/export",
            get(conversations::export::<A>),
        )
        .route(
            "/api/ai-sdk/chat",
            post(ai_sdk::chat::<A>).layer(DefaultBodyLimit::max(event_limit)),
        )
        .route("/api/ai-sdk/chat/{id}/stream", get(ai_sdk::stream::<A>))
        .route("/api/ai-sdk/chat/{id}/messages", get(ai_sdk::messages::<A>))
        .route("/api/ai-sdk/ws", get(ai_sdk::ws::upgrade::<A>))
        .route(
            "/api/ag-ui",
            post(ag_ui::run::<A>).layer(DefaultBodyLimit::max(event_limit)),
        )
        .route("/api/chat/streams/{stream_id}", get(resume::<A>))
        .route("/api/chat/approvals/{approval_id}", post(approve::<A>));
    let routes = if with_health {
        chat.route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready::<A>))
    } else {
        chat
    };
    routes.with_state(shared)
}

/// `POST /api/chat/approvals/{approval_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    approved: bool,
    #[serde(default)]
    reason: Option<String>,
}

/// `GET /api/chat/streams/{stream_id}` query.
#[derive(Debug, Default, Deserialize)]
struct ResumeQuery {
    #[serde(default)]
    after_seq: Option<u64>,
    #[serde(default)]
    token: Option<String>,
}

/// The JSON body of an error response.
#[derive(Debug, Serialize)]
struct ErrorBody {
    code: ErrorCode,
    message: String,
}

/// An error as an HTTP response: `{code, message}` with a matching status.
struct HttpError(Error);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self.0.code() {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Busy | ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::RateLimited | ErrorCode::BudgetExceeded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PayloadTooLarge | ErrorCode::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedFileType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ResumeUnavailable => StatusCode::GONE,
            ErrorCode::ProviderUnavailable => StatusCode::BAD_GATEWAY,
            _ if matches!(self.0, Error::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody {
            code: self.0.code(),
            message: self.0.client_message(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The caller, from `Authorization: Bearer <token>` (or `?token=` where allowed): `401
/// {code:"unauthorized"}` when there is none or it is refused.
async fn identify<A: Adapter>(
    shared: &NodeState<A>,
    headers: &HeaderMap,
    query_token: Option<String>,
) -> Result<Caller, HttpError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let token = bearer
        .or_else(|| query_token.filter(|_| shared.config.allow_query_token))
        .unwrap_or_default();
    Ok(Caller::authenticate(shared.authenticator.as_ref(), &token).await?)
}

/// `POST /api/chat/send`: `send_message` answered as SSE, from its `stream_start` (the
/// first HTTP route, kept: `POST /api/chat/events/send_message` with `Accept:
/// text/event-stream` is the same).
async fn send<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let size = PacketSize::text(body.len());
    let link = HttpLink {
        caller: &caller,
        sse: true,
    };
    let payload = events::json_payload(&body).and_then(|payload| match payload {
        // Always streamed: the route answers with the stream.
        Some(Value::Object(fields)) if fields.contains_key("stream") => Err(Error::BadRequest(
            "invalid body: `stream`: unknown field (this route always streams)".into(),
        )),
        other => Ok(other),
    });
    let acked = commands::dispatch(&shared, &link, &caller, "send_message", payload, &size)
        .await
        .map_err(|refused| HttpError(refused.error))?;
    Ok(events::answer(&shared, &link, acked).await)
}

/// `GET /api/chat/streams/{stream_id}`: the events after `after_seq` (or `Last-Event-ID`,
/// which wins), the live tail, the end: `resume_stream` of a stream named alone.
/// `resume_unavailable` is `410 {code, message}`: an `EventSource` stops on it instead of
/// reconnecting in a loop, as it would after a `stream_error` event in a `200` response.
async fn resume<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(stream_id): Path<String>,
    Query(query): Query<ResumeQuery>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, query.token).await?;
    let stream = StreamId::parse(stream_id)?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| Error::BadRequest("Last-Event-ID must be a seq".into()))
        })
        .transpose()?;
    let command = Command::Resume {
        conversation: None,
        stream,
        last_seq: last_event_id.or(query.after_seq).unwrap_or(0),
    };
    let link = HttpLink {
        caller: &caller,
        sse: true,
    };
    run(&shared, &link, ClientEvent::ResumeStream, command).await
}

/// `POST /api/chat/approvals/{approval_id}`: `approve_tool` of an approval named alone.
async fn approve<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(approval_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ApproveBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let Json(body) = body.map_err(|e| Error::BadRequest(format!("invalid body: {e}")))?;
    let command = Command::Approve {
        conversation: None,
        approval: ApprovalId::parse(approval_id)?,
        approved: body.approved,
        reason: body.reason,
    };
    let link = HttpLink {
        caller: &caller,
        sse: false,
    };
    run(&shared, &link, ClientEvent::ApproveTool, command).await
}

/// A command a route decoded itself, through the command layer's checks.
async fn run<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    link: &HttpLink<'_>,
    event: ClientEvent,
    command: Command,
) -> Result<Response, HttpError> {
    let size = PacketSize::default();
    let acked = commands::dispatch_command(shared, link, link.caller, event, command, &size)
        .await
        .map_err(|refused| HttpError(refused.error))?;
    Ok(events::answer(shared, link, acked).await)
}

/// `GET /readyz`.
async fn ready<A: Adapter>(State(shared): State<Arc<NodeState<A>>>) -> Response {
    match shared.engine.ready().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(Error::ShuttingDown) => {
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}
