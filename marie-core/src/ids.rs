//! Identifiers: conversations, users, streams, messages, sessions, approvals and files.
//!
//! Each id is a newtype so that a user id can never be passed where a conversation id is
//! expected. Ids that come from clients are validated by their `parse` constructor; ids the
//! server makes are random (v4) or time-ordered (v7) UUIDs.
//!
//! An id is an `Arc<str>`: every event of an answer carries its conversation and stream ids,
//! and the answer's task, its log and each follower's queue hold copies of them, so a copy
//! must be a reference count, not an allocation.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// The longest id a client may send, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Checks a client-supplied id: 1 to [`MAX_ID_LEN`] characters of `[A-Za-z0-9_.:@-]`.
///
/// A narrow alphabet keeps ids safe to embed in room names, Redis keys and log lines.
fn validate(kind: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::BadRequest(format!("{kind} must not be empty")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Error::BadRequest(format!(
            "{kind} is longer than {MAX_ID_LEN} characters"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'))
    {
        return Err(Error::BadRequest(format!(
            "{kind} may only hold letters, digits and _ - . : @"
        )));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates a client-supplied id.
            pub fn parse(value: impl Into<String>) -> Result<Self, Error> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value.into()))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        /// Reads an id MARIE wrote itself (a store, the stream log, the control bus): not
        /// validated again. Ids from clients go through `parse`.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(|s| Self(s.into()))
            }
        }
    };
}

string_id!(
    /// A conversation: one chat room and its history.
    ConversationId,
    "conversation_id"
);
string_id!(
    /// A user, as named by the [`Authenticator`](crate::Authenticator).
    UserId,
    "user_id"
);
string_id!(
    /// One answer of the model, from `stream_start` to its terminal event.
    StreamId,
    "stream_id"
);
string_id!(
    /// A message in a conversation's history.
    MessageId,
    "message_id"
);
string_id!(
    /// A resume handle for a connection (`docs/protocol.md` section 1). Private to its user.
    SessionId,
    "session"
);

string_id!(
    /// A pending decision on a tool call (`tool_approval_request`, `approve_tool`).
    ApprovalId,
    "approval_id"
);

string_id!(
    /// A file a user uploaded (`POST /api/chat/files`), to attach to their messages.
    FileId,
    "file_id"
);

impl FileId {
    /// A new unguessable file id: knowing it is not enough to read the file, but it is not
    /// worth guessing either.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }
}

impl ApprovalId {
    /// A new unguessable approval id: whoever knows it and has access may decide.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }

    /// The record of client tool call `tool_call_id` of answer `stream`: derived, so that
    /// `submit_tool_result`, which names the call, finds it on any node. The call's id is
    /// hashed (UUID v5: stable across nodes and versions) because a model's ids may hold
    /// any character and be long, and a store reads this id back as a valid one; the
    /// stream is part of it because a model's call ids are unique only within an answer.
    /// Never a random id (those have no `.`).
    pub fn for_client_call(stream: &StreamId, tool_call_id: &str) -> Self {
        let call = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, tool_call_id.as_bytes());
        Self(format!("{stream}.{}", call.simple()).into())
    }
}

impl StreamId {
    /// A new random stream id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }
}

impl MessageId {
    /// A new message id. Ids are UUID v7, so they sort by creation time.
    pub fn new_time_ordered() -> Self {
        Self(uuid::Uuid::now_v7().simple().to_string().into())
    }
}

impl SessionId {
    /// A new unguessable session handle (122 random bits).
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert!(ConversationId::parse("team:general-1").is_ok());
        assert!(ConversationId::parse("").is_err());
        assert!(ConversationId::parse("a b").is_err());
        assert!(ConversationId::parse("x".repeat(MAX_ID_LEN + 1)).is_err());
        assert!(UserId::parse("alice@example.com").is_ok());
    }

    #[test]
    fn a_client_calls_record_id_is_a_valid_id_whatever_the_calls_id() {
        let stream = StreamId::random();
        let long = "functions.get_time:0/é".repeat(20);
        let id = ApprovalId::for_client_call(&stream, &long);
        assert!(ApprovalId::parse(id.as_str()).is_ok(), "{id}");
        assert_eq!(id, ApprovalId::for_client_call(&stream, &long));
        assert_ne!(id, ApprovalId::for_client_call(&stream, "call_1"));
    }

    #[test]
    fn message_ids_sort_by_time() {
        let a = MessageId::new_time_ordered();
        let b = MessageId::new_time_ordered();
        assert!(a < b, "{a} should sort before {b}");
    }
}
