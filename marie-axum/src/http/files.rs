//! Files over HTTP: `POST /api/chat/files` (multipart) stores one, `GET
//! /api/chat/files/{file_id}` reads one back, `DELETE` removes it. Files never travel over the Socket.IO
//! connection: a message names them by id (`send_message.attachments`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use marie_core::{ConversationId, Error, FileId, FileMeta, Upload};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use socketioxide::adapter::Adapter;

use super::{HttpError, identify};
use crate::state::NodeState;

/// Room for the multipart framing and the `conversation_id` field around the file itself,
/// in the body limit of the upload route.
pub(super) const MULTIPART_OVERHEAD: usize = 64 * 1024;

/// `GET /api/chat/files/{file_id}` query: `?token=` where the server allows it (an `<img
/// src>` cannot send a header).
#[derive(Debug, Default, Deserialize)]
pub(super) struct FileQuery {
    #[serde(default)]
    token: Option<String>,
}

/// `POST /api/chat/files`: a `multipart/form-data` body with a `conversation_id` field and a
/// `file` field. `201` with the file's record; `400`, `403`, `404`, `413`
/// (`payload_too_large`, `quota_exceeded`) or `415` (`unsupported_file_type`) with
/// `{code, message}`, and nothing stored.
pub(super) async fn upload<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, HttpError> {
    let mut multipart = multipart.map_err(|e| {
        Error::BadRequest(format!(
            "expected a multipart/form-data body: {}",
            e.body_text()
        ))
    })?;
    let outcome = receive(&shared, &headers, &mut multipart).await;
    if outcome.is_err() {
        // Read what is left of the body (at most the route's limit) before answering: a
        // server that answers and closes while the client still sends makes most clients
        // see a broken pipe instead of the answer (Node's fetch does, even on a 401).
        drain(&mut multipart).await;
    }
    let meta = outcome?;
    Ok((StatusCode::CREATED, Json::<FileMeta>(meta)).into_response())
}

/// Reads the fields, then stores the file.
async fn receive<A: Adapter>(
    shared: &NodeState<A>,
    headers: &HeaderMap,
    multipart: &mut Multipart,
) -> Result<FileMeta, HttpError> {
    let caller = identify(shared, headers, None).await?;
    let who = caller.identity();
    let max = shared.engine.config().max_file_bytes;
    let mut conversation = None;
    let mut file: Option<(String, Option<String>, Bytes)> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("conversation_id") => {
                let text = field.text().await.map_err(multipart_error)?;
                conversation = Some(ConversationId::parse(text.trim())?);
            }
            Some("file") if file.is_none() => {
                let name = field.file_name().unwrap_or("file").to_owned();
                let content_type = field.content_type().map(str::to_owned);
                // Read chunk by chunk, so that a file over the limit is refused as soon as
                // it passes it, not after it was all buffered.
                let mut data = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if data.len() + chunk.len() > max {
                        return Err(too_large(max).into());
                    }
                    data.extend_from_slice(&chunk);
                }
                file = Some((name, content_type, Bytes::from(data)));
            }
            Some("file") => {
                return Err(Error::BadRequest("one file per upload".into()).into());
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unexpected field {:?}: send `conversation_id` and `file`",
                    other.unwrap_or("")
                ))
                .into());
            }
        }
    }
    let conversation_id = conversation
        .ok_or_else(|| Error::BadRequest("the `conversation_id` field is missing".into()))?;
    let (name, content_type, data) =
        file.ok_or_else(|| Error::BadRequest("the `file` field is missing".into()))?;
    let upload = Upload {
        conversation_id,
        name,
        content_type,
        data,
    };
    Ok(shared.engine.upload(who, upload).await?)
}

/// Reads and drops the rest of a multipart body, until its end, a malformed part, or the
/// route's body limit.
async fn drain(multipart: &mut Multipart) {
    while let Ok(Some(mut field)) = multipart.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// `GET /api/chat/files/{file_id}`: the bytes, to a member of the file's conversation.
/// Served so that a browser can never run them: the stored type (taken from the bytes),
/// `nosniff`, a sandboxing CSP, and anything but an image as a download.
pub(super) async fn download<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(file_id): Path<String>,
    Query(query): Query<FileQuery>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, query.token).await?;
    let who = caller.identity();
    let file = shared.engine.file(who, &FileId::parse(file_id)?).await?;
    let meta = &file.meta;
    let content_type = if meta.content_type == "text/plain" {
        "text/plain; charset=utf-8".to_owned()
    } else {
        meta.content_type.clone()
    };
    let disposition = if meta.content_type.starts_with("image/") {
        "inline"
    } else {
        "attachment"
    };
    let mut response = file.data.into_response();
    let headers = response.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static(""));
    headers.insert(header::CONTENT_TYPE, value(&content_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        value(&content_disposition(disposition, &meta.name)),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(response)
}

/// `DELETE /api/chat/files/{file_id}`: the owner removes a file (`204`); `403` for another
/// member, `404` for anyone else and for an unknown id.
pub(super) async fn delete<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(file_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let who = caller.identity();
    shared
        .engine
        .delete_file(who, &FileId::parse(file_id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `inline; filename="cat.png"; filename*=UTF-8''cat.png`: an ASCII name for old clients
/// (anything else, and quotes, as `_`) and the exact one, percent-encoded (RFC 8187).
fn content_disposition(disposition: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let exact = utf8_percent_encode(name, NON_ALPHANUMERIC);
    format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{exact}")
}

fn too_large(max: usize) -> Error {
    Error::PayloadTooLarge(format!("the file is larger than {max} bytes"))
}

/// A body that breaks off, is not valid multipart, or passes the route's body limit.
fn multipart_error(e: MultipartError) -> Error {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge("the upload is larger than the server takes".into())
    } else {
        Error::BadRequest(format!("invalid multipart body: {}", e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_content_disposition_cannot_break_the_header() {
        assert_eq!(
            content_disposition("inline", "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat%2Epng"
        );
        let tricky = content_disposition("attachment", "a\"b\\é.txt");
        assert!(
            tricky.starts_with("attachment; filename=\"a_b__.txt\";"),
            "{tricky}"
        );
        assert!(tricky.ends_with("a%22b%5C%C3%A9%2Etxt"), "{tricky}");
        assert!(HeaderValue::from_str(&tricky).is_ok());
    }
}
