//! The command layer: every client command, described once, checked once, run once, for
//! every front end.
//!
//! A front end (the Socket.IO handler, `POST /api/chat/events/{event}`, and the routes built
//! on them) authenticates its caller ([`Caller::authenticate`]), then hands each command to
//! [`dispatch`] with the connection it came on ([`Link`]). `dispatch` applies the checks in
//! order, the same on every transport:
//!
//! | check | where | answer |
//! |---|---|---|
//! | credentials still valid | [`Caller::check_expiry`] | `unauthorized` |
//! | event rate and size | [`Guards::admit_event`](crate::guards::Guards::admit_event) | `rate_limited`, `payload_too_large` |
//! | a known event, a payload that fits | [`ClientEvent::decode`] | `bad_request` naming the field |
//! | a repeat of an earlier `client_message_id` | `ChatEngine::sent_before` | the first outcome, `duplicate:true`, not counted |
//! | answers started ([`ClientEvent::starts_answer`]) | [`Guards::admit_message`](crate::guards::Guards::admit_message) | `rate_limited` |
//! | conversations followed at once (`join_conversation`) | [`Guards::check_rooms`](crate::guards::Guards::check_rooms) | `rate_limited` |
//! | access, the message, budgets, busy | the [`ChatEngine`](marie_core::ChatEngine) call | its error |
//!
//! then runs the command (`run.rs`: one engine call, and what the link must do) and returns
//! its ack. A front end only turns the ack or the error into its wire format.
//!
//! ## Layout
//!
//! - `mod.rs`: [`dispatch`], what it returns.
//! - `table.rs`: [`ClientEvent`], the table of commands, and [`Command`], one decoded.
//! - `payloads.rs`: the payloads clients send, decoded strictly.
//! - `acks.rs`: what commands answer.
//! - `caller.rs`: [`Caller`], an authenticated user.
//! - `link.rs`: [`Link`], what differs between transports.
//! - `run.rs`: each command's body.

mod acks;
mod caller;
mod link;
mod payloads;
mod run;
mod table;

use std::sync::Arc;

use marie_core::{ConversationId, Error, StreamId, StreamStart};
use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;

pub(crate) use acks::{AckError, Announcement, ErrorPayload, SeedAckError, raw};
pub(crate) use caller::Caller;
pub(crate) use link::{Link, RoomCount, TypingAccess};
pub(crate) use table::{ClientEvent, Command};

use crate::guards::PacketSize;
use crate::state::NodeState;

/// What a command answered.
#[derive(Debug)]
pub(crate) struct Acked {
    /// The ack's body, serialized once.
    pub(crate) ack: Box<RawValue>,
    /// The stream the command started or resumed, for a transport that follows it.
    pub(crate) follow: Option<Follow>,
}

/// A stream to follow after a command: from `after_seq`, with `start` first when the
/// command started it.
#[derive(Debug)]
pub(crate) struct Follow {
    pub(crate) conversation: ConversationId,
    pub(crate) stream: StreamId,
    pub(crate) after_seq: u64,
    pub(crate) start: Option<StreamStart>,
}

/// A command that failed: why, and the event it was (`None`: an unknown event).
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: Error,
    pub(crate) event: Option<ClientEvent>,
}

impl Refused {
    /// The error ack, in the event's shape (the seed's for `send_message_with_ack`).
    pub(crate) fn ack(&self) -> Box<RawValue> {
        if self.event.is_some_and(ClientEvent::seed_ack) {
            raw(&SeedAckError {
                status: "error",
                error: self.error.client_message(),
                code: self.error.code(),
            })
        } else {
            raw(&AckError::new(&self.error))
        }
    }

    /// The event's name for the `error` notice: the client's own, bounded, when unknown.
    pub(crate) fn label(&self, name: &str) -> String {
        match self.event {
            Some(e) => e.name().to_owned(),
            None => name.chars().take(64).collect(),
        }
    }
}

/// Runs the command `name` with `payload` for `caller`, who sent it on `link`: every check
/// of the module's table, then the command. `size` is what the transport received; a
/// payload the transport could not read is `Err`, answered after the limits.
pub(crate) async fn dispatch<A: Adapter, L: Link>(
    shared: &Arc<NodeState<A>>,
    link: &L,
    caller: &Caller,
    name: &str,
    payload: Result<Option<Value>, Error>,
    size: &PacketSize,
) -> Result<Acked, Refused> {
    let event = ClientEvent::from_name(name);
    let refused = |error| Refused { error, event };
    // A flood of unknown events is still a flood: the limits come first.
    admit(shared, caller, size).map_err(refused)?;
    let Some(event) = event else {
        return Err(refused(Error::BadRequest("unknown event".into())));
    };
    let command = payload
        .and_then(|payload| event.decode(payload))
        .map_err(refused)?;
    execute(shared, link, caller, event, command).await
}

/// Runs `command` of `event`, decoded by a front end from a route of its own (`POST
/// /api/chat/approvals/{id}`, `GET /api/chat/streams/{id}`), with every check [`dispatch`]
/// applies after decoding.
pub(crate) async fn dispatch_command<A: Adapter, L: Link>(
    shared: &Arc<NodeState<A>>,
    link: &L,
    caller: &Caller,
    event: ClientEvent,
    command: Command,
    size: &PacketSize,
) -> Result<Acked, Refused> {
    admit(shared, caller, size).map_err(|error| Refused {
        error,
        event: Some(event),
    })?;
    execute(shared, link, caller, event, command).await
}

/// The checks of any event: credentials still valid, event rate and size. A front end's
/// request that reads without running a command (`GET /api/ai-sdk/chat/{id}/messages`) passes
/// them too.
pub(crate) fn admit<A: Adapter>(
    shared: &NodeState<A>,
    caller: &Caller,
    size: &PacketSize,
) -> Result<(), Error> {
    caller.check_expiry()?;
    shared.guards.admit_event(caller.identity(), size)
}

/// The checks of a decoded command (a repeated send, the message rate), then the command.
async fn execute<A: Adapter, L: Link>(
    shared: &Arc<NodeState<A>>,
    link: &L,
    caller: &Caller,
    event: ClientEvent,
    command: Command,
) -> Result<Acked, Refused> {
    let refused = |error| Refused {
        error,
        event: Some(event),
    };
    let ctx = run::Ctx {
        shared,
        link,
        who: caller.identity(),
        event,
    };
    if event.starts_answer() {
        if let Some(first) = ctx.repeat(&command) {
            return Ok(first);
        }
        shared
            .guards
            .admit_message(caller.identity())
            .map_err(refused)?;
    }
    ctx.run(command).await.map_err(refused)
}
