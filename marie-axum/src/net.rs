//! Serving helpers.

use axum::serve::{Listener, ListenerExt};
use tokio::net::TcpListener;

/// Wraps `listener` so that every accepted socket has `TCP_NODELAY` set.
///
/// Chat tokens are tiny writes; with Nagle's algorithm on, each may wait for the previous
/// one's ACK (up to 40 ms with delayed ACKs), which shows as stutter in the stream.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
/// axum::serve(marie_axum::nodelay(listener), app).await
/// # }
/// ```
pub fn nodelay(listener: TcpListener) -> impl Listener<Addr = std::net::SocketAddr> {
    listener.tap_io(|stream| {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    })
}
