//! What the `chat`, `openai` and `ollama` examples share: the web page, dev-mode or JWT
//! logins, MARIE on the embedded defaults (in-memory store) with the provider the example
//! picked, and graceful shutdown. Included by each example with `#[path]`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use marie_adapters::{JwtAuthenticator, MemoryStore, StaticAuthenticator};
use marie_axum::Marie;
use marie_core::{Authenticator, Identity, LlmProvider, UserId};
use serde::Deserialize;
use serde_json::json;

const INDEX_HTML: &str = include_str!("../chat/static/index.html");
const APP_JS: &str = include_str!("../chat/static/app.js");
const STYLE_CSS: &str = include_str!("../chat/static/style.css");
/// The official socket.io-client browser bundle, served locally (no CDN).
const SOCKET_IO_JS: &str = include_str!("../chat/static/socket.io.min.js");

/// Logs to stderr, `RUST_LOG` or `info`.
pub(crate) fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,socketioxide=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// How clients get tokens: minted here (dev) or issued elsewhere (JWT).
#[derive(Clone)]
enum AuthMode {
    Dev(StaticAuthenticator),
    Jwt,
}

/// Serves the chat page and MARIE with `provider` on `MARIE_ADDR` (default
/// 127.0.0.1:3000) until Ctrl-C or SIGTERM, then lets running answers finish for 5 s.
///
/// Prints `MARIE {name} example listening on http://{addr}` once it accepts connections.
pub(crate) async fn serve(
    name: &str,
    provider: Arc<dyn LlmProvider>,
) -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("MARIE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;

    let (mode, authenticator): (AuthMode, Arc<dyn Authenticator>) =
        match std::env::var("MARIE_JWT_SECRET") {
            Ok(secret) if !secret.is_empty() => (
                AuthMode::Jwt,
                Arc::new(JwtAuthenticator::hs256(secret.as_bytes())),
            ),
            _ => {
                tracing::warn!(
                    "DEV MODE: no MARIE_JWT_SECRET set; anyone can get a token for any user \
                     at POST /api/dev/token. Do not expose this server."
                );
                let dev = StaticAuthenticator::new();
                (AuthMode::Dev(dev.clone()), Arc::new(dev))
            }
        };

    tracing::info!(
        provider = provider.name(),
        "answers come from this provider"
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (layer, handle) = Marie::builder()
        .authenticator(authenticator)
        .store(MemoryStore::new())
        .provider(provider)
        .allowed_origins(allowed_origins(matches!(mode, AuthMode::Dev(_)), local))
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
        .with_state(mode)
        // The SSE fallback, `/healthz` and `/readyz`.
        .merge(handle.http_routes())
        .layer(layer);

    // Tests and scripts wait for this exact line.
    println!("MARIE {name} example listening on http://{local}");

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

/// `MARIE_ALLOWED_ORIGINS` (comma-separated, `*` for any); unset: any origin in dev mode,
/// else only this server's own address (see docs/security.md).
fn allowed_origins(dev: bool, addr: SocketAddr) -> marie_axum::AllowedOrigins {
    match std::env::var("MARIE_ALLOWED_ORIGINS") {
        Ok(list) if !list.trim().is_empty() => marie_axum::AllowedOrigins::parse(&list),
        _ if dev => marie_axum::AllowedOrigins::Any,
        _ => {
            let port = addr.port();
            let mut own = vec![format!("http://{addr}")];
            if addr.ip().is_loopback() {
                own.push(format!("http://localhost:{port}"));
                own.push(format!("http://127.0.0.1:{port}"));
            }
            tracing::info!(origins = ?own, "MARIE_ALLOWED_ORIGINS unset: only this server's own pages may connect");
            marie_axum::AllowedOrigins::list(own)
        }
    }
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
