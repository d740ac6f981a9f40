//! [`Authenticator`]: credentials in, [`Identity`] out.

use std::future::Future;

use async_trait::async_trait;

use crate::{AuthError, Credentials, Identity};

/// Turns the credentials of a connecting client into an [`Identity`].
///
/// Called on every CONNECT, reconnects included, so that a revoked or expired token cannot
/// resume a session. Implementations must not log the token.
///
/// A closure works too, through [`authenticator_fn`].
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Validates `credentials`.
    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, AuthError>;
}

/// An [`Authenticator`] made from an async closure, as `tower::service_fn` makes a service.
///
/// ```
/// use marie_core::{authenticator_fn, AuthError, Credentials, Identity, UserId};
///
/// let auth = authenticator_fn(|c: Credentials| async move {
///     match c.token() {
///         "let-me-in" => Ok(Identity::new(UserId::parse("alice").unwrap())),
///         _ => Err(AuthError::InvalidCredentials("unknown token".into())),
///     }
/// });
/// # let _ = auth;
/// ```
pub fn authenticator_fn<F, Fut>(f: F) -> AuthenticatorFn<F>
where
    F: Fn(Credentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    AuthenticatorFn(f)
}

/// The [`Authenticator`] returned by [`authenticator_fn`].
#[derive(Clone, Copy, Debug)]
pub struct AuthenticatorFn<F>(F);

#[async_trait]
impl<F, Fut> Authenticator for AuthenticatorFn<F>
where
    F: Fn(Credentials) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Identity, AuthError>> + Send + 'static,
{
    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, AuthError> {
        (self.0)(credentials.clone()).await
    }
}

#[async_trait]
impl<T: Authenticator + ?Sized> Authenticator for std::sync::Arc<T> {
    async fn authenticate(&self, credentials: &Credentials) -> Result<Identity, AuthError> {
        (**self).authenticate(credentials).await
    }
}
