//! A user's conversations over HTTP (`docs/protocol.md` section 9): REST-shaped routes over
//! the same commands as `list_conversations`, `get_conversation`, `update_conversation`,
//! `delete_conversation` and `export_conversation`, decoded and checked by the command layer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use marie_core::Error;
use serde::Deserialize;
use serde_json::{Map, Value};
use socketioxide::adapter::Adapter;

use super::events::{HttpLink, answer, json_payload};
use super::{HttpError, identify};
use crate::commands;
use crate::guards::PacketSize;
use crate::state::NodeState;

/// `GET /api/chat/conversations` query: strings, read by the command's own decoding so that
/// a bad value gets the same message as over Socket.IO.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    #[serde(default)]
    before: Option<String>,
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    archived: Option<String>,
}

impl ListParams {
    /// The `list_conversations` payload these parameters say.
    fn payload(self) -> Result<Value, Error> {
        let mut fields = Map::new();
        if let Some(before) = self.before.filter(|b| !b.is_empty()) {
            fields.insert("before".into(), before.into());
        }
        if let Some(limit) = self.limit {
            let limit: u64 = limit.trim().parse().map_err(|_| {
                Error::BadRequest("invalid query: `limit`: a whole number, 0 or more".into())
            })?;
            fields.insert("limit".into(), limit.into());
        }
        if let Some(query) = self.query {
            fields.insert("query".into(), query.into());
        }
        if let Some(archived) = self.archived {
            let archived = match archived.as_str() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => {
                    return Err(Error::BadRequest(
                        "invalid query: `archived`: true or false".into(),
                    ));
                }
            };
            fields.insert("archived".into(), archived.into());
        }
        Ok(Value::Object(fields))
    }
}

/// `GET /api/chat/conversations?before&limit&query&archived`.
pub(super) async fn list<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    headers: HeaderMap,
    query: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let Query(params) = query.map_err(|e| Error::BadRequest(format!("invalid query: {e}")))?;
    // A bad parameter is refused by the command layer, after its checks, as a bad payload.
    command(&shared, &caller, "list_conversations", params.payload(), 0).await
}

/// `GET /api/chat/conversations/{id}`.
pub(super) async fn get_one<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    on_conversation(&shared, &headers, id, "get_conversation").await
}

/// `PATCH /api/chat/conversations/{id}` with `{title?, model?, system_prompt?, answer_policy?}`.
pub(super) async fn update<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let payload = json_payload(&body).and_then(|payload| {
        let mut fields = match payload {
            Some(Value::Object(fields)) => fields,
            None => Map::new(),
            Some(_) => return Err(Error::BadRequest("the body must be a JSON object".into())),
        };
        if fields.contains_key("conversation_id") {
            return Err(Error::BadRequest(
                "invalid body: `conversation_id`: the path names the conversation".into(),
            ));
        }
        fields.insert("conversation_id".into(), id.into());
        Ok(Value::Object(fields))
    });
    let size = body.len();
    command(&shared, &caller, "update_conversation", payload, size).await
}

/// `GET /api/chat/conversations/{id}/export`: the caller's copy of the whole conversation,
/// as a download.
pub(super) async fn export<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let mut response =
        on_conversation(&shared, &headers, id.clone(), "export_conversation").await?;
    if response.status().is_success() {
        // The id was checked by the command layer: it is a safe file name.
        let disposition = format!("attachment; filename=\"conversation-{id}.json\"");
        if let Ok(value) = axum::http::HeaderValue::from_str(&disposition) {
            response
                .headers_mut()
                .insert(axum::http::header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

/// `DELETE /api/chat/conversations/{id}`.
pub(super) async fn delete<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    on_conversation(&shared, &headers, id, "delete_conversation").await
}

/// Runs `event`, a command whose payload is the conversation in the path alone, for the
/// caller the headers name.
async fn on_conversation<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    headers: &HeaderMap,
    id: String,
    event: &str,
) -> Result<Response, HttpError> {
    let caller = identify(shared, headers, None).await?;
    let payload = serde_json::json!({ "conversation_id": id });
    command(shared, &caller, event, Ok(payload), 0).await
}

/// Runs the command `event` with `payload` through the command layer (every check, as
/// `POST /api/chat/events/{event}` does) and answers with its ack as JSON.
async fn command<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    caller: &commands::Caller,
    event: &str,
    payload: Result<Value, Error>,
    body_bytes: usize,
) -> Result<Response, HttpError> {
    let link = HttpLink { caller, sse: false };
    let size = PacketSize::text(body_bytes);
    let acked = commands::dispatch(shared, &link, caller, event, payload.map(Some), &size)
        .await
        .map_err(|refused| HttpError(refused.error))?;
    Ok(answer(shared, &link, acked).await)
}
