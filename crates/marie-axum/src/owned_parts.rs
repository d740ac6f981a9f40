//! Handshake requests copied out of the connection's read buffer.
//!
//! hyper parses a request without copying: its URI and header values are slices of the
//! connection's read buffer (8 to 16 KiB). Engine.IO keeps the handshake request's parts for
//! the whole session (`socket.req_parts()`), and with them that whole buffer: measured with
//! DHAT, 16 KiB of the 28 KiB an idle connection held (`docs/benchmarks.md`). Copying the few
//! hundred bytes that are actually kept lets the buffer go once the connection is upgraded.

use axum::extract::OriginalUri;
use axum::http::header::{HeaderMap, HeaderName, HeaderValue};
use axum::http::{Request, Uri};

/// Whether Engine.IO will keep this request's parts: it opens a session (no `sid` yet).
pub(crate) fn opens_session<B>(req: &Request<B>) -> bool {
    !req.uri()
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("sid=")))
}

/// `req` with its URI and headers (and axum's `OriginalUri`, when set) in allocations of
/// their own, sharing nothing with the buffer they were parsed from.
pub(crate) fn owned_parts<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        // Both copy their bytes (a standard header name is a constant).
        let (Ok(name), Ok(mut copy)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            // Not reached: they were valid when parsed. Keep the request as it was.
            return Request::from_parts(parts, body);
        };
        copy.set_sensitive(value.is_sensitive());
        headers.append(name, copy);
    }
    parts.headers = headers;
    parts.uri = owned_uri(&parts.uri);
    if let Some(OriginalUri(uri)) = parts.extensions.get_mut::<OriginalUri>() {
        *uri = owned_uri(uri);
    }
    Request::from_parts(parts, body)
}

fn owned_uri(uri: &Uri) -> Uri {
    // From a `String` of its own; the parse cannot fail on a URI's own text.
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
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
