//! Entry points for the fuzz targets in `fuzz/` (not a public API: no stability, hidden
//! from the documentation).

use serde_json::Value;

use crate::commands::{ClientEvent, ErrorPayload};
use crate::socketio::ConnectAuth;

/// Every client event of the protocol's table, then `connect` (the CONNECT packet's `auth`),
/// in a fixed order (the fuzz input picks one).
pub fn events() -> Vec<&'static str> {
    ClientEvent::ALL
        .iter()
        .map(|e| e.name())
        .chain(["connect"])
        .collect()
}

/// Decodes `payload` as the payload of `event` (one of [`events`]) and validates the ids in
/// it, as the handler does before calling the engine. `Err` holds the error code.
pub fn decode_event(event: &str, payload: Option<Value>) -> Result<(), String> {
    if event == "connect" {
        let auth: ConnectAuth = payload
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        if let Some(s) = auth.previous_session.or(auth.previous_sid) {
            let _ = marie_core::SessionId::parse(s);
        }
        return Ok(());
    }
    let Some(event) = ClientEvent::from_name(event) else {
        return Err("bad_request".into());
    };
    match event.decode(payload) {
        Ok(_) => Ok(()),
        Err(e) => {
            // The `error` notice the handler would send, so that its path is fuzzed too.
            let _ = serde_json::to_string(&ErrorPayload::new(&e, event.name()));
            Err(e.code().to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_client_event_is_fuzzed() {
        let events = super::events();
        for event in crate::commands::ClientEvent::ALL {
            assert!(events.contains(&event.name()), "{event:?}");
        }
        assert!(events.contains(&"resume_stream"));
    }
}
