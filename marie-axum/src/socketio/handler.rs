//! One client event: [`register`] installs one handler that takes every event and hands it
//! to the command layer ([`crate::commands::dispatch`]), which checks it, runs it and gives
//! its ack. Every event gets its answer: an `ok` ack, or an `error` event and an error ack,
//! all through the socket's outbox (`reply.rs`), so that no answer is lost behind a full
//! socketioxide buffer.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Event, SocketRef, TryData};

use super::link::SocketLink;
use super::reply::{self, AckTo};
use crate::commands::{self, Caller, ErrorPayload};
use crate::guards::PacketSize;
use crate::state::NodeState;

/// Registers one handler for every event: the command layer routes by name. socketioxide
/// keeps handlers per socket, so one `socket.on` per event would cost every connection a
/// hash table and a boxed handler per event (about 1 KiB, `docs/benchmarks.md`); one
/// fallback costs one box.
pub(super) fn register<A: Adapter>(shared: &Arc<NodeState<A>>, socket: &SocketRef<A>) {
    let shared = shared.clone();
    socket.on_fallback(
        move |s: SocketRef<A>,
              size: PacketSize,
              Event(name): Event,
              TryData(data): TryData<Value>,
              to: AckTo<A>| {
            let shared = shared.clone();
            async move { handle(&shared, &s, &size, &name, data, to).await }
        },
    );
}

/// One event: dispatched, answered.
async fn handle<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    socket: &SocketRef<A>,
    size: &PacketSize,
    name: &str,
    data: Result<Value, impl std::error::Error>,
    to: AckTo<A>,
) {
    // Set by the CONNECT middleware before this handler was registered.
    let Some(caller) = socket.extensions.get::<Caller>() else {
        tracing::error!(sid = %socket.id, "an event on a socket without a caller");
        return;
    };
    let link = SocketLink {
        shared,
        socket,
        caller: &caller,
    };
    // socketioxide parsed the packet already: a payload it cannot give is one the client
    // did not send (`get_usage` takes none).
    match commands::dispatch(shared, &link, &caller, name, Ok(data.ok()), size).await {
        Ok(acked) => reply::ack(socket, to, acked.ack),
        Err(refused) => {
            let label = refused.label(name);
            tracing::debug!(sid = %socket.id, event = %label, code = %refused.error.code(), error = %refused.error, "event failed");
            let notice = ErrorPayload::new(&refused.error, &label);
            reply::event(socket, "error", commands::raw(&notice));
            reply::ack(socket, to, refused.ack());
        }
    }
}
