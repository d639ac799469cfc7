//! Store-call statistics: [`InstrumentedStore`] wraps any store and records every call's latency
//! and outcome into a shared [`CallStats`], and publishes the same through the `metrics` facade.
//!
//! # Why a wrapper, and switching to a layer
//!
//! Latency is a property of the call as the application sees it (retries, reconnects and the
//! cluster's redirections included), so it is measured around the `Store` trait, the same way for
//! every backend, and costs nothing when the fleet heartbeat is off (the store is then not wrapped).
//! The timing itself is one free function, [`CallStats::observe`], so that when `cache-core` gains
//! a generic layered-store hook, this wrapper becomes a layer calling the same function, without
//! changing what is recorded.
//!
//! # Cost
//!
//! Two `Instant::now()` reads, three relaxed atomic adds and one `metrics` histogram record per
//! call, plus the boxed future of the extra `async_trait` hop. Errors additionally register an
//! error counter by label (rare by nature).
//!
//! # Metrics
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `cache_store_call_duration_seconds` | histogram | `op` | Duration of each store call, retries included |
//! | `cache_store_call_errors_total` | counter | `op`, `kind` | Store calls that returned an error, by error kind |

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{
    async_trait, BackendStats, CasOutcome, ErrorKind, Expiry, KeyTtl, Result, ScanCursor, ScanPage,
    SetOptions, Store,
};

use super::histogram::{LatencyHistogram, LatencySnapshot};

/// The store operations, as the `op` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    GetMany,
    GetEx,
    Set,
    SetMany,
    Delete,
    Exists,
    Expire,
    Persist,
    Ttl,
    IncrBy,
    CompareAndSwap,
    Scan,
    Zadd,
    Zrem,
    ZrangeByScore,
    ZremRangeByScore,
    Zcard,
    Ping,
    FlushPrefix,
    Stats,
}

impl Op {
    const ALL: [Op; 21] = [
        Op::Get,
        Op::GetMany,
        Op::GetEx,
        Op::Set,
        Op::SetMany,
        Op::Delete,
        Op::Exists,
        Op::Expire,
        Op::Persist,
        Op::Ttl,
        Op::IncrBy,
        Op::CompareAndSwap,
        Op::Scan,
        Op::Zadd,
        Op::Zrem,
        Op::ZrangeByScore,
        Op::ZremRangeByScore,
        Op::Zcard,
        Op::Ping,
        Op::FlushPrefix,
        Op::Stats,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::GetMany => "get_many",
            Op::GetEx => "get_ex",
            Op::Set => "set",
            Op::SetMany => "set_many",
            Op::Delete => "delete",
            Op::Exists => "exists",
            Op::Expire => "expire",
            Op::Persist => "persist",
            Op::Ttl => "ttl",
            Op::IncrBy => "incr_by",
            Op::CompareAndSwap => "compare_and_swap",
            Op::Scan => "scan",
            Op::Zadd => "zadd",
            Op::Zrem => "zrem",
            Op::ZrangeByScore => "zrange_by_score",
            Op::ZremRangeByScore => "zrem_range_by_score",
            Op::Zcard => "zcard",
            Op::Ping => "ping",
            Op::FlushPrefix => "flush_prefix",
            Op::Stats => "stats",
        }
    }
}

/// Latency and outcome counters of store calls, shared between the wrapper that records and the
/// heartbeat that reports. All relaxed atomics: recording never blocks.
pub struct CallStats {
    latency: LatencyHistogram,
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    /// One `metrics` histogram per operation, registered once so that recording is a handle call
    /// and no registry lookup (indexed like [`Op::ALL`]).
    durations: Vec<metrics::Histogram>,
}

impl fmt::Debug for CallStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallStats")
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .field("errors", &self.errors.load(Ordering::Relaxed))
            .field("timeouts", &self.timeouts.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for CallStats {
    fn default() -> Self {
        describe_metrics();
        Self {
            latency: LatencyHistogram::new(),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            durations: Op::ALL
                .iter()
                .map(|op| metrics::histogram!("cache_store_call_duration_seconds", "op" => op.name()))
                .collect(),
        }
    }
}

/// Describes the metrics once per process (units and help texts for exporters).
fn describe_metrics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        metrics::describe_histogram!(
            "cache_store_call_duration_seconds",
            metrics::Unit::Seconds,
            "Duration of each store call as the application sees it, retries included."
        );
        metrics::describe_counter!(
            "cache_store_call_errors_total",
            metrics::Unit::Count,
            "Store calls that returned an error, by operation and error kind."
        );
    });
}

