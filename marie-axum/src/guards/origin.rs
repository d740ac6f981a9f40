//! [`AllowedOrigins`]: which web pages may open the Socket.IO endpoint.
//!
//! Browsers do not apply CORS to WebSockets: any page on any site can open a WebSocket to
//! MARIE with the user's cookies. MARIE's credentials travel in the CONNECT packet (not in
//! cookies), but a page could still use a token it obtained some other way, so the
//! endpoint checks the `Origin` header of every Socket.IO request (the long-polling ones
//! and the WebSocket upgrade) before socketioxide sees it, and answers `403 Forbidden` to
//! an origin not listed.
//!
//! Requests without an `Origin` header are let through: browsers always send one on these
//! requests, so its absence means a non-browser client (a server, a CLI, a mobile app),
//! which no allowlist could stop anyway since it can send any header it likes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use tower_service::Service;

/// The `Origin`s allowed to open the Socket.IO endpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AllowedOrigins {
    /// Any origin (the default; for development and for apps that put their own check in
    /// front). Production apps served to browsers should list their origins.
    #[default]
    Any,
    /// Exactly these origins (`scheme://host[:port]`, compared without a trailing `/` and
    /// case-insensitively).
    List(Arc<[String]>),
}

impl AllowedOrigins {
    /// Exactly `origins`.
    pub fn list<I, S>(origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::List(
            origins
                .into_iter()
                .map(|o| normalize(o.as_ref()))
                .filter(|o| !o.is_empty())
                .collect(),
        )
    }

    /// From a comma-separated list (`MARIE_ALLOWED_ORIGINS`); `*` alone means [`Any`](Self::Any).
    pub fn parse(list: &str) -> Self {
        if list.trim() == "*" {
            return Self::Any;
        }
        Self::list(list.split(','))
    }

    /// Whether a request with this `Origin` header (or none) may pass.
    pub fn allows(&self, origin: Option<&HeaderValue>) -> bool {
        match (self, origin) {
            (Self::Any, _) | (_, None) => true,
            (Self::List(list), Some(origin)) => match origin.to_str() {
                Ok(origin) => {
                    let origin = normalize(origin);
                    list.contains(&origin)
                }
                Err(_) => false,
            },
        }
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Wraps the Socket.IO service: requests under `path` from an origin that is not allowed
/// get `403 Forbidden`; everything else goes through, a handshake with its URI and headers
/// copied out of the connection's read buffer (see `owned_parts`).
#[derive(Clone, Debug)]
pub struct OriginGuard<S> {
    inner: S,
    allowed: AllowedOrigins,
    path: Arc<str>,
}

impl<S> OriginGuard<S> {
    pub(crate) fn new(inner: S, allowed: AllowedOrigins, path: &str) -> Self {
        Self {
            inner,
            allowed,
            path: path.trim_end_matches('/').into(),
        }
    }

    fn is_ours<B>(&self, req: &Request<B>) -> bool {
        req.uri()
            .path()
            .strip_prefix(&*self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    fn refuses<B>(&self, req: &Request<B>) -> bool {
        !matches!(self.allowed, AllowedOrigins::Any)
            && self.is_ours(req)
            && !self.allowed.allows(req.headers().get(header::ORIGIN))
    }
}

impl<S, B, RB> Service<Request<B>> for OriginGuard<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
    RB: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.refuses(&req) {
            tracing::info!(
                origin = ?req.headers().get(header::ORIGIN),
                "Socket.IO request from an origin not allowed: 403"
            );
            let mut response = Response::new(RB::default());
            *response.status_mut() = StatusCode::FORBIDDEN;
            return Box::pin(std::future::ready(Ok(response)));
        }
        let req = if self.is_ours(&req) && crate::owned_parts::opens_session(&req) {
            crate::owned_parts::owned_parts(req)
        } else {
            req
        };
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_match_exact_origins() {
        let allowed = AllowedOrigins::parse("https://chat.example.com, http://localhost:3000/");
        let ok = |o: &str| allowed.allows(Some(&HeaderValue::from_str(o).unwrap()));
        assert!(ok("https://chat.example.com"));
        assert!(ok("HTTPS://Chat.Example.com"));
        assert!(ok("http://localhost:3000"));
        assert!(!ok("https://evil.example.com"));
        assert!(!ok("https://chat.example.com.evil.io"));
        assert!(!ok("http://localhost:3001"));
        assert!(!ok("null"));
        assert!(allowed.allows(None), "non-browser clients send no Origin");
        assert_eq!(AllowedOrigins::parse(" * "), AllowedOrigins::Any);
        assert!(AllowedOrigins::Any.allows(Some(&HeaderValue::from_static("https://x"))));
    }
}
