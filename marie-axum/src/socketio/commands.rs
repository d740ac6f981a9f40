//! One client event, from its guards to its answer: [`register`] installs one handler that
//! takes every event, looks its name up in the table of [`ClientEvent`]s, checks it
//! ([`Guards`](crate::guards::Guards)), decodes it into a [`Command`], runs it on the engine,
//! and answers. Every event gets its answer: the command's events and an `ok` ack, or an
//! `error` event and an error ack, all through the socket's outbox (`reply.rs`), so that no
//! answer is lost behind a full socketioxide buffer.

use std::sync::Arc;

use marie_core::{
    ConversationId, Error, Identity, MessageId, SendOutcome, SendRequest, StreamId, UserId,
};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Event, SocketRef, TryData};

use super::membership::{enter_room, leave_room, save_session};
use super::payloads::{
    AckError, AckOk, Announcement, BranchSwitched, Cancelled, History, Invited, Joined, Left,
    Nothing, Resumed, SeedAckError, SeedAckOk, Sent,
};
use super::reply::{self, AckTo};
use super::{Authenticated, asked, typing};
use crate::delivery::SocketOutbox;
use crate::events::{ClientEvent, Command, Decided, ErrorPayload};
use crate::guards::PacketSize;
use crate::rooms::{conversation_of, conversation_room};
use crate::state::Shared;

/// Registers one handler for every event: it routes by name. socketioxide keeps handlers
/// per socket, so one `socket.on` per event would cost every connection a hash table and
/// nine boxed handlers (about 1 KiB, `docs/benchmarks.md`); one fallback costs one box.
pub(super) fn register<A: Adapter>(shared: &Arc<Shared<A>>, socket: &SocketRef<A>) {
    let shared = shared.clone();
    socket.on_fallback(
        move |s: SocketRef<A>,
              size: PacketSize,
              Event(name): Event,
              TryData(data): TryData<Value>,
              to: AckTo<A>| {
            let shared = shared.clone();
            async move { handle(&shared, &s, &size, &name, data.ok(), to).await }
        },
    );
}

/// One event: checked, decoded, run, answered.
async fn handle<A: Adapter>(
    shared: &Arc<Shared<A>>,
    socket: &SocketRef<A>,
    size: &PacketSize,
    name: &str,
    data: Option<Value>,
    to: AckTo<A>,
) {
    let event = ClientEvent::from_name(name);
    let result = match socket.extensions.get::<Authenticated>() {
        Some(auth) => run(shared, socket, &auth.identity, event, size, data).await,
        None => Err(Error::Internal("the connection is not authenticated")),
    };
    match result {
        Ok(ack) => reply::ack(socket, to, ack),
        Err(error) => {
            // The name is the client's when the event is unknown: echo a bounded piece of it.
            let label: String = match event {
                Some(e) => e.name().to_owned(),
                None => name.chars().take(64).collect(),
            };
            tracing::debug!(sid = %socket.id, event = %label, code = %error.code(), %error, "event failed");
            let notice = ErrorPayload::new(&error, &label);
            reply::event(socket, "error", reply::raw(&notice));
            let ack = if event.is_some_and(ClientEvent::seed_ack) {
                reply::raw(&SeedAckError {
                    status: "error",
                    error: error.client_message(),
                    code: error.code(),
                })
            } else {
                reply::raw(&AckError::new(&error))
            };
            reply::ack(socket, to, ack);
        }
    }
}

