//! What every example with the chat page shares: logging, dev-mode or JWT logins, the page
//! and login routes, and the shutdown signal. Included by each example with `#[path]`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use marie_adapters::{JwtAuthenticator, StaticAuthenticator};
use marie_core::{Authenticator, Identity, UserId};
use serde::Deserialize;
use serde_json::json;

const INDEX_HTML: &str = include_str!("../chat/static/index.html");
const APP_JS: &str = include_str!("../chat/static/app.js");
/// The TypeScript client `@marie-rs/client` (clients/js), built for the page as one script
/// with socket.io-client inside (`npm run build:page` there; its tests fail when this copy is
/// stale).
const MARIE_CLIENT_JS: &str = include_str!("../chat/static/marie-client.js");
const STYLE_CSS: &str = include_str!("../chat/static/style.css");
/// The markdown parser `marked` (npm, `lib/marked.umd.js`), served locally.
const MARKED_JS: &str = include_str!("../chat/static/marked.umd.js");
/// The HTML sanitiser DOMPurify (npm, `dist/purify.min.js`): every answer's HTML passes
/// through it before it reaches the page.
const PURIFY_JS: &str = include_str!("../chat/static/purify.min.js");

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
pub(crate) enum AuthMode {
    Dev(StaticAuthenticator),
    Jwt,
}

impl AuthMode {
    /// Whether anyone may mint tokens (no `MARIE_JWT_SECRET`).
    pub(crate) fn is_dev(&self) -> bool {
        matches!(self, Self::Dev(_))
    }
}

/// HS256 JWTs when `MARIE_JWT_SECRET` is set, else dev mode, said loudly.
pub(crate) fn auth_from_env() -> (AuthMode, Arc<dyn Authenticator>) {
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
    }
}

/// The chat page, its assets, `GET /api/auth/mode` and (dev mode) `POST /api/dev/token`.
pub(crate) fn page_routes(mode: AuthMode) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/marie-client.js",
            get(|| async { asset("text/javascript", MARIE_CLIENT_JS) }),
        )
        .route("/style.css", get(|| async { asset("text/css", STYLE_CSS) }))
        .route(
            "/marked.umd.js",
            get(|| async { asset("text/javascript", MARKED_JS) }),
        )
        .route(
            "/purify.min.js",
            get(|| async { asset("text/javascript", PURIFY_JS) }),
        )
        .route("/api/auth/mode", get(auth_mode))
        .route("/api/dev/token", post(dev_token))
        .with_state(mode)
}

/// `MARIE_ALLOWED_ORIGINS` (comma-separated, `*` for any); unset: any origin in dev mode,
/// else only this server's own address (see docs/security.md).
pub(crate) fn allowed_origins(dev: bool, addr: SocketAddr) -> marie_axum::AllowedOrigins {
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
pub(crate) async fn shutdown_signal() {
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

/// An error for a person: `main` prints what it returns with `Debug`, so its `Debug` is its
/// text, not a quoted string.
pub(crate) struct Words(pub(crate) String);

impl std::fmt::Debug for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Words {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Words {}

/// Listens on `addr` (set by the environment variable `var`); when it cannot, says why and
/// what to do in words.
pub(crate) async fn listen(addr: SocketAddr, var: &str) -> Result<tokio::net::TcpListener, Words> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let next = SocketAddr::new(addr.ip(), addr.port().wrapping_add(1).max(1));
        Words(match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "cannot listen on {addr}: the address is already in use (another server, or this \
                 example started twice). Stop it, or set {var} to another address, e.g. \
                 {var}={next}"
            ),
            std::io::ErrorKind::PermissionDenied => format!(
                "cannot listen on {addr}: permission denied (ports below 1024 need privileges). \
                 Set {var} to another address, e.g. {var}={next}"
            ),
            std::io::ErrorKind::AddrNotAvailable => format!(
                "cannot listen on {addr}: this machine has no such address. Set {var} to one of \
                 its addresses, e.g. {var}=127.0.0.1:3000"
            ),
            _ => format!("cannot listen on {addr}: {e}. Set {var} to another address"),
        })
    })
}
