//! What the HTTP providers share: settings (the base URL, timeouts, retries, the client),
//! sending with retries, error mapping, reading an event stream, and the stream driver with
//! its timeouts.

mod config;
mod driver;
mod files;
mod send;
#[cfg(any(feature = "openai", feature = "anthropic"))]
mod sse;
// The chat-shaped history and tools are for the chat dialects; Anthropic has its own.
#[cfg_attr(not(any(feature = "openai", feature = "ollama")), allow(dead_code))]
mod tools;

pub use config::{ConfigError, RetryPolicy, Timeouts};

pub(crate) use config::{BaseUrl, HttpSettings, env_lookup, parse_http_url};
pub(crate) use driver::{Decoded, answer_stream};
pub(crate) use files::{FilePart, file_parts};
#[cfg(feature = "openai")]
pub(crate) use send::error_message;
#[cfg(feature = "ollama")]
pub(crate) use send::{body_error, error_chain};
pub(crate) use send::{for_log, post_json, send_with_retry};
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub(crate) use sse::event_stream;
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub(crate) use tools::CallFragment;
#[cfg(feature = "ollama")]
pub(crate) use tools::new_call_id;
#[cfg(any(feature = "openai", feature = "ollama"))]
pub(crate) use tools::{ChatDialect, chat_messages, tools_json};

/// `value` as JSON with the digits it was written with: `0.2f32` is `0.2`, not the
/// `0.20000000298023224` a widening to `f64` would give.
pub(crate) fn f32_json(value: f32) -> serde_json::Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// `body` without the fields a provider sets itself: what is left of the `extra_body` a
/// builder was given.
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub(crate) fn without_reserved(
    mut body: serde_json::Map<String, serde_json::Value>,
    reserved: &[&str],
) -> serde_json::Map<String, serde_json::Value> {
    for key in reserved {
        body.remove(*key);
    }
    body
}

/// How a provider's `Debug` shows a secret: never its value.
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub(crate) fn redacted<T>(secret: Option<&T>) -> &'static str {
    secret.map(|_| "[redacted]").unwrap_or("none")
}

/// The provider methods the HTTP providers share: `from_env`, `model` and `url`; the
/// provider must hold `inner` with `model: String` and `url: reqwest::Url`, `$builder` its
/// builder, `$url_doc` what `url` returns.
macro_rules! provider_accessors {
    ($builder:ident, $url_doc:literal) => {
        /// A provider configured from the environment, see
        #[doc = concat!("[`", stringify!($builder), "::from_env`].")]
        pub fn from_env() -> Result<Self, ConfigError> {
            $builder::from_env().build()
        }

        /// The model asked for.
        pub fn model(&self) -> &str {
            &self.inner.model
        }

        #[doc = $url_doc]
        pub fn url(&self) -> &str {
            self.inner.url.as_str()
        }
    };
}
pub(crate) use provider_accessors;

/// The builder methods for [`HttpSettings`] that the HTTP providers' builders share; the
/// builder must hold `settings: HttpSettings`.
macro_rules! http_settings_setters {
    () => {
        /// All [`Timeouts`] at once.
        pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
            self.settings.timeouts = timeouts;
            self
        }

        /// Sets [`Timeouts::connect`].
        pub fn connect_timeout(mut self, timeout: Duration) -> Self {
            self.settings.timeouts.connect = timeout;
            self
        }

        /// Sets [`Timeouts::first_token`].
        pub fn first_token_timeout(mut self, timeout: Duration) -> Self {
            self.settings.timeouts.first_token = timeout;
            self
        }

        /// Sets [`Timeouts::idle`].
        pub fn idle_timeout(mut self, timeout: Duration) -> Self {
            self.settings.timeouts.idle = timeout;
            self
        }

        /// The [`RetryPolicy`].
        pub fn retry(mut self, policy: RetryPolicy) -> Self {
            self.settings.retry = policy;
            self
        }

        /// Uses `client` (its TLS, proxy and connect timeout settings) instead of a new one.
        pub fn http_client(mut self, client: reqwest::Client) -> Self {
            self.settings.client = Some(client);
            self
        }
    };
}
pub(crate) use http_settings_setters;
