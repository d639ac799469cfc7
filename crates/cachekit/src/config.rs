//! [`Config`]: the settings of every part, read from one environment.
//!
//! Each part keeps its own settings next to it: the backend's (`MemoryConfig` or `RedisConfig`,
//! at the crate's top level with their features), the cache manager's ([`CacheConfig`]) and the
//! session manager's ([`SessionConfig`]). A `Config` is those, composed: [`Config::from_env`] reads
//! them all from the process environment, `CACHE_PROFILE` picking the defaults of every part at
//! once, and every error names the variable to fix. `docs/operations.md` lists every variable.
//!
//! In code, start from a backend and change what differs:
//!
//! ```
//! use std::time::Duration;
//! use cachekit::{CacheConfig, Config, Family};
//!
//! let config = Config::memory() // the development profile's in-memory store
//!     .with_key_prefix("shop")
//!     .with_cache(CacheConfig::default().with_ttl(Family::User, Duration::from_secs(600)));
//! config.validate()?;
//! assert_eq!(config.key_prefix(), "shop");
//! # Ok::<(), cachekit::Error>(())
//! ```
//!
//! With the `redis` feature, `Config::redis(RedisConfig::new(Profile::Production, endpoint))`
//! (with any `RedisConfig::with_*`) selects a Redis server or cluster.
//!
//! `Debug` output never shows a password (the Redis URLs are redacted).

use cache_core::config::Lookup;
use cache_core::{Error, Profile, Result};
use cache_domain::CacheConfig;
use sessions::SessionConfig;

#[cfg(feature = "memory")]
use cache_memory::MemoryConfig;
#[cfg(any(feature = "redis", feature = "cluster"))]
use cache_redis::RedisConfig;

/// The variable that picks the backend: `memory`, `redis` or `cluster`.
pub const BACKEND_ENV: &str = "CACHE_BACKEND";

/// The variables that select a Redis backend when [`BACKEND_ENV`] is unset (one server, Sentinel,
/// a cluster): with none of them set, the backend is the in-memory store.
pub const REDIS_ENDPOINT_ENV: [&str; 3] =
    ["REDIS_URL", "REDIS_SENTINEL_NODES", "REDIS_CLUSTER_NODES"];

/// Which store [`crate::connect`] builds, with that backend's own settings. A backend exists only
/// when its cargo feature is enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
// A configuration is built once at startup and moved a few times: the size difference costs
// nothing, and boxing `RedisConfig` would only make building and matching clumsier.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    /// The embedded in-memory store (feature `memory`).
    #[cfg(feature = "memory")]
    Memory(MemoryConfig),
    /// Redis: one server or a primary under Sentinel (feature `redis`), or a cluster (feature
    /// `cluster`).
    #[cfg(any(feature = "redis", feature = "cluster"))]
    Redis(RedisConfig),
}

impl Backend {
    /// `memory`, `redis` or `cluster`: the value of `CACHE_BACKEND` that selects it.
    pub fn name(&self) -> &'static str {
        match *self {
            #[cfg(feature = "memory")]
            Backend::Memory(_) => "memory",
            #[cfg(any(feature = "redis", feature = "cluster"))]
            Backend::Redis(ref r) if r.endpoint.is_cluster() => "cluster",
            #[cfg(any(feature = "redis", feature = "cluster"))]
            Backend::Redis(_) => "redis",
        }
    }

    /// The profile the backend's defaults came from.
    pub fn profile(&self) -> Profile {
        match *self {
            #[cfg(feature = "memory")]
            Backend::Memory(ref m) => m.profile,
            #[cfg(any(feature = "redis", feature = "cluster"))]
            Backend::Redis(ref r) => r.profile,
        }
    }

    /// The global key prefix: the store adds it to every key.
    pub fn key_prefix(&self) -> &str {
        match *self {
            #[cfg(feature = "memory")]
            Backend::Memory(ref m) => &m.key_prefix,
            #[cfg(any(feature = "redis", feature = "cluster"))]
            Backend::Redis(ref r) => &r.key_prefix,
        }
    }

    /// The Redis settings, when this is Redis.
    #[cfg(any(feature = "redis", feature = "cluster"))]
    pub fn redis(&self) -> Option<&RedisConfig> {
        match self {
            Backend::Redis(r) => Some(r),
            #[allow(unreachable_patterns)] // Only reachable with the `memory` feature.
            _ => None,
        }
    }

    /// Checks the backend's settings (and that this build has its feature); the error names the
    /// setting.
    pub fn validate(&self) -> Result<()> {
        match *self {
            #[cfg(feature = "memory")]
            Backend::Memory(ref m) => m.validate(),
            #[cfg(any(feature = "redis", feature = "cluster"))]
            Backend::Redis(ref r) => {
                #[cfg(not(feature = "cluster"))]
                if r.endpoint.is_cluster() {
                    return Err(feature_off(
                        "cluster",
                        "REDIS_CLUSTER_NODES (a Redis Cluster)",
                    ));
                }
                #[cfg(not(feature = "redis"))]
                if r.endpoint.is_sentinel() {
                    return Err(feature_off(
                        "redis",
                        "REDIS_SENTINEL_NODES (Redis Sentinel)",
                    ));
                }
                #[cfg(not(feature = "redis"))]
                if !r.endpoint.is_cluster() {
                    return Err(feature_off("redis", "REDIS_URL (a Redis server)"));
                }
                r.validate()
            }
        }
    }
}

