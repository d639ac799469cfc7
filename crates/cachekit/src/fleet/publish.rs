//! The heartbeat publisher: a background task that writes this instance's [`InstanceReport`]
//! under `fleet:{id}` with a short TTL, every interval.
//!
//! Off the hot path by construction: the task reads relaxed atomics (cache and call statistics)
//! and the pool state, and does one `SET PX` per interval on the store *without* the
//! instrumentation, so its own writes do not show up as application store calls. A failed write
//! is logged (a warning once per failure streak) and retried at the next tick; it never reaches the
//! application.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::{Result, SetOptions, Store};
use cache_domain::CacheStats;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::instrument::{CallStats, CallStatsSnapshot};
use super::report::{ratio, FamilyReport, InstanceReport, PoolReport, StoreCallReport};
use super::{FleetConfig, PoolSource};
use crate::DynStore;

/// Where the publisher gets the cache counters from (a clone of the cache manager, type-erased).
pub(crate) type CacheStatsSource = Box<dyn Fn() -> CacheStats + Send + Sync>;

/// A running heartbeat. Dropping it stops the task at once and leaves the key to expire by its
/// TTL, exactly as when the process dies; [`Heartbeat::shutdown`] stops it and deletes the key, so
/// that a clean shutdown disappears from the fleet view immediately.
#[derive(Debug)]
pub struct Heartbeat {
    id: String,
    key: String,
    store: DynStore,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Heartbeat {
    /// The instance id this heartbeat publishes under.
    pub fn instance_id(&self) -> &str {
        &self.id
    }

    /// The key it writes, relative to the store prefix (`fleet:{escaped id}`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stops publishing (after a write in progress, if any, completes) and deletes the key.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            // A task that panicked or was cancelled has stopped writing all the same.
            let _ = task.await;
        }
        self.store.delete(&[self.key.as_str()]).await.map(|_| ())
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Everything the task needs; owned by the task.
pub(crate) struct Publisher {
    pub(crate) store: DynStore,
    pub(crate) key: String,
    pub(crate) config: FleetConfig,
    pub(crate) calls: Option<Arc<CallStats>>,
    pub(crate) cache: Option<CacheStatsSource>,
    pub(crate) pool: PoolSource,
    host: String,
    pid: u32,
    started_at_ms: u64,
    prev_at: Instant,
    prev_calls: CallStatsSnapshot,
    prev_cache: Option<CacheStats>,
}

impl Publisher {
    pub(crate) fn new(
        store: DynStore,
        key: String,
        config: FleetConfig,
        calls: Option<Arc<CallStats>>,
        cache: Option<CacheStatsSource>,
        pool: PoolSource,
    ) -> Self {
        let prev_calls = calls.as_ref().map(|c| c.snapshot()).unwrap_or_default();
        let prev_cache = cache.as_ref().map(|f| f());
        Self {
            store,
            key,
            config,
            calls,
            cache,
            pool,
            host: super::host_name(),
            pid: std::process::id(),
            started_at_ms: unix_ms(),
            prev_at: Instant::now(),
            prev_calls,
            prev_cache,
        }
    }

    /// Writes the first heartbeat now (so the instance is listed as soon as this returns; a
    /// failure is logged and retried by the task), then starts the task on `runtime`.
    pub(crate) async fn start(mut self, runtime: &tokio::runtime::Handle) -> Heartbeat {
        let failing = match self.publish().await {
            Ok(()) => false,
            Err(e) => {
                tracing::warn!(target: "cachekit::fleet", key = %self.key, error = %e, "fleet heartbeat could not be written; retrying every interval");
                true
            }
        };
        let (stop, stopped) = watch::channel(false);
        let (id, key, store) = (
            self.config.instance_id.clone(),
            self.key.clone(),
            Arc::clone(&self.store),
        );
        let task = runtime.spawn(self.run(stopped, failing));
        Heartbeat {
            id,
            key,
            store,
            stop,
            task: Some(task),
        }
    }

