//! The MARIE chat example: Socket.IO chat with a web page, on the embedded defaults.
//!
//! ```text
//! cargo run -p marie-examples --example chat
//! ```
//!
//! then open <http://127.0.0.1:3000>. Environment:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MARIE_ADDR` | `127.0.0.1:3000` | where to listen (`127.0.0.1:0` picks a free port) |
//! | `MARIE_ECHO_DELAY_MS` | `60` | the echo provider's delay before each word |
//! | `MARIE_JWT_SECRET` | unset | accept HS256 JWTs (`sub` = user id, `roles` may hold `admin`); unset = dev mode |
//!
//! In dev mode anyone can mint a token for any user name at `POST /api/dev/token`: never
//! expose it beyond your machine.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use marie_adapters::{JwtAuthenticator, MemoryStore, StaticAuthenticator};
use marie_axum::Marie;
use marie_core::{Authenticator, Identity, UserId};
use marie_llm::EchoProvider;
use serde::Deserialize;
use serde_json::json;

const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");
/// The official socket.io-client browser bundle, served locally (no CDN).
const SOCKET_IO_JS: &str = include_str!("static/socket.io.min.js");

/// How clients get tokens: minted here (dev) or issued elsewhere (JWT).
#[derive(Clone)]
enum AuthMode {
    Dev(StaticAuthenticator),
    Jwt,
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

    let addr: SocketAddr = std::env::var("MARIE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;

    let (mode, authenticator): (AuthMode, Box<dyn Authenticator>) =
        match std::env::var("MARIE_JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => (
                AuthMode::Jwt,
                Box::new(JwtAuthenticator::hs256(secret.as_bytes())),
            ),
            _ => {
                tracing::warn!(
                    "DEV MODE: no MARIE_JWT_SECRET set; anyone can get a token for any user \
                     at POST /api/dev/token. Do not expose this server."
                );
                let dev = StaticAuthenticator::new();
                (AuthMode::Dev(dev.clone()), Box::new(dev))
            }
        };

    let (layer, handle) = Marie::builder()
        .authenticator(std::sync::Arc::<dyn Authenticator>::from(authenticator))
        .store(MemoryStore::new())
        .provider(EchoProvider::from_env_var("MARIE_ECHO_DELAY_MS"))
        .build()?;

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
        .route("/healthz", get(|| async { "ok" }))
        .with_state(mode)
        .layer(layer);

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    // Tests and scripts wait for this exact line.
    println!("MARIE chat example listening on http://{local}");

    let shutdown_handle = handle.clone();
    axum::serve(marie_axum::nodelay(listener), app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            tracing::info!("shutting down: finishing running answers");
            shutdown_handle.shutdown(Duration::from_secs(5)).await;
        })
        .await?;
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

async fn auth_mode(State(mode): State<AuthMode>) -> Json<serde_json::Value> {
    Json(json!({ "mode": match mode { AuthMode::Dev(_) => "dev", AuthMode::Jwt => "jwt" } }))
}

#[derive(Deserialize)]
struct TokenRequest {
    user_id: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// Dev mode only: mints a random token for any user name.
async fn dev_token(
    State(mode): State<AuthMode>,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let AuthMode::Dev(auth) = mode else {
        return (StatusCode::NOT_FOUND, Json(json!({"code": "not_found", "message": "dev tokens are off: a JWT secret is configured"}))).into_response();
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
