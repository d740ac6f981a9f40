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
//! | `MARIE_ECHO_DELAY_MS` | `60` | the echo provider's delay before each word |
//! | `MARIE_JWT_SECRET` | unset | accept HS256 JWTs (`sub` = user id); unset = dev mode |
//!
//! In dev mode the nodes of *this process* share the tokens minted at `POST /api/dev/token`;
//! nodes in separate processes do not, so use `MARIE_JWT_SECRET` there. Never expose dev
//! mode beyond your machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use marie_adapters::{
    JwtAuthenticator, RedisConfig, RedisControlBus, RedisStore, RedisStreamLog, StaticAuthenticator,
};
use marie_axum::Marie;
use marie_axum::redis::RedisAdapterOptions;
use marie_core::{Authenticator, Identity, UserId};
use marie_llm::EchoProvider;
use serde::Deserialize;
use serde_json::json;

const INDEX_HTML: &str = include_str!("../chat/static/index.html");
const APP_JS: &str = include_str!("../chat/static/app.js");
const STYLE_CSS: &str = include_str!("../chat/static/style.css");
const SOCKET_IO_JS: &str = include_str!("../chat/static/socket.io.min.js");

/// How clients get tokens: minted here (dev) or issued elsewhere (JWT).
#[derive(Clone)]
enum AuthMode {
    Dev(StaticAuthenticator),
    Jwt,
}

#[derive(Clone)]
struct NodeState {
    name: String,
    mode: AuthMode,
    store: RedisStore,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,socketioxide=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();

    let redis_url =
        std::env::var("MARIE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = std::env::var("MARIE_REDIS_PREFIX").unwrap_or_else(|_| "marie".into());
    let addrs: Vec<SocketAddr> = std::env::var("MARIE_ADDRS")
        .unwrap_or_else(|_| "127.0.0.1:3001,127.0.0.1:3002".into())
        .split(',')
        .map(|a| a.trim().parse())
        .collect::<Result<_, _>>()?;

    let (mode, authenticator): (AuthMode, Arc<dyn Authenticator>) =
        match std::env::var("MARIE_JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => (
                AuthMode::Jwt,
                Arc::new(JwtAuthenticator::hs256(secret.as_bytes())),
            ),
            _ => {
                tracing::warn!(
                    "DEV MODE: no MARIE_JWT_SECRET set; anyone can get a token for any user \
                     at POST /api/dev/token. Do not expose these servers."
                );
                let dev = StaticAuthenticator::new();
                (AuthMode::Dev(dev.clone()), Arc::new(dev))
            }
        };

    let mut nodes = tokio::task::JoinSet::new();
    let mut handles = Vec::new();
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
        let (layer, handle) = Marie::builder()
            .authenticator(authenticator.clone())
            .store(store.clone())
            .control_bus(bus)
            .stream_log(log)
            .provider(EchoProvider::from_env_var("MARIE_ECHO_DELAY_MS"))
            .redis(adapter)
            .build_async()
            .await?;
        let chat_routes = handle.chat_routes();
        handles.push(handle);

        let state = NodeState {
            name: name.clone(),
            mode: mode.clone(),
            store,
        };
        let app = Router::new()
            .route(
                "/",
                get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
            )
            .route(
                "/app.js",
                get(|| async { asset("text/javascript", APP_JS) }),
            )
            .route("/style.css", get(|| async { asset("text/css", STYLE_CSS) }))
            .route(
                "/socket.io.min.js",
                get(|| async { asset("text/javascript", SOCKET_IO_JS) }),
            )
            .route("/api/auth/mode", get(auth_mode))
            .route("/api/dev/token", post(dev_token))
            .route("/api/node", get(node_name))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready))
            .with_state(state)
            // The SSE fallback (this example serves its own health probes).
            .merge(chat_routes)
            .layer(layer);

        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        // Scripts wait for these lines.
        println!("MARIE cluster {name} listening on http://{local}");
        nodes.spawn(async move {
            axum::serve(marie_axum::nodelay(listener), app)
                .with_graceful_shutdown(shutdown_signal())
                .await
        });
    }

    shutdown_signal().await;
    tracing::info!("shutting down: finishing running answers");
    for handle in &handles {
        handle.shutdown(Duration::from_secs(5)).await;
    }
    while let Some(done) = nodes.join_next().await {
        done??;
    }
    Ok(())
}

/// Ctrl-C, or SIGTERM (what process managers send).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
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

async fn auth_mode(State(node): State<NodeState>) -> Json<serde_json::Value> {
    Json(json!({ "mode": match node.mode { AuthMode::Dev(_) => "dev", AuthMode::Jwt => "jwt" } }))
}

#[derive(Deserialize)]
struct TokenRequest {
    user_id: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Dev mode only: mints a random token for any user name, valid on every node of this
/// process.
async fn dev_token(
    State(node): State<NodeState>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let AuthMode::Dev(auth) = node.mode else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"code": "not_found", "message": "dev tokens are off: a JWT secret is configured"})),
        )
            .into_response();
    };
    let Ok(Json(request)) = body else {
        return bad_request("expected a JSON body {\"user_id\": ..., \"roles\"?: [...]}");
    };
    let user_id = match UserId::parse(request.user_id) {
        Ok(id) => id,
        Err(e) => return bad_request(&e.to_string()),
    };
    let roles: Vec<String> = request.roles.into_iter().filter(|r| r == "admin").collect();
    let token = format!("dev-{:032x}", rand::random::<u128>());
    auth.insert(
        token.clone(),
        Identity {
            user_id: user_id.clone(),
            roles: roles.clone(),
            expires_at: None,
        },
    );
    Json(json!({ "token": token, "user_id": user_id, "roles": roles })).into_response()
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "code": "bad_request", "message": message })),
    )
        .into_response()
}
