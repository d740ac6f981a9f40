//! Errors, one small enum per area, and the stable codes clients see (`docs/protocol.md` section 4).
//!
//! Every error that can reach a client has a [`code`](Error::code) that never changes and a
//! [`client_message`](Error::client_message) that is safe to show: no upstream bodies, no
//! stack traces, no secrets. The `Display`/`source` chain holds the details for logs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The stable error codes of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Credentials missing or invalid (connect refused).
    Unauthorized,
    /// The payload does not fit the event.
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// An answer is already running in the conversation.
    Busy,
    /// The thing was already decided (`approve_tool` after the first decision).
    Conflict,
    /// Too many requests.
    RateLimited,
    /// The payload or message is too large.
    PayloadTooLarge,
    /// The model could not be reached or failed.
    ProviderUnavailable,
    /// A server-side fault.
    Internal,
    /// `resume_stream`: the stream's log no longer holds the chunks after the position asked
    /// for (the retention window passed, or the log was lost); read the history instead.
    ResumeUnavailable,
    /// The user has used their token budget for the current period.
    BudgetExceeded,
    /// An uploaded file's bytes are of a type MARIE does not take, or not the type declared.
    UnsupportedFileType,
    /// The user's files would take more than their quota.
    QuotaExceeded,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::BadRequest => "bad_request",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Busy => "busy",
            Self::Conflict => "conflict",
            Self::RateLimited => "rate_limited",
            Self::PayloadTooLarge => "payload_too_large",
            Self::ProviderUnavailable => "provider_unavailable",
            Self::Internal => "internal",
            Self::ResumeUnavailable => "resume_unavailable",
            Self::BudgetExceeded => "budget_exceeded",
            Self::UnsupportedFileType => "unsupported_file_type",
            Self::QuotaExceeded => "quota_exceeded",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An outcome of a client command that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's credentials are missing, invalid, expired or revoked; the text says which.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The payload does not fit the event; the text says what is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The thing named does not exist.
    #[error("{0}")]
    NotFound(&'static str),
    /// An answer is already running in the conversation.
    #[error("an answer is already running in this conversation")]
    Busy,
    /// The thing was already decided; the text says what.
    #[error("{0}")]
    Conflict(&'static str),
    /// Too many requests.
    #[error("too many requests, slow down")]
    RateLimited,
    /// The payload or message is too large; the text says which limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The model could not be reached or failed.
    #[error("the language model is unavailable")]
    Provider(#[from] ProviderError),
    /// A store failed. (A store's [`StoreError::NotFound`] and [`StoreError::Conflict`]
    /// become [`Error::NotFound`] and [`Error::Conflict`].)
    #[error("storage is unavailable")]
    Store(#[source] StoreError),
    /// The server is shutting down and takes no new answers.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A server-side fault; the text is safe to show, details are in the logs.
    #[error("{0}")]
    Internal(&'static str),
    /// A stream cannot be resumed from the position asked for; the text says why.
    #[error("{0}")]
    ResumeUnavailable(&'static str),
    /// The user has used their token budget for the period: `used` of `limit`, until
    /// `resets_at` (milliseconds since the Unix epoch).
    #[error(
        "you have used your token budget ({used} of {limit} tokens); it resets at {}",
        utc_minute(*resets_at)
    )]
    BudgetExceeded {
        /// Tokens used in the period.
        used: u64,
        /// The budget.
        limit: u64,
        /// When the period ends.
        resets_at: u64,
    },
    /// An uploaded file's type is not taken; the text says why.
    #[error("{0}")]
    UnsupportedFileType(String),
    /// The user's files would take more than their quota: `used` of `quota` bytes.
    #[error("your files would exceed your quota ({used} of {quota} bytes used)")]
    QuotaExceeded {
        /// Bytes the user's files take now.
        used: u64,
        /// The quota.
        quota: u64,
    },
}

impl Error {
    /// The stable code for clients.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Busy => ErrorCode::Busy,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::Provider(_) => ErrorCode::ProviderUnavailable,
            Self::Store(_) | Self::ShuttingDown | Self::Internal(_) => ErrorCode::Internal,
            Self::ResumeUnavailable(_) => ErrorCode::ResumeUnavailable,
            Self::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
            Self::UnsupportedFileType(_) => ErrorCode::UnsupportedFileType,
            Self::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
        }
    }

    /// A message safe to show to a user. `Display` of [`Error`] is written to be safe; the
    /// details live in the `source()` chain, for logs only.
    pub fn client_message(&self) -> String {
        self.to_string()
    }
}

/// A failure of an [`Authenticator`](crate::Authenticator). Clients only ever see
/// `unauthorized`; the variant is for logs and metrics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented.
    #[error("no credentials presented")]
    MissingCredentials,
    /// The token is unknown, malformed, badly signed or expired.
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The authenticator could not decide (a backend is down).
    #[error("authenticator unavailable: {0}")]
    Unavailable(String),
}