impl CallStats {
    /// Empty statistics. Install the `metrics` recorder before this, as for the cache manager:
    /// handles taken before a recorder exists stay no-ops (the snapshot counters work either way).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one call of `op` that took `elapsed` and ended in `outcome`.
    fn record(&self, op: Op, elapsed: Duration, outcome: Option<ErrorKind>) {
        self.latency.record(elapsed);
        self.calls.fetch_add(1, Ordering::Relaxed);
        // `Op::ALL` lists the variants in declaration order (tested), so the discriminant is the
        // handle's index.
        if let Some(h) = self.durations.get(op as usize) {
            h.record(elapsed.as_secs_f64());
        }
        if let Some(kind) = outcome {
            self.errors.fetch_add(1, Ordering::Relaxed);
            if kind == ErrorKind::Timeout {
                self.timeouts.fetch_add(1, Ordering::Relaxed);
            }
            metrics::counter!("cache_store_call_errors_total", "op" => op.name(), "kind" => kind.as_str())
                .increment(1);
        }
    }

    /// Runs one store call and records its latency and outcome. The one place where timing
    /// happens, for the wrapper today and for a layer tomorrow.
    async fn observe<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = call.await;
        self.record(
            op,
            started.elapsed(),
            result.as_ref().err().map(|e| e.kind()),
        );
        result
    }

    /// The counters so far.
    pub fn snapshot(&self) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

/// [`CallStats`] at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallStatsSnapshot {
    /// Calls completed.
    pub calls: u64,
    /// Calls that returned an error of any kind (timeouts included).
    pub errors: u64,
    /// Calls that returned [`cache_core::Error::Timeout`].
    pub timeouts: u64,
    /// Their latencies.
    pub latency: LatencySnapshot,
}

impl CallStatsSnapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &CallStatsSnapshot) -> CallStatsSnapshot {
        CallStatsSnapshot {
            calls: self.calls.saturating_sub(earlier.calls),
            errors: self.errors.saturating_sub(earlier.errors),
            timeouts: self.timeouts.saturating_sub(earlier.timeouts),
            latency: self.latency.since(&earlier.latency),
        }
    }
}

/// A [`Store`] that forwards every call to `S` and records its latency and outcome in a
/// [`CallStats`]. `prefix` and `backend_name` are the inner store's.
pub struct InstrumentedStore<S> {
    inner: S,
    stats: Arc<CallStats>,
}

