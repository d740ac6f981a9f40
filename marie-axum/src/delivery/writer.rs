//! The task that writes a socket's outbox out: started when something is queued and the
//! item could not go out on the spot, gone once the outbox is empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use socketioxide::SocketError;
use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use super::{DeliveryConfig, Emitted, Outbox};

/// Emits what is queued in `outbox` to `socket`, then ends. While socketioxide's buffer is
/// full it retries with a backoff, merging what arrives meanwhile, and evicts the client
/// once it has accepted nothing for `max_stall`.
pub(super) async fn write_out<A: Adapter>(
    socket: SocketRef<A>,
    outbox: Arc<Outbox>,
    config: DeliveryConfig,
) {
    while let Some(mut out) = outbox.take() {
        let mut attempt = 0;
        let mut stalled: Option<Instant> = None;
        loop {
            match out.emit_to(&socket) {
                Emitted::Sent => break,
                Emitted::Full => {
                    let since = *stalled.get_or_insert_with(Instant::now);
                    if since.elapsed() > config.max_stall {
                        outbox.evict("stalled");
                    }
                    if outbox.is_evicted() {
                        disconnect_when_possible(socket).await;
                        return;
                    }
                    // Chunks that arrived meanwhile join the one waiting.
                    outbox.absorb(&mut out);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Emitted::Gone => {
                    outbox.close();
                    return;
                }
            }
        }
        outbox.sent(&out);
    }
    if outbox.is_evicted() {
        disconnect_when_possible(socket).await;
    }
}

/// Retries emitting into a full socketioxide buffer: socketioxide offers no way to await
/// room in it, so the writer polls with a short backoff (1 ms doubling to 16 ms) until the
/// item goes out, the client is evicted, or it disconnects.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(1 << attempt.min(4))
}

/// Disconnects an evicted socket. Its socketioxide buffer is full, so the DISCONNECT packet
/// may not fit: try again while it stays connected (socketioxide offers nothing to await).
/// Engine.IO closes it anyway at its next ping, which fails on a full buffer.
async fn disconnect_when_possible<A: Adapter>(socket: SocketRef<A>) {
    while socket.connected() {
        match socket.clone().disconnect() {
            Err(SocketError::InternalChannelFull) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => return,
        }
    }
}
