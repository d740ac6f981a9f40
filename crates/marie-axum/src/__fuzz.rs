//! Entry points for the fuzz targets in `fuzz/` (not a public API: no stability, hidden
//! from the documentation).

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::protocol::{self, ConnectAuth};

/// Every event that has a payload decoder, in a fixed order (the fuzz input picks one).
pub const EVENTS: [&str; 9] = [
    "join_conversation",
    "leave_conversation",
    "invite",
    "send_message",
    "send_message_with_ack",
    "cancel_stream",
    "get_history",
    "system_announcement",
    "connect",
];

fn run<T: DeserializeOwned>(
    payload: Option<Value>,
    check: impl FnOnce(T) -> Result<(), marie_core::Error>,
) -> Result<(), String> {
    let outcome = protocol::decode::<T>(payload).and_then(check);
    // Shape every answer the handlers would send, so that those paths are fuzzed too.
    let as_value = outcome.as_ref().map(|_| Value::Null).map_err(|e| e.code());
    let result = outcome.map(|()| serde_json::json!({}));
    let _ = protocol::ack(&result);
    let _ = protocol::seed_ack(&result);
    if let Err(e) = &result {
        let _ = protocol::error_event(e, "fuzz");
    }
    as_value.map(|_| ()).map_err(|c| c.to_string())
}

/// Decodes `payload` as the payload of `event` (one of [`EVENTS`]) and validates the ids in
/// it, as the handler would before calling the engine. `Err` holds the error code.
pub fn decode_event(event: &str, payload: Option<Value>) -> Result<(), String> {
    match event {
        "join_conversation" | "leave_conversation" => {
            run(payload, |p: protocol::ConversationRef| {
                protocol::conversation_id(p.conversation_id).map(drop)
            })
        }
        "invite" => run(payload, |p: protocol::Invite| {
            protocol::conversation_id(p.conversation_id)?;
            protocol::user_id(p.user_id).map(drop)
        }),
        "send_message" | "send_message_with_ack" => run(payload, |p: protocol::SendMessage| {
            protocol::conversation_id(p.conversation_id)?;
            let _ = (p.message.len(), p.stream, p.client_message_id);
            Ok(())
        }),
        "cancel_stream" => run(payload, |p: protocol::CancelStream| {
            protocol::conversation_id(p.conversation_id)?;
            protocol::stream_id(p.stream_id).map(drop)
        }),
        "get_history" => run(payload, |p: protocol::GetHistory| {
            protocol::conversation_id(p.conversation_id)?;
            let _ = p.limit;
            protocol::message_id(p.before).map(drop)
        }),
        "system_announcement" => run(payload, |p: protocol::Announcement| {
            let _ = p.message;
            Ok(())
        }),
        "connect" => {
            let auth: ConnectAuth = payload
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default();
            if let Some(s) = auth.previous_session.or(auth.previous_sid) {
                let _ = marie_core::SessionId::parse(s);
            }
            Ok(())
        }
        _ => Err("bad_request".into()),
    }
}
