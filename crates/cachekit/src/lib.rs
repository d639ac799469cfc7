//! # cachekit
//!
//! Redis-backed caching and session management for Rust services. This is the one crate a service
//! depends on: its top level has every type a service names, [`Config`] reads the settings of
//! every part from one environment, and [`connect`] builds the configured backend.
//!
//! | feature | backend |
//! |---|---|
//! | `memory` (default) | the embedded in-memory store ([`MemoryStore`]) |
//! | `redis` | one Redis server, or a primary under Redis Sentinel ([`RedisStore`]) |
//! | `cluster` | Redis Cluster ([`RedisStore`] in cluster mode) |
//! | `mock` | a mockall `MockStore` for failure injection in tests |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachekit::Error> {
//! use cachekit::{Config, CreateOptions};
//!
//! let config = Config::memory();                        // or Config::from_env()?
//! let store = cachekit::connect(&config).await?;        // Arc<dyn Store>
//! let cache = cachekit::cache_manager(store.clone(), &config)?;
//! let sessions = cachekit::session_manager(store, &config)?;
//!
//! cache.user().set("42", &serde_json::json!({"name": "ada"})).await?;
//! let login = sessions.create("42", CreateOptions::new()).await?;
//! let session = sessions.get(login.token.expose()).await?.expect("just created");
//! assert_eq!(session.user_id, "42");
//! # Ok(()) }
//! ```
//!
//! Both managers are built the same way, with or without the facade:
//! `CacheManager::builder(store).with_config(&config.cache).build()?` and
//! `SessionManager::builder(store).with_config(&config.sessions).build()?` (what
//! [`cache_manager`] and [`session_manager`] do), or `CacheManager::new(store)` /
//! `SessionManager::new(store)` for the defaults.
//!
//! Below the top level: [`store`] (the `Store` trait's crate: value types, key escaping, the
//! codec, store layers, the compare-and-swap loop), [`cache`] and [`sessions`] (everything of the
//! two managers), [`fleet`] (the optional heartbeat), [`health`], and [`blocking`] for callers
//! without an async runtime.

// Without any backend feature, `Backend` has no variant, so every `Config` is uninhabited and the
// code that uses one is unreachable by construction (the build only checks that a service without
// a backend still compiles; `Config::from_lookup` then names the feature to enable).
#![cfg_attr(
    not(any(feature = "memory", feature = "redis", feature = "cluster")),
    allow(unreachable_code, unused_mut, unused_variables)
)]

use std::sync::Arc;

pub mod blocking;
pub mod config;
pub mod fleet;
pub mod health;

/// The storage layer both managers stand on (crate `cache-core`): the [`Store`] trait and its
/// value types, [`Error`], key escaping (`store::keys`), the value codec (`store::codec`), store
/// layers (`store::layer`), the compare-and-swap loop (`store::cas`), the shared configuration
/// helpers (`store::config`).
pub use cache_core as store;
/// The typed cache manager (crate `cache-domain`), for what the top level does not re-export
/// (the family table, statistics types, ...).
pub use cache_domain as cache;
/// The session manager (crate `sessions`), for what the top level does not re-export (key
/// builders, clocks, events, ...).
pub use sessions;

pub use cache_core::{Bytes, Error, ErrorKind, Key, Profile, Result, Store, StoreExt};
pub use cache_domain::{
    CacheConfig, CacheManager, CacheManagerBuilder, CacheStats, CrawlError, CrawlState,
    CrawlStatus, Family, FamilyCache, FamilyStats, KeyMatch, LeaseConfig, LoadError, NearConfig,
    NearStats, WritePolicy,
};
pub use config::{Backend, Config};
pub use sessions::{
    CreateOptions, NewSession, Session, SessionConfig, SessionData, SessionEvent, SessionHandle,
    SessionManager, SessionManagerBuilder, SessionToken,
};

#[cfg(feature = "memory")]
pub use cache_memory::{MemoryConfig, MemoryStore};
#[cfg(any(feature = "redis", feature = "cluster"))]
pub use cache_redis::{
    PoolConfig, RedisConfig, RedisEndpoint, RedisStore, RetryConfig, SentinelEndpoint,
};
#[cfg(feature = "mock")]
pub use cache_testing::MockStore;

/// The store type services hold: any backend behind the trait.
pub type DynStore = Arc<dyn Store>;

/// Builds the backend `config` asks for, after [`Config::validate`] (a backend whose cargo
/// feature is off is an [`Error::Config`] naming the feature).
pub async fn connect(config: &Config) -> Result<DynStore> {
    config.validate()?;
    match config.backend {
        #[cfg(feature = "memory")]
        Backend::Memory(ref memory) => Ok(Arc::new(MemoryStore::from_config(memory)?)),
        #[cfg(any(feature = "redis", feature = "cluster"))]
        Backend::Redis(ref redis) => Ok(Arc::new(RedisStore::connect(redis).await?)),
    }
}

/// [`connect`] with [`Config::from_env`] (which selects Sentinel when `REDIS_SENTINEL_NODES` is
/// set, like any other endpoint).
pub async fn connect_from_env() -> Result<DynStore> {
    connect(&Config::from_env()?).await
}

/// A [`CacheManager`] over `store` with the cache settings of `config`:
/// `CacheManager::builder(store).with_config(&config.cache).build()`.
pub fn cache_manager<S: Store>(store: S, config: &Config) -> Result<CacheManager<S>> {
    CacheManager::builder(store)
        .with_config(&config.cache)
        .build()
}

/// A [`SessionManager`] over `store` with the session settings of `config`:
/// `SessionManager::builder(store).with_config(&config.sessions).build()`.
pub fn session_manager<S: Store>(store: S, config: &Config) -> Result<SessionManager<S>> {
    SessionManager::builder(store)
        .with_config(&config.sessions)
        .build()
}

/// The code of `README.md`, the user guides, `docs/operations.md` and `docs/scaling.md`, compiled (and run, unless
/// marked `no_run`) as doc tests, so that the documentation cannot drift from the API. Each file
/// needs the backends its examples name; `cargo xtask ci` tests with every feature.
/// (`docs/user-guide-web.md` is a doc test of `cachekit-axum`.)
#[cfg(doctest)]
mod doc_examples {
    #[cfg(feature = "memory")]
    #[doc = include_str!("../../../README.md")]
    struct Readme;

    #[cfg(all(feature = "memory", feature = "redis"))]
    #[doc = include_str!("../../../docs/user-guide-cache.md")]
    struct UserGuideCache;

    #[cfg(feature = "memory")]
    #[doc = include_str!("../../../docs/user-guide-sessions.md")]
    struct UserGuideSessions;

    #[cfg(feature = "redis")]
    #[doc = include_str!("../../../docs/operations.md")]
    struct Operations;

    #[cfg(feature = "redis")]
    #[doc = include_str!("../../../docs/scaling.md")]
    struct Scaling;
}
