//! [`MarieLayer`]: the tower layer that serves MARIE's Socket.IO endpoint.

use socketioxide::adapter::{Adapter, LocalAdapter};
use socketioxide::layer::SocketIoLayer;
use socketioxide::service::SocketIoService;
use tower_layer::Layer;

use crate::guards::origin::{AllowedOrigins, OriginGuard};

/// The tower layer that serves MARIE's Socket.IO endpoint (`/socket.io/`) in front of the
/// app's own routes. Add it to an axum `Router` with `.layer(...)`.
pub struct MarieLayer<A: Adapter = LocalAdapter> {
    inner: SocketIoLayer<A>,
    origins: AllowedOrigins,
}

impl<A: Adapter> MarieLayer<A> {
    pub(crate) fn new(inner: SocketIoLayer<A>, origins: AllowedOrigins) -> Self {
        Self { inner, origins }
    }
}

impl<A: Adapter> Clone for MarieLayer<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            origins: self.origins.clone(),
        }
    }
}

impl<A: Adapter> std::fmt::Debug for MarieLayer<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarieLayer").finish_non_exhaustive()
    }
}

impl<S: Clone, A: Adapter> Layer<S> for MarieLayer<A> {
    type Service = OriginGuard<SocketIoService<S, A>>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginGuard::new(self.inner.layer(inner), self.origins.clone(), "/socket.io")
    }
}
