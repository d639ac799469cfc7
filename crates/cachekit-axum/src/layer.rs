//! [`SessionLayer`]: the tower layer that gives every request its session state, and writes the
//! session's changes and cookie when the response comes back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::Request;
use axum::response::Response;
use cache_core::Store;
use sessions::SessionManager;
use tower::{Layer, Service};

use crate::config::{ConfigError, CookieConfig, TokenSource};
use crate::state::{RequestHandle, RequestState, Shared};

/// A tower [`Layer`] that adds sessions to the routes it wraps (see the crate documentation).
///
/// Cheap to clone. Routes behind it use the extractors [`crate::Session`],
/// [`crate::MaybeSession`] and [`crate::SessionContext`].
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SessionLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayer")
            .field("cookie", &self.shared.cookie)
            .field("source", &self.shared.source)
            .field("max_sessions_per_user", &self.shared.max_sessions_per_user)
            .finish_non_exhaustive()
    }
}

impl SessionLayer {
    /// Sessions in a cookie with the secure defaults of [`CookieConfig`].
    pub fn new<S: Store>(manager: SessionManager<S>) -> Self {
        Self::builder(manager).into_layer()
    }

    /// Sessions from `Authorization: Bearer` headers (API clients); no cookie is ever set.
    pub fn bearer<S: Store>(manager: SessionManager<S>) -> Self {
        Self::builder(manager)
            .token_source(TokenSource::Bearer)
            .into_layer()
    }

    /// A layer with settings of its own.
    pub fn builder<S: Store>(manager: SessionManager<S>) -> SessionLayerBuilder {
        SessionLayerBuilder {
            backend: Arc::new(manager),
            cookie: CookieConfig::default(),
            source: TokenSource::default(),
            max_sessions_per_user: None,
        }
    }
}

/// Settings of a [`SessionLayer`]; start with [`SessionLayer::builder`].
#[must_use = "call .build() to get the layer"]
pub struct SessionLayerBuilder {
    backend: Arc<dyn crate::backend::Backend>,
    cookie: CookieConfig,
    source: TokenSource,
    max_sessions_per_user: Option<usize>,
}

impl std::fmt::Debug for SessionLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionLayerBuilder")
            .field("cookie", &self.cookie)
            .field("source", &self.source)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish_non_exhaustive()
    }
}

impl SessionLayerBuilder {
    /// The cookie's name and attributes (default: [`CookieConfig::default`]).
    pub fn cookie(mut self, cookie: CookieConfig) -> Self {
        self.cookie = cookie;
        self
    }

    /// Where tokens come from (default: [`TokenSource::Cookie`]).
    pub fn token_source(mut self, source: TokenSource) -> Self {
        self.source = source;
        self
    }

    /// Refuse a login when the user already has `max` live sessions:
    /// [`crate::SessionError::TooManySessions`] (`409 Conflict`), and nothing changes. (The session
    /// manager's own `with_max_sessions_per_user` instead lets the login in and revokes the oldest
    /// sessions; use one or the other.)
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = Some(max);
        self
    }

    /// Checks the settings (see [`ConfigError`]) and builds the layer.
    pub fn build(self) -> Result<SessionLayer, ConfigError> {
        self.cookie.validate()?;
        if self.max_sessions_per_user == Some(0) {
            return Err(ConfigError::SessionLimit);
        }
        Ok(self.into_layer())
    }

    /// Builds without validation: only for settings known to be valid (the defaults).
    fn into_layer(self) -> SessionLayer {
        SessionLayer {
            shared: Arc::new(Shared {
                cookie_name: self.cookie.cookie_name(),
                backend: self.backend,
                cookie: self.cookie,
                source: self.source,
                max_sessions_per_user: self.max_sessions_per_user,
            }),
        }
    }
}

impl<I> Layer<I> for SessionLayer {
    type Service = SessionService<I>;

    fn layer(&self, inner: I) -> Self::Service {
        SessionService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`SessionLayer`] wraps around the inner service.
#[derive(Clone)]
pub struct SessionService<I> {
    inner: I,
    shared: Arc<Shared>,
}

impl<I: std::fmt::Debug> std::fmt::Debug for SessionService<I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<I, B> Service<Request<B>> for SessionService<I>
where
    I: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    I::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = I::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, I::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let state = Arc::new(RequestState::new(Arc::clone(&self.shared), req.headers()));
        req.extensions_mut()
            .insert(RequestHandle(Arc::clone(&state)));
        // The service that was polled ready is the one to call; leave a fresh clone behind
        // (tower's documented pattern for cloning inner services).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let res = inner.call(req).await?;
            Ok(state.finish(res).await)
        })
    }
}