    async fn run(mut self, mut stopped: watch::Receiver<bool>, mut failing: bool) {
        // The first heartbeat was written by `start`.
        let mut ticker =
            tokio::time::interval_at(Instant::now() + self.config.interval, self.config.interval);
        // After a stall (a slow store), write once and keep the rhythm, rather than a burst.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = stopped.changed() => return,
                _ = ticker.tick() => {}
            }
            match self.publish().await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(target: "cachekit::fleet", key = %self.key, "fleet heartbeat written again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(target: "cachekit::fleet", key = %self.key, error = %e, "fleet heartbeat could not be written; retrying every interval");
                }
                Err(e) => {
                    tracing::debug!(target: "cachekit::fleet", key = %self.key, error = %e, "fleet heartbeat still failing");
                }
            }
        }
    }

    async fn publish(&mut self) -> Result<()> {
        let report = self.report().await;
        let bytes = cache_core::codec::encode(&report)?;
        self.store
            .set(&self.key, &bytes, SetOptions::ttl(self.config.ttl))
            .await
            .map(|_| ())
    }

    /// This instance's report now; advances the window.
    pub(crate) async fn report(&mut self) -> InstanceReport {
        let now = Instant::now();
        let window = now.saturating_duration_since(self.prev_at);
        self.prev_at = now;
        InstanceReport {
            id: self.config.instance_id.clone(),
            host: self.host.clone(),
            pid: self.pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            backend: self.store.backend_name().to_owned(),
            started_at_ms: self.started_at_ms,
            at_ms: unix_ms(),
            interval_ms: millis(self.config.interval),
            ttl_ms: millis(self.config.ttl),
            families: self.families(),
            store: self.store_calls(window),
            pool: self.pool().await,
            near_cache_hit_ratio: None,
        }
    }

    fn families(&mut self) -> std::collections::BTreeMap<String, FamilyReport> {
        let Some(source) = &self.cache else {
            return Default::default();
        };
        let now = source();
        let previous = self.prev_cache.replace(now.clone()).unwrap_or_default();
        now.families
            .iter()
            .filter(|(_, s)| s.hits + s.misses + s.writes + s.store_errors > 0)
            .map(|(family, s)| {
                let before = previous.family(*family);
                let (recent_hits, recent_misses) = (
                    s.hits.saturating_sub(before.hits),
                    s.misses.saturating_sub(before.misses),
                );
                let report = FamilyReport {
                    hits: s.hits,
                    misses: s.misses,
                    hit_ratio: s.hit_ratio(),
                    recent_hits,
                    recent_misses,
                    recent_hit_ratio: ratio(recent_hits, recent_misses),
                    store_errors: s.store_errors,
                };
                (family.name().to_owned(), report)
            })
            .collect()
    }

    fn store_calls(&mut self, window: Duration) -> Option<StoreCallReport> {
        let calls = self.calls.as_ref()?;
        let now = calls.snapshot();
        let recent = now.since(&self.prev_calls);
        let report = StoreCallReport {
            calls: now.calls,
            errors: now.errors,
            timeouts: now.timeouts,
            window_ms: millis(window),
            recent_calls: recent.calls,
            recent_errors: recent.errors,
            recent_timeouts: recent.timeouts,
            p50_us: recent.latency.quantile(0.5).map(micros),
            p99_us: recent.latency.quantile(0.99).map(micros),
            latency_buckets: recent.latency.to_buckets(),
        };
        self.prev_calls = now;
        Some(report)
    }

    async fn pool(&self) -> Option<PoolReport> {
        match &self.pool {
            PoolSource::None => None,
            PoolSource::StoreStats => match self.store.stats().await {
                Ok(stats) => stats.and_then(|s| s.pool.as_ref().map(PoolReport::from)),
                Err(e) => {
                    tracing::debug!(target: "cachekit::fleet", error = %e, "no pool state for the heartbeat");
                    None
                }
            },
            #[cfg(any(feature = "redis", feature = "cluster"))]
            PoolSource::Redis(store) => Some(PoolReport::from(&store.pool_stats().await)),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(millis)
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
