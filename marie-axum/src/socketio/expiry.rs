//! Connections end when their credentials expire, or when their user is revoked
//! ([`MarieHandle::revoke_user`](crate::MarieHandle::revoke_user)); each gets an `error` notice
//! first.

use std::time::Duration;

use marie_core::{Error, Identity, now_millis};
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::commands::ErrorPayload;
use crate::guards::ConnectionGuard;

/// The notice sent before a connection is ended because its credentials expired.
pub(crate) fn expired() -> ErrorPayload<'static> {
    ErrorPayload::new(&Error::Unauthorized("your credentials expired"), "connect")
}

/// The notice sent before a connection is ended because its user was revoked.
pub(crate) fn revoked() -> ErrorPayload<'static> {
    ErrorPayload::new(&Error::Unauthorized("your access was revoked"), "connect")
}

/// Ends the connection of `socket` when `who`'s credentials expire, unless it closes first.
pub(crate) fn watch<A: Adapter>(socket: &SocketRef<A>, who: &Identity, guard: ConnectionGuard) {
    let Some(expires_at) = who.expires_at else {
        return;
    };
    let socket = socket.clone();
    tokio::spawn(async move {
        let left = Duration::from_millis(expires_at.saturating_sub(now_millis()));
        tokio::select! {
            _ = tokio::time::sleep(left) => {
                tracing::info!(sid = %socket.id, "credentials expired: ending the connection");
                // A notice, then the end: not queued behind the socket's chunks, which the
                // disconnect drops anyway.
                let _ = socket.emit("error", &expired());
                let _ = socket.disconnect();
            }
            _ = guard.closed() => {}
        }
    });
}