/// The guards, then the command; the result is the ack's body.
async fn run<A: Adapter>(
    shared: &Arc<Shared<A>>,
    socket: &SocketRef<A>,
    who: &Arc<Identity>,
    event: Option<ClientEvent>,
    size: &PacketSize,
    data: Option<Value>,
) -> Result<Box<RawValue>, Error> {
    // A flood of unknown events is still a flood: the limits come first.
    shared.guards.admit_event(who, size)?;
    let Some(event) = event else {
        return Err(Error::BadRequest("unknown event".into()));
    };
    let ctx = Ctx {
        shared,
        socket,
        who,
    };
    match event.decode(data)? {
        Command::Join(conversation) => ctx.join(conversation).await,
        Command::Leave(conversation) => ctx.leave(conversation).await.map(|l| ok(&l)),
        Command::Invite { conversation, user } => {
            ctx.invite(conversation, user).await.map(|i| ok(&i))
        }
        Command::Send(request) => {
            let sent = ctx.send(request).await?;
            Ok(if event.seed_ack() {
                reply::raw(&SeedAckOk {
                    status: "success",
                    message_id: &sent.message_id,
                })
            } else {
                ok(&sent)
            })
        }
        Command::Cancel {
            conversation,
            stream,
        } => ctx.cancel(conversation, stream).await.map(|c| ok(&c)),
        Command::Resume {
            conversation,
            stream,
            last_seq,
        } => ctx
            .resume(conversation, stream, last_seq)
            .await
            .map(|r| ok(&r)),
        Command::History {
            conversation,
            before,
            limit,
        } => ctx
            .history(conversation, before, limit)
            .await
            .map(|h| ok(&h)),
        Command::Announce { message } => ctx.announce(&message).await.map(|n| ok(&n)),
        Command::Approve {
            conversation,
            approval,
            approved,
            reason,
        } => {
            let decided = shared
                .engine
                .approve(who, Some(&conversation), &approval, approved, reason)
                .await?;
            Ok(ok(&Decided::of(&decided)))
        }
        Command::Typing {
            conversation,
            typing,
        } => typing::typing(shared, socket, who, conversation, typing)
            .await
            .map(|t| ok(&t)),
        Command::Edit {
            conversation,
            message,
            text,
            stream,
        } => {
            shared.guards.admit_message(who)?;
            let started = shared
                .engine
                .edit(who, &conversation, &message, text, stream)
                .await;
            ctx.started(&conversation, started).map(|s| ok(&s))
        }
        Command::Regenerate {
            conversation,
            message,
            stream,
        } => {
            shared.guards.admit_message(who)?;
            let started = shared
                .engine
                .regenerate(who, &conversation, message.as_ref(), stream)
                .await;
            ctx.started(&conversation, started).map(|s| ok(&s))
        }
        Command::SwitchBranch {
            conversation,
            message,
        } => ctx
            .switch_branch(conversation, message)
            .await
            .map(|s| ok(&s)),
        Command::Usage => shared.engine.usage(who).await.map(|u| ok(&u)),
    }
}

/// `{status:"ok", ...fields}`.
fn ok<T: Serialize>(fields: &T) -> Box<RawValue> {
    reply::raw(&AckOk {
        status: "ok",
        fields,
    })
}

/// What a command runs with: the node's state, the socket, its user.
struct Ctx<'a, A: Adapter> {
    shared: &'a Arc<Shared<A>>,
    socket: &'a SocketRef<A>,
    who: &'a Arc<Identity>,
}