/// A failure of a store (one of the traits of [`RoomStore`](crate::RoomStore), a
/// [`StreamLog`](crate::StreamLog), a [`FileStore`](crate::FileStore), a
/// [`ControlBus`](crate::ControlBus)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend could not be reached or timed out.
    #[error("store backend unavailable: {0}")]
    Unavailable(String),
    /// The backend held data MARIE cannot read.
    #[error("corrupt store data: {0}")]
    Corrupt(String),
    /// The record a change needs does not exist; the text says which, safe to show (`no
    /// such conversation`). Clients get `not_found`.
    #[error("{0}")]
    NotFound(&'static str),
    /// The change conflicts with the record as it is now (another change came first); the
    /// text says what, safe to show. Clients get `conflict`.
    #[error("{0}")]
    Conflict(&'static str),
}

impl StoreError {
    /// `no such conversation`: what a store says of a change to a conversation it does not
    /// hold.
    pub fn no_such_conversation() -> Self {
        Self::NotFound("no such conversation")
    }

    /// Whether this is a failure of the backend (unreachable, corrupt) rather than an answer
    /// about the data (not found, conflict): what a store counts and logs as an error.
    pub fn is_fault(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Corrupt(_))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::NotFound(what),
            StoreError::Conflict(what) => Error::Conflict(what),
            e => Error::Store(e),
        }
    }
}

/// A failure of an [`LlmProvider`](crate::LlmProvider).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// The provider could not be reached (connect error, DNS, refused).
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    /// The provider rejected the credentials (401/403). Never retried.
    #[error("provider rejected the credentials (HTTP {status})")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
    },
    /// The provider asked to slow down (429).
    #[error("provider rate limit")]
    RateLimited {
        /// How long the provider asked to wait.
        retry_after: Option<Duration>,
    },
    /// The provider answered with an HTTP error status.
    #[error("provider answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// A timeout passed: connect, first token, or idle between chunks.
    #[error("provider timed out ({0})")]
    Timeout(&'static str),
    /// The provider sent something that does not fit its protocol, or ended a stream without
    /// saying it was done.
    #[error("provider protocol error: {0}")]
    Protocol(String),
    /// The provider reported an error inside the stream.
    #[error("provider reported an error: {0}")]
    Upstream(String),
    /// The connection broke after the provider had started answering (reset, or closed in
    /// the middle of the response body).
    #[error("provider connection lost: {0}")]
    Disconnected(String),
}

impl ProviderError {
    /// Whether trying again later may succeed (`stream_error.retryable`).
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unauthorized { .. } | Self::Protocol(_) => false,
            Self::Status { status } => *status >= 500,
            Self::Unreachable(_)
            | Self::RateLimited { .. }
            | Self::Timeout(_)
            | Self::Upstream(_)
            | Self::Disconnected(_) => true,
        }
    }

    /// Whether a model step that failed this way after its stream had begun is worth asking
    /// again at once (`EngineConfig::mid_stream_retries`): a dropped connection, a stream cut
    /// before its end, a malformed event, an error event of an overloaded model, a stall.
    /// Never credentials, nor a refusal the provider would repeat (4xx).
    pub fn retryable_mid_stream(&self) -> bool {
        match self {
            Self::Unauthorized { .. } => false,
            Self::Status { status } => *status >= 500,
            Self::Protocol(_)
            | Self::Disconnected(_)
            | Self::Upstream(_)
            | Self::Timeout(_)
            | Self::Unreachable(_)
            | Self::RateLimited { .. } => true,
        }
    }

    /// A short label for metrics (`marie_provider_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Unauthorized { .. } => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Status { .. } => "status",
            Self::Timeout(_) => "timeout",
            Self::Protocol(_) => "protocol",
            Self::Upstream(_) => "upstream",
            Self::Disconnected(_) => "disconnected",
        }
    }
}

/// A failure of a [`StreamSink`](crate::StreamSink).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The event could not be delivered to the transport.
    #[error("sink could not deliver: {0}")]
    Delivery(String),
}

/// `at` (ms since the Unix epoch) as people read it in a message: `2026-12-08 00:00 UTC`.
fn utc_minute(at: u64) -> String {
    let seconds = i64::try_from(at / 1_000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(seconds) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        // Beyond year 9999: no budget period ends there, but say something true.
        Err(_) => format!("{at} ms after the Unix epoch"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_refusal_says_when_in_words() {
        let err = Error::BudgetExceeded {
            used: 120,
            limit: 100,
            resets_at: 1_796_688_000_000,
        };
        assert_eq!(
            err.to_string(),
            "you have used your token budget (120 of 100 tokens); it resets at 2026-12-08 00:00 UTC"
        );
    }

    #[test]
    fn codes_are_stable_strings() {
        assert_eq!(Error::Busy.code().as_str(), "busy");
        assert_eq!(
            Error::from(ProviderError::Timeout("first token")).code(),
            ErrorCode::ProviderUnavailable
        );
        assert_eq!(
            serde_json::to_value(ErrorCode::PayloadTooLarge).ok(),
            Some(serde_json::json!("payload_too_large"))
        );
    }

    #[test]
    fn a_store_that_finds_nothing_is_not_found_for_the_client() {
        let err = Error::from(StoreError::no_such_conversation());
        assert_eq!(err.code(), ErrorCode::NotFound);
        assert_eq!(err.client_message(), "no such conversation");
        assert_eq!(
            Error::from(StoreError::Conflict("already decided")).code(),
            ErrorCode::Conflict
        );
        assert_eq!(
            Error::from(StoreError::Unavailable("down".into())).code(),
            ErrorCode::Internal
        );
        assert!(!StoreError::no_such_conversation().is_fault());
    }

    #[test]
    fn client_messages_hide_details() {
        let err = Error::from(StoreError::Unavailable("redis://secret@host".into()));
        assert!(!err.client_message().contains("secret"));
        let err = Error::from(ProviderError::Upstream("sk-live-123 leaked".into()));
        assert!(!err.client_message().contains("sk-live"));
    }
}
