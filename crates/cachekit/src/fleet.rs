//! The fleet heartbeat: each instance of the library can publish a small report of its health into
//! the store, so that an operator (`cachectl top`) sees every live instance and the totals.
//!
//! # What is published
//!
//! One key per instance, `fleet:{instance id}` under the store prefix (the id escaped like every id
//! part), written every `interval` with a TTL of `ttl` (3 intervals by default): an instance that
//! dies disappears by itself when its key expires. The value ([`InstanceReport`], JSON in the codec
//! envelope, well under 2 KiB) carries the instance id, host, pid and cachekit version; per-family
//! cache hit ratios (from [`CacheManager::stats`](crate::CacheManager::stats)); store-call p50/p99
//! over the last interval and error and timeout counts (from [`InstrumentedStore`]); the pool state
//! of the Redis store; and a near-cache hit ratio, `null` until the near cache exists.
//!
//! # Turning it on
//!
//! Off by default. `CACHE_FLEET_HEARTBEAT=5s` (any duration, see
//! [`cache_core::config::parse_duration`]) turns it on with that interval; unset, empty, `off`,
//! `false` or `0` leave it off.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), cachekit::Error> {
//! use std::time::Duration;
//! use cachekit::fleet::{Fleet, FleetConfig};
//!
//! let config = cachekit::Config::builder().memory().build()?;
//! // Fleet::connect(&config) reads CACHE_FLEET_HEARTBEAT; here the interval is given explicitly.
//! let fleet = Fleet::connect_with(&config, Some(FleetConfig::new(Duration::from_secs(5)))).await?;
//! let store = fleet.store(); // instrumented when the heartbeat is on: give it to the managers
//! let cache = cachekit::cache_manager(store.clone(), &config)?;
//! let heartbeat = fleet.start_with_cache(&cache).await?; // None when the heartbeat is off
//!
//! let view = cachekit::fleet::read_fleet(store.as_ref(), 100).await?;
//! assert_eq!(view.instances.len(), 1);
//! if let Some(h) = heartbeat {
//!     h.shutdown().await?; // stop and delete the key (dropping it leaves the key to expire)
//! }
//! # Ok(()) }
//! ```
//!
//! The heartbeat runs as a tokio task; its write goes to the store without the instrumentation, so
//! it is not counted as an application call. See `docs/operations.md` ("Fleet heartbeat").

mod histogram;
mod instrument;
mod publish;
mod read;
mod report;

use std::sync::Arc;
use std::time::Duration;

use cache_core::config::parse_duration;
use cache_core::keys::escape_id;
use cache_core::{BackendConfig, Config, Error, Result, Store};
use cache_domain::CacheManager;

pub use histogram::{quantile_of_buckets, LatencyHistogram, LatencySnapshot};
pub use instrument::{CallStats, CallStatsSnapshot, InstrumentedStore};
pub use publish::Heartbeat;
pub use read::{read_fleet, FleetTotals, FleetView};
pub use report::{FamilyReport, InstanceReport, PoolReport, StoreCallReport};

use crate::DynStore;

/// The environment variable that turns the heartbeat on, with its interval.
pub const HEARTBEAT_ENV: &str = "CACHE_FLEET_HEARTBEAT";

/// The key prefix of heartbeats, relative to the store prefix.
pub const FLEET_KEY_PREFIX: &str = "fleet:";

/// The scan pattern of heartbeats, relative to the store prefix.
pub const FLEET_PATTERN: &str = "fleet:*";

/// The key of an instance's heartbeat, relative to the store prefix: `fleet:{escaped id}`.
pub fn instance_key(instance_id: &str) -> Result<String> {
    Ok(format!("{FLEET_KEY_PREFIX}{}", escape_id(instance_id)?))
}

