//! Settings shared by the HTTP providers: timeouts, retries, the HTTP client.

use std::time::Duration;

/// How long an HTTP provider waits, at each stage of an answer.
///
/// There is deliberately no timeout on the whole answer: a long answer that keeps streaming
/// is healthy. What is bounded is silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timeouts {
    /// Establishing the TCP (and TLS) connection. Applies to the client the provider builds
    /// itself; a client passed with `http_client` keeps its own. Default 10 s.
    pub connect: Duration,
    /// From sending a request until the first generated token arrives, response headers
    /// included: the budget for queueing, model loading and prompt processing.
    /// Default 60 s (120 s for Ollama, which may have to load the model first).
    pub first_token: Duration,
    /// The longest silence between two events once the first token has arrived.
    /// Default 30 s.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_token: Duration::from_secs(60),
            idle: Duration::from_secs(30),
        }
    }
}

impl Timeouts {
    /// Sets [`connect`](Self::connect).
    pub fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// Sets [`first_token`](Self::first_token).
    pub fn first_token(mut self, timeout: Duration) -> Self {
        self.first_token = timeout;
        self
    }

    /// Sets [`idle`](Self::idle).
    pub fn idle(mut self, timeout: Duration) -> Self {
        self.idle = timeout;
        self
    }
}

/// When and how an HTTP provider sends a failed request again.
///
/// A request is retried only while nothing of the answer has been received: on a connect
/// error or connect timeout, HTTP 408, 429 and 5xx. It is never retried after the response
/// started (so never after a token went out), never on 401/403 or another 4xx, and never
/// after the first-token timeout (that budget is spent).
///
/// The wait before retry `n` (0-based) is `initial_backoff * 2^n`, capped at `max_backoff`,
/// with "equal jitter" (half of it fixed, half random) so that many clients do not retry in
/// step. When the server says how long to wait (`retry-after-ms`, or `Retry-After` in
/// seconds or as an HTTP date), that wait is used instead, unless it is longer than
/// `max_retry_after`: then the request fails at once with the wait in
/// [`ProviderError::RateLimited`](marie_core::ProviderError::RateLimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt; `0` disables retrying. Default 2 (3 attempts).
    pub max_retries: u32,
    /// The base of the exponential backoff. Default 500 ms.
    pub initial_backoff: Duration,
    /// The longest backoff. Default 8 s.
    pub max_backoff: Duration,
    /// The longest server-requested wait still worth waiting for. Default 20 s.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Never retries.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// Sets [`max_retries`](Self::max_retries).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`initial_backoff`](Self::initial_backoff) and [`max_backoff`](Self::max_backoff).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// Sets [`max_retry_after`](Self::max_retry_after).
    pub fn max_retry_after(mut self, wait: Duration) -> Self {
        self.max_retry_after = wait;
        self
    }

    /// The jittered backoff before retry number `retry` (0-based).
    pub(crate) fn backoff_for(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(rand::random_range(0..=jitter_ms))
    }
}

/// Why a provider could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A URL (base URL or host) does not parse or has an unsupported scheme.
    #[error("invalid URL in {source_name}: {reason}")]
    InvalidUrl {
        /// Where the URL came from (`"OPENAI_BASE_URL"`, `"base_url"`, ...).
        source_name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An environment variable holds a value that cannot be used.
    #[error("invalid {var}: {reason}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An `https` URL was given but the crate was built without a TLS backend.
    #[error(
        "an https URL needs TLS: enable marie-llm's `rustls` feature \
         or pass your own client with `http_client`"
    )]
    TlsDisabled,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// What both HTTP providers' builders hold besides their own settings.
#[derive(Clone, Debug, Default)]
pub(crate) struct HttpSettings {
    pub(crate) timeouts: Timeouts,
    pub(crate) retry: RetryPolicy,
    pub(crate) client: Option<reqwest::Client>,
}