#[cfg(feature = "memory")]
impl From<MemoryConfig> for Backend {
    fn from(memory: MemoryConfig) -> Self {
        Backend::Memory(memory)
    }
}

#[cfg(any(feature = "redis", feature = "cluster"))]
impl From<RedisConfig> for Backend {
    fn from(redis: RedisConfig) -> Self {
        Backend::Redis(redis)
    }
}

/// Every setting: the backend's, the cache manager's and the session manager's. Read it with
/// [`Config::from_env`] / [`Config::from_lookup`], or start from [`Config::memory`],
/// [`Config::redis`] or [`Config::new`] and change it with the `with_*` methods (or the public
/// fields). See the [module documentation](self).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// The store and its settings (`CACHE_BACKEND`, `REDIS_*`, `CACHE_KEY_PREFIX`,
    /// `CACHE_MAX_VALUE_BYTES`).
    pub backend: Backend,
    /// The cache manager's settings (`CACHE_TTL_<FAMILY>`, `CACHE_CALL_TIMEOUT`,
    /// `CACHE_NEAR_FAMILIES`; `REDIS_SCAN_COUNT` for its invalidation scans).
    pub cache: CacheConfig,
    /// The session manager's settings (`CACHE_TTL_SESSION`, `SESSION_CALL_TIMEOUT`,
    /// `CACHE_NEAR_SESSIONS`).
    pub sessions: SessionConfig,
}

impl Config {
    /// `backend`, with the default cache and session settings.
    pub fn new(backend: impl Into<Backend>) -> Config {
        Config {
            backend: backend.into(),
            cache: CacheConfig::default(),
            sessions: SessionConfig::default(),
        }
    }

    /// The in-memory store with the development profile's defaults (the `dev` key prefix); for
    /// another profile, `Config::new(MemoryConfig::new(profile))`.
    #[cfg(feature = "memory")]
    pub fn memory() -> Config {
        Config::new(MemoryConfig::new(Profile::Development))
    }

    /// Redis with these settings (one server or a cluster, as `redis.endpoint` says).
    #[cfg(any(feature = "redis", feature = "cluster"))]
    pub fn redis(redis: RedisConfig) -> Config {
        Config::new(redis)
    }

