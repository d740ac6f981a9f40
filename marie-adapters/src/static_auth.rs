//! [`StaticAuthenticator`]: a fixed table of tokens, for development and tests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use marie_core::{AuthError, Authenticator, Credentials, Identity};

/// An [`Authenticator`] that knows a table of opaque tokens.
///
/// For development and tests: tokens are compared as plain strings and live in memory.
/// Cheap to clone; clones share the table, so an app can [`insert`](Self::insert) tokens
/// while serving (the chat example's dev token endpoint does).
#[derive(Clone, Debug, Default)]
pub struct StaticAuthenticator {
    tokens: Arc<RwLock<HashMap<String, Identity>>>,
}

impl StaticAuthenticator {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a token.
    pub fn insert(&self, token: impl Into<String>, identity: Identity) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.into(), identity);
    }

    /// Adds a token, builder style.
    pub fn with_token(self, token: impl Into<String>, identity: Identity) -> Self {
        self.insert(token, identity);
        self
    }

    /// Removes a token; connections already made with it stay connected.
    pub fn revoke(&self, token: &str) -> Option<Identity> {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token)
    }
}

#[async_trait]
impl Authenticator for StaticAuthenticator {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, AuthError> {
        if credentials.token().is_empty() {
            return Err(AuthError::MissingCredentials);
        }
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(credentials.token())
            .cloned()
            .ok_or_else(|| AuthError::InvalidCredentials("unknown token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use marie_core::UserId;

    #[tokio::test]
    async fn known_tokens_only() {
        let alice = Identity::new(UserId::parse("alice").unwrap());
        let auth = StaticAuthenticator::new().with_token("t-1", alice.clone());
        assert_eq!(
            auth.authenticate(&Credentials::bearer("t-1"))
                .await
                .unwrap(),
            alice
        );
        assert!(matches!(
            auth.authenticate(&Credentials::bearer("t-2")).await,
            Err(AuthError::InvalidCredentials(_))
        ));
        assert!(matches!(
            auth.authenticate(&Credentials::bearer("")).await,
            Err(AuthError::MissingCredentials)
        ));
        auth.revoke("t-1");
        assert!(
            auth.authenticate(&Credentials::bearer("t-1"))
                .await
                .is_err()
        );
    }
}
