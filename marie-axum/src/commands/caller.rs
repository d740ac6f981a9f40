//! [`Caller`]: who sends a command, authenticated. Only [`Caller::authenticate`] makes one,
//! and [`dispatch`](super::dispatch) takes nothing else: a front end cannot run a command
//! for credentials nobody checked.

use std::sync::Arc;

use marie_core::{Authenticator, Credentials, Error, Identity, now_millis};

/// An authenticated user, as a front end holds it: a socket for its life, an HTTP request
/// for its own.
#[derive(Clone, Debug)]
pub(crate) struct Caller {
    identity: Arc<Identity>,
}

impl Caller {
    /// Checks `token` with the authenticator: `unauthorized` when it is empty or refused.
    /// The reason is logged, never told: the client sees `unauthorized` only.
    pub(crate) async fn authenticate(
        authenticator: &dyn Authenticator,
        token: &str,
    ) -> Result<Self, Error> {
        if token.is_empty() {
            return Err(Error::Unauthorized("unauthorized"));
        }
        match authenticator
            .authenticate(&Credentials::bearer(token.to_owned()))
            .await
        {
            Ok(identity) => Ok(Self {
                identity: Arc::new(identity),
            }),
            Err(e) => {
                tracing::info!(reason = %e, "credentials refused");
                Err(Error::Unauthorized("unauthorized"))
            }
        }
    }

    /// The identity the authenticator gave.
    pub(crate) fn identity(&self) -> &Arc<Identity> {
        &self.identity
    }

    /// `unauthorized` once the credentials have expired: a socket is disconnected at that
    /// moment, but a command that arrives meanwhile is refused here.
    pub(crate) fn check_expiry(&self) -> Result<(), Error> {
        match self.identity.expires_at {
            Some(at) if at <= now_millis() => Err(Error::Unauthorized("your credentials expired")),
            _ => Ok(()),
        }
    }
}
