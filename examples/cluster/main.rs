//! The MARIE cluster example: several nodes sharing one Redis, each serving the chat page.
//!
//! ```text
//! redis-server &                                   # or any Redis 6+
//! cargo run -p marie-examples --example cluster    # nodes on :3001 and :3002
//! ```
//!
//! Open <http://127.0.0.1:3001> in one window and <http://127.0.0.1:3002> in another, join
//! the same conversation as two users (invite the second one), and watch an answer started
//! on one node stream into the other; cancel it from either. `docs/cluster.md` shows a
//! load balancer in front.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MARIE_REDIS_URL` | `redis://127.0.0.1:6379` | the Redis every node shares |
//! | `MARIE_ADDRS` | `127.0.0.1:3001,127.0.0.1:3002` | one node per address, in this process; give one address to run one node per process |
//! | `MARIE_REDIS_PREFIX` | `marie` | key and channel prefix; nodes of one cluster share it |
//! | `MARIE_DATABASE_URL` | unset | keep conversations in SQL (`postgres://...`; every node the same database) instead of Redis, and uploaded files there too; Redis still carries the bus, the stream log and the adapter. Unset: the nodes take no file uploads |
//! | `MARIE_ECHO_DELAY_MS` | `60` | the echo provider's delay before each word |
//! | `MARIE_ASSISTANTS` | `assistant,calc` | the named assistants, as in the chat example |
//! | `MARIE_DEMO_TOOLS` | `on` | `off` leaves out the demo tools `calculate` and `send_email` (which needs approval) |
//! | `MARIE_JWT_SECRET` | unset | accept HS256 JWTs (`sub` = user id); unset = dev mode |
//! | `MARIE_ALLOWED_ORIGINS` | see meaning | comma-separated origins allowed to open the Socket.IO endpoint (`*`: any); unset: any in dev mode, else each node's own address |
//!
//! In dev mode the nodes of *this process* share the tokens minted at `POST /api/dev/token`;
//! nodes in separate processes do not, so use `MARIE_JWT_SECRET` there. Never expose dev
//! mode beyond your machine.

#[path = "../common/store.rs"]
mod store;
#[path = "../common/tools.rs"]
mod tools;
#[path = "../common/web.rs"]
mod web;

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use marie_adapters::{RedisConfig, RedisControlBus, RedisStore, RedisStreamLog};
use marie_axum::Marie;
use marie_axum::redis::RedisAdapterOptions;
use marie_llm::EchoProvider;
use serde_json::json;

#[derive(Clone)]
struct NodeState {
    name: String,
    store: RedisStore,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    web::init_tracing();

    let redis_url =
        std::env::var("MARIE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = std::env::var("MARIE_REDIS_PREFIX").unwrap_or_else(|_| "marie".into());
    let addrs: Vec<SocketAddr> = std::env::var("MARIE_ADDRS")
        .unwrap_or_else(|_| "127.0.0.1:3001,127.0.0.1:3002".into())
        .split(',')
        .map(|a| {
            a.trim().parse().map_err(|_| {
                web::Words(format!(
                    "MARIE_ADDRS: {a:?} is not an address to listen on: give IP:port pairs, \
                     comma-separated, e.g. MARIE_ADDRS=127.0.0.1:3001,127.0.0.1:3002"
                ))
            })
        })
        .collect::<Result<_, _>>()?;

    // In dev mode the nodes of this process share the minted tokens.
    let (mode, authenticator) = web::auth_from_env();
    // History in SQL (PostgreSQL, for nodes in several processes) when MARIE_DATABASE_URL
    // says so; Redis then carries only what is live: the bus, the stream log, the adapter.
    let sql = store::sql_from_env().await?;
    // Uploaded files must be readable on every node: in SQL beside history, or not at all
    // (each node's memory would hold only what was uploaded to it).
    if sql.is_some() {
        tracing::info!("uploaded files are kept in SQL, shared by every node");
    } else {
        tracing::info!(
            "file uploads are off: set MARIE_DATABASE_URL to keep files in SQL, shared by every node"
        );
    }

    let mut nodes = tokio::task::JoinSet::new();
    let mut handles = Vec::new();
    // The nodes of this process record `send_email`'s messages in one outbox.
    let outbox = tools::Outbox::default();
    for (i, addr) in addrs.into_iter().enumerate() {
        let name = format!("node-{}", i + 1);
        // Every node has its own connections, exactly as if it ran on its own machine.
        let config = RedisConfig::new(redis_url.clone()).prefix(prefix.clone());
        let store = RedisStore::connect(config.clone()).await?;
        let bus = RedisControlBus::connect(config.clone()).await?;
        // Every chunk in a Redis Stream, so that a client resumes an answer on any node.
        let log = RedisStreamLog::connect(config).await?;
        let adapter = RedisAdapterOptions::new(redis_url.clone())
            .prefix(format!("{prefix}:sio"))
            .connect()
            .await?;
        let listener = web::listen(addr, "MARIE_ADDRS").await?;
        let local = listener.local_addr()?;
        let mut config = marie_axum::MarieConfig::default();
        config.engine = config.engine.assistants(tools::assistants()?);
        let mut builder = Marie::builder()
            .config(config)
            .authenticator(authenticator.clone())
            .allowed_origins(web::allowed_origins(mode.is_dev(), local));
        builder = match &sql {
            Some(sql) => builder.store(sql.clone()).files(sql.clone()),
            None => builder.store(store.clone()),
        };
        let mut builder = builder
            .control_bus(bus)
            .stream_log(log)
            .provider(EchoProvider::from_env_var("MARIE_ECHO_DELAY_MS"));
        if tools::enabled() {
            // Approvals live in the shared store: a member on any node may decide.
            builder = builder
                .tool(tools::calculate())
                .tool(tools::send_email(outbox.clone()));
        }
        let (layer, handle) = builder.redis(adapter).build_async().await?;
        let chat_routes = handle.chat_routes();
        handles.push(handle);

        let state = NodeState {
            name: name.clone(),
            store,
        };
        let node_routes = Router::new()
            .route("/api/node", get(node_name))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .with_state(state);
        let app = web::page_routes(mode.clone())
            .merge(node_routes)
            // The SSE fallback (this example serves its own health probes).
            .merge(chat_routes)
            .layer(layer);

        // Scripts wait for these lines.
        println!("MARIE cluster {name} listening on http://{local}");
        nodes.spawn(async move {
            axum::serve(marie_axum::nodelay(listener), app)
                .with_graceful_shutdown(web::shutdown_signal())
                .await
        });
    }

    web::shutdown_signal().await;
    tracing::info!("shutting down: finishing running answers");
    for handle in &handles {
        handle.shutdown(Duration::from_secs(5)).await;
    }
    while let Some(done) = nodes.join_next().await {
        done??;
    }
    Ok(())
}

async fn node_name(State(node): State<NodeState>) -> Json<serde_json::Value> {
    Json(json!({ "node": node.name }))
}

/// Ready when this node's Redis answers.
async fn ready(State(node): State<NodeState>) -> Response {
    match node.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "redis unavailable").into_response(),
    }
}