/// How often to publish, for how long a heartbeat lives, and under which id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FleetConfig {
    /// Time between two heartbeats.
    pub interval: Duration,
    /// The heartbeat key's time to live; must be longer than `interval` (3 intervals by default).
    pub ttl: Duration,
    /// This instance's id: `{host}-{pid}` by default.
    pub instance_id: String,
}

impl FleetConfig {
    /// Publishes every `interval`, with a TTL of three intervals and the default instance id.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            ttl: interval.saturating_mul(3),
            instance_id: default_instance_id(),
        }
    }

    /// Sets the key's time to live (e.g. a few hundred milliseconds in tests).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the instance id (any text; it is escaped in the key).
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// Reads [`HEARTBEAT_ENV`] from the environment: `None` when the heartbeat is off.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`FleetConfig::from_env`] with another source of variables (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let Some(value) = lookup(HEARTBEAT_ENV) else {
            return Ok(None);
        };
        let value = value.trim();
        if matches!(
            value.to_ascii_lowercase().as_str(),
            "" | "off" | "false" | "no" | "0"
        ) {
            return Ok(None);
        }
        let config = Self::new(parse_duration(HEARTBEAT_ENV, value)?);
        config.validate()?;
        Ok(Some(config))
    }

    /// Checks the interval is not zero, the TTL outlives the interval, and the id makes a key.
    pub fn validate(&self) -> Result<()> {
        if self.interval.is_zero() {
            return Err(Error::config(
                HEARTBEAT_ENV,
                "the heartbeat interval must not be zero (use `off` to disable the heartbeat)",
            ));
        }
        if self.ttl <= self.interval {
            return Err(Error::config(
                HEARTBEAT_ENV,
                format!(
                    "the heartbeat TTL ({:?}) must be longer than its interval ({:?}), or the \
                     instance would blink out of the fleet between two heartbeats",
                    self.ttl, self.interval
                ),
            ));
        }
        instance_key(&self.instance_id).map(|_| ())
    }
}

/// `{host}-{pid}`: unique among the live processes of a fleet (container host names are unique per
/// container, pids per host).
fn default_instance_id() -> String {
    format!("{}-{}", host_name(), std::process::id())
}

/// The machine's host name: the kernel's on Linux, else `HOSTNAME`, else `unknown`.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Where the heartbeat reads the pool state from.
pub(crate) enum PoolSource {
    /// The backend has no pool (the in-memory store).
    None,
    /// [`Store::stats`] of the store (one `INFO` per heartbeat on Redis): for a store given as
    /// `dyn Store`, whose concrete type is unknown.
    StoreStats,
    /// The Redis store's own pool counters, without a server round trip.
    #[cfg(any(feature = "redis", feature = "cluster"))]
    Redis(cache_redis::RedisStore),
}

/// The store of an application instance with, when the heartbeat is on, its instrumentation and
/// what the heartbeat needs. Build it with [`Fleet::connect`] instead of [`crate::connect`], give
/// [`Fleet::store`] to the managers, then [`Fleet::start_with_cache`].
pub struct Fleet {
    /// The store without instrumentation: the heartbeat writes through it.
    raw: DynStore,
    /// The store the application uses: instrumented when the heartbeat is on.
    store: DynStore,
    calls: Option<Arc<CallStats>>,
    pool: PoolSource,
    config: Option<FleetConfig>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// [`crate::connect`], with the heartbeat configured from [`HEARTBEAT_ENV`].
    pub async fn connect(config: &Config) -> Result<Fleet> {
        Self::connect_with(config, FleetConfig::from_env()?).await
    }

