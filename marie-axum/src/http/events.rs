//! `POST /api/chat/events/{event}`: every client command over HTTP (`docs/protocol.md`
//! section 10), through the same command layer as Socket.IO, and [`HttpLink`], the link of
//! one request.
//!
//! The body is the event's payload; the answer is its ack as JSON, or, for a command that
//! starts or resumes an answer and a request that accepts `text/event-stream`, the answer
//! itself as Server-Sent Events.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marie_core::{ConversationId, Error, StreamEvent, StreamId};
use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;

use super::{HttpError, identify, sse};
use crate::commands::{self, Acked, Caller, Link, RoomCount, TypingAccess};
use crate::guards::PacketSize;
use crate::state::NodeState;
use crate::typing::Typist;

/// The link of one HTTP request: no rooms, nothing told but the answer, and the stream a
/// command started or resumed followed as SSE when the request asked for it.
pub(super) struct HttpLink<'a> {
    pub(super) caller: &'a Caller,
    /// The response streams the answer (`Accept: text/event-stream`).
    pub(super) sse: bool,
}

impl Link for HttpLink<'_> {
    fn rooms(&self, _: &ConversationId) -> RoomCount {
        RoomCount {
            joined: 0,
            already_in: false,
        }
    }

    async fn enter(&self, _: &ConversationId) {}

    async fn leave(&self, _: &ConversationId) -> bool {
        false
    }

    fn tell(&self, _: &'static str, _: Box<RawValue>) {}

    fn asked(&self, _: &ConversationId, _: &StreamId) {}

    async fn resume(&self, _: &ConversationId, _: &StreamId, _: u64) -> Result<(), Error> {
        Ok(())
    }

    fn can_wait_in_queue(&self) -> bool {
        !self.sse
    }

    fn typist(&self, _: &ConversationId) -> TypingAccess {
        TypingAccess::Check(Typist::User(self.caller.identity().user_id.clone()))
    }
}

/// A command a route built itself, through the command layer's checks; its error as it is,
/// for a front end with its own wire format of errors.
pub(super) async fn command<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    link: &HttpLink<'_>,
    event: commands::ClientEvent,
    command: commands::Command,
    size: &PacketSize,
) -> Result<Acked, Error> {
    commands::dispatch_command(shared, link, link.caller, event, command, size)
        .await
        .map_err(|refused| refused.error)
}

/// Whether the request asks for an event stream.
pub(super) fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().starts_with("text/event-stream"))
}

/// `POST /api/chat/events/{event}`.
pub(super) async fn event<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let body =
        body.map_err(|e| Error::PayloadTooLarge(format!("the body is not readable: {e}")))?;
    let size = PacketSize::text(body.len());
    let payload = json_payload(&body);
    let link = HttpLink {
        caller: &caller,
        sse: accepts_event_stream(&headers),
    };
    let acked = commands::dispatch(&shared, &link, &caller, &name, payload, &size)
        .await
        .map_err(|refused| HttpError(refused.error))?;
    Ok(answer(&shared, &link, acked).await)
}

/// A body as an event's payload: none when empty, `bad_request` when it is not JSON.
pub(super) fn json_payload(body: &[u8]) -> Result<Option<Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| Error::BadRequest(format!("the body is not JSON: {e}")))
}

/// The ack as JSON, or the stream it names as SSE when the link streams.
pub(super) async fn answer<A: Adapter>(
    shared: &NodeState<A>,
    link: &HttpLink<'_>,
    acked: Acked,
) -> Response {
    match acked.follow {
        Some(follow) if link.sse => {
            let start = follow.start.map(StreamEvent::Start);
            sse::follow(
                &shared.hub,
                start,
                follow.conversation,
                follow.stream,
                follow.after_seq,
            )
            .await
        }
        _ => json(acked.ack),
    }
}

/// A serialized ack as a `200` JSON response.
fn json(ack: Box<RawValue>) -> Response {
    let body: Box<str> = ack.into();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        String::from(body),
    )
        .into_response()
}
