//! A TCP proxy between MARIE and Redis that a test can cut and restore: a network failure
//! on cue, without touching the Redis server other tests use.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: AbortHandle,
}

struct State {
    upstream: SocketAddr,
    open: AtomicBool,
    conns: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream,
            open: AtomicBool::new(true),
            conns: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    if !state.open.load(Ordering::SeqCst) {
                        // Cut: accept and hang up at once, like a dead link.
                        drop(client);
                        continue;
                    }
                    let upstream = state.upstream;
                    let task = tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let mut client = client;
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                    let mut conns = state.conns.lock().unwrap();
                    conns.retain(|c| !c.is_finished());
                    conns.push(task.abort_handle());
                    // A cut may have happened while this connection was being set up.
                    if !state.open.load(Ordering::SeqCst) {
                        task.abort();
                    }
                }
            }
        })
        .abort_handle();
        Proxy {
            addr,
            state,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Drops every proxied connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.state.open.store(false, Ordering::SeqCst);
        for conn in self.state.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The Redis the tests use: `MARIE_TEST_REDIS_URL`, or the local one.
pub fn redis_url() -> String {
    std::env::var("MARIE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The `host:port` of [`redis_url`].
pub fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let rest = url
        .split_once("://")
        .map_or(url.as_str(), |(_, r)| r)
        .rsplit('@')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    use std::net::ToSocketAddrs;
    rest.to_socket_addrs()
        .unwrap()
        .next()
        .expect("the Redis address resolves")
}

/// A key prefix no other test uses.
pub fn unique_prefix(test: &str) -> String {
    format!("marie-test:{test}:{:016x}", rand::random::<u64>())
}
