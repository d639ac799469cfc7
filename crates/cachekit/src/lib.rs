//! # cachekit
//!
//! Redis-backed caching and session management for Rust services. This is the one crate a service
//! depends on; it re-exports the public API of the workspace and builds the configured backend.
//!
//! | feature | backend |
//! |---|---|
//! | `memory` (default) | the embedded in-memory store ([`MemoryStore`]) |
//! | `redis` | one Redis server ([`RedisStore`]) |
//! | `cluster` | Redis Cluster ([`RedisStore`] in cluster mode) |
//! | `mock` | a mockall `MockStore` for failure injection in tests |
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachekit::Error> {
//! use cachekit::{CacheManager, Config, SessionManager};
//!
//! let config = Config::builder().memory().build()?;     // or Config::from_env()?
//! let store = cachekit::connect(&config).await?;        // Arc<dyn Store>
//! let cache = cachekit::cache_manager(store.clone(), &config)?;
//! let sessions = cachekit::session_manager(store, &config)?;
//!
//! cache.user().set("42", &serde_json::json!({"name": "ada"})).await?;
//! let login = sessions.create("42", Default::default()).await?;
//! let session = sessions.get(login.token.expose()).await?.expect("just created");
//! assert_eq!(session.user_id, "42");
//! # Ok(()) }
//! ```
//!
//! Non-async callers use [`blocking`].

use std::sync::Arc;

pub mod blocking;
pub mod fleet;
pub mod health;

/// The foundation: the `Store` trait, errors, key schema, codec, configuration.
pub use cache_core as core;
/// The typed cache manager.
pub use cache_domain as cache;
/// The session manager.
pub use sessions;

pub use cache_core::{
    BackendConfig, Config, Error, ErrorKind, Key, KeySchema, Profile, Result, Store, StoreExt,
};
pub use cache_domain::{CacheManager, Family};
pub use sessions::{Session, SessionManager, SessionToken};

#[cfg(feature = "memory")]
pub use cache_memory::MemoryStore;
#[cfg(any(feature = "redis", feature = "cluster"))]
pub use cache_redis::{RedisConfig, RedisStore};
#[cfg(feature = "mock")]
pub use cache_testing::MockStore;

/// The store type services hold: any backend behind the trait.
pub type DynStore = Arc<dyn Store>;

/// Builds the backend `config` asks for. A backend whose cargo feature is not enabled is a
/// [`Error::Config`] that names the feature to enable.
pub async fn connect(config: &Config) -> Result<DynStore> {
    config.validate()?;
    match &config.backend {
        BackendConfig::Memory => connect_memory(config),
        BackendConfig::Redis { .. } => connect_redis(config).await,
        BackendConfig::Cluster { .. } => connect_cluster(config).await,
        other => Err(Error::config(
            "CACHE_BACKEND",
            format!("backend {other:?} is not supported by this build"),
        )),
    }
}

/// [`connect`] with [`Config::from_env`].
pub async fn connect_from_env() -> Result<DynStore> {
    connect(&Config::from_env()?).await
}

#[cfg(feature = "memory")]
fn connect_memory(config: &Config) -> Result<DynStore> {
    Ok(Arc::new(MemoryStore::from_config(config)?))
}

#[cfg(not(feature = "memory"))]
fn connect_memory(_: &Config) -> Result<DynStore> {
    Err(feature_off("memory", "the in-memory backend"))
}

#[cfg(feature = "redis")]
async fn connect_redis(config: &Config) -> Result<DynStore> {
    Ok(Arc::new(
        RedisStore::connect(&RedisConfig::from_core(config)?).await?,
    ))
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_: &Config) -> Result<DynStore> {
    Err(feature_off("redis", "REDIS_URL (a Redis server)"))
}

#[cfg(feature = "cluster")]
async fn connect_cluster(config: &Config) -> Result<DynStore> {
    Ok(Arc::new(
        RedisStore::connect(&RedisConfig::from_core(config)?).await?,
    ))
}

#[cfg(not(feature = "cluster"))]
async fn connect_cluster(_: &Config) -> Result<DynStore> {
    Err(feature_off(
        "cluster",
        "REDIS_CLUSTER_NODES (a Redis Cluster)",
    ))
}

#[allow(dead_code)] // Unused when every backend feature is on.
fn feature_off(feature: &str, what: &str) -> Error {
    Error::config(
        "CACHE_BACKEND",
        format!(
            "the configuration asks for {what}, but cachekit was built without its feature: \
             enable it with `cachekit = {{ features = [\"{feature}\"] }}`"
        ),
    )
}

/// A [`CacheManager`] over `store` with the TTL overrides of `config`.
pub fn cache_manager<S: Store>(store: S, config: &Config) -> Result<CacheManager<S>> {
    CacheManager::from_config(store, config)
}

/// A [`SessionManager`] over `store` with the settings of `config`.
pub fn session_manager<S: Store>(store: S, config: &Config) -> Result<SessionManager<S>> {
    // `CACHE_TTL_SESSION` is still parsed by cache-core's `Config` (as the `session` family's TTL
    // override); hand it to the sessions crate's own settings.
    let mut settings = sessions::SessionConfig::default();
    if let Some(ttl) = config.ttl_overrides.get(&cache_core::Family::Session) {
        settings = settings.with_idle_timeout(*ttl);
    }
    SessionManager::builder(store)
        .with_config(&settings)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_out_backend_names_its_feature() {
        let e = feature_off("redis", "REDIS_URL (a Redis server)");
        assert_eq!(e.kind(), ErrorKind::Config);
        let msg = e.to_string();
        assert!(msg.contains("CACHE_BACKEND"), "{msg}");
        assert!(msg.contains(r#"features = ["redis"]"#), "{msg}");
    }

    #[cfg(not(feature = "redis"))]
    #[tokio::test]
    async fn redis_config_without_the_feature_is_a_clear_error() {
        let config = Config::builder()
            .redis_url("redis://127.0.0.1:1")
            .build()
            .unwrap();
        let err = connect(&config).await.unwrap_err();
        assert!(err.to_string().contains(r#"features = ["redis"]"#), "{err}");
    }
}
