//! Who is calling: credentials in, identity out.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::UserId;

/// The role that may join any conversation and send `system_announcement`.
pub const ADMIN_ROLE: &str = "admin";

/// An authenticated user: the output of an [`Authenticator`](crate::Authenticator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user's id.
    pub user_id: UserId,
    /// The user's roles, e.g. `["admin"]`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// When the credentials stop being valid, in milliseconds since the Unix epoch (a JWT's
    /// `exp`). A connection made with them is ended at that moment (see `docs/security.md`);
    /// `None`: they do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl Identity {
    /// An identity with no roles.
    pub fn new(user_id: UserId) -> Self {
        Self {
            user_id,
            roles: Vec::new(),
            expires_at: None,
        }
    }

    /// Sets [`expires_at`](Self::expires_at) (milliseconds since the Unix epoch).
    pub fn with_expiry(mut self, expires_at_millis: u64) -> Self {
        self.expires_at = Some(expires_at_millis);
        self
    }

    /// Adds a role.
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Whether the identity holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the identity holds the [`ADMIN_ROLE`].
    pub fn is_admin(&self) -> bool {
        self.has_role(ADMIN_ROLE)
    }
}

/// What a client presented to connect: the token from the CONNECT packet's `auth`.
///
/// The token is a [`SecretString`]: it is never printed by `Debug` and so never reaches a log.
#[derive(Clone)]
pub struct Credentials {
    token: SecretString,
}

impl Credentials {
    /// Wraps a bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            token: SecretString::from(token.into()),
        }
    }

    /// The token. Handle with care: never log it.
    pub fn token(&self) -> &str {
        self.token.expose_secret()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { token: [REDACTED] }")
    }
}
