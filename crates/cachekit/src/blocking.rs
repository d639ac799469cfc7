//! A blocking entry point for callers without an async runtime (in the manner of
//! `reqwest::blocking`): one [`Client::block_on`] that runs any call of the async API to completion,
//! so the blocking API is the async API, not a second copy of it.
//!
//! A [`Client`] owns a small tokio runtime (one worker thread, which also drives the backend's
//! background tasks such as connection health checks) and the backend connection. It hands out the
//! ordinary [`CacheManager`] and [`SessionManager`]; a blocking caller wraps each call in
//! `client.block_on(...)`. Cloning a client shares the runtime and the connection.
//!
//! `block_on` runs the future on the calling thread, so a cache-aside loader may block (a
//! synchronous database call) without stalling the runtime's worker. Calling `block_on` from inside
//! an async runtime would deadlock or panic in tokio; it returns [`Error::Unsupported`] instead: use
//! the async API there.
//!
//! ```
//! use cachekit::{blocking, Config};
//!
//! let client = blocking::Client::connect(&Config::builder().memory().build()?)?;
//! let cache = client.cache()?;
//! client.block_on(cache.user().set("42", &serde_json::json!({"name": "ada"})))?;
//! let user: Option<serde_json::Value> = client.block_on(cache.user().get("42"))?;
//! assert_eq!(user.unwrap()["name"], "ada");
//!
//! // Cache-aside with a synchronous loader.
//! let trends: Vec<u32> = client.block_on(
//!     cache.keyword_trends().get_or_load("rust", || async { Ok::<_, std::io::Error>(vec![1, 2]) }),
//! )?;
//! assert_eq!(trends, [1, 2]);
//!
//! let sessions = client.sessions()?;
//! let login = client.block_on(sessions.create("42", Default::default()))?;
//! assert!(client.block_on(sessions.get(login.token.expose()))?.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::sync::Arc;

use crate::{CacheManager, Config, DynStore, Error, Result, SessionManager};

/// The runtime, shut down without blocking when the last handle goes: dropping a tokio runtime the
/// ordinary way panics when it happens inside an async context.
#[derive(Debug)]
struct OwnedRuntime(Option<tokio::runtime::Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

fn inside_runtime() -> Error {
    Error::Unsupported(
        "the blocking API was called from inside an async runtime; use the async API there".into(),
    )
}

/// The blocking entry point: a backend connection plus a runtime to drive it.
#[derive(Debug, Clone)]
pub struct Client {
    runtime: Arc<OwnedRuntime>,
    store: DynStore,
    config: Config,
}

impl Client {
    /// Connects to the backend `config` asks for (see [`crate::connect`]).
    pub fn connect(config: &Config) -> Result<Client> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(inside_runtime());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cachekit-blocking")
            .enable_all()
            .build()
            .map_err(|e| Error::Backend {
                message: format!("cannot start the blocking client's runtime: {e}"),
                transient: false,
                source: Some(Box::new(e)),
            })?;
        let store = rt.block_on(crate::connect(config))?;
        Ok(Client {
            runtime: Arc::new(OwnedRuntime(Some(rt))),
            store,
            config: config.clone(),
        })
    }

    /// [`Client::connect`] with [`Config::from_env`].
    pub fn from_env() -> Result<Client> {
        Self::connect(&Config::from_env()?)
    }

    /// Runs a call of the async API to completion and returns its result:
    /// `client.block_on(cache.user().get::<User>("42"))`. The call's error type only needs to
    /// hold a [`cachekit::Error`](Error) (the cache and session errors, `LoadError`, `anyhow`), for
    /// the one failure of its own: being called inside an async runtime
    /// ([`Error::Unsupported`]).
    pub fn block_on<T, E, F>(&self, call: F) -> std::result::Result<T, E>
    where
        F: Future<Output = std::result::Result<T, E>>,
        E: From<Error>,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(inside_runtime().into());
        }
        match &self.runtime.0 {
            Some(rt) => rt.block_on(call),
            // Unreachable in practice: the runtime is only taken out in `Drop`.
            None => Err(Error::Unsupported("the blocking client was shut down".into()).into()),
        }
    }

    /// The underlying store (`client.block_on(client.store().ping())`).
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// A cache manager configured from the client's config; use it through
    /// [`Client::block_on`].
    pub fn cache(&self) -> Result<CacheManager<DynStore>> {
        crate::cache_manager(self.store.clone(), &self.config)
    }

    /// A session manager configured from the client's config; use it through
    /// [`Client::block_on`].
    pub fn sessions(&self) -> Result<SessionManager<DynStore>> {
        crate::session_manager(self.store.clone(), &self.config)
    }
}