impl HttpSettings {
    /// The client to use: the one given, or a new one with the connect timeout.
    pub(crate) fn client(&self, url: &reqwest::Url) -> Result<reqwest::Client, ConfigError> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        if url.scheme() == "https" && !cfg!(feature = "rustls") {
            return Err(ConfigError::TlsDisabled);
        }
        reqwest::Client::builder()
            .connect_timeout(self.timeouts.connect)
            .tcp_nodelay(true)
            .user_agent(concat!("marie-llm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConfigError::Client(e.to_string()))
    }
}

/// Where a provider sends its requests, as its builder holds it: the URL (or host) as
/// given, and where it came from (the builder method's name or the environment variable),
/// which errors name.
#[derive(Clone, Debug)]
pub(crate) struct BaseUrl {
    url: String,
    source: &'static str,
}

impl BaseUrl {
    /// `url`, as if given to the builder method `source`.
    pub(crate) fn new(url: &str, source: &'static str) -> Self {
        Self {
            url: url.into(),
            source,
        }
    }

    /// `url`, from `source`.
    pub(crate) fn set(&mut self, url: String, source: &'static str) {
        self.url = url;
        self.source = source;
    }

    /// The value of the environment variable `var`, when `lookup` has one.
    pub(crate) fn set_from_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
        var: &'static str,
    ) {
        if let Some(url) = lookup(var) {
            self.set(url, var);
        }
    }

    /// The endpoint `path` below the URL, read with `parse` ([`parse_http_url`], or a
    /// provider's own reading of its setting).
    pub(crate) fn endpoint(
        &self,
        parse: impl FnOnce(&'static str, &str) -> Result<reqwest::Url, ConfigError>,
        path: &str,
    ) -> Result<reqwest::Url, ConfigError> {
        let base = parse(self.source, &self.url)?;
        join_path(self.source, &base, path)
    }
}

/// Parses `url` as an `http`/`https` URL with a host.
pub(crate) fn parse_http_url(
    source_name: &'static str,
    url: &str,
) -> Result<reqwest::Url, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidUrl {
        source_name,
        reason,
    };
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| invalid(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".into()));
    }
    Ok(parsed)
}

/// `base` with `path` appended after exactly one `/`.
pub(crate) fn join_path(
    source_name: &'static str,
    base: &reqwest::Url,
    path: &str,
) -> Result<reqwest::Url, ConfigError> {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    if url.cannot_be_a_base() {
        return Err(ConfigError::InvalidUrl {
            source_name,
            reason: "not a base URL".into(),
        });
    }
    Ok(url)
}

/// An environment lookup: the variable's value, or `None` when unset or blank.
pub(crate) fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy =
            RetryPolicy::default().backoff(Duration::from_millis(100), Duration::from_millis(700));
        for _ in 0..50 {
            let first = policy.backoff_for(0);
            assert!(
                (Duration::from_millis(50)..=Duration::from_millis(100)).contains(&first),
                "{first:?}"
            );
            let third = policy.backoff_for(2);
            assert!(
                (Duration::from_millis(200)..=Duration::from_millis(400)).contains(&third),
                "{third:?}"
            );
            let late = policy.backoff_for(40);
            assert!(
                (Duration::from_millis(350)..=Duration::from_millis(700)).contains(&late),
                "{late:?}"
            );
        }
    }

    #[test]
    fn urls_are_checked_and_joined() {
        let base =
            parse_http_url("t", "https://api.openai.com/v1/").unwrap_or_else(|e| panic!("{e}"));
        let url = join_path("t", &base, "chat/completions").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.as_str(), "https://api.openai.com/v1/chat/completions");
        let base = parse_http_url("t", "http://127.0.0.1:8080").unwrap_or_else(|e| panic!("{e}"));
        let url = join_path("t", &base, "v1/chat/completions").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/v1/chat/completions");
        assert!(parse_http_url("t", "ftp://example.com").is_err());
        assert!(parse_http_url("t", "not a url").is_err());
    }
}
