//! A connection's life: the CONNECT middleware (credentials, connection slots), the connect
//! handler (outbox, event handler, session), the disconnect handler.

use std::sync::Arc;

use marie_core::{ConversationId, Credentials, ErrorCode, SessionId};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::membership::{enter_room, save_session, tell_others};
use super::payloads::{Connected, Reconnected};
use super::{Authenticated, Session, asked, commands, reply};
use crate::events::ConnectAuth;
use crate::guards::{ConnectionGuard, expiry};
use crate::rooms::{conversation_of, user_room};
use crate::state::Shared;

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

/// The CONNECT middleware: a token (from `auth`, or the query when allowed) that the
/// authenticator accepts, and a free connection slot of its user.
pub(crate) async fn authenticate<A: Adapter>(
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
    let identity = match shared
        .authenticator
        .authenticate(&Credentials::bearer(token))
        .await
    {
        Ok(identity) => identity,
        Err(e) => {
            tracing::info!(sid = %socket.id, reason = %e, "connect refused");
            return Err(ConnectRefused(ErrorCode::Unauthorized));
        }
    };
    let Some(slot) = shared.guards.admit_connection(&identity.user_id) else {
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

/// `?token=` from the handshake URL, for seed compatibility when enabled.
fn query_token<A: Adapter>(socket: &SocketRef<A>) -> Option<String> {
    socket.req_parts().uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token" && !v.is_empty()).then(|| v.to_owned())
    })
}

/// A socket passed the middleware: it gets its outbox and its event handler before anything
/// is awaited (a client may emit the moment it sees CONNECT), then its session, announced
/// with `connected` or `reconnected` through the outbox.
pub(crate) async fn on_connect<A: Adapter>(shared: Arc<Shared<A>>, socket: SocketRef<A>) {
    shared.hub.attach(&socket);
    commands::register(&shared, &socket);
    let for_disconnect = shared.clone();
    socket.on_disconnect(move |s: SocketRef<A>| {
        let shared = for_disconnect.clone();
        // The rooms are read now, when socketioxide calls the handler, not in its task: a
        // client that sends its goodbye and closes the transport at once (socket.io-client's
        // `disconnect()` does) makes socketioxide close the socket twice, and the second
        // close takes it out of its rooms at once, while this handler still runs. Read in
        // the task, the rooms were then sometimes gone: no `user_left`, room counts off.
        let conversations = s
            .rooms()
            .iter()
            .filter_map(|r| conversation_of(r))
            .collect();
        async move { on_disconnect(&shared, &s, conversations).await }
    });
    metrics::gauge!("marie_connections").increment(1.0);

    let Some(auth) = socket.extensions.get::<Authenticated>() else {
        // Unreachable: the middleware admits no socket without it. Refuse to serve it.
        tracing::error!(sid = %socket.id, "connected socket without identity");
        let _ = socket.disconnect();
        return;
    };
    let who = &auth.identity;
    socket.join(user_room(&who.user_id));
    if shared.config.disconnect_on_expiry
        && let Some(guard) = socket.extensions.get::<ConnectionGuard>()
    {
        expiry::watch(&socket, who, guard);
    }

    if let Some(previous) = &auth.resume {
        match shared.engine.restore_session(who, previous).await {
            Ok(Some(rooms)) => {
                for conversation in &rooms {
                    enter_room(&shared, &socket, who, conversation).await;
                }
                socket.extensions.insert(Session(previous.clone()));
                save_session(&shared, &socket, who).await;
                let notice = Reconnected {
                    message: "Successfully reconnected",
                    restored: true,
                    rooms: &rooms,
                    sid: socket.id.to_string(),
                    user_id: &who.user_id,
                    session: previous,
                };
                reply::event(&socket, "reconnected", reply::raw(&notice));
                return;
            }
            Ok(None) => {
                tracing::debug!(sid = %socket.id, "previous session unknown, expired or not the user's")
            }
            Err(e) => tracing::warn!(error = %e, "could not read the previous session"),
        }
    }

    let session = SessionId::random();
    socket.extensions.insert(Session(session.clone()));
    save_session(&shared, &socket, who).await;
    let notice = Connected {
        status: "connected",
        sid: socket.id.to_string(),
        user_id: &who.user_id,
        session: &session,
    };
    reply::event(&socket, "connected", reply::raw(&notice));
}

/// A socket went away: its outbox closes, the answers it asked for are cancelled (when so
/// configured), its slot is freed, and the others in its rooms are told. The session record
/// stays until it expires, so that the client can resume it.
async fn on_disconnect<A: Adapter>(
    shared: &Shared<A>,
    socket: &SocketRef<A>,
    conversations: Vec<ConversationId>,
) {
    metrics::gauge!("marie_connections").decrement(1.0);
    if let Some(crate::delivery::SocketOutbox(outbox)) = socket.extensions.get() {
        outbox.close();
    }
    if let Some(guard) = socket.extensions.get::<ConnectionGuard>() {
        guard.release();
    }
    let Some(auth) = socket.extensions.get::<Authenticated>() else {
        return;
    };
    asked::cancel_all(shared, socket, &auth.identity).await;
    for conversation in conversations {
        shared.rooms.left(&conversation);
        super::typing::stop(socket, &auth.identity, &conversation).await;
        tell_others(socket, "user_left", &auth.identity, &conversation).await;
    }
}