    /// [`crate::connect`], with the heartbeat configured by `fleet` (`None`: off, and the store is
    /// returned as it is, without instrumentation). On Redis the heartbeat reads the pool state
    /// from the store's counters, without an `INFO`.
    pub async fn connect_with(config: &Config, fleet: Option<FleetConfig>) -> Result<Fleet> {
        #[cfg(any(feature = "redis", feature = "cluster"))]
        if fleet.is_some() {
            let redis = match &config.backend {
                #[cfg(feature = "redis")]
                BackendConfig::Redis { .. } => true,
                #[cfg(feature = "cluster")]
                BackendConfig::Cluster { .. } => true,
                _ => false,
            };
            if redis {
                config.validate()?;
                let store =
                    cache_redis::RedisStore::connect(&cache_redis::RedisConfig::from_core(config)?)
                        .await?;
                let mut built = Self::wrap(Arc::new(store.clone()), fleet);
                built.pool = PoolSource::Redis(store);
                return Ok(built);
            }
        }
        let store = crate::connect(config).await?;
        let mut built = Self::wrap(store, fleet);
        if matches!(config.backend, BackendConfig::Memory) {
            built.pool = PoolSource::None;
        }
        Ok(built)
    }

    /// Uses a store built elsewhere. The heartbeat then reads the pool state through
    /// [`Store::stats`] (one `INFO` per heartbeat on Redis); [`Fleet::connect`] avoids that.
    pub fn wrap(store: DynStore, fleet: Option<FleetConfig>) -> Fleet {
        match fleet {
            None => Fleet {
                raw: Arc::clone(&store),
                store,
                calls: None,
                pool: PoolSource::None,
                config: None,
            },
            Some(config) => {
                let calls = Arc::new(CallStats::new());
                let instrumented: DynStore = Arc::new(InstrumentedStore::with_stats(
                    Arc::clone(&store),
                    Arc::clone(&calls),
                ));
                Fleet {
                    raw: store,
                    store: instrumented,
                    calls: Some(calls),
                    pool: PoolSource::StoreStats,
                    config: Some(config),
                }
            }
        }
    }

    /// The store to give the cache and session managers: instrumented when the heartbeat is on,
    /// the plain store otherwise.
    pub fn store(&self) -> DynStore {
        Arc::clone(&self.store)
    }

    /// The heartbeat's configuration; `None` when it is off.
    pub fn config(&self) -> Option<&FleetConfig> {
        self.config.as_ref()
    }

    /// The store-call statistics the instrumentation records; `None` when the heartbeat is off.
    pub fn call_stats(&self) -> Option<&Arc<CallStats>> {
        self.calls.as_ref()
    }

    /// Starts the heartbeat without cache statistics (e.g. a service that only uses sessions):
    /// writes the first heartbeat, then leaves the next ones to a background task. `None` when the
    /// heartbeat is off. A store that cannot be written now is not an error (the write is logged
    /// and retried every interval): the instance appears once the store answers.
    pub async fn start(&self) -> Result<Option<Heartbeat>> {
        self.start_inner(None).await
    }

    /// [`Fleet::start`], reporting `cache`'s per-family statistics.
    pub async fn start_with_cache<S: Store>(
        &self,
        cache: &CacheManager<S>,
    ) -> Result<Option<Heartbeat>> {
        let cache = cache.clone();
        self.start_inner(Some(Box::new(move || cache.stats())))
            .await
    }

    async fn start_inner(
        &self,
        cache: Option<publish::CacheStatsSource>,
    ) -> Result<Option<Heartbeat>> {
        let Some(config) = &self.config else {
            return Ok(None);
        };
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::invalid_input("the fleet heartbeat must be started inside a tokio runtime")
        })?;
        let pool = match &self.pool {
            PoolSource::None => PoolSource::None,
            PoolSource::StoreStats => PoolSource::StoreStats,
            #[cfg(any(feature = "redis", feature = "cluster"))]
            PoolSource::Redis(s) => PoolSource::Redis(s.clone()),
        };
        let publisher = publish::Publisher::new(
            Arc::clone(&self.raw),
            instance_key(&config.instance_id)?,
            config.clone(),
            self.calls.clone(),
            cache,
            pool,
        );
        Ok(Some(publisher.start(&runtime).await))
    }
}

#[cfg(test)]
mod tests;