    /// Reads the process environment: see [`Config::from_lookup`].
    pub fn from_env() -> Result<Config> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every part's settings through `lookup` (a variable name to its value; blank values
    /// count as unset), and validates them; the error names the variable to fix.
    ///
    /// - `CACHE_PROFILE` picks the defaults of every part (`development` when unset).
    /// - The backend: `CACHE_BACKEND` (`memory`, `redis` or `cluster`) when set; otherwise Redis
    ///   when one of [`REDIS_ENDPOINT_ENV`] is set, else the in-memory store. A backend whose
    ///   cargo feature is off is an [`Error::Config`] naming the feature to enable.
    /// - Then each part reads its own variables: `cache_memory::MemoryConfig::from_lookup` or
    ///   `cache_redis::RedisConfig::from_lookup`, [`CacheConfig::from_lookup`] (and
    ///   `REDIS_SCAN_COUNT` for its scans), [`SessionConfig::from_lookup`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let env = Lookup::new(&lookup);
        let profile = Profile::from_lookup(env)?;
        let backend = backend_from(profile, env, &lookup)?;
        let mut cache = CacheConfig::from_lookup(&lookup)?;
        if let Some(count) = env.number::<u32>("REDIS_SCAN_COUNT")? {
            if count == 0 {
                return Err(Error::config("REDIS_SCAN_COUNT", "must be at least 1"));
            }
            cache = cache.with_scan_count(count);
        }
        let config = Config {
            backend,
            cache,
            sessions: SessionConfig::from_lookup(&lookup)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// The profile the backend's defaults came from.
    pub fn profile(&self) -> Profile {
        self.backend.profile()
    }

    /// The global key prefix (the backend's).
    pub fn key_prefix(&self) -> &str {
        self.backend.key_prefix()
    }

    /// Sets the global key prefix (on the backend, which adds it to every key).
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Config {
        let prefix = prefix.into();
        match self.backend {
            #[cfg(feature = "memory")]
            Backend::Memory(ref mut m) => m.key_prefix = prefix,
            #[cfg(any(feature = "redis", feature = "cluster"))]
            Backend::Redis(ref mut r) => r.key_prefix = prefix,
        }
        self
    }

    /// Replaces the backend.
    pub fn with_backend(mut self, backend: impl Into<Backend>) -> Config {
        self.backend = backend.into();
        self
    }

    /// Replaces the cache manager's settings.
    pub fn with_cache(mut self, cache: CacheConfig) -> Config {
        self.cache = cache;
        self
    }

    /// Replaces the session manager's settings.
    pub fn with_sessions(mut self, sessions: SessionConfig) -> Config {
        self.sessions = sessions;
        self
    }

    /// Checks every part; the error names the first bad setting. Near caches
    /// (`CACHE_NEAR_FAMILIES`, `CACHE_NEAR_SESSIONS`) need one Redis server: with Redis Cluster or
    /// Redis Sentinel they are refused here (their invalidation is implemented for one server, and
    /// its tracking connection does not follow a failover).
    pub fn validate(&self) -> Result<()> {
        self.backend.validate()?;
        self.cache.validate()?;
        self.check_near_caches()
    }

    /// Refuses near caches on a Redis topology whose changes the store cannot report.
    fn check_near_caches(&self) -> Result<()> {
        #[cfg(any(feature = "redis", feature = "cluster"))]
        if let Some(redis) = self.backend.redis() {
            let topology = if redis.endpoint.is_cluster() {
                "Redis Cluster (per-node tracking is not implemented)"
            } else if redis.endpoint.is_sentinel() {
                "Redis Sentinel (the tracking connection does not follow failovers)"
            } else {
                return Ok(());
            };
            let refuse = |setting: &str| {
                Error::config(
                    setting,
                    format!(
                        "a near cache needs server-assisted invalidation, which is implemented for \
                         one Redis server (REDIS_URL), not for {topology}: turn it off"
                    ),
                )
            };
            if self.cache.near_families().next().is_some() {
                return Err(refuse("CACHE_NEAR_FAMILIES"));
            }
            if self.sessions.near_cache.is_some() {
                return Err(refuse("CACHE_NEAR_SESSIONS"));
            }
        }
        Ok(())
    }
}

/// The backend the environment selects (see [`Config::from_lookup`]).
fn backend_from(
    profile: Profile,
    env: Lookup<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Backend> {
    let redis = match env.get(BACKEND_ENV).as_deref().map(str::trim) {
        None => REDIS_ENDPOINT_ENV
            .iter()
            .any(|name| env.get(name).is_some()),
        Some("memory") => false,
        Some("redis" | "cluster") => true,
        Some(other) => {
            return Err(Error::config(
                BACKEND_ENV,
                format!("{other:?} is not a backend; use memory, redis or cluster"),
            ))
        }
    };
    if redis {
        redis_backend(profile, env, lookup)
    } else {
        memory_backend(profile, lookup)
    }
}

#[cfg(feature = "memory")]
fn memory_backend(profile: Profile, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Backend> {
    Ok(Backend::Memory(MemoryConfig::from_lookup(profile, lookup)?))
}

#[cfg(not(feature = "memory"))]
fn memory_backend(_: Profile, _: &dyn Fn(&str) -> Option<String>) -> Result<Backend> {
    Err(feature_off(
        "memory",
        "the in-memory backend (CACHE_BACKEND=memory, or no REDIS_URL / REDIS_CLUSTER_NODES)",
    ))
}

#[cfg(any(feature = "redis", feature = "cluster"))]
fn redis_backend(
    profile: Profile,
    _: Lookup<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Backend> {
    let redis = RedisConfig::from_lookup(profile, lookup)?;
    // Checked by `Backend::validate` as well; here it reports the feature before anything else.
    let backend = Backend::Redis(redis);
    backend.validate()?;
    Ok(backend)
}

#[cfg(not(any(feature = "redis", feature = "cluster")))]
fn redis_backend(
    _: Profile,
    env: Lookup<'_>,
    _: &dyn Fn(&str) -> Option<String>,
) -> Result<Backend> {
    let cluster = match env.get(BACKEND_ENV).as_deref().map(str::trim) {
        Some(backend) => backend == "cluster",
        None => env.get("REDIS_CLUSTER_NODES").is_some(),
    };
    Err(if cluster {
        feature_off("cluster", "REDIS_CLUSTER_NODES (a Redis Cluster)")
    } else {
        feature_off(
            "redis",
            "REDIS_URL or REDIS_SENTINEL_NODES (a Redis server)",
        )
    })
}

/// The error of a backend whose cargo feature is off: names `CACHE_BACKEND` and the feature.
#[allow(dead_code)] // Unused when every backend feature is on.
pub(crate) fn feature_off(feature: &str, what: &str) -> Error {
    Error::config(
        BACKEND_ENV,
        format!(
            "the configuration asks for {what}, but cachekit was built without its feature: \
             enable it with `cachekit = {{ features = [\"{feature}\"] }}`"
        ),
    )
}

#[cfg(test)]
mod tests;
