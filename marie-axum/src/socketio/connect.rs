//! A connection's life: the CONNECT middleware ([`admit`]: credentials, connection slot,
//! handlers, session), the greeting once CONNECT has left ([`Greeter`]), the disconnect
//! handler.
//!
//! socketioxide sends CONNECT when the middleware returns, then spawns the connect handler:
//! an event the client sends the moment it reads CONNECT may arrive before that task runs.
//! So everything an event needs is set up in the middleware: the caller, the outbox (which
//! sends nothing until the greeting), the event handler, the session and its rooms. The
//! greeting itself is sent from a synchronous connect handler, at once.

use std::sync::Arc;

use marie_core::{ConversationId, ErrorCode, SessionId, StreamId};
use serde_json::value::RawValue;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Socket;

use super::expiry;
use super::membership::{save_session, tell_others};
use super::payloads::{ConnectAuth, Connected, Reconnected, Running};
use super::{Session, asked, handler, reply};
use crate::commands::{Caller, raw};
use crate::delivery::SocketOutbox;
use crate::guards::ConnectionGuard;
use crate::rooms::{conversation_of, conversation_room, user_room};
use crate::state::NodeState;
use crate::typing::Typist;

/// Why a CONNECT was refused. Its `Display` is what the client sees as `err.message`:
/// socketioxide's CONNECT_ERROR carries one message string, so the message is the stable
/// code.
#[derive(Debug)]
pub(crate) struct ConnectRefused(ErrorCode);

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// What a socket is greeted with once CONNECT has left, and the rooms it was put back in.
/// (Socket extensions must be `Clone`: hence the `Arc`s.)
#[derive(Clone)]
struct Greeting {
    name: &'static str,
    payload: Arc<RawValue>,
    restored: Arc<[ConversationId]>,
}

/// The CONNECT middleware: a token (from `auth`, or the query when allowed) that the
/// authenticator accepts, and a free connection slot of its user. Then, before CONNECT is
/// sent, everything the socket's events need: its caller, its outbox, its handlers, its
/// session (restored rooms included).
pub(crate) async fn admit<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    socket: &SocketRef<A>,
    auth: ConnectAuth,
) -> Result<(), ConnectRefused> {
    let token = auth.token.clone().filter(|t| !t.is_empty()).or_else(|| {
        shared
            .config
            .allow_query_token
            .then(|| query_token(socket))
            .flatten()
    });
    let Some(token) = token else {
        tracing::debug!(sid = %socket.id, "connect refused: no credentials");
        return Err(ConnectRefused(ErrorCode::Unauthorized));
    };
    let caller = Caller::authenticate(shared.authenticator.as_ref(), &token)
        .await
        .map_err(|_| ConnectRefused(ErrorCode::Unauthorized))?;
    let who = caller.identity().clone();
    let Some(slot) = shared.guards.admit_connection(&who.user_id) else {
        tracing::info!(sid = %socket.id, "connect refused: too many connections for the user");
        return Err(ConnectRefused(ErrorCode::RateLimited));
    };
    socket.extensions.insert(slot);
    socket.extensions.insert(caller);
    shared.hub.attach(socket);
    handler::register(shared, socket);
    on_disconnect(shared, socket);
    socket.join(user_room(&who.user_id));
    let greeting = open_session(shared, socket, &who, auth).await;
    socket.extensions.insert(greeting);
    Ok(())
}

/// `?token=` from the handshake URL, for seed compatibility when enabled.
fn query_token<A: Adapter>(socket: &SocketRef<A>) -> Option<String> {
    socket.req_parts().uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token" && !v.is_empty()).then(|| v.to_owned())
    })
}

