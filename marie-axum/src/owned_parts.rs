//! Handshake requests copied out of the connection's read buffer.
//!
//! hyper parses a request without copying: its URI and header values are slices of the
//! connection's read buffer (8 to 16 KiB). Engine.IO keeps the handshake request's parts for
//! the whole session (`socket.req_parts()`), and with them that whole buffer: measured with
//! DHAT, 16 KiB of the 28 KiB an idle connection held (`docs/benchmarks.md`). Copying the few
//! hundred bytes that are actually kept lets the buffer go once the connection is upgraded.
//!
//! The copy is one buffer holding the URI and every header value kept, and it leaves out the
//! headers that only concern the connection's upgrade, which is over by then: the
//! hop-by-hop headers (`Connection`, `Upgrade`, those `Connection` names, ...) and the
//! WebSocket negotiation (`Sec-WebSocket-Version`, `-Extensions`, `-Protocol`). Each header
//! kept costs a session about 100 bytes in the `HeaderMap` alone. `Sec-WebSocket-Key` stays:
//! Engine.IO answers the upgrade with it after this layer.

use axum::body::Bytes;
use axum::extract::OriginalUri;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Uri};

/// Whether Engine.IO will keep this request's parts: it opens a session (no `sid` yet).
pub(crate) fn opens_session<B>(req: &Request<B>) -> bool {
    !req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("sid=")))
}

/// Headers about this connection's upgrade only (RFC 9110 section 7.6.1, RFC 6455 section
/// 11.3), besides those that `Connection` names.
const UPGRADE_ONLY: [&HeaderName; 9] = [
    &header::CONNECTION,
    &header::UPGRADE,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::PROXY_AUTHORIZATION,
    &header::SEC_WEBSOCKET_VERSION,
    &header::SEC_WEBSOCKET_EXTENSIONS,
    &header::SEC_WEBSOCKET_PROTOCOL,
];

/// Whether the copy leaves out `name`: it concerns only the upgrade of this connection.
fn upgrade_only(name: &HeaderName, headers: &HeaderMap) -> bool {
    UPGRADE_ONLY.contains(&name)
        || name == "keep-alive"
        || name == "proxy-connection"
        || headers.get_all(header::CONNECTION).iter().any(|listed| {
            listed.to_str().is_ok_and(|l| {
                l.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case(name.as_str()))
            })
        })
}

/// `req` with its URI and the headers worth keeping (and axum's `OriginalUri`, when set) in
/// one allocation of their own, sharing nothing with the buffer they were parsed from.
pub(crate) fn owned_parts<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    match owned(&parts) {
        Some((uri, original, headers)) => {
            parts.uri = uri;
            parts.headers = headers;
            if let Some(OriginalUri(o)) = parts.extensions.get_mut::<OriginalUri>() {
                *o = original.unwrap_or_else(|| parts.uri.clone());
            }
        }
        // Not reached: what was parsed parses again. Keep the request as it was.
        None => tracing::debug!("could not copy a handshake request"),
    }
    Request::from_parts(parts, body)
}

