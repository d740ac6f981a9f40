//! What the HTTP providers share: settings, sending with retries, error mapping, and the
//! stream driver with its timeouts.

mod config;
mod driver;
mod send;

pub use config::{ConfigError, RetryPolicy, Timeouts};

pub(crate) use config::{HttpSettings, env_lookup, join_path, parse_http_url};
pub(crate) use driver::{Piece, drive};
pub(crate) use send::{body_error, error_chain, for_log, send_with_retry};
#[cfg(feature = "openai")]
pub(crate) use send::{error_message, read_error_message};

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