/// The socket's session: the previous one restored when the client names one that is its
/// user's and unexpired (its rooms entered again, access checked again), else a new one.
async fn open_session<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    socket: &SocketRef<A>,
    who: &marie_core::Identity,
    auth: ConnectAuth,
) -> Greeting {
    let previous = auth
        .previous_session
        .as_deref()
        .or(auth.previous_sid.as_deref())
        .and_then(|s| SessionId::parse(s).ok());
    if let Some(previous) = previous {
        match shared.engine.restore_session(who, &previous).await {
            Ok(Some(rooms)) => return restore(shared, socket, who, previous, rooms, &auth).await,
            Ok(None) => {
                tracing::debug!(sid = %socket.id, "previous session unknown, expired or not the user's")
            }
            Err(e) => tracing::warn!(error = %e, "could not read the previous session"),
        }
    }
    let session = SessionId::random();
    socket.extensions.insert(Session(session.clone()));
    save_session(shared, socket, who).await;
    let notice = Connected {
        status: "connected",
        sid: socket.id.to_string(),
        user_id: &who.user_id,
        session: &session,
    };
    Greeting {
        name: "connected",
        payload: raw(&notice).into(),
        restored: Arc::new([]),
    }
}

/// Puts a reconnected socket back in `rooms`. The live events of an answer running there
/// are held until the client resumes it (at once, from `auth.last_seqs`; or by its
/// `resume_stream`; or, at the latest, after `DeliveryConfig::restore_hold`): a client that
/// appends what it gets then sees each position once, in order. The hold comes before the
/// room, so that no live event slips in between.
async fn restore<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    socket: &SocketRef<A>,
    who: &marie_core::Identity,
    session: SessionId,
    rooms: Vec<ConversationId>,
    auth: &ConnectAuth,
) -> Greeting {
    let outbox = socket.extensions.get::<SocketOutbox>().map(|o| o.0);
    let mut running = Vec::new();
    for conversation in &rooms {
        match shared.engine.running_answer(conversation).await {
            Ok(Some(active)) => {
                if let Some(outbox) = &outbox {
                    outbox.hold_restored(conversation, &active.stream_id);
                }
                running.push(Running {
                    conversation_id: conversation.clone(),
                    stream_id: active.stream_id,
                    seq: active.seq,
                    resumed: false,
                });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, %conversation, "could not read a restored room's answer")
            }
        }
        socket.join(conversation_room(conversation));
    }
    socket.extensions.insert(Session(session.clone()));
    save_session(shared, socket, who).await;
    if let Some(outbox) = outbox {
        for stream in &mut running {
            let told = auth.last_seqs.get(stream.stream_id.as_str()).copied();
            stream.resumed = match told {
                Some(last_seq) => resume_now(shared, &outbox, stream, last_seq).await,
                None => false,
            };
            if !stream.resumed {
                release_later(shared, &outbox, stream.stream_id.clone());
            }
        }
    }
    let notice = Reconnected {
        message: "Successfully reconnected",
        restored: true,
        rooms: &rooms,
        sid: socket.id.to_string(),
        user_id: &who.user_id,
        session: &session,
        active_streams: running,
    };
    Greeting {
        name: "reconnected",
        payload: raw(&notice).into(),
        restored: rooms.into(),
    }
}

/// Resumes a held answer from where the client said it stands; whether it could.
async fn resume_now<A: Adapter>(
    shared: &NodeState<A>,
    outbox: &crate::delivery::Outbox,
    stream: &Running,
    last_seq: u64,
) -> bool {
    let log = &shared.hub.log;
    match crate::delivery::resume(
        log,
        outbox,
        &stream.conversation_id,
        &stream.stream_id,
        last_seq,
    )
    .await
    {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, stream_id = %stream.stream_id, "could not resume a restored answer from auth.last_seqs");
            false
        }
    }
}

/// Ends the hold of a restored answer its client does not resume in time.
fn release_later<A: Adapter>(
    shared: &NodeState<A>,
    outbox: &Arc<crate::delivery::Outbox>,
    stream: StreamId,
) {
    let wait = shared.config.delivery.restore_hold;
    let outbox = Arc::downgrade(outbox);
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if let Some(outbox) = outbox.upgrade() {
            outbox.end_restore_hold(&stream);
        }
    });
}