impl<S: fmt::Debug> fmt::Debug for InstrumentedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstrumentedStore")
            .field("inner", &self.inner)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<S: Store> InstrumentedStore<S> {
    /// Wraps `inner` with fresh statistics.
    pub fn new(inner: S) -> Self {
        Self::with_stats(inner, Arc::new(CallStats::new()))
    }

    /// Wraps `inner`, recording into `stats` (several stores may share one).
    pub fn with_stats(inner: S, stats: Arc<CallStats>) -> Self {
        Self { inner, stats }
    }

    /// The statistics this store records into.
    pub fn call_stats(&self) -> &Arc<CallStats> {
        &self.stats
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: Store> Store for InstrumentedStore<S> {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }

    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.stats.observe(Op::Get, self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        self.stats
            .observe(Op::GetMany, self.inner.get_many(keys))
            .await
    }

    async fn get_ex(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>> {
        self.stats
            .observe(Op::GetEx, self.inner.get_ex(key, ttl))
            .await
    }

    async fn set(&self, key: &str, value: &[u8], opts: SetOptions) -> Result<bool> {
        self.stats
            .observe(Op::Set, self.inner.set(key, value, opts))
            .await
    }

    async fn set_many(&self, entries: &[(&str, &[u8])], expiry: Expiry) -> Result<()> {
        self.stats
            .observe(Op::SetMany, self.inner.set_many(entries, expiry))
            .await
    }

    async fn delete(&self, keys: &[&str]) -> Result<u64> {
        self.stats
            .observe(Op::Delete, self.inner.delete(keys))
            .await
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        self.stats.observe(Op::Exists, self.inner.exists(key)).await
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.stats
            .observe(Op::Expire, self.inner.expire(key, ttl))
            .await
    }

    async fn persist(&self, key: &str) -> Result<bool> {
        self.stats
            .observe(Op::Persist, self.inner.persist(key))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<KeyTtl> {
        self.stats.observe(Op::Ttl, self.inner.ttl(key)).await
    }

    async fn incr_by(
        &self,
        key: &str,
        delta: i64,
        ttl_if_created: Option<Duration>,
    ) -> Result<i64> {
        self.stats
            .observe(Op::IncrBy, self.inner.incr_by(key, delta, ttl_if_created))
            .await
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expiry: Expiry,
    ) -> Result<CasOutcome> {
        self.stats
            .observe(
                Op::CompareAndSwap,
                self.inner.compare_and_swap(key, expected, new, expiry),
            )
            .await
    }

    async fn scan(&self, pattern: &str, cursor: ScanCursor, count: u32) -> Result<ScanPage> {
        self.stats
            .observe(Op::Scan, self.inner.scan(pattern, cursor, count))
            .await
    }

    async fn zadd(&self, key: &str, member: &str, score: f64) -> Result<bool> {
        self.stats
            .observe(Op::Zadd, self.inner.zadd(key, member, score))
            .await
    }

    async fn zrem(&self, key: &str, members: &[&str]) -> Result<u64> {
        self.stats
            .observe(Op::Zrem, self.inner.zrem(key, members))
            .await
    }

    async fn zrange_by_score(
        &self,
        key: &str,
        min: f64,
        max: f64,
        limit: Option<usize>,
    ) -> Result<Vec<(String, f64)>> {
        self.stats
            .observe(
                Op::ZrangeByScore,
                self.inner.zrange_by_score(key, min, max, limit),
            )
            .await
    }

    async fn zrem_range_by_score(&self, key: &str, min: f64, max: f64) -> Result<u64> {
        self.stats
            .observe(
                Op::ZremRangeByScore,
                self.inner.zrem_range_by_score(key, min, max),
            )
            .await
    }

    async fn zcard(&self, key: &str) -> Result<u64> {
        self.stats.observe(Op::Zcard, self.inner.zcard(key)).await
    }

    async fn ping(&self) -> Result<Duration> {
        self.stats.observe(Op::Ping, self.inner.ping()).await
    }

    async fn flush_prefix(&self) -> Result<u64> {
        self.stats
            .observe(Op::FlushPrefix, self.inner.flush_prefix())
            .await
    }

    async fn stats(&self) -> Result<Option<BackendStats>> {
        self.stats.observe(Op::Stats, self.inner.stats()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::Error;

    #[tokio::test]
    async fn errors_and_timeouts_are_counted_and_latency_recorded() {
        let stats = CallStats::new();
        let ok: Result<u8> = stats.observe(Op::Get, async { Ok(1) }).await;
        assert_eq!(ok.unwrap(), 1);
        let timeout: Result<u8> = stats
            .observe(Op::Get, async {
                Err(Error::Timeout {
                    operation: "GET".into(),
                    elapsed: Duration::from_millis(5),
                    setting: "REDIS_RESPONSE_TIMEOUT",
                })
            })
            .await;
        assert!(timeout.is_err());
        let failed: Result<u8> = stats
            .observe(Op::Set, async { Err(Error::backend("boom")) })
            .await;
        assert!(failed.is_err());
        let s = stats.snapshot();
        assert_eq!((s.calls, s.errors, s.timeouts), (3, 2, 1));
        assert_eq!(s.latency.count(), 3);
        let later = stats.snapshot();
        assert_eq!(later.since(&s).calls, 0);
    }

    #[test]
    fn every_op_has_a_handle() {
        let stats = CallStats::new();
        assert_eq!(stats.durations.len(), Op::ALL.len());
        for (i, op) in Op::ALL.iter().enumerate() {
            assert_eq!(*op as usize, i, "{op:?} is listed out of declaration order");
            assert!(!op.name().is_empty());
        }
    }
}
