//! Replies to one socket (the outcome of its events, their acks, the notices of its
//! connection), sent through its outbox so that none is lost behind a full socketioxide
//! buffer (see `crate::delivery`).
//!
//! socketioxide's `AckSender` is spent by its first `send`, even when the buffer was full and
//! nothing went out, so an ack could not be tried again. An [`AckTo`] keeps what it takes to
//! make a fresh `AckSender` for each attempt: the socket and the ack id, which socketioxide
//! hands to every extractor.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::handler::{FromMessageParts, Value as PacketValue};
use socketioxide::socket::Socket;

use crate::delivery::{Emitted, Flusher, Out, Reply, SocketOutbox};

/// Where the ack of an event goes: its socket, and the ack id if the client asked for one.
pub(crate) struct AckTo<A: Adapter> {
    socket: Arc<Socket<A>>,
    id: Option<i64>,
}

impl<A: Adapter> FromMessageParts<A> for AckTo<A> {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        _: &mut PacketValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        Ok(Self {
            socket: socket.clone(),
            id: *ack_id,
        })
    }
}

/// The event `name` with `payload` for `socket`, ready to send (and to try again).
fn notice<A: Adapter>(socket: &SocketRef<A>, name: &'static str, payload: Box<RawValue>) -> Out {
    let target = socket.clone();
    let bytes = payload.get().len();
    Out::Reply(Arc::new(Reply::new(
        name,
        bytes,
        Box::new(move || Emitted::of(target.emit(name, &payload))),
    )))
}

/// Queues the event `name` with `payload` for `socket`.
pub(crate) fn event<A: Adapter>(socket: &SocketRef<A>, name: &'static str, payload: Box<RawValue>) {
    queue(socket, notice(socket, name, payload));
}

/// Sends the greeting of a connection (`connected`, `reconnected`) first, then lets the
/// socket's outbox send what waits behind it.
pub(crate) fn greet<A: Adapter>(socket: &SocketRef<A>, name: &'static str, payload: Box<RawValue>) {
    let greeting = notice(socket, name, payload);
    match socket.extensions.get::<SocketOutbox>() {
        Some(SocketOutbox(outbox)) => outbox.greet(greeting),
        // Not reached: every connected socket has an outbox. Try once.
        None => {
            let _ = greeting.emit_to(socket);
        }
    }
}

/// Queues the ack `payload` for the event that `to` came with (nothing when the client asked
/// for no ack).
pub(crate) fn ack<A: Adapter>(socket: &SocketRef<A>, to: AckTo<A>, payload: Box<RawValue>) {
    let Some(id) = to.id else { return };
    let bytes = payload.get().len();
    let target = to.socket;
    let send = move || {
        let mut unused = PacketValue::Str(socketioxide_core::Str::from(""), None);
        let Ok(sender) = AckSender::from_message_parts(&target, &mut unused, &Some(id));
        Emitted::of(sender.send(&payload))
    };
    queue(
        socket,
        Out::Reply(Arc::new(Reply::new("ack", bytes, Box::new(send)))),
    );
}

/// Sends `out` at once when the socket's outbox is empty, else queues it behind what waits.
fn queue<A: Adapter>(socket: &SocketRef<A>, out: Out) {
    match socket.extensions.get::<SocketOutbox>() {
        Some(SocketOutbox(outbox)) => {
            let send = |o: &Out| o.emit_to(socket) == Emitted::Sent;
            outbox.push_or_send(out, &send, Flusher::Writer);
        }
        // Not reached: every connected socket has an outbox. Try once.
        None => {
            let _ = out.emit_to(socket);
        }
    }
}
