//! The Socket.IO side of the protocol: payloads clients send, and how outcomes are answered.
//!
//! Payloads are decoded strictly (unknown fields refused) so that a typo in a client is a
//! clear `bad_request` rather than a silently ignored option.

use marie_core::{ConversationId, Error, MessageId, StreamId, UserId};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// `join_conversation`, `leave_conversation`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConversationRef {
    pub(crate) conversation_id: String,
}

/// `invite`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Invite {
    pub(crate) conversation_id: String,
    pub(crate) user_id: String,
}

/// `send_message`, `send_message_with_ack`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendMessage {
    pub(crate) conversation_id: String,
    pub(crate) message: String,
    #[serde(default = "default_true")]
    pub(crate) stream: bool,
    #[serde(default)]
    pub(crate) client_message_id: Option<String>,
}

fn default_true() -> bool {
    true
}

/// `cancel_stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelStream {
    pub(crate) conversation_id: String,
    #[serde(default)]
    pub(crate) stream_id: Option<String>,
}

/// `get_history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GetHistory {
    pub(crate) conversation_id: String,
    #[serde(default)]
    pub(crate) before: Option<String>,
    #[serde(default)]
    pub(crate) limit: Option<usize>,
}

/// `system_announcement`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Announcement {
    pub(crate) message: String,
}

/// The CONNECT packet's `auth` object.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConnectAuth {
    #[serde(default)]
    pub(crate) token: Option<String>,
    #[serde(default)]
    pub(crate) previous_session: Option<String>,
    /// The seed's name for `previous_session`.
    #[serde(default)]
    pub(crate) previous_sid: Option<String>,
}

/// Decodes an event's payload; anything that does not fit is `bad_request`.
pub(crate) fn decode<T: DeserializeOwned>(payload: Option<Value>) -> Result<T, Error> {
    let value =
        payload.ok_or_else(|| Error::BadRequest("the event needs a payload object".into()))?;
    if !value.is_object() {
        return Err(Error::BadRequest(
            "the payload must be a JSON object".into(),
        ));
    }
    serde_json::from_value(value).map_err(|e| Error::BadRequest(format!("invalid payload: {e}")))
}

pub(crate) fn conversation_id(raw: String) -> Result<ConversationId, Error> {
    ConversationId::parse(raw)
}

pub(crate) fn user_id(raw: String) -> Result<UserId, Error> {
    UserId::parse(raw)
}

pub(crate) fn stream_id(raw: Option<String>) -> Result<Option<StreamId>, Error> {
    raw.map(StreamId::parse).transpose()
}

pub(crate) fn message_id(raw: Option<String>) -> Result<Option<MessageId>, Error> {
    raw.map(MessageId::parse).transpose()
}

/// The payload of the `error` event.
pub(crate) fn error_event(error: &Error, event: &str) -> Value {
    json!({ "code": error.code(), "message": error.client_message(), "event": event })
}

/// An ack for an outcome: `{status:"ok", ...fields}` or `{status:"error", code, message}`.
pub(crate) fn ack(result: &Result<Value, Error>) -> Value {
    match result {
        Ok(Value::Object(fields)) => {
            // `status` last: an outcome may carry its own (`joined` does), the ack's wins.
            let mut out = fields.clone();
            out.insert("status".into(), "ok".into());
            Value::Object(out)
        }
        Ok(_) => json!({ "status": "ok" }),
        Err(e) => json!({ "status": "error", "code": e.code(), "message": e.client_message() }),
    }
}

/// The seed's ack shape for `send_message_with_ack`: `{status:"success", message_id}` or
/// `{status:"error", error}` (plus the stable `code`).
pub(crate) fn seed_ack(result: &Result<Value, Error>) -> Value {
    match result {
        Ok(v) => json!({ "status": "success", "message_id": v.get("message_id") }),
        Err(e) => json!({ "status": "error", "error": e.client_message(), "code": e.code() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_that_do_not_fit_are_bad_requests() {
        for bad in [
            None,
            Some(json!(42)),
            Some(json!("conv")),
            Some(json!([1, 2])),
            Some(json!({})),
            Some(json!({"conversation_id": 7})),
            Some(json!({"conversation_id": "c", "extra": true})),
        ] {
            let r = decode::<ConversationRef>(bad.clone());
            assert!(matches!(r, Err(Error::BadRequest(_))), "{bad:?} gave {r:?}");
        }
        let ok: SendMessage =
            decode(Some(json!({"conversation_id": "c", "message": "hi"}))).unwrap();
        assert!(ok.stream);
    }

    #[test]
    fn ack_shapes() {
        assert_eq!(
            ack(&Ok(json!({"stream_id": "s"}))),
            json!({"status": "ok", "stream_id": "s"})
        );
        assert_eq!(
            ack(&Err(Error::Busy)),
            json!({"status": "error", "code": "busy", "message": Error::Busy.to_string()})
        );
        assert_eq!(
            seed_ack(&Ok(json!({"message_id": "m"}))),
            json!({"status": "success", "message_id": "m"})
        );
    }
}
