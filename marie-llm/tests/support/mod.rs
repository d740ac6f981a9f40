//! Test support: a fake model server that sends what the real APIs send, a chat through the
//! engine (and the checks of an answer asked again after a `stream_reset`), a provider asked
//! directly, files on a user message, the authors of a group conversation's messages, and
//! addresses that refuse or never answer connections.
//! MARIE over Socket.IO, the engine's set-up and the metrics recorder are `marie_testkit`'s.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

pub mod authors;
pub mod direct;
pub mod engine;
pub mod fake;
pub mod files;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An address where nothing listens: connecting is refused at once.
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A listener whose accept queue is full and never drained: the kernel drops further
/// connection attempts (SYNs) silently, so connecting hangs until the client's connect
/// timeout. Keep the returned value alive for as long as the address must hang.
pub struct Unresponsive {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

pub async fn unresponsive_addr() -> Unresponsive {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    // Fill the queue until a connection no longer completes.
    for _ in 0..16 {
        match tokio::time::timeout(ms(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            _ => {
                return Unresponsive {
                    addr,
                    _listener: listener,
                    _queued: queued,
                };
            }
        }
    }
    panic!("could not fill the accept queue of {addr}");
}