impl<A: Adapter> Ctx<'_, A> {
    /// `join_conversation`: `joined` to the socket, and as its ack (with `status:"ok"`).
    async fn join(&self, conversation: ConversationId) -> Result<Box<RawValue>, Error> {
        let rooms = self.socket.rooms();
        let room = conversation_room(&conversation);
        let already_in = rooms.iter().any(|r| *r == room);
        let joined = rooms
            .iter()
            .filter(|r| conversation_of(r).is_some())
            .count();
        self.shared.guards.check_rooms(joined, already_in)?;
        let outcome = self.shared.engine.join(self.who, &conversation).await?;
        enter_room(self.shared, self.socket, self.who, &conversation).await;
        save_session(self.shared, self.socket, self.who).await;
        let mut body = Joined {
            conversation_id: conversation,
            status: "joined",
            members: outcome.members,
            created: outcome.created,
            active_stream: outcome.active_stream,
            queued: outcome.queued,
        };
        reply::event(self.socket, "joined", reply::raw(&body));
        body.status = "ok";
        Ok(reply::raw(&body))
    }

    /// `leave_conversation`: the socket leaves the room and forgets the conversation's
    /// streams, so that a later join starts from the live tail (`docs/protocol.md` section 3).
    async fn leave(&self, conversation: ConversationId) -> Result<Left, Error> {
        if leave_room(self.shared, self.socket, self.who, &conversation).await {
            if let Some(SocketOutbox(outbox)) = self.socket.extensions.get::<SocketOutbox>() {
                outbox.forget(&conversation);
            }
            save_session(self.shared, self.socket, self.who).await;
        }
        let left = Left {
            conversation_id: conversation,
        };
        reply::event(self.socket, "left", reply::raw(&left));
        Ok(left)
    }

    async fn invite(&self, conversation: ConversationId, user: UserId) -> Result<Invited, Error> {
        self.shared
            .engine
            .invite(self.who, &conversation, &user)
            .await?;
        Ok(Invited {
            conversation_id: conversation,
            user_id: user,
        })
    }

    /// `send_message`. A repeat of an earlier `client_message_id` gets the first outcome,
    /// marked `duplicate`, without counting against [`Limits::messages`]: it starts nothing.
    ///
    /// [`Limits::messages`]: crate::Limits::messages
    async fn send(&self, request: SendRequest) -> Result<Sent, Error> {
        let repeat = request.client_message_id.as_deref().and_then(|id| {
            self.shared
                .engine
                .sent_before(self.who, &request.conversation_id, id)
        });
        let outcome = match repeat {
            Some(first) => first,
            None => {
                self.shared.guards.admit_message(self.who)?;
                let conversation = request.conversation_id.clone();
                let outcome = self.shared.engine.send(self.who, request).await?;
                if !outcome.duplicate {
                    asked::record(self.shared, self.socket, &conversation, &outcome.stream_id);
                }
                outcome
            }
        };
        let SendOutcome {
            message_id,
            stream_id,
            duplicate,
            queued,
            ..
        } = outcome;
        Ok(Sent {
            message_id,
            stream_id,
            duplicate,
            queued,
        })
    }

    /// The ack of a command that started an answer (`edit_message`, `regenerate`).
    fn started(
        &self,
        conversation: &ConversationId,
        started: Result<SendOutcome, Error>,
    ) -> Result<Sent, Error> {
        let outcome = started?;
        asked::record(self.shared, self.socket, conversation, &outcome.stream_id);
        Ok(Sent {
            message_id: outcome.message_id,
            stream_id: outcome.stream_id,
            duplicate: false,
            queued: None,
        })
    }

    /// `switch_branch`: `branch_switched` to the whole room (this socket included), on every
    /// node, and as the ack's fields.
    async fn switch_branch(
        &self,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<BranchSwitched, Error> {
        let leaf = self
            .shared
            .engine
            .switch_branch(self.who, &conversation, &message)
            .await?;
        let switched = BranchSwitched {
            conversation_id: conversation,
            message_id: message,
            leaf_id: leaf,
            user_id: self.who.user_id.clone(),
        };
        let room = conversation_room(&switched.conversation_id);
        if let Err(e) = self
            .socket
            .within(room.clone())
            .emit("branch_switched", &switched)
            .await
        {
            // The other nodes are out of reach (Redis is away): this node's members at least.
            tracing::debug!(error = %e, "branch_switched delivered on this node only");
            let _ = self
                .socket
                .local()
                .within(room)
                .emit("branch_switched", &switched)
                .await;
        }
        Ok(switched)
    }

    async fn cancel(
        &self,
        conversation: ConversationId,
        stream: Option<StreamId>,
    ) -> Result<Cancelled, Error> {
        let stream_id = self
            .shared
            .engine
            .cancel(self.who, &conversation, stream.as_ref())
            .await?;
        Ok(Cancelled {
            conversation_id: conversation,
            stream_id,
        })
    }

    /// `resume_stream`: access is checked again, the socket joins the conversation's room
    /// (so that it follows the live tail), then every event after `last_seq` is queued from
    /// the log, followed by the live tail, with no gap and no duplicate (`crate::delivery`).
    /// An answer that already ended is followed by its terminal event. A position the log
    /// cannot continue from is `resume_unavailable`, also sent as `stream_error`.
    async fn resume(
        &self,
        conversation: ConversationId,
        stream: StreamId,
        last_seq: u64,
    ) -> Result<Resumed, Error> {
        let engine = &self.shared.engine;
        let read = match engine
            .read_stream(self.who, Some(&conversation), &stream, last_seq, 1)
            .await
        {
            Ok(read) => read,
            Err(e @ Error::ResumeUnavailable(_)) => {
                let failed = marie_core::StreamEvent::Error(
                    marie_core::StreamFailed::cannot_resume(conversation, stream, &e, last_seq),
                );
                reply::event(self.socket, failed.name(), reply::raw(&failed.payload()));
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // Into the room first, then the log: nothing falls in between.
        enter_room(self.shared, self.socket, self.who, &conversation).await;
        save_session(self.shared, self.socket, self.who).await;
        let Some(SocketOutbox(outbox)) = self.socket.extensions.get::<SocketOutbox>() else {
            return Err(Error::Internal("the connection cannot receive streams"));
        };
        crate::delivery::resume(
            &self.shared.hub.log,
            &outbox,
            &conversation,
            &stream,
            last_seq,
        )
        .await?;
        Ok(Resumed {
            conversation_id: conversation,
            stream_id: stream,
            from_seq: last_seq + 1,
            last_seq: read.last_seq,
            ended: read.end.is_some(),
        })
    }

    async fn history(
        &self,
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: Option<usize>,
    ) -> Result<History, Error> {
        let messages = self
            .shared
            .engine
            .history(self.who, &conversation, before, limit)
            .await?;
        Ok(History {
            conversation_id: conversation,
            messages,
        })
    }

    /// `system_announcement`: admins only; `announcement` to every client of the namespace.
    async fn announce(&self, message: &str) -> Result<Nothing, Error> {
        let shared = self.shared;
        shared.engine.authorize_announcement(self.who, message)?;
        shared
            .io
            .of(&shared.config.namespace)
            .ok_or(Error::Internal("namespace not registered"))?
            .emit("announcement", &Announcement { message })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "announcement not delivered to every client");
                Error::Internal("the announcement could not be delivered to every client")
            })?;
        Ok(Nothing {})
    }
}
