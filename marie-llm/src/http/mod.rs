//! What the HTTP providers share: settings, sending with retries, error mapping, and the
//! stream driver with its timeouts.

mod config;
mod driver;
mod files;
mod send;
// The chat-shaped history and tools are for the chat dialects; Anthropic has its own.
#[cfg_attr(not(any(feature = "openai", feature = "ollama")), allow(dead_code))]
mod tools;

pub use config::{ConfigError, RetryPolicy, Timeouts};

pub(crate) use config::{HttpSettings, env_lookup, join_path, parse_http_url};
pub(crate) use driver::{Piece, drive};
pub(crate) use files::{FilePart, file_parts};
#[cfg(feature = "openai")]
pub(crate) use send::error_message;
pub(crate) use send::{body_error, error_chain, for_log, send_with_retry};
#[cfg(any(feature = "openai", feature = "anthropic"))]
pub(crate) use send::{is_json, read_error_message};
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
