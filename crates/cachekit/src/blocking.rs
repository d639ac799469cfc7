//! A blocking API over the cache manager and the session manager, for callers without an async
//! runtime (in the manner of `reqwest::blocking`).
//!
//! A [`Client`] owns a small tokio runtime (one worker thread, which also drives the backend's
//! background tasks such as connection health checks) and runs each call to completion on it. Cloning a
//! client, or the [`Cache`] and [`Sessions`] handles it gives out, shares the runtime and the
//! connections.
//!
//! Calling a blocking method from inside an async runtime would deadlock or panic in tokio; this API
//! detects it and returns [`Error::Unsupported`] instead: use the async API there.
//!
//! ```
//! use cachekit::{blocking, Config};
//!
//! let client = blocking::Client::connect(&Config::builder().memory().build()?)?;
//! let cache = client.cache()?;
//! cache.set(cachekit::Family::User, "42", &serde_json::json!({"name": "ada"}))?;
//! let user: Option<serde_json::Value> = cache.get(cachekit::Family::User, "42")?;
//! assert_eq!(user.unwrap()["name"], "ada");
//!
//! let sessions = client.sessions()?;
//! let login = sessions.create("42", Default::default())?;
//! assert!(sessions.get(login.token.expose())?.is_some());
//! # Ok::<(), cachekit::Error>(())
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cache_domain::{CacheStats, LoadError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sessions::{CleanupReport, CreateOptions, NewSession, Session, SessionData, SessionHandle};

use crate::{CacheManager, Config, DynStore, Error, Family, Result, SessionManager};

/// Runs futures to completion on the client's runtime, refusing to run inside another runtime.
#[derive(Debug, Clone)]
struct Runner(Arc<OwnedRuntime>);

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

impl Runner {
    fn new() -> Result<Self> {
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
        Ok(Self(Arc::new(OwnedRuntime(Some(rt)))))
    }

    fn run<F: Future>(&self, fut: F) -> Result<F::Output> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(inside_runtime());
        }
        match &self.0 .0 {
            Some(rt) => Ok(rt.block_on(fut)),
            // Unreachable in practice: the runtime is only taken out in `Drop`.
            None => Err(Error::Unsupported(
                "the blocking client was shut down".into(),
            )),
        }
    }
}

/// The blocking entry point: a backend connection plus a runtime to drive it.
#[derive(Debug, Clone)]
pub struct Client {
    runner: Runner,
    store: DynStore,
    config: Config,
}

impl Client {
    /// Connects to the backend `config` asks for (see [`crate::connect`]).
    pub fn connect(config: &Config) -> Result<Client> {
        let runner = Runner::new()?;
        let store = runner.run(crate::connect(config))??;
        Ok(Client {
            runner,
            store,
            config: config.clone(),
        })
    }

    /// [`Client::connect`] with [`Config::from_env`].
    pub fn from_env() -> Result<Client> {
        Self::connect(&Config::from_env()?)
    }

    /// The underlying store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// A blocking cache manager configured from the client's config.
    pub fn cache(&self) -> Result<Cache> {
        Ok(Cache {
            runner: self.runner.clone(),
            inner: crate::cache_manager(self.store.clone(), &self.config)?,
        })
    }

    /// A blocking session manager configured from the client's config.
    pub fn sessions(&self) -> Result<Sessions> {
        Ok(Sessions {
            runner: self.runner.clone(),
            inner: crate::session_manager(self.store.clone(), &self.config)?,
        })
    }

    /// Pings the backend; the round-trip time.
    pub fn ping(&self) -> Result<Duration> {
        self.runner.run(self.store.ping())?
    }

    /// Closes the backend connection (see [`Store::close`](crate::Store::close)): calls in flight
    /// may finish, later calls through this client and every [`Cache`] / [`Sessions`] handle it
    /// gave out fail with [`ErrorKind::Closed`](crate::ErrorKind::Closed), and the connections and
    /// background tasks end. Idempotent. The runtime itself ends when the last handle is dropped.
    pub fn close(&self) -> Result<()> {
        self.runner.run(self.store.close())?
    }
}

/// The blocking [`CacheManager`]. Same semantics as the async methods of the same names.
#[derive(Debug, Clone)]
pub struct Cache {
    runner: Runner,
    inner: CacheManager<DynStore>,
}

impl Cache {
    /// The async manager behind this handle.
    pub fn as_async(&self) -> &CacheManager<DynStore> {
        &self.inner
    }

    /// See [`CacheManager::get`].
    pub fn get<T: DeserializeOwned + Send>(&self, family: Family, id: &str) -> Result<Option<T>> {
        self.runner.run(self.inner.get(family, id))?
    }