/// The copies of `owned_parts`: the URI, axum's `OriginalUri` when it differs, the headers.
fn owned(parts: &axum::http::request::Parts) -> Option<(Uri, Option<Uri>, HeaderMap)> {
    let uri = parts.uri.to_string();
    let original = parts
        .extensions
        .get::<OriginalUri>()
        .map(|OriginalUri(o)| o.to_string())
        .filter(|o| *o != uri);
    let kept: Vec<(&HeaderName, &HeaderValue)> = parts
        .headers
        .iter()
        .filter(|(name, _)| !upgrade_only(name, &parts.headers))
        .collect();

    let mut text = Vec::with_capacity(
        uri.len()
            + original.as_ref().map_or(0, String::len)
            + kept.iter().map(|(_, v)| v.len()).sum::<usize>(),
    );
    text.extend_from_slice(uri.as_bytes());
    text.extend_from_slice(original.as_deref().unwrap_or_default().as_bytes());
    for (_, value) in &kept {
        text.extend_from_slice(value.as_bytes());
    }
    let text = Bytes::from(text);
    let mut at = 0;
    let mut next = |len: usize| {
        at += len;
        text.slice(at - len..at)
    };

    let new_uri = Uri::from_maybe_shared(next(uri.len())).ok()?;
    let new_original = match original {
        Some(o) => Some(Uri::from_maybe_shared(next(o.len())).ok()?),
        None => None,
    };
    let mut headers = HeaderMap::with_capacity(kept.len());
    for (name, value) in kept {
        // A standard name is a constant; another is copied (a few bytes).
        let name = HeaderName::from_bytes(name.as_str().as_bytes()).ok()?;
        let mut copy = HeaderValue::from_maybe_shared(next(value.len())).ok()?;
        copy.set_sensitive(value.is_sensitive());
        headers.append(name, copy);
    }
    Some((new_uri, new_original, headers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    /// A request whose URI and headers are slices of one buffer, as hyper makes them.
    fn parsed_from(buffer: &Bytes) -> Request<()> {
        let text = std::str::from_utf8(buffer).unwrap();
        let at = |s: &str| {
            let i = text.find(s).unwrap();
            buffer.slice(i..i + s.len())
        };
        let mut req = Request::new(());
        *req.uri_mut() =
            Uri::from_maybe_shared(at("/socket.io/?EIO=4&transport=websocket")).unwrap();
        req.headers_mut().insert(
            "x-forwarded-for",
            HeaderValue::from_maybe_shared(at("10.0.0.1")).unwrap(),
        );
        let mut secret = HeaderValue::from_maybe_shared(at("Bearer abc")).unwrap();
        secret.set_sensitive(true);
        req.headers_mut()
            .insert(axum::http::header::AUTHORIZATION, secret);
        let uri = req.uri().clone();
        req.extensions_mut().insert(OriginalUri(uri));
        req
    }

    #[test]
    fn nothing_points_into_the_read_buffer_afterwards() {
        let buffer = Bytes::from(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nx-forwarded-for: 10.0.0.1\r\nauthorization: Bearer abc\r\n\r\n",
        );
        let range = buffer.as_ptr_range();
        let inside = |p: *const u8| range.contains(&p);
        let before = parsed_from(&buffer);
        assert!(
            inside(before.uri().path().as_ptr()),
            "the test builds shared parts"
        );

        let after = owned_parts(before);
        assert_eq!(after.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert!(!inside(after.uri().path().as_ptr()));
        let original = &after.extensions().get::<OriginalUri>().unwrap().0;
        assert_eq!(original, after.uri());
        assert!(!inside(original.path().as_ptr()));
        assert_eq!(after.headers().len(), 2);
        for (name, value) in after.headers() {
            assert!(!inside(value.as_bytes().as_ptr()), "{name}");
        }
        assert_eq!(after.headers()["x-forwarded-for"], "10.0.0.1");
        assert!(after.headers()[axum::http::header::AUTHORIZATION].is_sensitive());
    }

    #[test]
    fn the_upgrade_headers_are_left_out_and_the_rest_shares_one_buffer() {
        let req = Request::get("/socket.io/?EIO=4&transport=websocket")
            .header("host", "chat.example")
            .header("connection", "Upgrade, X-Hop")
            .header("upgrade", "websocket")
            .header("x-hop", "only for the next hop")
            .header("keep-alive", "timeout=5")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-extensions", "permessage-deflate")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("user-agent", "test")
            .header("x-request-id", "42")
            .body(())
            .unwrap();
        let after = owned_parts(req);
        let mut kept: Vec<_> = after.headers().keys().map(|k| k.as_str()).collect();
        kept.sort_unstable();
        assert_eq!(
            kept,
            ["host", "sec-websocket-key", "user-agent", "x-request-id"]
        );
        assert_eq!(
            after.headers()["sec-websocket-key"],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        // The URI and every value are slices of one buffer, in order.
        let start = after.uri().path().as_ptr() as usize;
        let key = after.headers()["sec-websocket-key"].as_bytes().as_ptr() as usize;
        assert!(key > start && key - start < 128, "one buffer");
    }

    #[test]
    fn only_a_handshake_opens_a_session() {
        let req = |uri: &str| Request::get(uri).body(()).unwrap();
        assert!(opens_session(&req("/socket.io/?EIO=4&transport=polling")));
        assert!(opens_session(&req("/socket.io/?EIO=4&transport=websocket")));
        assert!(!opens_session(&req(
            "/socket.io/?EIO=4&transport=polling&sid=abc"
        )));
        assert!(!opens_session(&req(
            "/socket.io/?sid=abc&EIO=4&transport=websocket"
        )));
    }
}
