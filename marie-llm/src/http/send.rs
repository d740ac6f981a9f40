//! Sending a request: retries before the response, and HTTP failures as [`ProviderError`]s.

use std::time::{Duration, SystemTime};

use marie_core::{LlmRequest, ProviderError};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use tokio::time::Instant;

use super::HttpSettings;

/// A response that started well (2xx), and the deadline for its first token.
pub(crate) struct Sent {
    pub(crate) response: reqwest::Response,
    /// The first-token budget of the attempt that succeeded.
    pub(crate) first_token_deadline: Instant,
}

/// A `POST` of the JSON `body` to `url` that accepts `accept`: the request of every HTTP
/// provider for an answer, before its own headers.
pub(crate) fn post_json(
    client: &reqwest::Client,
    url: &reqwest::Url,
    accept: &'static str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, accept)
        .body(body.to_vec())
}

/// Sends the request `build` makes for an answer to `request` from `model`, again after a
/// retryable failure, as the [`RetryPolicy`](super::RetryPolicy) says.
///
/// Everything here happens before the first byte of the answer is read, so a retry can
/// never duplicate text a client has seen. Dropping the future drops the request in flight
/// (or the backoff sleep): nothing is spawned.
pub(crate) async fn send_with_retry(
    provider: &'static str,
    model: &str,
    request: &LlmRequest,
    settings: &HttpSettings,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Sent, ProviderError> {
    tracing::debug!(
        provider,
        model = %model,
        messages = request.messages.len(),
        "requesting an answer"
    );
    let policy = settings.retry;
    let mut retry = 0u32;
    loop {
        let started = Instant::now();
        let first_token_deadline = started + settings.timeouts.first_token;
        let failure = match tokio::time::timeout_at(first_token_deadline, build().send()).await {
            Err(_) => return Err(ProviderError::Timeout("first token")),
            Ok(Err(e)) => Failure {
                error: send_error(e),
                retry_after: None,
            },
            Ok(Ok(response)) if response.status().is_success() => {
                return Ok(Sent {
                    response,
                    first_token_deadline,
                });
            }
            Ok(Ok(response)) => status_failure(provider, response, settings).await,
        };
        if !failure.retryable() || retry >= policy.max_retries {
            return Err(failure.error);
        }
        let delay = match failure.retry_after {
            Some(wait) if wait > policy.max_retry_after => {
                tracing::warn!(
                    provider,
                    wait_ms = wait.as_millis() as u64,
                    "the provider asks to wait longer than max_retry_after; not retrying"
                );
                return Err(failure.error);
            }
            Some(wait) => wait,
            None => policy.backoff_for(retry),
        };
        retry += 1;
        metrics::counter!(
            "marie_provider_retries_total",
            "provider" => provider,
            "reason" => failure.error.kind(),
        )
        .increment(1);
        tracing::warn!(
            provider,
            retry,
            of = policy.max_retries,
            delay_ms = delay.as_millis() as u64,
            error = %failure.error,
            "provider request failed before the answer started; retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// A failed attempt.
struct Failure {
    error: ProviderError,
    /// How long the server asked to wait.
    retry_after: Option<Duration>,
}

impl Failure {
    /// Whether sending the same request again may work. Only failures that happened before
    /// any of the answer was received reach this point.
    fn retryable(&self) -> bool {
        match &self.error {
            ProviderError::Unreachable(_) | ProviderError::RateLimited { .. } => true,
            ProviderError::Timeout(stage) => *stage == "connect",
            ProviderError::Status { status } => *status == 408 || *status >= 500,
            _ => false,
        }
    }
}

/// A `reqwest` error from sending (no response yet).
fn send_error(e: reqwest::Error) -> ProviderError {
    if e.is_connect() && e.is_timeout() {
        return ProviderError::Timeout("connect");
    }
    // The URL is left out: a base URL may hold credentials (`https://user:pass@host`).
    ProviderError::Unreachable(error_chain(&e.without_url()))
}

/// A `reqwest` error while reading the response body: the connection broke mid-answer.
pub(crate) fn body_error(e: reqwest::Error) -> ProviderError {
    ProviderError::Disconnected(error_chain(&e.without_url()))
}

/// An error and its sources, joined with `": "`, for logs.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Turns an HTTP error status into a failure, logging what the server said about it.
async fn status_failure(
    provider: &'static str,
    response: reqwest::Response,
    settings: &HttpSettings,
) -> Failure {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    let said = read_error_message(response, settings.timeouts.idle).await;
    tracing::warn!(
        provider,
        status,
        upstream = said.as_deref().unwrap_or("-"),
        "provider answered with an HTTP error"
    );
    let error = match status {
        401 | 403 => ProviderError::Unauthorized { status },
        429 => ProviderError::RateLimited { retry_after },
        _ => ProviderError::Status { status },
    };
    Failure { error, retry_after }
}

/// Whether `response` is JSON (`application/json`): a server that ignores `stream: true`,
/// or one that reports an error with a 200 status, where an event stream was asked for.
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub(crate) fn is_json(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// The most an error body is read, for the log line.
const ERROR_BODY_LIMIT: usize = 8 * 1024;
/// The longest wait for an error body.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// Reads (a bounded part of) an error response and extracts the message, for logs only: it
/// is never sent to clients.
pub(crate) async fn read_error_message(
    mut response: reqwest::Response,
    wait: Duration,
) -> Option<String> {
    let mut body = Vec::new();
    let read = async {
        while body.len() < ERROR_BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
    };
    // A body that does not arrive in time is not worth waiting for: it only feeds a log line.
    let _ = tokio::time::timeout(wait.min(ERROR_BODY_WAIT), read).await;
    body.truncate(ERROR_BODY_LIMIT);
    if body.is_empty() {
        return None;
    }
    let message = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    Some(for_log(&message))
}

/// The message of an error object as OpenAI-compatible servers and Ollama send it:
/// `{"error":{"message":..}}`, `{"error":".."}`, or `{"object":"error","message":..}`.
pub(crate) fn error_message(value: &serde_json::Value) -> Option<String> {
    match value.get("error") {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(obj @ serde_json::Value::Object(_)) => Some(
            obj.get("message")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| obj.to_string()),
        ),
        Some(serde_json::Value::Null) | None => {
            if value.get("object").and_then(serde_json::Value::as_str) == Some("error") {
                value
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| Some(value.to_string()))
            } else {
                None
            }
        }
        Some(other) => Some(other.to_string()),
    }
}

/// Upstream text made fit for a log line: one line, at most 300 characters, and anything
/// that looks like an API key (`sk-...`) masked.
pub(crate) fn for_log(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        if let Some(i) = word.find("sk-") {
            out.push_str(&word[..i]);
            out.push_str("sk-***");
        } else {
            out.push_str(word);
        }
    }
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

/// How long the server asks to wait: `retry-after-ms` (OpenAI's, milliseconds), else
/// `Retry-After` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header(RETRY_AFTER.as_str())?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        map
    }

    #[test]
    fn retry_after_in_all_its_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")]), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")]), now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            retry_after(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(Duration::from_millis(250))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &later)]), now),
            Some(Duration::from_secs(7))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &earlier)]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_messages_of_every_shape() {
        let v = serde_json::json!({"error": {"message": "Incorrect API key", "type": "invalid_request_error"}});
        assert_eq!(error_message(&v).as_deref(), Some("Incorrect API key"));
        let v = serde_json::json!({"error": "model 'x' not found"});
        assert_eq!(error_message(&v).as_deref(), Some("model 'x' not found"));
        let v = serde_json::json!({"object": "error", "message": "boom", "code": 400});
        assert_eq!(error_message(&v).as_deref(), Some("boom"));
        let v = serde_json::json!({"choices": []});
        assert_eq!(error_message(&v), None);
    }

    #[test]
    fn log_text_masks_keys_and_is_bounded() {
        let text = for_log("Incorrect API key provided: sk-proj-abcdef123.\n More  text");
        assert_eq!(text, "Incorrect API key provided: sk-*** More text");
        assert!(for_log(&"x".repeat(1000)).chars().count() <= 301);
    }
}