    /// See [`CacheManager::set`].
    pub fn set<T: Serialize + Sync + ?Sized>(
        &self,
        family: Family,
        id: &str,
        value: &T,
    ) -> Result<()> {
        self.runner.run(self.inner.set(family, id, value))?
    }

    /// See [`CacheManager::set_with_ttl`].
    pub fn set_with_ttl<T: Serialize + Sync + ?Sized>(
        &self,
        family: Family,
        id: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        self.runner
            .run(self.inner.set_with_ttl(family, id, value, ttl))?
    }

    /// See [`CacheManager::get_or_load`]; the loader is a plain closure (it runs on the calling
    /// thread's behalf inside the client's runtime, so it may block).
    pub fn get_or_load<T, E, F>(
        &self,
        family: Family,
        id: &str,
        loader: F,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send,
        E: Send + Sync + 'static,
        F: FnOnce() -> std::result::Result<T, E> + Send,
    {
        self.runner
            .run(
                self.inner
                    .get_or_load(family, id, || async move { loader() }),
            )
            .map_err(LoadError::Cache)?
    }

    /// See [`CacheManager::invalidate`].
    pub fn invalidate(&self, family: Family, id: &str) -> Result<bool> {
        self.runner.run(self.inner.invalidate(family, id))?
    }

    /// See [`CacheManager::invalidate_user_data`].
    pub fn invalidate_user_data(&self, user_id: &str) -> Result<u64> {
        self.runner.run(self.inner.invalidate_user_data(user_id))?
    }

    /// See [`CacheManager::invalidate_keyword_data`].
    pub fn invalidate_keyword_data(&self, keyword_id: &str) -> Result<u64> {
        self.runner
            .run(self.inner.invalidate_keyword_data(keyword_id))?
    }

    /// See [`CacheManager::bump_version`].
    pub fn bump_version(&self, family: Family) -> Result<u64> {
        self.runner.run(self.inner.bump_version(family))?
    }

    /// See [`CacheManager::stats`].
    pub fn stats(&self) -> CacheStats {
        self.inner.stats()
    }
}

/// The blocking [`SessionManager`]. Same semantics as the async methods of the same names.
#[derive(Debug, Clone)]
pub struct Sessions {
    runner: Runner,
    inner: SessionManager<DynStore>,
}

impl Sessions {
    /// The async manager behind this handle.
    pub fn as_async(&self) -> &SessionManager<DynStore> {
        &self.inner
    }

    /// See [`SessionManager::create`].
    pub fn create(&self, user_id: &str, opts: CreateOptions) -> Result<NewSession> {
        self.runner.run(self.inner.create(user_id, opts))?
    }

    /// See [`SessionManager::get`].
    pub fn get(&self, token: &str) -> Result<Option<Session>> {
        self.runner.run(self.inner.get(token))?
    }

    /// See [`SessionManager::update`].
    pub fn update(&self, token: &str, patch: &SessionData) -> Result<Option<Session>> {
        self.runner.run(self.inner.update(token, patch))?
    }

    /// See [`SessionManager::replace`].
    pub fn replace(&self, token: &str, data: SessionData) -> Result<Option<Session>> {
        self.runner.run(self.inner.replace(token, data))?
    }

    /// See [`SessionManager::extend`].
    pub fn extend(&self, token: &str, idle_timeout: Duration) -> Result<Option<Session>> {
        self.runner.run(self.inner.extend(token, idle_timeout))?
    }

    /// See [`SessionManager::rotate`].
    pub fn rotate(&self, token: &str) -> Result<Option<NewSession>> {
        self.runner.run(self.inner.rotate(token))?
    }

    /// See [`SessionManager::delete`].
    pub fn delete(&self, token: &str) -> Result<bool> {
        self.runner.run(self.inner.delete(token))?
    }

    /// See [`SessionManager::revoke`].
    pub fn revoke(&self, handle: &SessionHandle) -> Result<bool> {
        self.runner.run(self.inner.revoke(handle))?
    }

    /// See [`SessionManager::revoke_all`].
    pub fn revoke_all(&self, user_id: &str) -> Result<u64> {
        self.runner.run(self.inner.revoke_all(user_id))?
    }

    /// See [`SessionManager::list_user_sessions`].
    pub fn list_user_sessions(&self, user_id: &str) -> Result<Vec<Session>> {
        self.runner.run(self.inner.list_user_sessions(user_id))?
    }

    /// See [`SessionManager::cleanup`].
    pub fn cleanup(&self) -> Result<CleanupReport> {
        self.runner.run(self.inner.cleanup())?
    }
}