/// The connect handler: greets the socket the moment CONNECT has left, synchronously
/// (socketioxide spawns an `async` handler, which could run after the client's first
/// events), then announces it in its restored rooms.
pub(crate) struct Greeter<A: Adapter> {
    pub(crate) shared: Arc<NodeState<A>>,
}

impl<A: Adapter> Clone for Greeter<A> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// The type parameter of [`Greeter`]'s `ConnectHandler` impl (socketioxide's closures use the
/// tuple of their extractors there).
pub(crate) struct Greets;

impl<A: Adapter> ConnectHandler<A, Greets> for Greeter<A> {
    fn call(&self, socket: Arc<Socket<A>>, _: Option<socketioxide_core::Value>) {
        let socket = SocketRef::from(socket);
        let Some(greeting) = socket.extensions.remove::<Greeting>() else {
            // Unreachable: the middleware admits no socket without a greeting.
            tracing::error!(sid = %socket.id, "connected socket without a greeting");
            let _ = socket.disconnect();
            return;
        };
        // Counted before the greeting goes out: a client that reads `connected` and then the
        // metrics must find itself counted.
        metrics::gauge!("marie_connections").increment(1.0);
        reply::greet(&socket, greeting.name, (*greeting.payload).to_owned());
        let shared = &self.shared;
        if let Some(caller) = socket.extensions.get::<Caller>() {
            if shared.config.disconnect_on_expiry
                && let Some(guard) = socket.extensions.get::<ConnectionGuard>()
            {
                expiry::watch(&socket, caller.identity(), guard);
            }
            if !greeting.restored.is_empty() {
                let shared = shared.clone();
                tokio::spawn(async move {
                    for conversation in greeting.restored.iter() {
                        shared.rooms.entered(conversation);
                        tell_others(&socket, "user_joined", caller.identity(), conversation).await;
                    }
                });
            }
        }
    }
}

/// Registers what happens when the socket goes away: its outbox closes, the answers it
/// asked for are cancelled (when so configured), its slot is freed, and the others in its
/// rooms are told. The session record stays until it expires, so that the client can
/// resume it. socketioxide calls this only for a socket that was greeted.
fn on_disconnect<A: Adapter>(shared: &Arc<NodeState<A>>, socket: &SocketRef<A>) {
    let shared = shared.clone();
    socket.on_disconnect(move |s: SocketRef<A>| {
        let shared = shared.clone();
        // The rooms are read now, when socketioxide calls the handler, not in its task: a
        // client that sends its goodbye and closes the transport at once (socket.io-client's
        // `disconnect()` does) makes socketioxide close the socket twice, and the second
        // close takes it out of its rooms at once, while this handler still runs. Read in
        // the task, the rooms were then sometimes gone: no `user_left`, room counts off.
        let conversations: Vec<ConversationId> = s
            .rooms()
            .iter()
            .filter_map(|r| conversation_of(r))
            .collect();
        async move { disconnected(&shared, &s, conversations).await }
    });
}

async fn disconnected<A: Adapter>(
    shared: &NodeState<A>,
    socket: &SocketRef<A>,
    conversations: Vec<ConversationId>,
) {
    metrics::gauge!("marie_connections").decrement(1.0);
    if let Some(SocketOutbox(outbox)) = socket.extensions.get() {
        outbox.close();
    }
    if let Some(guard) = socket.extensions.get::<ConnectionGuard>() {
        guard.release();
    }
    let Some(caller) = socket.extensions.get::<Caller>() else {
        return;
    };
    let who = caller.identity();
    asked::cancel_all(shared, socket, who).await;
    for conversation in conversations {
        shared.rooms.left(&conversation);
        shared
            .typing
            .stop(Typist::Socket(socket.id), &who.user_id, &conversation)
            .await;
        tell_others(socket, "user_left", who, &conversation).await;
    }
}
