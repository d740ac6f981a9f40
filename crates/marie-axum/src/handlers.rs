//! The socketioxide handlers: authentication on CONNECT, then one handler per event.
//!
//! Each handler decodes its payload, calls one [`ChatEngine`](marie_core::ChatEngine)
//! method, and answers with the protocol's events and ack. Answers run in the engine's
//! background tasks, so no handler waits for a model.

use std::future::Future;
use std::sync::Arc;

use marie_core::{
    ConversationId, Credentials, Error, ErrorCode, Identity, SendRequest, SessionId, SessionRecord,
    now_millis,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::BroadcastError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide_core::adapter::DefinedAdapter;

use crate::builder::Shared;
use crate::protocol::{self, ConnectAuth};
use crate::rooms::{conversation_of, conversation_room};
use crate::security::PacketSize;

/// Set on a socket by the CONNECT middleware once its credentials are valid.
#[derive(Clone)]
pub(crate) struct Authenticated {
    pub(crate) identity: Arc<Identity>,
    resume: Option<SessionId>,
}

/// The socket's session handle, set by the connect handler.
#[derive(Clone)]
struct Session(SessionId);

/// Why a CONNECT was refused. Its `Display` is what the client sees as `err.message`:
/// socketioxide's CONNECT_ERROR carries one message string, so the message is the stable
/// code.
#[derive(Debug)]
struct ConnectRefused(ErrorCode);

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// Registers the protocol on the namespace. The result initializes the adapter (for a
/// cluster adapter: subscribes); the caller awaits or spawns it.
pub(crate) fn register<A: Adapter + DefinedAdapter>(shared: &Arc<Shared<A>>) -> A::InitRes {
    let for_middleware = shared.clone();
    let for_handler = shared.clone();
    let middleware = move |s: SocketRef<A>, TryData(auth): TryData<ConnectAuth>| {
        let shared = for_middleware.clone();
        async move { authenticate(&shared, &s, auth.unwrap_or_default()).await }
    };
    let handler = move |s: SocketRef<A>| {
        let shared = for_handler.clone();
        async move { on_connect(shared, s).await }
    };
    shared
        .io
        .ns(shared.config.namespace.clone(), handler.with(middleware))
}

async fn authenticate<A: Adapter>(
    shared: &Shared<A>,
    socket: &SocketRef<A>,
    auth: ConnectAuth,
) -> Result<(), ConnectRefused> {
    let token = auth.token.filter(|t| !t.is_empty()).or_else(|| {
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
    match shared
        .authenticator
        .authenticate(&Credentials::bearer(token))
        .await
    {
        Ok(identity) => {
            let Some(slot) = shared.security.admit_connection(&identity.user_id) else {
                tracing::info!(sid = %socket.id, "connect refused: too many connections for the user");
                return Err(ConnectRefused(ErrorCode::RateLimited));
            };
            socket.extensions.insert(slot);
            let resume = auth
                .previous_session
                .or(auth.previous_sid)
                .and_then(|s| SessionId::parse(s).ok());
            socket.extensions.insert(Authenticated {
                identity: Arc::new(identity),
                resume,
            });
            Ok(())
        }
        Err(e) => {
            tracing::info!(sid = %socket.id, reason = %e, "connect refused");
            Err(ConnectRefused(ErrorCode::Unauthorized))
        }
    }
}

/// `?token=` from the handshake URL, for seed compatibility when enabled.
fn query_token<A: Adapter>(socket: &SocketRef<A>) -> Option<String> {
    socket.req_parts().uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token" && !v.is_empty()).then(|| v.to_owned())
    })
}

async fn on_connect<A: Adapter>(shared: Arc<Shared<A>>, socket: SocketRef<A>) {
    // Handlers first: a client may emit the moment it sees CONNECT, before the awaits below.
    register_events(&shared, &socket);
    shared.hub.attach(&socket);
    let for_disconnect = shared.clone();
    socket.on_disconnect(move |s: SocketRef<A>| {
        let shared = for_disconnect.clone();
        async move { on_disconnect(&shared, &s).await }
    });
    metrics::gauge!("marie_connections").increment(1.0);

    let Some(auth) = socket.extensions.get::<Authenticated>() else {
        // Unreachable: the middleware admits no socket without it. Refuse to serve it.
        tracing::error!(sid = %socket.id, "connected socket without identity");
        let _ = socket.disconnect();
        return;
    };
    let who = &auth.identity;
    crate::security::on_connected(&shared, &socket, who);
    let store = shared.engine.store();

    if let Some(previous) = &auth.resume {
        match store.session(previous).await {
            Ok(Some(record)) if record.user_id == who.user_id => {
                let mut rooms = Vec::new();
                for conversation in record.rooms {
                    // Access is checked again: it may have been revoked while away.
                    if shared.engine.authorize(who, &conversation).await.is_ok() {
                        enter_room(&shared, &socket, who, &conversation).await;
                        rooms.push(conversation);
                    }
                }
                socket.extensions.insert(Session(previous.clone()));
                save_session(&shared, &socket, who, previous).await;
                let _ = socket.emit(
                    "reconnected",
                    &json!({
                        "message": "Successfully reconnected",
                        "restored": true,
                        "rooms": rooms,
                        "sid": socket.id.to_string(),
                        "user_id": who.user_id,
                        "session": previous,
                    }),
                );
                return;
            }
            Ok(_) => {
                tracing::debug!(sid = %socket.id, "previous session unknown, expired or not the user's")
            }
            Err(e) => tracing::warn!(error = %e, "could not read the previous session"),
        }
    }

    let session = SessionId::random();
    socket.extensions.insert(Session(session.clone()));
    save_session(&shared, &socket, who, &session).await;
    let _ = socket.emit(
        "connected",
        &json!({
            "status": "connected",
            "sid": socket.id.to_string(),
            "user_id": who.user_id,
            "session": session,
        }),
    );
}

async fn on_disconnect<A: Adapter>(shared: &Shared<A>, socket: &SocketRef<A>) {
    metrics::gauge!("marie_connections").decrement(1.0);
    crate::resume::on_disconnected(shared, socket).await;
    crate::security::on_disconnected(socket);
    let Some(auth) = socket.extensions.get::<Authenticated>() else {
        return;
    };
    for room in socket.rooms() {
        if let Some(conversation) = conversation_of(&room) {
            shared.rooms.left(&conversation);
            tell_others(socket, "user_left", &auth.identity, &conversation).await;
        }
    }
    // The session record stays until it expires, so the client can resume it.
}

/// Joins the socket to the conversation's room (once) and tells the others.
pub(crate) async fn enter_room<A: Adapter>(
    shared: &Shared<A>,
    socket: &SocketRef<A>,
    who: &Identity,
    conversation: &ConversationId,
) {
    let room = conversation_room(conversation);
    if socket.rooms().iter().any(|r| *r == room) {
        return;
    }
    socket.join(room.clone());
    shared.rooms.entered(conversation);
    tell_others(socket, "user_joined", who, conversation).await;
}

/// Sends `event {user_id, conversation_id}` to the conversation's room, except the socket.
async fn tell_others<A: Adapter>(
    socket: &SocketRef<A>,
    event: &str,
    who: &Identity,
    conversation: &ConversationId,
) {
    let room = conversation_room(conversation);
    let data = json!({ "user_id": who.user_id, "conversation_id": conversation });
    if let Err(BroadcastError::Adapter(e)) = socket.to(room.clone()).emit(event, &data).await {
        // The other nodes are out of reach (Redis is away): tell this node's members at least.
        tracing::debug!(error = %e, event, "room event delivered on this node only");
        let _ = socket.local().to(room).emit(event, &data).await;
    }
}

/// Records the socket's current conversations in its session, for a later resume.
async fn save_session<A: Adapter>(
    shared: &Shared<A>,
    socket: &SocketRef<A>,
    who: &Identity,
    session: &SessionId,
) {
    let rooms = socket
        .rooms()
        .iter()
        .filter_map(|r| conversation_of(r))
        .collect();
    let ttl = shared.config.session_ttl.as_millis() as u64;
    let record = SessionRecord {
        session_id: session.clone(),
        user_id: who.user_id.clone(),
        rooms,
        expires_at: now_millis().saturating_add(ttl),
    };
    if let Err(e) = shared.engine.store().put_session(record).await {
        // Not fatal: the connection works, only a later resume will start afresh.
        tracing::warn!(error = %e, "could not save the session");
    }
}

/// What a handler gets: the socket, the shared state and the caller.
pub(crate) struct Ctx<A: Adapter> {
    pub(crate) shared: Arc<Shared<A>>,
    pub(crate) socket: SocketRef<A>,
    pub(crate) who: Arc<Identity>,
}

/// How an event's ack is shaped.
#[derive(Clone, Copy)]
enum AckStyle {
    /// `{status:"ok", ...}` / `{status:"error", code, message}`.
    Protocol,
    /// The seed's `send_message_with_ack` shape.
    Seed,
}

/// Registers one handler for every event: it routes by name. socketioxide keeps handlers
/// per socket, so nine `socket.on` would cost every connection a hash table and nine boxed
/// handlers (about 1 KiB, `docs/benchmarks.md`); one fallback costs one box.
fn register_events<A: Adapter>(shared: &Arc<Shared<A>>, socket: &SocketRef<A>) {
    let shared = shared.clone();
    socket.on_fallback(
        move |s: SocketRef<A>,
              size: PacketSize,
              Event(event): Event,
              TryData(data): TryData<Value>,
              ack: AckSender<A>| {
            let shared = shared.clone();
            async move {
                let data = data.ok();
                let call = Call {
                    shared,
                    socket: s,
                    size,
                    ack,
                };
                use AckStyle::{Protocol, Seed};
                match event.as_str() {
                    "join_conversation" => {
                        call.run("join_conversation", Protocol, data, join).await
                    }
                    "leave_conversation" => {
                        call.run("leave_conversation", Protocol, data, leave).await
                    }
                    "invite" => call.run("invite", Protocol, data, invite).await,
                    "send_message" => call.run("send_message", Protocol, data, send).await,
                    "send_message_with_ack" => {
                        call.run("send_message_with_ack", Seed, data, send_with_ack)
                            .await
                    }
                    "cancel_stream" => call.run("cancel_stream", Protocol, data, cancel).await,
                    "resume_stream" => {
                        let resume = crate::resume::resume_stream;
                        call.run("resume_stream", Protocol, data, resume).await
                    }
                    "get_history" => call.run("get_history", Protocol, data, history).await,
                    "system_announcement" => {
                        call.run("system_announcement", Protocol, data, announce)
                            .await
                    }
                    _ => call.unknown(&event),
                }
            }
        },
    );
}

/// One event as received, before it is routed.
struct Call<A: Adapter> {
    shared: Arc<Shared<A>>,
    socket: SocketRef<A>,
    size: PacketSize,
    ack: AckSender<A>,
}

impl<A: Adapter> Call<A> {
    /// Decodes the payload for `f`, runs it, then answers with `error` and the ack.
    async fn run<P, F, Fut>(self, event: &'static str, style: AckStyle, data: Option<Value>, f: F)
    where
        P: DeserializeOwned + Send + 'static,
        F: FnOnce(Ctx<A>, P) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        let Call {
            shared,
            socket: s,
            size,
            ack,
        } = self;
        {
            let who = s.extensions.get::<Authenticated>().map(|a| a.identity);
            let admitted = who
                .as_ref()
                .map(|w| shared.security.admit_event(w, event, &size));
            let result = match (who, admitted, protocol::decode::<P>(data)) {
                (Some(_), Some(Err(e)), _) => Err(e),
                (Some(who), _, Ok(payload)) => {
                    let ctx = Ctx {
                        shared,
                        socket: s.clone(),
                        who,
                    };
                    f(ctx, payload).await
                }
                (None, _, _) => Err(Error::Internal("the connection is not authenticated")),
                (_, _, Err(e)) => Err(e),
            };
            if let Err(e) = &result {
                tracing::debug!(sid = %s.id, event, code = %e.code(), error = %e, "event failed");
                let _ = s.emit("error", &protocol::error_event(e, event));
            }
            let body = match style {
                AckStyle::Protocol => protocol::ack(&result),
                AckStyle::Seed => protocol::seed_ack(&result),
            };
            // Sends nothing when the client asked for no ack.
            let _ = ack.send(&body);
        }
    }

    fn unknown(self, event: &str) {
        crate::security::unknown_event(&self.shared, &self.socket, event, &self.size, self.ack);
    }
}

async fn join<A: Adapter>(ctx: Ctx<A>, p: protocol::ConversationRef) -> Result<Value, Error> {
    let conversation = protocol::conversation_id(p.conversation_id)?;
    crate::security::check_rooms(&ctx.shared, &ctx.socket, &conversation)?;
    let joined = ctx.shared.engine.join(&ctx.who, &conversation).await?;
    enter_room(&ctx.shared, &ctx.socket, &ctx.who, &conversation).await;
    if let Some(Session(session)) = ctx.socket.extensions.get::<Session>() {
        save_session(&ctx.shared, &ctx.socket, &ctx.who, &session).await;
    }
    let mut body = json!({
        "conversation_id": conversation,
        "status": "joined",
        "members": joined.members,
        "created": joined.created,
    });
    if let Some(active) = joined.active_stream {
        body["active_stream"] = json!(active);
    }
    let _ = ctx.socket.emit("joined", &body);
    Ok(body)
}

async fn leave<A: Adapter>(ctx: Ctx<A>, p: protocol::ConversationRef) -> Result<Value, Error> {
    let conversation = protocol::conversation_id(p.conversation_id)?;
    let room = conversation_room(&conversation);
    if ctx.socket.rooms().iter().any(|r| *r == room) {
        ctx.socket.leave(room.clone());
        ctx.shared.rooms.left(&conversation);
        tell_others(&ctx.socket, "user_left", &ctx.who, &conversation).await;
        if let Some(Session(session)) = ctx.socket.extensions.get::<Session>() {
            save_session(&ctx.shared, &ctx.socket, &ctx.who, &session).await;
        }
    }
    let body = json!({ "conversation_id": conversation });
    let _ = ctx.socket.emit("left", &body);
    Ok(body)
}

async fn invite<A: Adapter>(ctx: Ctx<A>, p: protocol::Invite) -> Result<Value, Error> {
    let conversation = protocol::conversation_id(p.conversation_id)?;
    let user = protocol::user_id(p.user_id)?;
    ctx.shared
        .engine
        .invite(&ctx.who, &conversation, &user)
        .await?;
    Ok(json!({ "conversation_id": conversation, "user_id": user }))
}

async fn send<A: Adapter>(ctx: Ctx<A>, p: protocol::SendMessage) -> Result<Value, Error> {
    let request = SendRequest {
        conversation_id: protocol::conversation_id(p.conversation_id)?,
        message: p.message,
        stream: p.stream,
        client_message_id: p.client_message_id,
    };
    let conversation = request.conversation_id.clone();
    let outcome = ctx.shared.engine.send(&ctx.who, request).await?;
    if !outcome.duplicate {
        crate::resume::asked(&ctx.shared, &ctx.socket, &conversation, &outcome.stream_id);
    }
    Ok(json!({
        "message_id": outcome.message_id,
        "stream_id": outcome.stream_id,
        "duplicate": outcome.duplicate,
    }))
}

async fn send_with_ack<A: Adapter>(ctx: Ctx<A>, p: protocol::SendMessage) -> Result<Value, Error> {
    send(ctx, protocol::SendMessage { stream: false, ..p }).await
}

async fn cancel<A: Adapter>(ctx: Ctx<A>, p: protocol::CancelStream) -> Result<Value, Error> {
    let conversation = protocol::conversation_id(p.conversation_id)?;
    let stream_id = protocol::stream_id(p.stream_id)?;
    let cancelled = ctx
        .shared
        .engine
        .cancel(&ctx.who, &conversation, stream_id.as_ref())
        .await?;
    Ok(json!({ "conversation_id": conversation, "stream_id": cancelled }))
}

async fn history<A: Adapter>(ctx: Ctx<A>, p: protocol::GetHistory) -> Result<Value, Error> {
    let conversation = protocol::conversation_id(p.conversation_id)?;
    let before = protocol::message_id(p.before)?;
    let messages = ctx
        .shared
        .engine
        .history(&ctx.who, &conversation, before, p.limit)
        .await?;
    Ok(json!({ "conversation_id": conversation, "messages": messages }))
}

async fn announce<A: Adapter>(ctx: Ctx<A>, p: protocol::Announcement) -> Result<Value, Error> {
    ctx.shared
        .engine
        .authorize_announcement(&ctx.who, &p.message)?;
    ctx.shared
        .io
        .of(&ctx.shared.config.namespace)
        .ok_or(Error::Internal("namespace not registered"))?
        .emit("announcement", &json!({ "message": p.message }))
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "announcement not delivered to every client");
            Error::Internal("the announcement could not be delivered to every client")
        })?;
    Ok(json!({}))
}
