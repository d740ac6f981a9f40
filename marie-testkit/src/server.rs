//! MARIE on axum on an ephemeral port of 127.0.0.1, with the test users: a real server, so
//! that a test goes through the transport as a client does.

use std::net::SocketAddr;
use std::sync::Arc;

use marie_adapters::{MemoryStore, StaticAuthenticator};
use marie_axum::{Marie, MarieBuilder, MarieConfig, MarieHandle};
use marie_core::{Identity, LlmProvider, Tool, UserId};

/// A running server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its handle: the engine, shutdown, revocation.
    pub handle: MarieHandle,
    /// Its store, to look at what it holds.
    pub store: MemoryStore,
}

/// The test users: `alice`, `bob`, `carol` and `dave` with the tokens `t-<name>`, and
/// `admin` (token `t-admin`) with the admin role.
pub fn authenticator() -> StaticAuthenticator {
    let auth = StaticAuthenticator::new();
    for name in ["alice", "bob", "carol", "dave"] {
        auth.insert(
            format!("t-{name}"),
            Identity::new(UserId::parse(name).unwrap()),
        );
    }
    auth.insert(
        "t-admin",
        Identity::new(UserId::parse("admin").unwrap()).with_role("admin"),
    );
    auth
}

/// Serves `app` on an ephemeral port of 127.0.0.1 until the test ends, with `TCP_NODELAY`
/// as MARIE's own servers set it (small frames would otherwise wait for Nagle).
pub async fn listen(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(marie_axum::nodelay(listener), app)
            .await
            .unwrap();
    });
    addr
}

/// A server with `provider` and the default configuration.
pub async fn start(provider: impl LlmProvider) -> TestServer {
    start_with(provider, MarieConfig::default()).await
}

/// A server with `provider` and `config`.
pub async fn start_with(provider: impl LlmProvider, config: MarieConfig) -> TestServer {
    start_with_tools(provider, config, Vec::new()).await
}

/// A server whose engine offers `tools`.
pub async fn start_with_tools(
    provider: impl LlmProvider,
    config: MarieConfig,
    tools: Vec<Arc<dyn Tool>>,
) -> TestServer {
    start_custom(provider, config, |mut builder| {
        for tool in tools {
            builder = builder.tool(tool);
        }
        builder
    })
    .await
}

/// A server built by `customize` from the test defaults (the test users, a fresh
/// [`MemoryStore`], `provider`, `config`), with the HTTP routes mounted too.
pub async fn start_custom(
    provider: impl LlmProvider,
    config: MarieConfig,
    customize: impl FnOnce(MarieBuilder) -> MarieBuilder,
) -> TestServer {
    let store = MemoryStore::new();
    let builder = Marie::builder()
        .authenticator(authenticator())
        .store(store.clone())
        .provider(provider)
        .config(config);
    let (layer, handle) = customize(builder).build().unwrap();
    let addr = listen(handle.http_routes().layer(layer)).await;
    TestServer {
        addr,
        handle,
        store,
    }
}
