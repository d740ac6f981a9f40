//! The HTTP front end (`docs/protocol.md` section 5): an answer and its resume as
//! Server-Sent Events, reading the same stream log and carrying the same typed
//! [`StreamEvent`]s as the Socket.IO side; and health probes.
//!
//! ## Layout
//!
//! - `mod.rs`: the routes, authentication, errors as HTTP responses.
//! - `sse.rs`: an SSE response following one stream.
//! - `files.rs`: uploads and downloads of files.

mod files;
mod sse;

use std::sync::Arc;

use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use marie_core::{
    ApprovalId, ConversationId, Credentials, Error, ErrorCode, FileId, Identity, OnBusy,
    SendRequest, StartStatus, StreamEvent, StreamId, StreamStart,
};
use serde::{Deserialize, Serialize};
use socketioxide::adapter::Adapter;

use crate::events::Decided;
use crate::state::Shared;

/// The routes; `with_health` adds `/healthz` and `/readyz` (see
/// [`MarieHandle::http_routes`](crate::MarieHandle::http_routes)).
pub(crate) fn routes<A: Adapter>(shared: Arc<Shared<A>>, with_health: bool) -> axum::Router {
    let upload_limit = shared
        .engine
        .config()
        .max_file_bytes
        .saturating_add(files::MULTIPART_OVERHEAD);
    let chat = axum::Router::new()
        .route(
            "/api/chat/files",
            post(files::upload::<A>).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/chat/files/{file_id}",
            get(files::download::<A>).delete(files::delete::<A>),
        )
        .route("/api/chat/send", post(send::<A>))
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

/// `POST /api/chat/send`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    conversation_id: String,
    message: String,
    #[serde(default)]
    client_message_id: Option<String>,
    /// `reject` or `interrupt`; over HTTP a send is answered at once or refused, so an app
    /// default of `enqueue` counts as `reject` here.
    #[serde(default)]
    on_busy: Option<OnBusy>,
    /// File ids from `POST /api/chat/files`.
    #[serde(default)]
    attachments: Vec<String>,
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
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
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
    shared: &Shared<A>,
    headers: &HeaderMap,
    query_token: Option<String>,
) -> Result<Identity, HttpError> {
    let unauthorized = || HttpError(Error::Unauthorized("unauthorized"));
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let token = bearer
        .or_else(|| query_token.filter(|_| shared.config.allow_query_token))
        .ok_or_else(unauthorized)?;
    shared
        .authenticator
        .authenticate(&Credentials::bearer(token))
        .await
        .map_err(|e| {
            tracing::info!(reason = %e, "HTTP request refused");
            unauthorized()
        })
}

/// `POST /api/chat/send`: the answer as SSE, from its `stream_start`.
async fn send<A: Adapter>(
    State(shared): State<Arc<Shared<A>>>,
    headers: HeaderMap,
    body: Result<Json<SendBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, HttpError> {
    let who = identify(&shared, &headers, None).await?;
    let Json(body) = body.map_err(|e| Error::BadRequest(format!("invalid body: {e}")))?;
    let conversation = ConversationId::parse(body.conversation_id)?;
    let on_busy = match body.on_busy.unwrap_or(shared.engine.config().on_busy) {
        OnBusy::Interrupt => OnBusy::Interrupt,
        OnBusy::Enqueue if body.on_busy.is_some() => {
            return Err(Error::BadRequest(
                "`on_busy: \"enqueue\"` is for Socket.IO clients: over HTTP a send is answered at once or refused".into(),
            )
            .into());
        }
        _ => OnBusy::Reject,
    };
    let outcome = shared
        .engine
        .send(
            &who,
            SendRequest {
                conversation_id: conversation.clone(),
                message: body.message,
                stream: true,
                client_message_id: body.client_message_id,
                on_busy: Some(on_busy),
                attachments: body
                    .attachments
                    .into_iter()
                    .map(FileId::parse)
                    .collect::<Result<_, _>>()?,
            },
        )
        .await?;
    let start = StreamEvent::Start(StreamStart {
        conversation_id: conversation.clone(),
        stream_id: outcome.stream_id.clone(),
        message_id: outcome.answer_message_id,
        parent_id: Some(outcome.message_id),
        status: StartStatus::Streaming,
    });
    Ok(sse::follow(&shared.hub, Some(start), conversation, outcome.stream_id, 0).await)
}

/// `GET /api/chat/streams/{stream_id}`: the events after `after_seq` (or `Last-Event-ID`,
/// which wins), the live tail, the end.
async fn resume<A: Adapter>(
    State(shared): State<Arc<Shared<A>>>,
    Path(stream_id): Path<String>,
    Query(query): Query<ResumeQuery>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let who = identify(&shared, &headers, query.token).await?;
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
    let after = last_event_id.or(query.after_seq).unwrap_or(0);
    // `resume_unavailable` is `410 {code, message}`: an `EventSource` stops on it instead of
    // reconnecting in a loop, as it would after a `stream_error` event in a `200` response.
    let read = shared
        .engine
        .read_stream(&who, None, &stream, after, 1)
        .await?;
    let conversation = read.meta.conversation_id;
    Ok(sse::follow(&shared.hub, None, conversation, stream, after).await)
}

/// `POST /api/chat/approvals/{approval_id}`: decides a tool call, as `approve_tool` does.
async fn approve<A: Adapter>(
    State(shared): State<Arc<Shared<A>>>,
    Path(approval_id): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ApproveBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, HttpError> {
    let who = identify(&shared, &headers, None).await?;
    let Json(body) = body.map_err(|e| Error::BadRequest(format!("invalid body: {e}")))?;
    let approval = ApprovalId::parse(approval_id)?;
    let decided = shared
        .engine
        .approve(&who, None, &approval, body.approved, body.reason)
        .await?;
    Ok(Json(Decided::of(&decided)).into_response())
}

/// `GET /readyz`.
async fn ready<A: Adapter>(State(shared): State<Arc<Shared<A>>>) -> Response {
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
