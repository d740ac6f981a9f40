//! Every event's payload decoder: the first byte picks the event, the rest is the payload's
//! JSON text (anything that is not JSON is decoded as "no payload").
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

use marie_axum::__fuzz::{decode_event, events};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    static EVENTS: OnceLock<Vec<&'static str>> = OnceLock::new();
    let events = EVENTS.get_or_init(events);
    let event = events[pick as usize % events.len()];
    let payload = serde_json::from_slice::<serde_json::Value>(rest).ok();
    let _ = decode_event(event, payload);
});
